//! A forward HTTP proxy on 127.0.0.1, as squid is one to fetch(1): an absolute-form request
//! (`GET http://host:port/file`) is sent on to its server in origin form, and `CONNECT
//! host:port` opens a tunnel. With a required `Proxy-Authorization`, anything else gets a 407
//! with a Basic challenge. Every request line is noted with the `Proxy-Authorization` it came
//! with.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A request line the proxy was sent and its `Proxy-Authorization`, if any.
pub type Asked = (String, Option<String>);

pub struct ForwardProxy {
    pub port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
    stop: Arc<AtomicBool>,
}

impl ForwardProxy {
    /// A proxy open to anyone.
    pub fn start() -> ForwardProxy {
        ForwardProxy::listen(None)
    }

    /// A proxy that wants `Proxy-Authorization: <authorization>` (say `Basic YWxp…`).
    pub fn with_auth(authorization: &'static str) -> ForwardProxy {
        ForwardProxy::listen(Some(authorization))
    }

    fn listen(auth: Option<&'static str>) -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (asked, stop) = (asked.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let asked = asked.clone();
                    std::thread::spawn(move || relay(conn, auth, &asked));
                }
            });
        }
        ForwardProxy { port, asked, stop }
    }

    /// `http://<userinfo>127.0.0.1:<port>`: `userinfo` is empty or ends in `@`.
    pub fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    /// The request lines seen so far, in order.
    pub fn request_lines(&self) -> Vec<String> {
        self.asked().into_iter().map(|(line, _)| line).collect()
    }

    /// Every request line with its `Proxy-Authorization`.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(client: TcpStream, auth: Option<&str>, asked: &Mutex<Vec<Asked>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut out = client;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let line = line.trim_end().to_string();
    // The headers the server is sent: all but the proxy's own.
    let mut headers = String::new();
    let mut given = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("proxy-authorization") => {
                given = Some(v.trim().to_string());
            }
            _ => headers.push_str(&h),
        }
    }
    asked.lock().unwrap().push((line.clone(), given.clone()));
    if auth.is_some() && given.as_deref() != auth {
        let _ = out.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let bad_gateway = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target) else {
            let _ = out.write_all(bad_gateway);
            return;
        };
        let _ = out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let mut to_upstream = upstream.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut to_upstream);
            let _ = to_upstream.shutdown(Shutdown::Write);
        });
        let _ = std::io::copy(&mut upstream, &mut out);
        let _ = out.shutdown(Shutdown::Both);
        return;
    }
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = out.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let Ok(mut upstream) = TcpStream::connect(host) else {
        let _ = out.write_all(bad_gateway);
        return;
    };
    let _ = upstream.write_all(format!("{method} {path} HTTP/1.1\r\n{headers}\r\n").as_bytes());
    let _ = std::io::copy(&mut upstream, &mut out);
    let _ = out.shutdown(Shutdown::Both);
}
