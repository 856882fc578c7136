//! Networking end to end: the real plugin on a simulated host, asserting the exact interfaces,
//! addresses, routes and pf rules a bridged task gets, their teardown, and the refusals of bad
//! input. Needs `cargo build --workspace` first (for the sim). Each scenario ends with
//! `freebsd-sim check` clean.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::env::{engine_for, set_config, task_schema};
use common::{Plugin, SimHost, TestTask, within};
use nomad_pot_driver::engine::PotName;
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, FingerprintRequest, PortMapping, StartTaskRequest, StartTaskResponse,
};
use nomad_pot_driver::proto::hclspec::Spec;
use nomad_pot_driver::proto::structs::attribute;
use serde_json::{Value as Json, json};

/// What `pot init` adds to pf.conf: without it bridged starts are refused.
const POT_PF_MAIN: &str = "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n";

struct Env {
    sim: SimHost,
    plugin: Plugin,
    task_spec: Spec,
    image: String,
}

impl Env {
    async fn new(pf_ready: bool) -> Env {
        Env::with_agent_config(pf_ready, json!({})).await
    }

    /// Like [`Env::new`], with some agent config keys replaced.
    async fn with_agent_config(pf_ready: bool, overrides: Json) -> Env {
        let sim = SimHost::create();
        if pf_ready {
            let (code, _, err) = sim.tool("pfctl", &["-f", "-"], POT_PF_MAIN);
            assert_eq!(code, 0, "load pf main ruleset: {err}");
        }
        let plugin = Plugin::launch().await;
        set_config(&plugin, &sim.agent_config_with(overrides), true)
            .await
            .expect("SetConfig");
        let task_spec = task_schema(&plugin).await;
        let image = format!("file://{}", sim.image("demo", "1.0").display());
        Env {
            sim,
            plugin,
            task_spec,
            image,
        }
    }

