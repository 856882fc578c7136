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
#[cfg(test)]
mod tests;
mod trust;

pub use export::{ExportOptions, Exported};
pub use gc::GcReport;
pub(super) use gc::IMAGE_PROP;
pub(crate) use trust::read_ca_file;

use super::{EngineError, ImagePolicy};
use crate::host::Host;
use crate::skein::Skein1024;
use fetch::{Chunk, Http};
use libsignify::Codeable;
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
    Http { base: String },
    File { dir: PathBuf },
}

impl ImageRef {
    /// Validates the task config's `image`, `pot` and `tag` without touching the host.
    pub fn parse(image: &str, pot: &str, tag: &str) -> Result<ImageRef, EngineError> {
        check_name("pot", pot)?;
        check_name("tag", tag)?;
        let source = if let Some(rest) = image
            .strip_prefix("http://")
            .or_else(|| image.strip_prefix("https://"))
        {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(EngineError::InvalidInput(format!(
                    "image {image:?}: missing host"
                )));
            }
            Source::Http {
                base: image.trim_end_matches('/').to_string(),
            }
        } else if let Some(path) = image.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(EngineError::InvalidInput(format!(
                    "image {image:?}: file:// needs an absolute path (file:///srv/images)"
                )));
            }
            Source::File {
                dir: PathBuf::from(path),
            }
        } else {
            return Err(EngineError::InvalidInput(format!(
                "image {image:?}: unsupported URL scheme (supported: http://, https://, file://)"
            )));
        };
        Ok(ImageRef {
            source,
            pot: pot.to_string(),
            tag: tag.to_string(),
        })
    }

    /// `<pot>_<tag>.xz`, the file name pot exports.
    pub fn file_name(&self) -> String {
        format!("{}_{}.xz", self.pot, self.tag)
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
        matches!(&self.source, Source::Http { base } if base.starts_with("https://"))
    }

    fn location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { base } => format!("{base}/{file}"),
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

/// Imports `image` unless a pot of that name already exists. The image stays locked until the
/// returned lock is dropped.
pub async fn ensure_imported<'a>(
    host: &Host,
    locks: &'a ImageLocks,
    cfg: &super::EngineConfig,
    image: &ImageRef,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(Imported, ImageLock<'a>), EngineError> {
    let lock = locks.shared(&image.local_name()).await;
    let dataset = format!("{}/{}", cfg.jails_dataset(), image.local_name());
    let root = format!("{dataset}/m");
    let host_err = |e| image.err(format!("{e}"), false);
    // One zfs call when the image is there; concurrent starts of it do not wait for each other.
    let (snapshots, lock) = match host.zfs_snapshots(&root).await {
        Err(e) if e.is_absent() => {
            drop(lock);
            let lock = locks.exclusive(&image.local_name()).await;
            // The waiters of a shared import find it done.
            let snapshots = match host.zfs_snapshots(&root).await {
                Err(e) if e.is_absent() => {
                    import(host, &cfg.image, &cfg.cache_dir, image, &dataset, progress).await?;
                    progress(format!("Imported image {}", image.display_name()));
                    host.zfs_snapshots(&root).await
                }
                found => found,
            };
            (snapshots, lock.downgrade())
        }
        found => (found, lock),
    };
    let snapshot = snapshots
        .map_err(host_err)?
        .pop()
        .ok_or_else(|| image.err(format!("{dataset}/m has no snapshot to clone"), false))?;
    Ok((Imported { dataset, snapshot }, lock))
}

