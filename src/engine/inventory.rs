//! What is on the node, for an operator (`potctl`): every pot with its state and owner, one pot
//! in detail, published ports ([`published`]), resource usage ([`usage`]), images and the image
//! cache ([`images`]). Read-only: nothing here changes the host.
//!
//! Pots are the direct children of pot's jails dataset, whoever made them; the driver's carry
//! [`OWNER_PROPERTY`] with the Nomad task id, and their task's state lives under `state_dir`.

use super::attributes;
use super::image::IMAGE_PROP;
use super::layout::{OWNER_PROPERTY, PotName, PotPaths, task_id_of_owner};
use super::potconf::PotConf;
use super::state::{self, ExitInfo, read_json};
use super::task_id::TaskId;
use super::{Engine, EngineError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

mod images;
mod published;
mod usage;

pub use images::{CacheFile, ImageInfo, Images};
pub use published::Published;
pub use usage::{NodeCpu, PotUsage};

/// Where a pot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PotState {
    /// Its jail exists and its task, if the driver started one, has not exited.
    Running,
    /// The driver's task exited; the pot waits for Nomad to destroy it.
    Exited,
    /// No jail.
    Stopped,
    /// The driver's task state without a pot: an interrupted start or teardown (`potctl gc`).
    Debris,
    /// Its jail was removed but the kernel still holds it (`jls -d`), or its teardown waits
    /// for the reconciler because the dying jail keeps its datasets busy.
    Dying,
}

impl PotState {
    pub fn as_str(self) -> &'static str {
        match self {
            PotState::Running => "running",
            PotState::Exited => "exited",
            PotState::Stopped => "stopped",
            PotState::Debris => "debris",
            PotState::Dying => "dying",
        }
    }
}

/// The Nomad task a driver pot belongs to, from the task id on its dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub task: TaskId,
}

impl Owner {
    /// `None` for an owner property that is not a task id: the driver records only ids it
    /// has parsed, so another value was set by hand.
    fn parse(task_id: &str) -> Option<Owner> {
        TaskId::parse(task_id).ok().map(|task| Owner { task })
    }
}

/// `{"task_id", "alloc_id", "task"}`, the form `potctl ls --json` has always printed.
impl Serialize for Owner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut o = s.serialize_struct("Owner", 3)?;
        o.serialize_field("task_id", &self.task.to_string())?;
        o.serialize_field("alloc_id", &self.task.alloc_id)?;
        o.serialize_field("task", &self.task.task_name)?;
        o.end()
    }
}

/// One line of `potctl ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PotSummary {
    pub name: String,
    pub state: PotState,
    /// `pot.type` (`single`, `multi`).
    #[serde(rename = "type")]
    pub pot_type: Option<String>,
    pub network_type: Option<String>,
    /// pot.conf's `ip` (several for an alias pot).
    pub ip: Option<String>,
    pub jid: Option<u32>,
    /// The Nomad task, for pots this driver created.
    pub owner: Option<Owner>,
    /// The imported image the pot is cloned from.
    pub image: Option<String>,
}

/// `potctl show`: a pot with its configuration, mounts, ports, limits and last exit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PotDetails {
    #[serde(flatten)]
    pub summary: PotSummary,
    /// pot.conf, line by line.
    pub conf: Vec<ConfEntry>,
    pub mounts: Vec<MountInfo>,
    pub ports: Option<Published>,
    pub limits: LimitsInfo,
    /// Bytes used by the pot's datasets.
    pub disk_used: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub last_exit: Option<ExitInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfEntry {
    pub key: String,
    pub value: String,
}

/// A directory shown in the jail, from the pot's fscomp.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    pub source: String,
    pub target: String,
    pub readonly: bool,
    /// Whether it is mounted now.
    pub mounted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitsInfo {
    /// `pot.rss.memory` and `pot.rss.cpus`, as `pot set-rss` writes them.
    pub memory: Option<String>,
    pub cpus: Option<String>,
    /// The rctl rules on the pot's jail.
    pub rctl: Vec<String>,
}

/// A direct child of the jails dataset, with what ZFS knows of it.
struct PotDataset {
    owner: Option<String>,
    image_prop: Option<String>,
    /// The snapshot its root (`<pot>/m`) was cloned from.
    origin: Option<String>,
    used: Option<u64>,
}

