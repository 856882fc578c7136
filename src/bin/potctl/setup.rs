//! `potctl init`: prepares a fresh host the way `pot init` and `pot vnet-start` do, through
//! the engine; idempotent, and with `--dry-run` a plan only.

use anyhow::Result;
use clap::Args;
use nomad_pot_driver::engine::Engine;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// pf's rules file on FreeBSD (`sysrc -n pf_rules`).
pub const DEFAULT_PF_CONF: &str = "/etc/pf.conf";

#[derive(Args)]
pub struct InitArgs {
    /// Print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The pf rules file pf loads at boot, which gets pot's anchor lines.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PF_CONF)]
    pub pf_conf: PathBuf,
}

pub async fn init(engine: &Engine, args: &InitArgs, json: bool) -> Result<ExitCode> {
    let report = engine.init(&args.pf_conf, args.dry_run).await?;
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
