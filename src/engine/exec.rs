//! Commands run in a running task's jail: one-shot with captured output (script checks), or
//! interactive sessions over pipes or a pty (`nomad alloc exec`).

use super::command::DEFAULT_JAIL_PATH;
use super::state::{ExitInfo, exit_info};
use super::{Engine, EngineError, PotName};
use crate::host::JexecSpec;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// Output of a command run in a task's jail.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: ExitInfo,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// Input to an interactive session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Data(Vec<u8>),
    /// End of input: closes the command's stdin (sends ^D on a pty).
    Close,
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// Output of an interactive session; a stream's `Closed` comes after its last chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutputEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    StdoutClosed,
    StderrClosed,
}

/// A running interactive command. The output channel ends when the command's output has
/// ended; then `exit` resolves.
pub struct ExecSession {
    pub input: mpsc::Sender<ExecInput>,
    pub output: mpsc::Receiver<ExecOutputEvent>,
    pub exit: oneshot::Receiver<ExitInfo>,
}

const CHUNK: usize = 32 * 1024;

/// What a one-shot exec keeps of each of its output streams: the last 4 KiB, as Nomad's own
/// executor does for script checks (`CheckBufSize`, a circular buffer). The rest is read and
/// dropped, so a check that prints gigabytes neither fills the plugin's memory nor blocks on
/// a full pipe.
pub const EXEC_OUTPUT_KEPT: usize = 4 * 1024;

/// The last [`EXEC_OUTPUT_KEPT`] bytes of a stream, and how many came before them.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        // Trimmed in batches: the buffer stays under three times what it keeps.
        if self.buf.len() > 2 * EXEC_OUTPUT_KEPT {
            self.buf.drain(..self.buf.len() - EXEC_OUTPUT_KEPT);
        }
    }

    /// The kept bytes; when some were dropped, after one line that says how many.
    fn into_output(mut self) -> Vec<u8> {
        if self.buf.len() > EXEC_OUTPUT_KEPT {
            self.buf.drain(..self.buf.len() - EXEC_OUTPUT_KEPT);
        }
        let dropped = self.total - self.buf.len() as u64;
        if dropped == 0 {
            return self.buf;
        }
        let mut out = format!(
            "[nomad-pot-driver: {dropped} bytes of output discarded, only the last {} kept]\n",
            self.buf.len()
        )
        .into_bytes();
        out.append(&mut self.buf);
        out
    }
}

/// Reads `reader` to its end, keeping only its tail.
async fn keep_tail<R: tokio::io::AsyncRead + Unpin>(reader: Option<R>) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut tail = Tail::default();
    if let Some(mut reader) = reader {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await? {
                0 => break,
                n => tail.push(&buf[..n]),
            }
        }
    }
    Ok(tail.into_output())
}

