//! `potctl run`: the demo job's output and exit code, progress lines, SIGTERM teardown, a job's
//! `env {}`, `user` and `resources`, its `kill_signal` and `kill_timeout`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::potctl::{POTCTL, potctl, potctl_with_env, sim_with_image, text};
use crate::{job_file, looping_job, potctl_dirs};
use nomad_harness::{FileServer, ForwardProxy, SimHost};
use serde_json::Value as Json;

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
fn run_through_a_proxy_from_a_server_that_wants_credentials_never_shows_them() {
    // base64("alice:s3cret") and base64("bob:pr0xy").
    let (alice, bob) = ("Basic YWxpY2U6czNjcmV0", "Basic Ym9iOnByMHh5");
    let (sim, _) = sim_with_image();
    let server = FileServer::serve_with_auth(&sim.images_dir(), alice);
    let proxy = ForwardProxy::with_auth(bob);
    let run = |password: &str| {
        let image = server
            .url()
            .replacen("://", &format!("://alice:{password}@"), 1);
        let args = ["run", "nomad-jobs/demo.nomad.hcl", "--image", &image];
        let out = potctl_with_env(&sim, &args, &[("HTTP_PROXY", &proxy.url("bob:pr0xy@"))]);
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in ["alice", "s3cret", "bob", "pr0xy", "wr0ng"] {
            assert!(!shown.contains(secret), "{secret:?} shown: {shown}");
        }
        (out.status.code(), shown)
    };
    let (code, shown) = run("wr0ng");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains(&format!(
            "GET {}demo_1.0.xz.skein: HTTP 401 Unauthorized",
            server.url()
        )),
        "{shown}"
    );
    sim.assert_clean("after a refused image");
    let (code, shown) = run("s3cret");
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.contains("==> Imported image demo_1.0\n"), "{shown}");
    let xz = format!("GET {}demo_1.0.xz HTTP/1.1", server.url());
    let asked = proxy.asked();
    assert!(
        asked
            .iter()
            .any(|(line, auth)| *line == xz && auth.as_deref() == Some(bob)),
        "{asked:?}"
    );
    sim.assert_clean("after potctl run through a proxy");
    assert_eq!(potctl_dirs(&sim), 0);
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
