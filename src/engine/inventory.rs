//! What is on the node, for an operator (`potctl`): every pot with its state and owner, one pot
//! in detail, published ports, resource usage, images and the image cache. Read-only: nothing
//! here changes the host.
//!
//! Pots are the direct children of pot's jails dataset, whoever made them; the driver's carry
//! [`OWNER_PROPERTY`] with the Nomad task id, and their task's state lives under `state_dir`.

use super::attributes;
use super::image::IMAGE_PROP;
use super::layout::{OWNER_PROPERTY, PotName, PotPaths, task_id_of_owner};
use super::network::{AliasAddr, PortSpec};
use super::potconf::PotConf;
use super::state::{self, ExitInfo, read_json};
use super::{Engine, EngineError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

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

/// The Nomad task a driver pot belongs to, from its task id `<alloc>/<task>/<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub task_id: String,
    pub alloc_id: String,
    pub task: String,
}

impl Owner {
    fn parse(task_id: &str) -> Owner {
        let mut parts = task_id.splitn(3, '/');
        let alloc_id = parts.next().unwrap_or_default().to_string();
        let task = parts.next().unwrap_or_default().to_string();
        Owner {
            task_id: task_id.to_string(),
            alloc_id,
            task,
        }
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

/// What one task publishes: ports redirected by pf, or addresses on host NICs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub pot: String,
    pub ip: Option<Ipv4Addr>,
    pub ports: Vec<PortSpec>,
    pub aliases: Vec<AliasAddr>,
    /// `pot-rdr/<anchor>` and the rules pf holds in it now.
    pub anchor: Option<String>,
    pub pf_rules: Vec<String>,
}

/// A running pot's resource usage, as pot's `get-rss` reads it from rctl.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PotUsage {
    pub pot: String,
    /// Bytes.
    pub memoryuse: u64,
    pub vmemoryuse: u64,
    pub swapuse: u64,
    /// Percent of one CPU.
    pub pcpu: f64,
    /// Seconds.
    pub cputime: u64,
    /// `hw.clockrate * pcpu / 100`, get-rss's `TotalTicks`.
    pub cputime_mhz: f64,
}

/// An imported image: a pot others are cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub name: String,
    /// Bytes used by its datasets.
    pub used: u64,
    /// Imported by this driver (so `potctl images gc` may remove it once unused).
    pub driver: bool,
    pub imported_at_ms: Option<u64>,
    /// The cache file it was imported from.
    pub file: Option<String>,
    /// Pots cloned from it.
    pub users: Vec<String>,
}

/// A file in the image cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheFile {
    pub file: String,
    pub size: u64,
    /// The imported image made from it, if it is still there.
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Images {
    pub images: Vec<ImageInfo>,
    pub cache: Vec<CacheFile>,
}

