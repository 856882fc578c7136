//! pot semantics: images, pots, jails and the task lifecycle, on top of [`crate::host`].

mod attributes;
pub mod command;
mod config;
mod dying;
mod error;
mod exec;
mod facts;
mod files;
mod gc;
mod image;
mod inventory;
mod jailfs;
mod layout;
mod lifecycle;
mod limits;
mod mounts;
mod network;
mod options;
mod ports;
mod potconf;
mod setup;
mod state;
mod status;
pub mod supervisor;
mod task_id;
#[cfg(test)]
mod testing;

pub use config::{
    ConfigError, DEFAULT_IMAGE_MAX_SIZE, DEFAULT_POT_CONF_DIR, DEFAULT_TOOL_PATH, EngineConfig,
    ImagePolicy, Kind, NetworkConfig, Overrides, SETTINGS, Setting, Source, Stack, Values,
};
pub use error::EngineError;
pub use exec::{ExecInput, ExecOutput, ExecOutputEvent, ExecSession, TtySize};
pub use gc::{GcReport, OUTSIDE_START_GRACE};
pub use image::{
    CaFileError, ExportOptions, Exported, GcReport as ImageGcReport, ImageError, ImageRef, Proxies,
};
pub use inventory::{
    CacheFile, ConfEntry, ImageInfo, Images, LimitsInfo, MountInfo, NodeCpu, Owner, PotDetails,
    PotInfo, PotState, PotSummary, PotUsage, Published,
};
pub use layout::{MountSpec, OWNER_PROPERTY, PotName};
pub use lifecycle::{Instance, TaskSpec, TaskUsage};
pub use limits::{Limits, parse_count, parse_cpu_list, parse_size};
pub use network::{
    AliasAddr, NetworkMode, NetworkRecord, NetworkRequest, PortSpec, UnknownNetworkMode,
};
pub use options::{CopyIn, Dns, HostEntry, HostMount};
pub use potconf::PotConf;
pub use setup::{Check, InitReport, PF_ANCHOR_LINES, with_pot_anchors};
pub use state::ExitInfo;
pub use task_id::TaskId;

use crate::host::{self, Host};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Receives progress messages about a pot, for Nomad's task events.
pub type EventSink = Arc<dyn Fn(&PotName, String) + Send + Sync>;

/// Result of the host readiness checks behind the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    pub description: String,
    /// `kern.racct.enable`: resource usage (TaskStats) and limits need it.
    pub racct: bool,
    /// Why bridge networking cannot work here (no VIMAGE, no pf, no pot anchors), if so.
    pub bridge_unavailable: Option<String>,
}

/// The pot engine for one host.
pub struct Engine {
    cfg: Arc<EngineConfig>,
    host: Host,
    images: image::ImageLocks,
    instances: Mutex<HashMap<PotName, Arc<Instance>>>,
    /// Pots between the start of `start` and their first tracked instance.
    starting: Mutex<HashSet<PotName>>,
    /// Pots whose jail, shm objects and rctl rules a stop in this process has removed: their
    /// teardown skips those three calls. A restarted plugin knows none and repeats them.
    stopped: Mutex<HashSet<PotName>>,
    /// racct and the CPU count, once read (see [`facts`]).
    facts: Mutex<facts::HostFacts>,
    events: EventSink,
    /// Once `vnet-start` has been done by this process: the bridges ready, by gateway address.
    vnet: tokio::sync::Mutex<Option<std::collections::BTreeMap<std::net::Ipv4Addr, String>>>,
    /// The IPv6 bridge, once this process has found or made it.
    vnet6: tokio::sync::Mutex<Option<String>>,
    /// The executable run as `<supervisor> shim` for every task: the running binary, which must
    /// dispatch that argument to [`supervisor::main`].
    supervisor: PathBuf,
}

impl Engine {
    pub fn new(cfg: EngineConfig, events: EventSink) -> Engine {
        Engine {
            host: Host::new(cfg.tool_path.clone()),
            cfg: Arc::new(cfg),
            images: image::ImageLocks::default(),
            instances: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            stopped: Mutex::new(HashSet::new()),
            facts: Mutex::new(facts::HostFacts::default()),
            events,
            vnet: tokio::sync::Mutex::new(None),
            vnet6: tokio::sync::Mutex::new(None),
            supervisor: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("nomad-pot-driver")),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Checks what a task start needs: root, the base tools, pot's dataset tree.
    pub async fn health(&self) -> Health {
        let unhealthy = |description: String| Health {
            healthy: false,
            description,
            racct: false,
            bridge_unavailable: None,
        };
        let missing = self.host.missing_tools();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|t| t.name()).collect();
            return unhealthy(format!(
                "base tools missing from tool_path {}: {}",
                self.host.tool_path(),
                names.join(", ")
            ));
        }
        if !nix::unistd::geteuid().is_root() {
            return unhealthy("the plugin must run as root to manage jails".to_string());
        }
        let jails = self.cfg.jails_dataset();
        match self.host.zfs_exists(&jails).await {
            Ok(true) => {}
            Ok(false) => {
                return unhealthy(format!(
                    "ZFS dataset {jails} does not exist: run `pot init` or set zfs_root"
                ));
            }
            Err(e) => return unhealthy(format!("cannot inspect ZFS: {e}")),
        }
        if !self.cfg.jails_dir().is_dir() {
            return unhealthy(format!(
                "{} is not a directory: is {jails} mounted at fs_root?",
                self.cfg.jails_dir().display()
            ));
        }
        // Read afresh at every fingerprint; starts then need not read it.
        let racct = self.read_racct().await;
        let bridge_unavailable = self.bridge_unavailable().await;
        Health {
            healthy: true,
            description: match &bridge_unavailable {
                None => "healthy".to_string(),
                Some(why) => format!("healthy; bridge networking unavailable: {why}"),
            },
            racct,
            bridge_unavailable,
        }
    }

    /// What bridge networking lacks on this host: VIMAGE, pfctl or pot's pf anchors.
    async fn bridge_unavailable(&self) -> Option<String> {
        match self.host.sysctl("kern.features.vimage").await {
            Ok(v) if v == "1" => {}
            _ => return Some("the kernel has no VIMAGE".to_string()),
        }
        let missing: Vec<&str> = [host::Tool::Ifconfig, host::Tool::Pfctl, host::Tool::Route]
            .into_iter()
            .filter(|t| self.host.resolve(*t).is_err())
            .map(|t| t.name())
            .collect();
        if !missing.is_empty() {
            return Some(format!("{} not in tool_path", missing.join(", ")));
        }
        match self.host.pf_anchors().await {
            Err(e) => Some(format!("pf is not usable: {e}")),
            Ok(a) if !(a.iter().any(|x| x == "pot-nat") && a.iter().any(|x| x == "pot-rdr")) => {
                Some("pf's main ruleset lacks pot's anchors (nat-anchor pot-nat, rdr-anchor \"pot-rdr/*\")".to_string())
            }
            Ok(_) => None,
        }
    }

    /// Task events quote job input (commands, exec_stop's stderr): they are bounded like errors.
    fn event(&self, pot: &PotName, message: String) {
        let message = match crate::text::clip(&message, crate::text::MAX_MESSAGE) {
            std::borrow::Cow::Borrowed(_) => message,
            clipped => clipped.into_owned(),
        };
        (self.events)(pot, message);
    }
}
