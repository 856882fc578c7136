//! `plugin-check` against the real plugin and broken ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::PLUGIN;
use crate::common::potctl::{ok, potctl, text};
use nomad_harness::SimHost;
use serde_json::Value as Json;

#[test]
fn plugin_check_shows_what_nomad_sees_of_the_real_plugin() {
    let sim = SimHost::create();
    let out = ok(&sim, &["plugin-check", PLUGIN]);
    let steps: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "binary",
            "handshake",
            "plugin_info",
            "set_config",
            "capabilities",
            "fingerprint",
            "shutdown",
            "ok"
        ],
        "{out}"
    );
    assert!(
        out.contains("plugin_info:  type DRIVER, name \"pot\""),
        "{out}"
    );
    assert!(out.contains("fingerprint:  HEALTHY: healthy"), "{out}");
    let report: Json =
        serde_json::from_str(&ok(&sim, &["--json", "plugin-check", PLUGIN])).unwrap();
    assert_eq!(report["ok"], true);
    assert!(
        report["handshake"]["line"]
            .as_str()
            .unwrap()
            .starts_with("1|2|unix|/")
    );
    assert_eq!(report["plugin_info"]["name"], "pot");
    assert_eq!(report["plugin_info"]["api_versions"][0], "v0.1.0");
    assert_eq!(report["capabilities"]["exec"], true);
    assert_eq!(report["fingerprint"]["health"], "HEALTHY");
    assert_eq!(report["fingerprint"]["attributes"]["driver.pot"], "true");
    assert_eq!(report["shutdown"]["graceful"], true);
}

/// plugin-check's verdict on `path` (with extra args): exit code 1 and the error it names.
fn plugin_check_error(sim: &SimHost, path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--json", "plugin-check"];
    args.extend(extra);
    args.push(path.to_str().unwrap());
    let out = potctl(sim, &args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Json = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(report["ok"], false);
    report["error"].as_str().unwrap().to_string()
}

fn script(sim: &SimHost, name: &str, body: &str, mode: u32) -> PathBuf {
    let path = sim.tmp.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn plugin_check_says_why_a_broken_plugin_would_not_load() {
    let sim = SimHost::create();
    let not_exec = script(&sim, "not-exec", "exit 0", 0o644);
    assert!(
        plugin_check_error(&sim, &not_exec, &[])
            .contains("is not executable: Nomad's loader skips it")
    );

    let chatty = script(&sim, "chatty", "echo starting up; sleep 5", 0o755);
    assert!(plugin_check_error(&sim, &chatty, &[]).contains("Unrecognized remote plugin message"));

    let cookie = script(
        &sim,
        "other-cookie",
        "echo 'This binary is a plugin. These are not meant to be executed directly.' >&2; exit 1",
        0o755,
    );
    let e = plugin_check_error(&sim, &cookie, &[]);
    assert!(
        e.contains("exited (exit status: 1) before the handshake"),
        "{e}"
    );
    assert!(e.contains("This binary is a plugin"), "{e}");

    let silent = script(&sim, "silent", "sleep 5", 0o755);
    let e = plugin_check_error(&sim, &silent, &["--timeout", "1"]);
    assert!(e.contains("no handshake line within 1s"), "{e}");

    let v1 = script(
        &sim,
        "netrpc",
        "echo '1|1|unix|/tmp/x|netrpc'; sleep 5",
        0o755,
    );
    let e = plugin_check_error(&sim, &v1, &[]);
    assert!(e.contains("Plugin version: 1, Client versions: [2]"), "{e}");

    // The real plugin refuses a host that does not speak its protocol version.
    let e = plugin_check_error(&sim, Path::new(PLUGIN), &["--protocol-versions", "1"]);
    assert!(e.contains("this plugin speaks 2"), "{e}");
}
