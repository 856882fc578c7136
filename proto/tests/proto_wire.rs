//! Wire-level checks of the generated protobuf types against byte strings
//! produced by `protoc` from Nomad's own definitions
//! (see /work/shared/spec/nomad-protocol.md §2.3, §3.1–§3.3), plus pins on
//! field numbers and on the full set of declared gRPC method paths.

use std::collections::HashMap;

use nomad_plugin_proto::{self as proto, base, drivers, hclspec, structs};
use prost::Message;

/// Builds a byte vector from a mix of raw bytes and ASCII strings.
macro_rules! wire {
    ($($part:expr),* $(,)?) => {{
        let mut v: Vec<u8> = Vec::new();
        $( v.extend_from_slice(AsRef::<[u8]>::as_ref(&$part)); )*
        v
    }};
}

fn spec(block: hclspec::spec::Block) -> hclspec::Spec {
    hclspec::Spec { block: Some(block) }
}

#[test]
fn plugin_info_response_bytes() {
    let msg = base::PluginInfoResponse {
        r#type: base::PluginType::Driver as i32,
        plugin_api_versions: vec!["v0.1.0".into()],
        plugin_version: "v0.10.0".into(),
        name: "pot".into(),
    };
    let expected = wire!(
        [0x08, 0x02],
        [0x12, 0x06],
        "v0.1.0",
        [0x1a, 0x07],
        "v0.10.0",
        [0x22, 0x03],
        "pot",
    );
    assert_eq!(msg.encode_to_vec(), expected);
    assert_eq!(
        base::PluginInfoResponse::decode(&expected[..]).unwrap(),
        msg
    );
}

#[test]
fn plugin_type_values() {
    assert_eq!(base::PluginType::Unknown as i32, 0);
    assert_eq!(base::PluginType::Driver as i32, 2);
    assert_eq!(base::PluginType::Device as i32, 3);
    assert!(base::PluginType::try_from(1).is_err());
}

#[test]
fn config_schema_response_bytes_for_go_pot_agent_schema() {
    // Object{ "enabled": Default{ primary: Attr{name:"enabled", type:"bool"},
    //                             default: Literal{"true"} } }
    let enabled = spec(hclspec::spec::Block::Default(Box::new(hclspec::Default {
        primary: Some(Box::new(spec(hclspec::spec::Block::Attr(hclspec::Attr {
            name: "enabled".into(),
            r#type: "bool".into(),
            required: false,
        })))),
        default: Some(Box::new(spec(hclspec::spec::Block::Literal(
            hclspec::Literal {
                value: "true".into(),
            },
        )))),
    })));
    let msg = base::ConfigSchemaResponse {
        spec: Some(spec(hclspec::spec::Block::Object(hclspec::Object {
            attributes: HashMap::from([("enabled".to_string(), enabled)]),
        }))),
    };
    let expected = wire!(
        [0x0a, 0x2e], // ConfigSchemaResponse.spec
        [0x0a, 0x2c], // Spec.object
        [0x0a, 0x2a], // Object.attributes entry
        [0x0a, 0x07],
        "enabled",    // key
        [0x12, 0x1f], // value: Spec
        [0x4a, 0x1d], // Spec.default (9)
        [0x0a, 0x11], // Default.primary
        [0x1a, 0x0f], // Spec.Attr (3)
        [0x0a, 0x07],
        "enabled",
        [0x12, 0x04],
        "bool",
        [0x12, 0x08], // Default.default
        [0x52, 0x06], // Spec.literal (10)
        [0x0a, 0x04],
        "true",
    );
    assert_eq!(expected.len(), 2 + 0x2e);
    assert_eq!(msg.encode_to_vec(), expected);
    assert_eq!(
        base::ConfigSchemaResponse::decode(&expected[..]).unwrap(),
        msg
    );
}

