//! Image import: names, the bad-input suite and network faults, on the simulated host. Here:
//! the fixture and the scriptable test servers the files below share.

mod cache;
mod export;
mod gc;
mod http;
mod https;
mod locks;
mod provenance;
mod proxy;
mod reference;
mod stream;
mod verify;

use super::*;
use crate::engine::EngineError;
use libsignify::Codeable;
use nomad_harness::sim::{SimHost, sim_bin};
use nomad_harness::tls::{TestCert, test_ca};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DATASET: &str = "zroot/pot/jails/demo_1_0";

struct Fixture {
    sim: SimHost,
    cfg: crate::engine::EngineConfig,
    host: Host,
    locks: ImageLocks,
    /// `demo_1.0.xz`, `.meta` and `.skein` as `freebsd-sim image` wrote them.
    xz: Vec<u8>,
    meta: Vec<u8>,
    skein: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::on(SimHost::create())
    }

    /// Trusts the test CA through `image_ca_file`.
    fn trusting_test_ca() -> Fixture {
        let mut f = Fixture::new();
        f.cfg.image.ca_file = Some(test_ca());
        f
    }

    fn on(sim: SimHost) -> Fixture {
        // The host's image dir, its cache and the test's export dirs are allowed.
        let mut cfg = crate::engine::testing::config_on(&sim);
        cfg.image.attempts = 3;
        cfg.image.backoff = Duration::from_millis(10);
        cfg.image.idle_timeout = Duration::from_secs(5);
        let dir = sim.image("demo", "1.0");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        Fixture {
            host: Host::new(cfg.tool_path.clone()),
            cfg,
            locks: ImageLocks::default(),
            xz: read("demo_1.0.xz"),
            meta: read("demo_1.0.xz.meta"),
            skein: read("demo_1.0.xz.skein"),
            sim,
        }
    }

    async fn import(&self, url: &str) -> Result<Imported, EngineError> {
        let image = ImageRef::parse(url, "demo", "1.0")?;
        ensure_imported(&self.host, &self.locks, &self.cfg, &image, &|_| {})
            .await
            .map(|(imported, _lock)| imported)
    }

    /// Fails with the error's text, for assertions on it.
    async fn import_err(&self, url: &str) -> EngineError {
        match self.import(url).await {
            Ok(i) => panic!("import from {url} succeeded: {i:?}"),
            Err(e) => e,
        }
    }

    fn cache_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.cfg.cache_dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// No dataset (final or temporary), no cache file, no lock.
    async fn assert_nothing_left(&self) {
        for ds in [DATASET.to_string(), format!("{DATASET}_importing")] {
            assert!(
                !self.host.zfs_exists(&ds).await.unwrap(),
                "{ds} was left behind"
            );
        }
        assert_eq!(self.cache_files(), Vec::<String>::new(), "cache files left");
        assert_eq!(self.locks.active(), 0, "an image lock was left");
        self.sim.assert_clean("after a failed import");
    }

    async fn assert_imported(&self) {
        assert!(self.host.zfs_exists(DATASET).await.unwrap());
        assert!(
            !self
                .host
                .zfs_exists(&format!("{DATASET}_importing"))
                .await
                .unwrap()
        );
        // pot's files; the driver's downloads also record their source beside them.
        let mut files = self.cache_files();
        files.retain(|f| f != "demo_1.0.xz.source");
        assert_eq!(
            files,
            ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"]
        );
        let cached = std::fs::read(self.cfg.cache_dir.join("demo_1.0.xz")).unwrap();
        assert!(
            cached == self.xz,
            "the cached .xz differs from the served one"
        );
        assert_eq!(self.locks.active(), 0);
    }

    /// A server with `.skein` and `.meta` in place; `.xz` gets `xz`.
    fn serve(&self, xz: Vec<Reply>) -> Server {
        Server::start(self.routes(xz))
    }

    /// [`Fixture::serve`] over TLS with `cert`.
    fn serve_https(&self, cert: TestCert, xz: Vec<Reply>) -> Server {
        Server::start_tls(self.routes(xz), cert)
    }

    fn routes(&self, xz: Vec<Reply>) -> Vec<(&'static str, Vec<Reply>)> {
        vec![
            ("/demo_1.0.xz.skein", vec![Reply::body(&self.skein)]),
            ("/demo_1.0.xz.meta", vec![Reply::body(&self.meta)]),
            ("/demo_1.0.xz", xz),
        ]
    }
}

/// RustCrypto's Skein-1024, so the images' hashes do not come from the code under test.
fn skein_hex(parts: &[&[u8]]) -> Vec<u8> {
    use skein::Digest;
    let mut h = skein::Skein1024::<skein::U128>::new();
    for p in parts {
        h.update(p);
    }
    let mut hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex.push('\n');
    hex.into_bytes()
}

