//! Typed FreeBSD host operations: the only place that spawns base-system tools.
//!
//! Every tool is resolved in the configured tool path and run by argv, never through a shell.
//! Callers above this module see typed operations and typed errors, never argv.

mod cpuset;
pub mod devd;
mod ifconfig;
mod jail;
mod kld;
mod mount;
mod pf;
mod rctl;
mod route;
mod shm;
mod signals;
mod sysctl;
mod zfs;

pub use ifconfig::IfaceInfo;
pub use jail::{Invocation, JailParams, JexecSpec};
pub use mount::MountEntry;
pub use rctl::{RctlAction, RctlResource, RctlRule, ResourceUsage};
pub use signals::default_signal_actions;
pub use zfs::{DatasetEntry, Listed, MountState};

/// The parsers of the tools' output, public so that the fuzz targets (`fuzz/`) reach the very
/// code the typed operations run.
pub mod parse {
    pub use super::ifconfig::{
        created_name as ifconfig_created_name, parse_listing as ifconfig_listing,
    };
    pub use super::jail::parse_jid as jail_jid;
    pub use super::mount::parse_libxo as mount_libxo;
    pub use super::pf::{parse_anchors as pfctl_anchors, rdr_host_port as pfctl_rdr_host_port};
    pub use super::rctl::parse_usage as rctl_usage;
    pub use super::zfs::{
        parse_list_tree as zfs_list_tree, parse_snapshots as zfs_snapshots,
        parse_with_snapshots as zfs_with_snapshots,
    };
}

use crate::text::clip;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The base tools the engine needs; the fingerprint reports any that are missing.
pub const REQUIRED_TOOLS: &[Tool] = &[
    Tool::Zfs,
    Tool::Jail,
    Tool::Jexec,
    Tool::Jls,
    Tool::Mount,
    Tool::Umount,
    Tool::Sysctl,
    // Teardown removes every task's rctl rules.
    Tool::Rctl,
];

/// A FreeBSD base-system tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Zfs,
    Jail,
    Jexec,
    Jls,
    Mount,
    Umount,
    Sysctl,
    Rctl,
    Cpuset,
    Ifconfig,
    Pfctl,
    Route,
    Kldstat,
    Kldload,
    Posixshmcontrol,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Zfs => "zfs",
            Tool::Jail => "jail",
            Tool::Jexec => "jexec",
            Tool::Jls => "jls",
            Tool::Mount => "mount",
            Tool::Umount => "umount",
            Tool::Sysctl => "sysctl",
            Tool::Rctl => "rctl",
            Tool::Cpuset => "cpuset",
            Tool::Ifconfig => "ifconfig",
            Tool::Pfctl => "pfctl",
            Tool::Route => "route",
            Tool::Kldstat => "kldstat",
            Tool::Kldload => "kldload",
            Tool::Posixshmcontrol => "posixshmcontrol",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong running a base tool.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The tool is not in any directory of the tool path.
    #[error("{tool} not found in tool path {tool_path}")]
    ToolMissing { tool: Tool, tool_path: String },
    /// The tool could not be started.
    #[error("{command}: cannot run: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The tool ran and reported failure.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    /// The object the tool was asked about does not exist.
    #[error("{command}: {what} does not exist")]
    Absent { command: String, what: String },
    /// The object the tool was asked to create exists already.
    #[error("{command}: {what} already exists")]
    Exists { command: String, what: String },
    /// The tool's output could not be understood.
    #[error("{command}: unexpected output: {detail}")]
    Parse { command: String, detail: String },
    /// The object is still in use (zfs: `dataset is busy`, e.g. the root of a dying jail);
    /// worth retrying once the user lets go.
    #[error("{command}: {what} is busy: {stderr}")]
    Busy {
        command: String,
        what: String,
        stderr: String,
    },
}

impl HostError {
    /// True when the failure says the object is already gone, which teardown treats as done.
    pub fn is_absent(&self) -> bool {
        matches!(self, HostError::Absent { .. })
    }

    /// True when a create found its object already there.
    pub fn is_exists(&self) -> bool {
        matches!(self, HostError::Exists { .. })
    }

    /// True when the object is in use and the same call may succeed later.
    pub fn is_busy(&self) -> bool {
        matches!(self, HostError::Busy { .. })
    }
}

/// Captured result of a finished tool run.
pub(crate) struct ToolOutput {
    pub stdout: String,
}

/// The host: where the tools live.
#[derive(Debug, Clone)]
pub struct Host {
    tool_path: String,
}

impl Host {
    /// `tool_path` is a colon-separated list of directories, like `PATH`.
    pub fn new(tool_path: impl Into<String>) -> Self {
        Host {
            tool_path: tool_path.into(),
        }
    }

