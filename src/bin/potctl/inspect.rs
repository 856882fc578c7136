//! The inspect commands: what is on the node, for a person (tables) or a tool (`--json`).

use crate::output::{Table, json, or_dash, size, time, visible};
use anyhow::Result;
use clap::Subcommand;
use nomad_pot_driver::engine::{
    Engine, EngineConfig, ExitInfo, Images, Overrides, PotDetails, PotInfo, PotName, PotState,
    PotSummary, PotUsage, Published, Setting, Source,
};
use serde_json::json;

#[derive(Subcommand)]
pub enum Command {
    /// Every pot on the node: state, type, network, address, and the Nomad allocation and task
    /// that own it (empty for pots the driver did not create).
    #[command(after_help = "Examples:
  potctl ls                   all pots, with their owning allocation and task
  potctl ls --json | jq -r '.[] | select(.owner.alloc_id == \"4fe1de8e-…\") | .name'
  potctl --sim /tmp/sim ls    the pots of a simulated host")]
    Ls,
    /// The running pots (as `ls`, only those with a jail and a live task).
    #[command(after_help = "Examples:
  potctl ps
  potctl ps --json | jq -r '.[].name'")]
    Ps,
    /// One pot in detail: state, owner, image, pot.conf, mounts, ports and pf rules, limits
    /// and rctl rules, disk use, start time and last exit.
    #[command(after_help = "Examples:
  potctl show web_a510890d_4fe1de8e-eab5-…    why did this task stop? see `last exit`
  potctl show web_a510890d_4fe1de8e-eab5-… --json | jq .last_exit")]
    Show {
        /// The pot (see `potctl ls`).
        pot: String,
    },
    /// A pot as `pot info -p POT` prints it (tab-indented), or as one JSON object with
    /// `--json` (what Ansible's pot facts read).
    #[command(after_help = "Examples:
  potctl info web_a510890d_4fe1de8e-eab5-…
  potctl info web_a510890d_4fe1de8e-eab5-… --json | jq .active")]
    Info {
        /// The pot.
        pot: String,
    },
    /// What each task publishes: host port to jail address and port, the pf anchor and the
    /// rdr rules pf holds in it now; an alias pot's addresses on host NICs.
    #[command(after_help = "Examples:
  potctl ports                 every published port on the node
  potctl ports web_a510890d_…  one pot's ports and pf rules
  potctl ports --json | jq '.published[].ports'")]
    Ports {
        /// Only this pot.
        pot: Option<String>,
    },
    /// Resource usage of running pots from rctl, as `pot get-rss` reports it (needs
    /// kern.racct.enable=1).
    #[command(after_help = "Examples:
  potctl stats                 every running pot
  potctl stats web_a510890d_…  one pot; --json gives get-rss's ResourceUsage object")]
    Stats {
        /// Only this pot.
        pot: Option<String>,
    },
    /// The effective configuration (each agent-config key) and where each value came from:
    /// the driver's or pot's default, pot's config files, or the agent config given with
    /// --config, --sim or their environment variables.
    #[command(after_help = "Examples:
  potctl --config /usr/local/etc/nomad/pot-driver.json config
  POTCTL_CONFIG=/usr/local/etc/nomad/pot-driver.json potctl config --json")]
    Config,
}

/// Runs an inspect command against `engine`; `agent` says where its agent config came from.
pub async fn run(command: Command, engine: &Engine, agent: &Agent, as_json: bool) -> Result<()> {
    let out = match command {
        Command::Ls => pots(engine.pots().await?, as_json),
        Command::Ps => pots(
            engine
                .pots()
                .await?
                .into_iter()
                .filter(|p| p.state == PotState::Running)
                .collect(),
            as_json,
        ),
        Command::Show { pot } => show(&engine.pot_details(&PotName::new(&pot)?).await?, as_json),
        Command::Info { pot } => info(&engine.pot_info(&PotName::new(&pot)?).await?, as_json),
        Command::Ports { pot } => {
            let mut published = engine.published().await?;
            if let Some(pot) = pot {
                let pot = PotName::new(&pot)?;
                published.retain(|p| p.pot == pot.as_str());
                if published.is_empty() {
                    anyhow::bail!("pot {pot} publishes nothing (or does not exist)");
                }
            }
            ports(engine.config(), &published, as_json)
        }
        Command::Stats { pot } => {
            let only = pot.as_deref().map(PotName::new).transpose()?;
            stats(&engine.usage_report(only.as_ref()).await?, as_json)
        }
        Command::Config => config(agent, &EngineConfig::explain(&agent.overrides)?, as_json)?,
    };
    print!("{out}");
    Ok(())
}

