//! PluginInfo, the agent and task schemas, SetConfig, the fingerprint, and invalid task
//! configs.

use crate::common::cty::{self, find_attr, norm_type};
use crate::common::env::*;
use crate::common::{Plugin, SimHost, TestTask, within};
use nomad_pot_driver::proto::base::{PluginInfoRequest, PluginType};
use nomad_pot_driver::proto::drivers::{
    CapabilitiesRequest, DestroyTaskRequest, FingerprintRequest, FingerprintResponse,
    StartTaskRequest, driver_capabilities::FsIsolation, fingerprint_response::HealthState,
};
use nomad_pot_driver::proto::structs::attribute;
use serde_json::{Value as Json, json};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// `1.2.3`, `v1.2.3`, `1.2.3-dev` → (1, 2, 3)
fn parse_semver(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next()?;
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [a, b, c] => Some((*a, *b, *c)),
        _ => None,
    }
}

async fn first_fingerprint(plugin: &Plugin) -> FingerprintResponse {
    let mut driver = plugin.driver();
    within(5.0, "first Fingerprint message", async move {
        let mut stream = driver
            .fingerprint(FingerprintRequest {})
            .await
            .expect("Fingerprint")
            .into_inner();
        stream
            .message()
            .await
            .expect("Fingerprint stream error")
            .expect("Fingerprint stream ended")
    })
    .await
}

