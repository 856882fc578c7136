//! potctl's operate, set-up and check commands against a simulated host: the real `potctl`
//! binary, the real plugin binary, `freebsd-sim`'s call log and `check`.
//!
//! One test binary, a module per group of commands; the jobs and hosts they share are here.

#[path = "../common/mod.rs"]
mod common;

mod host_setup;
mod plugin_check;
mod pots;
mod run;

use std::path::PathBuf;

use nomad_harness::SimHost;

const PLUGIN: &str = env!("CARGO_BIN_EXE_nomad-pot-driver");

/// A job whose task says "up", then loops until SIGINT or SIGTERM, which it answers with
/// "bye" and the signal's name; `settings` go into the task next to its config.
fn looping_job(sim: &SimHost, settings: &str) -> PathBuf {
    let script = "for s in INT TERM; do trap \"echo bye $s; exit 0\" $s; done; \
                  echo up; while :; do sleep 0.1; done";
    common::potctl::job_file(sim.tmp.path(), "loop", "looper", settings, script)
}

fn potctl_dirs(sim: &SimHost) -> usize {
    std::fs::read_dir(sim.dir.join("root/var/db/nomad-pot-driver/potctl"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A job with one task `name` of the demo image in the host's temp dir
/// ([`common::potctl::job_file`]).
fn job_file(sim: &SimHost, name: &str, settings: &str, script: &str) -> PathBuf {
    common::potctl::job_file(sim.tmp.path(), name, name, settings, script)
}

/// A sim host as fresh as the simulator allows: two of pot's datasets gone, pf's module not
/// loaded, a pf.conf without pot's lines.
fn fresh_host() -> (SimHost, PathBuf) {
    let sim = SimHost::create();
    sim.tool_ok("kldunload", &["pf"]);
    for ds in ["zroot/pot/bases", "zroot/pot/cache"] {
        sim.tool_ok("zfs", &["destroy", "-r", ds]);
    }
    let pf_conf = sim.dir.join("root/etc/pf.conf");
    std::fs::create_dir_all(pf_conf.parent().unwrap()).unwrap();
    std::fs::write(&pf_conf, "ext_if = \"em0\"\npass all\n").unwrap();
    (sim, pf_conf)
}
