//! Compiles our wire-compatible copies of Nomad's and go-plugin's protobuf
//! definitions (in this crate's `plugins/` and `plugin/`) with protox (pure Rust, no system `protoc`)
//! and tonic-prost-build, and emits `$OUT_DIR/grpc_methods.rs` listing every
//! declared gRPC method path.

use std::{env, fs, path::PathBuf};

/// Every .proto we own, relative to the include root (this crate's directory).
const PROTO_FILES: &[&str] = &[
    "plugins/shared/hclspec/hcl_spec.proto",
    "plugins/shared/structs/proto/attribute.proto",
    "plugins/shared/structs/proto/recoverable_error.proto",
    "plugins/shared/structs/proto/stats.proto",
    "plugins/base/proto/base.proto",
    "plugins/drivers/proto/driver.proto",
    "plugin/grpc_controller.proto",
    "plugin/grpc_stdio.proto",
    "plugin/grpc_broker.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=plugins");
    println!("cargo:rerun-if-changed=plugin");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(PROTO_FILES, ["."])?;

    // "/<package>.<Service>/<Method>" for every RPC declared in our files
    // (imported google/protobuf/* files declare no services, but are skipped
    // explicitly anyway).
    let mut methods: Vec<String> = fds
        .file
        .iter()
        .filter(|file| PROTO_FILES.contains(&file.name()))
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("/{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect();
    methods.sort();
    methods.dedup();

    let mut out = String::from(
        "/// Every gRPC method path declared in `proto/`, sorted.\n\
         pub const DECLARED_METHOD_PATHS: &[&str] = &[\n",
    );
    for method in &methods {
        out.push_str(&format!("    {method:?},\n"));
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("grpc_methods.rs"), out)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
