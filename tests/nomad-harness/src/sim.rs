//! The simulated FreeBSD host (`freebsd-sim`, see tests/freebsd-sim/README.md) and a tiny
//! HTTP(S) file server for images.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

/// Path of the simulator: `$FREEBSD_SIM_BIN`, else `freebsd-sim` in [`crate::bin_dir`].
pub fn sim_bin() -> PathBuf {
    crate::workspace_bin("FREEBSD_SIM_BIN", "freebsd-sim")
}

/// A running `freebsd-sim devd`, killed on drop.
pub struct Devd(std::process::Child);

impl Drop for Devd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line of `DIR/state/calls.jsonl`.
#[derive(Debug, Clone)]
pub struct Call {
    pub argv: Vec<String>,
    /// -1 for the line a hang writes when it begins.
    pub exit: i64,
    /// `fail` or `hang` when an injected fault acted on the call.
    pub fault: Option<String>,
    /// The hung tool's pid, on a hang line.
    pub pid: Option<u32>,
    /// When the tool process began and ended, µs since the epoch (no end on a hang line).
    pub start_us: Option<u64>,
    pub end_us: Option<u64>,
}

impl Call {
    /// The argv joined with spaces (for `starts_with("zfs clone")` style checks).
    pub fn line(&self) -> String {
        self.argv.join(" ")
    }
}

pub struct SimHost {
    /// Holds everything: `host/` (the sim DIR), `images/`, `allocs/`, `empty/`.
    pub tmp: tempfile::TempDir,
    /// The simulated host directory (`freebsd-sim init DIR`).
    pub dir: PathBuf,
    /// The agent plugin `config` block printed by `init`.
    pub config: Json,
}

impl SimHost {
    /// `freebsd-sim init <tempdir>/host`.
    pub fn create() -> SimHost {
        SimHost::create_with(&[])
    }

