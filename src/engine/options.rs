//! What a job may bring from the host into its jail — directories, files, host entries — and the
//! operator's boundary around it: host paths must lie in the task's alloc dir or under an
//! `allowed_host_paths` entry, judged by their real path at start time.

use super::EngineError;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A host directory shown in the jail (`mount`, `mount_read_only`, a Nomad host volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Where the entry came from, for errors: `mount[0]`, `volume_mount "data"`.
    pub origin: String,
    /// As the job wrote it; relative paths are relative to the task dir.
    pub source: PathBuf,
    /// Absolute path inside the jail.
    pub target: String,
    pub readonly: bool,
}

/// A host file or directory copied into the jail before it starts (`copy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyIn {
    pub origin: String,
    pub source: PathBuf,
    pub target: String,
}

/// An `/etc/hosts` entry (`extra_hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub origin: String,
    pub name: String,
    pub ip: String,
}

/// Where job-named host paths may come from.
pub struct HostPathPolicy<'a> {
    /// The task's dir (`<alloc_dir>/<task>`): relative sources start here.
    pub task_dir: &'a Path,
    /// The allocation's dir: always allowed.
    pub alloc_dir: &'a Path,
    /// The operator's `allowed_host_paths`.
    pub allowed: &'a [PathBuf],
}

impl HostPathPolicy<'_> {
    /// The real path of `source` (symlinks and `..` resolved), if it lies inside the alloc dir or
    /// an allowed path; a path that does not exist is refused too.
    pub fn authorize(&self, origin: &str, source: &Path) -> Result<PathBuf, EngineError> {
        let bad = |why: String| EngineError::InvalidInput(format!("{origin}: {why}"));
        let joined = self.task_dir.join(source);
        let real = std::fs::canonicalize(&joined)
            .map_err(|e| bad(format!("host path {}: {e}", joined.display())))?;
        let inside =
            |root: &Path| std::fs::canonicalize(root).is_ok_and(|root| real.starts_with(root));
        if inside(self.alloc_dir) || self.allowed.iter().any(|a| inside(a)) {
            return Ok(real);
        }
        Err(bad(format!(
            "host path {} (real path {}) is outside the task's alloc dir; an operator can allow it with allowed_host_paths in the plugin config",
            source.display(),
            real.display()
        )))
    }
}

/// A path inside the jail as mount targets need it: absolute, not `/`, and writable as one
/// field of pot's space-separated fscomp.conf.
pub fn check_mount_target(origin: &str, target: &str) -> Result<(), EngineError> {
    check_jail_path(origin, target)?;
    if target.trim_matches('/').is_empty() {
        return Err(EngineError::InvalidInput(format!(
            "{origin}: cannot mount over the jail's root"
        )));
    }
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EngineError::InvalidInput(format!(
            "{origin}: jail path {target:?} contains whitespace or control characters, which pot's fscomp.conf cannot hold"
        )));
    }
    Ok(())
}

/// A mount source as fscomp.conf can hold it.
pub fn check_mount_source(origin: &str, real: &Path) -> Result<(), EngineError> {
    let text = real.to_string_lossy();
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EngineError::InvalidInput(format!(
            "{origin}: host path {text:?} contains whitespace or control characters, which pot's fscomp.conf cannot hold"
        )));
    }
    if !real.is_dir() {
        return Err(EngineError::InvalidInput(format!(
            "{origin}: host path {} is not a directory",
            real.display()
        )));
    }
    Ok(())
}

/// An absolute path inside the jail.
pub fn check_jail_path(origin: &str, target: &str) -> Result<(), EngineError> {
    if !target.starts_with('/') || target.contains('\0') {
        return Err(EngineError::InvalidInput(format!(
            "{origin}: jail path {target:?} must be absolute"
        )));
    }
    Ok(())
}

impl HostEntry {
    /// pot's `set-hosts` rules: a host name and an address `potnet ipcheck` accepts.
    pub fn check(&self) -> Result<(), EngineError> {
        let bad = |why: String| EngineError::InvalidInput(format!("{}: {why}", self.origin));
        if self.name.is_empty()
            || self
                .name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(bad(format!(
                "host name {:?} must be non-empty, without whitespace or '#'",
                self.name
            )));
        }
        self.ip
            .parse::<IpAddr>()
            .map_err(|_| bad(format!("{:?} is not an IP address", self.ip)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn host_paths_stay_inside_the_boundary() {
        let d = tempfile::tempdir().unwrap();
        let alloc = d.path().join("alloc-1");
        let task = alloc.join("web");
        let shared = d.path().join("shared");
        let secret = d.path().join("secret");
        for p in [&task.join("local/data"), &shared.join("www"), &secret] {
            std::fs::create_dir_all(p).unwrap();
        }
        symlink(&secret, task.join("local/escape")).unwrap();
        let allowed = [shared.clone()];
        let policy = HostPathPolicy {
            task_dir: &task,
            alloc_dir: &alloc,
            allowed: &allowed,
        };
        assert_eq!(
            policy
                .authorize("mount[0]", Path::new("local/data"))
                .unwrap(),
            std::fs::canonicalize(task.join("local/data")).unwrap()
        );
        assert!(policy.authorize("mount[0]", &shared.join("www")).is_ok());
        for bad in [
            secret.clone(),
            task.join("local/escape"),
            shared.join("../secret"),
            task.join("../../secret"),
        ] {
            let e = policy.authorize("mount[1]", &bad).unwrap_err().to_string();
            assert!(e.starts_with("mount[1]: host path"), "{e}");
            assert!(e.contains("allowed_host_paths"), "{e}");
        }
        let e = policy
            .authorize("copy[0]", Path::new("/nonexistent/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn jail_paths_and_host_entries_are_checked() {
        assert!(check_mount_target("mount[0]", "/data").is_ok());
        for t in ["data", "/", "//", "/a b", "/a\nb"] {
            assert!(check_mount_target("mount[0]", t).is_err(), "{t:?}");
        }
        let e = |name: &str, ip: &str| HostEntry {
            origin: "extra_hosts[0]".into(),
            name: name.into(),
            ip: ip.into(),
        };
        assert!(e("db", "10.0.0.1").check().is_ok());
        assert!(e("db6", "2001:db8::1").check().is_ok());
        assert!(e("db", "10.0.0").check().is_err());
        assert!(e("a b", "10.0.0.1").check().is_err());
        assert!(e("", "10.0.0.1").check().is_err());
    }
}
