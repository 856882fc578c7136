//! Pins the gRPC surface of the real plugin binary: which method paths it serves.
//!
//! Every path declared in our protos is probed over the plugin's socket with an empty message.
//! tonic's router answers a path it does not route with UNIMPLEMENTED and no message; anything
//! else (an answer, an error from our code, or a default stub's "Not yet implemented") means the
//! path is served.

mod common;

use common::{Plugin, within};
use nomad_pot_driver::proto::DECLARED_METHOD_PATHS;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstCodec;

/// What a Nomad agent can reach, besides grpc health: Base and Driver services and the controller.
const SERVED: &[&str] = &[
    "/hashicorp.nomad.plugins.base.proto.BasePlugin/ConfigSchema",
    "/hashicorp.nomad.plugins.base.proto.BasePlugin/PluginInfo",
    "/hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/Capabilities",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/CreateNetwork",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/DestroyNetwork",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/DestroyTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/ExecTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/ExecTaskStreaming",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/Fingerprint",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/Init",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/InspectTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/RecoverTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/Shutdown",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/SignalTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/StartTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/StopTask",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskConfigSchema",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskEvents",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskStats",
    "/hashicorp.nomad.plugins.drivers.proto.Driver/WaitTask",
    "/plugin.GRPCController/Shutdown",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Optional go-plugin services the host tolerates missing (nomad-protocol.md §1.5).
const NOT_SERVED: &[&str] = &[
    "/plugin.GRPCBroker/StartStream",
    "/plugin.GRPCStdio/StreamStdio",
];

async fn is_served(plugin: &Plugin, path: &'static str) -> bool {
    let mut grpc = Grpc::new(plugin.channel.clone());
    grpc.ready().await.expect("channel ready");
    let result = grpc
        .server_streaming(
            tonic::Request::new(()),
            PathAndQuery::from_static(path),
            ProstCodec::<(), ()>::default(),
        )
        .await;
    match result {
        Ok(_) => true,
        Err(s) => !(s.code() == tonic::Code::Unimplemented && s.message().is_empty()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn served_method_paths_are_pinned() {
    let mut declared: Vec<&str> = DECLARED_METHOD_PATHS.to_vec();
    declared.extend([
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ]);
    let plugin = Plugin::launch().await;
    let mut served = Vec::new();
    let mut not_served = Vec::new();
    // Shutdown last: it ends the process.
    declared.sort_by_key(|p| *p == "/plugin.GRPCController/Shutdown");
    for path in declared {
        if within(10.0, path, is_served(&plugin, path)).await {
            served.push(path);
        } else {
            not_served.push(path);
        }
    }
    served.sort();
    let mut expected_served = SERVED.to_vec();
    expected_served.sort();
    assert_eq!(served, expected_served, "served gRPC method paths changed");
    assert_eq!(not_served, NOT_SERVED, "unserved gRPC method paths changed");
}