impl super::Engine {
    /// Imports `image` unless it is already there: the first step of a task start, on its own.
    /// Its progress goes to the event sink, under the image's local name.
    pub async fn prepare_image(&self, image: &ImageRef) -> Result<(), EngineError> {
        let name = super::PotName::new(&image.local_name())?;
        let progress = |msg: String| self.event(&name, msg);
        ensure_imported(&self.host, &self.images, &self.cfg, image, &progress)
            .await
            .map(drop)
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
    if cache.holds_image() && !image.is_kept_in(cache_dir) {
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
    let read = |path: &Path| read_small_file(image, path).map_err(Cached::Unusable);
    let shown = |path: &Path| path.display().to_string();
    // Removed since it was seen: by `potctl images gc`, say, in another process.
    let skein = read(&cache.skein)?.ok_or_else(|| {
        Cached::Unusable(image.err(format!("{} vanished", shown(&cache.skein)), false))
    })?;
    let expected = parse_skein(image, &shown(&cache.skein), &skein).map_err(Cached::Unusable)?;
    let sig = if policy.pubkeys.is_empty() {
        None
    } else {
        read(&cache.sig)?
    };
    verify_signature(image, policy, &skein, sig.as_deref(), &shown(&cache.sig))
        .map_err(Cached::Unusable)?;
    let meta = read(&cache.meta)?.unwrap_or_default();
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
        finish_import(host, image, &temp, dataset)
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
    verify_signature(
        image,
        policy,
        &skein,
        sig.as_deref(),
        &image.display_location(&sig_file),
    )?;
    // pot treats a missing .meta as an empty one (images from before layering).
    let meta = read_small(image, http.as_ref(), &format!("{xz}.meta"))
        .await?
        .unwrap_or_default();
    check_origin(image, &meta)?;

    let cache = CacheFiles::new(cache_dir, &xz);
    // Already where the cache would keep them: not copied onto themselves, nor removed.
    let in_cache = image.is_kept_in(cache_dir);
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
        let copy = (!in_cache).then_some(cache.part.as_path());
        stream_into_zfs(
            host, policy, image, feed, &temp, copy, &meta, expected, progress,
        )
        .await?;
        if !in_cache {
            cache
                .store(&meta, &skein, sig.as_deref())
                .map_err(|e| image.err(format!("cache dir {}: {e}", cache_dir.display()), false))?;
        }
        finish_import(host, image, &temp, dataset).await
    }
    .await;
    if result.is_err() {
        remove_partial_import(host, image, &temp).await;
        if !in_cache {
            cache.remove();
        }
    }
    result
}

/// Marks the received image as the driver's (for GC) and gives it its name.
async fn finish_import(
    host: &Host,
    image: &ImageRef,
    temp: &str,
    dataset: &str,
) -> Result<(), EngineError> {
    host.zfs_set(temp, gc::IMAGE_PROP, &gc::stamp(&image.file_name()))
        .await
        .map_err(|e| image.err(e.to_string(), false))?;
    host.zfs_rename(temp, dataset)
        .await
        .map_err(|e| image.err(e.to_string(), false))
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
        None => read_small_file(image, Path::new(&image.location(file))),
    }
}

/// A whole small local file; `None` when it does not exist.
fn read_small_file(image: &ImageRef, path: &Path) -> Result<Option<Vec<u8>>, EngineError> {
    let read = std::fs::File::open(path).and_then(|f| {
        let mut out = Vec::new();
        f.take(SMALL_FILE_LIMIT + 1).read_to_end(&mut out)?;
        Ok(out)
    });
    match read {
        Ok(bytes) if bytes.len() as u64 > SMALL_FILE_LIMIT => Err(image.err(
            format!("{}: larger than {SMALL_FILE_LIMIT} bytes", path.display()),
            false,
        )),
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(image.err(format!("read {}: {e}", path.display()), false)),
    }
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
) -> Result<(), EngineError> {
    let Some(sig) = sig else {
        if policy.require_signature {
            return Err(image.err(
                format!(
                    "{sig_location} not found: the image is unsigned and require_signature is set"
                ),
                false,
            ));
        }
        return Ok(());
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
    for path in &policy.pubkeys {
        let key = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                libsignify::PublicKey::from_base64(&text)
                    .map(|(k, _)| k)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| image.err(format!("public key {}: {e}", path.display()), false))?;
        if key.keynum() == signer {
            return key.verify(skein, &signature).map_err(|e| {
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
}

impl CacheFiles {
    fn new(dir: &Path, xz: &str) -> CacheFiles {
        CacheFiles {
            part: dir.join(format!("{xz}.part")),
            xz: dir.join(xz),
            meta: dir.join(format!("{xz}.meta")),
            skein: dir.join(format!("{xz}.skein")),
            sig: dir.join(format!("{xz}.skein.sig")),
        }
    }

    /// The files an import from the cache needs (`.meta` may be absent, as pot allows).
    fn holds_image(&self) -> bool {
        self.xz.is_file() && self.skein.is_file()
    }

    fn store(&self, meta: &[u8], skein: &[u8], sig: Option<&[u8]>) -> std::io::Result<()> {
        std::fs::write(&self.meta, meta)?;
        std::fs::write(&self.skein, skein)?;
        match sig {
            Some(sig) => std::fs::write(&self.sig, sig)?,
            None => remove_if_exists(&self.sig)?,
        }
        std::fs::rename(&self.part, &self.xz)
    }

    fn remove(&self) {
        for f in [&self.part, &self.xz, &self.meta, &self.skein, &self.sig] {
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
            tee.inner = Box::new(std::fs::File::open(&path).map_err(|e| {
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
    let (host2, temp2) = (host.clone(), temp.to_string());
    let receive = tokio::task::spawn_blocking(move || {
        receive_blocking(&host2, &temp2, checked, verify_on_failure)
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
    mut checked: Checked,
    verify_on_failure: bool,
) -> Result<(), StreamFailure> {
    let result = host.zfs_receive_blocking(temp, &mut checked);
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
