//! A kernel that lets go of removed jails slowly (tests/freebsd-sim README "Dying jails"): the
//! real plugin tears down pots whose jails are dying, removes the POSIX shm objects that would
//! keep them dying, retries busy datasets, and hands what it cannot finish to the reconciler.
//!
//! Needs `cargo build --workspace` first (for the simulator) and root, like tests/e2e/.

mod common;

use common::env::*;
use nomad_pot_driver::engine::OUTSIDE_START_GRACE;

/// The plugin's `zfs destroy` calls of `dataset`.
fn destroys(env: &Env, dataset: &str) -> Vec<Vec<String>> {
    env.sim
        .calls()
        .into_iter()
        .map(|c| c.argv)
        .filter(|a| {
            a.get(1).is_some_and(|w| w == "destroy") && a.last().is_some_and(|d| d == dataset)
        })
        .collect()
}

/// After StopTask the jail stays dying (as a jail whose sockets are still closing does);
/// DestroyTask still removes the pot's datasets, as pot does, with `zfs destroy -f -r`.
#[tokio::test(flavor = "multi_thread")]
async fn destroy_removes_the_pot_while_its_jail_is_dying() {
    let env = Env::new().await;
    env.sim.set_dying_time(60.0);
    let t = env.task("dying", &long_task(&env));
    env.start_ready(&t).await;
    env.stop(&t.id(), 5).await;
    env.wait(&t.id(), 10.0).await;
    let pot = pot_of(&t);
    let dying = env.sim.tool_ok("jls", &["-d", "name", "dying"]);
    assert_eq!(dying, format!("{pot} true\n"), "the jail is dying");
    env.destroy(&t.id()).await;
    let dataset = format!("zroot/pot/jails/{pot}");
    assert_eq!(
        destroys(&env, &dataset),
        [["zfs", "destroy", "-f", "-r", &dataset]],
        "one forced destroy, as pot's destroy.sh"
    );
    assert_eq!(
        env.sim.tool_ok("jls", &["-d", "name"]),
        format!("{pot}\n"),
        "the kernel still holds the jail; nothing of ours does"
    );
    env.finish().await;
}

/// A destroy that finds the datasets busy is retried with back-off and then succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_destroy_is_retried() {
    let env = Env::new().await;
    let t = env.task("busy", &long_task(&env));
    env.start_ready(&t).await;
    let dataset = format!("zroot/pot/jails/{}", pot_of(&t));
    let busy = format!("cannot destroy '{dataset}': dataset is busy");
    for nth in ["1", "2"] {
        env.sim.fault(&[
            "zfs", "--word", &dataset, "--nth", nth, "--fail", "1", "--stderr", &busy,
        ]);
    }
    env.destroy(&t.id()).await;
    assert_eq!(
        destroys(&env, &dataset).len(),
        3,
        "two busy answers, then done"
    );
    env.finish().await;
}

/// When the datasets stay busy past the back-off, DestroyTask leaves them to the reconciler:
/// the pot is listed as dying with the reason, the log says why, and the next reconcile pass
/// (here `potctl gc --apply`'s) removes it once the kernel lets go.
#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_that_stays_busy_is_finished_by_the_reconciler() {
    let env = Env::new().await;
    let t = env.task("stuck", &long_task(&env));
    env.start_ready(&t).await;
    let pot = pot_of(&t);
    let dataset = format!("zroot/pot/jails/{pot}");
    let busy = format!("cannot destroy '{dataset}': dataset is busy");
    env.sim
        .fault(&["zfs", "--word", &dataset, "--fail", "1", "--stderr", &busy]);
    env.try_destroy(&t.id())
        .await
        .expect("DestroyTask hands a busy pot to the reconciler");
    let log = env.stderr_with("teardown deferred to the reconciler").await;
    assert!(
        log.contains("teardown deferred to the reconciler") && log.contains("dataset is busy"),
        "the plugin log says why: {log}"
    );
    let engine = engine_for(&env.sim);
    let listed = engine.pots().await.expect("pots");
    let mine = listed
        .iter()
        .find(|p| p.name == pot.as_str())
        .expect("listed");
    assert_eq!(mine.state.as_str(), "dying");
    let report = engine.gc(false, OUTSIDE_START_GRACE).await.expect("gc");
    assert!(
        report.collected.is_empty()
            && report.kept.iter().any(|(p, why)| *p == pot
                && why.contains("dying")
                && why.contains("dataset is busy")),
        "still busy: kept as dying: {report:?}"
    );
    env.sim.clear_faults();
    let report = engine.gc(false, OUTSIDE_START_GRACE).await.expect("gc");
    assert!(
        report
            .collected
            .iter()
            .any(|(p, why)| *p == pot && why.contains("deferred teardown")),
        "{report:?}"
    );
    env.finish().await;
}

