//! `start`, `exec`, `stop` (the recorded stop settings, or the flags), `destroy` and `prepare`;
//! bad task settings refused before anything is made; pots of others left alone.

use std::path::PathBuf;

use crate::common::potctl::{POTCTL, ok, potctl, sim_with_image, text};
use crate::{job_file, looping_job, potctl_dirs};
use nomad_harness::SimHost;
use serde_json::Value as Json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn stop_uses_the_stop_settings_start_recorded_unless_told_otherwise() {
    let (sim, image) = sim_with_image();
    let job = job_file(
        &sim,
        "traps",
        r#"      kill_signal = "SIGUSR1""#,
        "trap 'echo got USR1; exit 0' USR1; trap 'echo got TERM; exit 0' TERM; \
         echo up; while :; do sleep 0.1; done",
    );
    let start = || -> (String, PathBuf) {
        let started: Json = serde_json::from_str(&ok(
            &sim,
            &["--json", "start", job.to_str().unwrap(), "--image", &image],
        ))
        .unwrap();
        let log = PathBuf::from(started["stdout"].as_str().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&log).unwrap_or_default() != "up\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "the task never said up"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (started["pot"].as_str().unwrap().to_string(), log)
    };
    let (recorded, recorded_log) = start();
    ok(&sim, &["stop", &recorded]);
    assert_eq!(
        std::fs::read_to_string(&recorded_log).unwrap(),
        "up\ngot USR1\n"
    );
    let (told, told_log) = start();
    ok(
        &sim,
        &["stop", &told, "--signal", "SIGTERM", "--timeout", "5"],
    );
    assert_eq!(
        std::fs::read_to_string(&told_log).unwrap(),
        "up\ngot TERM\n"
    );
    for pot in [&recorded, &told] {
        ok(&sim, &["destroy", pot]);
    }
    sim.assert_clean("after potctl destroy");
    assert_eq!(potctl_dirs(&sim), 0);
}

#[test]
fn bad_task_settings_are_refused_before_anything_is_made() {
    let (sim, image) = sim_with_image();
    for (settings, says) in [
        (
            "      resources {\n        memory = \"lots\"\n      }",
            "task \"bad\": resources.memory: \"lots\" is not a whole number of MB",
        ),
        (
            "      resources {\n        cpu = -100\n      }",
            "task \"bad\": resources.cpu: -100 is not a whole number of MHz",
        ),
        (
            "      kill_signal = \"SIGNOPE\"",
            "task \"bad\": kill_signal: \"SIGNOPE\" is not a signal name",
        ),
        (
            "      env {\n        A = \"${NOMAD_META_owner}\"\n      }",
            "task \"bad\": env.A: ${NOMAD_META_owner} is not a variable potctl sets",
        ),
        (
            "      resources {\n        cores = 64\n      }",
            "task \"bad\": resources: cores: 64 asked for, the node has",
        ),
    ] {
        let job = job_file(&sim, "bad", settings, "exit 0");
        let before = sim.calls().len();
        for cmd in ["run", "start"] {
            let out = potctl(&sim, &[cmd, job.to_str().unwrap(), "--image", &image]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {settings}: {out:?}");
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains(&job.display().to_string()) && stderr.contains(says),
                "{cmd} {settings}: {stderr}"
            );
        }
        let made: Vec<String> = sim.calls()[before..]
            .iter()
            .map(|c| c.line())
            .filter(|l| !l.starts_with("sysctl -n") && !l.starts_with("zfs list"))
            .collect();
        assert!(made.is_empty(), "{settings}: {made:?}");
        sim.assert_clean("after a refused job");
        assert_eq!(potctl_dirs(&sim), 0);
    }
}

