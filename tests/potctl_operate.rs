//! potctl's operate, set-up and check commands against a simulated host: the real `potctl`
//! binary, the real plugin binary, `freebsd-sim`'s call log and `check`.

mod common;

use common::potctl::{POTCTL, golden, normalize, ok, potctl, sim_with_image, text};
use nomad_harness::{FileServer, SimHost};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLUGIN: &str = env!("CARGO_BIN_EXE_nomad-pot-driver");

/// A job whose task says "up", then loops until SIGINT or SIGTERM, which it answers with
/// "bye" and the signal's name; `settings` go into the task next to its config.
fn looping_job(sim: &SimHost, settings: &str) -> PathBuf {
    let path = sim.tmp.path().join("loop.nomad.hcl");
    std::fs::write(
        &path,
        format!(
            r#"job "loop" {{
  group "g" {{
    task "looper" {{
      driver = "pot"
{settings}
      config {{
        image   = "http://127.0.0.1:1/unused"
        pot     = "demo"
        tag     = "1.0"
        command = "/bin/sh"
        args    = ["-c", "for s in INT TERM; do trap \"echo bye $s; exit 0\" $s; done; echo up; while :; do sleep 0.1; done"]
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    path
}

fn potctl_dirs(sim: &SimHost) -> usize {
    std::fs::read_dir(sim.dir.join("root/var/db/nomad-pot-driver/potctl"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn run_streams_the_demo_job_and_exits_with_its_code() {
    let (sim, image) = sim_with_image();
    let out = potctl(
        &sim,
        &["run", "nomad-jobs/demo.nomad.hcl", "--image", &image],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "hello from hello in a jail\ntask dirs mounted\n"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("this goes to stderr\n"), "{stderr}");
    assert!(stderr.contains("==> Imported image demo_1.0\n"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .ends_with("exited with code 3; destroyed"),
        "{stderr}"
    );
    sim.assert_clean("after potctl run");
    assert_eq!(potctl_dirs(&sim), 0, "potctl's alloc dir stays behind");
}

#[test]
fn run_over_http_reports_progress_as_lines_and_json() {
    let (sim, _) = sim_with_image();
    let server = FileServer::serve(&sim.images_dir());
    let out = potctl(
        &sim,
        &[
            "--json",
            "run",
            "nomad-jobs/demo.nomad.hcl",
            "--image",
            &server.url(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = text(&out.stderr);
    let lines: Vec<Json> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Not a terminal: each progress report is a line of its own, no bar.
    assert!(!stderr.contains('\r'));
    assert!(
        lines.iter().any(|l| l["event"]
            .as_str()
            .is_some_and(|e| e.starts_with("Downloading image demo_1.0: 100% of"))),
        "{stderr}"
    );
    let result = &lines.last().unwrap()["result"];
    assert_eq!(result["exit_code"], 3);
    assert_eq!(result["signal"], 0);
    sim.assert_clean("after potctl run over http");
}

#[test]
fn run_stops_and_tears_down_on_sigterm() {
    let (sim, image) = sim_with_image();
    let job = looping_job(&sim, "");
    let (status, rest, stderr) = run_until_sigterm(&sim, &job, &image);
    assert_eq!(status.code(), Some(128 + 15));
    // No kill_signal in the job: the plugin's SIGINT, as under Nomad.
    assert_eq!(rest, "bye INT\n", "the task got SIGINT first");
    assert!(
        stderr.contains("interrupted by SIGTERM: stopped and destroyed"),
        "{stderr}"
    );
    sim.assert_clean("after an interrupted potctl run");
    assert_eq!(potctl_dirs(&sim), 0);
}

/// `potctl run JOB` until the task says "up", then SIGTERM to potctl: its exit status, the
/// task's further stdout and potctl's stderr.
fn run_until_sigterm(
    sim: &SimHost,
    job: &Path,
    image: &str,
) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(POTCTL)
        .arg("--sim")
        .arg(&sim.dir)
        .args(["run", job.to_str().unwrap(), "--image", image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "potctl run ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, rest, stderr)
}

/// Writes a job with one task `name` of the demo image: `settings` next to its config, `script`
/// run by /bin/sh.
fn job_file(sim: &SimHost, name: &str, settings: &str, script: &str) -> PathBuf {
    let path = sim.tmp.path().join(format!("{name}.nomad.hcl"));
    std::fs::write(
        &path,
        format!(
            r#"job "{name}" {{
  group "g" {{
    task "{name}" {{
      driver = "pot"
{settings}
      config {{
        image   = "http://127.0.0.1:1/unused"
        pot     = "demo"
        tag     = "1.0"
        command = "/bin/sh"
        args    = ["-c", {script:?}]
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    path
}

/// The rules of every `rctl -a` and the `cpuset -l` calls the simulated host was given.
fn limit_calls(sim: &SimHost) -> (Vec<String>, Vec<String>) {
    let lines: Vec<String> = sim.calls().iter().map(|c| c.line()).collect();
    let rules = lines
        .iter()
        .filter_map(|l| l.strip_prefix("rctl -a "))
        .flat_map(|l| l.split(' ').map(String::from))
        .collect();
    let cpusets = lines
        .into_iter()
        .filter(|l| l.starts_with("cpuset -l"))
        .collect();
    (rules, cpusets)
}

#[test]
fn run_applies_the_jobs_env_user_and_resources() {
    let (sim, image) = sim_with_image();
    sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    let job = job_file(
        &sim,
        "show",
        r#"      user = "nobody"
      env {
        GREETING   = "hello"
        WHERE      = "${NOMAD_TASK_NAME} in ${NOMAD_ALLOC_DIR}, ${NOMAD_FROM_FLAG}"
        OVERRIDDEN = "by the job"
        LITERAL    = "$${NOMAD_TASK_NAME}"
      }
      resources {
        cpu        = 500
        memory     = 64
        memory_max = 128
      }"#,
        r#"id -u; echo "$GREETING|$WHERE|$OVERRIDDEN|$LITERAL"; echo "$NOMAD_CPU_LIMIT $NOMAD_MEMORY_LIMIT $NOMAD_MEMORY_MAX_LIMIT""#,
    );
    let out = potctl(
        &sim,
        &[
            "run",
            job.to_str().unwrap(),
            "--image",
            &image,
            "--env",
            "OVERRIDDEN=by a flag",
            "--env",
            "NOMAD_FROM_FLAG=flag var",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "65534\nhello|show in /alloc, flag var|by a flag|${NOMAD_TASK_NAME}\n500 64 128\n"
    );
    let (rules, cpusets) = limit_calls(&sim);
    let pot = rules
        .first()
        .and_then(|r| r.strip_prefix("jail:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no rctl rule: {rules:?}"))
        .to_string();
    assert!(pot.starts_with("show_"), "{rules:?}");
    // memory_max wins over memory (and is reported); cpu is a reservation, not a cap.
    assert_eq!(
        rules,
        [
            format!("jail:{pot}:memoryuse:deny={}", 128 << 20),
            format!("jail:{pot}:memoryuse:devctl={}", 128 << 20),
        ]
    );
    assert!(cpusets.is_empty(), "{cpusets:?}");
    sim.assert_clean("after a potctl run with resources");
    assert_eq!(potctl_dirs(&sim), 0);
}

#[test]
fn run_stops_with_the_jobs_kill_signal_and_timeout() {
    let (sim, image) = sim_with_image();
    sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    // The task outlives its kill signal by 3 s: with kill_timeout 1 s it is killed first.
    let job = job_file(
        &sim,
        "slow",
        r#"      kill_signal  = "SIGUSR1"
      kill_timeout = "1s"
      resources {
        cores = 1
      }"#,
        "trap 'echo got USR1; sleep 3; echo late; exit 0' USR1; \
         trap 'echo got TERM; exit 0' TERM; trap 'echo got INT; exit 0' INT; \
         echo up; while :; do sleep 0.1; done",
    );
    let (status, rest, stderr) = run_until_sigterm(&sim, &job, &image);
    assert_eq!(status.code(), Some(128 + 15), "{stderr}");
    assert_eq!(rest, "got USR1\n", "{stderr}");
    assert!(
        stderr.contains("SIGTERM: stopping the task with SIGUSR1 (kill_timeout 1s)"),
        "{stderr}"
    );
    // One reserved core: CPU 0 (no pcpu cap without cpu_hard_limit); Nomad's default memory,
    // 300 MB.
    let (rules, cpusets) = limit_calls(&sim);
    assert_eq!(cpusets, ["cpuset -l 0 -j 1"]);
    let rules: Vec<&str> = rules
        .iter()
        .map(|r| r.splitn(3, ':').nth(2).unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            format!("memoryuse:deny={}", 300 << 20),
            format!("memoryuse:devctl={}", 300 << 20)
        ]
    );
    sim.assert_clean("after an interrupted potctl run");
    assert_eq!(potctl_dirs(&sim), 0);
}

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
    let log = std::fs::read_to_string(started["stdout"].as_str().unwrap()).unwrap();
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
