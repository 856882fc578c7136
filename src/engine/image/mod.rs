//! Pot images: `<pot>_<tag>.xz` (a compressed `zfs send -R`), `.xz.meta`, `.xz.skein` and, when
//! signed, `.xz.skein.sig`, fetched from `http://`, `https://` or `file://`.
//!
//! One streaming pass per import: the small files first (the signature covers the `.skein`, the
//! `.skein` covers `xz ‖ meta`), then the `.xz` flows through the Skein-1024 hasher (and into the
//! cache dir, as pot keeps it) into the multi-threaded xz decoder and `zfs receive` of a
//! temporary dataset. Only when the hash matches at the end of the stream is that dataset renamed
//! to `<pot>_<tag>`; on any failure it is destroyed and the cache files removed.
//!
//! An image whose `.xz` and `.skein` are already in the cache dir (an earlier import, `pot fetch`,
//! or files copied there by hand) is imported from there, as pot does, through the same pass
//! without the copy; cached files that do not verify are removed and the image is fetched once
//! from its URL.

mod export;
mod fetch;
mod gc;
mod provenance;
#[cfg(test)]
mod tests;
mod trust;

pub use export::{ExportOptions, Exported};
pub use gc::GcReport;
pub(super) use gc::IMAGE_PROP;
pub(crate) use trust::read_ca_file;

use super::{EngineError, ImagePolicy, files};
use crate::engine::layout::percent_decode;
use crate::host::Host;
use crate::skein::Skein1024;
use fetch::{Chunk, Http};
use libsignify::Codeable;
use provenance::{Place, Provenance, Signer};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The small files are a hash, a signature and one line of origin: anything bigger is not one.
const SMALL_FILE_LIMIT: u64 = 64 << 10;
/// Chunks in flight between the download and the decoder (hyper's chunks are ≤ 16 KiB or so).
const CHANNEL_CHUNKS: usize = 64;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

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

/// The `user:password` of an image URL, percent-decoded as fetch(3)'s `fetchParseURL` does.
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
    /// The `Authorization` value, as fetch(3)'s `http_basic_auth` sends it.
    pub(super) fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.user, self.password).as_bytes())
        )
    }
}

/// RFC 4648 base64 with padding.
fn base64(data: &[u8]) -> String {
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
pub fn redact_url(url: &str) -> String {
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
                Some((userinfo, host)) => {
                    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                    let credentials = Credentials {
                        user: percent_decode(user),
                        password: percent_decode(password),
                    };
                    (Some(credentials), host)
                }
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
    fn display_name(&self) -> String {
        format!("{}_{}", self.pot, self.tag)
    }

    /// The imported template pot's name: `<pot>_<tag>` with every `.` turned into `_`, as pot does.
    pub fn local_name(&self) -> String {
        format!("{}_{}", self.pot, self.tag).replace('.', "_")
    }

    fn is_https(&self) -> bool {
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
    fn credentials_for(&self, uri: &hyper::Uri) -> Option<&Credentials> {
        let Source::Http { base, credentials } = &self.source else {
            return None;
        };
        let base: hyper::Uri = base.parse().ok()?;
        credentials
            .as_ref()
            .filter(|_| base.authority() == uri.authority())
    }

    fn location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { base, .. } => format!("{base}/{file}"),
            Source::File { dir } => dir.join(file).display().to_string(),
        }
    }

    /// Where a user reads the file from: `file://` included.
    fn display_location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { .. } => self.location(file),
            Source::File { .. } => format!("file://{}", self.location(file)),
        }
    }

    /// A `file://` image kept in `dir` itself: its files are not to be copied onto themselves,
    /// nor removed when they fail.
    fn is_kept_in(&self, dir: &Path) -> bool {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        matches!(&self.source, Source::File { dir: source } if canonical(source) == canonical(dir))
    }

    fn err(&self, reason: impl Into<String>, transient: bool) -> EngineError {
        EngineError::Image {
            image: self.local_name(),
            reason: reason.into(),
            transient,
        }
    }
}