#[test]
fn capabilities_response_bytes() {
    let msg = drivers::CapabilitiesResponse {
        capabilities: Some(drivers::DriverCapabilities {
            send_signals: true,
            exec: true,
            ..Default::default()
        }),
    };
    let expected = vec![0x0a, 0x04, 0x08, 0x01, 0x10, 0x01];
    assert_eq!(msg.encode_to_vec(), expected);
    assert_eq!(
        drivers::CapabilitiesResponse::decode(&expected[..]).unwrap(),
        msg
    );
}

#[test]
fn capabilities_field_numbers_and_enums() {
    use drivers::driver_capabilities::{FsIsolation, MountConfigs};
    use drivers::network_isolation_spec::NetworkIsolationMode;

    assert_eq!(FsIsolation::None as i32, 0);
    assert_eq!(FsIsolation::Chroot as i32, 1);
    assert_eq!(FsIsolation::Image as i32, 2);
    assert_eq!(FsIsolation::Unveil as i32, 3);
    // ANY_MOUNTS is an alias of UNKNOWN_MOUNTS (0).
    assert_eq!(MountConfigs::UnknownMounts as i32, 0);
    assert_eq!(MountConfigs::NoMounts as i32, 1);
    // prost keeps only the first name of an aliased value.
    assert_eq!(MountConfigs::try_from(0), Ok(MountConfigs::UnknownMounts));
    assert_eq!(NetworkIsolationMode::Host as i32, 0);
    assert_eq!(NetworkIsolationMode::None as i32, 3);

    let msg = drivers::DriverCapabilities {
        fs_isolation: FsIsolation::Image as i32,
        network_isolation_modes: vec![NetworkIsolationMode::Host as i32],
        must_create_network: true,
        mount_configs: MountConfigs::NoMounts as i32,
        disable_log_collection: true,
        dynamic_workload_users: true,
        ..Default::default()
    };
    let expected = vec![
        0x18, 0x02, // fs_isolation = 3
        0x22, 0x01, 0x00, // network_isolation_modes = 4 (packed)
        0x28, 0x01, // must_create_network = 5
        0x30, 0x01, // mount_configs = 6
        0x40, 0x01, // disable_log_collection = 8
        0x48, 0x01, // dynamic_workload_users = 9
    ];
    assert_eq!(msg.encode_to_vec(), expected);
    // Field 7 (the removed remote_tasks) is unknown and skipped.
    let with_7 = wire!([0x38, 0x01], expected);
    assert_eq!(
        drivers::DriverCapabilities::decode(&with_7[..]).unwrap(),
        msg
    );
}

#[test]
fn fingerprint_response_bytes() {
    let msg = drivers::FingerprintResponse {
        attributes: HashMap::from([(
            "driver.pot".to_string(),
            structs::Attribute {
                value: Some(structs::attribute::Value::BoolVal(true)),
                unit: String::new(),
            },
        )]),
        health: drivers::fingerprint_response::HealthState::Healthy as i32,
        health_description: "healthy".into(),
    };
    let expected = wire!(
        [0x0a, 0x10, 0x0a, 0x0a],
        "driver.pot",
        [0x12, 0x02, 0x20, 0x01],
        [0x10, 0x02],
        [0x1a, 0x07],
        "healthy",
    );
    assert_eq!(msg.encode_to_vec(), expected);
    assert_eq!(
        drivers::FingerprintResponse::decode(&expected[..]).unwrap(),
        msg
    );
}

/// Minimal `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

#[test]
fn recoverable_error_status_details_bytes() {
    const TYPE_URL: &str =
        "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError";
    let detail = structs::RecoverableError { recoverable: true };
    assert_eq!(detail.encode_to_vec(), vec![0x08, 0x01]);

    let status = RpcStatus {
        code: 9, // FAILED_PRECONDITION
        message: "x".into(),
        details: vec![prost_types::Any {
            type_url: TYPE_URL.into(),
            value: detail.encode_to_vec(),
        }],
    };
    let expected = wire!(
        [0x08, 0x09],
        [0x12, 0x01, 0x78],
        [0x1a, 0x51],
        [0x0a, 0x4b],
        TYPE_URL,
        [0x12, 0x02, 0x08, 0x01],
    );
    assert_eq!(TYPE_URL.len(), 0x4b);
    assert_eq!(status.encode_to_vec(), expected);

    let decoded = RpcStatus::decode(&expected[..]).unwrap();
    assert_eq!(decoded, status);
    let inner = structs::RecoverableError::decode(&decoded.details[0].value[..]).unwrap();
    assert!(inner.recoverable);
}

