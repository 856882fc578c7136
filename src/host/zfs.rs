//! zfs(8): datasets, snapshots, clones, receive.

use super::{Host, HostError, Tool, argv, display_command};
use std::ffi::OsString;
use std::io::{BufReader, Read};
use std::path::Path;

/// The size of the receive's writes into zfs's stdin. `std::io::copy` from a bare `dyn Read`
/// moves 8 KiB at a time: 26,000 pipe writes, and wake-ups of `zfs receive`, for a 210 MB image.
const RECEIVE_CHUNK: usize = 256 << 10;

impl Host {
    /// Whether dataset `name` exists.
    pub async fn zfs_exists(&self, name: &str) -> Result<bool, HostError> {
        match self.zfs(argv!["list", "-H", "-o", "name", name]).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_absent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Snapshot names (the part after `@`) of `dataset`, oldest name first as pot sorts them.
    pub async fn zfs_snapshots(&self, dataset: &str) -> Result<Vec<String>, HostError> {
        let out = self
            .zfs(argv![
                "list", "-H", "-d", "1", "-t", "snapshot", "-o", "name", dataset
            ])
            .await?;
        Ok(parse_snapshots(&out))
    }

    /// The filesystems and snapshots of the tree `dataset` (`dataset` first), each with the
    /// values of the user properties `props`, from one `zfs list -H -r -t filesystem,snapshot`:
    /// what an image check needs (its provenance and the snapshot to clone) in a single call.
    pub async fn zfs_list_with_snapshots(
        &self,
        dataset: &str,
        props: &[&str],
    ) -> Result<Vec<Listed>, HostError> {
        let mut fields = String::from("name");
        for p in props {
            fields.push(',');
            fields.push_str(p);
        }
        let out = self
            .zfs(argv![
                "list",
                "-H",
                "-r",
                "-t",
                "filesystem,snapshot",
                "-o",
                fields,
                dataset
            ])
            .await?;
        Ok(parse_with_snapshots(&out, props.len()))
    }

    /// `zfs create [-o prop=value]… name` (mountpoint inherited). A dataset of that name
    /// already there is [`HostError::Exists`].
    pub async fn zfs_create(&self, name: &str, props: &[(&str, &str)]) -> Result<(), HostError> {
        let mut args = argv!["create"];
        for (k, v) in props {
            args.extend(argv!["-o", format!("{k}={v}")]);
        }
        args.push(name.into());
        match self.zfs(args).await {
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("dataset already exists") => Err(HostError::Exists {
                command,
                what: dataset_in_message(&stderr),
            }),
            other => other.map(drop),
        }
    }

    /// One property's value (`zfs get -H -o value PROP NAME`).
    pub async fn zfs_get(&self, name: &str, prop: &str) -> Result<String, HostError> {
        let out = self
            .zfs(argv!["get", "-H", "-o", "value", prop, name])
            .await?;
        Ok(out.trim().to_string())
    }

    /// Every filesystem under `parent` (and `parent` itself) with its origin and user property
    /// `prop`.
    pub async fn zfs_list_tree(
        &self,
        parent: &str,
        prop: &str,
    ) -> Result<Vec<DatasetEntry>, HostError> {
        let out = self
            .zfs_list_filesystems(parent, &format!("name,origin,{prop}"))
            .await?;
        Ok(parse_list_tree(&out))
    }

    /// Space used by every filesystem under `parent` (and `parent` itself), in bytes.
    pub async fn zfs_used_tree(&self, parent: &str) -> Result<Vec<(String, u64)>, HostError> {
        let out = self.zfs_list_filesystems(parent, "name,used").await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (name, used) = l.split_once('\t')?;
                Some((name.to_string(), used.trim().parse().ok()?))
            })
            .collect())
    }

    /// `zfs list -H -p -r -t filesystem -o FIELDS PARENT`: tab-separated, exact numbers.
    async fn zfs_list_filesystems(&self, parent: &str, fields: &str) -> Result<String, HostError> {
        self.zfs(argv![
            "list",
            "-H",
            "-p",
            "-r",
            "-t",
            "filesystem",
            "-o",
            fields,
            parent
        ])
        .await
    }

    /// `zfs set prop=value name`.
    pub async fn zfs_set(&self, name: &str, prop: &str, value: &str) -> Result<(), HostError> {
        self.zfs(argv!["set", format!("{prop}={value}"), name])
            .await
            .map(drop)
    }

    /// `zfs set prop=value.. name`: several properties in one call.
    pub async fn zfs_set_props(
        &self,
        name: &str,
        props: &[(&str, String)],
    ) -> Result<(), HostError> {
        let mut args = argv!["set"];
        args.extend(
            props
                .iter()
                .map(|(k, v)| OsString::from(format!("{k}={v}"))),
        );
        args.push(name.into());
        self.zfs(args).await.map(drop)
    }

    /// `zfs clone -o mountpoint=... snapshot target`.
    pub async fn zfs_clone(
        &self,
        snapshot: &str,
        target: &str,
        mountpoint: &Path,
    ) -> Result<(), HostError> {
        let mut mp = OsString::from("mountpoint=");
        mp.push(mountpoint);
        self.zfs(argv!["clone", "-o", mp, snapshot, target])
            .await
            .map(drop)
    }

    /// `zfs set quota=<bytes> name`.
    pub async fn zfs_set_quota(&self, name: &str, bytes: u64) -> Result<(), HostError> {
        self.zfs(argv!["set", format!("quota={bytes}"), name])
            .await
            .map(drop)
    }

    /// `zfs rename from to`.
    pub async fn zfs_rename(&self, from: &str, to: &str) -> Result<(), HostError> {
        self.zfs(argv!["rename", from, to]).await.map(drop)
    }

    /// `zfs destroy -f -r name`, as pot's destroy.sh: `-f` unmounts by force, so the root of
    /// a dying jail does not keep the datasets. An absent dataset is [`HostError::Absent`], one
    /// still busy [`HostError::Busy`].
    pub async fn zfs_destroy_recursive(&self, name: &str) -> Result<(), HostError> {
        self.zfs(argv!["destroy", "-f", "-r", name]).await.map(drop)
    }

    /// Whether `dataset`'s ZFS knows property `prop` (`zfs get -H -o property all`), as pot's
    /// `_is_zfs_property_supported` asks.
    pub async fn zfs_has_property(&self, dataset: &str, prop: &str) -> Result<bool, HostError> {
        let out = self
            .zfs(argv!["get", "-H", "-o", "property", "all", dataset])
            .await?;
        Ok(out.lines().any(|l| l.trim() == prop))
    }

    /// Every filesystem and volume of the tree `root` with where and whether it mounts.
    pub async fn zfs_mount_state(&self, root: &str) -> Result<Vec<MountState>, HostError> {
        let out = self
            .zfs(argv![
                "list",
                "-H",
                "-r",
                "-t",
                "filesystem,volume",
                "-o",
                "name,mountpoint,canmount,mounted",
                root
            ])
            .await?;
        Ok(parse_mount_state(&out))
    }

    /// `zfs mount name`.
    pub async fn zfs_mount(&self, name: &str) -> Result<(), HostError> {
        self.zfs(argv!["mount", name]).await.map(drop)
    }

    /// Streams `stream` into `zfs receive -u [-x prop].. name`: nothing received is mounted,
    /// and each `excluded` property of the stream gives way to the receiving side's (inherited
    /// or default) value. Blocking: call from a blocking thread.
    pub fn zfs_receive_blocking(
        &self,
        name: &str,
        excluded: &[&str],
        stream: &mut dyn Read,
    ) -> Result<(), HostError> {
        let mut args = argv!["receive", "-u"];
        for prop in excluded {
            args.extend(argv!["-x", *prop]);
        }
        args.push(name.into());
        let command = display_command(Tool::Zfs, &args);
        let mut cmd = self.command(Tool::Zfs, &args)?;
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            command: command.clone(),
            source,
        })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // std::io::copy writes a BufReader's whole buffer at once.
        let copied = std::io::copy(
            &mut BufReader::with_capacity(RECEIVE_CHUNK, stream),
            &mut stdin,
        );
        drop(stdin);
        // A failing source must abort the receive: closing stdin alone would let zfs take a
        // cut at a record boundary for the end of the stream.
        if copied.is_err() {
            let _ = child.kill();
        }
        let output = child
            .wait_with_output()
            .map_err(|source| HostError::Spawn {
                command: command.clone(),
                source,
            })?;
        // zfs's own complaint is the most precise; a copy error alone means the source failed.
        match (copied, super::finish(command.clone(), output)) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(HostError::Failed {
                command,
                status: "stream aborted".to_string(),
                stderr: e.to_string(),
            }),
            (Ok(_), Ok(_)) => Ok(()),
        }
    }

    /// `zfs send -R snapshot` into `sink`. Blocking: call from a blocking thread.
    pub fn zfs_send_recursive_blocking(
        &self,
        snapshot: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<(), HostError> {
        let args = argv!["send", "-R", snapshot];
        let command = display_command(Tool::Zfs, &args);
        let spawn_err = |source| HostError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = self.command(Tool::Zfs, &args)?.spawn().map_err(spawn_err)?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Drained on the side so a chatty zfs cannot block on a full stderr pipe.
        let errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        });
        let copied = std::io::copy(&mut stdout, sink);
        if copied.is_err() {
            let _ = child.kill();
        }
        drop(stdout);
        let status = child.wait().map_err(spawn_err)?;
        let output = std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: errors.join().unwrap_or_default(),
        };
        match (copied, super::finish(command.clone(), output)) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(HostError::Failed {
                command,
                status: "output not stored".to_string(),
                stderr: e.to_string(),
            }),
            (Ok(_), Ok(_)) => Ok(()),
        }
    }

    async fn zfs(&self, args: Vec<OsString>) -> Result<String, HostError> {
        match self.run(Tool::Zfs, args).await {
            Ok(out) => Ok(out.stdout),
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("does not exist") => Err(HostError::Absent {
                command,
                what: dataset_in_message(&stderr),
            }),
            // libzfs: EBUSY from the ioctl (`dataset is busy`) or from unmount (`pool or
            // dataset is busy`).
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("dataset is busy") => Err(HostError::Busy {
                command,
                what: dataset_in_message(&stderr),
                stderr,
            }),
            Err(e) => Err(e),
        }
    }
}

