//! `init` (its plan and changes, `--dry-run` and a second run making no changing tool call)
//! and `doctor` on a set-up and a broken host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::potctl::{golden, normalize, ok, potctl, text};
use crate::{PLUGIN, fresh_host};
use nomad_harness::SimHost;
use serde_json::Value as Json;

/// Whether a simulated tool call can change the host.
fn mutates(argv: &[String]) -> bool {
    let has = |words: &[&str]| argv.iter().skip(1).any(|a| words.contains(&a.as_str()));
    match argv[0].as_str() {
        "zfs" => !matches!(argv.get(1).map(String::as_str), Some("list" | "get")),
        "sysctl" => argv.iter().any(|a| a.contains('=')),
        "kldstat" => false,
        "pfctl" => has(&["-f", "-e", "-d", "-F"]),
        "ifconfig" => has(&[
            "create", "destroy", "addm", "inet", "inet6", "up", "vnet", "name",
        ]),
        _ => true,
    }
}

#[test]
fn init_dry_run_changes_nothing_and_init_is_idempotent() {
    let (sim, pf_conf) = fresh_host();
    let pf = pf_conf.to_str().unwrap();
    let fs_root = sim.dir.join("root/opt/pot");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mode_before = mode(&fs_root);

    let before = sim.calls().len();
    let plan = ok(&sim, &["init", "--dry-run", "--pf-conf", pf]);
    golden("potctl/init-dry-run.txt", &normalize(&plan, &sim, &[]));
    let changed: Vec<String> = sim.calls()[before..]
        .iter()
        .filter(|c| mutates(&c.argv))
        .map(|c| c.line())
        .collect();
    assert!(
        changed.is_empty(),
        "--dry-run changed the host: {changed:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&pf_conf).unwrap(),
        "ext_if = \"em0\"\npass all\n"
    );
    assert!(!pf_conf.with_extension("conf.bkp-pot").exists());
    assert_eq!(mode(&fs_root), mode_before);
    assert_eq!(sim.tool("kldstat", &["-q", "-m", "pf"], "").0, 1);

    let done = ok(&sim, &["init", "--pf-conf", pf]);
    golden("potctl/init.txt", &normalize(&done, &sim, &[]));
    assert_eq!(
        std::fs::read_to_string(&pf_conf).unwrap(),
        "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\next_if = \"em0\"\npass all\n"
    );
    assert_eq!(
        std::fs::read_to_string(sim.dir.join("root/etc/pf.conf.bkp-pot")).unwrap(),
        "ext_if = \"em0\"\npass all\n"
    );
    assert_eq!(mode(&fs_root), 0o750);
    sim.tool_ok("kldstat", &["-q", "-m", "pf"]);
    assert_eq!(
        sim.tool_ok("pfctl", &["-a", "pot-nat", "-s", "nat"])
            .lines()
            .count(),
        1
    );
    assert!(
        sim.tool_ok("ifconfig", &["-a", "-g", "bridge"])
            .contains("inet 10.192.0.1 ")
    );
    for ds in ["zroot/pot/bases", "zroot/pot/cache"] {
        sim.tool_ok("zfs", &["list", ds]);
    }

    let before = sim.calls().len();
    assert_eq!(
        ok(&sim, &["init", "--pf-conf", pf]),
        "nothing to do: the host is set up\n"
    );
    let changed: Vec<String> = sim.calls()[before..]
        .iter()
        .filter(|c| mutates(&c.argv))
        .map(|c| c.line())
        .collect();
    assert!(
        changed.is_empty(),
        "a second init changed the host: {changed:?}"
    );
    let plan: Json =
        serde_json::from_str(&ok(&sim, &["--json", "init", "--dry-run", "--pf-conf", pf])).unwrap();
    assert_eq!(plan, serde_json::json!({"dry_run": true, "changes": []}));
    sim.assert_clean("after potctl init");
}

/// A Nomad agent config whose plugin_dir holds the real plugin binary.
fn nomad_config(sim: &SimHost) -> (PathBuf, PathBuf) {
    let plugin_dir = sim.tmp.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::os::unix::fs::symlink(PLUGIN, plugin_dir.join("nomad-pot-driver")).unwrap();
    let file = sim.tmp.path().join("nomad.hcl");
    std::fs::write(
        &file,
        format!(
            "data_dir = \"/var/db/nomad\"\nplugin_dir = \"{}\"\n\nplugin \"nomad-pot-driver\" {{\n  config {{\n    enabled = true\n  }}\n}}\n",
            plugin_dir.display()
        ),
    )
    .unwrap();
    (file, plugin_dir)
}

#[test]
fn doctor_passes_on_a_set_up_host() {
    let (sim, pf_conf) = fresh_host();
    let pf = pf_conf.to_str().unwrap();
    ok(&sim, &["init", "--pf-conf", pf]);
    let (nomad, plugin_dir) = nomad_config(&sim);
    let args = [
        "doctor",
        "--pf-conf",
        pf,
        "--nomad-config",
        nomad.to_str().unwrap(),
    ];
    let out = ok(&sim, &args);
    golden(
        "potctl/doctor-healthy.txt",
        &normalize(&out, &sim, &[(&plugin_dir, "PLUGINS")]),
    );
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let report: Json = serde_json::from_str(&ok(&sim, &json_args)).unwrap();
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "root",
            "tools",
            "zfs_root",
            "racct",
            "vimage",
            "pf",
            "pf_conf",
            "pf_anchors",
            "pot_conf",
            "plugin_dir",
            "agent_config",
            "plugin"
        ]
    );
}

#[test]
fn doctor_names_a_fix_for_each_failure_on_a_broken_host() {
    let (sim, pf_conf) = fresh_host();
    sim.tool_ok("sysctl", &["kern.racct.enable=0"]);
    let nomad = sim.tmp.path().join("nomad.hcl");
    std::fs::write(&nomad, "data_dir = \"/nonexistent/nomad\"\n").unwrap();
    let args = [
        "doctor",
        "--pf-conf",
        pf_conf.to_str().unwrap(),
        "--nomad-config",
        nomad.to_str().unwrap(),
    ];
    let out = potctl(&sim, &args);
    assert_eq!(out.status.code(), Some(1));
    golden(
        "potctl/doctor-broken.txt",
        &normalize(&text(&out.stdout), &sim, &[]),
    );
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let report: Json = serde_json::from_str(&text(&potctl(&sim, &json_args).stdout)).unwrap();
    assert_eq!(report["ok"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .inspect(|c| assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}"))
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        [
            "zfs_root",
            "racct",
            "pf",
            "pf_conf",
            "pf_anchors",
            "plugin_dir",
            "agent_config",
            "plugin"
        ]
    );
}
