//! Test support: an engine for a simulated host (`freebsd-sim`), configured as its `init`
//! printed, with the host's own directory allowed for `file://` images.

use super::{Engine, EngineConfig, Overrides};
use nomad_harness::sim::SimHost;
use std::path::PathBuf;

pub(crate) fn config_on(sim: &SimHost) -> EngineConfig {
    let c = &sim.config;
    let s = |k: &str| Some(c[k].as_str().expect(k).to_string());
    let p = |k: &str| s(k).map(PathBuf::from);
    let o = Overrides {
        tool_path: s("tool_path"),
        zfs_root: s("zfs_root"),
        fs_root: p("fs_root"),
        cache_dir: p("cache_dir"),
        tmp_dir: p("tmp_dir"),
        state_dir: p("state_dir"),
        lock_file: p("lock_file"),
        pot_conf_dir: p("pot_conf_dir"),
        ..Default::default()
    };
    let mut cfg = EngineConfig::resolve(&o).expect("the simulated host's config");
    cfg.allowed_image_dirs = vec![sim.tmp.path().to_path_buf()];
    cfg
}

pub(crate) fn engine_on(sim: &SimHost) -> Engine {
    Engine::new(config_on(sim), std::sync::Arc::new(|_, _| {}))
}

/// The argv of every tool call the host logged from `mark` on.
pub(crate) fn calls_since(sim: &SimHost, mark: usize) -> Vec<Vec<String>> {
    sim.calls()[mark..].iter().map(|c| c.argv.clone()).collect()
}
