//! `http://` and `https://` transport for image files: timeouts, same-scheme redirects, TLS
//! against the system trust store (and `image_ca_file`), the environment's proxies
//! ([`super::proxy`], [`super::connect`]), and a streaming GET that resumes with `Range` after a
//! cut when the server can prove it still has the same object.

use super::connect::Connector;
use super::error::find_source;
use super::proxy::Proxy;
use super::trust::{self, SystemStore, Trust};
use super::{ImageError, ImageRef};
use crate::engine::{EngineError, ImagePolicy};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// Mirrors and CDNs redirect; more hops than this is a loop or a misconfiguration.
const MAX_REDIRECTS: usize = 5;

/// What the download side hands the decoding side: data, or why there will be no more.
pub(super) type Chunk = Result<Bytes, String>;

/// The largest chunk a download yields: hyper reads into a buffer that grows to about 400 KiB
/// when the socket keeps it full, and the import's channel holds up to 64 chunks, so chunks
/// that large could hold 25 MiB of the image in memory. hyper's floor is 8 KiB.
const MAX_CHUNK: usize = 64 << 10;

pub(super) struct Http<'a> {
    image: &'a ImageRef,
    policy: &'a ImagePolicy,
    transport: Transport,
}

/// An image's files are fetched over one scheme only (redirects never change it), so an
/// `http://` image never touches TLS and an `https://` one cannot be served in the clear.
enum Transport {
    Plain(Client<Connector, Empty<Bytes>>),
    Tls {
        client: Client<HttpsConnector<Connector>, Empty<Bytes>>,
        /// What the certificate may chain to, for the error when it does not.
        trusted: String,
    },
}

