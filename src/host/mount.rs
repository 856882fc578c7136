//! mount(8) and umount(8): nullfs mounts into a jail root.

use super::{Host, HostError, Tool, argv};
use std::path::{Path, PathBuf};

/// A mounted file system, from one line of `mount -p` (fstab form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
}

impl Host {
    /// `mount -t nullfs -o ro|rw source target`.
    pub async fn mount_nullfs(
        &self,
        source: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), HostError> {
        let opt = if readonly { "ro" } else { "rw" };
        self.run(
            Tool::Mount,
            argv!["-t", "nullfs", "-o", opt, source, target],
        )
        .await
        .map(drop)
    }

    /// `umount -f target`; a target that is not mounted is [`HostError::Absent`].
    pub async fn unmount(&self, target: &Path) -> Result<(), HostError> {
        match self.run(Tool::Umount, argv!["-f", target]).await {
            Ok(_) => Ok(()),
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("not a file system root directory")
                || stderr.contains("No such file or directory") =>
            {
                Err(HostError::Absent {
                    command,
                    what: format!("mount {}", target.display()),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Every mounted file system, from `mount -p`.
    pub async fn mounts(&self) -> Result<Vec<MountEntry>, HostError> {
        let out = self.run(Tool::Mount, argv!["-p"]).await?;
        Ok(parse_fstab(&out.stdout))
    }
}

/// fstab(5) fields: source, target, type, options, dump, pass — whitespace separated.
pub fn parse_fstab(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().skip(1);
            Some(MountEntry {
                target: PathBuf::from(f.next()?),
                fstype: f.next()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_p_output() {
        let text = "zroot/ROOT/default\t/\tzfs\trw\t0 0\n/a/local\t/opt/pot/jails/x/m/local\tnullfs\trw\t0 0\n";
        let m = parse_fstab(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].target, PathBuf::from("/opt/pot/jails/x/m/local"));
        assert_eq!(m[1].fstype, "nullfs");
    }
}
