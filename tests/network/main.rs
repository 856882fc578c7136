//! Networking end to end: the real plugin on a simulated host, asserting the exact interfaces,
//! addresses, routes and pf rules a bridged task gets, their teardown, and the refusals of bad
//! input. Needs `cargo build --workspace` first (for the sim). Each scenario ends with
//! `freebsd-sim check` clean.
//!
//! One test binary, a module per part of the network; the world of a scenario is here.

#[path = "../common/mod.rs"]
mod common;

mod alias;
mod bridges;
mod concurrency;
mod ipv6;
mod refusals;

use common::env::{Env, POT_PF_MAIN, Setup, pot_of, publish_port};
use common::{TestTask, within};
use nomad_pot_driver::proto::drivers::FingerprintRequest;
use nomad_pot_driver::proto::structs::attribute;
use serde_json::{Value as Json, json};

/// The network scenarios' additions to the end-to-end world.
impl Env {
    /// [`Env::new`] on a host with pot's main pf ruleset loaded, so bridged tasks start.
    async fn pf_ready() -> Env {
        Env::pf_ready_with(json!({})).await
    }

    /// [`Env::pf_ready`] with some agent options added to the sim's.
    async fn pf_ready_with(agent_options: Json) -> Env {
        Env::setup(Setup {
            agent_options,
            pot_pf_main: true,
            ..Setup::default()
        })
        .await
    }

    /// A task running `sh -c 'echo ready; sleep 60'` with `extra` config keys and Nomad ports.
    fn net_task(&self, name: &str, extra: Json, ports: &[(&str, i32, i32)]) -> TestTask {
        let mut cfg = self.sh_config("echo ready; sleep 60");
        for (k, v) in extra.as_object().expect("extra config keys are an object") {
            cfg[k] = v.clone();
        }
        let mut t = self.task(name, &cfg);
        for &(label, value, to) in ports {
            publish_port(&mut t, label, value, to);
        }
        t
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