impl<'a> Http<'a> {
    pub fn new(image: &'a ImageRef, policy: &'a ImagePolicy) -> Result<Http<'a>, EngineError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(policy.connect_timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http1_max_buf_size(MAX_CHUNK);
        let transport = if image.is_https() {
            let system = SystemStore::from_env(|name| std::env::var_os(name));
            let trust = Trust::load(&system, policy.ca_file.as_deref())
                .map_err(|e| image.err(ImageError::CaFile(e)))?;
            connector.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(trust.config)
                .https_only()
                .enable_http1()
                .wrap_connector(Connector::new(connector, &policy.proxies));
            Transport::Tls {
                client: builder.build(https),
                trusted: trust.description,
            }
        } else {
            Transport::Plain(builder.build(Connector::new(connector, &policy.proxies)))
        };
        Ok(Http {
            image,
            policy,
            transport,
        })
    }

    /// A whole small file (`.skein`, `.sig`, `.meta`); `None` when the server says it is absent.
    pub async fn small(&self, file: &str, limit: u64) -> Result<Option<Vec<u8>>, EngineError> {
        let (url, response) = self.get(&self.image.location(file), &[]).await?;
        let status = response.status();
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&url, status));
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(data) = self.next_data(&url, &mut body).await? {
            out.extend_from_slice(&data);
            if out.len() as u64 > limit {
                return Err(self.image.err(ImageError::SmallFileTooLarge { url, limit }));
            }
        }
        Ok(Some(out))
    }

    /// Streams `file` into `tx`, resuming after cuts. Stops quietly when the receiver is gone
    /// (the decoding side failed and reports why). `progress(received, total)` sees every chunk.
    pub async fn stream(
        &self,
        file: &str,
        tx: &mpsc::Sender<Chunk>,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<(), EngineError> {
        let start_url = self.image.location(file);
        let mut received = 0u64;
        let mut total = None;
        let mut validator: Option<String> = None;
        let mut tries = 1;
        loop {
            let resume = match &validator {
                Some(v) if received > 0 => vec![
                    (header::RANGE, format!("bytes={received}-")),
                    (header::IF_RANGE, v.clone()),
                ],
                _ => Vec::new(),
            };
            let (url, response) = self.get(&start_url, &resume).await?;
            let status = response.status();
            if received == 0 {
                if !status.is_success() {
                    return Err(self.status_error(&url, status));
                }
                total = content_length(&response);
                if let Some(t) = total.filter(|t| *t > self.policy.max_size) {
                    return Err(self.too_big(&url, t));
                }
                validator = resume_validator(&response);
            } else if status == StatusCode::OK {
                return Err(self.image.err(ImageError::Changed { url }));
            } else if status != StatusCode::PARTIAL_CONTENT
                || content_range_start(&response) != Some(received)
            {
                return Err(self.status_error(&url, status));
            }
            let mut body = response.into_body();
            let cut = loop {
                match self.next_data(&url, &mut body).await {
                    Ok(Some(data)) => {
                        received += data.len() as u64;
                        if received > self.policy.max_size {
                            return Err(self.too_big(&url, received));
                        }
                        progress(received, total);
                        if tx.send(Ok(data)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => match total {
                        Some(t) if received < t => {
                            break self.image.err(ImageError::Truncated {
                                url,
                                received,
                                total: t,
                            });
                        }
                        _ => return Ok(()),
                    },
                    Err(e) => break e,
                }
            };
            if validator.is_none() || tries >= self.policy.attempts {
                return Err(cut);
            }
            tracing::warn!(image = %self.image.local_name(), error = %cut, received, "download cut; resuming");
            tokio::time::sleep(self.policy.backoff * 2u32.pow(tries - 1)).await;
            tries += 1;
        }
    }

    /// GET `url`, following redirects within its scheme only. Like fetch(3), the image URL's
    /// credentials are sent only when the server asks for them (401 with `WWW-Authenticate`),
    /// and only to the image URL's own host; a proxy that is sent the request gets its URL's
    /// credentials only once it asks for them (407 with `Proxy-Authenticate`), as
    /// `http_request_body` in libfetch's http.c sends them.
    async fn get(
        &self,
        url: &str,
        headers: &[(header::HeaderName, String)],
    ) -> Result<(String, Response<Incoming>), EngineError> {
        let mut url = url.to_string();
        let mut authorize = false;
        let mut proxy_authorize = false;
        let mut redirects = 0;
        loop {
            let uri: hyper::Uri = url.parse().map_err(|source| {
                self.image.err(ImageError::BadUrl {
                    url: url.clone(),
                    source,
                })
            })?;
            let mut request = Request::get(uri.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let credentials = self.image.credentials_for(&uri);
            if let Some(c) = credentials.filter(|_| authorize) {
                request = request.header(header::AUTHORIZATION, c.basic());
            }
            let proxy_credentials = self.forwarder(&uri).and_then(Proxy::credentials);
            if let Some(c) = proxy_credentials.filter(|_| proxy_authorize) {
                request = request.header(header::PROXY_AUTHORIZATION, c.basic());
            }
            let request = request.body(Empty::new()).map_err(|source| {
                self.image.err(ImageError::Request {
                    url: url.clone(),
                    source,
                })
            })?;
            let idle = self.policy.idle_timeout;
            let response = tokio::time::timeout(idle, self.request(request))
                .await
                .map_err(|_| {
                    self.image.err(ImageError::NoResponse {
                        url: url.clone(),
                        idle,
                    })
                })?
                .map_err(|e| self.request_error(&url, &uri, e))?;
            if response.status() == StatusCode::UNAUTHORIZED
                && !authorize
                && credentials.is_some()
                && response.headers().contains_key(header::WWW_AUTHENTICATE)
            {
                authorize = true;
                continue;
            }
            if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
                && !proxy_authorize
                && proxy_credentials.is_some()
                && response.headers().contains_key(header::PROXY_AUTHENTICATE)
            {
                proxy_authorize = true;
                continue;
            }
            if !is_redirect(response.status()) {
                return Ok((url, response));
            }
            if redirects == MAX_REDIRECTS {
                return Err(self.image.err(ImageError::TooManyRedirects {
                    url,
                    max: MAX_REDIRECTS,
                }));
            }
            redirects += 1;
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    self.image.err(ImageError::RedirectWithoutLocation {
                        url: url.clone(),
                        status: response.status(),
                    })
                })?;
            url = redirect_target(&uri, location).map_err(|reason| {
                self.image.err(ImageError::RedirectRefused {
                    url: url.clone(),
                    location: location.into(),
                    reason: reason.into(),
                })
            })?;
        }
    }

    async fn request(
        &self,
        request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match &self.transport {
            Transport::Plain(client) => client.request(request).await,
            Transport::Tls { client, .. } => client.request(request).await,
        }
    }

    /// The proxy that is sent `uri`'s request itself: an `http://` request's. An `https://`
    /// one goes through the tunnel the connector makes, and its proxy never sees it.
    fn forwarder(&self, uri: &hyper::Uri) -> Option<&Proxy> {
        match uri.scheme_str() {
            Some("http") => self.policy.proxies.for_uri(uri).ok().flatten(),
            _ => None,
        }
    }

    /// A failure in a proxy, of TLS, or of the connection: [`ImageError::is_transient`] says
    /// which of them a retry may mend.
    fn request_error(
        &self,
        url: &str,
        uri: &hyper::Uri,
        source: hyper_util::client::legacy::Error,
    ) -> EngineError {
        let url = url.to_string();
        let source = Box::new(source);
        if find_source::<super::connect::ProxyError>(&*source).is_some() {
            return self.image.err(ImageError::Proxy { url, source });
        }
        let tls = match &self.transport {
            Transport::Tls { trusted, .. } => trust::tls_failure(&*source, trusted),
            Transport::Plain(_) => None,
        };
        // The connection went through a proxy: say so, as the fault may lie there.
        let via = match self.policy.proxies.for_uri(uri) {
            Ok(Some(proxy)) => format!(" (through proxy {proxy})"),
            _ => String::new(),
        };
        self.image.err(match tls {
            Some(reason) => ImageError::Tls {
                url,
                reason,
                via,
                source,
            },
            None => ImageError::Transport { url, via, source },
        })
    }

    async fn next_data(
        &self,
        url: &str,
        body: &mut Incoming,
    ) -> Result<Option<Bytes>, EngineError> {
        let idle = self.policy.idle_timeout;
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| {
                    self.image.err(ImageError::NoData {
                        url: url.to_string(),
                        idle,
                    })
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(self.image.err(ImageError::Body {
                        url: url.to_string(),
                        source,
                    }));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    fn status_error(&self, url: &str, status: StatusCode) -> EngineError {
        // A 407 is the proxy's answer, not the image server's.
        let from = url
            .parse()
            .ok()
            .filter(|_| status == StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            .and_then(|uri| self.forwarder(&uri).map(|p| format!(" from proxy {p}")))
            .unwrap_or_default();
        self.image.err(ImageError::Status {
            url: url.to_string(),
            status,
            from,
        })
    }

    fn too_big(&self, url: &str, size: u64) -> EngineError {
        self.image.err(ImageError::DownloadTooLarge {
            url: url.to_string(),
            size,
            max: self.policy.max_size,
        })
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Only redirects within the image's own scheme are followed: one to `file://` could read the
/// host's files, `https://` → `http://` would drop the TLS the image URL asks for, and any
/// other change of scheme is refused alike (the task's `image` names the scheme to use).
fn redirect_target(base: &hyper::Uri, location: &str) -> Result<String, String> {
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    if let Some(rest) = location.strip_prefix("//") {
        Ok(format!("{scheme}://{rest}"))
    } else if let Some((target, rest)) = location.split_once(':').filter(|_| has_scheme(location)) {
        let target = target.to_ascii_lowercase();
        if target == scheme {
            Ok(format!("{scheme}:{rest}"))
        } else if scheme == "https" && target == "http" {
            Err("a downgrade from https:// to http://".to_string())
        } else {
            Err(format!(
                "only {scheme}:// redirects are followed from an {scheme}:// image"
            ))
        }
    } else if location.starts_with('/') {
        Ok(format!("{scheme}://{authority}{location}"))
    } else {
        let dir = base
            .path()
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or_default();
        Ok(format!("{scheme}://{authority}{dir}/{location}"))
    }
}

/// RFC 3986: `scheme ":"`, with the scheme a letter followed by letters, digits, `+`, `-`, `.`.
fn has_scheme(reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

fn content_length(r: &Response<Incoming>) -> Option<u64> {
    r.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A strong ETag, else Last-Modified: what `If-Range` needs to refuse a changed object. `None`
/// when the server does not offer byte ranges.
fn resume_validator(r: &Response<Incoming>) -> Option<String> {
    let h = r.headers();
    let ranges = h.get(header::ACCEPT_RANGES)?.to_str().ok()?;
    if !ranges.split(',').any(|u| u.trim() == "bytes") {
        return None;
    }
    let etag = h
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.starts_with("W/"));
    etag.or_else(|| h.get(header::LAST_MODIFIED)?.to_str().ok())
        .map(str::to_string)
}

/// `Content-Range: bytes <start>-<end>/<total>` → start.
fn content_range_start(r: &Response<Incoming>) -> Option<u64> {
    let v = r.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_http() {
        let base: hyper::Uri = "http://a.example:8080/pots/x.xz".parse().unwrap();
        assert_eq!(
            redirect_target(&base, "http://b.example/y.xz").unwrap(),
            "http://b.example/y.xz"
        );
        assert_eq!(
            redirect_target(&base, "HTTP://b.example/y.xz").unwrap(),
            "http://b.example/y.xz"
        );
        assert_eq!(
            redirect_target(&base, "//c.example/z").unwrap(),
            "http://c.example/z"
        );
        assert_eq!(
            redirect_target(&base, "/mirror/x.xz").unwrap(),
            "http://a.example:8080/mirror/x.xz"
        );
        assert_eq!(
            redirect_target(&base, "v2/x.xz").unwrap(),
            "http://a.example:8080/pots/v2/x.xz"
        );
        for refused in [
            "file:///etc/passwd",
            "https://a.example/x.xz",
            "ftp://h/x",
            "file:/etc/passwd",
        ] {
            assert_eq!(
                redirect_target(&base, refused).unwrap_err(),
                "only http:// redirects are followed from an http:// image",
                "{refused}"
            );
        }
    }

    #[test]
    fn redirects_stay_on_https() {
        let base: hyper::Uri = "https://a.example/pots/x.xz".parse().unwrap();
        assert_eq!(
            redirect_target(&base, "https://cdn.example/x.xz").unwrap(),
            "https://cdn.example/x.xz"
        );
        assert_eq!(
            redirect_target(&base, "//cdn.example/x.xz").unwrap(),
            "https://cdn.example/x.xz"
        );
        assert_eq!(
            redirect_target(&base, "/m/x.xz").unwrap(),
            "https://a.example/m/x.xz"
        );
        assert_eq!(
            redirect_target(&base, "x2.xz").unwrap(),
            "https://a.example/pots/x2.xz"
        );
        for downgrade in ["http://a.example/x.xz", "Http://a.example/x.xz"] {
            assert_eq!(
                redirect_target(&base, downgrade).unwrap_err(),
                "a downgrade from https:// to http://"
            );
        }
        assert_eq!(
            redirect_target(&base, "file:///etc/passwd").unwrap_err(),
            "only https:// redirects are followed from an https:// image"
        );
    }
}