impl Engine {
    /// `user`: the task's jail user, who runs exec'd commands too; root when `None`.
    fn exec_command(
        &self,
        pot: &PotName,
        user: Option<&str>,
        argv: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<tokio::process::Command, EngineError> {
        let p = pot.as_str();
        if argv.is_empty() {
            return Err(EngineError::InvalidInput(format!(
                "pot {p}: exec of an empty command"
            )));
        }
        super::command::check_exec(argv, env)?;
        let mut env = env.clone();
        env.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_JAIL_PATH.to_string());
        let cmd = self
            .host
            .jexec_invocation(&JexecSpec {
                jail: p.to_string(),
                user: user.map(str::to_string),
                argv: argv.to_vec(),
                env,
            })
            .map_err(EngineError::host(p))?
            .command();
        let mut cmd = tokio::process::Command::from(cmd);
        // A client that goes away takes its command with it.
        cmd.kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `argv` in the task's jail with the task's environment, collects its output, and
    /// kills it after `timeout` (none or zero: no limit).
    pub async fn exec(
        &self,
        pot: &PotName,
        user: Option<&str>,
        argv: &[String],
        env: &BTreeMap<String, String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, EngineError> {
        let p = pot.as_str();
        let mut child = self
            .exec_command(pot, user, argv, env)?
            .spawn()
            .map_err(EngineError::io(p, "spawn jexec for", Path::new(&argv[0])))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let output = async {
            let (stdout, stderr, status) =
                tokio::try_join!(keep_tail(stdout), keep_tail(stderr), child.wait())?;
            Ok::<_, std::io::Error>(ExecOutput {
                stdout,
                stderr,
                exit: exit_info(status),
            })
        };
        let output = match timeout.filter(|t| !t.is_zero()) {
            Some(t) => tokio::time::timeout(t, output)
                .await
                .map_err(|_| EngineError::State {
                    pot: p.to_string(),
                    reason: format!("exec {:?} timed out after {t:?}", argv[0]),
                })?,
            None => output.await,
        }
        .map_err(EngineError::io(p, "wait for", Path::new(&argv[0])))?;
        Ok(output)
    }

    /// Starts an interactive command in the task's jail, on pipes or, with `tty`, on a pty of
    /// that initial size whose slave is the command's controlling terminal. The size is set
    /// before the command starts, so even its first `stty size` sees it.
    pub async fn exec_session(
        &self,
        pot: &PotName,
        user: Option<&str>,
        argv: &[String],
        env: &BTreeMap<String, String>,
        tty: Option<TtySize>,
    ) -> Result<ExecSession, EngineError> {
        let cmd = self.exec_command(pot, user, argv, env)?;
        match tty {
            Some(size) => pty_session(pot, cmd, &argv[0], size),
            None => pipe_session(pot, cmd, &argv[0]),
        }
    }
}

fn pipe_session(
    pot: &PotName,
    mut cmd: tokio::process::Command,
    program: &str,
) -> Result<ExecSession, EngineError> {
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(EngineError::io(
        pot.as_str(),
        "spawn jexec for",
        Path::new(program),
    ))?;
    let (out_tx, output) = mpsc::channel(16);
    let (input, mut in_rx) = mpsc::channel(16);
    let (exit_tx, exit) = oneshot::channel();
    let mut stdin = child.stdin.take();
    tokio::spawn(async move {
        while let Some(msg) = in_rx.recv().await {
            match msg {
                ExecInput::Data(data) => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ExecInput::Close => stdin = None,
                ExecInput::Resize { .. } => {}
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = [
        pump(
            stdout,
            out_tx.clone(),
            ExecOutputEvent::Stdout,
            ExecOutputEvent::StdoutClosed,
        ),
        pump(
            stderr,
            out_tx,
            ExecOutputEvent::Stderr,
            ExecOutputEvent::StderrClosed,
        ),
    ];
    tokio::spawn(async move {
        for r in readers {
            let _ = r.await;
        }
        let _ = exit_tx.send(reap(child).await);
    });
    Ok(ExecSession {
        input,
        output,
        exit,
    })
}

/// The command's exit, once its output has ended and it is reaped.
async fn reap(mut child: tokio::process::Child) -> ExitInfo {
    match child.wait().await {
        Ok(status) => exit_info(status),
        Err(e) => ExitInfo::unknown(format!("waiting for the command failed: {e}")),
    }
}

fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    tx: mpsc::Sender<ExecOutputEvent>,
    chunk: fn(Vec<u8>) -> ExecOutputEvent,
    closed: ExecOutputEvent,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(chunk(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = tx.send(closed).await;
    })
}

fn pty_session(
    pot: &PotName,
    mut cmd: tokio::process::Command,
    program: &str,
    size: TtySize,
) -> Result<ExecSession, EngineError> {
    let p = pot.as_str();
    let pty_err = |op: &'static str| {
        move |e: nix::Error| EngineError::io(p, op, Path::new("/dev/ptmx"))(std::io::Error::from(e))
    };
    let pty = nix::pty::openpty(&winsize(size), None).map_err(pty_err("open a pty"))?;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(EngineError::io(p, "dup", Path::new("pty")))
    };
    cmd.stdin(dup(&pty.slave)?)
        .stdout(dup(&pty.slave)?)
        .stderr(pty.slave);
    // SAFETY: setsid and ioctl are async-signal-safe; the pty slave (fd 0) becomes the
    // controlling terminal of the new session, as a login does.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(EngineError::io(p, "spawn jexec for", Path::new(program)))?;
    // The slave ends now live only in the child: its exit gives the reader EIO, i.e. EOF.
    drop(cmd);
    let master = Arc::new(std::fs::File::from(pty.master));
    let (out_tx, output) = mpsc::channel(16);
    let (input, mut in_rx) = mpsc::channel::<ExecInput>(16);
    let (exit_tx, exit) = oneshot::channel();
    let writer = master.clone();
    tokio::spawn(async move {
        while let Some(msg) = in_rx.recv().await {
            let w = writer.clone();
            let _ = tokio::task::spawn_blocking(move || match msg {
                ExecInput::Data(data) => (&*w).write_all(&data),
                // ^D: end of input for the line discipline.
                ExecInput::Close => (&*w).write_all(&[4]),
                ExecInput::Resize { rows, cols } => resize(&w, TtySize { rows, cols }),
            })
            .await;
        }
    });
    let reader = master;
    let read_done = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        // EIO once the last slave descriptor is closed: that is the pty's end of file.
        while let Ok(n) = (&*reader).read(&mut buf) {
            if n == 0
                || out_tx
                    .blocking_send(ExecOutputEvent::Stdout(buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
        let _ = out_tx.blocking_send(ExecOutputEvent::StdoutClosed);
    });
    tokio::spawn(async move {
        let _ = read_done.await;
        let _ = exit_tx.send(reap(child).await);
    });
    Ok(ExecSession {
        input,
        output,
        exit,
    })
}

fn winsize(size: TtySize) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// TIOCSWINSZ on the pty's master: the session's new size, which the command in it gets with a
/// SIGWINCH.
fn resize(master: &std::fs::File, size: TtySize) -> std::io::Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, ws)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_sets_the_window_size_the_slave_sees() {
        let pty = nix::pty::openpty(&winsize(TtySize { rows: 24, cols: 80 }), None).unwrap();
        let master = std::fs::File::from(pty.master);
        resize(
            &master,
            TtySize {
                rows: 51,
                cols: 132,
            },
        )
        .unwrap();
        let seen = rustix::termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((seen.ws_row, seen.ws_col), (51, 132));
    }

    #[tokio::test]
    async fn exec_output_keeps_its_last_4_kib_and_says_what_it_dropped() {
        let small = keep_tail(Some(&b"ok\n"[..])).await.unwrap();
        assert_eq!(small, b"ok\n");
        let mut big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        big.extend_from_slice(b"the end\n");
        let out = keep_tail(Some(&big[..])).await.unwrap();
        let dropped = big.len() - EXEC_OUTPUT_KEPT;
        let note = format!(
            "[nomad-pot-driver: {dropped} bytes of output discarded, only the last 4096 kept]\n"
        );
        assert!(out.starts_with(note.as_bytes()), "{:?}", &out[..80]);
        assert_eq!(&out[note.len()..], &big[dropped..]);
        let exact = vec![b'x'; EXEC_OUTPUT_KEPT];
        assert_eq!(keep_tail(Some(&exact[..])).await.unwrap(), exact);
        assert_eq!(keep_tail(None::<&[u8]>).await.unwrap(), b"");
    }
}
