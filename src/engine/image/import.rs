//! One import of an image that is not on the host yet: from the cache when it holds the image,
//! else from its URL, with retries; the received dataset is checked, stamped and named.

use super::cache::CacheFiles;
use super::fetch::Http;
use super::provenance::Provenance;
use super::stream::{Feed, Pass, StreamFailure, stream_into_zfs};
use super::verify::{check_origin, hex, parse_skein, verify_signature};
use super::{ImageError, ImageRef, gc};
use crate::engine::{EngineError, ImagePolicy, files};
use crate::host::Host;
use std::path::{Path, PathBuf};

/// The small files are a hash, a signature and one line of origin: anything bigger is not one.
const SMALL_FILE_LIMIT: u64 = 64 << 10;

/// What one import works with: the image, where it goes, and who hears of its progress.
pub(super) struct Import<'a> {
    pub(super) host: &'a Host,
    pub(super) policy: &'a ImagePolicy,
    pub(super) cache_dir: &'a Path,
    pub(super) image: &'a ImageRef,
    /// The dataset the image is to have: pot's name for it, or its own.
    pub(super) dataset: &'a str,
    pub(super) progress: &'a (dyn Fn(String) + Send + Sync),
}

impl Import<'_> {
    /// Imports from the cache when it holds the image, else (or when the cached files do not
    /// verify, which are then removed) from the image's URL, retrying transient failures with
    /// exponential backoff; each try starts from scratch.
    pub(super) async fn run(&self) -> Result<(), EngineError> {
        let Import {
            policy,
            cache_dir,
            image,
            progress,
            ..
        } = *self;
        let cache = CacheFiles::new(cache_dir, &image.file_name());
        // A file:// image in the cache dir is read as its source, below.
        let mut unusable = None;
        // Cached files of another source are another image: neither used nor replaced here.
        if cache.holds_image() && !image.is_kept_in(cache_dir) && cache.serves(&image.source()) {
            progress(format!(
                "Importing image {} from the cache",
                image.display_name()
            ));
            match self.cached(&cache).await {
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
            match self.once().await {
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
            (Err(EngineError::Image { image, source }), Some(cached)) => Err(EngineError::Image {
                image,
                source: ImageError::CacheUnused {
                    error: Box::new(source),
                    cached: Box::new(cached),
                },
            }),
            (result, _) => result,
        }
    }

    /// The same verification and pass as a download, read from the cache dir; nothing is written
    /// there.
    async fn cached(&self, cache: &CacheFiles) -> Result<(), Cached> {
        let Import {
            host,
            policy,
            image,
            dataset,
            ..
        } = *self;
        let read = async |path: &Path| read_small_file(image, path).await.map_err(Cached::Unusable);
        let shown = |path: &Path| path.display().to_string();
        // Removed since it was seen: by `potctl images gc`, say, in another process.
        let skein = read(&cache.skein).await?.ok_or_else(|| {
            Cached::Unusable(image.err(ImageError::Vanished {
                path: shown(&cache.skein),
            }))
        })?;
        let expected =
            parse_skein(image, &shown(&cache.skein), &skein).map_err(Cached::Unusable)?;
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
            .map_err(|e| Cached::Failed(image.err(remove_stale(&temp, e))))?;
        let result = async {
            let pass = Pass {
                feed: Feed::File {
                    path: cache.xz.clone(),
                    location: shown(&cache.xz),
                },
                temp: &temp,
                copy: None,
                meta: &meta,
                expected,
            };
            stream_into_zfs(host, policy, image, pass, &|_| {})
                .await
                .map_err(|f| match f {
                    StreamFailure::Image(e) => Cached::Unusable(e),
                    StreamFailure::Receive(e) => Cached::Failed(e),
                })?;
            let file = image.file_name();
            self.finish(&temp, &provenance, &file)
                .await
                .map_err(Cached::Failed)
        }
        .await;
        if result.is_err() {
            self.remove_partial(&temp).await;
        }
        result
    }

    async fn once(&self) -> Result<(), EngineError> {
        let Import {
            host,
            policy,
            cache_dir,
            image,
            dataset,
            progress,
        } = *self;
        let http = match image.is_http() {
            true => Some(Http::new(image, policy)?),
            false => None,
        };
        let xz = image.file_name();
        let skein_file = format!("{xz}.skein");
        let skein = read_small(image, http.as_ref(), &skein_file)
            .await?
            .ok_or_else(|| {
                image.err(ImageError::NoSkein {
                    location: image.display_location(&skein_file),
                })
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
        std::fs::create_dir_all(cache_dir).map_err(|source| {
            image.err(ImageError::Io {
                op: "create cache dir",
                path: cache_dir.display().to_string(),
                source,
            })
        })?;
        let temp = format!("{dataset}_importing");
        destroy_if_exists(host, &temp)
            .await
            .map_err(|e| image.err(remove_stale(&temp, e)))?;
        let result = async {
            let feed = match &http {
                Some(http) => Feed::Download(http),
                None => Feed::File {
                    path: PathBuf::from(image.location(&xz)),
                    location: image.display_location(&xz),
                },
            };
            let pass = Pass {
                feed,
                temp: &temp,
                copy: caching.then_some(cache.part.as_path()),
                meta: &meta,
                expected,
            };
            stream_into_zfs(host, policy, image, pass, progress).await?;
            if caching {
                cache
                    .store(&meta, &skein, sig.as_deref(), &provenance.source)
                    .map_err(|source| {
                        image.err(ImageError::Io {
                            op: "cache dir",
                            path: cache_dir.display().to_string(),
                            source,
                        })
                    })?;
            }
            // The image owns cache files it wrote, or read in place: GC removes them with it.
            let file = if caching || in_cache {
                xz
            } else {
                String::new()
            };
            self.finish(&temp, &provenance, &file).await
        }
        .await;
        if result.is_err() {
            self.remove_partial(&temp).await;
            if caching {
                cache.remove();
            }
        }
        result
    }

    /// Checks the received image, marks it as the driver's (for GC, with the cache file it owns, if
    /// any) with its provenance, gives it its name and mounts it where pot keeps it. A failure after
    /// the rename removes the image again.
    async fn finish(
        &self,
        temp: &str,
        provenance: &Provenance,
        cache_file: &str,
    ) -> Result<(), EngineError> {
        let Import {
            host,
            image,
            dataset,
            ..
        } = *self;
        let err = |e| image.err(ImageError::Host(e));
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
            self.remove_partial(dataset).await;
            return Err(err(e));
        }
        Ok(())
    }

    async fn remove_partial(&self, temp: &str) {
        if let Err(e) = destroy_if_exists(self.host, temp).await {
            tracing::error!(image = %self.image.local_name(), error = %e, "could not remove the partial import {temp}");
        }
    }
}

/// Why an import from the cache failed: the cached files themselves (then the URL may have good
/// ones), or the host receiving a verified image (which a download would not change).
enum Cached {
    Unusable(EngineError),
    Failed(EngineError),
}

/// A received image is a pot's two datasets, `<temp>` and `<temp>/m`, unmounted, each mounting
/// (once asked to) where it inherits to under the jails dataset: a stream carrying other
/// datasets, or datasets that would mount elsewhere or not at all, is refused.
async fn check_received(host: &Host, image: &ImageRef, temp: &str) -> Result<(), EngineError> {
    let err = |e| image.err(ImageError::Host(e));
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
        return Err(image.err(ImageError::UnexpectedDatasets {
            names: names.iter().map(|n| n.to_string()).collect(),
        }));
    }
    for (d, (_, mountpoint)) in found.iter().zip(&expected) {
        if d.mountpoint != *mountpoint || d.canmount != "on" || d.mounted {
            return Err(image.err(ImageError::WrongMount {
                dataset: d.name.as_str().into(),
                mountpoint: d.mountpoint.as_str().into(),
                canmount: d.canmount.as_str().into(),
                mounted: d.mounted,
                expected: mountpoint.as_str().into(),
            }));
        }
    }
    Ok(())
}

fn remove_stale(dataset: &str, source: crate::host::HostError) -> ImageError {
    ImageError::RemoveStale {
        dataset: dataset.into(),
        source,
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
        .map_err(|source| {
            image.err(ImageError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            })
        })
}