/// The node's CPUs as Nomad's fingerprint counts them: its compute is `cpus × mhz` MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeCpu {
    pub cpus: u32,
    /// Clock rate of one CPU (`hw.clockrate`).
    pub mhz: u64,
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
    /// `hw.ncpu` and `hw.clockrate`, from which a Nomad client derives a task's CPU share.
    pub async fn node_cpu(&self) -> Result<NodeCpu, EngineError> {
        let read = |name: &'static str| async move {
            let v = self
                .host
                .sysctl(name)
                .await
                .map_err(EngineError::node(&format!("read {name}")))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| EngineError::Node {
                    what: format!("read {name}"),
                    reason: format!("{v:?} is not a positive number"),
                })
        };
        let cpus = read("hw.ncpu").await?;
        Ok(NodeCpu {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            mhz: read("hw.clockrate").await?,
        })
    }

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
                    owner: ds.and_then(|d| d.owner.as_deref()).map(Owner::parse),
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

    /// What each task publishes, with the rules pf holds for it now.
    pub async fn published(&self) -> Result<Vec<Published>, EngineError> {
        let mut out = Vec::new();
        for (pot, _) in self.network_records() {
            if let Some(p) = self.published_of(&pot).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn published_of(&self, pot: &PotName) -> Result<Option<Published>, EngineError> {
        let Some(record) = self.network_record(pot) else {
            return Ok(None);
        };
        let pf_rules = match &record.anchor {
            Some(anchor) => match self.host.pf_nat_rules(anchor).await {
                Ok(rules) => rules,
                // An anchor pf has dropped (or never loaded) holds no rules.
                Err(crate::host::HostError::Failed { .. }) => Vec::new(),
                Err(e) => return Err(EngineError::host(pot.as_str())(e)),
            },
            None => Vec::new(),
        };
        Ok(Some(Published {
            pot: pot.to_string(),
            ip: record.ip,
            ports: record.ports,
            aliases: record.aliases,
            anchor: record.anchor,
            pf_rules,
        }))
    }

    /// rctl usage of every running pot (or of `only`), as pot's `get-rss` reports it. Needs
    /// `kern.racct.enable=1`.
    pub async fn usage_report(&self, only: Option<&PotName>) -> Result<Vec<PotUsage>, EngineError> {
        let racct = self.host.sysctl("kern.racct.enable").await;
        if !racct.as_ref().is_ok_and(|v| v == "1") {
            return Err(EngineError::Node {
                what: "resource usage".to_string(),
                reason: "kern.racct.enable is 0: set kern.racct.enable=1 in /boot/loader.conf and reboot".to_string(),
            });
        }
        let clockrate: f64 = self
            .host
            .sysctl("hw.clockrate")
            .await
            .map_err(EngineError::node("read hw.clockrate"))?
            .trim()
            .parse()
            .unwrap_or(0.0);
        let mut running = self
            .host
            .jail_names()
            .await
            .map_err(EngineError::node("list jails"))?;
        if let Some(pot) = only {
            if !running.contains(pot.as_str()) {
                return Err(EngineError::State {
                    pot: pot.to_string(),
                    reason: "not running (no jail)".to_string(),
                });
            }
            running.retain(|n| n == pot.as_str());
        }
        let mut out = Vec::new();
        for name in running {
            let u = self
                .host
                .rctl_usage(&name)
                .await
                .map_err(EngineError::host(&name))?;
            out.push(PotUsage {
                memoryuse: u.memoryuse,
                vmemoryuse: u.vmemoryuse,
                swapuse: u.swapuse,
                pcpu: u.pcpu,
                cputime: u.cputime,
                // get-rss computes it with bc at scale 3.
                cputime_mhz: (clockrate * u.pcpu / 100.0 * 1000.0).round() / 1000.0,
                pot: name,
            });
        }
        Ok(out)
    }

    /// Imported images (pots that others are cloned from, or that this driver imported) and
    /// the files in the image cache.
    pub async fn images(&self) -> Result<Images, EngineError> {
        let datasets = self.pot_datasets().await?;
        let jails = self.cfg.jails_dataset();
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, d) in &datasets {
            if let Some(image) = d.origin.as_deref().and_then(|o| image_of_origin(&jails, o)) {
                users.entry(image).or_default().push(name.clone());
            }
        }
        let images: Vec<ImageInfo> = datasets
            .iter()
            .filter(|(name, d)| d.image_prop.is_some() || users.contains_key(*name))
            .map(|(name, d)| {
                let stamp = d.image_prop.as_deref().and_then(|v| v.rsplit_once('@'));
                ImageInfo {
                    name: name.clone(),
                    used: d.used.unwrap_or(0),
                    driver: d.image_prop.is_some(),
                    imported_at_ms: stamp.and_then(|(_, ms)| ms.parse().ok()),
                    file: stamp
                        .map(|(file, _)| file.to_string())
                        .filter(|f| !f.is_empty()),
                    users: users.get(name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let mut cache = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.cfg.cache_dir) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if !(file.ends_with(".xz") || file.ends_with(".xz.part")) {
                    continue;
                }
                // The driver records its source file; pot imports `<pot>_<tag>.xz` as
                // `<pot>_<tag>` with dots turned into underscores.
                let image = images
                    .iter()
                    .find(|i| i.file.as_deref() == Some(file.as_str()))
                    .or_else(|| {
                        let local = file.strip_suffix(".xz")?.replace('.', "_");
                        images.iter().find(|i| i.name == local)
                    })
                    .map(|i| i.name.clone());
                cache.push(CacheFile {
                    size: e.metadata().map(|m| m.len()).unwrap_or(0),
                    image,
                    file,
                });
            }
        }
        cache.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(Images { images, cache })
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
        let o = Owner::parse("4fe1de8e-eab5/web/a510890d");
        assert_eq!(o.alloc_id, "4fe1de8e-eab5");
        assert_eq!(o.task, "web");
        assert_eq!(o.task_id, "4fe1de8e-eab5/web/a510890d");
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