impl Engine {
    /// Every pot on the node, and the driver's task state without a pot, by name.
    pub async fn pots(&self) -> Result<Vec<PotSummary>, EngineError> {
        let datasets = self.pot_datasets().await?;
        let jails: BTreeMap<String, u32> = self
            .host
            .jails()
            .await
            .map_err(EngineError::node("list jails"))?
            .into_iter()
            .map(|(jid, name)| (name, jid))
            .collect();
        let dying = self
            .host
            .dying_jail_names()
            .await
            .map_err(EngineError::node("list dying jails"))?;
        let mut names: BTreeSet<String> = datasets.keys().cloned().collect();
        if let Ok(dirs) = std::fs::read_dir(self.cfg.state_dir.join("tasks")) {
            names.extend(
                dirs.flatten()
                    .map(|d| d.file_name().to_string_lossy().into_owned())
                    .filter(|n| PotName::new(n).is_ok()),
            );
        }
        let jails_dataset = self.cfg.jails_dataset();
        Ok(names
            .into_iter()
            .map(|name| {
                let ds = datasets.get(&name);
                let conf = self.pot_conf_of(&name);
                let state_dir = self.cfg.state_dir.join("tasks").join(&name);
                let jid = jails.get(&name).copied();
                let state = match (ds, jid) {
                    _ if state_dir.join(super::dying::DEFERRED_FILE).exists() => PotState::Dying,
                    _ if state_dir.join(state::EXIT_FILE).exists() => PotState::Exited,
                    (_, Some(_)) => PotState::Running,
                    _ if dying.contains(&name) => PotState::Dying,
                    (Some(_), None) => PotState::Stopped,
                    (None, None) => PotState::Debris,
                };
                PotSummary {
                    state,
                    pot_type: conf.as_ref().and_then(|c| c.get("pot.type")),
                    network_type: conf.as_ref().and_then(|c| c.get("network_type")),
                    ip: conf
                        .as_ref()
                        .and_then(|c| c.get_raw("ip").map(str::trim).map(str::to_string))
                        .filter(|ip| !ip.is_empty()),
                    jid,
                    owner: ds.and_then(|d| d.owner.as_deref()).and_then(Owner::parse),
                    image: ds
                        .and_then(|d| d.origin.as_deref())
                        .and_then(|o| image_of_origin(&jails_dataset, o)),
                    name,
                }
            })
            .collect())
    }

    /// One pot in detail; [`EngineError::NotFound`] when the node has neither the pot nor its
    /// task state.
    pub async fn pot_details(&self, pot: &PotName) -> Result<PotDetails, EngineError> {
        let p = pot.as_str();
        let summary = self
            .pots()
            .await?
            .into_iter()
            .find(|s| s.name == p)
            .ok_or_else(|| EngineError::NotFound { pot: p.to_string() })?;
        let paths = PotPaths::new(&self.cfg.jails_dir(), pot);
        let conf = std::fs::read_to_string(paths.conf_dir.join("pot.conf")).unwrap_or_default();
        let conf_lines: Vec<ConfEntry> = conf
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| ConfEntry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        let parsed = PotConf::parse(&conf);
        let mounted: BTreeSet<PathBuf> = self
            .host
            .mounts()
            .await
            .map_err(EngineError::host(p))?
            .into_iter()
            .map(|m| m.target)
            .collect();
        // The record keeps names with blanks whole; fscomp.conf (pot's `<source> <target>`
        // lines) cannot, and is read only for pots without a record.
        let mounts = match self.mount_record(pot) {
            Some(record) => record
                .mounts
                .into_iter()
                .filter_map(|m| {
                    Some(MountInfo {
                        source: m.source?.display().to_string(),
                        mounted: mounted.contains(&m.target),
                        target: m.in_jail,
                        readonly: m.readonly,
                    })
                })
                .collect(),
            None => std::fs::read_to_string(paths.conf_dir.join("fscomp.conf"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (source, target) = (f.next()?, f.next()?);
                    let in_root = paths.root.join(target.trim_start_matches('/'));
                    Some(MountInfo {
                        source: source.to_string(),
                        target: target.to_string(),
                        readonly: f.next() == Some("ro"),
                        mounted: mounted.contains(&in_root),
                    })
                })
                .collect(),
        };
        let rctl = if summary.jid.is_some() {
            self.host
                .rctl_rules(p)
                .await
                .map_err(EngineError::host(p))?
        } else {
            Vec::new()
        };
        let dataset = format!("{}/{p}", self.cfg.jails_dataset());
        let disk_used = match self.host.zfs_used_tree(&dataset).await {
            Ok(rows) => rows
                .into_iter()
                .find(|(n, _)| *n == dataset)
                .map(|(_, u)| u),
            Err(e) if e.is_absent() => None,
            Err(e) => return Err(EngineError::host(p)(e)),
        };
        let dir = self.task_state_dir(pot);
        Ok(PotDetails {
            conf: conf_lines,
            mounts,
            ports: self.published_of(pot).await?,
            limits: LimitsInfo {
                memory: parsed.get("pot.rss.memory"),
                cpus: parsed.get("pot.rss.cpus"),
                rctl,
            },
            disk_used,
            started_at_ms: read_json::<state::Pids>(&dir.join(state::PIDS_FILE))
                .map(|p| p.started_at_ms),
            last_exit: read_json(&dir.join(state::EXIT_FILE)),
            summary,
        })
    }

