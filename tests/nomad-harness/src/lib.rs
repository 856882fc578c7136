//! Test support: drives a Nomad task-driver plugin binary the way a Nomad client does, on a
//! simulated FreeBSD host (`freebsd-sim`). Used by the end-to-end tests and by `potctl demo`.
//!
//! * [`plugin`]: launch the binary like go-plugin, validate the handshake and stdio, gRPC clients.
//! * [`cty`]: the hclspec-driven cty-msgpack encoder (Nomad's `config {}` pipeline).
//! * [`logmon`]: FIFO readers like Nomad's logmon.
//! * [`task`]: `TaskConfig` builder with Nomad's alloc dir layout.
//! * [`sim`]: the simulated FreeBSD host and an HTTP(S) file server.
//! * [`proxy`]: a forward HTTP proxy, as image downloads may have to go through.
//! * [`tls`]: the test PKI for `https://` servers.
//!
//! Failures panic with a message naming what failed: this is test support.

pub mod cty;
pub mod logmon;
pub mod plugin;
pub mod proxy;
pub mod sim;
pub mod task;
pub mod tls;

use std::path::PathBuf;

pub use cty::{CtyError, encode, encode_raw};
pub use logmon::LogMon;
pub use plugin::Plugin;
pub use proxy::ForwardProxy;
pub use sim::{Call, FileServer, SimHost};
pub use task::{TaskBuilder, TestTask};

/// Where the workspace's binaries are: the directory of the running executable, or its parent
/// for test executables (which live in `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let dir = exe.parent().expect("an executable lives in a directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// `$var` if set, else `name` in [`bin_dir`]; panics with the command that builds it.
fn workspace_bin(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().join(name));
    if !path.exists() {
        panic!(
            "{} not found: run `cargo build --workspace` first (or set {var})",
            path.display()
        );
    }
    path
}