#[test]
fn declared_method_paths_are_pinned() {
    let expected: &[&str] = &[
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
        "/plugin.GRPCBroker/StartStream",
        "/plugin.GRPCController/Shutdown",
        "/plugin.GRPCStdio/StreamStdio",
    ];
    assert_eq!(proto::DECLARED_METHOD_PATHS, expected);
}

#[test]
fn service_names_match_method_paths() {
    use tonic::server::NamedService;
    type Base = base::base_plugin_server::BasePluginServer<()>;
    type Driver = drivers::driver_server::DriverServer<()>;
    type Controller = proto::plugin::grpc_controller_server::GrpcControllerServer<()>;
    type Stdio = proto::plugin::grpc_stdio_server::GrpcStdioServer<()>;
    type Broker = proto::plugin::grpc_broker_server::GrpcBrokerServer<()>;
    assert_eq!(Base::NAME, "hashicorp.nomad.plugins.base.proto.BasePlugin");
    assert_eq!(Driver::NAME, "hashicorp.nomad.plugins.drivers.proto.Driver");
    assert_eq!(Controller::NAME, "plugin.GRPCController");
    assert_eq!(Stdio::NAME, "plugin.GRPCStdio");
    assert_eq!(Broker::NAME, "plugin.GRPCBroker");
}

#[test]
fn task_config_field_numbers() {
    // stdout_path = 11, alloc_id = 15, stderr_path = 12, parent_job_id = 22.
    let bytes = wire!(
        [0x5a, 0x03],
        "out",
        [0x62, 0x03],
        "err",
        [0x7a, 0x02],
        "a1",
        [0xb2, 0x01, 0x01],
        "p",
    );
    let cfg = drivers::TaskConfig::decode(&bytes[..]).unwrap();
    assert_eq!(cfg.stdout_path, "out");
    assert_eq!(cfg.stderr_path, "err");
    assert_eq!(cfg.alloc_id, "a1");
    assert_eq!(cfg.parent_job_id, "p");
    assert_eq!(cfg.encode_to_vec(), bytes);
}

#[test]
fn task_handle_field_numbers() {
    let bytes = wire!(
        [0x08, 0x03],                   // version = 1
        [0x12, 0x03, 0x0a, 0x01, b'x'], // config = 2 (TaskConfig{id:"x"})
        [0x18, 0x01],                   // state = 3 (RUNNING)
        [0x22, 0x02, 0xde, 0xad],       // driver_state = 4
    );
    let handle = drivers::TaskHandle::decode(&bytes[..]).unwrap();
    assert_eq!(handle.version, 3);
    assert_eq!(handle.config.as_ref().unwrap().id, "x");
    assert_eq!(handle.state(), drivers::TaskState::Running);
    assert_eq!(handle.driver_state, vec![0xde, 0xad]);
    assert_eq!(handle.encode_to_vec(), bytes);
    assert_eq!(drivers::TaskState::Exited as i32, 2);
}

#[test]
fn memory_usage_field_numbers() {
    use drivers::memory_usage::Fields;
    // Tag order on the wire: 1, 6 (packed), 7, 8.
    let bytes = vec![
        0x08, 0x01, // rss = 1
        0x32, 0x03, 0x00, 0x05, 0x06, // measured_fields = 6 (packed)
        0x38, 0x07, // usage = 7
        0x40, 0x08, // swap = 8
    ];
    let mem = drivers::MemoryUsage::decode(&bytes[..]).unwrap();
    assert_eq!(mem.rss, 1);
    assert_eq!(mem.usage, 7);
    assert_eq!(mem.swap, 8);
    assert_eq!(
        mem.measured_fields,
        vec![
            Fields::Rss as i32,
            Fields::Usage as i32,
            Fields::Swap as i32
        ]
    );
    assert_eq!(mem.encode_to_vec(), bytes);
    assert_eq!(drivers::cpu_usage::Fields::Percent as i32, 5);
}

