//! `potctl --sim DIR` never touches the real host: every subcommand runs in a private mount
//! namespace where `/` is read-only and only the temp dir (which holds DIR) stays writable, so
//! any write outside them fails the command with EROFS.

mod common;

use common::potctl::{self, POTCTL, sim_with_image, text};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PLUGIN: &str = env!("CARGO_BIN_EXE_nomad-pot-driver");

/// A mount namespace held open by a sleeping process, `/` read-only in it apart from `writable`.
struct ReadOnlyRoot {
    holder: Child,
}

impl ReadOnlyRoot {
    fn new(writable: &[&Path]) -> ReadOnlyRoot {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ns(&holder.id().to_string()) == ns("self") {
            assert!(Instant::now() < deadline, "unshare made no mount namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let root = ReadOnlyRoot { holder };
        for dir in writable {
            root.mount(&["--bind".as_ref(), dir.as_os_str(), dir.as_os_str()]);
        }
        root.mount(&["-o".as_ref(), "remount,bind,ro".as_ref(), "/".as_ref()]);
        root
    }

    fn enter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.holder.id().to_string()).arg("-m");
        cmd
    }

    fn mount(&self, args: &[&std::ffi::OsStr]) {
        let out = self.enter().arg("mount").args(args).output().unwrap();
        assert!(out.status.success(), "mount {args:?}: {out:?}");
    }
}

impl Drop for ReadOnlyRoot {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The subcommands `potctl help` lists.
fn subcommands() -> Vec<String> {
    let out = Command::new(POTCTL).arg("help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_subcommand_with_sim_writes_only_under_its_dir_or_a_temp_dir() {
    let (sim, image) = sim_with_image();
    let temp = std::env::temp_dir();
    let ns = ReadOnlyRoot::new(&[&temp, sim.tmp.path()]);
    // The job file and the working directory (export's default -D) are the user's own.
    let work = sim.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let job_file = |name: &str, script: &str| {
        let path = potctl::job_file(&work, name, name, "", script);
        path.to_str().unwrap().to_string()
    };
    let job = &job_file(
        "looper",
        "trap 'exit 0' INT TERM; echo up; while :; do sleep 0.1; done",
    );
    let once = &job_file("once", "echo once; exit 3");
    let run = |args: &[&str]| -> Output {
        ns.enter()
            .arg(format!("--wd={}", work.display()))
            .arg(POTCTL)
            .arg("--sim")
            .arg(&sim.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run potctl in the namespace")
    };
    let mut covered = Vec::new();
    let mut expect = |args: &[&str], code: i32| -> String {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("Read-only file system"),
            "potctl --sim {args:?} wrote outside the simulated host:\n{stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "potctl --sim {args:?}:\n{}\n{stderr}",
            text(&out.stdout)
        );
        covered.push(
            args.iter()
                .find(|a| !a.starts_with("--"))
                .unwrap()
                .to_string(),
        );
        text(&out.stdout)
    };

    expect(&["init"], 0);
    expect(&["prepare", job, "--image", &image], 0);
    let started: serde_json::Value =
        serde_json::from_str(&expect(&["--json", "start", job, "--image", &image], 0)).unwrap();
    let pot = started["pot"].as_str().unwrap().to_string();
    for cmd in ["ls", "ps", "ports", "stats", "config", "images"] {
        expect(&[cmd], 0);
    }
    expect(&["show", &pot], 0);
    expect(&["info", &pot], 0);
    expect(&["exec", &pot, "--", "/bin/echo", "hi"], 0);
    expect(&["stop", &pot], 0);
    expect(&["destroy", &pot], 0);
    expect(&["gc", "--apply"], 0);
    expect(&["export", "-p", "demo_1_0", "-t", "2"], 0);
    assert!(work.join("demo_1_0_2.xz").exists());
    expect(&["run", once, "--image", &image], 3);
    expect(&["images", "gc"], 0);
    // Its plugin_dir default has no plugin in the simulated host, so one check fails.
    let doctor = expect(&["doctor"], 1);
    assert!(doctor.contains("pot's anchor lines"), "{doctor}");
    expect(&["plugin-check", PLUGIN], 0);
    expect(&["completions", "bash"], 0);

    // `demo` makes its own simulated host in a temp dir and reads no --sim; `help` is clap's.
    let mut missing: Vec<String> = subcommands()
        .into_iter()
        .filter(|c| !covered.contains(c) && c != "demo" && c != "help")
        .collect();
    missing.sort();
    assert!(missing.is_empty(), "not run read-only: {missing:?}");
    assert!(
        std::fs::read_to_string(sim.dir.join("root/etc/pf.conf"))
            .unwrap()
            .contains("nat-anchor pot-nat"),
        "init wrote no pf.conf in the simulated host"
    );
    drop(ns);
    sim.assert_clean("after every potctl subcommand");
}