async fn assert_health_serving(plugin: &Plugin) {
    let resp = within(
        5.0,
        "health Check",
        plugin.health().check(HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .expect("health Check(\"plugin\")")
    .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32, "health status");
}

#[tokio::test(flavor = "multi_thread")]
async fn info_schemas_and_setconfig() {
    let sim = SimHost::create();
    let plugin = Plugin::launch().await;

    assert_health_serving(&plugin).await;

    let info = within(
        5.0,
        "PluginInfo",
        plugin.base().plugin_info(PluginInfoRequest {}),
    )
    .await
    .expect("PluginInfo")
    .into_inner();
    assert_eq!(info.r#type, PluginType::Driver as i32, "plugin type");
    assert_eq!(info.name, "pot");
    assert_eq!(info.plugin_api_versions, vec![API_VERSION.to_string()]);
    let v = parse_semver(&info.plugin_version)
        .unwrap_or_else(|| panic!("plugin_version {:?} is not a semver", info.plugin_version));
    assert!(
        v > (0, 10, 0),
        "plugin_version {} must be above 0.10.0",
        info.plugin_version
    );

    // Agent schema.
    let schema = config_schema(&plugin).await;
    assert!(schema.block.is_some(), "ConfigSchema spec is empty");
    assert!(
        !cty::object_attrs(&schema).is_empty(),
        "ConfigSchema root must be a non-empty object"
    );

    // Task schema: a superset of the Go driver's (protocol spec §7.3).
    let tspec = task_schema(&plugin).await;
    assert!(
        !cty::object_attrs(&tspec).is_empty(),
        "TaskConfigSchema root must be a non-empty object"
    );
    for key in ["image", "pot", "tag"] {
        let a = find_attr(&tspec, key).unwrap_or_else(|| panic!("task schema lacks {key:?}"));
        assert!(a.required, "{key:?} must be required");
        assert_eq!(norm_type(&a.r#type), "string", "type of {key:?}");
    }
    for (key, ty) in [
        ("command", "string"),
        ("args", "list(string)"),
        ("port_map", "list(map(string))"),
        ("network_mode", "string"),
        ("mount", "list(string)"),
        ("copy", "list(string)"),
        ("mount_read_only", "list(string)"),
        ("extra_hosts", "list(string)"),
        ("attributes", "list(string)"),
    ] {
        let a = find_attr(&tspec, key).unwrap_or_else(|| panic!("task schema lacks {key:?}"));
        assert!(!a.required, "{key:?} must be optional");
        assert_eq!(norm_type(&a.r#type), ty, "type of {key:?}");
    }
    // Every attribute type must be one the agent can parse.
    for (k, _) in cty::object_attrs(&tspec) {
        if let Some(a) = find_attr(&tspec, &k) {
            cty::Ty::parse(&a.r#type).unwrap_or_else(|e| panic!("task schema attr {k:?}: {e}"));
        }
    }

    // Validation launch: SetConfig twice without nomad_config; then the long-lived form.
    let agent = sim.agent_config();
    set_config(&plugin, &agent, false)
        .await
        .expect("SetConfig #1 (nomad_config unset)");
    set_config(&plugin, &agent, false)
        .await
        .expect("SetConfig #2 (nomad_config unset)");
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig with nomad_config");
    // The agent's `plugin "nomad-pot-driver" {}` with no config block must also be accepted.
    set_config(&plugin, &json!({}), false)
        .await
        .expect("SetConfig with an empty config block");
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig again");

    let caps = within(
        5.0,
        "Capabilities",
        plugin.driver().capabilities(CapabilitiesRequest {}),
    )
    .await
    .expect("Capabilities")
    .into_inner()
    .capabilities
    .expect("Capabilities response without capabilities");
    assert!(caps.send_signals, "send_signals");
    assert!(caps.exec, "exec");
    assert_eq!(caps.fs_isolation, FsIsolation::Image as i32, "fs_isolation");

    // Bad agent configs (bypassing the agent's validation) must be rejected, naming the key.
    let bad_value = cty::encode_raw(&json!({"enabled": true, "zfs_root": 5}));
    let err = set_config_bytes(&plugin, bad_value, true)
        .await
        .expect_err("SetConfig with zfs_root = 5 must fail");
    assert!(
        err.message().contains("zfs_root"),
        "error should name zfs_root: {err:?}"
    );
    let mut unknown = sim.agent_config();
    unknown["bogus_option"] = json!("x");
    let err = set_config_bytes(&plugin, cty::encode_raw(&unknown), true)
        .await
        .expect_err("SetConfig with an unknown key must fail");
    assert!(
        err.message().contains("bogus_option"),
        "error should name bogus_option: {err:?}"
    );
    // A good config is still accepted afterwards.
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig after rejected configs");

    sim.assert_clean("after the info scenario");
    plugin.assert_clean_io();
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fingerprint() {
    let env = Env::new().await;
    let fp = first_fingerprint(&env.plugin).await;
    assert_eq!(
        fp.health,
        HealthState::Healthy as i32,
        "health (description {:?})\nplugin stderr:\n{}",
        fp.health_description,
        env.stderr_tail()
    );
    match fp
        .attributes
        .get("driver.pot")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::BoolVal(true)) => {}
        other => panic!("attribute driver.pot must be bool true, got {other:?}"),
    }
    match fp
        .attributes
        .get("driver.pot.version")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::StringVal(s)) if !s.is_empty() => {}
        other => panic!("attribute driver.pot.version must be a non-empty string, got {other:?}"),
    }
    // The simulated host has kern.racct.enable=1.
    match fp
        .attributes
        .get("driver.pot.racct")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::BoolVal(true)) => {}
        other => panic!("attribute driver.pot.racct must be bool true, got {other:?}"),
    }

    // A second plugin whose tool_path has no tools: UNHEALTHY, saying what is missing.
    let broken = Plugin::launch().await;
    let empty = env.sim.empty_dir();
    let cfg = env
        .sim
        .agent_config_with(json!({"tool_path": empty.to_string_lossy()}));
    set_config(&broken, &cfg, true)
        .await
        .expect("SetConfig must accept a tool_path without tools");
    let fp = first_fingerprint(&broken).await;
    assert_eq!(
        fp.health,
        HealthState::Unhealthy as i32,
        "health with no tools: {fp:?}"
    );
    let desc = fp.health_description.to_lowercase();
    assert!(
        [
            "zfs", "jail", "jexec", "jls", "ifconfig", "pfctl", "rctl", "mount", "sysctl", "cpuset"
        ]
        .iter()
        .any(|t| desc.contains(t)),
        "health description should name the missing tool(s): {:?}",
        fp.health_description
    );
    broken.assert_clean_io();
    broken.shutdown().await;

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_task_config() {
    let env = Env::new().await;
    let base = json!({
        // never fetched: configs are validated before anything touches the host
        "image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    });

    let mut unknown = base.clone();
    unknown["foo"] = json!("bar");
    let mut wrong_type = base.clone();
    wrong_type["args"] = json!("not-a-list");
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("image");
    let mut null_image = base.clone();
    null_image["image"] = Json::Null;

    // What Nomad itself says about them.
    let cases = [
        (
            &unknown,
            "foo",
            Some("Invalid label: No argument or block type is named \"foo\"."),
        ),
        (
            &wrong_type,
            "args",
            Some(
                "Incorrect attribute value type: Inappropriate value for attribute \"args\": list of string required.",
            ),
        ),
        (
            &missing,
            "image",
            Some(
                "Missing required argument: The argument \"image\" is required, but no definition was found.",
            ),
        ),
        (&null_image, "image", None),
    ];
    for (cfg, _, msg) in &cases {
        if let Some(msg) = msg {
            let e =
                cty::encode(&env.task_spec, cfg).expect_err("the encoder must reject this config");
            assert!(e.contains(msg), "encoder error {e} should contain {msg}");
        }
    }

    // Sent anyway (bypassing Nomad's validation): InvalidArgument naming the key.
    for (i, (cfg, key, _)) in cases.iter().enumerate() {
        let t = TestTask::new(
            &env.sim.allocs_dir(),
            &format!("bad{i}"),
            cty::encode_raw(cfg),
        );
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        let r = within(
            30.0,
            "StartTask(bad config)",
            env.plugin.driver().start_task(req),
        )
        .await;
        let s = match r {
            Ok(_) => panic!("StartTask accepted a bad config {cfg}"),
            Err(s) => s,
        };
        assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "status for {cfg}: {s:?}"
        );
        assert!(
            s.message().contains(key),
            "error for {cfg} should name {key:?}: {s:?}"
        );
        // Nomad calls DestroyTask after a failed start only for tasks it has a handle for; the
        // plugin must not have kept anything for this id anyway.
        let _ = within(
            10.0,
            "DestroyTask(after failed start)",
            env.plugin.driver().destroy_task(DestroyTaskRequest {
                task_id: t.id(),
                force: true,
            }),
        )
        .await;
    }

    // Still healthy.
    assert_health_serving(&env.plugin).await;
    let fp = first_fingerprint(&env.plugin).await;
    assert_eq!(
        fp.health,
        HealthState::Healthy as i32,
        "fingerprint after bad configs: {fp:?}"
    );

    // Nothing was created on the host.
    let bad_calls: Vec<String> = env
        .sim
        .calls()
        .iter()
        .map(|c| c.line())
        .filter(|l| {
            l.starts_with("zfs clone")
                || l.starts_with("zfs receive")
                || l.starts_with("zfs recv")
                || l == "jail"
                || l.starts_with("jail ")
        })
        .collect();
    assert!(
        bad_calls.is_empty(),
        "bad configs reached the host: {bad_calls:?}"
    );

    env.finish().await;
}
