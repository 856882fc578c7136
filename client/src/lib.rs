//! Drives a Nomad task-driver plugin binary the way a Nomad client does, on a simulated
//! FreeBSD host (`freebsd-sim`). `potctl` uses it for `demo`, `--sim` and `plugin-check`
//! configs; the test-support crate `nomad-harness` wraps it with panicking helpers.
//!
//! * [`plugin`]: launch the binary like go-plugin, validate the handshake and stdio, gRPC clients.
//! * [`cty`]: the hclspec-driven cty-msgpack encoder (Nomad's `config {}` pipeline).
//! * [`logmon`]: FIFO readers like Nomad's logmon.
//! * [`task`]: `TaskConfig` builder with Nomad's alloc dir layout.
//! * [`sim`]: the simulated FreeBSD host.
//! * [`serve`]: an HTTP(S) file server for images.

pub mod cty;
pub mod logmon;
pub mod plugin;
pub mod serve;
pub mod sim;
pub mod task;

use std::path::PathBuf;

pub use cty::{CtyError, encode, encode_raw};
pub use logmon::LogMon;
pub use plugin::Plugin;
pub use serve::FileServer;
pub use sim::SimHost;
pub use task::{Task, TaskBuilder};

/// A workspace binary this crate runs could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("locating the running executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("{} not found: run `cargo build --workspace` first (or set {var})", path.display())]
    NotBuilt { path: PathBuf, var: &'static str },
}

/// Where the workspace's binaries are: the directory of the running executable, or its parent
/// for test and bench executables (which live in `target/<profile>/deps`).
pub fn bin_dir() -> Result<PathBuf, BinError> {
    let exe = std::env::current_exe().map_err(BinError::CurrentExe)?;
    let dir = exe.parent().unwrap_or(&exe);
    Ok(match dir.parent() {
        Some(parent) if dir.ends_with("deps") => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

/// `$var` if set, else `name` in [`bin_dir`], if it exists.
fn workspace_bin(var: &'static str, name: &str) -> Result<PathBuf, BinError> {
    let path = match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => bin_dir()?.join(name),
    };
    if !path.exists() {
        return Err(BinError::NotBuilt { path, var });
    }
    Ok(path)
}