/// Image names become file names and dataset names: a conservative character set, no `..`.
fn check_name(key: &str, value: &str) -> Result<(), EngineError> {
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

/// Hex of a digest, as `skein1024 -q` prints it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Guards each image from its check to the clone made from it: starts of a present image share
/// the lock, an import or a GC removal holds it alone. Different images proceed in parallel. An
/// entry exists only while someone holds or waits for that image's lock.
#[derive(Default)]
pub struct ImageLocks {
    locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl ImageLocks {
    fn entry(&self, name: &str) -> LockEntry<'_> {
        LockEntry {
            lock: self.table().entry(name.to_string()).or_default().clone(),
            locks: self,
            name: name.to_string(),
        }
    }

    /// Held by a start that clones the image: other starts may hold it too.
    async fn shared(&self, name: &str) -> ImageLock<'_> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().read_owned().await;
        ImageLock {
            _guard: Guard::Shared { _read: guard },
            _entry: entry,
        }
    }

    /// Held alone, by an import.
    async fn exclusive(&self, name: &str) -> ImageLock<'_> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().write_owned().await;
        ImageLock {
            _guard: Guard::Exclusive { _write: guard },
            _entry: entry,
        }
    }

    /// The lock alone, unless someone holds it (an import or a clone of this image is under way).
    fn try_exclusive(&self, name: &str) -> Option<ImageLock<'_>> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().try_write_owned().ok()?;
        Some(ImageLock {
            _guard: Guard::Exclusive { _write: guard },
            _entry: entry,
        })
    }

    /// How many images have a lock held or awaited.
    #[cfg(test)]
    fn active(&self) -> usize {
        self.table().len()
    }

    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>
    {
        self.locks.lock().expect("image lock table poisoned")
    }
}

/// Field order matters: the guard is released before the entry decides whether to go.
pub struct ImageLock<'a> {
    _guard: Guard,
    _entry: LockEntry<'a>,
}

/// Held for its release on drop.
enum Guard {
    Shared {
        _read: tokio::sync::OwnedRwLockReadGuard<()>,
    },
    Exclusive {
        _write: tokio::sync::OwnedRwLockWriteGuard<()>,
    },
}

impl ImageLock<'_> {
    /// Lets other starts in once an import is done, without a gap in which GC could remove it.
    fn downgrade(self) -> Self {
        let ImageLock { _guard, _entry } = self;
        let _guard = match _guard {
            Guard::Exclusive { _write } => Guard::Shared {
                _read: _write.downgrade(),
            },
            shared => shared,
        };
        ImageLock { _guard, _entry }
    }
}

struct LockEntry<'a> {
    locks: &'a ImageLocks,
    name: String,
    lock: Arc<tokio::sync::RwLock<()>>,
}

impl Drop for LockEntry<'_> {
    fn drop(&mut self) {
        let mut table = self.locks.table();
        // Ours and the table's: nobody else holds or waits for this image.
        if Arc::strong_count(&self.lock) == 2 {
            table.remove(&self.name);
        }
    }
}

/// An imported image, ready to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `<zfs_root>/jails/<local name>`
    pub dataset: String,
    /// The snapshot of `<dataset>/m` that clones start from.
    pub snapshot: String,
}

impl Imported {
    /// The image's pot name: pot's `<pot>_<tag>`, or its own name beside another source's image.
    pub fn local_name(&self) -> &str {
        self.dataset.rsplit('/').next().unwrap_or(&self.dataset)
    }
}

/// Imports `image` unless this host holds it from the same source, acceptable to the current
/// policy (see [`provenance`]). The image stays locked until the returned lock is dropped; every
/// source of one `<pot>_<tag>` shares pot's name as the lock's key.
pub async fn ensure_imported<'a>(
    host: &Host,
    locks: &'a ImageLocks,
    cfg: &super::EngineConfig,
    image: &ImageRef,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(Imported, ImageLock<'a>), EngineError> {
    image.check_source(&cfg.allowed_image_dirs)?;
    let jails = cfg.jails_dataset();
    let lock = locks.shared(&image.local_name()).await;
    // Concurrent starts of a present image do not wait for each other.
    let (dataset, lock) = match provenance::find(host, &jails, &cfg.image, image).await? {
        Place::Present(dataset) => (dataset, lock),
        Place::Free(_) => {
            drop(lock);
            let lock = locks.exclusive(&image.local_name()).await;
            // The waiters of a shared import find it done.
            let dataset = match provenance::find(host, &jails, &cfg.image, image).await? {
                Place::Present(dataset) => dataset,
                Place::Free(dataset) => {
                    import(host, &cfg.image, &cfg.cache_dir, image, &dataset, progress).await?;
                    progress(format!("Imported image {}", image.display_name()));
                    dataset
                }
            };
            (dataset, lock.downgrade())
        }
    };
    let snapshot = host
        .zfs_snapshots(&format!("{dataset}/m"))
        .await
        .map_err(|e| image.err(e.to_string(), false))?
        .pop()
        .ok_or_else(|| image.err(format!("{dataset}/m has no snapshot to clone"), false))?;
    Ok((Imported { dataset, snapshot }, lock))
}

impl super::Engine {
    /// Imports `image` unless it is already there: the first step of a task start, on its own.
    /// Its progress goes to the event sink, under the image's local name. Returns the name of the
    /// pot that holds the image.
    pub async fn prepare_image(&self, image: &ImageRef) -> Result<String, EngineError> {
        let name = super::PotName::new(&image.local_name())?;
        let progress = |msg: String| self.event(&name, msg);
        ensure_imported(&self.host, &self.images, &self.cfg, image, &progress)
            .await
            .map(|(imported, _lock)| imported.local_name().to_string())
    }
}

