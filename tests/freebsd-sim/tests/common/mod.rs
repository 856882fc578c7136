//! What the simulator's own tests share: temp dirs removed when dropped (also when a test fails),
//! a simulated host made by `freebsd-sim init` in one, its tools run with an empty environment as
//! the driver may run them, and the binary's other subcommands.

#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_freebsd-sim");

/// `freebsd-sim ARGS`.
pub fn sim(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run freebsd-sim {args:?}: {e}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` every 50 ms until it holds; panics with `what` after `secs`.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh directory `<temp dir>/fsim-<tag>-<pid>`, removed when dropped; derefs to its path.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fsim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A simulated host in a [`TempDir`]; derefs to its directory.
pub struct Host(pub TempDir);

impl Host {
    /// `freebsd-sim init DIR`.
    pub fn new(tag: &str) -> Host {
        Host::init(tag, &[]).0
    }

    /// `freebsd-sim init FLAGS.. DIR`; also returns the agent config `init` printed.
    pub fn init(tag: &str, flags: &[&str]) -> (Host, serde_json::Value) {
        let host = Host(TempDir::new(tag));
        let mut args = vec!["init"];
        args.extend_from_slice(flags);
        args.push(host.dir());
        let init = sim(&args);
        assert!(init.status.success(), "freebsd-sim {args:?}: {init:?}");
        let config = serde_json::from_slice(&init.stdout)
            .unwrap_or_else(|e| panic!("freebsd-sim init printed no JSON ({e}): {init:?}"));
        (host, config)
    }

    /// The host's directory, as an argument.
    pub fn dir(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }

    /// The host's tool `name`, with an empty environment.
    pub fn command(&self, name: &str) -> Command {
        let mut tool = Command::new(self.0.join("bin").join(name));
        tool.env_clear();
        tool
    }

    /// Runs the host's tool `name` with an empty environment.
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        self.command(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"))
    }

    /// The stdout of `name ARGS`, which must succeed.
    pub fn ok(&self, name: &str, args: &[&str]) -> String {
        let o = self.tool(name, args);
        assert!(o.status.success(), "{name} {args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).expect("utf8")
    }

    /// The stderr of `name ARGS`, which must fail with exit 1.
    pub fn fails(&self, name: &str, args: &[&str]) -> String {
        let o = self.tool(name, args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name} {args:?} should fail: {}",
            stderr(&o)
        );
        stderr(&o)
    }

    /// `freebsd-sim check DIR`.
    pub fn check(&self) -> Output {
        sim(&["check", self.dir()])
    }

    /// `freebsd-sim fault DIR ARGS`.
    pub fn fault(&self, args: &[&str]) -> Output {
        let mut all = vec!["fault", self.dir()];
        all.extend_from_slice(args);
        sim(&all)
    }

    /// The lines of `state/calls.jsonl`.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.0.join("state/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Deref for Host {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}