/// pot#150: a PostgreSQL-like task leaves POSIX shm objects, which keep its jail dying for
/// ever. Stopping the task removes them (pot's stop.sh), so the jail goes and nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn stop_removes_the_jails_shm_objects() {
    let env = Env::new().await;
    let t = env.task("pg", &long_task(&env));
    env.start_ready(&t).await;
    let pot = pot_of(&t);
    let left = env
        .sim
        .leave_shm(pot.as_str(), "/PostgreSQL.1329587820", 16_580_608);
    let other = env.sim.leave_shm(pot.as_str(), "/PostgreSQL.2", 4096);
    env.stop(&t.id(), 5).await;
    env.wait(&t.id(), 10.0).await;
    let listed = env.sim.tool_ok("posixshmcontrol", &["ls"]);
    assert!(
        !listed.contains(&left) && !listed.contains(&other),
        "{listed}"
    );
    assert_eq!(
        env.sim.tool_ok("jls", &["-d", "name"]),
        "",
        "the jail is freed"
    );
    let removed: Vec<Vec<String>> = env
        .sim
        .calls()
        .into_iter()
        .map(|c| c.argv)
        .filter(|a| {
            a.first().map(String::as_str) == Some("posixshmcontrol")
                && a.get(1).map(String::as_str) == Some("rm")
        })
        .collect();
    assert_eq!(
        removed,
        [
            ["posixshmcontrol", "rm", &left],
            ["posixshmcontrol", "rm", &other]
        ]
    );
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// A jail removed by hand while the plugin was down is dying, not alive: RecoverTask reports
/// the task gone instead of failing on `jls`.
#[tokio::test(flavor = "multi_thread")]
async fn a_dying_jail_counts_as_gone_at_recovery() {
    let mut env = Env::new().await;
    env.sim.set_dying_time(60.0);
    let t = env.task("recover", &long_task(&env));
    let handle = env.start_ready(&t).await.handle.expect("handle");
    env.crash_and_relaunch().await;
    env.sim.tool_ok("jail", &["-R", pot_of(&t).as_str()]);
    let e = env.recover(&handle).await.expect_err("the task is gone");
    assert!(e.message().contains("its jail is gone"), "{e:?}");
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// Teardown runs again after every crash, so each "already gone" or "already done" answer that
/// FreeBSD gives (tests/freebsd-sim README "Already gone, already done") must read as done.
#[tokio::test(flavor = "multi_thread")]
async fn every_already_gone_answer_reads_as_done() {
    use nomad_pot_driver::host::Host;
    let sim = common::SimHost::create();
    let host = Host::new(sim.dir.join("bin").display().to_string());
    let gone = |what: &str, r: Result<(), nomad_pot_driver::host::HostError>| match r {
        Err(e) if e.is_absent() => {}
        other => panic!("{what}: expected an absent object, got {other:?}"),
    };
    gone("jail -R", host.jail_remove("nope", true).await);
    gone("rctl -r", host.rctl_remove_jail("nope").await);
    gone("ifconfig destroy", host.iface_destroy("epair9a").await);
    gone(
        "ifconfig -alias",
        host.iface_remove_alias("em0", "10.9.9.9".parse().unwrap())
            .await,
    );
    gone("umount", host.unmount(&sim.dir.join("root/tmp")).await);
    gone(
        "zfs destroy",
        host.zfs_destroy_recursive("zroot/pot/jails/nope").await,
    );
    gone("posixshmcontrol rm", host.shm_remove("/nope").await);
    host.pf_enable().await.expect("pfctl -e");
    host.pf_enable().await.expect("pfctl -e on an enabled pf");
    sim.tool_ok("pfctl", &["-d"]);
    sim.assert_clean("after the already-gone calls");
}
