//! Launches the plugin binary the way Nomad (go-plugin) does and talks to it over gRPC.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use nomad_plugin_proto::{
    base::base_plugin_client::BasePluginClient, drivers::driver_client::DriverClient,
    plugin::grpc_controller_client::GrpcControllerClient,
};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_client::HealthClient;

pub const MAGIC_COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";

/// Path of the plugin binary: `$NOMAD_POT_DRIVER_BIN`, else `nomad-pot-driver` in [`crate::bin_dir`].
pub fn plugin_bin() -> PathBuf {
    crate::workspace_bin("NOMAD_POT_DRIVER_BIN", "nomad-pot-driver")
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
/// `plugin::announced_socket` on purpose: the harness is the tests' independent view of Nomad.
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

fn is_go_timestamp(ts: &str) -> bool {
    // 2006-01-02T15:04:05.000000Z07:00
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
    for key in ["@level", "@message", "@timestamp"] {
        match obj.get(key) {
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Some(format!("{key} is not a string: {line}")),
            None => return Some(format!("{key} missing: {line}")),
        }
    }
    let level = obj["@level"].as_str().unwrap();
    if !matches!(level, "trace" | "debug" | "info" | "warn" | "error") {
        return Some(format!("unknown @level {level:?}: {line}"));
    }
    let ts = obj["@timestamp"].as_str().unwrap();
    if !is_go_timestamp(ts) {
        return Some(format!(
            "@timestamp {ts:?} not in 2006-01-02T15:04:05.000000Z07:00 form: {line}"
        ));
    }
    None
}

impl Plugin {
    /// Spawns the plugin under test with Nomad's environment and connects to it.
    pub async fn launch() -> Plugin {
        Self::launch_bin(&plugin_bin()).await
    }

    /// [`Plugin::launch`] with more variables in its environment, as a Nomad agent started with
    /// them passes them on (e.g. `SSL_CERT_FILE`).
    pub async fn launch_with_env(vars: &[(&str, &std::ffi::OsStr)]) -> Plugin {
        Self::spawn(&plugin_bin(), vars).await
    }

    /// Spawns `bin` with Nomad's environment, validates the handshake and connects.
    pub async fn launch_bin(bin: &Path) -> Plugin {
        Self::spawn(bin, &[]).await
    }

    async fn spawn(bin: &Path, vars: &[(&str, &std::ffi::OsStr)]) -> Plugin {
        let mut cmd = Command::new(bin);
        // The test servers are on 127.0.0.1: a proxy of the machine running the tests is not
        // for them. A test that wants one passes it in `vars`.
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
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();

        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = stderr_lines.clone();
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
                            lines.lock().unwrap().push(s);
                        }
                    }
                }
            });
        }

        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, String>>();
        {
            let extra = extra_stdout.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut first = Vec::new();
                match r.read_until(b'\n', &mut first) {
                    Ok(_) => {
                        let _ = tx.send(Ok(first));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => extra.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            });
        }

        let stderr_dump = |lines: &Arc<Mutex<Vec<String>>>| lines.lock().unwrap().join("\n");
        let first =
            match tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap()
            {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    let _ = child.kill();
                    panic!("reading handshake: {e}");
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "no handshake line within 10 s; stderr:\n{}",
                        stderr_dump(&stderr_lines)
                    );
                }
            };
        if first.is_empty() {
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "plugin exited before we could connect ({status:?}); stderr:\n{}",
                stderr_dump(&stderr_lines)
            );
        }
        let line = String::from_utf8(first).expect("handshake is not UTF-8");
        let Some(line) = line.strip_suffix('\n') else {
            let _ = child.kill();
            panic!("handshake line not terminated by \\n: {line:?}");
        };
        let line = line.to_string();
        let socket = match validate_handshake(&line) {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                panic!("bad handshake: {e}");
            }
        };

        let path = socket.clone();
        let endpoint = Endpoint::try_from("http://[::]:50051").unwrap();
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }));
        let channel = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = child.kill();
                panic!("connecting to {}: {e:?}", socket.display());
            }
            Err(_) => {
                let _ = child.kill();
                panic!("connecting to {} timed out", socket.display());
            }
        };
        Plugin {
            child: Some(child),
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
        }
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
        self.extra_stdout.lock().unwrap().clone()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// stderr lines the Nomad agent would not accept as hclog JSON (or that would crash it).
    pub fn stderr_violations(&self) -> Vec<String> {
        self.stderr_lines()
            .iter()
            .filter_map(|l| stderr_line_violation(l))
            .collect()
    }

    /// Asserts: nothing on stdout after the handshake, every stderr line valid hclog JSON.
    pub fn assert_clean_io(&self) {
        let extra = self.extra_stdout();
        assert!(
            extra.is_empty(),
            "plugin printed to stdout after the handshake: {:?}",
            String::from_utf8_lossy(&extra)
        );
        let v = self.stderr_violations();
        assert!(
            v.is_empty(),
            "stderr lines that are not hclog JSON:\n{}",
            v.join("\n")
        );
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls for the process to exit for up to `timeout`; returns its status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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
    /// exit. Asserts it exited and that the socket (and its directory) are gone.
    pub async fn shutdown(mut self) {
        let mut ctl = self.controller();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            ctl.shutdown(nomad_plugin_proto::plugin::Empty {}),
        )
        .await;
        let status = self.wait_exit(Duration::from_secs(2)).await;
        assert!(
            status.is_some(),
            "plugin did not exit within 2 s of GRPCController.Shutdown (go-plugin would SIGKILL it)"
        );
        // let the reader threads collect the last bytes
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !self.socket.exists(),
            "socket {} still exists after shutdown",
            self.socket.display()
        );
        if let Some(dir) = self.socket.parent() {
            assert!(
                dir == Path::new("/tmp") || !dir.exists(),
                "socket directory {} still exists after shutdown",
                dir.display()
            );
        }
        self.assert_clean_io();
        self.child = None;
    }

    /// SIGKILLs the process (no cleanup by the plugin).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.remove_socket_dir();
    }

    /// A SIGKILLed plugin cannot remove its socket dir: the harness does, so that test runs
    /// leave nothing in the temp dir.
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
