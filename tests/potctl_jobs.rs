//! `potctl start` of the jobs in `nomad-jobs/` on a simulated host: the group's `network {}`
//! read as Nomad reads it (ports with `to`, dynamic host ports, `dns`), Nomad's port variables in
//! the task's env, and a task that exits at once explained.

mod common;

use common::env::engine_for;
use common::potctl::{golden, ok, potctl, sim_with_image, text};
use nomad_harness::SimHost;
use regex::Regex;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The task's command in a job of `nomad-jobs/`, replaced with one the simulated image has: it
/// prints the task's NOMAD_ port and address variables, then stays up until stopped.
fn job_printing_env(sim: &SimHost, job: &str, command: &str) -> PathBuf {
    let text = std::fs::read_to_string(job).unwrap();
    let line = Regex::new(&format!(
        r#"(?m)^(\s*)command\s*=\s*"{}"\n\s*args\s*=.*\n"#,
        regex::escape(command)
    ))
    .unwrap();
    assert!(line.is_match(&text), "{job} runs no {command}");
    let script = "env | grep -E '^NOMAD_(ADDR|HOST_ADDR|IP|HOST_IP|PORT|ALLOC_PORT|HOST_PORT)_' | sort; \
                  while :; do sleep 0.1; done";
    let text = line.replace(
        &text,
        format!("${{1}}command = \"/bin/sh\"\n${{1}}args    = [\"-c\", \"{script}\"]\n").as_str(),
    );
    let path = sim.tmp.path().join(PathBuf::from(job).file_name().unwrap());
    std::fs::write(&path, text.as_ref()).unwrap();
    path
}

/// A simulated host set up as `potctl init` sets one up, with the demo image.
fn initialised() -> (SimHost, String) {
    let (sim, image) = sim_with_image();
    ok(&sim, &["init"]);
    (sim, image)
}

