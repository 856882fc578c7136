//! The task handed to its supervisor process (see [`crate::engine::supervisor`]) and its exit
//! watched: the supervisor's answer, its pids, and the exit status it records.

use super::{Instance, TaskSpec, write_file};
use crate::engine::command::DEFAULT_JAIL_PATH;
use crate::engine::layout::PotName;
use crate::engine::network::NetworkRecord;
use crate::engine::state::{EXIT_FILE, ExitInfo, PIDS_FILE, Pids, SHIM_PID_FILE, alive, read_json};
use crate::engine::status::{self, State};
use crate::engine::supervisor;
use crate::engine::{Engine, EngineError};
use crate::host::{JexecSpec, default_signal_actions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl Engine {
    /// Hands the task to its supervisor (see [`supervisor`]), which runs it through jexec in its own
    /// session with stdout and stderr on Nomad's log FIFOs, and watches for its exit.
    pub(super) async fn spawn_task(
        &self,
        spec: &TaskSpec,
        argv: &[String],
        relays: Vec<supervisor::relay::Relay>,
        memory_watch: Option<supervisor::oom::MemoryWatch>,
    ) -> Result<Arc<Instance>, EngineError> {
        let pot = &spec.pot;
        let p = pot.as_str();
        let mut env = spec.env.clone();
        env.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_JAIL_PATH.to_string());
        let invocation = self
            .host
            .jexec_invocation(&JexecSpec {
                jail: p.to_string(),
                user: spec.user.clone(),
                argv: argv.to_vec(),
                env,
            })
            .map_err(EngineError::host(p))?;
        let state_dir = self.task_state_dir(pot);
        std::fs::create_dir_all(&state_dir).map_err(EngineError::io(p, "create", &state_dir))?;
        let shim_spec = supervisor::ShimSpec {
            invocation,
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
            state_dir: state_dir.clone(),
            relays,
            memory_watch,
        };
        let mut cmd = tokio::process::Command::new(&self.supervisor);
        cmd.arg("shim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: setsid and sigaction are async-signal-safe, and nothing here allocates. Its
        // own session keeps the supervisor and the task away from signals aimed at the agent's
        // or the plugin's process group.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                default_signal_actions();
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(EngineError::io(
            p,
            "start the task supervisor",
            &self.supervisor,
        ))?;
        if let Some(pid) = child.id() {
            write_file(
                p,
                &state_dir.join(SHIM_PID_FILE),
                pid.to_string().as_bytes(),
            )?;
        }
        let reply = self.supervisor_reply(pot, &mut child, &shim_spec).await?;
        let started = reply
            .strip_prefix("started ")
            .ok_or_else(|| EngineError::State {
                pot: p.to_string(),
                reason: reply
                    .strip_prefix("error ")
                    .unwrap_or("the task supervisor exited without starting the task")
                    .to_string(),
            })?;
        tracing::debug!(pot = %pot, task_pid = started, "task running");
        let pids: Pids =
            read_json(&state_dir.join(PIDS_FILE)).ok_or_else(|| EngineError::State {
                pot: p.to_string(),
                reason: "the task supervisor recorded no pids".to_string(),
            })?;
        let network = self.network_record(pot);
        let epairs = network.as_ref().map_or(&[][..], |r| &r.epairs);
        status::set(
            pot,
            &self.status_file(pot),
            State::Started,
            &status::interfaces(epairs),
            false,
        )?;
        let (tx, rx) = watch::channel(None);
        self.event(pot, format!("Task started (pid {})", pids.task));
        let (events, pot2) = (self.events.clone(), pot.clone());
        tokio::spawn(async move {
            // Reaps the supervisor; its exit means the status is on disk (or lost).
            let _ = child.wait().await;
            let info = exit_after_supervisor(&state_dir, pids.task).await;
            events(&pot2, exit_event(&info));
            let _ = tx.send(Some(info));
        });
        Ok(self.track(pot, pids, network, rx))
    }

    /// Kills the supervisor of a start interrupted before its task ran (the plugin died while
    /// it was still opening the log FIFOs): left alone, it would go on to start the task in
    /// the pot that replaces this one.
    pub(super) async fn kill_unstarted_supervisor(&self, pot: &PotName) {
        let path = self.task_state_dir(pot).join(SHIM_PID_FILE);
        let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1)
        else {
            return;
        };
        // The supervisor is started in an existing jail: without one, the pid is not its.
        if alive(pid as u32) && self.host.jail_exists(pot.as_str()).await.unwrap_or(false) {
            tracing::info!(pot = %pot, pid, "killing the supervisor of an interrupted start");
            // It leads its own session and process group (setsid), with the jexec it may
            // have spawned.
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
    }

    /// Sends the spec to the supervisor and reads its one-line answer.
    async fn supervisor_reply(
        &self,
        pot: &PotName,
        child: &mut tokio::process::Child,
        spec: &supervisor::ShimSpec,
    ) -> Result<String, EngineError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let p = pot.as_str();
        let talk = EngineError::io(p, "talk to the task supervisor", &self.supervisor);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let bytes = serde_json::to_vec(spec).expect("shim spec serializes");
        stdin.write_all(&bytes).await.map_err(talk)?;
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let deadline = supervisor::FIFO_OPEN_TIMEOUT + Duration::from_secs(10);
        tokio::time::timeout(
            deadline,
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .map_err(|_| EngineError::State {
            pot: p.to_string(),
            reason: format!("the task supervisor did not answer within {deadline:?}"),
        })?
        .map_err(EngineError::io(
            p,
            "read from the task supervisor",
            &self.supervisor,
        ))?;
        Ok(line.trim_end().to_string())
    }

    pub(super) fn track(
        &self,
        pot: &PotName,
        pids: Pids,
        network: Option<NetworkRecord>,
        exit: watch::Receiver<Option<ExitInfo>>,
    ) -> Arc<Instance> {
        let instance = Arc::new(Instance {
            pot: pot.clone(),
            pid: pids.task,
            started_at_ms: pids.started_at_ms,
            network,
            exit,
        });
        self.instances
            .lock()
            .expect("instances poisoned")
            .insert(pot.clone(), instance.clone());
        instance
    }
}

/// The task's status once its supervisor is gone: recorded, or lost if the supervisor was
/// killed before its task (then we can only wait for the task itself to go).
pub(super) async fn exit_after_supervisor(state_dir: &Path, task_pid: u32) -> ExitInfo {
    if let Some(info) = read_json(&state_dir.join(EXIT_FILE)) {
        return info;
    }
    while alive(task_pid) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    read_json(&state_dir.join(EXIT_FILE)).unwrap_or_else(|| {
        ExitInfo::unknown(
            "the task supervisor died before its task: exit status unknown".to_string(),
        )
    })
}

/// The task event for a recorded exit.
pub(super) fn exit_event(info: &ExitInfo) -> String {
    let ended = match (&info.error, info.signal) {
        (Some(reason), _) => format!("Task ended: {reason}"),
        (None, 0) => format!("Task exited with code {}", info.exit_code),
        (None, sig) => format!("Task killed by signal {sig}"),
    };
    match info.memory_limit_hit {
        Some(bytes) => format!(
            "{ended} (OOM: the jail reached its memory limit of {})",
            human_bytes(bytes)
        ),
        None => ended,
    }
}

/// Bytes in the largest binary unit that divides them, as Nomad's `memory` is given in MiB.
fn human_bytes(bytes: u64) -> String {
    let (amount, unit) = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|(shift, _)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .map_or((bytes, "bytes"), |(shift, unit)| (bytes >> shift, unit));
    format!("{amount} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_events_name_the_memory_limit_reached() {
        let mut info = ExitInfo {
            exit_code: 137,
            signal: 9,
            finished_at_ms: 0,
            error: None,
            memory_limit_hit: Some(64 << 20),
        };
        assert_eq!(
            exit_event(&info),
            "Task killed by signal 9 (OOM: the jail reached its memory limit of 64 MiB)"
        );
        info.memory_limit_hit = Some(1536 << 20);
        assert!(exit_event(&info).ends_with("limit of 1536 MiB)"));
        info.memory_limit_hit = Some(3 << 30);
        assert!(exit_event(&info).ends_with("limit of 3 GiB)"));
        info.memory_limit_hit = Some(1000);
        assert!(exit_event(&info).ends_with("limit of 1000 bytes)"));
        info.memory_limit_hit = None;
        assert_eq!(exit_event(&info), "Task killed by signal 9");
    }
}
