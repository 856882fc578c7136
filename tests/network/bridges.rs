//! Public and private bridges through the real plugin: the exact interfaces, addresses, routes
//! and pf rules, their teardown (also by reconcile after a crash), and bridges set up again
//! after an operator destroyed them.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::Plugin;
use crate::common::env::engine_for;
use crate::{Env, block, port_base, pot_of};
use nomad_pot_driver::engine::PotName;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn public_bridge_ipv4_with_ports() {
    let env = Env::pf_ready().await;
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(bridge_ok, "bridge networking unavailable: {descr}");
    let base = port_base();
    let (http, dns) = (base, base + 1);
    let a = env.net_task(
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
    env.assert_pot_conf_has(
        p,
        &[
            "network_type=public-bridge".to_string(),
            "vnet=true".to_string(),
            "ip=10.192.0.3".to_string(),
            "pot.stack=ipv4".to_string(),
            format!("pot.export.ports=80:{http} udp:80:{http} 53:{dns} udp:53:{dns}"),
        ],
    );
    // `potctl ports` says what is published, where it goes and which pf rules do it.
    let listed = crate::common::potctl::ok(&env.sim, &["ports"]);
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
    let b = env.net_task("api", json!({"network_mode": "public-bridge"}), &[]);
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

    env.destroy(&a.id()).await;
    // Teardown: the epair (both ends) and the rules are gone, the bridge and NAT stay.
    let host_list = env.sim.tool_ok("ifconfig", &["-l"]);
    assert!(!host_list.contains(&host_end), "{host_list}");
    assert_eq!(env.sim.tool_ok("pfctl", &["-a", &anchor, "-s", "nat"]), "");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http as u16)).is_err(),
        "relay still listening"
    );
    // The address is free again: the next task takes 10.192.0.3.
    let c = env.net_task("again", json!({}), &[("http", http, 80)]);
    assert_eq!(
        env.start(&c).await.network_override.unwrap().addr,
        "10.192.0.3"
    );
    env.destroy(&b.id()).await;
    env.destroy(&c.id()).await;
    assert_eq!(
        env.sim.tool_ok("ifconfig", &["-l", "-g", "pot"]).trim(),
        "bridge0"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_tears_down_the_network_of_abandoned_pots() {
    let mut env = Env::pf_ready().await;
    let base = port_base() + 15;
    let t = env.net_task("crashy", json!({}), &[("http", base, 80)]);
    env.start(&t).await;
    let pot = pot_of(&t);
    let state = env.state_dir(&t);
    // The plugin, the task's supervisor and the task all die: only the host state is left.
    env.plugin.kill();
    env.kill_supervisor_and_task(&t);
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
    let Env(node) = env;
    node.plugin.shutdown().await;
    node.sim.assert_clean("at the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_bridge_with_ports() {
    let env = Env::pf_ready().await;
    // What `pot create-private-bridge -B backend -S 4` leaves.
    let bridges = env.sim.dir.join("root/opt/pot/bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    std::fs::write(
        bridges.join("backend"),
        "net=10.192.0.16/29\ngateway=10.192.0.17\nname=backend\n",
    )
    .unwrap();
    let base = port_base() + 5;
    let public = env.net_task("pub", json!({}), &[("http", base, 80)]);
    assert_eq!(
        env.start(&public).await.network_override.unwrap().addr,
        "10.192.0.3"
    );
    let cfg = json!({"network_mode": "private-bridge", "bridge": "backend"});
    let a = env.net_task("back-a", cfg.clone(), &[("http", base + 1, 8080)]);
    let resp = env.start(&a).await;
    assert_eq!(resp.network_override.unwrap().addr, "10.192.0.18");
    let b = env.net_task("back-b", cfg, &[]);
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
    env.assert_pot_conf_has(
        p,
        &[
            "network_type=private-bridge",
            "bridge=backend",
            "vnet=true",
            "ip=10.192.0.18",
            "pot.stack=ipv4",
        ],
    );
    for t in [&public, &a, &b] {
        env.destroy(&t.id()).await;
    }
    assert!(
        block(&env.sim.tool_ok("ifconfig", &["bridge1"]))
            .2
            .is_empty()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bridges_destroyed_by_hand_are_set_up_again() {
    let env = Env::pf_ready_with(json!({"network_stack": "dual"})).await;
    let bridged = json!({"network_mode": "public-bridge"});
    let first = env.net_task("first", bridged.clone(), &[]);
    env.start(&first).await;
    env.destroy(&first.id()).await;
    // The plugin found (made) both bridges once; an operator removes them while it runs.
    let made = env.sim.tool_ok("ifconfig", &["-g", "bridge"]);
    for bridge in made.split_whitespace() {
        env.sim.tool_ok("ifconfig", &[bridge, "destroy"]);
    }
    let second = env.net_task("second", bridged, &[]);
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
    env.destroy(&second.id()).await;
    env.finish().await;
}
