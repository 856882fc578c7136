//! The alias network type: addresses on the host's NIC, and the ones the pot does not own
//! refused and never removed.

use crate::{Env, block, pot_of};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn alias_addresses_on_the_host_nic() {
    let env = Env::new().await;
    let t = env.net_task(
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
    env.assert_pot_conf_has(
        p,
        &[
            "network_type=alias",
            "vnet=false",
            "ip=em0|10.0.2.20 em0|10.0.2.21",
        ],
    );
    // A NIC that does not exist is refused before anything is created.
    let before = env.sim.calls().len();
    let bad = env.net_task(
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
    env.destroy(&t.id()).await;
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
    let env = Env::new().await;
    let em0 = inet_of(&env, "em0");
    let lo0 = inet_of(&env, "lo0");
    let holder = env.net_task(
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
        let t = env.net_task(
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
    let failing = env.net_task(
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
    env.destroy(&holder.id()).await;
    assert_eq!(inet_of(&env, "em0"), em0);
    env.finish().await;
}
