//! Image import: names, the bad-input suite and network faults, on the simulated host.

use super::*;

#[test]
fn names_follow_pot() {
    let i = ImageRef::parse(
        "http://r.example/images/",
        "nginx-nomad-amd64-13_1",
        "1.1.13",
    )
    .unwrap();
    assert_eq!(i.file_name(), "nginx-nomad-amd64-13_1_1.1.13.xz");
    assert_eq!(i.local_name(), "nginx-nomad-amd64-13_1_1_1_13");
    assert_eq!(i.location("x.xz"), "http://r.example/images/x.xz");
}

#[tokio::test]
async fn starts_of_a_present_image_share_its_lock() {
    use std::time::Duration;
    let locks = ImageLocks::default();
    let a = locks.shared("demo_1_0").await;
    let b = tokio::time::timeout(Duration::from_secs(1), locks.shared("demo_1_0"))
        .await
        .expect("a second start is not held up by the first");
    assert!(
        locks.try_exclusive("demo_1_0").is_none(),
        "GC skips an image being cloned"
    );
    drop((a, b));
    let import = locks.try_exclusive("demo_1_0").expect("nobody holds it");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), locks.shared("demo_1_0"))
            .await
            .is_err(),
        "starts wait for an import"
    );
    let first = import.downgrade();
    let other = tokio::time::timeout(Duration::from_secs(1), locks.shared("demo_1_0"))
        .await
        .expect("once imported, starts share the image");
    assert!(locks.try_exclusive("demo_1_0").is_none());
    drop((first, other));
    assert_eq!(locks.active(), 0);
}

#[test]
fn rejects_unsafe_names_and_schemes() {
    for (pot, tag) in [
        ("a/b", "1"),
        ("a", "1/../x"),
        ("..", "1"),
        ("a..b", "1"),
        ("a", ".."),
        ("a b", "1"),
        ("a", "1\t"),
        ("a\n", "1"),
        ("a", "1\0"),
        ("a\0b", "1"),
        ("a", ""),
        (".", "1"),
    ] {
        assert!(matches!(
            ImageRef::parse("http://h/", pot, tag),
            Err(EngineError::InvalidInput(_))
        ));
    }
    assert!(ImageRef::parse("ftp://h/", "a", "1").is_err());
    assert!(ImageRef::parse("https://", "a", "1").is_err());
    assert!(ImageRef::parse("https://h/", "a", "1").is_ok());
    assert!(ImageRef::parse("file://relative", "a", "1").is_err());
    assert!(ImageRef::parse("file:///srv/img", "a", "1").is_ok());
}

#[test]
fn progress_at_most_once_a_second() {
    let mut m = Meter::new("nginx-nomad_1.1.13".to_string());
    let t0 = Instant::now();
    let total = Some(103_000_000);
    assert_eq!(
        m.update(t0, 0, total).as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 0% of 103 MB")
    );
    assert_eq!(
        m.update(t0 + Duration::from_millis(500), 1 << 20, total),
        None
    );
    assert_eq!(
        m.update(t0 + Duration::from_millis(1000), 46_350_000, total)
            .as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 45% of 103 MB")
    );
    // The last chunk is always reported, so the events end at 100 %.
    assert_eq!(
        m.update(t0 + Duration::from_millis(1100), 103_000_000, total)
            .as_deref(),
        Some("Downloading image nginx-nomad_1.1.13: 100% of 103 MB")
    );
    let mut m = Meter::new("x_1".to_string());
    assert_eq!(
        m.update(t0, 1500, None).as_deref(),
        Some("Downloading image x_1: 2 kB so far")
    );
}

// ---- on the simulated host ------------------------------------------------------------------

use nomad_harness::sim::{SimHost, sim_bin};
use nomad_harness::tls::{TestCert, test_ca};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

const DATASET: &str = "zroot/pot/jails/demo_1_0";

struct Fixture {
    sim: SimHost,
    cfg: super::super::EngineConfig,
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

