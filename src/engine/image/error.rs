//! Why an image could not be fetched, verified or imported, keeping the error underneath. URLs
//! here are the image's without credentials ([`super::ImageRef::location`]), so no message shows
//! them; whether a retry may help follows from the variant ([`ImageError::is_transient`]).

use super::connect::ProxyError;
use super::trust::CaFileError;
use crate::engine::EngineError;
use crate::host::HostError;
use hyper::StatusCode;
use hyper_util::client::legacy;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A host command on the image's datasets (zfs receive, list, rename, mount) failed.
    #[error("{0}")]
    Host(#[source] HostError),
    /// The temporary dataset of an earlier import could not be removed.
    #[error("remove a stale {dataset}: {source}")]
    RemoveStale {
        /// `Box<str>`s here and below keep the error small enough for every `Result` to carry.
        dataset: Box<str>,
        #[source]
        source: HostError,
    },
    /// A local file operation (the cache dir, a `file://` image, a public key) failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading the `.xz` broke off during the pass: the download was cut, or the file went away.
    #[error("read {location}: {source}")]
    Read {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// The compressed stream's remainder could not be read for the hash.
    #[error("{0}")]
    ReadRest(#[source] std::io::Error),
    /// The decoded stream's remainder could not be drained for the checks at its end.
    #[error("{0}")]
    Drain(#[source] std::io::Error),
    /// The xz decoder could not be set up.
    #[error("xz decoder: {0}")]
    XzDecoder(#[source] liblzma::stream::Error),
    /// The `.xz` does not decode.
    #[error("{location}: corrupt xz stream: {source}")]
    CorruptXz {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// A URL the image's files are to be read from does not parse.
    #[error("bad URL {url}: {source}")]
    BadUrl {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// The request could not be built.
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    /// The request failed in a proxy ([`ProxyError`], found among the sources).
    #[error("GET {url}: {}", proxy_chain(source))]
    Proxy {
        url: String,
        /// Boxed, as the rarest and largest of the errors kept here.
        #[source]
        source: Box<legacy::Error>,
    },
    /// The server's certificate or the TLS handshake was refused; `reason` says which.
    #[error("GET {url}: {reason}{via}")]
    Tls {
        url: String,
        reason: String,
        /// " (through proxy …)" when the connection went through one.
        via: String,
        /// Boxed, as the rarest and largest of the errors kept here.
        #[source]
        source: Box<legacy::Error>,
    },
    /// The connection failed (refused, reset, cut).
    #[error("GET {url}: {}{via}", error_chain(source))]
    Transport {
        url: String,
        /// " (through proxy …)" when the connection went through one.
        via: String,
        /// Boxed, as the rarest and largest of the errors kept here.
        #[source]
        source: Box<legacy::Error>,
    },
    /// The response body failed while being read.
    #[error("GET {url}: {}", error_chain(source))]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    /// The server (or, with `from`, the proxy) answered with an error status.
    #[error("GET {url}: HTTP {status}{from}")]
    Status {
        url: String,
        status: StatusCode,
        /// " from proxy …" for a proxy's 407.
        from: String,
    },
    #[error("GET {url}: no response within {idle:?}")]
    NoResponse { url: String, idle: Duration },
    #[error("GET {url}: no data for {idle:?}")]
    NoData { url: String, idle: Duration },
    /// A resumed download met another object than the one it started on.
    #[error("GET {url}: the file changed on the server during the download")]
    Changed { url: String },
    #[error("GET {url}: the body ended after {received} of {total} bytes")]
    Truncated {
        url: String,
        received: u64,
        total: u64,
    },
    /// A `.sig` file that is not a signify signature.
    #[error("{location}: not a signify signature: {source}")]
    NotSignature {
        location: String,
        #[source]
        source: libsignify::Error,
    },
    /// The signature does not verify with the key of its key number.
    #[error("{location}: bad signature of {file}.skein with key {key}: {source}")]
    BadSignature {
        location: String,
        file: Box<str>,
        key: Box<str>,
        #[source]
        source: libsignify::Error,
    },
    /// A configured public key file that is not a signify public key.
    #[error("public key {path}: {source}")]
    PublicKey {
        path: String,
        #[source]
        source: libsignify::Error,
    },
    /// `image_ca_file`, which `https://` images are to be trusted by, cannot be used.
    #[error("image_ca_file {0}")]
    CaFile(#[source] CaFileError),
    /// A small file (`.skein`, `.sig`, `.meta`) bigger than any such file is.
    #[error("GET {url}: larger than {limit} bytes")]
    SmallFileTooLarge { url: String, limit: u64 },
    /// The server announces, or sends, more than `image_max_size`.
    #[error("GET {url}: {size} bytes is more than image_max_size ({max} bytes)")]
    DownloadTooLarge { url: String, size: u64, max: u64 },
    /// The `.xz` read holds more than `image_max_size`.
    #[error("{location} is larger than image_max_size ({max} bytes)")]
    FileTooLarge { location: String, max: u64 },
    /// The `.xz` decodes to more than `image_max_size`.
    #[error("{location} expands to more than image_max_size ({max} bytes)")]
    ExpandsTooFar { location: String, max: u64 },
    /// The image has no `.skein`, without which nothing of it can be verified.
    #[error("{location} not found: a pot image needs the Skein-1024 hash of its .xz and .meta")]
    NoSkein { location: String },
    #[error("{location} is not a Skein-1024 hash (256 hex digits)")]
    NotSkein { location: String },
    /// `location` is the `.xz`; its `.skein` names another digest.
    #[error(
        "{location}.skein does not match {location} and its .meta (Skein-1024): the image is corrupt or was replaced"
    )]
    HashMismatch { location: String },
    /// No `.sig`, and `require_signature` is set.
    #[error("{location} not found: the image is unsigned and require_signature is set")]
    Unsigned { location: String },
    /// The `.sig` names a key (by its hex key number) that is not configured.
    #[error(
        "{location}: signed by key number {keynum}, which is not among the configured public keys"
    )]
    UnknownKey { location: String, keynum: String },
    /// A layered image: its `.meta` names the image it builds on.
    #[error("layered image (origin {origin}) is not supported yet")]
    Layered { origin: String },
    /// The server redirected more often than the driver follows.
    #[error("GET {url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: usize },
    /// A redirect status without the header that says where to.
    #[error("GET {url}: HTTP {status} without a Location")]
    RedirectWithoutLocation { url: String, status: StatusCode },
    /// A redirect the driver does not follow (to another scheme, say); `reason` says why.
    #[error("GET {url}: redirect to {location:?} refused: {reason}")]
    RedirectRefused {
        url: String,
        location: Box<str>,
        reason: Box<str>,
    },
    /// A cached file seen a moment ago is gone (removed by an image GC in another process).
    #[error("{path} vanished")]
    Vanished { path: String },
    /// The received stream made other datasets than a pot image's pot and `m`.
    #[error(
        "the image's stream holds the datasets {names:?}; a pot image holds its pot and its m only"
    )]
    UnexpectedDatasets { names: Vec<String> },
    /// A received dataset would mount somewhere else than where the image belongs.
    #[error(
        "received dataset {dataset} would mount at {mountpoint} (canmount {canmount}, mounted {mounted}), not at {expected}"
    )]
    WrongMount {
        dataset: Box<str>,
        mountpoint: Box<str>,
        canmount: Box<str>,
        mounted: bool,
        expected: Box<str>,
    },
    /// The image's dataset has no snapshot to clone a pot from.
    #[error("{dataset}/m has no snapshot to clone")]
    NoSnapshot { dataset: String },
    /// The image is there from its source, but the current signature policy refuses how it was
    /// imported; `why` says how.
    #[error(
        "{dataset} holds this image from {source_url}, but {why}; remove it (`potctl images gc` once no task uses it, or `zfs destroy -r {dataset}`) to import it again"
    )]
    RefusedByPolicy {
        dataset: Box<str>,
        source_url: Box<str>,
        why: Box<str>,
    },
    /// Both names an image may take hold other images or pots.
    #[error(
        "{first} and {second} hold other images or pots not imported from {source_url}: remove one to import it"
    )]
    NamesTaken {
        first: Box<str>,
        second: Box<str>,
        source_url: Box<str>,
    },
    /// Both sources failed: the URL's `error`, and before it the cache's.
    #[error("{error}; the cached copy was not used: {}", cached_reason(cached))]
    CacheUnused {
        #[source]
        error: Box<ImageError>,
        cached: Box<EngineError>,
    },
}