/// Imports from the cache when it holds the image, else (or when the cached files do not verify,
/// which are then removed) from the image's URL, retrying transient failures with exponential
/// backoff; each try starts from scratch.
async fn import(
    host: &Host,
    policy: &ImagePolicy,
    cache_dir: &Path,
    image: &ImageRef,
    dataset: &str,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), EngineError> {
    let cache = CacheFiles::new(cache_dir, &image.file_name());
    // A file:// image in the cache dir is read as its source, below.
    let mut unusable = None;
    // Cached files of another source are another image: neither used nor replaced here.
    if cache.holds_image() && !image.is_kept_in(cache_dir) && cache.serves(&image.source()) {
        progress(format!(
            "Importing image {} from the cache",
            image.display_name()
        ));
        match import_cached(host, policy, &cache, image, dataset).await {
            Ok(()) => return Ok(()),
            Err(Cached::Failed(e)) => return Err(e),
            Err(Cached::Unusable(e)) => {
                tracing::warn!(
                    image = %image.local_name(),
                    file = %cache.xz.display(),
                    error = %e,
                    "cached image files do not verify; removing them and fetching the image from its URL"
                );
                cache.remove();
                unusable = Some(e);
            }
        }
    }
    let mut attempt = 1;
    let result = loop {
        match import_once(host, policy, cache_dir, image, dataset, progress).await {
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                let wait = policy.backoff * 2u32.pow(attempt - 1);
                tracing::warn!(image = %image.local_name(), error = %e, attempt, ?wait, "image import failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => break result,
        }
    };
    // Both sources failed: the cache's reason matters as much as the URL's.
    match (result, unusable) {
        (
            Err(EngineError::Image {
                image,
                reason,
                transient,
            }),
            Some(cached),
        ) => Err(EngineError::Image {
            image,
            reason: format!(
                "{reason}; the cached copy was not used: {}",
                cached_reason(&cached)
            ),
            transient,
        }),
        (result, _) => result,
    }
}

fn cached_reason(e: &EngineError) -> String {
    match e {
        EngineError::Image { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Why an import from the cache failed: the cached files themselves (then the URL may have good
/// ones), or the host receiving a verified image (which a download would not change).
enum Cached {
    Unusable(EngineError),
    Failed(EngineError),
}

/// The same verification and pass as a download, read from the cache dir; nothing is written
/// there.
async fn import_cached(
    host: &Host,
    policy: &ImagePolicy,
    cache: &CacheFiles,
    image: &ImageRef,
    dataset: &str,
) -> Result<(), Cached> {
    let read = async |path: &Path| read_small_file(image, path).await.map_err(Cached::Unusable);
    let shown = |path: &Path| path.display().to_string();
    // Removed since it was seen: by `potctl images gc`, say, in another process.
    let skein = read(&cache.skein).await?.ok_or_else(|| {
        Cached::Unusable(image.err(format!("{} vanished", shown(&cache.skein)), false))
    })?;
    let expected = parse_skein(image, &shown(&cache.skein), &skein).map_err(Cached::Unusable)?;
    let sig = if policy.pubkeys.is_empty() {
        None
    } else {
        read(&cache.sig).await?
    };
    let signer = verify_signature(image, policy, &skein, sig.as_deref(), &shown(&cache.sig))
        .map_err(Cached::Unusable)?;
    let provenance = Provenance {
        source: image.source(),
        skein: hex(&expected),
        signer,
    };
    let meta = read(&cache.meta).await?.unwrap_or_default();
    // A valid image of a kind not supported: the URL would serve the same.
    check_origin(image, &meta).map_err(Cached::Failed)?;
    let temp = format!("{dataset}_importing");
    destroy_if_exists(host, &temp)
        .await
        .map_err(|e| Cached::Failed(image.err(format!("remove a stale {temp}: {e}"), false)))?;
    let result = async {
        let feed = Feed::File {
            path: cache.xz.clone(),
            location: shown(&cache.xz),
        };
        stream_into_zfs(
            host,
            policy,
            image,
            feed,
            &temp,
            None,
            &meta,
            expected,
            &|_| {},
        )
        .await
        .map_err(|f| match f {
            StreamFailure::Image(e) => Cached::Unusable(e),
            StreamFailure::Receive(e) => Cached::Failed(e),
        })?;
        let file = image.file_name();
        finish_import(host, image, &temp, dataset, &provenance, &file)
            .await
            .map_err(Cached::Failed)
    }
    .await;
    if result.is_err() {
        remove_partial_import(host, image, &temp).await;
    }
    result
}

async fn import_once(
    host: &Host,
    policy: &ImagePolicy,
    cache_dir: &Path,
    image: &ImageRef,
    dataset: &str,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), EngineError> {
    let http = match image.source {
        Source::Http { .. } => Some(Http::new(image, policy)?),
        Source::File { .. } => None,
    };
    let xz = image.file_name();
    let skein_file = format!("{xz}.skein");
    let skein = read_small(image, http.as_ref(), &skein_file)
        .await?
        .ok_or_else(|| {
            image.err(
                format!(
                    "{} not found: a pot image needs the Skein-1024 hash of its .xz and .meta",
                    image.display_location(&skein_file)
                ),
                false,
            )
        })?;
    let expected = parse_skein(image, &image.display_location(&skein_file), &skein)?;
    let sig_file = format!("{skein_file}.sig");
    let sig = if policy.pubkeys.is_empty() {
        None
    } else {
        read_small(image, http.as_ref(), &sig_file).await?
    };
    let signer = verify_signature(
        image,
        policy,
        &skein,
        sig.as_deref(),
        &image.display_location(&sig_file),
    )?;
    let provenance = Provenance {
        source: image.source(),
        skein: hex(&expected),
        signer,
    };
    // pot treats a missing .meta as an empty one (images from before layering).
    let meta = read_small(image, http.as_ref(), &format!("{xz}.meta"))
        .await?
        .unwrap_or_default();
    check_origin(image, &meta)?;

    let cache = CacheFiles::new(cache_dir, &xz);
    // Already where the cache would keep them: not copied onto themselves, nor removed. Cached
    // files of another source stay as they are: this import is not cached then.
    let in_cache = image.is_kept_in(cache_dir);
    let caching = !in_cache && (!cache.holds_image() || cache.serves(&provenance.source));
    std::fs::create_dir_all(cache_dir).map_err(|e| {
        image.err(
            format!("create cache dir {}: {e}", cache_dir.display()),
            false,
        )
    })?;
    let temp = format!("{dataset}_importing");
    destroy_if_exists(host, &temp)
        .await
        .map_err(|e| image.err(format!("remove a stale {temp}: {e}"), false))?;
    let result = async {
        let feed = match &http {
            Some(http) => Feed::Download(http),
            None => Feed::File {
                path: PathBuf::from(image.location(&xz)),
                location: image.display_location(&xz),
            },
        };
        let copy = caching.then_some(cache.part.as_path());
        stream_into_zfs(
            host, policy, image, feed, &temp, copy, &meta, expected, progress,
        )
        .await?;
        if caching {
            cache
                .store(&meta, &skein, sig.as_deref(), &provenance.source)
                .map_err(|e| image.err(format!("cache dir {}: {e}", cache_dir.display()), false))?;
        }
        // The image owns cache files it wrote, or read in place: GC removes them with it.
        let file = if caching || in_cache {
            xz
        } else {
            String::new()
        };
        finish_import(host, image, &temp, dataset, &provenance, &file).await
    }
    .await;
    if result.is_err() {
        remove_partial_import(host, image, &temp).await;
        if caching {
            cache.remove();
        }
    }
    result
}

/// Properties of the stream that never apply: where and whether its datasets mount, whether
/// they are shared over the network. pot also excludes `encryption` where ZFS knows it (see
/// [`receive_exclusions`]).
const EXCLUDED_PROPS: [&str; 4] = ["mountpoint", "canmount", "sharenfs", "sharesmb"];

/// What `zfs receive` must exclude from an image's stream, as `-x`: [`EXCLUDED_PROPS`] and, as
/// pot's `_get_zfs_receive_extra_args` does, `encryption` where ZFS has it, so the image inherits
/// an encrypted pool's encryption instead of arriving unencrypted.
async fn receive_exclusions(
    host: &Host,
    image: &ImageRef,
    temp: &str,
) -> Result<Vec<&'static str>, EngineError> {
    let parent = temp.rsplit_once('/').map_or(temp, |(p, _)| p);
    let mut excluded = EXCLUDED_PROPS.to_vec();
    if host
        .zfs_has_property(parent, "encryption")
        .await
        .map_err(|e| image.err(e.to_string(), false))?
    {
        excluded.push("encryption");
    }
    Ok(excluded)
}

/// A received image is a pot's two datasets, `<temp>` and `<temp>/m`, unmounted, each mounting
/// (once asked to) where it inherits to under the jails dataset: a stream carrying other
/// datasets, or datasets that would mount elsewhere or not at all, is refused.
async fn check_received(host: &Host, image: &ImageRef, temp: &str) -> Result<(), EngineError> {
    let err = |e: crate::host::HostError| image.err(e.to_string(), false);
    let (jails, leaf) = temp.rsplit_once('/').unwrap_or(("", temp));
    let base = host.zfs_get(jails, "mountpoint").await.map_err(err)?;
    let expected = [
        (
            temp.to_string(),
            format!("{}/{leaf}", base.trim_end_matches('/')),
        ),
        (
            format!("{temp}/m"),
            format!("{}/{leaf}/m", base.trim_end_matches('/')),
        ),
    ];
    let found = host.zfs_mount_state(temp).await.map_err(err)?;
    let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
    if names != [expected[0].0.as_str(), expected[1].0.as_str()] {
        return Err(image.err(
            format!(
                "the image's stream holds the datasets {names:?}; a pot image holds its pot and its m only"
            ),
            false,
        ));
    }
    for (d, (_, mountpoint)) in found.iter().zip(&expected) {
        if d.mountpoint != *mountpoint || d.canmount != "on" || d.mounted {
            return Err(image.err(
                format!(
                    "received dataset {} would mount at {} (canmount {}, mounted {}), not at {mountpoint}",
                    d.name, d.mountpoint, d.canmount, d.mounted
                ),
                false,
            ));
        }
    }
    Ok(())
}

/// Checks the received image, marks it as the driver's (for GC, with the cache file it owns, if
/// any) with its provenance, gives it its name and mounts it where pot keeps it. A failure after
/// the rename removes the image again.
async fn finish_import(
    host: &Host,
    image: &ImageRef,
    temp: &str,
    dataset: &str,
    provenance: &Provenance,
    cache_file: &str,
) -> Result<(), EngineError> {
    let err = |e: crate::host::HostError| image.err(e.to_string(), false);
    check_received(host, image, temp).await?;
    let mut props = vec![(gc::IMAGE_PROP, gc::stamp(cache_file))];
    props.extend(provenance.props());
    host.zfs_set_props(temp, &props).await.map_err(err)?;
    host.zfs_rename(temp, dataset).await.map_err(err)?;
    let mounted = async {
        host.zfs_mount(dataset).await?;
        host.zfs_mount(&format!("{dataset}/m")).await
    }
    .await;
    if let Err(e) = mounted {
        remove_partial_import(host, image, dataset).await;
        return Err(err(e));
    }
    Ok(())
}

async fn remove_partial_import(host: &Host, image: &ImageRef, temp: &str) {
    if let Err(e) = destroy_if_exists(host, temp).await {
        tracing::error!(image = %image.local_name(), error = %e, "could not remove the partial import {temp}");
    }
}

async fn destroy_if_exists(host: &Host, dataset: &str) -> Result<(), crate::host::HostError> {
    match host.zfs_destroy_recursive(dataset).await {
        Err(e) if !e.is_absent() => Err(e),
        _ => Ok(()),
    }
}

/// A whole small file; `None` when it does not exist.
async fn read_small(
    image: &ImageRef,
    http: Option<&Http<'_>>,
    file: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    match http {
        Some(http) => http.small(file, SMALL_FILE_LIMIT).await,
        None => read_small_file(image, Path::new(&image.location(file))).await,
    }
}

/// A whole small local file; `None` when it does not exist. Read on the blocking pool, and only
/// when it is a regular file: a job can make a `file://` image's `.skein` a FIFO.
async fn read_small_file(image: &ImageRef, path: &Path) -> Result<Option<Vec<u8>>, EngineError> {
    let owned = path.to_path_buf();
    files::off_runtime(move || files::read_regular(&owned, SMALL_FILE_LIMIT))
        .await
        .map_err(|e| image.err(format!("read {}: {e}", path.display()), false))
}

/// A `.skein` file is the hex digest and a newline, as `skein1024 -q` prints it.
fn parse_skein(image: &ImageRef, location: &str, text: &[u8]) -> Result<Vec<u8>, EngineError> {
    let hex = std::str::from_utf8(text).unwrap_or_default().trim();
    let bytes: Option<Vec<u8>> = (hex.len() == 256)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes.ok_or_else(|| {
        image.err(
            format!("{location} is not a Skein-1024 hash (256 hex digits)"),
            false,
        )
    })
}

/// The signature covers the `.skein` file, which covers the image (as with `signify -V` in pot).
fn verify_signature(
    image: &ImageRef,
    policy: &ImagePolicy,
    skein: &[u8],
    sig: Option<&[u8]>,
    sig_location: &str,
) -> Result<Signer, EngineError> {
    let Some(sig) = sig else {
        if policy.require_signature {
            return Err(image.err(
                format!(
                    "{sig_location} not found: the image is unsigned and require_signature is set"
                ),
                false,
            ));
        }
        return Ok(Signer::Unsigned);
    };
    let (signature, _) = libsignify::Signature::from_base64(
        std::str::from_utf8(sig).unwrap_or_default(),
    )
    .map_err(|e| {
        image.err(
            format!("{sig_location}: not a signify signature: {e}"),
            false,
        )
    })?;
    let signer = signature.signer_keynum();
    for (path, key) in load_pubkeys(image, policy)? {
        if key.keynum() == signer {
            return key
                .verify(skein, &signature)
                .map(|()| Signer::Key(hex(signer.as_ref())))
                .map_err(|e| {
                    image.err(
                        format!(
                            "{sig_location}: bad signature of {}.skein with key {}: {e}",
                            image.file_name(),
                            path.display()
                        ),
                        false,
                    )
                });
        }
    }
    Err(image.err(
        format!(
            "{sig_location}: signed by key number {}, which is not among the configured public keys",
            signer.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        false,
    ))
}

/// The configured signify public keys, each with its file.
fn load_pubkeys(
    image: &ImageRef,
    policy: &ImagePolicy,
) -> Result<Vec<(PathBuf, libsignify::PublicKey)>, EngineError> {
    policy
        .pubkeys
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    libsignify::PublicKey::from_base64(&text)
                        .map(|(k, _)| (path.clone(), k))
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| image.err(format!("public key {}: {e}", path.display()), false))
        })
        .collect()
}

/// `.meta` holds the origin of a layered image (`<pot>:<tag>@<snap>`) or `-`.
fn check_origin(image: &ImageRef, meta: &[u8]) -> Result<(), EngineError> {
    let text = String::from_utf8_lossy(meta);
    let origin = text.lines().next().unwrap_or("").trim();
    if !origin.is_empty() && origin != "-" {
        return Err(image.err(
            format!("layered image (origin {origin}) is not supported yet"),
            false,
        ));
    }
    Ok(())
}

/// The image's files in the cache dir. The `.xz` is written through a `.part` file during the
/// stream and renamed into place only once the import succeeded.
struct CacheFiles {
    part: PathBuf,
    xz: PathBuf,
    meta: PathBuf,
    skein: PathBuf,
    sig: PathBuf,
    /// The source URL of files the driver downloaded; absent for files put there by pot or the
    /// operator, which serve every source of their name.
    source: PathBuf,
}

impl CacheFiles {
    fn new(dir: &Path, xz: &str) -> CacheFiles {
        CacheFiles {
            part: dir.join(format!("{xz}.part")),
            xz: dir.join(xz),
            meta: dir.join(format!("{xz}.meta")),
            skein: dir.join(format!("{xz}.skein")),
            sig: dir.join(format!("{xz}.skein.sig")),
            source: dir.join(format!("{xz}.source")),
        }
    }

    /// Whether the cached files may stand in for `source`: the operator's (or pot's), or ones the
    /// driver downloaded from that very source. A job's download never serves another's request.
    fn serves(&self, source: &str) -> bool {
        match std::fs::read_to_string(&self.source) {
            Ok(recorded) => recorded.trim_end() == source,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// The files an import from the cache needs (`.meta` may be absent, as pot allows).
    fn holds_image(&self) -> bool {
        self.xz.is_file() && self.skein.is_file()
    }

    fn store(
        &self,
        meta: &[u8],
        skein: &[u8],
        sig: Option<&[u8]>,
        source: &str,
    ) -> std::io::Result<()> {
        std::fs::write(&self.source, format!("{source}\n"))?;
        std::fs::write(&self.meta, meta)?;
        std::fs::write(&self.skein, skein)?;
        match sig {
            Some(sig) => std::fs::write(&self.sig, sig)?,
            None => remove_if_exists(&self.sig)?,
        }
        std::fs::rename(&self.part, &self.xz)
    }

    fn remove(&self) {
        for f in [
            &self.part,
            &self.xz,
            &self.meta,
            &self.skein,
            &self.sig,
            &self.source,
        ] {
            if let Err(e) = remove_if_exists(f) {
                tracing::error!(file = %f.display(), error = %e, "could not remove a cache file");
            }
        }
    }
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where the `.xz` bytes come from.
enum Feed<'a> {
    Download(&'a Http<'a>),
    /// A `file://` image or the cache; `location` names it in errors.
    File {
        path: PathBuf,
        location: String,
    },
}

/// A failed pass: `Image` when the image's bytes were at fault (read, size, xz, hash), else
/// `Receive`, the host's side.
enum StreamFailure {
    Image(EngineError),
    Receive(EngineError),
}

impl From<StreamFailure> for EngineError {
    fn from(f: StreamFailure) -> EngineError {
        match f {
            StreamFailure::Image(e) | StreamFailure::Receive(e) => e,
        }
    }
}

/// Push the `.xz` from `feed` through hasher, the cache file `copy` (if any), decoder and
/// `zfs receive <temp>`. Succeeds only when the whole stream was received and its hash matched.
#[allow(clippy::too_many_arguments)]
async fn stream_into_zfs(
    host: &Host,
    policy: &ImagePolicy,
    image: &ImageRef,
    feed: Feed<'_>,
    temp: &str,
    copy: Option<&Path>,
    meta: &[u8],
    expected: Vec<u8>,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), StreamFailure> {
    let xz = image.file_name();
    let out = copy
        .map(|part| {
            std::fs::File::create(part)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|e| image.err(format!("create {}: {e}", part.display()), false))
        })
        .transpose()
        .map_err(StreamFailure::Receive)?;
    let mut tee = Tee {
        inner: Box::new(std::io::empty()),
        out,
        hasher: Skein1024::new(),
        read: 0,
        max_size: policy.max_size,
        failure: FirstFailure::default(),
        image: image.clone(),
        location: image.display_location(&xz),
    };
    let (http, tx) = match feed {
        Feed::Download(http) => {
            let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
            tee.inner = Box::new(ChannelReader {
                rx,
                current: bytes::Bytes::new(),
            });
            (Some(http), Some(tx))
        }
        Feed::File { path, location } => {
            // Never waits on a FIFO: the read itself runs on the blocking pool.
            tee.inner = Box::new(files::open_regular(&path).map_err(|e| {
                StreamFailure::Image(image.err(format!("read {location}: {e}"), false))
            })?);
            tee.location = location;
            (None, None)
        }
    };
    // A local image is cheap to read to its end: a receive that failed on it is checked too,
    // so corrupt bytes are told apart from a failing host.
    let verify_on_failure = http.is_none();
    let checked = Checked {
        location: tee.location.clone(),
        image: image.clone(),
        decoder: liblzma::read::XzDecoder::new_stream(
            tee,
            mt_decoder(image).map_err(StreamFailure::Receive)?,
        ),
        decoded: 0,
        max_size: policy.max_size,
        meta: meta.to_vec(),
        expected,
        done: false,
        failure: FirstFailure::default(),
    };
    let excluded = receive_exclusions(host, image, temp)
        .await
        .map_err(StreamFailure::Receive)?;
    let (host2, temp2) = (host.clone(), temp.to_string());
    let receive = tokio::task::spawn_blocking(move || {
        receive_blocking(&host2, &temp2, &excluded, checked, verify_on_failure)
    });
    let downloaded = match (http, tx) {
        (Some(http), Some(tx)) => {
            let mut meter = Meter::new(image.display_name());
            let mut report = |done, total| {
                if let Some(msg) = meter.update(Instant::now(), done, total) {
                    progress(msg);
                }
            };
            let result = http.stream(&xz, &tx, &mut report).await;
            if let Err(e) = &result {
                // Tell the decoder the stream is broken rather than ending it cleanly.
                let _ = tx.send(Err(e.to_string())).await;
            }
            result.map_err(StreamFailure::Image)
        }
        _ => Ok(()),
    };
    let received = receive.await.expect("receive task panicked");
    // The download's own error says more than the decoder's "unexpected end".
    downloaded.and(received)
}

fn receive_blocking(
    host: &Host,
    temp: &str,
    excluded: &[&str],
    mut checked: Checked,
    verify_on_failure: bool,
) -> Result<(), StreamFailure> {
    let result = host.zfs_receive_blocking(temp, excluded, &mut checked);
    if let Some(failure) = checked.failure.take() {
        return Err(StreamFailure::Image(failure));
    }
    if let Err(e) = result {
        let received = checked.image.err(e.to_string(), false);
        if verify_on_failure {
            drain(&mut checked).map_err(StreamFailure::Image)?;
        }
        return Err(StreamFailure::Receive(received));
    }
    // zfs stops reading at the end of its own stream; the hash still covers the rest of the file.
    drain(&mut checked).map_err(StreamFailure::Image)
}

/// Reads the rest of the stream, so its size, xz integrity and hash are checked.
fn drain(checked: &mut Checked) -> Result<(), EngineError> {
    if checked.done {
        return Ok(());
    }
    std::io::copy(checked, &mut std::io::sink())
        .map(drop)
        .map_err(|e| {
            checked
                .failure
                .take()
                .unwrap_or_else(|| checked.image.err(e.to_string(), false))
        })
}

fn mt_decoder(image: &ImageRef) -> Result<liblzma::stream::Stream, EngineError> {
    // memlimit_threading must be set: left at its default, liblzma decodes on one thread.
    liblzma::stream::MtStreamBuilder::new()
        .threads(decoder_threads())
        .memlimit_threading(256 << 20)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(|e| image.err(format!("xz decoder: {e}"), false))
}

fn decoder_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u32)
        .unwrap_or(1)
}

/// The decoding side of the download channel.
struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(data)) => self.current = data,
                Some(Err(reason)) => return Err(std::io::Error::other(reason)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The compressed side: everything read is hashed and, when downloading, written to the cache
/// file.
struct Tee {
    inner: Box<dyn Read + Send>,
    /// The cache copy; none when reading from the cache.
    out: Option<BufWriter<std::fs::File>>,
    hasher: Skein1024,
    read: u64,
    max_size: u64,
    failure: FirstFailure,
    image: ImageRef,
    location: String,
}

/// The first failure of a reader in the pipeline, kept typed: the decoder and `zfs receive`
/// only pass on an `io::Error`, which would lose whether it is transient.
#[derive(Default)]
struct FirstFailure(Option<EngineError>);

impl FirstFailure {
    /// Keeps `e` unless a failure is kept already; the error to return from `read`.
    fn record(&mut self, e: EngineError) -> std::io::Error {
        let err = std::io::Error::other(e.to_string());
        self.0.get_or_insert(e);
        err
    }

    fn take(&mut self) -> Option<EngineError> {
        self.0.take()
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("read {}: {e}", self.location);
                return Err(self.failure.record(self.image.err(msg, true)));
            }
        };
        self.read += n as u64;
        if self.read > self.max_size {
            let msg = format!(
                "{} is larger than image_max_size ({} bytes)",
                self.location, self.max_size
            );
            return Err(self.failure.record(self.image.err(msg, false)));
        }
        self.hasher.update(&buf[..n]);
        if let Some(Err(e)) = self.out.as_mut().map(|out| out.write_all(&buf[..n])) {
            let msg = format!("write the cache copy of {}: {e}", self.location);
            return Err(self.failure.record(self.image.err(msg, false)));
        }
        Ok(n)
    }
}