/// The agent config potctl works with, and how it was chosen.
pub struct Agent {
    pub overrides: Overrides,
    /// `--config FILE`, `$POTCTL_SIM=DIR`, … or none.
    pub origin: String,
}

fn pots(list: Vec<PotSummary>, as_json: bool) -> String {
    if as_json {
        return json(&list);
    }
    if list.is_empty() {
        return "no pots\n".to_string();
    }
    let mut t = Table::new(&[
        "NAME", "STATE", "TYPE", "NETWORK", "IP", "ALLOC", "TASK", "IMAGE",
    ]);
    for p in list {
        let owner = p.owner.as_ref();
        t.row(vec![
            p.name,
            p.state.as_str().to_string(),
            or_dash(p.pot_type),
            or_dash(p.network_type),
            or_dash(p.ip),
            or_dash(owner.map(|o| &o.task.alloc_id)),
            or_dash(owner.map(|o| &o.task.task_name)),
            or_dash(p.image),
        ]);
    }
    t.render()
}

fn show(d: &PotDetails, as_json: bool) -> String {
    if as_json {
        return json(d);
    }
    let s = &d.summary;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11}{v}\n"));
    line("pot", s.name.clone());
    line(
        "state",
        match s.jid {
            Some(jid) => format!("{} (jid {jid})", s.state.as_str()),
            None => s.state.as_str().to_string(),
        },
    );
    line("type", or_dash(s.pot_type.as_ref()));
    line(
        "network",
        format!(
            "{} {}",
            or_dash(s.network_type.as_ref()),
            or_dash(s.ip.as_ref())
        ),
    );
    line(
        "owner",
        match &s.owner {
            Some(o) => format!(
                "alloc {} task {} (task id {})",
                o.task.alloc_id,
                visible(&o.task.task_name),
                visible(&o.task.to_string())
            ),
            None => "- (not created by the driver)".to_string(),
        },
    );
    line("image", or_dash(s.image.as_ref()));
    line("disk used", or_dash(d.disk_used.map(size)));
    line("started", or_dash(d.started_at_ms.map(time)));
    line(
        "last exit",
        d.last_exit.as_ref().map_or("-".to_string(), last_exit),
    );
    line(
        "limits",
        format!(
            "memory {}, cpus {}",
            or_dash(d.limits.memory.as_ref()),
            or_dash(d.limits.cpus.as_ref())
        ),
    );
    for rule in &d.limits.rctl {
        out.push_str(&format!("  rctl {rule}\n"));
    }
    out.push_str("mounts:\n");
    if d.mounts.is_empty() {
        out.push_str("  -\n");
    }
    for m in &d.mounts {
        out.push_str(&format!(
            "  {} <- {} ({}{})\n",
            visible(&m.target),
            visible(&m.source),
            if m.readonly { "ro" } else { "rw" },
            if m.mounted { "" } else { ", not mounted" }
        ));
    }
    out.push_str("ports:\n");
    match &d.ports {
        None => out.push_str("  -\n"),
        Some(p) => {
            for line in published_lines(p) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out.push_str("pot.conf:\n");
    for e in &d.conf {
        out.push_str(&format!("  {}={}\n", e.key, e.value));
    }
    out
}

/// A pot's ports, addresses and pf rules, one per line.
/// How a task ended, for `show`.
fn last_exit(e: &ExitInfo) -> String {
    let how = match (&e.error, e.signal) {
        (Some(err), _) => format!("unknown: {err}"),
        (None, 0) => format!("code {}", e.exit_code),
        (None, sig) => format!("signal {sig} (code {})", e.exit_code),
    };
    let oom = e.memory_limit_hit.map_or(String::new(), |bytes| {
        format!(", OOM: its memory limit of {} was reached", size(bytes))
    });
    format!("{how} at {}{oom}", time(e.finished_at_ms))
}

fn published_lines(p: &Published) -> Vec<String> {
    let ip = or_dash(p.ip);
    let mut lines: Vec<String> = p
        .ports
        .iter()
        .map(|port| {
            format!(
                "{} tcp,udp host:{} -> {ip}:{}",
                port.label, port.host_port, port.pot_port
            )
        })
        .collect();
    lines.extend(
        p.aliases
            .iter()
            .map(|a| format!("alias {}|{}", a.nic, a.ip)),
    );
    if let Some(anchor) = &p.anchor {
        lines.push(format!("pf anchor {anchor}:"));
        lines.extend(p.pf_rules.iter().map(|r| format!("  {r}")));
    }
    lines
}

fn info(i: &PotInfo, as_json: bool) -> String {
    if as_json {
        return json(i);
    }
    // pot's `info` layout: a name line, then tab-indented `key : value` lines.
    let mut out = format!("pot name : {}\n", i.name);
    let mut field = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("\t{k} : {v}\n"));
        }
    };
    field("type", &i.pot_type);
    field("base", &i.base);
    field("level", &i.level);
    field("base pot", &i.potbase);
    field("network_type", &i.network_type);
    field("ip", &i.ip);
    field("bridge", &i.bridge);
    out.push_str(&format!("\tactive : {}\n", i.active));
    out.push_str("attributes:\n");
    for (k, v) in &i.attributes {
        out.push_str(&format!("\t{k} : {v}\n"));
    }
    out.push_str("jail attributes:\n");
    for (k, v) in &i.jail_attributes {
        out.push_str(&format!("\t{k} : {v}\n"));
    }
    out
}