    fn on(sim: SimHost) -> Fixture {
        let c = &sim.config;
        let s = |k: &str| Some(c[k].as_str().expect(k).to_string());
        let p = |k: &str| s(k).map(PathBuf::from);
        let o = super::super::Overrides {
            tool_path: s("tool_path"),
            zfs_root: s("zfs_root"),
            fs_root: p("fs_root"),
            cache_dir: p("cache_dir"),
            tmp_dir: p("tmp_dir"),
            state_dir: p("state_dir"),
            lock_file: p("lock_file"),
            pot_conf_dir: p("pot_conf_dir"),
            ..Default::default()
        };
        let mut cfg = super::super::EngineConfig::resolve(&o).unwrap();
        // The host's image dir, its cache and the test's export dirs.
        cfg.allowed_image_dirs = vec![sim.tmp.path().to_path_buf()];
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

#[tokio::test(flavor = "multi_thread")]
async fn imports_over_http_into_zfs_and_the_cache() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let imported = f.import(&server.url()).await.unwrap();
    assert_eq!(imported.dataset, DATASET);
    f.assert_imported().await;
    // Reused, not fetched again.
    f.import(&server.url()).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.sim.assert_clean("after imports");
}

#[test]
fn file_images_come_only_from_allowed_dirs_and_refusals_reveal_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("images");
    let outside = tmp.path().join("secret");
    std::fs::create_dir_all(allowed.join("team")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let check = |dir: &Path, allow: &[PathBuf]| {
        ImageRef::parse(&format!("file://{}", dir.display()), "demo", "1.0")
            .unwrap()
            .check_source(allow)
    };
    let ok = [allowed.clone()];
    check(&allowed, &ok).unwrap();
    check(&allowed.join("team"), &ok).unwrap();
    let refusal = |dir: &Path| {
        let msg = check(dir, &ok).unwrap_err().to_string();
        assert!(
            msg.contains("allowed_image_dirs"),
            "{}: {msg}",
            dir.display()
        );
        msg.replace(&dir.display().to_string(), "DIR")
    };
    // Outside, existing or not, through `..` or a symlink: one answer, the path aside.
    let answer = refusal(&outside);
    for dir in [
        tmp.path().join("no-such-dir"),
        allowed.join("../secret"),
        allowed.join("link"),
        PathBuf::from("/etc"),
    ] {
        assert_eq!(refusal(&dir), answer, "{}", dir.display());
    }
    // No allowed dir: no file:// image at all; http(s) is not concerned.
    assert!(check(&allowed, &[]).is_err());
    ImageRef::parse("http://h/x", "demo", "1.0")
        .unwrap()
        .check_source(&[])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_from_file_urls() {
    let f = Fixture::new();
    let dir = f.sim.images_dir();
    f.import(&format!("file://{}", dir.display()))
        .await
        .unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_404_names_the_file_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(404)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: HTTP 404 Not Found"), "{msg}");
    assert!(!e.is_transient(), "a 404 is permanent: {msg}");
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1, "no retry on 404");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_500_is_transient_after_retries_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(500)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: HTTP 500"), "{msg}");
    assert!(e.is_transient(), "{msg}");
    assert_eq!(
        server.requests("/demo_1.0.xz").len(),
        3,
        "one try per attempt"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_503_then_200_succeeds() {
    let f = Fixture::new();
    let server = f.serve(vec![Reply::Status(503), Reply::body(&f.xz.clone())]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(server.requests("/demo_1.0.xz").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_body_without_range_support_fails_and_leaves_nothing() {
    let f = Fixture::new();
    let half = f.xz.len() / 2;
    let server = f.serve(vec![Reply::Cut {
        data: f.xz.clone(),
        after: half,
        etag: None,
    }]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz"), "{msg}");
    assert!(
        e.is_transient(),
        "a cut connection is worth retrying: {msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_download_resumes_with_range() {
    let f = Fixture::new();
    let server = f.serve(vec![
        Reply::Cut {
            data: f.xz.clone(),
            after: f.xz.len() / 3,
            etag: Some("\"v1\""),
        },
        Reply::Body {
            data: f.xz.clone(),
            etag: Some("\"v1\""),
        },
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some(format!("bytes={}-", f.xz.len() / 3))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn object_changed_during_resume_starts_over() {
    let f = Fixture::new();
    let server = f.serve(vec![
        Reply::Cut {
            data: f.xz.clone(),
            after: 100,
            etag: Some("\"v1\""),
        },
        Reply::Body {
            data: f.xz.clone(),
            etag: Some("\"v2\""),
        },
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    // The If-Range of the resume did not match: a full answer, dropped, then a fresh import.
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some("bytes=100-".to_string()), None]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_download_times_out_as_transient() {
    let mut f = Fixture::new();
    f.cfg.image.idle_timeout = Duration::from_millis(300);
    f.cfg.image.attempts = 1;
    let server = f.serve(vec![Reply::Stall(f.xz.len())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz: no data for 300ms"), "{msg}");
    assert!(e.is_transient());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_transient() {
    let mut f = Fixture::new();
    f.cfg.image.attempts = 1;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = f.import_err(&format!("http://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein") && msg.contains("onnection refused"),
        "{msg}"
    );
    assert!(e.is_transient());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_xz_with_matching_hash_fails_in_the_decoder() {
    let mut f = Fixture::new();
    let mut xz = f.xz.clone();
    let mid = xz.len() / 2;
    for b in &mut xz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    f.skein = skein_hex(&[&xz, &f.meta]);
    let server = f.serve(vec![Reply::body(&xz)]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("demo_1.0.xz: corrupt xz stream"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_skein_fails_after_the_stream_and_leaves_nothing() {
    let mut f = Fixture::new();
    f.skein = skein_hex(&[b"something else"]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein does not match")
            && msg.contains("demo_1.0.xz and its .meta"),
        "{msg}"
    );
    assert!(!e.is_transient());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_meta_fails_the_hash() {
    let mut f = Fixture::new();
    f.meta = b"-\n\n".to_vec();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("does not match"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_malformed_skein_fails_before_the_download() {
    let f = Fixture::new();
    let server = Server::start(vec![("/demo_1.0.xz", vec![Reply::body(&f.xz)])]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("demo_1.0.xz.skein not found"), "{msg}");
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
    let server = Server::start(vec![
        ("/demo_1.0.xz.skein", vec![Reply::body(b"abc\n")]),
        ("/demo_1.0.xz", vec![Reply::body(&f.xz)]),
    ]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("is not a Skein-1024 hash"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_to_other_schemes_are_refused() {
    let f = Fixture::new();
    let images = f.sim.images_dir();
    for target in [
        format!("file://{}/demo_1.0.xz", images.display()),
        "https://127.0.0.1/demo_1.0.xz".to_string(),
    ] {
        let server = f.serve(vec![Reply::Redirect(target.clone())]);
        let e = f.import_err(&server.url()).await;
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("redirect to {target:?} refused")),
            "{msg}"
        );
        assert!(!e.is_transient());
        f.assert_nothing_left().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_scheme_redirects_are_followed() {
    let f = Fixture::new();
    let server = Server::start(vec![
        (
            "/demo_1.0.xz.skein",
            vec![Reply::Redirect("/mirror/s".into())],
        ),
        ("/mirror/s", vec![Reply::body(&f.skein)]),
        ("/demo_1.0.xz.meta", vec![Reply::body(&f.meta)]),
        ("/demo_1.0.xz", vec![Reply::Redirect("mirror/x".into())]),
        ("/mirror/x", vec![Reply::body(&f.xz)]),
    ]);
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_expanding_beyond_the_cap_is_refused() {
    let mut f = Fixture::new();
    let dir = f.sim.tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(sim_bin())
        .args(["image", "demo", "1.0"])
        .arg(&dir)
        .args(["--filler-mb", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let xz = std::fs::read(dir.join("demo_1.0.xz")).unwrap();
    f.meta = std::fs::read(dir.join("demo_1.0.xz.meta")).unwrap();
    f.skein = std::fs::read(dir.join("demo_1.0.xz.skein")).unwrap();
    // Above the compressed size, well below the 4 MiB of filler it expands to.
    f.cfg.image.max_size = xz.len() as u64 * 5 / 4;
    assert!(
        f.cfg.image.max_size < 3 << 20,
        "filler compressed to {} bytes",
        xz.len()
    );
    let server = f.serve(vec![Reply::body(&xz)]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz expands to more than image_max_size"),
        "{msg}"
    );
    f.assert_nothing_left().await;
    // The compressed download itself is capped too, before anything is received.
    f.cfg.image.max_size = xz.len() as u64 - 1;
    let e = f.import_err(&server.url()).await;
    assert!(e.to_string().contains("is more than image_max_size"), "{e}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn layered_images_are_refused_clearly() {
    let mut f = Fixture::new();
    f.meta = b"base:13.2@1700000000\n".to_vec();
    f.skein = skein_hex(&[&f.xz, &f.meta]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(
        msg.contains("layered image (origin base:13.2@1700000000)"),
        "{msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_imports_of_one_image_share_one_download() {
    let f = Arc::new(Fixture::new());
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let url = server.url();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (f, url) = (f.clone(), url.clone());
            tokio::spawn(async move { f.import(&url).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.assert_imported().await;
}

// ---- https:// -------------------------------------------------------------------------------

impl Fixture {
    /// Trusts the test CA through `image_ca_file`.
    fn trusting_test_ca() -> Fixture {
        let mut f = Fixture::new();
        f.cfg.image.ca_file = Some(test_ca());
        f
    }
}

/// A TCP server on 127.0.0.1 that answers every connection with `answer` (nothing: a reset)
/// without reading it, for handshakes that go wrong.
fn raw_server(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(answer);
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_over_https_with_a_private_ca() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    assert!(server.url().starts_with("https://"));
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    f.sim.assert_clean("after an https import");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_refused_at_once_and_leaves_nothing() {
    let f = Fixture::new();
    let server = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate is not trusted (invalid peer certificate: UnknownIssuer); trusted: the system trust store (",
            server.url()
        )) && msg.ends_with("; set image_ca_file for a private CA"),
        "{msg}"
    );
    assert!(
        !e.is_transient(),
        "retrying meets the same certificate: {msg}"
    );
    assert!(
        server.requests("/demo_1.0.xz.skein").is_empty(),
        "no request crosses a refused handshake"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_for_another_host_is_refused() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::OtherHost, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate is for another host (",
            server.url()
        )) && msg.contains("images.example.org"),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_certificate_is_refused() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(TestCert::Expired, vec![Reply::body(&f.xz.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "GET {}demo_1.0.xz.skein: the server's certificate was rejected (invalid peer certificate: certificate expired",
            server.url()
        )),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_tls_fails_the_handshake_permanently() {
    let f = Fixture::trusting_test_ca();
    let port = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let e = f.import_err(&format!("https://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein: TLS handshake failed ("),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_during_the_handshake_is_transient() {
    let mut f = Fixture::trusting_test_ca();
    f.cfg.image.attempts = 1;
    let port = raw_server(b"");
    let e = f.import_err(&format!("https://127.0.0.1:{port}/")).await;
    let msg = e.to_string();
    assert!(msg.contains("demo_1.0.xz.skein: "), "{msg}");
    assert!(!msg.contains("TLS handshake failed"), "{msg}");
    assert!(
        e.is_transient(),
        "a cut connection is worth retrying: {msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_to_http_redirect_is_refused_as_a_downgrade() {
    let f = Fixture::trusting_test_ca();
    let plain = f.serve(vec![Reply::body(&f.xz.clone())]);
    let target = format!("{}demo_1.0.xz", plain.url());
    let server = f.serve_https(TestCert::Localhost, vec![Reply::Redirect(target.clone())]);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "redirect to {target:?} refused: a downgrade from https:// to http://"
        )),
        "{msg}"
    );
    assert!(!e.is_transient(), "{msg}");
    assert!(plain.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_redirects_within_https_are_followed() {
    let f = Fixture::trusting_test_ca();
    let mirror = f.serve_https(TestCert::Localhost, vec![Reply::body(&f.xz.clone())]);
    let server = f.serve_https(
        TestCert::Localhost,
        vec![Reply::Redirect(format!("{}demo_1.0.xz", mirror.url()))],
    );
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(mirror.requests("/demo_1.0.xz").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_https_download_resumes_with_range() {
    let f = Fixture::trusting_test_ca();
    let server = f.serve_https(
        TestCert::Localhost,
        vec![
            Reply::Cut {
                data: f.xz.clone(),
                after: f.xz.len() / 3,
                etag: Some("\"v1\""),
            },
            Reply::Body {
                data: f.xz.clone(),
                etag: Some("\"v1\""),
            },
        ],
    );
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
    assert_eq!(
        server.requests("/demo_1.0.xz"),
        [None, Some(format!("bytes={}-", f.xz.len() / 3))]
    );
}

// ---- signatures -----------------------------------------------------------------------------

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

#[tokio::test(flavor = "multi_thread")]
async fn signed_image_verifies_with_a_configured_key() {
    let mut f = Fixture::new();
    let (other, _) = keypair(&f.keys_dir(), "other");
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![other, key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&sk, &f.skein)));
    f.import(&server.url()).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());
    assert!(
        f.cache_files()
            .contains(&"demo_1.0.xz.skein.sig".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signature_fails_before_the_download_and_leaves_nothing() {
    let mut f = Fixture::new();
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&sk, b"a different .skein")));
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains("demo_1.0.xz.skein.sig: bad signature of demo_1.0.xz.skein"),
        "{msg}"
    );
    assert!(!e.is_transient());
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_by_an_unknown_key_is_refused() {
    let mut f = Fixture::new();
    let (key, _) = keypair(&f.keys_dir(), "release");
    let (_, stranger) = keypair(&f.keys_dir(), "stranger");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(Some(sign(&stranger, &f.skein)));
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(
        msg.contains("which is not among the configured public keys"),
        "{msg}"
    );
    f.assert_nothing_left().await;
    let server = f.serve_signed(Some(b"untrusted comment: x\nnot base64\n".to_vec()));
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("not a signify signature"), "{msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_image_fails_only_when_signatures_are_required() {
    let mut f = Fixture::new();
    let (key, _) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let server = f.serve_signed(None);
    let e = f.import_err(&server.url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(
            "demo_1.0.xz.skein.sig not found: the image is unsigned and require_signature is set"
        ),
        "{msg}"
    );
    assert!(server.requests("/demo_1.0.xz").is_empty());
    f.assert_nothing_left().await;
    f.cfg.image.require_signature = false;
    f.import(&server.url()).await.unwrap();
    f.assert_imported().await;
}

// ---- imports from the cache -----------------------------------------------------------------

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

#[tokio::test(flavor = "multi_thread")]
async fn destroyed_image_is_reimported_from_the_cache_without_a_download() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let url = server.url();
    f.import(&url).await.unwrap();
    let stat = |file| std::fs::metadata(f.cached(file)).unwrap();
    let before = stat("demo_1.0.xz");
    let served = server.request_count();

    f.destroy_image();
    let (result, events) = f.import_reporting(&server.url()).await;
    assert_eq!(result.unwrap().dataset, DATASET);
    assert_eq!(
        server.request_count(),
        served,
        "nothing asked of the server"
    );
    assert_eq!(
        events,
        [
            "Importing image demo_1.0 from the cache",
            "Imported image demo_1.0"
        ]
    );
    f.assert_imported().await;
    let after = stat("demo_1.0.xz");
    assert_eq!(
        (after.ino(), after.mtime_nsec(), after.mtime()),
        (before.ino(), before.mtime_nsec(), before.mtime()),
        "the cached .xz was not rewritten"
    );

    // And with the server gone.
    f.destroy_image();
    drop(server);
    f.import(&url).await.unwrap();
    f.assert_imported().await;
    f.sim.assert_clean("after imports from the cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_seeded_cache_imports_with_an_unreachable_url() {
    let f = Fixture::new();
    f.seed_cache();
    f.import(&refused_url()).await.unwrap();
    f.assert_imported().await;

    // No .meta is an empty one, as pot has it.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.meta")).unwrap();
    std::fs::write(f.cached("demo_1.0.xz.skein"), skein_hex(&[&f.xz])).unwrap();
    f.import(&refused_url()).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());
    assert_eq!(f.cache_files(), ["demo_1.0.xz", "demo_1.0.xz.skein"]);
    f.sim.assert_clean("after imports from a seeded cache");
}

/// Flips one byte in the middle of the cached `.xz`.
fn corrupt(path: &Path) {
    let mut xz = std::fs::read(path).unwrap();
    let mid = xz.len() / 2;
    xz[mid] ^= 0x01;
    std::fs::write(path, xz).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_cached_xz_is_replaced_by_a_download() {
    let f = Fixture::new();
    f.seed_cache();
    corrupt(&f.cached("demo_1.0.xz"));
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let (result, events) = f.import_reporting(&server.url()).await;
    result.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    assert_eq!(events[0], "Importing image demo_1.0 from the cache");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Downloading image demo_1.0: ")),
        "{events:?}"
    );
    // assert_imported compares the cached .xz with the served one.
    f.assert_imported().await;
    f.sim.assert_clean("after a fallback to the URL");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_cache_and_unreachable_url_say_both_and_leave_nothing() {
    let f = Fixture::new();
    f.seed_cache();
    corrupt(&f.cached("demo_1.0.xz"));
    let e = f.import_err(&refused_url()).await;
    let msg = e.to_string();
    let cached_xz = f.cached("demo_1.0.xz").display().to_string();
    assert!(msg.contains("onnection refused"), "{msg}");
    assert!(
        msg.contains(&format!("the cached copy was not used: {cached_xz}")),
        "{msg}"
    );
    assert!(
        msg.contains("corrupt xz stream") || msg.contains("does not match"),
        "{msg}"
    );
    assert!(e.is_transient(), "the URL may come back: {msg}");
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receive_of_a_good_cached_image_keeps_the_cache() {
    let f = Fixture::new();
    f.seed_cache();
    f.sim.fault(&[
        "zfs",
        "--word",
        "receive",
        "--fail",
        "1",
        "--stderr",
        "cannot receive: out of space",
    ]);
    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let msg = f.import_err(&server.url()).await.to_string();
    assert!(msg.contains("out of space"), "{msg}");
    assert_eq!(
        server.request_count(),
        0,
        "a download would meet the same host"
    );
    assert_eq!(
        f.cache_files(),
        ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"]
    );
    f.sim.clear_faults();
    f.import(&refused_url()).await.unwrap();
    f.assert_imported().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn required_signature_is_required_of_the_cache_too() {
    let mut f = Fixture::new();
    let (key, sk) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let sig = sign(&sk, &f.skein);

    // Unsigned in the cache: fetched again, with the signature the server has.
    f.seed_cache();
    let server = f.serve_signed(Some(sig.clone()));
    let url = server.url();
    f.import(&url).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);
    assert_eq!(
        std::fs::read(f.cached("demo_1.0.xz.skein.sig")).unwrap(),
        sig
    );

    // Signed in the cache: verified there, no network.
    f.destroy_image();
    drop(server);
    f.import(&url).await.unwrap();
    assert!(f.host.zfs_exists(DATASET).await.unwrap());

    // A signature by another key in files an operator put in the cache is no better than none.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.source")).unwrap();
    let (_, stranger) = keypair(&f.keys_dir(), "stranger");
    std::fs::write(f.cached("demo_1.0.xz.skein.sig"), sign(&stranger, &f.skein)).unwrap();
    let server = f.serve_signed(Some(sig));
    f.import(&server.url()).await.unwrap();
    assert_eq!(server.requests("/demo_1.0.xz").len(), 1);

    // Unsigned in the cache, and nowhere to fetch a signature from.
    f.destroy_image();
    std::fs::remove_file(f.cached("demo_1.0.xz.skein.sig")).unwrap();
    std::fs::remove_file(f.cached("demo_1.0.xz.source")).unwrap();
    let e = f.import_err(&refused_url()).await;
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "the cached copy was not used: {} not found: the image is unsigned and require_signature is set",
            f.cached("demo_1.0.xz.skein.sig").display()
        )),
        "{msg}"
    );
    f.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_image_in_the_cache_dir_is_read_in_place_and_never_removed() {
    let f = Fixture::new();
    f.seed_cache();
    let url = format!("file://{}", f.cfg.cache_dir.display());
    f.import(&url).await.unwrap();
    f.assert_imported().await;

    f.destroy_image();
    corrupt(&f.cached("demo_1.0.xz"));
    let corrupted = std::fs::read(f.cached("demo_1.0.xz")).unwrap();
    let msg = f.import_err(&url).await.to_string();
    assert!(
        msg.contains(&format!("file://{}", f.cached("demo_1.0.xz").display())),
        "{msg}"
    );
    assert!(
        !msg.contains("cached copy"),
        "one source, tried once: {msg}"
    );
    assert_eq!(
        f.cache_files(),
        ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"],
        "the image's own files are not removed"
    );
    assert_eq!(std::fs::read(f.cached("demo_1.0.xz")).unwrap(), corrupted);
    assert!(!f.host.zfs_exists(DATASET).await.unwrap());
    assert_eq!(f.locks.active(), 0);
}

// ---- cache GC -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_unused_images_oldest_first_and_keeps_used_ones() {
    let f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    let dir = f.sim.images_dir();
    let url = format!("file://{}", dir.display());
    for tag in ["1.0", "2.0", "3.0"] {
        f.sim.image("demo", tag);
        let image = ImageRef::parse(&url, "demo", tag).unwrap();
        ensure_imported(&f.host, &engine.images, &f.cfg, &image, &|_| {})
            .await
            .unwrap();
        // Import stamps have millisecond resolution: keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A pot cloned from the oldest image uses it.
    let snap = f
        .host
        .zfs_snapshots(&format!("{DATASET}/m"))
        .await
        .unwrap()
        .pop()
        .unwrap();
    f.host
        .zfs_create("zroot/pot/jails/user", &[])
        .await
        .unwrap();
    f.host
        .zfs_clone(
            &format!("{DATASET}/m@{snap}"),
            "zroot/pot/jails/user/m",
            &f.cfg.jails_dir().join("user/m"),
        )
        .await
        .unwrap();
    // Not imported by the driver: never a candidate.
    f.host
        .zfs_create("zroot/pot/jails/handmade", &[])
        .await
        .unwrap();

    let dry = engine.gc_images(1, true).await.unwrap();
    assert_eq!(dry.removed, ["demo_2_0", "demo_3_0"]);
    assert_eq!(dry.kept, ["demo_1_0"]);
    assert!(f.host.zfs_exists("zroot/pot/jails/demo_2_0").await.unwrap());

    let report = engine.gc_images(2, false).await.unwrap();
    assert_eq!(report.removed, ["demo_2_0"]);
    assert_eq!(report.kept, ["demo_1_0", "demo_3_0"]);
    assert!(!f.host.zfs_exists("zroot/pot/jails/demo_2_0").await.unwrap());
    assert!(f.host.zfs_exists("zroot/pot/jails/handmade").await.unwrap());
    assert!(
        !f.cache_files().iter().any(|n| n.starts_with("demo_2.0")),
        "{:?}",
        f.cache_files()
    );
    assert!(f.cache_files().contains(&"demo_3.0.xz".to_string()));

    // An image whose lock is held (an import or clone under way) is skipped.
    let _busy = engine.images.shared("demo_3_0").await;
    let report = engine.gc_images(0, false).await.unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept, ["demo_1_0", "demo_3_0"]);
}

// ---- export ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn export_round_trips_through_a_signed_import() {
    let mut f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    let out = f.sim.tmp.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    let (pubkey, sk) = keypair(&f.keys_dir(), "release");
    let seckey = f.keys_dir().join("release.sec");
    std::fs::write(&seckey, sk.to_file_encoding("release secret key")).unwrap();
    let exported = engine
        .export(&ExportOptions {
            pot: "demo_1_0".into(),
            tag: Some("2.0".into()),
            dir: out.clone(),
            level: 1,
            seckey: Some(seckey),
        })
        .await
        .unwrap();
    assert_eq!(exported.xz, out.join("demo_1_0_2.0.xz"));
    assert_eq!(exported.tag, "2.0");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "demo_1_0_2.0.xz",
            "demo_1_0_2.0.xz.meta",
            "demo_1_0_2.0.xz.skein",
            "demo_1_0_2.0.xz.skein.sig"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("demo_1_0_2.0.xz.meta")).unwrap(),
        b"-\n"
    );
    let sig = std::fs::read_to_string(out.join("demo_1_0_2.0.xz.skein.sig")).unwrap();
    assert!(
        sig.starts_with("untrusted comment: verify with release.pub\n"),
        "{sig}"
    );

    // What pot's import does with it: verify, receive, and the pot's files are the same.
    f.cfg.image.pubkeys = vec![pubkey];
    f.cfg.image.require_signature = true;
    let image = ImageRef::parse(&format!("file://{}", out.display()), "demo_1_0", "2.0").unwrap();
    ensure_imported(&f.host, &f.locks, &f.cfg, &image, &|_| {})
        .await
        .unwrap();
    let read =
        |pot: &str, file: &str| std::fs::read(f.cfg.jails_dir().join(pot).join(file)).unwrap();
    for file in ["conf/pot.conf", "m/etc/passwd"] {
        assert_eq!(read("demo_1_0", file), read("demo_1_0_2_0", file), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_refuses_what_pot_refuses_and_leaves_no_files() {
    let f = Fixture::new();
    let engine = crate::engine::Engine::new(f.cfg.clone(), Arc::new(|_, _| {}));
    let out = f.sim.tmp.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    let options = |pot: &str| ExportOptions {
        pot: pot.into(),
        tag: None,
        dir: out.clone(),
        level: 6,
        seckey: None,
    };
    let e = engine.export(&options("nope")).await.unwrap_err();
    assert!(matches!(e, EngineError::NotFound { .. }), "{e}");
    let e = engine.export(&options("../x")).await.unwrap_err();
    assert!(matches!(e, EngineError::InvalidInput(_)), "{e}");
    f.host
        .zfs_create("zroot/pot/jails/bare", &[])
        .await
        .unwrap();
    let e = engine
        .export(&options("bare"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 0 snapshots; exactly one is needed"), "{e}");
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    let snap = f
        .host
        .zfs_snapshots(&format!("{DATASET}/m"))
        .await
        .unwrap()
        .pop()
        .unwrap();
    f.host
        .zfs_create("zroot/pot/jails/user", &[])
        .await
        .unwrap();
    f.host
        .zfs_clone(
            &format!("{DATASET}/m@{snap}"),
            "zroot/pot/jails/user/m",
            &f.cfg.jails_dir().join("user/m"),
        )
        .await
        .unwrap();
    let e = engine
        .export(&options("user"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zroot/pot/jails/user/m is a clone of") && e.contains("layered"),
        "{e}"
    );
    let mut bad_key = options("demo_1_0");
    bad_key.seckey = Some(f.sim.tmp.path().join("missing.sec"));
    let e = engine.export(&bad_key).await.unwrap_err().to_string();
    assert!(e.contains("missing.sec"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "files left");
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

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_received_where_pot_keeps_it_whatever_its_stream_says() {
    let f = Fixture::new();
    let dir = hostile_image(
        &f,
        "hostile",
        &[
            "--prop",
            "mountpoint=/anywhere",
            "--m-prop",
            "canmount=off",
            "--m-prop",
            "sharenfs=on",
        ],
    );
    f.import(&format!("file://{}", dir.display()))
        .await
        .unwrap();
    let pot = f.cfg.jails_dir().join("demo_1_0");
    let state = f.host.zfs_mount_state(DATASET).await.unwrap();
    let shown: Vec<(String, String, bool)> = state
        .iter()
        .map(|d| (d.mountpoint.clone(), d.canmount.clone(), d.mounted))
        .collect();
    assert_eq!(
        shown,
        [
            (pot.display().to_string(), "on".to_string(), true),
            (pot.join("m").display().to_string(), "on".to_string(), true),
        ]
    );
    assert!(pot.join("conf/pot.conf").is_file() && pot.join("m/etc/sim-image").is_file());
    assert!(!f.sim.dir.join("root/anywhere").exists());
    f.sim
        .assert_clean("after importing an image that names its own mountpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_an_encrypted_zfs_root_an_image_inherits_its_encryption() {
    let f = Fixture::on(SimHost::create_with(&["--encrypted"]));
    f.import(&format!("file://{}", f.sim.images_dir().display()))
        .await
        .unwrap();
    for ds in [DATASET.to_string(), format!("{DATASET}/m")] {
        assert_eq!(
            f.host.zfs_get(&ds, "encryption").await.unwrap(),
            "aes-256-gcm",
            "{ds} was received unencrypted"
        );
    }
    f.sim
        .assert_clean("after an import under an encrypted zfs_root");
}

// ---- which image a request gets -------------------------------------------------------------

impl Fixture {
    async fn import_of(&self, url: &str, tag: &str) -> Imported {
        let image = ImageRef::parse(url, "demo", tag).unwrap();
        ensure_imported(&self.host, &self.locks, &self.cfg, &image, &|_| {})
            .await
            .map(|(imported, _lock)| imported)
            .unwrap()
    }

    /// Whether the image in `dataset` is the one with filler data (another job's).
    fn has_filler(&self, dataset: &str) -> bool {
        let local = dataset.rsplit('/').next().unwrap();
        self.cfg
            .jails_dir()
            .join(local)
            .join("m/var/filler")
            .exists()
    }

    fn recorded(&self, dataset: &str, prop: &str) -> String {
        self.sim
            .tool_ok("zfs", &["get", "-H", "-o", "value", prop, dataset])
            .trim()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_never_gets_an_image_another_source_imported_under_its_name() {
    let f = Fixture::new();
    // Another job's demo:1.0, from its own directory: different bytes.
    let other = hostile_image(&f, "other", &["--filler-mb", "1"]);
    let other_url = format!("file://{}", other.display());
    let theirs = f.import_of(&other_url, "1.0").await;
    assert_eq!(theirs.dataset, DATASET, "the first import takes pot's name");
    assert!(f.has_filler(&theirs.dataset));
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:source"),
        format!("{other_url}/demo_1.0.xz")
    );
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:skein"),
        String::from_utf8(std::fs::read(other.join("demo_1.0.xz.skein")).unwrap())
            .unwrap()
            .trim()
    );
    assert_eq!(
        f.recorded(DATASET, "nomad-pot-driver:signature"),
        "unsigned"
    );

    let url = format!("file://{}", f.sim.images_dir().display());
    let ours = f.import_of(&url, "1.0").await;
    assert_ne!(ours.dataset, DATASET, "imported again, into its own name");
    assert!(ours.dataset.starts_with(&format!("{DATASET}_")));
    assert!(!f.has_filler(&ours.dataset));
    assert_eq!(f.import_of(&url, "1.0").await, ours, "then reused");
    assert_eq!(f.import_of(&other_url, "1.0").await, theirs);

    // Tag 1_0 is pot's demo_1_0 too, but not the same image.
    f.sim.image("demo", "1_0");
    let underscore = f.import_of(&url, "1_0").await;
    assert!(underscore.dataset != theirs.dataset && underscore.dataset != ours.dataset);
    f.sim.assert_clean("after three images of one pot name");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_sources_download_in_the_cache_is_not_imported_for_a_request() {
    let f = Fixture::new();
    let other = hostile_image(&f, "other", &["--filler-mb", "1"]);
    let read = |file: &str| std::fs::read(other.join(file)).unwrap();
    let theirs = Server::start(vec![
        (
            "/demo_1.0.xz.skein",
            vec![Reply::body(&read("demo_1.0.xz.skein"))],
        ),
        (
            "/demo_1.0.xz.meta",
            vec![Reply::body(&read("demo_1.0.xz.meta"))],
        ),
        ("/demo_1.0.xz", vec![Reply::body(&read("demo_1.0.xz"))]),
    ]);
    f.import_of(&theirs.url(), "1.0").await;
    assert!(f.cached("demo_1.0.xz").exists(), "their download is cached");

    let server = f.serve(vec![Reply::body(&f.xz.clone())]);
    let ours = f.import_of(&server.url(), "1.0").await;
    assert_eq!(
        server.requests("/demo_1.0.xz").len(),
        1,
        "downloaded from the URL the request names"
    );
    assert!(!f.has_filler(&ours.dataset));
    assert_eq!(
        std::fs::read(f.cached("demo_1.0.xz")).unwrap(),
        read("demo_1.0.xz"),
        "the other source's cached files stay as they were"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_image_is_not_reused_once_signatures_are_required() {
    let mut f = Fixture::new();
    let url = format!("file://{}", f.sim.images_dir().display());
    f.import_of(&url, "1.0").await;
    let (key, _) = keypair(&f.keys_dir(), "release");
    f.cfg.image.pubkeys = vec![key];
    f.cfg.image.require_signature = true;
    let msg = f.import_err(&url).await.to_string();
    assert!(
        msg.contains(&format!(
            "{DATASET} holds this image from {url}/demo_1.0.xz, but it was imported unsigned and require_signature is set now"
        )),
        "{msg}"
    );
    assert_eq!(f.locks.active(), 0);
}

#[test]
fn url_credentials_are_kept_apart_and_never_shown() {
    let i = ImageRef::parse(
        "http://alice:s3cr%40t@r.example:8080/images/",
        "demo",
        "1.0",
    )
    .unwrap();
    assert_eq!(i.location("x.xz"), "http://r.example:8080/images/x.xz");
    assert_eq!(i.base_url(), "http://r.example:8080/images");
    assert_eq!(i.source(), "http://r.example:8080/images/demo_1.0.xz");
    assert!(!format!("{i:?}").contains("s3cr"), "{i:?}");
    let on = |u: &str| {
        i.credentials_for(&u.parse().unwrap())
            .map(Credentials::basic)
    };
    // base64("alice:s3cr@t")
    let basic = Some("Basic YWxpY2U6czNjckB0".to_string());
    assert_eq!(on("http://r.example:8080/images/x.xz"), basic);
    assert_eq!(on("http://mirror.example/images/x.xz"), None);
    assert_eq!(on("http://r.example/images/x.xz"), None);
    for bad in ["http://alice:pw0rd@/x", "ftp://alice:pw0rd@h/x"] {
        let e = ImageRef::parse(bad, "demo", "1.0").unwrap_err().to_string();
        assert!(!e.contains("pw0rd") && e.contains("***@"), "{e}");
    }
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_the_url_is_sent_when_the_server_asks() {
    let f = Fixture::new();
    let basic = "Basic YWxpY2U6czNjcmV0";
    let server = Server::start_with_auth(f.routes(vec![Reply::body(&f.xz)]), basic);
    let with = |password: &str| {
        server
            .url()
            .replacen("://", &format!("://alice:{password}@"), 1)
    };
    let e = f.import_err(&with("wrong")).await.to_string();
    assert!(e.contains("401") && !e.contains("wrong"), "{e}");
    f.assert_nothing_left().await;
    f.import(&with("s3cret")).await.unwrap();
    f.assert_imported().await;
    // As fetch(3): the first request of each file goes without, the retry with the password.
    let seen = server.authorizations.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&None));
    assert!(seen.contains(&Some(basic.to_string())), "{seen:?}");
}
