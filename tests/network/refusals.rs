//! Bad network input is refused and changes nothing; a host without VIMAGE offers no bridges.

use crate::common::TestTask;
use crate::{Env, POT_PF_MAIN, port_base};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn bad_network_input_is_refused_and_changes_nothing() {
    let env = Env::new().await;
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(!bridge_ok);
    assert!(
        descr.contains("bridge networking unavailable") && descr.contains("pot-rdr"),
        "{descr}"
    );
    let base = port_base() + 10;
    let no_pf = env.net_task("nopf", json!({"network_mode": "public-bridge"}), &[]);
    let e = env.try_start(&no_pf).await.unwrap_err();
    assert!(e.message().contains("no anchor pot-nat"), "{e:?}");
    let (code, _, err) = env.sim.tool("pfctl", &["-f", "-"], POT_PF_MAIN);
    assert_eq!(code, 0, "{err}");

    let holder = env.net_task(
        "holder",
        json!({"ip": "10.192.0.50"}),
        &[("http", base, 80)],
    );
    env.start(&holder).await;
    let before = env.sim.calls().len();
    let cases: Vec<(TestTask, &str)> = vec![
        (
            env.net_task("t1", json!({"network_mode": "vlan"}), &[]),
            "unknown network_mode \"vlan\"",
        ),
        (
            env.net_task(
                "t2",
                json!({"network_mode": "public-bridge", "ip": "192.168.1.5"}),
                &[],
            ),
            "ip 192.168.1.5 is not a free host address of network 10.192.0.0/10",
        ),
        (
            env.net_task("t3", json!({"ip": "10.192.0.1"}), &[("x", base + 1, 80)]),
            "is not a free host address",
        ),
        (
            env.net_task(
                "t4",
                json!({"network_mode": "public-bridge", "ip": "10.192.0.50"}),
                &[],
            ),
            "ip 10.192.0.50 is already used by another pot",
        ),
        (
            env.net_task("t5", json!({"port_map": [{"web": "80"}]}), &[]),
            "port_map \"web\": Nomad allocated no port",
        ),
        (
            env.net_task("t6", json!({}), &[("a", base + 2, 80), ("b", base + 2, 81)]),
            "host port",
        ),
        (
            env.net_task(
                "t7",
                json!({"network_mode": "private-bridge", "bridge": "nope"}),
                &[],
            ),
            "private bridge \"nope\" does not exist",
        ),
        (
            env.net_task("t8", json!({"network_mode": "alias"}), &[]),
            "network_mode \"alias\" needs `ip`",
        ),
        (
            env.net_task(
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
    env.destroy(&holder.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_vimage_no_bridges() {
    let env = Env::pf_ready().await;
    env.sim.tool_ok("sysctl", &["kern.features.vimage=0"]);
    let (bridge_ok, descr) = env.fingerprint().await;
    assert!(!bridge_ok);
    assert!(descr.contains("the kernel has no VIMAGE"), "{descr}");
    let t = env.net_task("novnet", json!({}), &[("http", port_base() + 19, 80)]);
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