/// What the test server answers to one request for a path.
#[derive(Clone)]
enum Reply {
    Status(u16),
    /// The file; honours `Range` (with a matching `If-Range`) when it has an ETag.
    Body {
        data: Vec<u8>,
        etag: Option<&'static str>,
    },
    /// Announces the whole file, sends `after` bytes, closes the connection.
    Cut {
        data: Vec<u8>,
        after: usize,
        etag: Option<&'static str>,
    },
    /// Announces the file and then sends nothing.
    Stall(usize),
    Redirect(String),
}

impl Reply {
    fn body(data: &[u8]) -> Reply {
        Reply::Body {
            data: data.to_vec(),
            etag: None,
        }
    }
}

/// One logged request: path and `Range` header.
type Logged = (String, Option<String>);

/// A scriptable HTTP/1.1 server, in the clear or over TLS: each path answers with its replies in
/// order, the last repeating.
struct Server {
    port: u16,
    tls: bool,
    /// `Authorization` values of every request, in order.
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(routes: Vec<(&str, Vec<Reply>)>) -> Server {
        Server::listen(routes, None, None)
    }

    fn start_tls(routes: Vec<(&str, Vec<Reply>)>, cert: TestCert) -> Server {
        Server::listen(routes, Some(nomad_harness::tls::server_config(cert)), None)
    }

    /// A server that answers 401 with a Basic challenge unless `Authorization` is `auth`.
    fn start_with_auth(routes: Vec<(&str, Vec<Reply>)>, auth: &'static str) -> Server {
        Server::listen(routes, None, Some(auth))
    }

