//! Launches the plugin binary the way Nomad (go-plugin) does and talks to it over gRPC.

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

/// Validates a handshake line exactly like go-plugin's client (plus the strict 6-field form the
/// Go server prints). Returns the socket path. Written apart from the plugin's own
/// `plugin::announced_socket` on purpose: this crate is the tests' independent view of Nomad.
pub fn validate_handshake(line: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() != 6 {
        return Err(format!(
            "handshake must have 6 '|'-separated fields, got {}: {line:?}",
            parts.len()
        ));
    }
    if parts[0] != "1" {
        return Err(format!("incompatible core API version {:?}", parts[0]));
    }
    if parts[1] != "2" {
        return Err(format!(
            "incompatible API version with plugin. Plugin version: {}, Client versions: [2]",
            parts[1]
        ));
    }
    if parts[2] != "unix" {
        return Err(format!("expected network type unix, got {:?}", parts[2]));
    }
    let p = Path::new(parts[3]);
    if !p.is_absolute() {
        return Err(format!("socket path must be absolute: {:?}", parts[3]));
    }
    if parts[3].len() >= 104 {
        return Err(format!(
            "socket path longer than FreeBSD's sun_path: {:?}",
            parts[3]
        ));
    }
    if parts[4] != "grpc" {
        return Err(format!(
            "unsupported plugin protocol {:?}. Supported: [grpc]",
            parts[4]
        ));
    }
    if !parts[5].is_empty() {
        return Err(format!(
            "sixth field (server cert) must be empty, got {:?}",
            parts[5]
        ));
    }
    Ok(p.to_path_buf())
}

/// Whether `ts` has hclog's `2006-01-02T15:04:05.000000Z07:00` form.
fn is_go_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    if b.len() < 27 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    let base_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26);
    if !base_ok {
        return false;
    }
    let zone = &ts[26..];
    if zone == "Z" {
        return true;
    }
    let z = zone.as_bytes();
    z.len() == 6
        && (z[0] == b'+' || z[0] == b'-')
        && z[1].is_ascii_digit()
        && z[2].is_ascii_digit()
        && z[3] == b':'
        && z[4].is_ascii_digit()
        && z[5].is_ascii_digit()
}

/// Why a stderr line would not be accepted as an hclog JSON entry by the agent (None = fine).
pub fn stderr_line_violation(line: &str) -> Option<String> {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON ({e}): {line}")),
    };
    let Some(obj) = v.as_object() else {
        return Some(format!("not a JSON object: {line}"));
    };
    let fields = ["@level", "@message", "@timestamp"].map(|key| (key, obj.get(key)));
    for (key, value) in &fields {
        match value {
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Some(format!("{key} is not a string: {line}")),
            None => return Some(format!("{key} missing: {line}")),
        }
    }
    let text = |i: usize| {
        fields[i]
            .1
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    };
    let level = text(0);
    if !matches!(level, "trace" | "debug" | "info" | "warn" | "error") {
        return Some(format!("unknown @level {level:?}: {line}"));
    }
    let ts = text(2);
    if !is_go_timestamp(ts) {
        return Some(format!(
            "@timestamp {ts:?} not in 2006-01-02T15:04:05.000000Z07:00 form: {line}"
        ));
    }
    None
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
        let mut cmd = Command::new(bin);
        // The plugins launched here fetch their images from servers on 127.0.0.1 (the demo's and
        // the tests'): a proxy of the machine is not for them. A caller that wants one passes it
        // in `vars`.
        for proxy_var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(proxy_var);
        }
        cmd.envs(vars.iter().copied());
        cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "2")
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env_remove("PLUGIN_CLIENT_CERT")
            .env_remove("PLUGIN_UNIX_SOCKET_DIR")
            .env_remove("PLUGIN_UNIX_SOCKET_GROUP")
            .env_remove("PLUGIN_MULTIPLEX_GRPC")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_go_plugin_refuses_are_refused() {
        let ok = "1|2|unix|/tmp/plugin123/plugin.sock|grpc|";
        assert_eq!(
            validate_handshake(ok),
            Ok(PathBuf::from("/tmp/plugin123/plugin.sock"))
        );
        for (line, why) in [
            ("1|2|unix|/tmp/p.sock|grpc", "6 '|'-separated fields"),
            ("2|2|unix|/tmp/p.sock|grpc|", "core API version"),
            ("1|1|unix|/tmp/p.sock|grpc|", "Plugin version: 1"),
            ("1|2|tcp|127.0.0.1:1|grpc|", "network type unix"),
            ("1|2|unix|p.sock|grpc|", "must be absolute"),
            ("1|2|unix|/tmp/p.sock|netrpc|", "Supported: [grpc]"),
            ("1|2|unix|/tmp/p.sock|grpc|cert", "sixth field"),
        ] {
            let err = validate_handshake(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
        let long = format!("1|2|unix|/{}|grpc|", "x".repeat(110));
        assert!(validate_handshake(&long).unwrap_err().contains("sun_path"));
    }

    #[test]
    fn only_hclog_json_passes_as_a_stderr_line() {
        let good =
            r#"{"@level":"info","@message":"hi","@timestamp":"2026-12-06T16:08:57.123456Z"}"#;
        assert_eq!(stderr_line_violation(good), None);
        let zoned = good.replace("Z\"", "+01:00\"");
        assert_eq!(stderr_line_violation(&zoned), None);
        for (line, why) in [
            ("plain text", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"@level":"info","@message":"hi"}"#, "@timestamp missing"),
            (
                r#"{"@level":5,"@message":"hi","@timestamp":"x"}"#,
                "@level is not a string",
            ),
            (
                r#"{"@level":"fatal","@message":"hi","@timestamp":"2026-12-06T16:08:57.123456Z"}"#,
                "unknown @level",
            ),
            (
                r#"{"@level":"info","@message":"hi","@timestamp":"2026-12-06 16:08:57"}"#,
                "not in 2006-01-02",
            ),
        ] {
            let v = stderr_line_violation(line).unwrap_or_default();
            assert!(v.contains(why), "{line}: {v:?}");
        }
    }
}
