//! Fault injection (`freebsd-sim fault DIR …`, `DIR/state/faults.json`), through the built binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::Host;

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn nth_matching_call_fails_with_the_given_code_and_stderr() {
    let h = Host::new("fault-nth");
    let out = h.fault(&[
        "zfs",
        "--word",
        "create",
        "--nth",
        "2",
        "--fail",
        "5",
        "--stderr",
        "zfs: boom",
    ]);
    assert!(out.status.success(), "{out:?}");
    // Calls without the word do not count.
    assert_eq!(code(&h.tool("zfs", &["list", "-H", "zroot"])), Some(0));
    assert_eq!(code(&h.tool("zfs", &["create", "zroot/pot/a"])), Some(0));
    let failed = h.tool("zfs", &["create", "zroot/pot/b"]);
    assert_eq!(code(&failed), Some(5));
    assert_eq!(String::from_utf8_lossy(&failed.stderr), "zfs: boom\n");
    // The failed call changed nothing; the third call is normal again.
    assert_eq!(code(&h.tool("zfs", &["list", "zroot/pot/b"])), Some(1));
    assert_eq!(code(&h.tool("zfs", &["create", "zroot/pot/b"])), Some(0));
    let calls = h.calls();
    let faulted: Vec<_> = calls.iter().filter(|c| c.get("fault").is_some()).collect();
    assert_eq!(faulted.len(), 1, "{calls:?}");
    assert_eq!(faulted[0]["fault"], "fail");
    assert_eq!(faulted[0]["exit"], 5);
    assert_eq!(faulted[0]["argv"][2], "zroot/pot/b");
    let list: serde_json::Value =
        serde_json::from_slice(&h.fault(&["--list"]).stdout).expect("--list prints JSON");
    assert_eq!(
        (list[0]["seen"].as_u64(), list[0]["fired"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn every_call_fails_until_cleared() {
    let h = Host::new("fault-every");
    assert!(h.fault(&["sysctl", "--fail", "1"]).status.success());
    for _ in 0..3 {
        let o = h.tool("sysctl", &["-n", "hw.ncpu"]);
        assert_eq!(code(&o), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "sysctl: injected failure\n"
        );
    }
    assert!(h.fault(&["--clear"]).status.success());
    assert_eq!(code(&h.tool("sysctl", &["-n", "hw.ncpu"])), Some(0));
}

#[test]
fn concurrent_calls_count_exactly_once() {
    let h = Host::new("fault-race");
    assert!(
        h.fault(&["sysctl", "--nth", "4", "--fail", "9"])
            .status
            .success()
    );
    let children: Vec<_> = (0..12)
        .map(|_| {
            Command::new(h.0.join("bin/sysctl"))
                .args(["-n", "hw.ncpu"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<_> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(9)).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        11,
        "{codes:?}"
    );
}

#[test]
fn a_timed_hang_then_does_the_work() {
    let h = Host::new("fault-hang");
    assert!(
        h.fault(&["zfs", "--word", "create", "--hang", "0.5"])
            .status
            .success()
    );
    let t0 = Instant::now();
    assert_eq!(code(&h.tool("zfs", &["create", "zroot/pot/slow"])), Some(0));
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert_eq!(code(&h.tool("zfs", &["list", "zroot/pot/slow"])), Some(0));
    let calls = h.calls();
    let create: Vec<_> = calls.iter().filter(|c| c["argv"][1] == "create").collect();
    assert_eq!(
        create.len(),
        2,
        "a hang line, then the call's own: {calls:?}"
    );
    assert_eq!(create[0]["fault"], "hang");
    assert!(create[0]["pid"].as_u64().is_some());
    assert_eq!(create[1]["exit"], 0);
}

/// A hang without a time lasts until its caller dies; then it ends without doing the work.
#[test]
fn an_endless_hang_ends_with_its_caller() {
    let h = Host::new("fault-orphan");
    assert!(
        h.fault(&["zfs", "--word", "create", "--hang"])
            .status
            .success()
    );
    let zfs = h.0.join("bin/zfs");
    // A shell that runs the tool in the background and exits: the tool is orphaned.
    let sh = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{} create zroot/pot/never & sleep 0.5",
            zfs.display()
        ))
        .output()
        .unwrap();
    assert!(sh.status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = h.calls().iter().find_map(|c| c["pid"].as_u64()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no hang recorded");
        std::thread::sleep(Duration::from_millis(20));
    };
    while Path::new(&format!("/proc/{pid}")).exists() && is_running(pid) {
        assert!(Instant::now() < deadline, "the orphaned hang did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(code(&h.tool("zfs", &["list", "zroot/pot/never"])), Some(1));
}

fn is_running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn bad_fault_commands_are_refused() {
    let h = Host::new("fault-bad");
    for args in [
        &["nosuchtool", "--fail", "1"][..],
        &["zfs"],
        &["zfs", "--fail", "1", "--hang"],
        &["zfs", "--fail", "0"],
        &["zfs", "--nth", "0", "--fail", "1"],
        &["zfs", "--hang", "--stderr", "x"],
        &["zfs", "--bogus"],
    ] {
        let o = h.fault(args);
        assert_eq!(code(&o), Some(64), "{args:?}: {o:?}");
    }
    assert!(!h.0.join("state/faults.json").exists());
}
