//! `potctl doctor`: is this node ready to run pot tasks under Nomad? The host checks come from
//! the engine; the Nomad side (the plugin binary in `plugin_dir`, the agent's `plugin` block and
//! its config) is checked here.

use super::setup::{DEFAULT_PF_CONF, host_default};
use anyhow::{Context, Result};
use clap::Args;
use nomad_pot_driver::driver::AgentConfig;
use nomad_pot_driver::engine::{Check, Engine, EngineConfig};
use serde_json::{Value as Json, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The file name Nomad knows the plugin by (its config key).
const PLUGIN_FILE: &str = "nomad-pot-driver";
/// Where FreeBSD's nomad package looks for plugins.
const DEFAULT_PLUGIN_DIR: &str = "/usr/local/libexec/nomad/plugins";

#[derive(Args)]
pub struct DoctorArgs {
    /// The pf rules file pf loads at boot. Default: /etc/pf.conf (with --sim, the simulated
    /// host's DIR/root/etc/pf.conf).
    #[arg(long, value_name = "FILE")]
    pub pf_conf: Option<PathBuf>,
    /// The Nomad agent's config file (HCL): its plugin_dir and `plugin "nomad-pot-driver"`
    /// block are checked, and that block's config is the one checked against the host (unless
    /// --config or --sim is given).
    #[arg(long, value_name = "FILE")]
    pub nomad_config: Option<PathBuf>,
    /// The plugin binary. Default: nomad-pot-driver in the agent's plugin_dir, else in
    /// /usr/local/libexec/nomad/plugins (with --sim, under the simulated host's DIR/root).
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<PathBuf>,
}

/// What the Nomad agent's config file says about this plugin.
struct NomadSide {
    checks: Vec<Check>,
    /// The plugin block's `config {}`, when there is one.
    plugin_config: Option<Json>,
    plugin_dir: Option<PathBuf>,
}

pub async fn doctor(
    args: &DoctorArgs,
    agent: Option<Json>,
    sim: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let pf_conf = args
        .pf_conf
        .clone()
        .unwrap_or_else(|| host_default(sim, DEFAULT_PF_CONF));
    let nomad = match &args.nomad_config {
        Some(file) => nomad_side(file)?,
        None => NomadSide {
            checks: Vec::new(),
            plugin_config: None,
            plugin_dir: None,
        },
    };
    let mut checks = Vec::new();
    let agent = agent.or(nomad.plugin_config.clone()).unwrap_or(json!({}));
    match AgentConfig::from_json(&agent)
        .map_err(anyhow::Error::from)
        .and_then(|a| Ok(EngineConfig::resolve(&a.engine)?))
    {
        Ok(cfg) => {
            let engine = Engine::new(cfg, std::sync::Arc::new(|_, _| {}));
            checks.extend(engine.readiness(&pf_conf).await);
        }
        Err(e) => checks.push(Check::fail(
            "pot_conf",
            format!("the driver's configuration is invalid: {e:#}"),
            "fix that key in the agent's plugin config or in pot.conf",
        )),
    }
    checks.extend(nomad.checks);
    let plugin = args.plugin.clone().unwrap_or_else(|| {
        nomad
            .plugin_dir
            .clone()
            .unwrap_or_else(|| host_default(sim, DEFAULT_PLUGIN_DIR))
            .join(PLUGIN_FILE)
    });
    checks.push(check_plugin_binary(&plugin));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let list: Vec<Json> = checks
            .iter()
            .map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix}))
            .collect();
        println!("{}", json!({"ok": failed == 0, "checks": list}));
    } else {
        for c in &checks {
            println!(
                "{:<4} {:<13} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("{:<18} fix: {fix}", "");
            }
        }
        match failed {
            0 => println!("the node is ready"),
            n => println!("{n} check(s) failed"),
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A top-level string attribute of an HCL body.
fn top_string(body: &hcl::Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|a| a.key() == key)
        .and_then(|a| match a.expr() {
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        })
}

fn nomad_side(file: &Path) -> Result<NomadSide> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let body: hcl::Body =
        hcl::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
    let mut checks = Vec::new();
    let plugin_dir = match (
        top_string(&body, "plugin_dir"),
        top_string(&body, "data_dir"),
    ) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(data)) => Some(Path::new(&data).join("plugins")),
        (None, None) => None,
    };
    checks.push(match &plugin_dir {
        Some(dir) if dir.is_dir() => Check::pass(
            "plugin_dir",
            format!("Nomad loads plugins from {}", dir.display()),
        ),
        Some(dir) => Check::fail(
            "plugin_dir",
            format!("Nomad's plugin_dir {} does not exist", dir.display()),
            format!("mkdir -p {} and install {PLUGIN_FILE} there", dir.display()),
        ),
        None => Check::fail(
            "plugin_dir",
            format!("{} sets neither plugin_dir nor data_dir", file.display()),
            format!("add plugin_dir = \"{DEFAULT_PLUGIN_DIR}\""),
        ),
    });
    let plugin_config = nomad_pot_driver::jobspec::plugin_config(&text, PLUGIN_FILE)
        .with_context(|| format!("reading the plugin block of {}", file.display()))?;
    checks.push(match &plugin_config {
        None => Check::fail(
            "agent_config",
            format!("{} has no `plugin \"{PLUGIN_FILE}\"` block: Nomad 1.10+ skips the plugin", file.display()),
            format!("add plugin \"{PLUGIN_FILE}\" {{}} (the name is the binary's file name; jobs say driver = \"pot\")"),
        ),
        Some(config) => match AgentConfig::from_json(config) {
            Ok(_) => Check::pass(
                "agent_config",
                format!("plugin \"{PLUGIN_FILE}\" block found; its config decodes"),
            ),
            Err(e) => Check::fail(
                "agent_config",
                format!("the plugin's config does not decode: {e}"),
                "fix that key in the plugin block's config {} (see the README's agent-config table)",
            ),
        },
    });
    Ok(NomadSide {
        checks,
        plugin_config,
        plugin_dir,
    })
}

fn check_plugin_binary(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Check::pass(
            "plugin",
            format!(
                "{} is executable (`potctl plugin-check {}` runs it as Nomad does)",
                path.display(),
                path.display()
            ),
        ),
        Ok(_) => Check::fail(
            "plugin",
            format!(
                "{} is not an executable file: Nomad skips it",
                path.display()
            ),
            format!("chmod 0755 {}", path.display()),
        ),
        Err(e) => Check::fail(
            "plugin",
            format!("{}: {e}", path.display()),
            format!(
                "install the plugin binary as {} (or pass --plugin / --nomad-config)",
                path.display()
            ),
        ),
    }
}