    fn listen(
        routes: Vec<(&str, Vec<Reply>)>,
        tls: Option<Arc<rustls::ServerConfig>>,
        auth: Option<&'static str>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: HashMap<String, VecDeque<Reply>> = routes
            .into_iter()
            .map(|(p, r)| (p.to_string(), r.into()))
            .collect();
        let routes = Arc::new(Mutex::new(routes));
        let log = Arc::new(Mutex::new(Vec::new()));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2, is_tls) = (log.clone(), stop.clone(), tls.is_some());
        let seen = authorizations.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (routes, log, tls) = (routes.clone(), log2.clone(), tls.clone());
                let seen = seen.clone();
                std::thread::spawn(move || match tls {
                    None => {
                        let mut conn = conn;
                        serve_one(&mut conn, &routes, &log, (auth, &seen));
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                    }
                    Some(config) => {
                        let session = rustls::ServerConnection::new(config).unwrap();
                        let mut stream = rustls::StreamOwned::new(session, conn);
                        serve_one(&mut stream, &routes, &log, (auth, &seen));
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                        let _ = stream.sock.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        Server {
            port,
            tls: is_tls,
            authorizations,
            log,
            stop,
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    fn requests(&self, path: &str) -> Vec<Option<String>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, range)| range.clone())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// `auth`: the required `Authorization` and where every request's one is noted.
fn serve_one(
    s: &mut (impl Read + Write),
    routes: &Mutex<HashMap<String, VecDeque<Reply>>>,
    log: &Mutex<Vec<Logged>>,
    auth: (Option<&str>, &Mutex<Vec<Option<String>>>),
) {
    let mut line = String::new();
    let mut headers = HashMap::new();
    {
        let mut r = BufReader::new(&mut *s);
        if r.read_line(&mut line).is_err() {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let given = headers.get("authorization").cloned();
    auth.1.lock().unwrap().push(given.clone());
    if let Some(required) = auth.0
        && given.as_deref() != Some(required)
    {
        let _ = s.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"images\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = s.flush();
        return;
    }
    log.lock()
        .unwrap()
        .push((path.clone(), headers.get("range").cloned()));
    let reply = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        }
    };
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    let validators = |etag: Option<&str>| {
        etag.map(|e| format!("Accept-Ranges: bytes\r\nETag: {e}\r\n"))
            .unwrap_or_default()
    };
    let out = match reply {
        None | Some(Reply::Status(404)) => head("404 Not Found", 0, "").into_bytes(),
        Some(Reply::Status(code)) => head(&format!("{code} Scripted"), 0, "").into_bytes(),
        Some(Reply::Redirect(to)) => {
            head("302 Found", 0, &format!("Location: {to}\r\n")).into_bytes()
        }
        Some(Reply::Body { data, etag }) => {
            let start = headers
                .get("range")
                .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
                .filter(|_| etag.is_some())
                .filter(|_| headers.get("if-range").map(String::as_str) == etag);
            match start {
                Some(start) => {
                    let range = format!(
                        "Content-Range: bytes {start}-{}/{}\r\n",
                        data.len() - 1,
                        data.len()
                    );
                    let mut out = head(
                        "206 Partial Content",
                        data.len() - start,
                        &(range + &validators(etag)),
                    )
                    .into_bytes();
                    out.extend_from_slice(&data[start..]);
                    out
                }
                None => {
                    let mut out = head("200 OK", data.len(), &validators(etag)).into_bytes();
                    out.extend_from_slice(&data);
                    out
                }
            }
        }
        Some(Reply::Cut { data, after, etag }) => {
            let mut out = head("200 OK", data.len(), &validators(etag)).into_bytes();
            out.extend_from_slice(&data[..after]);
            out
        }
        Some(Reply::Stall(len)) => {
            let _ = s.write_all(head("200 OK", len, "").as_bytes());
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
    };
    let _ = s.write_all(&out);
    let _ = s.flush();
}

/// A fresh signify key pair; the public key is written to `dir/<name>.pub`.
fn keypair(dir: &Path, name: &str) -> (PathBuf, libsignify::PrivateKey) {
    let sk = libsignify::PrivateKey::generate(
        &mut rand_core::OsRng,
        libsignify::NewKeyOpts::NoEncryption,
    )
    .unwrap();
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(
        &path,
        sk.public().to_file_encoding(&format!("{name} public key")),
    )
    .unwrap();
    (path, sk)
}

fn sign(sk: &libsignify::PrivateKey, msg: &[u8]) -> Vec<u8> {
    sk.sign(msg).to_file_encoding("verify with test.pub")
}

impl Fixture {
    fn keys_dir(&self) -> PathBuf {
        let dir = self.sim.tmp.path().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn serve_signed(&self, sig: Option<Vec<u8>>) -> Server {
        let mut routes = vec![
            ("/demo_1.0.xz.skein", vec![Reply::body(&self.skein)]),
            ("/demo_1.0.xz.meta", vec![Reply::body(&self.meta)]),
            ("/demo_1.0.xz", vec![Reply::body(&self.xz)]),
        ];
        if let Some(sig) = sig {
            routes.push(("/demo_1.0.xz.skein.sig", vec![Reply::body(&sig)]));
        }
        Server::start(routes)
    }
}

impl Fixture {
    /// What an operator does on an air-gapped node: the image's files copied into the cache.
    fn seed_cache(&self) {
        std::fs::create_dir_all(&self.cfg.cache_dir).unwrap();
        for file in ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"] {
            std::fs::copy(
                self.sim.images_dir().join(file),
                self.cfg.cache_dir.join(file),
            )
            .unwrap();
        }
    }

    /// A pot `zroot/pot/jails/<name>` whose `m` is a clone of the image's newest snapshot, as a
    /// start makes it: the image is in use.
    async fn clone_pot(&self, name: &str) {
        let snap = self
            .host
            .zfs_snapshots(&format!("{DATASET}/m"))
            .await
            .unwrap()
            .pop()
            .unwrap();
        let pot = format!("zroot/pot/jails/{name}");
        self.host.zfs_create(&pot, &[]).await.unwrap();
        self.host
            .zfs_clone(
                &format!("{DATASET}/m@{snap}"),
                &format!("{pot}/m"),
                &self.cfg.jails_dir().join(name).join("m"),
            )
            .await
            .unwrap();
    }

    /// `pot destroy` of the template pot, by hand: its cache files stay.
    fn destroy_image(&self) {
        self.sim.tool_ok("zfs", &["destroy", "-r", DATASET]);
    }

    fn cached(&self, file: &str) -> PathBuf {
        self.cfg.cache_dir.join(file)
    }

    /// [`Fixture::import`], with the progress messages it sent.
    async fn import_reporting(&self, url: &str) -> (Result<Imported, EngineError>, Vec<String>) {
        let image = ImageRef::parse(url, "demo", "1.0").unwrap();
        let events = Mutex::new(Vec::new());
        let report = |msg: String| events.lock().unwrap().push(msg);
        let result = ensure_imported(&self.host, &self.locks, &self.cfg, &image, &report)
            .await
            .map(|(imported, _lock)| imported);
        (result, events.into_inner().unwrap())
    }
}

impl Server {
    fn request_count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

/// A URL nothing listens on.
fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/")
}

/// `freebsd-sim image demo 1.0` with `args` (say `--prop K=V`) into a directory of its own.
fn hostile_image(f: &Fixture, dir: &str, args: &[&str]) -> PathBuf {
    let out = f.sim.tmp.path().join(dir);
    let made = std::process::Command::new(sim_bin())
        .args(["image", "demo", "1.0"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    out
}
