//! A GET-only HTTP/1.1 file server on 127.0.0.1, the image server of `potctl demo` and of the
//! tests: in the clear, or over TLS with a certificate the caller brings, and optionally only to
//! a client with the right `Authorization`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The server could not listen.
#[derive(Debug, thiserror::Error)]
#[error("file server for {}: listening on 127.0.0.1: {source}", dir.display())]
pub struct ServeError {
    pub dir: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Serves one directory on 127.0.0.1:<port> until dropped.
pub struct FileServer {
    pub port: u16,
    tls: bool,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

fn lock(requests: &Mutex<Vec<String>>) -> MutexGuard<'_, Vec<String>> {
    requests.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `root` joined with the request path, unless the path leaves `root`.
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
    lock(requests).push(target.clone());
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
        .and_then(|p| std::fs::File::open(p).ok())
    {
        Some(mut file) => {
            let Ok(len) = file.metadata().map(|m| m.len()) else {
                return;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            );
            // Over plain TCP std copies with sendfile(2): the file never passes through here.
            let _ = s.write_all(head.as_bytes());
            let _ = io::copy(&mut file, s);
            let _ = s.flush();
        }
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
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
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
    /// Serves `dir` over plain HTTP.
    pub fn serve(dir: &Path) -> Result<FileServer, ServeError> {
        FileServer::start(dir, None, None)
    }

    /// Serves `dir` over TLS with `config`'s certificate.
    pub fn serve_tls(
        dir: &Path,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<FileServer, ServeError> {
        FileServer::start(dir, Some(config), None)
    }

    /// Serves `dir` over plain HTTP, answering 401 with a Basic challenge to a request without
    /// `Authorization: <authorization>` (say `Basic YWxp…`).
    pub fn serve_with_auth(
        dir: &Path,
        authorization: &'static str,
    ) -> Result<FileServer, ServeError> {
        FileServer::start(dir, None, Some(authorization))
    }

    fn start(
        dir: &Path,
        tls: Option<Arc<rustls::ServerConfig>>,
        auth: Option<&'static str>,
    ) -> Result<FileServer, ServeError> {
        let err = |source| ServeError {
            dir: dir.to_path_buf(),
            source,
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let port = listener.local_addr().map_err(err)?.port();
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
        Ok(FileServer {
            port,
            tls: is_tls,
            requests,
            stop,
        })
    }

    /// `http://127.0.0.1:<port>/`, or `https://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// Request targets seen so far (e.g. `/demo_1.0.xz`).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_root() {
        let root = Path::new("/srv/images");
        assert_eq!(
            safe_join(root, "/demo_1.0.xz?x=1"),
            Some(root.join("demo_1.0.xz"))
        );
        assert_eq!(safe_join(root, "/../etc/passwd"), None);
        assert_eq!(safe_join(root, "/a/./b"), Some(root.join("a/b")));
    }

    #[test]
    fn serves_files_and_refuses_other_methods() {
        let dir =
            std::env::temp_dir().join(format!("nomad-pot-client-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        let server = FileServer::serve(&dir).unwrap();
        let get = |request: &str| {
            let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            conn.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            conn.read_to_string(&mut response).unwrap();
            response
        };
        let ok = get("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nhello"), "{ok}");
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get("PUT /a.txt HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert_eq!(server.requests(), ["/a.txt", "/nope", "/a.txt"]);
        assert_eq!(server.url(), format!("http://127.0.0.1:{}/", server.port));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_auth_server_serves_only_the_right_authorization() {
        let dir = std::env::temp_dir().join(format!(
            "nomad-pot-client-serve-auth-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        let server = FileServer::serve_with_auth(&dir, "Basic YWxpY2U6cHc=").unwrap();
        let get = |headers: &str| {
            let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            conn.write_all(format!("GET /a.txt HTTP/1.1\r\n{headers}\r\n").as_bytes())
                .unwrap();
            let mut response = String::new();
            conn.read_to_string(&mut response).unwrap();
            response
        };
        let none = get("");
        assert!(none.starts_with("HTTP/1.1 401 "), "{none}");
        assert!(none.contains("WWW-Authenticate: Basic"), "{none}");
        assert!(get("Authorization: Basic bm9wZQ==\r\n").starts_with("HTTP/1.1 401 "));
        let ok = get("authorization: Basic YWxpY2U6cHc=\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
