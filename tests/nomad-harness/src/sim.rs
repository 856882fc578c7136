//! The simulated FreeBSD host (`freebsd-sim`, see tests/freebsd-sim/README.md) and a tiny
//! HTTP(S) file server for images: `nomad_pot_client`'s, panicking, with what only tests do to
//! the host (tools, faults, the calls log, devd, usage, reboot).

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

use crate::ok;

/// Path of the simulator: `$FREEBSD_SIM_BIN`, else `freebsd-sim` in [`crate::bin_dir`].
pub fn sim_bin() -> PathBuf {
    ok(nomad_pot_client::sim::sim_bin())
}

/// `freebsd-sim keygen`: a signify key pair, `sim.pub` and `sim.sec`, in a new temp dir.
pub fn signify_keys() -> tempfile::TempDir {
    let keys = tempfile::tempdir().expect("a temp dir for the signify keys");
    let made = Command::new(sim_bin())
        .arg("keygen")
        .arg(keys.path())
        .status()
        .expect("run freebsd-sim keygen");
    assert!(made.success(), "freebsd-sim keygen failed: {made}");
    keys
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

/// The client's simulated host (its fields and methods through deref).
pub struct SimHost(nomad_pot_client::SimHost);

impl Deref for SimHost {
    type Target = nomad_pot_client::SimHost;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for SimHost {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl SimHost {
    /// `freebsd-sim init <tempdir>/host`.
    pub fn create() -> SimHost {
        SimHost::create_with(&[])
    }

    /// `freebsd-sim init FLAGS.. <tempdir>/host` (`--encrypted`).
    pub fn create_with(flags: &[&str]) -> SimHost {
        SimHost(ok(nomad_pot_client::SimHost::create_with(flags)))
    }

    /// The agent config with some keys replaced/added.
    pub fn agent_config_with(&self, overrides: Json) -> Json {
        let overrides = overrides.as_object().expect("overrides must be an object");
        self.0.agent_config_with(overrides)
    }

    /// An empty directory (e.g. a `tool_path` with no tools).
    pub fn empty_dir(&self) -> PathBuf {
        ok(self.0.empty_dir())
    }

    /// `freebsd-sim image NAME TAG <images_dir>`; returns the images directory.
    pub fn image(&self, name: &str, tag: &str) -> PathBuf {
        ok(self.0.image(name, tag))
    }

    /// `freebsd-sim check DIR` → (clean, stdout+stderr).
    pub fn check(&self) -> (bool, String) {
        ok(self.0.check())
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

impl Drop for SimHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.kill_all_jails();
        }
    }
}

/// The client's GET-only HTTP/1.1 file server on 127.0.0.1:0 serving one directory, in the
/// clear or over TLS with a certificate of the test PKI, and optionally only to a client with
/// the right `Authorization`.
pub struct FileServer(nomad_pot_client::FileServer);

impl FileServer {
    pub fn serve(dir: &Path) -> FileServer {
        FileServer(ok(nomad_pot_client::FileServer::serve(dir)))
    }

    /// Over TLS, presenting `cert`; the client must trust [`crate::tls::test_ca`].
    pub fn serve_https(dir: &Path, cert: crate::tls::TestCert) -> FileServer {
        let config = crate::tls::server_config(cert);
        FileServer(ok(nomad_pot_client::FileServer::serve_tls(dir, config)))
    }

    /// In the clear, answering 401 with a Basic challenge to a request without
    /// `Authorization: <authorization>` (say `Basic YWxp…`).
    pub fn serve_with_auth(dir: &Path, authorization: &'static str) -> FileServer {
        FileServer(ok(nomad_pot_client::FileServer::serve_with_auth(
            dir,
            authorization,
        )))
    }
}

impl Deref for FileServer {
    type Target = nomad_pot_client::FileServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