/// Starts `job`, waits for its env lines on stdout and returns the start's JSON and those lines.
fn start(sim: &SimHost, job: &Path, image: &str, extra: &[&str]) -> (Json, Vec<String>) {
    let mut args = vec!["--json", "start", job.to_str().unwrap(), "--image", image];
    args.extend_from_slice(extra);
    let started: Json = serde_json::from_str(&ok(sim, &args)).unwrap();
    let stdout = PathBuf::from(started["stdout"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&stdout).unwrap_or_default();
        if log.contains("NOMAD_") || std::time::Instant::now() > deadline {
            return (started, log.lines().map(str::to_string).collect());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn destroy(sim: &SimHost, pot: &str) {
    ok(sim, &["stop", pot, "--timeout", "1"]);
    ok(sim, &["destroy", pot]);
    sim.assert_clean("after potctl destroy");
}

/// The job's rdr rules and env with the pot's name, the picked port and the node's address
/// replaced, for a golden file.
fn normalized(sim: &SimHost, started: &Json, env: &[String]) -> String {
    let pot = started["pot"].as_str().unwrap();
    let ports: Json = serde_json::from_str(&ok(sim, &["--json", "ports", pot])).unwrap();
    let published = &ports["published"][0];
    let mut out = format!("ports: {}\n", started["ports"]);
    for rule in published["pf_rules"].as_array().into_iter().flatten() {
        out.push_str(&format!("rule: {}\n", rule.as_str().unwrap()));
    }
    for line in env {
        out.push_str(&format!("env: {line}\n"));
    }
    let mut out = out.replace(pot, "POT");
    for p in started["ports"].as_array().unwrap() {
        if p["origin"] == "dynamic" {
            let port = p["host_port"].as_u64().unwrap();
            assert!((20000..=32000).contains(&port), "{port}");
            out = out.replace(&port.to_string(), "<DYNAMIC>");
        }
    }
    out
}

#[test]
fn nginx_job_gets_a_free_host_port_published_to_port_80() {
    let (sim, image) = initialised();
    let job = job_printing_env(&sim, "nomad-jobs/nginx.nomad.hcl", "/usr/local/sbin/nginx");
    let (started, env) = start(&sim, &job, &image, &[]);
    golden(
        "potctl/start-nginx-dynamic.txt",
        &normalized(&sim, &started, &env),
    );
    // Dynamic ports skip what this pot publishes, and what a pot the `pot` CLI started does.
    let (code, _, err) = sim.tool(
        "pfctl",
        &["-a", "pot-rdr/by-hand", "-f", "-"],
        "rdr pass on em0 proto tcp from any to (em0) port 24000 -> 10.192.0.9 port 80\n",
    );
    assert_eq!(code, 0, "{err}");
    let taken = started["ports"][0]["host_port"].as_u64().unwrap() as u16;
    let published = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(engine_for(&sim).published_host_ports())
        .unwrap();
    assert_eq!(published, [24000, taken].into(), "{published:?}");
    sim.tool_ok("pfctl", &["-a", "pot-rdr/by-hand", "-F", "nat", "-q"]);
    destroy(&sim, started["pot"].as_str().unwrap());
}

#[test]
fn a_port_flag_keeps_the_jobs_to_and_an_undeclared_label_is_refused() {
    let (sim, image) = initialised();
    let job = job_printing_env(&sim, "nomad-jobs/nginx.nomad.hcl", "/usr/local/sbin/nginx");
    let before = sim.calls().len();
    let refused = potctl(
        &sim,
        &[
            "start",
            job.to_str().unwrap(),
            "--image",
            &image,
            "--port",
            "web=8080",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        text(&refused.stderr)
            .contains("--port web: the job's group declares no port \"web\" (it declares http)"),
        "{}",
        text(&refused.stderr)
    );
    let made: Vec<String> = sim.calls()[before..]
        .iter()
        .map(|c| c.line())
        .filter(|l| !l.starts_with("zfs list") && !l.starts_with("sysctl"))
        .collect();
    assert!(made.is_empty(), "{made:?}");
    sim.assert_clean("after a refused --port");

    let (started, env) = start(&sim, &job, &image, &["--port", "http=23456"]);
    golden(
        "potctl/start-nginx-port-flag.txt",
        &normalized(&sim, &started, &env),
    );
    destroy(&sim, started["pot"].as_str().unwrap());
}

#[test]
fn private_bridge_job_publishes_nothing_and_pong_keeps_its_address() {
    let (sim, image) = initialised();
    let bridges = sim.dir.join("root/opt/pot/bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    std::fs::write(
        bridges.join("rignet"),
        "net=10.192.100.0/28\ngateway=10.192.100.1\nname=rignet\n",
    )
    .unwrap();
    let job = sim.tmp.path().join("private-bridge.nomad.hcl");
    std::fs::copy("nomad-jobs/private-bridge.nomad.hcl", &job).unwrap();
    let out = ok(
        &sim,
        &[
            "start",
            job.to_str().unwrap(),
            "--image",
            &image,
            "--task",
            "pong",
        ],
    );
    let pot = Regex::new(r"started pot (\S+) \(pid \d+\)\n")
        .unwrap()
        .captures(&out)
        .unwrap_or_else(|| panic!("{out}"))[1]
        .to_string();
    assert!(!out.contains("port "), "{out}");
    let ports: Json = serde_json::from_str(&ok(&sim, &["--json", "ports", &pot])).unwrap();
    assert_eq!(ports["published"][0]["ip"], "10.192.100.10", "{ports}");
    assert_eq!(ports["published"][0]["ports"], serde_json::json!([]));
    destroy(&sim, &pot);
}

#[test]
fn the_groups_dns_reaches_the_pot() {
    let (sim, image) = initialised();
    // The volumes job's group network, with a task that only shows its resolv.conf.
    let volumes = std::fs::read_to_string("nomad-jobs/volumes.nomad.hcl").unwrap();
    let network = Regex::new(r"(?s)\n    network \{.*?\n    \}\n")
        .unwrap()
        .find(&volumes)
        .expect("the volumes job has a group network block")
        .as_str();
    let job = sim.tmp.path().join("dns.nomad.hcl");
    std::fs::write(
        &job,
        format!(
            "job \"dns\" {{\n  group \"g\" {{{network}\n    task \"t\" {{\n      driver = \"pot\"\n      config {{\n        image   = \"http://127.0.0.1:1/unused\"\n        pot     = \"demo\"\n        tag     = \"1.0\"\n        command = \"/bin/sh\"\n        args    = [\"-c\", \"cat /etc/resolv.conf; while :; do sleep 0.1; done\"]\n      }}\n    }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let started: Json = serde_json::from_str(&ok(
        &sim,
        &["--json", "start", job.to_str().unwrap(), "--image", &image],
    ))
    .unwrap();
    let pot = started["pot"].as_str().unwrap();
    let resolv = ok(&sim, &["exec", pot, "--", "/bin/cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.192.0.2\n"), "{resolv}");
    assert!(resolv.contains("search rig.internal\n"), "{resolv}");
    destroy(&sim, pot);
}

#[test]
fn a_task_that_exits_at_once_is_explained() {
    let (sim, image) = sim_with_image();
    let job = sim.tmp.path().join("fails.nomad.hcl");
    std::fs::write(
        &job,
        "job \"j\" {\n  group \"g\" {\n    task \"fails\" {\n      driver = \"pot\"\n      config {\n        image   = \"http://127.0.0.1:1/unused\"\n        pot     = \"demo\"\n        tag     = \"1.0\"\n        command = \"/bin/sh\"\n        args    = [\"-c\", \"echo first; echo config missing >&2; exit 3\"]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = potctl(&sim, &["start", job.to_str().unwrap(), "--image", &image]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    let pot = Regex::new(r"^pot (\S+): the task did not stay up: the task exited with 3\n")
        .unwrap()
        .captures(&stdout)
        .unwrap_or_else(|| panic!("{stdout}"))[1]
        .to_string();
    assert!(
        stdout.contains("last lines of its stderr (") && stdout.contains("):\n  config missing\n"),
        "{stdout}"
    );
    let show: Json = serde_json::from_str(&ok(&sim, &["--json", "show", &pot])).unwrap();
    assert_eq!(show["last_exit"]["exit_code"], 3, "{show}");
    ok(&sim, &["destroy", &pot]);
    sim.assert_clean("after destroying the exited pot");
}