impl ImageError {
    /// Network trouble, server errors and a download cut in the middle may go away; the image's
    /// content, the host's refusals and the policy do not.
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::Read { .. }
            | ImageError::ReadRest(_)
            | ImageError::Transport { .. }
            | ImageError::Body { .. }
            | ImageError::NoResponse { .. }
            | ImageError::NoData { .. }
            | ImageError::Changed { .. }
            | ImageError::Truncated { .. } => true,
            ImageError::Proxy { source, .. } => {
                find_source::<ProxyError>(&**source).is_some_and(ProxyError::is_transient)
            }
            ImageError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            ImageError::CacheUnused { error, .. } => error.is_transient(),
            ImageError::Host(_)
            | ImageError::RemoveStale { .. }
            | ImageError::Io { .. }
            | ImageError::Drain(_)
            | ImageError::XzDecoder(_)
            | ImageError::CorruptXz { .. }
            | ImageError::BadUrl { .. }
            | ImageError::Request { .. }
            | ImageError::Tls { .. }
            | ImageError::NotSignature { .. }
            | ImageError::BadSignature { .. }
            | ImageError::PublicKey { .. }
            | ImageError::CaFile(_)
            | ImageError::SmallFileTooLarge { .. }
            | ImageError::DownloadTooLarge { .. }
            | ImageError::FileTooLarge { .. }
            | ImageError::ExpandsTooFar { .. }
            | ImageError::NoSkein { .. }
            | ImageError::NotSkein { .. }
            | ImageError::HashMismatch { .. }
            | ImageError::Unsigned { .. }
            | ImageError::UnknownKey { .. }
            | ImageError::Layered { .. }
            | ImageError::TooManyRedirects { .. }
            | ImageError::RedirectWithoutLocation { .. }
            | ImageError::RedirectRefused { .. }
            | ImageError::Vanished { .. }
            | ImageError::UnexpectedDatasets { .. }
            | ImageError::WrongMount { .. }
            | ImageError::NoSnapshot { .. }
            | ImageError::RefusedByPolicy { .. }
            | ImageError::NamesTaken { .. } => false,
        }
    }
}