fn ports(cfg: &EngineConfig, published: &[Published], as_json: bool) -> String {
    // rdr rules match traffic to this address (POT_EXTIF_ADDR) or the NIC's.
    let target = match cfg.network.extif_addr {
        Some(a) => a.to_string(),
        None => cfg.network.extif.clone(),
    };
    if as_json {
        return json(&json!({ "extif": target, "published": published }));
    }
    if published.is_empty() {
        return "no task publishes anything\n".to_string();
    }
    let mut t = Table::new(&["POT", "LABEL", "PROTO", "HOST", "JAIL", "PF ANCHOR"]);
    for p in published {
        let ip = or_dash(p.ip);
        for port in &p.ports {
            t.row(vec![
                p.pot.clone(),
                port.label.clone(),
                "tcp,udp".to_string(),
                format!("{target}:{}", port.host_port),
                format!("{ip}:{}", port.pot_port),
                or_dash(p.anchor.as_ref()),
            ]);
        }
        for a in &p.aliases {
            t.row(vec![
                p.pot.clone(),
                "alias".to_string(),
                "-".to_string(),
                format!("{}|{}", a.nic, a.ip),
                "(the pot's own address)".to_string(),
                "-".to_string(),
            ]);
        }
        if p.ports.is_empty() && p.aliases.is_empty() {
            t.row(vec![
                p.pot.clone(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                format!("{ip} (bridged, nothing published)"),
                "-".to_string(),
            ]);
        }
    }
    let mut out = t.render();
    if published.iter().any(|p| !p.ports.is_empty()) {
        out.push_str(
            "Each published port also answers on 127.0.0.1:<host port> (the task's relay).\n",
        );
    }
    for p in published.iter().filter(|p| p.anchor.is_some()) {
        out.push_str(&format!(
            "\npf rules in {}:\n",
            p.anchor.as_deref().unwrap_or_default()
        ));
        if p.pf_rules.is_empty() {
            out.push_str("  (none)\n");
        }
        for r in &p.pf_rules {
            out.push_str(&format!("  {r}\n"));
        }
    }
    out
}

fn stats(usage: &[PotUsage], as_json: bool) -> String {
    if as_json {
        // Each entry carries get-rss -J's `ResourceUsage` object.
        let list: Vec<serde_json::Value> = usage
            .iter()
            .map(|u| {
                json!({
                    "pot": u.pot,
                    "ResourceUsage": {
                        "MemoryStats": { "RSS": u.memoryuse, "Swap": u.swapuse },
                        "CpuStats": { "TotalTicks": u.cputime_mhz, "Percent": u.pcpu },
                    },
                    "vmemoryuse": u.vmemoryuse,
                    "cputime": u.cputime,
                })
            })
            .collect();
        return json(&list);
    }
    if usage.is_empty() {
        return "no running pots\n".to_string();
    }
    let mut t = Table::new(&[
        "POT", "MEMORY", "VIRTUAL", "SWAP", "PCPU", "CPUTIME", "CPU MHZ",
    ]);
    for u in usage {
        t.row(vec![
            u.pot.clone(),
            size(u.memoryuse),
            size(u.vmemoryuse),
            size(u.swapuse),
            format!("{}%", u.pcpu),
            format!("{}s", u.cputime),
            format!("{:.3}", u.cputime_mhz),
        ]);
    }
    t.render()
}

fn config(agent: &Agent, settings: &[Setting], as_json: bool) -> Result<String> {
    if as_json {
        return Ok(json(
            &json!({ "agent_config": agent.origin, "settings": settings }),
        ));
    }
    let mut out = format!("agent config: {}\n", agent.origin);
    let mut t = Table::new(&["KEY", "SOURCE", "VALUE"]);
    for s in settings {
        let source = match s.source {
            Source::Default => "default".to_string(),
            Source::AgentConfig => "agent config".to_string(),
            Source::PotConf => s
                .file
                .as_ref()
                .and_then(|f| f.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pot.conf".to_string()),
        };
        t.row(vec![s.key.to_string(), source, or_dash(Some(&s.value))]);
    }
    out.push_str(&t.render());
    Ok(out)
}

/// `potctl images`: imported images with their users, then the cache files.
pub fn images(images: &Images, as_json: bool) -> String {
    if as_json {
        return json(images);
    }
    let mut out = String::new();
    if images.images.is_empty() {
        out.push_str("no imported images\n");
    } else {
        let mut t = Table::new(&["IMAGE", "SIZE", "IMPORTED", "BY", "USED BY"]);
        for i in &images.images {
            t.row(vec![
                i.name.clone(),
                size(i.used),
                or_dash(i.imported_at_ms.map(time)),
                if i.driver { "driver" } else { "other" }.to_string(),
                or_dash(Some(i.users.join(","))),
            ]);
        }
        out.push_str(&t.render());
    }
    out.push('\n');
    if images.cache.is_empty() {
        out.push_str("no files in the image cache\n");
    } else {
        let mut t = Table::new(&["CACHE FILE", "SIZE", "IMAGE"]);
        for c in &images.cache {
            t.row(vec![
                c.file.clone(),
                size(c.size),
                or_dash(c.image.as_ref()),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_exit_says_how_the_task_ended_and_whether_it_reached_its_memory_limit() {
        let mut e = ExitInfo {
            exit_code: 137,
            signal: 9,
            finished_at_ms: 0,
            error: None,
            memory_limit_hit: None,
        };
        assert_eq!(last_exit(&e), "signal 9 (code 137) at 1970-01-01T00:00:00Z");
        e.memory_limit_hit = Some(64 << 20);
        assert_eq!(
            last_exit(&e),
            format!(
                "signal 9 (code 137) at 1970-01-01T00:00:00Z, OOM: its memory limit of {} was reached",
                size(64 << 20)
            )
        );
    }
}
