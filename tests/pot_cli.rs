//! The pot CLI beside the driver: pot's status file moves as pot moves it, and a `pot stop` by
//! hand (played with the simulated tools, step for step as pot's stop.sh) ends the task, which
//! WaitTask reports, and leaves a teardown that is still clean.

mod common;

use common::env::{Env, Setup, pot_of, publish_port};
use common::{SimHost, TestTask};

/// `${POT_TMP}/pot_status_<pot>`, as pot's set-status.sh names it.
fn status(sim: &SimHost, pot: &str) -> Option<String> {
    std::fs::read_to_string(sim.dir.join(format!("root/tmp/pot_status_{pot}"))).ok()
}

fn set_status(sim: &SimHost, pot: &str, value: &str) {
    let path = sim.dir.join(format!("root/tmp/pot_status_{pot}"));
    std::fs::write(path, format!("pot.status={value}\n")).unwrap();
}

/// `pot stop -p POT` on the simulated host, as stop.sh does it: status `stopping` (its
/// interfaces read from the status file), `jail -r`, `ifconfig <epair> destroy` for each of
/// those interfaces, the pot's rdr anchor flushed, its mounts unmounted, status `stopped`.
fn pot_stop_by_hand(sim: &SimHost, pot: &str) {
    let current = status(sim, pot).expect("pot stop needs the status file");
    let (state, ifnames) = current
        .trim_end()
        .strip_prefix("pot.status=")
        .and_then(|v| v.split_once(','))
        .unwrap_or_else(|| panic!("not pot's status line: {current:?}"));
    assert!(
        ["started", "doa", "stopped"].contains(&state),
        "pot refuses to stop a pot in state {state}"
    );
    set_status(sim, pot, &format!("stopping,{ifnames}"));
    if sim.tool("jls", &["-j", pot], "").0 == 0 {
        sim.tool_ok("jail", &["-r", pot]);
    }
    for epair in ifnames.split(':').filter(|i| !i.is_empty()) {
        sim.tool_ok("ifconfig", &[epair, "destroy"]);
    }
    // `_get_pot_rdr_anchor_name`: the last 55 characters, leading `_` dropped.
    let anchor = &pot[pot.len().saturating_sub(55)..].trim_start_matches('_');
    sim.tool_ok(
        "pfctl",
        &["-a", &format!("pot-rdr/{anchor}"), "-F", "nat", "-q"],
    );
    // `_pot_umount`: devfs, tmpfs and fscomp.conf's mounts below the root; the pot's own
    // dataset stays mounted.
    let below_root = format!(
        "{}/",
        sim.dir
            .join(format!("root/opt/pot/jails/{pot}/m"))
            .display()
    );
    let mut mounts: Vec<String> = sim
        .tool_ok("mount", &["-p"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 2 && f[2] != "zfs" && f[1].starts_with(&below_root))
        .map(|f| f[1].to_string())
        .collect();
    mounts.sort_by_key(|t| std::cmp::Reverse(t.matches('/').count()));
    for target in mounts {
        sim.tool_ok("umount", &[&target]);
    }
    set_status(sim, pot, "stopped,");
}

/// The host ends of pot's epairs (`p4…`, `p6…`; the bridge is in group `pot` too).
fn host_epairs(sim: &SimHost) -> Vec<String> {
    sim.tool_ok("ifconfig", &["-l", "-g", "pot"])
        .split_whitespace()
        .filter(|i| i.starts_with("p4") || i.starts_with("p6"))
        .map(String::from)
        .collect()
}

/// A task on the public bridge (the Go driver's default network) with host port `port`.
fn bridged_task(env: &Env, name: &str, port: i32) -> TestTask {
    let mut t = env.task(name, &env.sh_config("echo ready; sleep 60"));
    publish_port(&mut t, "http", port, 80);
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn status_file_moves_as_pot_moves_it_and_a_pot_stop_by_hand_is_survived() {
    let env = Env::setup(Setup {
        pot_pf_main: true,
        ..Setup::default()
    })
    .await;
    let port = 21000 + (std::process::id() as i32 % 400) * 20;

    // A Nomad stop: started with the host epair (start.sh's `$_epaira:$_ipv6_epaira`, an
    // IPv4-only pot keeping the colon), then stopped; destroy removes the file.
    let t = bridged_task(&env, "stopped-by-nomad", port);
    env.start_ready(&t).await;
    let pot = pot_of(&t).to_string();
    let epairs = host_epairs(&env.sim);
    assert_eq!(epairs.len(), 1, "{epairs:?}");
    let epair = &epairs[0];
    assert_eq!(
        status(&env.sim, &pot).as_deref(),
        Some(format!("pot.status=started,{epair}:\n").as_str())
    );
    env.stop(&t.id(), 5).await;
    env.wait(&t.id(), 10.0).await;
    assert_eq!(
        status(&env.sim, &pot).as_deref(),
        Some("pot.status=stopped,\n")
    );
    env.destroy(&t.id()).await;
    assert_eq!(status(&env.sim, &pot), None);

    // `pot stop` by hand: it destroys the epair the status file names, the task's exit reaches
    // WaitTask, and DestroyTask cleans up what is left.
    let t = bridged_task(&env, "stopped-by-hand", port + 1);
    env.start_ready(&t).await;
    let pot = pot_of(&t).to_string();
    pot_stop_by_hand(&env.sim, &pot);
    assert_eq!(
        host_epairs(&env.sim),
        Vec::<String>::new(),
        "pot stop left the pot's epair behind"
    );
    let exit = env.exit(&t.id(), 20.0).await;
    assert!(
        exit.exit_code != 0 || exit.signal != 0,
        "a task whose jail was removed ended with success: {exit:?}"
    );
    env.destroy(&t.id()).await;
    assert_eq!(status(&env.sim, &pot), None);
    env.finish().await;
}