#[test]
fn stop_task_request_field_numbers() {
    let bytes = wire!(
        [0x0a, 0x01, b't'],       // task_id = 1
        [0x12, 0x02, 0x08, 0x05], // timeout = 2 (5 s)
        [0x1a, 0x07],
        "SIGTERM", // signal = 3
    );
    let req = drivers::StopTaskRequest::decode(&bytes[..]).unwrap();
    assert_eq!(req.task_id, "t");
    assert_eq!(
        req.timeout,
        Some(prost_types::Duration {
            seconds: 5,
            nanos: 0
        })
    );
    assert_eq!(req.signal, "SIGTERM");
    assert_eq!(req.encode_to_vec(), bytes);
}

#[test]
fn mount_and_linux_resources_field_numbers() {
    let bytes = wire!(
        [0x22, 0x01],
        "r", // propagation_mode = 4
        [0x2a, 0x01],
        "z", // selinux_label = 5
        [0x32, 0x01],
        "n", // request_name = 6
    );
    let mount = drivers::Mount::decode(&bytes[..]).unwrap();
    assert_eq!(mount.propagation_mode, "r");
    assert_eq!(mount.selinux_label, "z");
    assert_eq!(mount.request_name, "n");

    // PercentTicks = 8 (double), cpuset_cgroup = 9.
    let mut bytes = vec![0x41];
    bytes.extend_from_slice(&0.5f64.to_le_bytes());
    bytes.extend_from_slice(&[0x4a, 0x01, b'c']);
    let linux = drivers::LinuxResources::decode(&bytes[..]).unwrap();
    assert_eq!(linux.percent_ticks, 0.5);
    assert_eq!(linux.cpuset_cgroup, "c");
}

#[test]
fn set_config_request_topology_field_numbers() {
    // nomad_config = 2 { driver = 1 { ClientMaxPort = 1, ClientMinPort = 2,
    //   Topology = 3 { override_total_compute = 4 } } }, plugin_api_version = 3.
    let bytes = wire!(
        [0x0a, 0x01, 0x80], // msgpack_config = 1
        [0x12, 0x0c, 0x0a, 0x0a],
        [0x08, 0x90, 0x71], // 14480
        [0x10, 0xb0, 0x6d], // 14000
        [0x1a, 0x02, 0x20, 0x07],
        [0x1a, 0x06],
        "v0.1.0",
    );
    let req = base::SetConfigRequest::decode(&bytes[..]).unwrap();
    let driver = req.nomad_config.as_ref().unwrap().driver.as_ref().unwrap();
    assert_eq!(driver.client_max_port, 14480);
    assert_eq!(driver.client_min_port, 14000);
    assert_eq!(driver.topology.as_ref().unwrap().override_total_compute, 7);
    assert_eq!(req.plugin_api_version, "v0.1.0");
    assert_eq!(req.encode_to_vec(), bytes);
}

#[test]
fn stdio_and_broker_shapes() {
    use proto::plugin::{ConnInfo, StdioData, conn_info::Knock, stdio_data::Channel};
    let data = StdioData {
        channel: Channel::Stderr as i32,
        data: b"x".to_vec(),
    };
    assert_eq!(data.encode_to_vec(), vec![0x08, 0x02, 0x12, 0x01, b'x']);
    let info = ConnInfo {
        service_id: 1,
        network: String::new(),
        address: String::new(),
        knock: Some(Knock {
            knock: true,
            ack: false,
            error: String::new(),
        }),
    };
    assert_eq!(
        info.encode_to_vec(),
        vec![0x08, 0x01, 0x22, 0x02, 0x08, 0x01]
    );
    assert_eq!(proto::plugin::Empty {}.encode_to_vec(), Vec::<u8>::new());
}
