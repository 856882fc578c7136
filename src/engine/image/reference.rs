//! What a task's `image`, `pot` and `tag` name: where the image's files are read from, their
//! names, and the URL's credentials, kept apart from everything that is shown.

use super::ImageError;
use crate::engine::EngineError;
use crate::engine::layout::percent_decode;
use std::path::{Path, PathBuf};

/// Where an image comes from and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    source: Source,
    pot: String,
    tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `base` without the URL's `user:password@`, which is kept apart so that no message,
    /// event or log line can carry it.
    Http {
        base: String,
        credentials: Option<Credentials>,
    },
    File {
        dir: PathBuf,
    },
}

/// The `user:password` of an image or proxy URL, percent-decoded as fetch(3)'s `fetchParseURL`
/// does.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// `user:password`, or `user` alone, as it stands before a URL's `@`.
    pub(super) fn from_userinfo(userinfo: &str) -> Credentials {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        Credentials {
            user: percent_decode(user),
            password: percent_decode(password),
        }
    }

    /// The `Authorization` value, as fetch(3)'s `http_basic_auth` sends it.
    pub(super) fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.user, self.password).as_bytes())
        )
    }
}

/// RFC 4648 base64 with padding.
pub(super) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An image URL fit for messages: its `user:password@`, if any, replaced by `***@`.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority_end..]),
        None => url.to_string(),
    }
}

impl ImageRef {
    /// Validates the task config's `image`, `pot` and `tag` without touching the host.
    pub fn parse(image: &str, pot: &str, tag: &str) -> Result<ImageRef, EngineError> {
        check_name("pot", pot)?;
        check_name("tag", tag)?;
        let shown = redact_url(image);
        let http = ["http://", "https://"]
            .iter()
            .find_map(|scheme| image.strip_prefix(scheme).map(|rest| (scheme, rest)));
        let source = if let Some((scheme, rest)) = http {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let (credentials, host) = match authority.rsplit_once('@') {
                Some((userinfo, host)) => (Some(Credentials::from_userinfo(userinfo)), host),
                None => (None, authority),
            };
            if host.is_empty() {
                return Err(EngineError::InvalidInput(format!(
                    "image {shown:?}: missing host"
                )));
            }
            Source::Http {
                base: format!("{scheme}{host}{path}")
                    .trim_end_matches('/')
                    .to_string(),
                credentials,
            }
        } else if let Some(path) = image.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(EngineError::InvalidInput(format!(
                    "image {shown:?}: file:// needs an absolute path (file:///srv/images)"
                )));
            }
            Source::File {
                dir: PathBuf::from(path),
            }
        } else {
            return Err(EngineError::InvalidInput(format!(
                "image {shown:?}: unsupported URL scheme (supported: http://, https://, file://)"
            )));
        };
        Ok(ImageRef {
            source,
            pot: pot.to_string(),
            tag: tag.to_string(),
        })
    }

    /// A `file://` image's directory must lie under one of the operator's `allowed_image_dirs`
    /// (none: `file://` is refused). A path outside them is refused before the file system is
    /// looked at, so a job cannot learn through it what exists on the host; inside, the real
    /// path must stay inside too (no symlink out).
    pub fn check_source(&self, allowed: &[PathBuf]) -> Result<(), EngineError> {
        let Source::File { dir } = &self.source else {
            return Ok(());
        };
        let refused = || {
            EngineError::InvalidInput(format!(
                "image \"file://{}\": not under a directory the operator allows images from; an operator can allow one with allowed_image_dirs in the plugin config",
                dir.display()
            ))
        };
        let climbs = dir
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        if climbs || !allowed.iter().any(|a| dir.starts_with(a)) {
            return Err(refused());
        }
        let real = std::fs::canonicalize(dir).map_err(|e| {
            EngineError::InvalidInput(format!("image \"file://{}\": {e}", dir.display()))
        })?;
        let inside = |a: &PathBuf| std::fs::canonicalize(a).is_ok_and(|a| real.starts_with(a));
        match allowed.iter().any(inside) {
            true => Ok(()),
            false => Err(refused()),
        }
    }

    /// `<pot>_<tag>.xz`, the file name pot exports.
    pub fn file_name(&self) -> String {
        format!("{}_{}.xz", self.pot, self.tag)
    }

    /// Where the `.xz` comes from, as recorded on the imported image: its URL or `file://` path.
    pub fn source(&self) -> String {
        self.display_location(&self.file_name())
    }

    /// `<pot>_<tag>`, as users name the image.
    pub(super) fn display_name(&self) -> String {
        format!("{}_{}", self.pot, self.tag)
    }

    /// The imported template pot's name: `<pot>_<tag>` with every `.` turned into `_`, as pot does.
    pub fn local_name(&self) -> String {
        format!("{}_{}", self.pot, self.tag).replace('.', "_")
    }

    /// Whether the files come over the network (`http://` or `https://`).
    pub(super) fn is_http(&self) -> bool {
        matches!(&self.source, Source::Http { .. })
    }

    pub(super) fn is_https(&self) -> bool {
        matches!(&self.source, Source::Http { base, .. } if base.starts_with("https://"))
    }

    /// Where the image's files are read from, without credentials: for messages and output.
    pub fn base_url(&self) -> String {
        match &self.source {
            Source::Http { base, .. } => base.clone(),
            Source::File { dir } => format!("file://{}", dir.display()),
        }
    }

    /// The URL's credentials, for a request to `uri`: only on the image URL's own host and
    /// port, as fetch(3) hands them on through a redirect only when the host is the same.
    pub(super) fn credentials_for(&self, uri: &hyper::Uri) -> Option<&Credentials> {
        let Source::Http { base, credentials } = &self.source else {
            return None;
        };
        let base: hyper::Uri = base.parse().ok()?;
        credentials
            .as_ref()
            .filter(|_| base.authority() == uri.authority())
    }

    pub(super) fn location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { base, .. } => format!("{base}/{file}"),
            Source::File { dir } => dir.join(file).display().to_string(),
        }
    }

    /// Where a user reads the file from: `file://` included.
    pub(super) fn display_location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { .. } => self.location(file),
            Source::File { .. } => format!("file://{}", self.location(file)),
        }
    }

    /// A `file://` image kept in `dir` itself: its files are not to be copied onto themselves,
    /// nor removed when they fail.
    pub(super) fn is_kept_in(&self, dir: &Path) -> bool {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        matches!(&self.source, Source::File { dir: source } if canonical(source) == canonical(dir))
    }

    pub(super) fn err(&self, source: ImageError) -> EngineError {
        EngineError::Image {
            image: self.local_name(),
            source,
        }
    }
}

/// Image names become file names and dataset names: a conservative character set, no `..`.
pub(super) fn check_name(key: &str, value: &str) -> Result<(), EngineError> {
    let ok = !value.is_empty()
        && value != "."
        && !value.contains("..")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "{key} {value:?}: only letters, digits, '.', '_', '+' and '-' are allowed (no '/', '..', spaces or control characters)"
        )))
    }
}
