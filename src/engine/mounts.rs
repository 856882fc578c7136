//! The engine's record of what it mounted under a pot's jail root.
//!
//! Teardown unmounts what the record lists, in one `umount` call, so it never has to read names
//! back out of the host's mount table. The table (`mount -p --libxo json`) is read only for a
//! pot without a record (made by an older driver) and for a jail allowed to mount file systems
//! itself.

use super::attributes::JailAttributes;
use super::layout::{PotName, PotPaths};
use super::state::{read_json, write_atomic};
use super::{Engine, EngineError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const RECORD_FILE: &str = "mounts.json";

/// Mounts under the jail root, each recorded before it is made.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountRecord {
    pub mounts: Vec<RecordedMount>,
    /// The jail may mount file systems itself (`allow.mount…`): only the table knows those.
    #[serde(default)]
    pub jail_mounts: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedMount {
    /// nullfs source on the host; `None` for the file systems jail(8) mounts (devfs, …).
    pub source: Option<PathBuf>,
    /// Where it is mounted, on the host.
    pub target: PathBuf,
    /// The target as the jail sees it.
    pub in_jail: String,
    pub readonly: bool,
}

impl MountRecord {
    /// The mounts jail(8) makes itself at `jail -c` for these attributes (`mount.devfs` always,
    /// as pot passes it), and whether the jail may mount more.
    pub fn add_jail_mounts(&mut self, root: &Path, attributes: &JailAttributes) {
        let yes = |a: &str| attributes.get(a) == "YES";
        for (in_jail, wanted) in [
            ("/dev", true),
            ("/dev/fd", yes("fdescfs")),
            ("/proc", yes("procfs")),
        ] {
            if wanted {
                self.mounts.push(RecordedMount {
                    source: None,
                    target: root.join(&in_jail[1..]),
                    in_jail: in_jail.into(),
                    readonly: false,
                });
            }
        }
        self.jail_mounts = ["mount", "linprocfs", "nullfs", "tmpfs", "zfs"]
            .into_iter()
            .any(yes);
    }
}

impl Engine {
    /// The pot's mount record, if it has one.
    pub(super) fn mount_record(&self, pot: &PotName) -> Option<MountRecord> {
        read_json(&self.task_state_dir(pot).join(RECORD_FILE))
    }

    /// Writes the record; called before each mount it adds, so a crash leaves nothing unlisted.
    pub(super) fn save_mounts(
        &self,
        pot: &PotName,
        record: &MountRecord,
    ) -> Result<(), EngineError> {
        let dir = self.task_state_dir(pot);
        let path = dir.join(RECORD_FILE);
        std::fs::create_dir_all(&dir)
            .and_then(|_| {
                write_atomic(
                    &path,
                    &serde_json::to_vec(record).expect("mount record serializes"),
                )
            })
            .map_err(EngineError::io(pot.as_str(), "write", &path))
    }

    /// Unmounts everything under the pot's jail root but its own datasets, deepest first; a
    /// target that is no longer mounted is fine.
    pub(super) async fn unmount_all(
        &self,
        pot: &PotName,
        paths: &PotPaths,
    ) -> Result<(), EngineError> {
        let p = pot.as_str();
        let record = self.mount_record(pot);
        let mut targets: Vec<PathBuf> = record
            .iter()
            .flat_map(|r| r.mounts.iter().map(|m| m.target.clone()))
            .collect();
        if record.as_ref().is_none_or(|r| r.jail_mounts) {
            targets.extend(
                self.host
                    .mounts()
                    .await
                    .map_err(EngineError::host(p))?
                    .into_iter()
                    // The pot's own datasets go with `zfs destroy`; nullfs, devfs, tmpfs are ours.
                    .filter(|m| m.fstype != "zfs" && m.target.starts_with(&paths.root))
                    .map(|m| m.target),
            );
        }
        // Deepest first, like pot's bottom-up fscomp.conf walk.
        targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
        targets.dedup();
        // All in one call, which is all a teardown after a start needs. It fails when a target
        // is no longer mounted (a teardown repeated after a crash or a failure) as well as for
        // a real failure: then each target is asked alone, and only "not mounted" is done.
        if targets.len() > 1 {
            match self.host.unmount_each(&targets).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!(pot = %pot, error = %e, "unmounting target by target"),
            }
        }
        for target in targets {
            match self.host.unmount(&target).await {
                Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::potconf::PotConf;
    use crate::engine::testing::{calls_since, engine_on};
    use nomad_harness::sim::SimHost;

    #[test]
    fn jail_mounts_follow_the_attributes() {
        let root = Path::new("/opt/pot/jails/web v2_1/m");
        let mut r = MountRecord::default();
        r.add_jail_mounts(root, &JailAttributes::default());
        assert_eq!(r.mounts.len(), 1);
        assert_eq!(r.mounts[0].target, root.join("dev"));
        assert!(!r.jail_mounts);

        let conf = PotConf::parse("pot.attr.procfs=YES\npot.attr.fdescfs=YES\n");
        let attrs = JailAttributes::from_job(
            JailAttributes::from_image(&conf),
            &[
                ("procfs".into(), "YES".into()),
                ("fdescfs".into(), "YES".into()),
                ("tmpfs".into(), "YES".into()),
            ],
            &["procfs".into(), "fdescfs".into(), "tmpfs".into()],
        )
        .unwrap();
        let mut r = MountRecord::default();
        r.add_jail_mounts(root, &attrs);
        let targets: Vec<&Path> = r.mounts.iter().map(|m| m.target.as_path()).collect();
        assert_eq!(
            targets,
            [root.join("dev"), root.join("dev/fd"), root.join("proc")]
        );
        assert!(r.jail_mounts);
    }

    /// Three nullfs mounts under `pot`'s jail root, made and recorded as a start makes them.
    async fn mounted(engine: &Engine, sim: &SimHost, pot: &PotName) -> MountRecord {
        let paths = PotPaths::new(&engine.cfg.jails_dir(), pot);
        let source = sim.tmp.path().join("task dir");
        std::fs::create_dir_all(&source).unwrap();
        let mut record = MountRecord::default();
        for d in ["local", "secrets", "alloc"] {
            let target = paths.root.join(d);
            std::fs::create_dir_all(&target).unwrap();
            record.mounts.push(RecordedMount {
                source: Some(source.clone()),
                target: target.clone(),
                in_jail: format!("/{d}"),
                readonly: false,
            });
            engine.save_mounts(pot, &record).unwrap();
            engine
                .host
                .mount_nullfs(&source, &target, false)
                .await
                .unwrap();
        }
        record
    }

    fn nullfs_mounts(sim: &SimHost) -> usize {
        sim.tool_ok("mount", &["-p"]).matches("nullfs").count()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn teardown_unmounts_in_one_call_and_target_by_target_once_that_fails() {
        let sim = SimHost::create();
        let engine = engine_on(&sim);
        let pot = PotName::new("web_1").unwrap();
        let paths = PotPaths::new(&engine.cfg.jails_dir(), &pot);
        let record = mounted(&engine, &sim, &pot).await;
        let mark = sim.calls().len();
        engine.unmount_all(&pot, &paths).await.unwrap();
        let calls = calls_since(&sim, mark);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0][..2], ["umount", "-f"]);
        assert_eq!(calls[0].len(), 2 + record.mounts.len());
        assert_eq!(nullfs_mounts(&sim), 0);

        // Repeated, as after a crash mid-teardown or by a restarted plugin: the one call fails
        // on what is gone, and each target is asked alone.
        let local = &record.mounts[0];
        engine
            .host
            .mount_nullfs(local.source.as_ref().unwrap(), &local.target, false)
            .await
            .unwrap();
        let mark = sim.calls().len();
        engine.unmount_all(&pot, &paths).await.unwrap();
        let calls = calls_since(&sim, mark);
        assert_eq!(calls.len(), 1 + record.mounts.len(), "{calls:?}");
        assert_eq!(nullfs_mounts(&sim), 0);

        // A target that will not unmount is an error naming it.
        let record = mounted(&engine, &sim, &pot).await;
        let busy = record.mounts[1].target.to_str().unwrap().to_string();
        sim.fault(&[
            "umount",
            "--word",
            &busy,
            "--fail",
            "1",
            "--stderr",
            "umount: unmount failed: Device busy",
        ]);
        let e = engine.unmount_all(&pot, &paths).await.unwrap_err();
        assert!(e.to_string().contains("Device busy"), "{e}");
        assert!(e.to_string().contains(&busy), "{e}");
        sim.clear_faults();
        engine.unmount_all(&pot, &paths).await.unwrap();
        assert_eq!(nullfs_mounts(&sim), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_a_record_the_mount_table_is_read() {
        let sim = SimHost::create();
        let engine = engine_on(&sim);
        let pot = PotName::new("web_1").unwrap();
        let paths = PotPaths::new(&engine.cfg.jails_dir(), &pot);
        mounted(&engine, &sim, &pot).await;
        std::fs::remove_file(engine.task_state_dir(&pot).join(RECORD_FILE)).unwrap();
        let mark = sim.calls().len();
        engine.unmount_all(&pot, &paths).await.unwrap();
        let calls = calls_since(&sim, mark);
        assert_eq!(calls[0], ["mount", "--libxo", "json", "-p"], "{calls:?}");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(nullfs_mounts(&sim), 0);
    }

    #[test]
    fn record_keeps_names_with_blanks_and_newlines() {
        let r = MountRecord {
            mounts: vec![RecordedMount {
                source: Some("/var/nomad data/alloc/1/web\tv2\n/local".into()),
                target: "/opt/pot/jails/p/m/local".into(),
                in_jail: "/local".into(),
                readonly: true,
            }],
            jail_mounts: false,
        };
        let back: MountRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