/// The decompressed side, read by `zfs receive`: caps the size and, at the end of the stream,
/// checks the hash, so a mismatch fails the receive instead of completing it.
struct Checked {
    decoder: liblzma::read::XzDecoder<Tee>,
    decoded: u64,
    max_size: u64,
    meta: Vec<u8>,
    expected: Vec<u8>,
    done: bool,
    failure: FirstFailure,
    image: ImageRef,
    location: String,
}

impl Checked {
    fn verify(&mut self) -> std::io::Result<()> {
        let tee = self.decoder.get_mut();
        if let Err(e) = std::io::copy(tee, &mut std::io::sink()) {
            let failure = tee.failure.take();
            return Err(self
                .failure
                .record(failure.unwrap_or_else(|| self.image.err(e.to_string(), true))));
        }
        if let Some(Err(e)) = tee.out.as_mut().map(|out| out.flush()) {
            let msg = format!("write the cache copy of {}: {e}", self.location);
            return Err(self.failure.record(self.image.err(msg, false)));
        }
        let mut hasher = std::mem::take(&mut tee.hasher);
        hasher.update(&self.meta);
        if hasher.finalize()[..] != self.expected[..] {
            let msg = format!(
                "{0}.skein does not match {0} and its .meta (Skein-1024): the image is corrupt or was replaced",
                self.location
            );
            return Err(self.failure.record(self.image.err(msg, false)));
        }
        Ok(())
    }
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.decoder.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let failure = self.decoder.get_mut().failure.take().unwrap_or_else(|| {
                    self.image
                        .err(format!("{}: corrupt xz stream: {e}", self.location), false)
                });
                return Err(self.failure.record(failure));
            }
        };
        if n == 0 {
            self.verify()?;
            self.done = true;
            return Ok(0);
        }
        self.decoded += n as u64;
        if self.decoded > self.max_size {
            let msg = format!(
                "{} expands to more than image_max_size ({} bytes)",
                self.location, self.max_size
            );
            return Err(self.failure.record(self.image.err(msg, false)));
        }
        Ok(n)
    }
}

/// "Downloading image nginx-nomad_1.1.13: 45% of 103 MB", at most once per interval.
struct Meter {
    name: String,
    last: Option<Instant>,
}

impl Meter {
    fn new(name: String) -> Meter {
        Meter { name, last: None }
    }

    fn update(&mut self, now: Instant, done: u64, total: Option<u64>) -> Option<String> {
        let finished = total == Some(done);
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
            && !finished
        {
            return None;
        }
        self.last = Some(now);
        Some(match total {
            Some(t) if t > 0 => format!(
                "Downloading image {}: {}% of {}",
                self.name,
                done * 100 / t,
                human_size(t)
            ),
            _ => format!(
                "Downloading image {}: {} so far",
                self.name,
                human_size(done)
            ),
        })
    }
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{} MB", (bytes + 500_000) / 1_000_000)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}
