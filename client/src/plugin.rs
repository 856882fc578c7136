//! Launches the plugin binary the way Nomad (go-plugin) does and talks to it over gRPC. What
//! the agent accepts on the plugin's stdout and stderr is judged in [`stdio`].

mod stdio;

pub use stdio::{stderr_line_violation, validate_handshake};

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use nomad_plugin_proto::{
    base::base_plugin_client::BasePluginClient, drivers::driver_client::DriverClient,
    plugin::grpc_controller_client::GrpcControllerClient,
};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_client::HealthClient;

use crate::BinError;

pub const MAGIC_COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";

/// How long the client waits for the handshake line.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for the gRPC connection on the announced socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// go-plugin's `Kill()`: how long a plugin has to exit after GRPCController.Shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Path of the plugin binary: `$NOMAD_POT_DRIVER_BIN`, else `nomad-pot-driver` in
/// [`crate::bin_dir`].
pub fn plugin_bin() -> Result<PathBuf, BinError> {
    crate::workspace_bin("NOMAD_POT_DRIVER_BIN", "nomad-pot-driver")
}

/// Why a plugin could not be launched and connected to, as Nomad's client would report it.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Bin(#[from] BinError),
    #[error("spawn {}: {source}", bin.display())]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading handshake: {0}")]
    ReadHandshake(#[source] io::Error),
    #[error("no handshake line within 10 s; stderr:\n{stderr}")]
    NoHandshake { stderr: String },
    #[error("plugin exited before we could connect ({status:?}); stderr:\n{stderr}")]
    ExitedEarly {
        status: Option<ExitStatus>,
        stderr: String,
    },
    #[error("handshake is not UTF-8: {0:?}")]
    NotUtf8(Vec<u8>),
    #[error("handshake line not terminated by \\n: {0:?}")]
    Unterminated(String),
    #[error("bad handshake: {0}")]
    BadHandshake(String),
    #[error("connecting to {}: {source:?}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to {} timed out", socket.display())]
    ConnectTimeout { socket: PathBuf },
}

/// What a Nomad agent would object to in a plugin's stdout and stderr.
#[derive(Debug, thiserror::Error)]
pub enum UncleanIo {
    #[error("plugin printed to stdout after the handshake: {0:?}")]
    Stdout(String),
    #[error("stderr lines that are not hclog JSON:\n{}", .0.join("\n"))]
    Stderr(Vec<String>),
}

/// Why a plugin's shutdown was not the graceful one go-plugin expects.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(
        "plugin did not exit within 2 s of GRPCController.Shutdown (go-plugin would SIGKILL it)"
    )]
    NoExit,
    #[error("socket {} still exists after shutdown", .0.display())]
    SocketLeft(PathBuf),
    #[error("socket directory {} still exists after shutdown", .0.display())]
    SocketDirLeft(PathBuf),
    #[error(transparent)]
    UncleanIo(#[from] UncleanIo),
}

/// A running plugin process plus gRPC clients on its socket.
pub struct Plugin {
    child: Option<Child>,
    pub pid: u32,
    /// The handshake line as printed (without the trailing newline).
    pub handshake: String,
    /// Socket path from the handshake.
    pub socket: PathBuf,
    pub channel: Channel,
    pub base: BasePluginClient<Channel>,
    pub driver: DriverClient<Channel>,
    pub controller: GrpcControllerClient<Channel>,
    pub health: HealthClient<Channel>,
    extra_stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Locks a buffer a reader thread fills; a thread that panicked mid-push leaves it usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Collects the plugin's stderr lines; echoes them with `E2E_ECHO_PLUGIN_STDERR` set.
fn drain_stderr(stderr: impl Read + Send + 'static, pid: u32, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&buf);
                    let s = s.strip_suffix('\n').unwrap_or(&s).to_string();
                    if std::env::var_os("E2E_ECHO_PLUGIN_STDERR").is_some() {
                        let _ = std::io::Write::write_all(
                            &mut std::io::stderr(),
                            format!("[plugin {pid}] {s}\n").as_bytes(),
                        );
                    }
                    lock(&lines).push(s);
                }
            }
        }
    });
}