/// One line of [`Host::zfs_list_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetEntry {
    pub name: String,
    /// The snapshot this dataset was cloned from.
    pub origin: Option<String>,
    pub user_prop: Option<String>,
}

/// One line of [`Host::zfs_list_with_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `pool/fs` or `pool/fs@snapshot`.
    pub name: String,
    /// The asked properties' values, in order; `None` where unset (`-`).
    pub values: Vec<Option<String>>,
}

/// One line of [`Host::zfs_mount_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountState {
    pub name: String,
    pub mountpoint: String,
    pub canmount: String,
    pub mounted: bool,
}

/// `zfs list -H -o name,mountpoint,canmount,mounted` output; short lines are skipped.
pub fn parse_mount_state(text: &str) -> Vec<MountState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(MountState {
                name: f.next()?.to_string(),
                mountpoint: f.next()?.to_string(),
                canmount: f.next()?.to_string(),
                mounted: f.next()? == "yes",
            })
        })
        .collect()
}

/// Snapshot names (after the `@`) in `zfs list -H -t snapshot -o name` output, sorted.
pub fn parse_snapshots(text: &str) -> Vec<String> {
    let mut snaps: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().split_once('@').map(|(_, s)| s.to_string()))
        .collect();
    snaps.sort();
    snaps
}