/// The first error of type `T` in `e`'s chain of sources: hyper wraps the connector's own.
pub(super) fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// hyper's errors hide the useful part (e.g. "connection refused") in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// From the proxy's error down: hyper's own wrapping says nothing the proxy's does not.
fn proxy_chain(e: &legacy::Error) -> String {
    match find_source::<ProxyError>(e) {
        Some(proxy) => error_chain(proxy),
        None => error_chain(e),
    }
}

/// The cache's failure without the image's name, which the whole message starts with already.
fn cached_reason(e: &EngineError) -> String {
    match e {
        EngineError::Image { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals that were once `ImageError::Invalid(String)` keep the messages they had.
    #[test]
    fn typed_refusals_keep_their_messages() {
        let url = "http://images.example/web_1.0.xz".to_string();
        let cases = [
            (
                ImageError::TooManyRedirects {
                    url: url.clone(),
                    max: 5,
                },
                "GET http://images.example/web_1.0.xz: more than 5 redirects",
            ),
            (
                ImageError::RedirectWithoutLocation {
                    url: url.clone(),
                    status: StatusCode::FOUND,
                },
                "GET http://images.example/web_1.0.xz: HTTP 302 Found without a Location",
            ),
            (
                ImageError::Vanished {
                    path: "/var/cache/pot/web_1.0.xz.skein".into(),
                },
                "/var/cache/pot/web_1.0.xz.skein vanished",
            ),
            (
                ImageError::UnexpectedDatasets {
                    names: vec!["zroot/pot/jails/t".into(), "zroot/pot/jails/t/x".into()],
                },
                r#"the image's stream holds the datasets ["zroot/pot/jails/t", "zroot/pot/jails/t/x"]; a pot image holds its pot and its m only"#,
            ),
            (
                ImageError::WrongMount {
                    dataset: "zroot/pot/jails/t/m".into(),
                    mountpoint: "/etc".into(),
                    canmount: "on".into(),
                    mounted: false,
                    expected: "/opt/pot/jails/web_1_0/m".into(),
                },
                "received dataset zroot/pot/jails/t/m would mount at /etc (canmount on, mounted false), not at /opt/pot/jails/web_1_0/m",
            ),
            (
                ImageError::NoSnapshot {
                    dataset: "zroot/pot/jails/web_1_0".into(),
                },
                "zroot/pot/jails/web_1_0/m has no snapshot to clone",
            ),
            (
                ImageError::NamesTaken {
                    first: "zroot/pot/jails/web_1_0".into(),
                    second: "zroot/pot/jails/web_1_0_1f2e".into(),
                    source_url: url.as_str().into(),
                },
                "zroot/pot/jails/web_1_0 and zroot/pot/jails/web_1_0_1f2e hold other images or pots not imported from http://images.example/web_1.0.xz: remove one to import it",
            ),
        ];
        for (error, message) in cases {
            assert!(!error.is_transient(), "{error:?}");
            assert_eq!(error.to_string(), message);
        }
    }
}
