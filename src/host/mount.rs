//! mount(8) and umount(8): nullfs mounts into a jail root.

use super::{Host, HostError, Tool, argv};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A mounted file system, from one instance of `mount -p --libxo json`.
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

    /// `umount -f target…`: every target in one call, in the order given. umount(8) goes on
    /// past a target it cannot unmount and exits non-zero if any failed, without saying in a
    /// form worth parsing which one (names may hold newlines): on failure the caller asks each
    /// target alone.
    pub async fn unmount_each(&self, targets: &[PathBuf]) -> Result<(), HostError> {
        let mut args = argv!["-f"];
        args.extend(targets.iter().map(|t| t.as_os_str().to_owned()));
        self.run(Tool::Umount, args).await.map(drop)
    }

    /// Every mounted file system, from `mount -p --libxo json`: the fstab form prints names
    /// raw between blank padding, so only libxo's fields tell where a name with a blank ends.
    pub async fn mounts(&self) -> Result<Vec<MountEntry>, HostError> {
        let out = self
            .run(Tool::Mount, argv!["--libxo", "json", "-p"])
            .await?;
        parse_libxo(&out.stdout).map_err(|detail| HostError::Parse {
            command: "mount --libxo json -p".into(),
            detail,
        })
    }
}

#[derive(Deserialize)]
struct Listing {
    mount: Container,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    fstab: Vec<Fstab>,
}

#[derive(Deserialize)]
struct Fstab {
    mntpoint: String,
    fstype: String,
}

/// `{"mount": {"fstab": [{"device", "mntpoint", "fstype", "opts", "dump", "pass"}…]}}`.
/// libxo before 2.0 writes a tab or other control character inside a string raw, which strict
/// JSON forbids; those are escaped here first, so both libxo generations read the same.
pub fn parse_libxo(text: &str) -> Result<Vec<MountEntry>, String> {
    let listing: Listing =
        serde_json::from_str(&escape_raw_controls(text)).map_err(|e| e.to_string())?;
    Ok(listing
        .mount
        .fstab
        .into_iter()
        .map(|f| MountEntry {
            target: PathBuf::from(f.mntpoint),
            fstype: f.fstype,
        })
        .collect())
}

/// Control characters inside JSON strings as `\u00XX`; outside strings they are whitespace.
fn escape_raw_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string && !escaped && (c as u32) < 0x20 {
            out.push_str(&format!("\\u{:04x}", c as u32));
            continue;
        }
        out.push(c);
        if escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libxo_1_output_with_raw_tabs_and_blanks() {
        // As FreeBSD 14's mount (libxo 1.x) prints it: `\\`, `"` and newline escaped, the
        // tab raw.
        let text = "{\"mount\": {\"fstab\": [{\"device\":\"zroot/ROOT/default\",\"mntpoint\":\"/\",\"fstype\":\"zfs\",\"opts\":\"rw\",\"dump\":0,\"pass\":0}, {\"device\":\"/a/web v2\tx/local\",\"mntpoint\":\"/j/web v2/m/lo\tcal \\\"q\\\"\\\\\\n\",\"fstype\":\"nullfs\",\"opts\":\"ro\",\"dump\":0,\"pass\":0}]}}\n";
        let m = parse_libxo(text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/"));
        assert_eq!(m[0].fstype, "zfs");
        assert_eq!(m[1].target, PathBuf::from("/j/web v2/m/lo\tcal \"q\"\\\n"));
        assert_eq!(m[1].fstype, "nullfs");
    }

    #[test]
    fn reads_libxo_2_output_with_escaped_controls() {
        let text = "{\"mount\": {\"fstab\": [{\"device\":\"/a\",\"mntpoint\":\"/j/a\\tb\\u0001 日\",\"fstype\":\"nullfs\",\"opts\":\"rw\",\"dump\":0,\"pass\":0}]}}\n";
        let m = parse_libxo(text).unwrap();
        assert_eq!(m[0].target, PathBuf::from("/j/a\tb\u{1} 日"));
    }

    #[test]
    fn empty_and_broken_listings() {
        assert_eq!(parse_libxo("{\"mount\": {\"fstab\": []}}\n").unwrap(), []);
        assert!(parse_libxo("zroot\t/\tzfs\trw\t0 0\n").is_err());
        assert!(parse_libxo("{\"mount\": {\"fstab\": [{\"device\":\"/a\"").is_err());
    }
}
