//! Connections to an image server as fetch(3)'s `http_connect` (lib/libfetch/http.c) makes
//! them: straight to the server; to an `http://` proxy that is sent the request itself (in
//! absolute form, `GET http://host/file`); or, for `https://`, through the proxy's
//! `CONNECT host:port` tunnel with TLS inside it, from us to the image server, so that the
//! certificate checked is still the server's. Which proxy, and when: [`super::proxy`].

use super::proxy::{Proxies, Proxy, Unusable};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A proxy's answer to `CONNECT` is a status line and a few headers; more is not such an answer.
const MAX_CONNECT_ANSWER: usize = 16 << 10;

/// Why a connection through a proxy failed. Proxies are shown without their credentials.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxyError {
    #[error(transparent)]
    Unusable(Unusable),
    #[error("connect to proxy {proxy}")]
    Connect {
        proxy: String,
        #[source]
        source: BoxError,
    },
    #[error("CONNECT {target} through proxy {proxy}")]
    Io {
        proxy: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("proxy {proxy} answered CONNECT {target} with HTTP {status}")]
    Refused {
        proxy: String,
        target: String,
        status: hyper::StatusCode,
    },
    #[error("proxy {proxy} answered CONNECT {target} with {answer:?}, not HTTP/1")]
    NotHttp {
        proxy: String,
        target: String,
        answer: String,
    },
}

impl ProxyError {
    /// As for the image server's own answers: a proxy out of reach, a lost connection, and the
    /// proxy's failures to reach the server (502, 503, 504) are worth a retry; a refusal (403,
    /// 407) or a misconfigured variable is not.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            ProxyError::Connect { .. } | ProxyError::Io { .. } => true,
            ProxyError::Refused { status, .. } => {
                status.is_server_error()
                    || *status == hyper::StatusCode::REQUEST_TIMEOUT
                    || *status == hyper::StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::Unusable(_) | ProxyError::NotHttp { .. } => false,
        }
    }
}

/// Connects as [`Proxies`] says for each request's URL.
#[derive(Clone)]
pub(super) struct Connector {
    tcp: HttpConnector,
    proxies: Arc<Proxies>,
}

impl Connector {
    pub(super) fn new(tcp: HttpConnector, proxies: &Proxies) -> Connector {
        Connector {
            tcp,
            proxies: Arc::new(proxies.clone()),
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let proxy = match self.proxies.for_uri(&dst) {
            Ok(proxy) => Ok(proxy.cloned()),
            Err(unusable) => Err(ProxyError::Unusable(unusable.clone())),
        };
        Box::pin(async move {
            let (io, forwarded) = match proxy? {
                None => (tcp.call(dst).await?, false),
                Some(proxy) if dst.scheme_str() == Some("https") => {
                    (tunnel(&mut tcp, &proxy, &dst).await?, false)
                }
                Some(proxy) => (connect(&mut tcp, &proxy).await?, true),
            };
            Ok(Conn { io, forwarded })
        })
    }
}

async fn connect(tcp: &mut HttpConnector, proxy: &Proxy) -> Result<TokioIo<TcpStream>, ProxyError> {
    tcp.call(proxy.uri())
        .await
        .map_err(|e| ProxyError::Connect {
            proxy: proxy.to_string(),
            source: e.into(),
        })
}

/// `CONNECT host:port` through `proxy`; once it answers 2xx the connection is the image
/// server's. As `http_connect` does, a 407 is answered once, on a new connection, with the
/// proxy URL's credentials when it has some.
async fn tunnel(
    tcp: &mut HttpConnector,
    proxy: &Proxy,
    dst: &Uri,
) -> Result<TokioIo<TcpStream>, ProxyError> {
    let host = dst.host().unwrap_or_default();
    let target = format!("{host}:{}", dst.port_u16().unwrap_or(443));
    let io_err = |source| ProxyError::Io {
        proxy: proxy.to_string(),
        target: target.clone(),
        source,
    };
    let mut authorize = false;
    loop {
        let mut stream = connect(tcp, proxy).await?.into_inner();
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(c) = proxy.credentials().filter(|_| authorize) {
            request.push_str(&format!("Proxy-Authorization: {}\r\n", c.basic()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io_err)?;
        let answer = read_head(&mut stream).await.map_err(io_err)?;
        let status = status_of(&answer).ok_or_else(|| ProxyError::NotHttp {
            proxy: proxy.to_string(),
            target: target.clone(),
            answer: answer.lines().next().unwrap_or_default().to_string(),
        })?;
        if status.is_success() {
            return Ok(TokioIo::new(stream));
        }
        if status == hyper::StatusCode::PROXY_AUTHENTICATION_REQUIRED
            && !authorize
            && proxy.credentials().is_some()
        {
            authorize = true;
            continue;
        }
        return Err(ProxyError::Refused {
            proxy: proxy.to_string(),
            target,
            status,
        });
    }
}

/// The answer's head, up to its empty line, read a byte at a time: what follows it belongs to
/// the tunnel.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_CONNECT_ANSWER {
            return Err(std::io::Error::other(format!(
                "an answer longer than {MAX_CONNECT_ANSWER} bytes"
            )));
        }
        match stream.read_u8().await {
            Ok(b) => head.push(b),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(std::io::Error::new(
                    e.kind(),
                    "the proxy closed the connection before it answered",
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `HTTP/1.x NNN reason` → NNN, as `http_get_reply` reads a status line.
fn status_of(answer: &str) -> Option<hyper::StatusCode> {
    let line = answer.lines().next()?;
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
    hyper::StatusCode::from_u16(code.parse().ok()?).ok()
}

/// A connection, and whether it goes to a proxy that is sent the requests themselves (which
/// hyper then writes in absolute form).
pub(super) struct Conn {
    io: TokioIo<TcpStream>,
    forwarded: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers_are_read_by_their_status_line() {
        let ok = "HTTP/1.1 200 Connection established\r\n\r\n";
        assert_eq!(status_of(ok), Some(hyper::StatusCode::OK));
        assert_eq!(
            status_of(
                "HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"
            ),
            Some(hyper::StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        );
        for bad in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
            "HTTP/1.1 +20 OK\r\n\r\n",
        ] {
            assert_eq!(status_of(bad), None, "{bad:?}");
        }
    }
}