/// `zfs list -H -p -o name,origin,PROP` output: tab-separated, `-` for an unset value; lines
/// with fewer fields are skipped.
pub fn parse_list_tree(text: &str) -> Vec<DatasetEntry> {
    let value = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(DatasetEntry {
                name: f.next()?.to_string(),
                origin: value(f.next()?),
                user_prop: value(f.next()?),
            })
        })
        .collect()
}

/// `zfs list -H -o name,P1,…,Pn` output with `props` = n: tab-separated, `-` for an unset
/// value. The last value takes the rest of its line, so one tab inside it (a URL may hold one)
/// stays in it; lines with fewer fields are skipped.
pub fn parse_with_snapshots(text: &str, props: usize) -> Vec<Listed> {
    let value = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(props + 1, '\t');
            let name = f.next()?.to_string();
            let values: Vec<Option<String>> = f.map(value).collect();
            (values.len() == props).then_some(Listed { name, values })
        })
        .collect()
}

/// zfs names the dataset in quotes: `cannot open 'zroot/x': dataset does not exist`.
fn dataset_in_message(stderr: &str) -> String {
    stderr
        .split('\'')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "dataset".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_with_snapshots_keeps_tabs_in_the_last_value() {
        let text = "zroot/pot/jails/web_1\tunsigned\tfile:///srv/a\tb/web_1.xz\n\
                    zroot/pot/jails/web_1/m\t-\t-\n\
                    zroot/pot/jails/web_1/m@1700000000\t-\t-\n\
                    short\n";
        let rows = parse_with_snapshots(text, 2);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].values,
            [
                Some("unsigned".to_string()),
                Some("file:///srv/a\tb/web_1.xz".to_string())
            ]
        );
        assert_eq!(rows[1].values, [None, None]);
        assert_eq!(rows[2].name, "zroot/pot/jails/web_1/m@1700000000");
        assert!(parse_with_snapshots("", 2).is_empty());
    }

    #[test]
    fn names_the_dataset_from_zfs_message() {
        assert_eq!(
            dataset_in_message("cannot open 'zroot/pot/jails/x': dataset does not exist"),
            "zroot/pot/jails/x"
        );
        assert_eq!(dataset_in_message("weird"), "dataset");
    }
}