    pub fn tool_path(&self) -> &str {
        &self.tool_path
    }

    /// Absolute path of `tool`, from the first tool-path directory holding an executable of that name.
    pub fn resolve(&self, tool: Tool) -> Result<PathBuf, HostError> {
        use std::os::unix::fs::PermissionsExt;
        self.tool_path
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(tool.name()))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
            .ok_or_else(|| HostError::ToolMissing {
                tool,
                tool_path: self.tool_path.clone(),
            })
    }

    /// The required tools that the tool path lacks.
    pub fn missing_tools(&self) -> Vec<Tool> {
        REQUIRED_TOOLS
            .iter()
            .copied()
            .filter(|t| self.resolve(*t).is_err())
            .collect()
    }

    /// A command for `tool` with explicit stdio and an environment that carries only `PATH`
    /// (the tool path), so nothing of the agent's environment leaks into host tools.
    pub(crate) fn command(
        &self,
        tool: Tool,
        args: &[OsString],
    ) -> Result<std::process::Command, HostError> {
        let mut cmd = std::process::Command::new(self.resolve(tool)?);
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.tool_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// Runs `tool` to completion and returns its stdout, or a typed error naming the command.
    pub(crate) async fn run(
        &self,
        tool: Tool,
        args: Vec<OsString>,
    ) -> Result<ToolOutput, HostError> {
        let cmd = self.command(tool, &args)?;
        let command = display_command(tool, &args);
        let output = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HostError::Spawn {
                command: command.clone(),
                source,
            })?;
        finish(command, output)
    }

    /// Like [`Host::run`], with `input` on the tool's stdin (pfctl reads rules from `-f -`).
    pub(crate) async fn run_with_stdin(
        &self,
        tool: Tool,
        args: Vec<OsString>,
        input: &[u8],
    ) -> Result<ToolOutput, HostError> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.command(tool, &args)?;
        cmd.stdin(Stdio::piped());
        let command = display_command(tool, &args);
        let spawn_err = |source| HostError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A tool that exits early closes its stdin: its exit status tells what went wrong.
        let _ = stdin.write_all(input).await;
        drop(stdin);
        let output = child.wait_with_output().await.map_err(spawn_err)?;
        finish(command, output)
    }
}

pub(crate) fn finish(
    command: String,
    output: std::process::Output,
) -> Result<ToolOutput, HostError> {
    if output.status.success() {
        return Ok(ToolOutput {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        });
    }
    Err(HostError::Failed {
        command,
        status: describe_status(output.status),
        stderr: clip(
            String::from_utf8_lossy(&output.stderr).trim(),
            MAX_SHOWN_STDERR,
        )
        .into_owned(),
    })
}

pub(crate) fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_string(),
    }
}

/// `zfs clone -o mountpoint=/x a@1 b`: how commands appear in errors and logs.
/// Each argument is cut to [`MAX_SHOWN_ARG`] bytes and the line to [`MAX_SHOWN_COMMAND`]: a
/// job's 10 MB argument fails with E2BIG, and the error must not carry it.
pub(crate) fn display_command(tool: Tool, args: &[OsString]) -> String {
    let mut s = tool.name().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&clip(&a.to_string_lossy(), MAX_SHOWN_ARG));
    }
    clip(&s, MAX_SHOWN_COMMAND).into_owned()
}

/// How much of one argument, and of a whole command line, errors and logs show.
const MAX_SHOWN_ARG: usize = 256;
const MAX_SHOWN_COMMAND: usize = 1024;
/// How much of a failed tool's stderr an error keeps.
const MAX_SHOWN_STDERR: usize = 2048;

/// Builds an argv vector from anything path- or string-like.
macro_rules! argv {
    ($($a:expr),* $(,)?) => {
        vec![$(::std::ffi::OsString::from($a)),*]
    };
}
pub(crate) use argv;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_commands_are_bounded() {
        let huge = "x".repeat(10 << 20);
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        let shown = display_command(Tool::Jexec, &os(&["web_1", "/bin/sh", "-c", &huge]));
        assert!(shown.starts_with("jexec web_1 /bin/sh -c xxx"), "{shown}");
        assert!(
            shown.ends_with("… (10485504 more bytes)"),
            "{}",
            &shown[shown.len() - 40..]
        );
        let many: Vec<OsString> = (0..10_000).map(|i| OsString::from(i.to_string())).collect();
        assert!(display_command(Tool::Jexec, &many).len() < MAX_SHOWN_COMMAND + 32);
        assert_eq!(
            display_command(Tool::Zfs, &os(&["destroy", "-r", "zroot/pot/jails/a"])),
            "zfs destroy -r zroot/pot/jails/a"
        );
    }
}
