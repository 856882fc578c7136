//! `potctl init`: prepares a fresh host the way `pot init` and `pot vnet-start` do, through
//! the engine; idempotent, and with `--dry-run` a plan only.

use anyhow::Result;
use clap::Args;
use nomad_pot_driver::engine::Engine;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// pf's rules file on FreeBSD (`sysrc -n pf_rules`).
pub const DEFAULT_PF_CONF: &str = "/etc/pf.conf";

/// A host path's default: as given on FreeBSD; under the simulated host's root with `--sim`,
/// where freebsd-sim keeps the host's files, so a simulated run never touches the real host.
pub fn host_default(sim: Option<&Path>, path: &str) -> PathBuf {
    match sim {
        Some(dir) => dir.join("root").join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

#[derive(Args)]
pub struct InitArgs {
    /// Print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The pf rules file pf loads at boot, which gets pot's anchor lines. Default:
    /// /etc/pf.conf (with --sim, the simulated host's DIR/root/etc/pf.conf).
    #[arg(long, value_name = "FILE")]
    pub pf_conf: Option<PathBuf>,
}

pub async fn init(
    engine: &Engine,
    args: &InitArgs,
    sim: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let pf_conf = args
        .pf_conf
        .clone()
        .unwrap_or_else(|| host_default(sim, DEFAULT_PF_CONF));
    let report = engine.init(&pf_conf, args.dry_run).await?;
    if json {
        println!(
            "{}",
            json!({"dry_run": report.dry_run, "changes": report.changes})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if report.dry_run { "would" } else { "done" };
    for change in &report.changes {
        println!("{verb}: {change}");
    }
    match (report.changes.is_empty(), report.dry_run) {
        (true, _) => println!("nothing to do: the host is set up"),
        (false, true) => println!("dry run: nothing changed"),
        (false, false) => println!("host set up ({} changes)", report.changes.len()),
    }
    Ok(ExitCode::SUCCESS)
}
