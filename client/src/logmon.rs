//! A stand-in for Nomad's logmon: creates the task's stdout/stderr FIFOs (0600) and drains them
//! from blocking read-only opens until EOF (protocol spec §5).

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::stat::Mode;

/// A FIFO logmon could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("logmon: {op} {}: {source}", path.display())]
pub struct LogMonError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

#[derive(Default)]
struct Stream {
    data: Mutex<Vec<u8>>,
    opened: AtomicBool,
    eof: AtomicBool,
}

impl Stream {
    fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct LogMon {
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    stdout: Arc<Stream>,
    stderr: Arc<Stream>,
}

fn spawn_reader(path: PathBuf, stream: Arc<Stream>) {
    std::thread::spawn(move || {
        // Blocking open: waits for the first writer, like logmon's fifo.OpenReader.
        let mut f = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(_) => {
                stream.eof.store(true, Ordering::SeqCst);
                return;
            }
        };
        stream.opened.store(true, Ordering::SeqCst);
        let mut buf = [0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => stream.data().extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        stream.eof.store(true, Ordering::SeqCst);
    });
}

impl LogMon {
    /// mkfifo `<alloc_dir>/alloc/logs/.<task>.{stdout,stderr}.fifo` (mode 0600) and start the
    /// readers.
    pub fn start(alloc_dir: &Path, task: &str) -> Result<LogMon, LogMonError> {
        let err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| LogMonError { op, path, source }
        };
        let logs = alloc_dir.join("alloc").join("logs");
        std::fs::create_dir_all(&logs).map_err(err("creating", &logs))?;
        let stdout_path = logs.join(format!(".{task}.stdout.fifo"));
        let stderr_path = logs.join(format!(".{task}.stderr.fifo"));
        for p in [&stdout_path, &stderr_path] {
            if !p.exists() {
                nix::unistd::mkfifo(p.as_path(), Mode::from_bits_truncate(0o600))
                    .map_err(|e| err("mkfifo", p)(e.into()))?;
                // mkfifo honours the umask; force 0600 like logmon
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(err("chmod", p))?;
            }
        }
        let stdout = Arc::new(Stream::default());
        let stderr = Arc::new(Stream::default());
        spawn_reader(stdout_path.clone(), stdout.clone());
        spawn_reader(stderr_path.clone(), stderr.clone());
        Ok(LogMon {
            stdout_path,
            stderr_path,
            stdout,
            stderr,
        })
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.data()).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.data()).into_owned()
    }
    /// Whether a writer ever opened the stdout / stderr FIFO.
    pub fn stdout_opened(&self) -> bool {
        self.stdout.opened.load(Ordering::SeqCst)
    }
    pub fn stderr_opened(&self) -> bool {
        self.stderr.opened.load(Ordering::SeqCst)
    }
    /// Whether the stdout / stderr reader saw EOF (all writers closed).
    pub fn stdout_eof(&self) -> bool {
        self.stdout.eof.load(Ordering::SeqCst)
    }
    pub fn stderr_eof(&self) -> bool {
        self.stderr.eof.load(Ordering::SeqCst)
    }

    async fn wait_for(stream: &Stream, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if String::from_utf8_lossy(&stream.data()).contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until stdout contains `needle`; false on timeout.
    pub async fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> bool {
        Self::wait_for(&self.stdout, needle, timeout).await
    }

    /// Waits until stderr contains `needle`; false on timeout.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        Self::wait_for(&self.stderr, needle, timeout).await
    }

    /// Waits until both readers saw EOF; false on timeout.
    pub async fn wait_for_eof(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stdout_eof() && self.stderr_eof() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for LogMon {
    fn drop(&mut self) {
        // Unblock readers still waiting in open(): a non-blocking write-open succeeds when a
        // reader is waiting; closing it right away gives that reader EOF.
        for (p, s) in [
            (&self.stdout_path, &self.stdout),
            (&self.stderr_path, &self.stderr),
        ] {
            if !s.opened.load(Ordering::SeqCst) {
                let _ = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p);
            }
        }
    }
}