    /// A task running `sh -c 'echo ready; sleep 60'` with `extra` config keys and Nomad ports.
    fn task(&self, name: &str, extra: Json, ports: &[(&str, i32, i32)]) -> TestTask {
        let mut cfg = json!({
            "image": self.image, "pot": "demo", "tag": "1.0",
            "command": "/bin/sh", "args": ["-c", "echo ready; sleep 60"],
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let bytes = common::cty::encode(&self.task_spec, &cfg).expect("task config");
        let mut t = TestTask::new(&self.sim.allocs_dir(), name, bytes);
        let res = t.config.resources.as_mut().unwrap();
        for (label, value, to) in ports {
            res.ports.push(PortMapping {
                label: label.to_string(),
                value: *value,
                to: *to,
                host_ip: String::new(),
            });
            t.config
                .env
                .insert(format!("NOMAD_HOST_PORT_{label}"), value.to_string());
        }
        t
    }

    async fn try_start(&self, t: &TestTask) -> Result<StartTaskResponse, tonic::Status> {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        within(120.0, "StartTask", self.plugin.driver().start_task(req))
            .await
            .map(|r| r.into_inner())
    }

    async fn start(&self, t: &TestTask) -> StartTaskResponse {
        self.try_start(t).await.unwrap_or_else(|s| {
            panic!(
                "StartTask failed: {s:?}\n{}",
                self.plugin.stderr_lines().join("\n")
            )
        })
    }

    async fn destroy(&self, t: &TestTask) {
        let req = DestroyTaskRequest {
            task_id: t.id(),
            force: true,
        };
        within(60.0, "DestroyTask", self.plugin.driver().destroy_task(req))
            .await
            .expect("DestroyTask");
    }

    async fn fingerprint(&self) -> (bool, String) {
        let mut stream = self
            .plugin
            .driver()
            .fingerprint(FingerprintRequest {})
            .await
            .expect("Fingerprint")
            .into_inner();
        let fp = within(10.0, "Fingerprint", stream.message())
            .await
            .expect("stream")
            .expect("message");
        let bridge = match fp.attributes["driver.pot.network.bridge"].value {
            Some(attribute::Value::BoolVal(b)) => b,
            ref other => panic!("driver.pot.network.bridge is {other:?}"),
        };
        (bridge, fp.health_description)
    }

    async fn finish(self) {
        self.sim.assert_clean("at the end of the scenario");
        self.plugin.assert_clean_io();
        self.plugin.shutdown().await;
        self.sim.assert_clean("after plugin shutdown");
    }
}

fn pot_of(t: &TestTask) -> PotName {
    PotName::for_task(
        &t.task_name,
        t.id().rsplit('/').next().unwrap(),
        &t.alloc_id,
    )
    .unwrap()
}

/// Host ports for one test run, spread so parallel tests rarely meet.
fn port_base() -> i32 {
    20000 + (std::process::id() as i32 % 400) * 20
}

/// The ifconfig block of `name` as (description, inet lines, members).
fn block(text: &str) -> (String, Vec<String>, Vec<String>) {
    let mut descr = String::new();
    let (mut inet, mut members) = (vec![], vec![]);
    for l in text.lines().skip(1).map(str::trim) {
        if let Some(d) = l.strip_prefix("description: ") {
            descr = d.to_string();
        } else if l.starts_with("inet ") {
            inet.push(l.to_string());
        } else if let Some(m) = l.strip_prefix("member: ") {
            members.push(m.split_whitespace().next().unwrap().to_string());
        }
    }
    (descr, inet, members)
}

#[tokio::test(flavor = "multi_thread")]
async fn public_bridge_ipv4_with_ports() {
    let env = Env::new(true).await;
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(bridge_ok, "bridge networking unavailable: {descr}");
    let base = port_base();
    let (http, dns) = (base, base + 1);
    let a = env.task(
        "web-frontend-v2",
        json!({}),
        &[("http", http, 80), ("dns", dns, 53)],
    );
    let resp = env.start(&a).await;
    let pot = pot_of(&a);
    let p = pot.as_str();

    // Nomad learns the pot's address and in-pot ports (address_mode = "driver").
    let no = resp
        .network_override
        .expect("NetworkOverride for a bridged task");
    assert_eq!(no.addr, "10.192.0.3");
    assert_eq!(no.port_map.get("http"), Some(&80));
    assert_eq!(no.port_map.get("dns"), Some(&53));
    assert!(!no.auto_advertise);

    // vnet-start: forwarding, the public bridge, pot-nat.
    assert_eq!(
        env.sim
            .tool_ok("sysctl", &["-n", "net.inet.ip.forwarding"])
            .trim(),
        "1"
    );
    let bridges = env.sim.tool_ok("ifconfig", &["-l", "-g", "bridge"]);
    assert_eq!(bridges.split_whitespace().collect::<Vec<_>>(), ["bridge0"]);
    let (bdescr, binet, bmembers) = block(&env.sim.tool_ok("ifconfig", &["bridge0"]));
    assert_eq!(bdescr, "pot public bridge");
    assert_eq!(
        binet,
        ["inet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255"]
    );
    assert_eq!(bmembers.len(), 1);
    let host_end = bmembers[0].clone();
    assert!(
        host_end.starts_with("p4") && host_end.len() <= 15,
        "{host_end}"
    );
    assert_eq!(
        env.sim.tool_ok("pfctl", &["-a", "pot-nat", "-s", "nat"]),
        "nat on em0 from 10.192.0.0/10 to any -> (em0:0)\n"
    );

    // The host end: pot's descr and group, up, on the bridge; the jail end inside the jail.
    let host_block = env.sim.tool_ok("ifconfig", &[&host_end]);
    assert!(host_block.contains("<UP,"), "{host_block}");
    assert!(
        host_block.contains(&format!("description: {p}")),
        "{host_block}"
    );
    assert!(host_block.contains("groups: epair pot"), "{host_block}");
    let host_list = env.sim.tool_ok("ifconfig", &["-l"]);
    assert_eq!(
        host_list.split_whitespace().collect::<Vec<_>>(),
        ["lo0", "em0", "bridge0", host_end.as_str()],
        "the jail end must have left the host"
    );
    let jail_list = env.sim.tool_ok("ifconfig", &["-j", p, "-l"]);
    assert_eq!(
        jail_list.split_whitespace().collect::<Vec<_>>(),
        ["lo0", "epair0b"]
    );
    let (_, jinet, _) = block(&env.sim.tool_ok("ifconfig", &["-j", p, "epair0b"]));
    assert_eq!(
        jinet,
        ["inet 10.192.0.3 netmask 0xffc00000 broadcast 10.255.255.255"]
    );
    let (_, loinet, _) = block(&env.sim.tool_ok("ifconfig", &["-j", p, "lo0"]));
    assert_eq!(loinet, ["inet 127.0.0.1 netmask 0xff000000"]);
    let route = env.sim.tool_ok("route", &["-j", p, "-n", "get", "default"]);
    assert!(route.contains("gateway: 10.192.0.1\n"), "{route}");
    assert!(route.contains("interface: epair0b\n"), "{route}");

    // rdr rules, pot's text, tcp and udp.
    let anchor = format!("pot-rdr/{}", &p[p.len() - 55..].trim_start_matches('_'));
    assert!(
        p.len() > 55,
        "the pot name exercises pot's anchor truncation"
    );
    assert_eq!(
        env.sim
            .tool_ok("pfctl", &["-a", "pot-rdr", "-s", "Anchors"]),
        format!("  {anchor}\n")
    );
    assert_eq!(
        env.sim.tool_ok("pfctl", &["-a", &anchor, "-s", "nat"]),
        format!(
            "rdr pass on em0 proto tcp from any to (em0) port {http} -> 10.192.0.3 port 80\n\
             rdr pass on em0 proto udp from any to (em0) port {http} -> 10.192.0.3 port 80\n\
             rdr pass on em0 proto tcp from any to (em0) port {dns} -> 10.192.0.3 port 53\n\
             rdr pass on em0 proto udp from any to (em0) port {dns} -> 10.192.0.3 port 53\n"
        )
    );

    // pot.conf as pot writes it, so pot's own tools (and potnet) see the pot.
    let conf = std::fs::read_to_string(
        env.sim
            .dir
            .join("root/opt/pot/jails")
            .join(p)
            .join("conf/pot.conf"),
    )
    .unwrap();
    for line in [
        "network_type=public-bridge".to_string(),
        "vnet=true".to_string(),
        "ip=10.192.0.3".to_string(),
        "pot.stack=ipv4".to_string(),
        format!("pot.export.ports=80:{http} udp:80:{http} 53:{dns} udp:53:{dns}"),
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "pot.conf lacks {line}:\n{conf}"
        );
    }
    // `potctl ports` says what is published, where it goes and which pf rules do it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_potctl"))
        .arg("--sim")
        .arg(&env.sim.dir)
        .arg("ports")
        .output()
        .expect("run potctl ports");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "potctl ports: {out:?}");
    let http_row = format!("{p} http tcp,udp em0:{http} 10.192.0.3:80 {anchor}");
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == http_row),
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "pf rules in {anchor}:\n  rdr pass on em0 proto tcp from any to (em0) port {http} -> 10.192.0.3 port 80\n"
        )),
        "{listed}"
    );
    // The published port also answers on the host itself (the supervisor's relay).
    std::net::TcpStream::connect(("127.0.0.1", http as u16)).expect("relay listening");

    // A second task gets the next address; vnet-start is not done again.
    let b = env.task("api", json!({"network_mode": "public-bridge"}), &[]);
    let resp_b = env.start(&b).await;
    assert_eq!(resp_b.network_override.unwrap().addr, "10.192.0.4");
    let creates = env
        .sim
        .calls()
        .iter()
        .filter(|c| {
            c.argv
                .starts_with(&["ifconfig".into(), "bridge".into(), "create".into()])
        })
        .count();
    assert_eq!(creates, 1, "the public bridge is created once");

    env.destroy(&a).await;
    // Teardown: the epair (both ends) and the rules are gone, the bridge and NAT stay.
    let host_list = env.sim.tool_ok("ifconfig", &["-l"]);
    assert!(!host_list.contains(&host_end), "{host_list}");
    assert_eq!(env.sim.tool_ok("pfctl", &["-a", &anchor, "-s", "nat"]), "");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http as u16)).is_err(),
        "relay still listening"
    );
    // The address is free again: the next task takes 10.192.0.3.
    let c = env.task("again", json!({}), &[("http", http, 80)]);
    assert_eq!(
        env.start(&c).await.network_override.unwrap().addr,
        "10.192.0.3"
    );
    env.destroy(&b).await;
    env.destroy(&c).await;
    assert_eq!(
        env.sim.tool_ok("ifconfig", &["-l", "-g", "pot"]).trim(),
        "bridge0"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_network_input_is_refused_and_changes_nothing() {
    let env = Env::new(false).await;
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(!bridge_ok);
    assert!(
        descr.contains("bridge networking unavailable") && descr.contains("pot-rdr"),
        "{descr}"
    );
    let base = port_base() + 10;
    let no_pf = env.task("nopf", json!({"network_mode": "public-bridge"}), &[]);
    let e = env.try_start(&no_pf).await.unwrap_err();
    assert!(e.message().contains("no anchor pot-nat"), "{e:?}");
    let (code, _, err) = env.sim.tool("pfctl", &["-f", "-"], POT_PF_MAIN);
    assert_eq!(code, 0, "{err}");

    let holder = env.task(
        "holder",
        json!({"ip": "10.192.0.50"}),
        &[("http", base, 80)],
    );
    env.start(&holder).await;
    let before = env.sim.calls().len();
    let cases: Vec<(TestTask, &str)> = vec![
        (
            env.task("t1", json!({"network_mode": "vlan"}), &[]),
            "unknown network_mode \"vlan\"",
        ),
        (
            env.task(
                "t2",
                json!({"network_mode": "public-bridge", "ip": "192.168.1.5"}),
                &[],
            ),
            "ip 192.168.1.5 is not a free host address of network 10.192.0.0/10",
        ),
        (
            env.task("t3", json!({"ip": "10.192.0.1"}), &[("x", base + 1, 80)]),
            "is not a free host address",
        ),
        (
            env.task(
                "t4",
                json!({"network_mode": "public-bridge", "ip": "10.192.0.50"}),
                &[],
            ),
            "ip 10.192.0.50 is already used by another pot",
        ),
        (
            env.task("t5", json!({"port_map": [{"web": "80"}]}), &[]),
            "port_map \"web\": Nomad allocated no port",
        ),
        (
            env.task("t6", json!({}), &[("a", base + 2, 80), ("b", base + 2, 81)]),
            "host port",
        ),
        (
            env.task(
                "t7",
                json!({"network_mode": "private-bridge", "bridge": "nope"}),
                &[],
            ),
            "private bridge \"nope\" does not exist",
        ),
        (
            env.task("t8", json!({"network_mode": "alias"}), &[]),
            "network_mode \"alias\" needs `ip`",
        ),
        (
            env.task(
                "t9",
                json!({"network_mode": "alias", "ip": "2001:db8::9"}),
                &[],
            ),
            "has no address for network stack ipv4",
        ),
    ];
    for (t, want) in &cases {
        let e = env.try_start(t).await.expect_err(want);
        assert!(e.message().contains(want), "{want}: {e:?}");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{want}: {e:?}");
    }
    // The refused starts changed nothing on the host: no clone, no interface, no rule.
    let changes: Vec<String> = env.sim.calls()[before..]
        .iter()
        .filter(|c| {
            let sub = c.argv.get(1).map(String::as_str).unwrap_or_default();
            matches!(
                c.argv[0].as_str(),
                "ifconfig" | "pfctl" | "route" | "jail" | "mount_nullfs"
            ) || (c.argv[0] == "zfs"
                && matches!(sub, "create" | "clone" | "destroy" | "set" | "receive"))
        })
        .map(|c| c.line())
        .collect();
    assert!(
        changes.is_empty(),
        "refused starts touched the host: {changes:?}"
    );
    env.destroy(&holder).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_bridged_tasks_start_concurrently() {
    const N: usize = 50;
    let env = Env::new(true).await;
    let base = port_base() + 1000;
    let tasks: Vec<TestTask> = (0..N)
        .map(|i| {
            env.task(
                &format!("t{i}"),
                json!({}),
                &[("http", base + i as i32, 80)],
            )
        })
        .collect();
    let started = futures::future::join_all(tasks.iter().map(|t| env.start(t))).await;
    let ips: BTreeSet<String> = started
        .iter()
        .map(|r| r.network_override.as_ref().unwrap().addr.clone())
        .collect();
    assert_eq!(ips.len(), N, "addresses are not distinct: {ips:?}");
    let anchors = env
        .sim
        .tool_ok("pfctl", &["-a", "pot-rdr", "-s", "Anchors"]);
    assert_eq!(anchors.lines().count(), N, "{anchors}");
    for (t, r) in tasks.iter().zip(&started) {
        let p = pot_of(t);
        let p = p.as_str();
        let ip = &r.network_override.as_ref().unwrap().addr;
        let port = &t.config.resources.as_ref().unwrap().ports[0].value;
        let anchor = format!(
            "pot-rdr/{}",
            if p.len() > 55 {
                p[p.len() - 55..].trim_start_matches('_')
            } else {
                p
            }
        );
        assert_eq!(
            env.sim.tool_ok("pfctl", &["-a", &anchor, "-s", "nat"]),
            format!(
                "rdr pass on em0 proto tcp from any to (em0) port {port} -> {ip} port 80\n\
                 rdr pass on em0 proto udp from any to (em0) port {port} -> {ip} port 80\n"
            )
        );
        let jail_ifs = env.sim.tool_ok("ifconfig", &["-j", p, "-l"]);
        let jail_end = jail_ifs.split_whitespace().nth(1).expect("the jail end");
        let (_, jinet, _) = block(&env.sim.tool_ok("ifconfig", &["-j", p, jail_end]));
        assert_eq!(
            jinet,
            [format!(
                "inet {ip} netmask 0xffc00000 broadcast 10.255.255.255"
            )]
        );
    }
    let members = block(&env.sim.tool_ok("ifconfig", &["bridge0"])).2;
    assert_eq!(members.len(), N);
    futures::future::join_all(tasks.iter().map(|t| env.destroy(t))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        block(&env.sim.tool_ok("ifconfig", &["bridge0"]))
            .2
            .is_empty()
    );
    env.finish().await;
}

/// pot's global lock guards address picks only: while a `pot` CLI holds it, a bridged start
/// waits for it and a start that picks no address does not.
#[tokio::test(flavor = "multi_thread")]
async fn pots_global_lock_holds_back_address_picks_only() {
    let env = Env::new(true).await;
    let lock_path = env.sim.config["lock_file"].as_str().unwrap().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("take pot's global lock");

    let inherit = env.task("plain", json!({}), &[]);
    let resp = tokio::time::timeout(Duration::from_secs(30), env.start(&inherit))
        .await
        .expect("an inherit start waited for pot's global lock");
    assert!(resp.network_override.is_none());

    let bridged = env.task("web", json!({}), &[("http", port_base() + 2000, 80)]);
    {
        let mut start = std::pin::pin!(env.start(&bridged));
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), &mut start)
                .await
                .is_err(),
            "a bridged start picked an address while pot's global lock was held"
        );
        drop(held);
        let resp = within(30.0, "bridged StartTask", start).await;
        assert_eq!(resp.network_override.unwrap().addr, "10.192.0.3");
    }

    env.destroy(&inherit).await;
    env.destroy(&bridged).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_tears_down_the_network_of_abandoned_pots() {
    let mut env = Env::new(true).await;
    let base = port_base() + 15;
    let t = env.task("crashy", json!({}), &[("http", base, 80)]);
    env.start(&t).await;
    let pot = pot_of(&t);
    let state = env
        .sim
        .dir
        .join("root/var/db/nomad-pot-driver/tasks")
        .join(pot.as_str());
    // The plugin, the task's supervisor and the task all die: only the host state is left.
    env.plugin.kill();
    let pids: Json =
        serde_json::from_slice(&std::fs::read(state.join("pids.json")).unwrap()).unwrap();
    for key in ["shim", "task"] {
        let pid = nix::unistd::Pid::from_raw(pids[key].as_i64().unwrap() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    // A second start was interrupted between `epair create` and the rename: its epair is only
    // known by pot's `descr <pot>`.
    let half = PotName::new("half_started_pot").unwrap();
    let half_dir = state.parent().unwrap().join(half.as_str());
    std::fs::create_dir_all(&half_dir).unwrap();
    std::fs::write(half_dir.join("network.json"), r#"{"epair_pending": true}"#).unwrap();
    let made = env.sim.tool_ok(
        "ifconfig",
        &["epair", "create", "descr", half.as_str(), "group", "pot"],
    );
    assert!(made.starts_with("epair"), "{made}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let engine = engine_for(&env.sim);
    let report = engine
        .gc(false, std::time::Duration::ZERO)
        .await
        .expect("gc");
    let collected: BTreeSet<String> = report
        .collected
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(
        collected,
        BTreeSet::from([pot.to_string(), half.to_string()]),
        "{report:?}"
    );
    assert_eq!(
        env.sim.tool_ok("ifconfig", &["-l", "-g", "pot"]).trim(),
        "bridge0"
    );
    let anchors = env
        .sim
        .tool_ok("pfctl", &["-a", "pot-rdr", "-s", "Anchors"]);
    for a in anchors.split_whitespace() {
        assert_eq!(
            env.sim.tool_ok("pfctl", &["-a", a, "-s", "nat"]),
            "",
            "{a} keeps rules"
        );
    }
    env.sim.assert_clean("after reconcile");
    env.plugin = Plugin::launch().await;
    env.plugin.shutdown().await;
    env.sim.assert_clean("at the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_bridge_with_ports() {
    let env = Env::new(true).await;
    // What `pot create-private-bridge -B backend -S 4` leaves.
    let bridges = env.sim.dir.join("root/opt/pot/bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    std::fs::write(
        bridges.join("backend"),
        "net=10.192.0.16/29\ngateway=10.192.0.17\nname=backend\n",
    )
    .unwrap();
    let base = port_base() + 5;
    let public = env.task("pub", json!({}), &[("http", base, 80)]);
    assert_eq!(
        env.start(&public).await.network_override.unwrap().addr,
        "10.192.0.3"
    );
    let cfg = json!({"network_mode": "private-bridge", "bridge": "backend"});
    let a = env.task("back-a", cfg.clone(), &[("http", base + 1, 8080)]);
    let resp = env.start(&a).await;
    assert_eq!(resp.network_override.unwrap().addr, "10.192.0.18");
    let b = env.task("back-b", cfg, &[]);
    assert_eq!(
        env.start(&b).await.network_override.unwrap().addr,
        "10.192.0.19"
    );

    let listed = env.sim.tool_ok("ifconfig", &["-l", "-g", "bridge"]);
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        ["bridge0", "bridge1"]
    );
    let (descr, inet, members) = block(&env.sim.tool_ok("ifconfig", &["bridge1"]));
    assert_eq!(descr, "pot private bridge");
    assert_eq!(
        inet,
        ["inet 10.192.0.17 netmask 0xfffffff8 broadcast 10.192.0.23"]
    );
    assert_eq!(members.len(), 2, "{members:?}");
    assert_eq!(block(&env.sim.tool_ok("ifconfig", &["bridge0"])).2.len(), 1);
    let pa = pot_of(&a);
    let p = pa.as_str();
    let jail_ifs = env.sim.tool_ok("ifconfig", &["-j", p, "-l"]);
    let jail_end = jail_ifs
        .split_whitespace()
        .nth(1)
        .expect("the jail end")
        .to_string();
    let (_, jinet, _) = block(&env.sim.tool_ok("ifconfig", &["-j", p, &jail_end]));
    assert_eq!(
        jinet,
        ["inet 10.192.0.18 netmask 0xfffffff8 broadcast 10.192.0.23"]
    );
    let route = env.sim.tool_ok("route", &["-j", p, "-n", "get", "default"]);
    assert!(route.contains("gateway: 10.192.0.17\n"), "{route}");
    assert_eq!(
        env.sim
            .tool_ok("pfctl", &["-a", &format!("pot-rdr/{p}"), "-s", "nat"]),
        format!(
            "rdr pass on em0 proto tcp from any to (em0) port {0} -> 10.192.0.18 port 8080\n\
             rdr pass on em0 proto udp from any to (em0) port {0} -> 10.192.0.18 port 8080\n",
            base + 1
        )
    );
    let conf = std::fs::read_to_string(
        env.sim
            .dir
            .join("root/opt/pot/jails")
            .join(p)
            .join("conf/pot.conf"),
    )
    .unwrap();
    for line in [
        "network_type=private-bridge",
        "bridge=backend",
        "vnet=true",
        "ip=10.192.0.18",
        "pot.stack=ipv4",
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "pot.conf lacks {line}:\n{conf}"
        );
    }
    for t in [&public, &a, &b] {
        env.destroy(t).await;
    }
    assert!(
        block(&env.sim.tool_ok("ifconfig", &["bridge1"]))
            .2
            .is_empty()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_addresses_on_the_host_nic() {
    let env = Env::new(false).await;
    let t = env.task(
        "aliased",
        json!({"network_mode": "alias", "ip": "em0|10.0.2.20 10.0.2.21"}),
        &[],
    );
    let resp = env.start(&t).await;
    let no = resp
        .network_override
        .expect("NetworkOverride for an alias pot");
    assert_eq!((no.addr.as_str(), no.auto_advertise), ("10.0.2.20", true));
    let pot = pot_of(&t);
    let p = pot.as_str();
    let (_, inet, _) = block(&env.sim.tool_ok("ifconfig", &["em0"]));
    assert_eq!(
        inet,
        [
            "inet 10.0.2.15 netmask 0xffffff00 broadcast 10.0.2.255",
            "inet 10.0.2.20 netmask 0xffffffff broadcast 10.0.2.20",
            "inet 10.0.2.21 netmask 0xffffffff broadcast 10.0.2.21",
        ]
    );
    assert_eq!(
        env.sim.tool_ok("jls", &["-j", p, "ip4.addr"]).trim(),
        "10.0.2.20,10.0.2.21"
    );
    assert_eq!(
        env.sim
            .tool_ok("ifconfig", &["-l"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo0", "em0"],
        "an alias pot has no epair"
    );
    let conf = std::fs::read_to_string(
        env.sim
            .dir
            .join("root/opt/pot/jails")
            .join(p)
            .join("conf/pot.conf"),
    )
    .unwrap();
    for line in [
        "network_type=alias",
        "vnet=false",
        "ip=em0|10.0.2.20 em0|10.0.2.21",
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "pot.conf lacks {line}:\n{conf}"
        );
    }
    // A NIC that does not exist is refused before anything is created.
    let before = env.sim.calls().len();
    let bad = env.task(
        "badnic",
        json!({"network_mode": "alias", "ip": "nope0|10.0.2.30"}),
        &[],
    );
    let e = env.try_start(&bad).await.unwrap_err();
    assert!(
        e.message()
            .contains("network interface nope0 (of ip) does not exist"),
        "{e:?}"
    );
    assert!(
        env.sim.calls()[before..]
            .iter()
            .all(|c| c.argv[0] != "jail" && c.argv.get(1).is_none_or(|a| a != "clone")),
        "the refused start created something"
    );
    env.destroy(&t).await;
    let (_, inet, _) = block(&env.sim.tool_ok("ifconfig", &["em0"]));
    assert_eq!(
        inet,
        ["inet 10.0.2.15 netmask 0xffffff00 broadcast 10.0.2.255"]
    );
    env.finish().await;
}

/// The host's inet lines of `nic`.
fn inet_of(env: &Env, nic: &str) -> Vec<String> {
    block(&env.sim.tool_ok("ifconfig", &[nic])).1
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_addresses_the_pot_does_not_own_are_refused_and_never_removed() {
    let env = Env::new(false).await;
    let em0 = inet_of(&env, "em0");
    let lo0 = inet_of(&env, "lo0");
    let holder = env.task(
        "holder",
        json!({"network_mode": "alias", "ip": "em0|10.0.2.20"}),
        &[],
    );
    env.start(&holder).await;
    let before = env.sim.calls().len();
    for (i, (ip, want)) in [
        (
            "em0|10.0.2.15",
            "10.0.2.15 is already an address of the host's em0",
        ),
        (
            "lo0|127.0.0.1",
            "127.0.0.1 is already an address of the host's lo0",
        ),
        // Another task's address, whatever the NIC named.
        ("em0|10.0.2.20", "10.0.2.20 is already used by pot"),
        ("lo0|10.0.2.20", "10.0.2.20 is already"),
        (
            "em0|10.0.2.255",
            "10.0.2.255 is the broadcast address of em0's network",
        ),
        (
            "em0|255.255.255.255",
            "is the broadcast address, which a pot cannot hold",
        ),
        ("em0|0.0.0.0", "is the unspecified address"),
        ("em0|224.0.0.1", "is a multicast address"),
        ("em0|10.0.2.30 em0|10.0.2.30", "10.0.2.30 is listed twice"),
    ]
    .into_iter()
    .enumerate()
    {
        let t = env.task(
            &format!("bad{i}"),
            json!({"network_mode": "alias", "ip": ip}),
            &[],
        );
        let e = env.try_start(&t).await.expect_err(ip);
        assert!(e.message().contains(want), "{ip}: {e:?}");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{ip}: {e:?}");
    }
    let changes: Vec<String> = env.sim.calls()[before..]
        .iter()
        .filter(|c| {
            c.argv[0] == "jail"
                // `ifconfig NIC` and `ifconfig -a` only read.
                || (c.argv[0] == "ifconfig" && c.argv.len() > 2)
                || (c.argv[0] == "zfs" && matches!(c.argv[1].as_str(), "create" | "clone"))
        })
        .map(|c| c.line())
        .collect();
    assert!(
        changes.is_empty(),
        "refused starts touched the host: {changes:?}"
    );
    let mut em0_with_holder = em0.clone();
    em0_with_holder.push("inet 10.0.2.20 netmask 0xffffffff broadcast 10.0.2.20".to_string());
    assert_eq!(inet_of(&env, "em0"), em0_with_holder);
    assert_eq!(inet_of(&env, "lo0"), lo0);

    // A start whose `jail -c` fails rolls back without touching the addresses: jail(8) undid
    // its own, and whatever is on the NIC now is not this start's.
    env.sim.fault(&[
        "jail",
        "--word",
        "-c",
        "--fail",
        "1",
        "--stderr",
        "jail: failed",
    ]);
    let failing = env.task(
        "failing",
        json!({"network_mode": "alias", "ip": "em0|10.0.2.21"}),
        &[],
    );
    let before = env.sim.calls().len();
    env.try_start(&failing).await.expect_err("jail -c fails");
    env.sim.clear_faults();
    let removals: Vec<String> = env.sim.calls()[before..]
        .iter()
        .filter(|c| c.argv[0] == "ifconfig" && c.argv.iter().any(|a| a == "-alias"))
        .map(|c| c.line())
        .collect();
    assert!(
        removals.is_empty(),
        "the rollback removed addresses: {removals:?}"
    );
    assert_eq!(inet_of(&env, "em0"), em0_with_holder);
    env.destroy(&holder).await;
    assert_eq!(inet_of(&env, "em0"), em0);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_stack_slaac_bridge_refusals_and_ip6_inherit() {
    let env = Env::with_agent_config(true, json!({"network_stack": "ipv6"})).await;
    std::fs::create_dir_all(env.sim.dir.join("root/opt/pot/bridges")).unwrap();
    std::fs::write(
        env.sim.dir.join("root/opt/pot/bridges/backend"),
        "net=10.192.0.16/29\ngateway=10.192.0.17\nname=backend\n",
    )
    .unwrap();
    let before = env.sim.calls().len();
    for (cfg, ports, want) in [
        (
            json!({"network_mode": "private-bridge", "bridge": "backend"}),
            vec![],
            "private-bridge is IPv4 only",
        ),
        (
            json!({}),
            vec![("http", port_base() + 17, 80)],
            "network stack ipv6 cannot publish them",
        ),
    ] {
        let t = env.task("v6", cfg, &ports);
        let e = env.try_start(&t).await.expect_err(want);
        assert!(e.message().contains(want), "{want}: {e:?}");
    }
    assert!(
        env.sim.calls()[before..]
            .iter()
            .all(|c| c.argv[0] != "jail" && c.argv[0] != "ifconfig"),
        "refused starts touched the host"
    );
    // An ipv6 pot: one epair on the bridge that holds em0 (SLAAC), nothing of IPv4 but lo0.
    let t = env.task("slaac", json!({"network_mode": "public-bridge"}), &[]);
    let resp = env.start(&t).await;
    assert!(
        resp.network_override.is_none(),
        "no address is known before SLAAC"
    );
    let p = pot_of(&t);
    let p = p.as_str();
    let (descr, inet, members) = block(&env.sim.tool_ok("ifconfig", &["bridge0"]));
    assert_eq!(descr, "pot ipv6 bridge");
    assert!(inet.is_empty());
    // ifconfig lists the newest member first.
    assert_eq!(members.len(), 2);
    assert!(members[0].starts_with("p6"), "{members:?}");
    assert_eq!(members[1], "em0");
    let jail_ifs = env.sim.tool_ok("ifconfig", &["-j", p, "-l"]);
    assert_eq!(
        jail_ifs.split_whitespace().collect::<Vec<_>>(),
        ["lo0", "epair0b"]
    );
    let end = env.sim.tool_ok("ifconfig", &["-j", p, "epair0b"]);
    assert!(
        end.contains("nd6 options=23<PERFORMNUD,ACCEPT_RTADV,AUTO_LINKLOCAL>"),
        "{end}"
    );
    assert!(end.contains("<UP,") && !end.contains("\tinet "), "{end}");
    let (code, _, err) = env
        .sim
        .tool("route", &["-j", p, "-n", "get", "default"], "");
    assert_eq!((code, err.trim()), (1, "route: route has not been found"));
    let conf = std::fs::read_to_string(
        env.sim
            .dir
            .join("root/opt/pot/jails")
            .join(p)
            .join("conf/pot.conf"),
    )
    .unwrap();
    // pot still gives an ipv6 bridge pot an IPv4 in pot.conf.
    for line in [
        "network_type=public-bridge",
        "pot.stack=ipv6",
        "vnet=true",
        "ip=10.192.0.3",
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "pot.conf lacks {line}:\n{conf}"
        );
    }
    assert_eq!(
        env.sim
            .tool_ok("sysctl", &["-n", "net.inet.ip.forwarding"])
            .trim(),
        "0"
    );
    env.destroy(&t).await;
    assert_eq!(block(&env.sim.tool_ok("ifconfig", &["bridge0"])).2, ["em0"]);
    // inherit with stack ipv6: the jail shares the host's IPv6 stack only, as pot does.
    let t = env.task("host6", json!({"network_mode": "host"}), &[]);
    env.start(&t).await;
    let p = pot_of(&t);
    let params = env
        .sim
        .tool_ok("jls", &["-j", p.as_str(), "-n", "ip4", "ip6"]);
    assert!(
        params.contains("ip6=inherit") && !params.contains("ip4=inherit"),
        "{params}"
    );
    env.destroy(&t).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_public_bridge() {
    let env = Env::with_agent_config(true, json!({"network_stack": "dual"})).await;
    let port = port_base() + 18;
    let t = env.task("dual", json!({}), &[("http", port, 80)]);
    let resp = env.start(&t).await;
    assert_eq!(resp.network_override.unwrap().addr, "10.192.0.3");
    let p = pot_of(&t);
    let p = p.as_str();
    let (d4, i4, m4) = block(&env.sim.tool_ok("ifconfig", &["bridge0"]));
    assert_eq!(
        (d4.as_str(), i4.len(), m4.len()),
        ("pot public bridge", 1, 1)
    );
    assert!(m4[0].starts_with("p4"), "{m4:?}");
    let (d6, _, m6) = block(&env.sim.tool_ok("ifconfig", &["bridge1"]));
    assert_eq!(d6, "pot ipv6 bridge");
    assert_eq!(m6.len(), 2);
    assert!(m6[0].starts_with("p6") && m6[1] == "em0", "{m6:?}");
    let jail_ifs = env.sim.tool_ok("ifconfig", &["-j", p, "-l"]);
    assert_eq!(
        jail_ifs.split_whitespace().collect::<Vec<_>>(),
        ["lo0", "epair0b", "epair1b"]
    );
    let (_, jinet, _) = block(&env.sim.tool_ok("ifconfig", &["-j", p, "epair0b"]));
    assert_eq!(
        jinet,
        ["inet 10.192.0.3 netmask 0xffc00000 broadcast 10.255.255.255"]
    );
    let v6end = env.sim.tool_ok("ifconfig", &["-j", p, "epair1b"]);
    assert!(
        v6end.contains("ACCEPT_RTADV") && !v6end.contains("IFDISABLED"),
        "{v6end}"
    );
    let route = env.sim.tool_ok("route", &["-j", p, "-n", "get", "default"]);
    assert!(route.contains("gateway: 10.192.0.1\n"), "{route}");
    assert_eq!(
        env.sim
            .tool_ok("pfctl", &["-a", &format!("pot-rdr/{p}"), "-s", "nat"])
            .lines()
            .count(),
        2
    );
    let conf = std::fs::read_to_string(
        env.sim
            .dir
            .join("root/opt/pot/jails")
            .join(p)
            .join("conf/pot.conf"),
    )
    .unwrap();
    assert!(conf.lines().any(|l| l == "pot.stack=dual"), "{conf}");
    env.destroy(&t).await;
    assert_eq!(
        env.sim
            .tool_ok("ifconfig", &["-l"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo0", "em0", "bridge0", "bridge1"]
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_vimage_no_bridges() {
    let env = Env::new(true).await;
    env.sim.tool_ok("sysctl", &["kern.features.vimage=0"]);
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(!bridge_ok);
    assert!(descr.contains("the kernel has no VIMAGE"), "{descr}");
    let t = env.task("novnet", json!({}), &[("http", port_base() + 19, 80)]);
    let e = env.try_start(&t).await.unwrap_err();
    assert!(e.message().contains("lacks VIMAGE"), "{e:?}");
    assert!(
        env.sim
            .calls()
            .iter()
            .all(|c| c.argv[0] != "ifconfig" && c.argv[0] != "jail"),
        "a start without VIMAGE touched interfaces or jails"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bridges_destroyed_by_hand_are_set_up_again() {
    let env = Env::with_agent_config(true, json!({"network_stack": "dual"})).await;
    let bridged = json!({"network_mode": "public-bridge"});
    let first = env.task("first", bridged.clone(), &[]);
    env.start(&first).await;
    env.destroy(&first).await;
    // The plugin found (made) both bridges once; an operator removes them while it runs.
    let made = env.sim.tool_ok("ifconfig", &["-g", "bridge"]);
    for bridge in made.split_whitespace() {
        env.sim.tool_ok("ifconfig", &[bridge, "destroy"]);
    }
    let second = env.task("second", bridged, &[]);
    env.start(&second).await;
    let p = pot_of(&second);
    let jail_ifs = env.sim.tool_ok("ifconfig", &["-j", p.as_str(), "-a"]);
    assert!(
        jail_ifs.contains("\tinet 10.192.0.3 netmask 0xffc00000 broadcast 10.255.255.255\n"),
        "{jail_ifs}"
    );
    let bridges = env.sim.tool_ok("ifconfig", &["-g", "bridge"]);
    let bridges: Vec<&str> = bridges.split_whitespace().collect();
    assert_eq!(bridges.len(), 2, "{bridges:?}");
    let (d4, i4, m4) = block(&env.sim.tool_ok("ifconfig", &[bridges[0]]));
    assert_eq!(d4, "pot public bridge");
    assert!(i4[0].starts_with("inet 10.192.0.1 "), "{i4:?}");
    assert!(m4.len() == 1 && m4[0].starts_with("p4"), "{m4:?}");
    let (d6, _, m6) = block(&env.sim.tool_ok("ifconfig", &[bridges[1]]));
    assert_eq!(d6, "pot ipv6 bridge");
    assert!(
        m6.len() == 2 && m6[0].starts_with("p6") && m6[1] == "em0",
        "{m6:?}"
    );
    let route = env
        .sim
        .tool_ok("route", &["-j", p.as_str(), "-n", "get", "default"]);
    assert!(route.contains("gateway: 10.192.0.1\n"), "{route}");
    assert!(
        env.plugin
            .stderr_lines()
            .iter()
            .any(|l| l.contains("bridge no longer exists")),
        "the re-creation is logged"
    );
    env.destroy(&second).await;
    env.finish().await;
}
