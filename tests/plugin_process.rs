//! The plugin as a process: what it does before and around the handshake.

mod common;

use common::plugin::{MAGIC_COOKIE, MAGIC_COOKIE_KEY, plugin_bin};
use common::{Plugin, within};
use std::process::{Command, Stdio};
use std::time::Duration;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Runs the plugin binary with `env` only and returns (exit code, stdout, stderr).
fn run_with_env(env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(plugin_bin())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the plugin binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_run_without_the_magic_cookie() {
    for env in [&[][..], &[(MAGIC_COOKIE_KEY, "wrong")][..]] {
        let (code, stdout, stderr) = run_with_env(env);
        assert_eq!(code, Some(1), "exit code with env {env:?}");
        assert_eq!(stdout, "", "nothing may reach stdout without the cookie");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        assert!(stderr.contains("This binary is a plugin"), "{stderr:?}");
    }
}

#[test]
fn refuses_a_host_without_protocol_2() {
    let (code, stdout, stderr) = run_with_env(&[
        (MAGIC_COOKIE_KEY, MAGIC_COOKIE),
        ("PLUGIN_PROTOCOL_VERSIONS", "1"),
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert!(stderr.contains("protocol versions"), "{stderr:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ignores_sigint_like_go_plugins() {
    let mut plugin = Plugin::launch().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin.pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(plugin.is_alive(), "the plugin died of SIGINT");
    let status = within(
        5.0,
        "health Check after SIGINT",
        plugin.health().check(HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .expect("health Check")
    .into_inner()
    .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    plugin.assert_clean_io();
    plugin.shutdown().await;
}
