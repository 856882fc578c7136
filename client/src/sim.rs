//! The simulated FreeBSD host (`freebsd-sim`, see tests/freebsd-sim/README.md): what `potctl
//! demo` and `potctl --sim` need of it. The tests' fault injection and inspection of it live in
//! the test-support crate.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

use crate::BinError;

/// Path of the simulator: `$FREEBSD_SIM_BIN`, else `freebsd-sim` in [`crate::bin_dir`].
pub fn sim_bin() -> Result<PathBuf, BinError> {
    crate::workspace_bin("FREEBSD_SIM_BIN", "freebsd-sim")
}

/// A `freebsd-sim` command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Bin(#[from] BinError),
    #[error("creating a temporary directory in {}: {source}", dir.display())]
    Scratch {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running freebsd-sim {command}: {source}")]
    Run {
        command: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("freebsd-sim {command} {}: {output}", dir.display())]
    Failed {
        command: &'static str,
        dir: PathBuf,
        output: String,
    },
    #[error("parsing freebsd-sim init's config: {source}")]
    Config {
        #[source]
        source: serde_json::Error,
    },
    #[error("freebsd-sim init printed a config that is not an object: {0}")]
    NotObject(Json),
    #[error("freebsd-sim image did not write {}", .0.display())]
    NoImage(PathBuf),
}

/// Runs `freebsd-sim COMMAND DIR ARGS…`.
fn run(command: &'static str, dir: &Path, args: &[&str]) -> Result<Output, SimError> {
    Command::new(sim_bin()?)
        .arg(command)
        .args(args)
        .arg(dir)
        .output()
        .map_err(|source| SimError::Run { command, source })
}

/// `out`'s stdout and stderr, for an error.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `freebsd-sim init FLAGS.. DIR`: sets up (or keeps) the simulated host at `dir` and returns
/// the agent plugin `config` block it prints.
pub fn init(dir: &Path, flags: &[&str]) -> Result<Json, SimError> {
    let out = run("init", dir, flags)?;
    if !out.status.success() {
        return Err(SimError::Failed {
            command: "init",
            dir: dir.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let config: Json =
        serde_json::from_slice(&out.stdout).map_err(|source| SimError::Config { source })?;
    if !config.is_object() {
        return Err(SimError::NotObject(config));
    }
    Ok(config)
}

/// A fresh directory in the system's temp dir, removed with everything in it on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `<temp dir>/<prefix>XXXXXX`, mode 0700.
    pub fn new(prefix: &str) -> Result<ScratchDir, SimError> {
        let tmp = std::env::temp_dir();
        let template = tmp.join(format!("{prefix}XXXXXX"));
        nix::unistd::mkdtemp(&template)
            .map(ScratchDir)
            .map_err(|e| SimError::Scratch {
                dir: tmp,
                source: e.into(),
            })
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct SimHost {
    /// Holds everything: `host/` (the sim DIR), `images/`, `allocs/`, `empty/`.
    pub tmp: ScratchDir,
    /// The simulated host directory (`freebsd-sim init DIR`).
    pub dir: PathBuf,
    /// The agent plugin `config` block printed by `init`.
    pub config: Json,
}

impl SimHost {
    /// `freebsd-sim init <tempdir>/host`.
    pub fn create() -> Result<SimHost, SimError> {
        SimHost::create_with(&[])
    }

    /// `freebsd-sim init FLAGS.. <tempdir>/host` (`--encrypted`).
    pub fn create_with(flags: &[&str]) -> Result<SimHost, SimError> {
        let tmp = ScratchDir::new("freebsd-sim-")?;
        let dir = tmp.path().join("host");
        let config = init(&dir, flags)?;
        Ok(SimHost { tmp, dir, config })
    }

    /// The agent config as printed by `init` (a JSON object).
    pub fn agent_config(&self) -> Json {
        self.config.clone()
    }

    /// The agent config with the keys of `overrides` (an object) replaced or added.
    pub fn agent_config_with(&self, overrides: &serde_json::Map<String, Json>) -> Json {
        let mut c = self.config.clone();
        for (k, v) in overrides {
            c[k] = v.clone();
        }
        c
    }

    /// The directory `image()` writes to: the host's `DIR/images`, which its agent config
    /// allows `file://` images from.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Where tasks get their alloc directories.
    pub fn allocs_dir(&self) -> PathBuf {
        self.tmp.path().join("allocs")
    }

    /// An empty directory (e.g. a `tool_path` with no tools).
    pub fn empty_dir(&self) -> io::Result<PathBuf> {
        let p = self.tmp.path().join("empty");
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// `freebsd-sim image NAME TAG <images_dir>`; returns the images directory.
    pub fn image(&self, name: &str, tag: &str) -> Result<PathBuf, SimError> {
        let dir = self.images_dir();
        std::fs::create_dir_all(&dir).map_err(|source| SimError::Scratch {
            dir: dir.clone(),
            source,
        })?;
        let out = run("image", &dir, &[name, tag])?;
        if !out.status.success() {
            return Err(SimError::Failed {
                command: "image",
                dir,
                output: printed(&out),
            });
        }
        for suffix in ["xz", "xz.skein"] {
            let f = dir.join(format!("{name}_{tag}.{suffix}"));
            if !f.exists() {
                return Err(SimError::NoImage(f));
            }
        }
        Ok(dir)
    }

    /// `freebsd-sim check DIR` → (clean, stdout+stderr).
    pub fn check(&self) -> Result<(bool, String), SimError> {
        let out = run("check", &self.dir, &[])?;
        Ok((out.status.success(), printed(&out)))
    }

    /// Best effort: `jail -R` every jail still recorded, so a failed scenario does not leave
    /// task processes running (chrooted into a deleted directory) after the temp dir goes.
    pub fn kill_all_jails(&self) {
        let bin = self.dir.join("bin");
        let Ok(out) = Command::new(bin.join("jls")).arg("name").output() else {
            return;
        };
        for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new(bin.join("jail")).args(["-R", name]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_private_and_goes_with_its_contents() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = ScratchDir::new("nomad-pot-client-").unwrap();
        let path = scratch.path().to_path_buf();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("nomad-pot-client-") && name.len() > 17,
            "{name}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::fs::write(path.join("a/b/c"), b"x").unwrap();
        drop(scratch);
        assert!(!path.exists());
    }
}
