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
//!
//! Rooms: [`reference`] (what a task names), [`locks`], [`import`] (one import, as an [`Import`]),
//! [`stream`] (the pass), [`verify`] (the small files), [`cache`], [`fetch`], [`trust`],
//! [`proxy`] and [`connect`] (the transport), [`provenance`] (which image a request may use),
//! [`gc`] and [`export`]; [`error`] says why an image failed.

mod cache;
mod connect;
mod error;
mod export;
mod fetch;
mod gc;
mod import;
mod locks;
mod provenance;
mod proxy;
mod reference;
mod stream;
#[cfg(test)]
mod tests;
mod trust;
mod verify;

pub use error::ImageError;
pub use export::{ExportOptions, Exported};
pub use gc::GcReport;
pub(super) use gc::IMAGE_PROP;
pub use locks::{ImageLock, ImageLocks};
pub use proxy::Proxies;
pub use reference::ImageRef;
pub use trust::CaFileError;
pub(crate) use trust::read_ca_file;

use super::EngineError;
use crate::host::Host;
use import::Import;
use provenance::Place;

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
    let (found, lock) = match provenance::find(host, &jails, &cfg.image, image).await? {
        Place::Present(found) => (found, lock),
        Place::Free(_) => {
            drop(lock);
            let lock = locks.exclusive(&image.local_name()).await;
            // The waiters of a shared import find it done.
            let found = match provenance::find(host, &jails, &cfg.image, image).await? {
                Place::Present(found) => found,
                Place::Free(dataset) => {
                    let import = Import {
                        host,
                        policy: &cfg.image,
                        cache_dir: &cfg.cache_dir,
                        image,
                        dataset: &dataset,
                        progress,
                    };
                    import.run().await?;
                    progress(format!("Imported image {}", image.display_name()));
                    let snapshots = host
                        .zfs_snapshots(&format!("{dataset}/m"))
                        .await
                        .map_err(|e| image.err(ImageError::Host(e)))?;
                    provenance::Found { dataset, snapshots }
                }
            };
            (found, lock.downgrade())
        }
    };
    let provenance::Found {
        dataset,
        mut snapshots,
    } = found;
    let snapshot = snapshots.pop().ok_or_else(|| {
        image.err(ImageError::NoSnapshot {
            dataset: dataset.clone(),
        })
    })?;
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