    /// `pot info`: the pot's identity, network, whether it runs, and its attributes.
    pub async fn pot_info(&self, pot: &PotName) -> Result<PotInfo, EngineError> {
        let p = pot.as_str();
        let conf = self
            .pot_conf_of(p)
            .ok_or_else(|| EngineError::NotFound { pot: p.to_string() })?;
        let active = self
            .host
            .jail_exists(p)
            .await
            .map_err(EngineError::host(p))?;
        let (attributes, jail_attributes) = attributes::of_pot(&conf);
        Ok(PotInfo {
            name: p.to_string(),
            pot_type: conf.get("pot.type"),
            base: conf.get("pot.base"),
            level: conf.get("pot.level"),
            potbase: conf.get("pot.potbase").filter(|b| !b.is_empty()),
            network_type: conf.get("network_type"),
            ip: conf.get_raw("ip").map(str::trim).map(str::to_string),
            bridge: conf.get("bridge"),
            active,
            attributes,
            jail_attributes,
        })
    }

    /// The direct children of the jails dataset, by pot name.
    async fn pot_datasets(&self) -> Result<BTreeMap<String, PotDataset>, EngineError> {
        let jails = self.cfg.jails_dataset();
        let what = format!("list the pots in {jails}");
        let owners = self
            .host
            .zfs_list_tree(&jails, OWNER_PROPERTY)
            .await
            .map_err(EngineError::node(&what))?;
        let stamps: BTreeMap<String, String> = self
            .host
            .zfs_list_tree(&jails, IMAGE_PROP)
            .await
            .map_err(EngineError::node(&what))?
            .into_iter()
            .filter_map(|d| Some((d.name, d.user_prop?)))
            .collect();
        let used: BTreeMap<String, u64> = self
            .host
            .zfs_used_tree(&jails)
            .await
            .map_err(EngineError::node(&what))?
            .into_iter()
            .collect();
        let origins: BTreeMap<&str, &str> = owners
            .iter()
            .filter_map(|d| Some((d.name.as_str(), d.origin.as_deref()?)))
            .collect();
        let prefix = format!("{jails}/");
        Ok(owners
            .iter()
            .filter_map(|d| {
                let name = d.name.strip_prefix(&prefix)?;
                (!name.contains('/')).then(|| {
                    (
                        name.to_string(),
                        PotDataset {
                            owner: d.user_prop.as_deref().map(task_id_of_owner),
                            image_prop: stamps.get(&d.name).cloned(),
                            origin: origins
                                .get(format!("{}/m", d.name).as_str())
                                .map(|o| o.to_string()),
                            used: used.get(&d.name).copied(),
                        },
                    )
                })
            })
            .collect())
    }

    fn pot_conf_of(&self, name: &str) -> Option<PotConf> {
        let path = self.cfg.jails_dir().join(name).join("conf/pot.conf");
        std::fs::read_to_string(path)
            .ok()
            .map(|t| PotConf::parse(&t))
    }
}

/// `pot info`'s fields, for a person (`potctl info`) and for tools (`--json`, as Ansible's
/// pot fact reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PotInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub pot_type: Option<String>,
    pub base: Option<String>,
    pub level: Option<String>,
    pub potbase: Option<String>,
    pub network_type: Option<String>,
    pub ip: Option<String>,
    pub bridge: Option<String>,
    pub active: bool,
    /// pot's own attributes; missing ones are `NO`.
    pub attributes: BTreeMap<String, String>,
    /// Jail attributes; missing ones have pot's default.
    pub jail_attributes: BTreeMap<String, String>,
}

/// The image pot of a clone origin `<jails>/<image>/m@<snap>`.
fn image_of_origin(jails: &str, origin: &str) -> Option<String> {
    let dataset = origin.split('@').next()?;
    let rest = dataset.strip_prefix(jails)?.strip_prefix('/')?;
    Some(rest.split('/').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_nomad_task_ids() {
        let o = Owner::parse("4fe1de8e-eab5/web/a510890d").unwrap();
        assert_eq!(o.task.alloc_id, "4fe1de8e-eab5");
        assert_eq!(o.task.task_name, "web");
        assert_eq!(o.task.to_string(), "4fe1de8e-eab5/web/a510890d");
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({
                "task_id": "4fe1de8e-eab5/web/a510890d",
                "alloc_id": "4fe1de8e-eab5",
                "task": "web",
            })
        );
        assert_eq!(Owner::parse("set-by-hand"), None);
    }

    #[test]
    fn clone_origins_name_their_image() {
        let jails = "zroot/pot/jails";
        assert_eq!(
            image_of_origin(jails, "zroot/pot/jails/demo_1_0/m@1700000000").as_deref(),
            Some("demo_1_0")
        );
        assert_eq!(image_of_origin(jails, "zroot/other/x/m@1"), None);
    }
}