#[test]
fn start_exec_stop_destroy_a_pot() {
    let (sim, image) = sim_with_image();
    let job = looping_job(&sim, "");
    let started: Json = serde_json::from_str(&ok(
        &sim,
        &["--json", "start", job.to_str().unwrap(), "--image", &image],
    ))
    .unwrap();
    let pot = started["pot"].as_str().unwrap().to_string();
    assert!(pot.starts_with("looper_"), "{started}");
    let stdout = wait_for_up(&started);

    let out = potctl(
        &sim,
        &["exec", &pot, "--", "/bin/sh", "-c", "echo in jail; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), "in jail\n");
    let exec: Json = serde_json::from_str(&text(
        &potctl(&sim, &["--json", "exec", &pot, "--", "/bin/echo", "hi"]).stdout,
    ))
    .unwrap();
    assert_eq!(exec["stdout"], "hi\n");
    assert_eq!(exec["exit"]["exit_code"], 0);

    assert_eq!(
        ok(&sim, &["stop", &pot]),
        format!("stopped pot {pot}: the task exited with 0\n")
    );
    // The job has no kill_signal: `potctl start` recorded the plugin's SIGINT for it.
    let log = std::fs::read_to_string(&stdout).unwrap();
    assert_eq!(log, "up\nbye INT\n");
    let destroyed: Json = serde_json::from_str(&ok(&sim, &["--json", "destroy", &pot])).unwrap();
    assert_eq!(
        destroyed,
        serde_json::json!({"pot": pot, "destroyed": true})
    );
    sim.assert_clean("after potctl destroy");
    assert_eq!(potctl_dirs(&sim), 0);

    let again = potctl(&sim, &["destroy", &pot]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("was not created by this driver"));
}

/// A task, and a command run in its pot, start with the default signal dispositions, whatever
/// their starter ignored. A potctl run in the background from a script (where `&` ignores
/// SIGINT) passed an ignored SIGINT on to its task, which no trap can catch: every stop ended
/// in SIGKILL.
#[test]
fn a_task_answers_signals_that_potctl_ignored() {
    let (sim, image) = sim_with_image();
    let job = looping_job(&sim, "");
    let out = potctl_ignoring_int(
        &sim,
        &["--json", "start", job.to_str().unwrap(), "--image", &image],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let started: Json = serde_json::from_slice(&out.stdout).unwrap();
    let pot = started["pot"].as_str().unwrap().to_string();
    let stdout = wait_for_up(&started);
    let exec = potctl_ignoring_int(
        &sim,
        &[
            "exec",
            &pot,
            "--",
            "/bin/sh",
            "-c",
            "kill -INT $$; echo survived",
        ],
    );
    assert_eq!(exec.status.code(), Some(128 + 2), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "");
    assert_eq!(
        ok(&sim, &["stop", &pot]),
        format!("stopped pot {pot}: the task exited with 0\n")
    );
    assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "up\nbye INT\n");
    ok(&sim, &["destroy", &pot]);
    sim.assert_clean("after the task's stop and destroy");
}

/// potctl `args`, started with SIGINT and SIGTERM ignored: sh sets them so, and exec keeps them.
fn potctl_ignoring_int(sim: &SimHost, args: &[&str]) -> std::process::Output {
    Command::new("/bin/sh")
        .args(["-c", "trap '' INT TERM; exec \"$@\"", "sh", POTCTL, "--sim"])
        .arg(&sim.dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout file of the looping task `started`, once the task has said "up": its traps are
/// set then, so a SIGINT gets its "bye" rather than killing the shell.
fn wait_for_up(started: &Json) -> String {
    let stdout = started["stdout"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&stdout)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the task never said up");
        std::thread::sleep(Duration::from_millis(20));
    }
    stdout
}

#[test]
fn stop_and_destroy_leave_pots_of_others_alone() {
    let (sim, image) = sim_with_image();
    // An imported image is a pot the driver did not create as a task.
    ok(
        &sim,
        &["prepare", "nomad-jobs/demo.nomad.hcl", "--image", &image],
    );
    let before = sim.calls().len();
    for cmd in ["stop", "destroy"] {
        let out = potctl(&sim, &[cmd, "demo_1_0"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        assert!(text(&out.stderr).contains("not touching it"));
    }
    let mutating: Vec<String> = sim.calls()[before..]
        .iter()
        .map(|c| c.line())
        .filter(|l| !l.starts_with("zfs list"))
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
}

#[test]
fn prepare_imports_the_image_once() {
    let (sim, image) = sim_with_image();
    let first: Json = serde_json::from_str(&ok(
        &sim,
        &[
            "--json",
            "prepare",
            "nomad-jobs/demo.nomad.hcl",
            "--image",
            &image,
        ],
    ))
    .unwrap();
    assert_eq!(first["image"], "demo_1_0");
    assert_eq!(first["ready"], true);
    let receives = |sim: &SimHost| {
        sim.calls()
            .iter()
            .filter(|c| c.line().starts_with("zfs receive"))
            .count()
    };
    assert_eq!(receives(&sim), 1);
    let again = ok(
        &sim,
        &["prepare", "nomad-jobs/demo.nomad.hcl", "--image", &image],
    );
    assert_eq!(again, format!("image demo_1_0 from {image} is imported\n"));
    assert_eq!(receives(&sim), 1, "a second prepare imports again");
}