/// Sends the first stdout line (the handshake) to `tx`, then keeps what follows in `extra`.
fn drain_stdout(
    stdout: impl Read + Send + 'static,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    extra: Arc<Mutex<Vec<u8>>>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut first = Vec::new();
        let read = r.read_until(b'\n', &mut first);
        let failed = read.is_err();
        let _ = tx.send(read.map(|_| first));
        if failed {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&extra).extend_from_slice(&buf[..n]),
            }
        }
    });
}

/// A gRPC channel over the unix socket at `socket`.
async fn connect(socket: &Path) -> Result<Channel, LaunchError> {
    let path = socket.to_path_buf();
    let endpoint = Endpoint::from_static("http://[::]:50051");
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(path).await?,
            ))
        }
    }));
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(LaunchError::Connect {
            socket: socket.to_path_buf(),
            source,
        }),
        Err(_) => Err(LaunchError::ConnectTimeout {
            socket: socket.to_path_buf(),
        }),
    }
}

/// `bin` as Nomad's go-plugin client starts a plugin: the magic cookie, the protocol `versions`
/// the client speaks and the port range in the environment, without the settings this launcher
/// does not use (mTLS, a socket directory or group, multiplexing); stdin from /dev/null, stdout
/// and stderr piped.
pub fn go_plugin_command(bin: &Path, versions: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", versions)
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .env_remove("PLUGIN_CLIENT_CERT")
        .env_remove("PLUGIN_UNIX_SOCKET_DIR")
        .env_remove("PLUGIN_UNIX_SOCKET_GROUP")
        .env_remove("PLUGIN_MULTIPLEX_GRPC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A child being launched: killed and reaped unless it is handed over to a [`Plugin`].
struct Spawned(Option<Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment variables that route the image downloads of a plugin or potctl through a
/// proxy (see the driver's README, "Proxies"): removed from what is launched for 127.0.0.1
/// servers.
pub const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
];

impl Plugin {
    /// Spawns the workspace's plugin with Nomad's environment and connects to it.
    pub async fn launch() -> Result<Plugin, LaunchError> {
        Self::spawn(&plugin_bin()?, &[]).await
    }

    /// [`Plugin::launch`] with more variables in its environment, as a Nomad agent started with
    /// them passes them on (e.g. `SSL_CERT_FILE`).
    pub async fn launch_with_env(vars: &[(&str, &std::ffi::OsStr)]) -> Result<Plugin, LaunchError> {
        Self::spawn(&plugin_bin()?, vars).await
    }

    /// Spawns `bin` with Nomad's environment, validates the handshake and connects.
    pub async fn launch_bin(bin: &Path) -> Result<Plugin, LaunchError> {
        Self::spawn(bin, &[]).await
    }

    async fn spawn(bin: &Path, vars: &[(&str, &std::ffi::OsStr)]) -> Result<Plugin, LaunchError> {
        let mut cmd = go_plugin_command(bin, "2");
        // The plugins launched here fetch their images from servers on 127.0.0.1 (the demo's and
        // the tests'): a proxy of the machine is not for them. A caller that wants one passes it
        // in `vars`.
        for proxy_var in PROXY_VARS {
            cmd.env_remove(proxy_var);
        }
        cmd.envs(vars.iter().copied());
        let spawn_err = |source| LaunchError::Spawn {
            bin: bin.to_path_buf(),
            source,
        };
        let mut child = Spawned(Some(cmd.spawn().map_err(spawn_err)?));
        let process = child
            .0
            .as_mut()
            .ok_or_else(|| spawn_err(io::ErrorKind::NotFound.into()))?;
        let pid = process.id();
        let (Some(stdout), Some(stderr)) = (process.stdout.take(), process.stderr.take()) else {
            return Err(spawn_err(io::Error::other(
                "stdout and stderr are not piped",
            )));
        };
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        drain_stderr(stderr, pid, stderr_lines.clone());
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        drain_stdout(stdout, tx, extra_stdout.clone());

        let stderr_dump = || lock(&stderr_lines).join("\n");
        let first =
            match tokio::task::spawn_blocking(move || rx.recv_timeout(HANDSHAKE_TIMEOUT)).await {
                Ok(Ok(Ok(b))) => b,
                Ok(Ok(Err(e))) => return Err(LaunchError::ReadHandshake(e)),
                Ok(Err(_)) | Err(_) => {
                    return Err(LaunchError::NoHandshake {
                        stderr: stderr_dump(),
                    });
                }
            };
        if first.is_empty() {
            let status = child.0.as_mut().and_then(|c| c.wait().ok());
            // Let the stderr reader catch up with what the plugin printed before exiting.
            std::thread::sleep(Duration::from_millis(100));
            return Err(LaunchError::ExitedEarly {
                status,
                stderr: stderr_dump(),
            });
        }
        let line = String::from_utf8(first).map_err(|e| LaunchError::NotUtf8(e.into_bytes()))?;
        let Some(line) = line.strip_suffix('\n') else {
            return Err(LaunchError::Unterminated(line));
        };
        let line = line.to_string();
        let socket = validate_handshake(&line).map_err(LaunchError::BadHandshake)?;
        let channel = connect(&socket).await?;
        Ok(Plugin {
            child: child.0.take(),
            pid,
            handshake: line,
            socket,
            base: BasePluginClient::new(channel.clone()),
            driver: DriverClient::new(channel.clone()),
            controller: GrpcControllerClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
            channel,
            extra_stdout,
            stderr: stderr_lines,
        })
    }

    pub fn base(&self) -> BasePluginClient<Channel> {
        self.base.clone()
    }
    pub fn driver(&self) -> DriverClient<Channel> {
        self.driver.clone()
    }
    pub fn controller(&self) -> GrpcControllerClient<Channel> {
        self.controller.clone()
    }
    pub fn health(&self) -> HealthClient<Channel> {
        self.health.clone()
    }

    /// Everything the plugin wrote to stdout after the handshake line.
    pub fn extra_stdout(&self) -> Vec<u8> {
        lock(&self.extra_stdout).clone()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).clone()
    }

    /// stderr lines the Nomad agent would not accept as hclog JSON (or that would crash it).
    pub fn stderr_violations(&self) -> Vec<String> {
        self.stderr_lines()
            .iter()
            .filter_map(|l| stderr_line_violation(l))
            .collect()
    }

    /// Nothing on stdout after the handshake, every stderr line valid hclog JSON.
    pub fn check_clean_io(&self) -> Result<(), UncleanIo> {
        let extra = self.extra_stdout();
        if !extra.is_empty() {
            return Err(UncleanIo::Stdout(
                String::from_utf8_lossy(&extra).into_owned(),
            ));
        }
        let v = self.stderr_violations();
        if !v.is_empty() {
            return Err(UncleanIo::Stderr(v));
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls for the process to exit for up to `timeout`; returns its status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Some(st);
                }
            } else {
                return None;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What go-plugin's `Kill()` does: GRPCController.Shutdown, then ≤ 2 s for the process to
    /// exit. Checks that it exited, that the socket (and its directory) are gone and that its
    /// stdio stayed clean; a plugin that did not exit is killed when `self` drops.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let mut ctl = self.controller();
        let _ = tokio::time::timeout(
            SHUTDOWN_GRACE,
            ctl.shutdown(nomad_plugin_proto::plugin::Empty {}),
        )
        .await;
        if self.wait_exit(SHUTDOWN_GRACE).await.is_none() {
            return Err(ShutdownError::NoExit);
        }
        // Let the reader threads collect the last bytes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if self.socket.exists() {
            return Err(ShutdownError::SocketLeft(self.socket.clone()));
        }
        if let Some(dir) = self.socket.parent()
            && dir != Path::new("/tmp")
            && dir.exists()
        {
            return Err(ShutdownError::SocketDirLeft(dir.to_path_buf()));
        }
        self.check_clean_io()?;
        self.child = None;
        Ok(())
    }

    /// SIGKILLs the process (no cleanup by the plugin).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.remove_socket_dir();
    }

    /// A SIGKILLed plugin cannot remove its socket dir: the client does, so that runs leave
    /// nothing in the temp dir.
    fn remove_socket_dir(&self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = self.socket.parent()
            && dir != std::env::temp_dir()
            && dir != Path::new("/tmp")
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
            self.remove_socket_dir();
        }
    }
}
