//! The ipv6 and dual stacks: SLAAC, bridge refusals, ip6 inherit, a dual-stack public bridge.

use crate::{Env, block, port_base, pot_of};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_stack_slaac_bridge_refusals_and_ip6_inherit() {
    let env = Env::pf_ready_with(json!({"network_stack": "ipv6"})).await;
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
        let t = env.net_task("v6", cfg, &ports);
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
    let t = env.net_task("slaac", json!({"network_mode": "public-bridge"}), &[]);
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
    // pot still gives an ipv6 bridge pot an IPv4 in pot.conf.
    env.assert_pot_conf_has(
        p,
        &[
            "network_type=public-bridge",
            "pot.stack=ipv6",
            "vnet=true",
            "ip=10.192.0.3",
        ],
    );
    assert_eq!(
        env.sim
            .tool_ok("sysctl", &["-n", "net.inet.ip.forwarding"])
            .trim(),
        "0"
    );
    env.destroy(&t.id()).await;
    assert_eq!(block(&env.sim.tool_ok("ifconfig", &["bridge0"])).2, ["em0"]);
    // inherit with stack ipv6: the jail shares the host's IPv6 stack only, as pot does.
    let t = env.net_task("host6", json!({"network_mode": "host"}), &[]);
    env.start(&t).await;
    let p = pot_of(&t);
    let params = env
        .sim
        .tool_ok("jls", &["-j", p.as_str(), "-n", "ip4", "ip6"]);
    assert!(
        params.contains("ip6=inherit") && !params.contains("ip4=inherit"),
        "{params}"
    );
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_public_bridge() {
    let env = Env::pf_ready_with(json!({"network_stack": "dual"})).await;
    let port = port_base() + 18;
    let t = env.net_task("dual", json!({}), &[("http", port, 80)]);
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
    env.assert_pot_conf_has(p, &["pot.stack=dual"]);
    env.destroy(&t.id()).await;
    assert_eq!(
        env.sim
            .tool_ok("ifconfig", &["-l"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo0", "em0", "bridge0", "bridge1"]
    );
    env.finish().await;
}
