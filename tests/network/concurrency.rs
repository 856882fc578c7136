//! Fifty bridged starts at once, and pot's global lock holding back address picks only.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{TestTask, within};
use crate::{Env, block, port_base, pot_of};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_bridged_tasks_start_concurrently() {
    const N: usize = 50;
    let env = Env::pf_ready().await;
    let base = port_base() + 1000;
    let tasks: Vec<TestTask> = (0..N)
        .map(|i| {
            env.net_task(
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
    let ids: Vec<String> = tasks.iter().map(TestTask::id).collect();
    futures::future::join_all(ids.iter().map(|id| env.destroy(id))).await;
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
    let env = Env::pf_ready().await;
    let lock_path = env.sim.config["lock_file"].as_str().unwrap().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("take pot's global lock");

    let inherit = env.net_task("plain", json!({}), &[]);
    let resp = tokio::time::timeout(Duration::from_secs(30), env.start(&inherit))
        .await
        .expect("an inherit start waited for pot's global lock");
    assert!(resp.network_override.is_none());

    let bridged = env.net_task("web", json!({}), &[("http", port_base() + 2000, 80)]);
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

    env.destroy(&inherit.id()).await;
    env.destroy(&bridged.id()).await;
    env.finish().await;
}