    /// `freebsd-sim init FLAGS.. <tempdir>/host` (`--encrypted`).
    pub fn create_with(flags: &[&str]) -> SimHost {
        let tmp = tempfile::Builder::new()
            .prefix("freebsd-sim-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("host");
        let out = Command::new(sim_bin())
            .arg("init")
            .args(flags)
            .arg(&dir)
            .output()
            .expect("run freebsd-sim init");
        assert!(
            out.status.success(),
            "freebsd-sim init failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "freebsd-sim init printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert!(config.is_object(), "init config is not an object: {config}");
        SimHost { tmp, dir, config }
    }

    /// The agent config as printed by `init` (a JSON object).
    pub fn agent_config(&self) -> Json {
        self.config.clone()
    }

    /// The agent config with some keys replaced/added.
    pub fn agent_config_with(&self, overrides: Json) -> Json {
        let mut c = self.config.clone();
        for (k, v) in overrides.as_object().expect("overrides must be an object") {
            c[k] = v.clone();
        }
        c
    }

    /// The directory `image()` writes to: the host's `DIR/images`, which its agent config
    /// allows `file://` images from.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Where TestTask puts alloc directories.
    pub fn allocs_dir(&self) -> PathBuf {
        self.tmp.path().join("allocs")
    }

    /// An empty directory (e.g. a `tool_path` with no tools).
    pub fn empty_dir(&self) -> PathBuf {
        let p = self.tmp.path().join("empty");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `freebsd-sim image NAME TAG <images_dir>`; returns the images directory.
    pub fn image(&self, name: &str, tag: &str) -> PathBuf {
        let dir = self.images_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(sim_bin())
            .args(["image", name, tag])
            .arg(&dir)
            .output()
            .expect("run freebsd-sim image");
        assert!(
            out.status.success(),
            "freebsd-sim image failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for suffix in ["xz", "xz.skein"] {
            let f = dir.join(format!("{name}_{tag}.{suffix}"));
            assert!(
                f.exists(),
                "freebsd-sim image did not write {}",
                f.display()
            );
        }
        dir
    }

    /// Runs the simulated base tool `tool` with `args` (and `stdin`) → (exit code, stdout, stderr).
    pub fn tool(&self, tool: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new(self.dir.join("bin").join(tool))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run sim {tool}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`SimHost::tool`], panicking unless it succeeds; returns stdout.
    pub fn tool_ok(&self, tool: &str, args: &[&str]) -> String {
        let (code, out, err) = self.tool(tool, args, "");
        assert_eq!(code, 0, "{tool} {args:?} failed: {err}");
        out
    }

    /// Starts `freebsd-sim devd DIR` (devd's client socket, see the sim's README) and returns
    /// once it serves; it runs until the guard is dropped.
    pub fn start_devd(&self) -> Devd {
        let mut child = Command::new(sim_bin())
            .arg("devd")
            .arg(&self.dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run freebsd-sim devd");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("read from freebsd-sim devd");
        assert_eq!(line, "ready\n", "freebsd-sim devd did not start");
        Devd(child)
    }

    /// `freebsd-sim usage DIR JAIL RESOURCE AMOUNT`: the jail's usage reaches AMOUNT; returns
    /// the devctl notifications it caused.
    pub fn usage(&self, jail: &str, resource: &str, amount: u64) -> String {
        let out = Command::new(sim_bin())
            .arg("usage")
            .arg(&self.dir)
            .args([jail, resource, &amount.to_string()])
            .output()
            .expect("run freebsd-sim usage");
        assert!(out.status.success(), "freebsd-sim usage: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `freebsd-sim dying DIR SECS`: removed jails stay dying for SECS (see the sim's README).
    pub fn set_dying_time(&self, secs: f64) {
        let out = Command::new(sim_bin())
            .arg("dying")
            .arg(&self.dir)
            .arg(secs.to_string())
            .output()
            .expect("run freebsd-sim dying");
        assert!(out.status.success(), "freebsd-sim dying: {out:?}");
    }

    /// `freebsd-sim shm DIR JAIL PATH BYTES`: a process of JAIL leaves a POSIX shm object;
    /// returns its path as the host sees it.
    pub fn leave_shm(&self, jail: &str, path: &str, bytes: u64) -> String {
        let out = Command::new(sim_bin())
            .arg("shm")
            .arg(&self.dir)
            .args([jail, path, &bytes.to_string()])
            .output()
            .expect("run freebsd-sim shm");
        assert!(out.status.success(), "freebsd-sim shm: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// `freebsd-sim reboot DIR`: the host restarts (its jailed processes die, run-time state
    /// goes, datasets and files stay).
    pub fn reboot(&self) {
        let out = Command::new(sim_bin())
            .arg("reboot")
            .arg(&self.dir)
            .output()
            .expect("run freebsd-sim reboot");
        assert!(out.status.success(), "freebsd-sim reboot: {out:?}");
    }

    /// `freebsd-sim check DIR` → (clean, stdout+stderr).
    pub fn check(&self) -> (bool, String) {
        let out = Command::new(sim_bin())
            .arg("check")
            .arg(&self.dir)
            .output()
            .expect("run freebsd-sim check");
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), s)
    }

    /// Asserts `check` is clean.
    pub fn assert_clean(&self, when: &str) {
        let (ok, out) = self.check();
        assert!(ok, "freebsd-sim check found leftovers {when}:\n{out}");
    }

    /// Parses `DIR/state/calls.jsonl`.
    pub fn calls(&self) -> Vec<Call> {
        let p = self.dir.join("state").join("calls.jsonl");
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Json = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad calls.jsonl line ({e}): {l}"));
                Call {
                    argv: v["argv"]
                        .as_array()
                        .unwrap_or_else(|| panic!("calls.jsonl line without argv: {l}"))
                        .iter()
                        .map(|a| a.as_str().unwrap_or_default().to_string())
                        .collect(),
                    exit: v["exit"].as_i64().unwrap_or(-1),
                    fault: v["fault"].as_str().map(str::to_string),
                    pid: v["pid"].as_u64().map(|p| p as u32),
                    start_us: v["start_us"].as_u64(),
                    end_us: v["end_us"].as_u64(),
                }
            })
            .collect()
    }
}

impl SimHost {
    /// `freebsd-sim fault DIR args…`: adds a fault rule (see the simulator's README).
    pub fn fault(&self, args: &[&str]) {
        let out = Command::new(sim_bin())
            .arg("fault")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run freebsd-sim fault");
        assert!(
            out.status.success(),
            "freebsd-sim fault {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.fault(&["--clear"]);
    }

    /// Polls `calls.jsonl` until a call of `tool` with `word` hangs; returns the hung pid.
    pub fn wait_for_hang(&self, tool: &str, word: &str, timeout: std::time::Duration) -> u32 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let hung = self.calls().into_iter().find_map(|c| {
                let hit = c.fault.as_deref() == Some("hang")
                    && c.argv.first().map(String::as_str) == Some(tool)
                    && c.argv[1..].iter().any(|a| a == word);
                hit.then_some(c.pid).flatten()
            });
            if let Some(pid) = hung {
                return pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{tool} … {word} …` call hung within {timeout:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl SimHost {
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

impl Drop for SimHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.kill_all_jails();
        }
    }
}

/// A GET-only HTTP/1.1 file server on 127.0.0.1:0 serving one directory, in the clear or over
/// TLS with a certificate of the test PKI, and optionally only to a client with the right
/// `Authorization`.
pub struct FileServer {
    pub port: u16,
    tls: bool,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

fn safe_join(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// `auth`: the `Authorization` a request needs, if any.
fn handle(
    s: &mut (impl Read + Write),
    root: &Path,
    auth: Option<&str>,
    requests: &Mutex<Vec<String>>,
) {
    let mut request_line = String::new();
    let mut authorization = None;
    {
        let mut r = BufReader::new(&mut *s);
        if r.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => break,
                Ok(_) if h == "\r\n" || h == "\n" => break,
                Ok(_) => {}
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("").to_string();
    requests.lock().unwrap().push(target.clone());
    let mut respond = |status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body);
        let _ = s.flush();
    };
    if method != "GET" {
        respond("405 Method Not Allowed", b"");
        return;
    }
    if auth.is_some() && authorization.as_deref() != auth {
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"images\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = s.write_all(head.as_bytes());
        let _ = s.flush();
        return;
    }
    match safe_join(root, &target)
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::read(p).ok())
    {
        Some(body) => respond("200 OK", &body),
        None => respond("404 Not Found", b"not found\n"),
    }
}

fn serve_conn(
    conn: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
    root: &Path,
    auth: Option<&str>,
    requests: &Mutex<Vec<String>>,
) {
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut conn = conn;
    match tls {
        None => handle(&mut conn, root, auth, requests),
        Some(config) => {
            let Ok(session) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut stream = rustls::StreamOwned::new(session, conn);
            handle(&mut stream, root, auth, requests);
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    }
}

impl FileServer {
    pub fn serve(dir: &Path) -> FileServer {
        FileServer::start(dir, None, None)
    }

    /// Over TLS, presenting `cert`; the client must trust [`crate::tls::test_ca`].
    pub fn serve_https(dir: &Path, cert: crate::tls::TestCert) -> FileServer {
        FileServer::start(dir, Some(crate::tls::server_config(cert)), None)
    }

    /// In the clear, answering 401 with a Basic challenge to a request without
    /// `Authorization: <authorization>` (say `Basic YWxp…`).
    pub fn serve_with_auth(dir: &Path, authorization: &'static str) -> FileServer {
        FileServer::start(dir, None, Some(authorization))
    }

    fn start(
        dir: &Path,
        tls: Option<Arc<rustls::ServerConfig>>,
        auth: Option<&'static str>,
    ) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let root = dir.to_path_buf();
        let is_tls = tls.is_some();
        {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let root = root.clone();
                    let requests = requests.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        serve_conn(conn, tls.as_ref(), &root, auth, &requests)
                    });
                }
            });
        }
        FileServer {
            port,
            tls: is_tls,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>/`, or `https://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// Request targets seen so far (e.g. `/demo_1.0.xz`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
