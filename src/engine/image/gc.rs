//! Bounding the image cache: imported images no pot is cloned from are removed, oldest first,
//! with their compressed files in the cache dir.

use super::ImageError;
use super::cache::CacheFiles;
use crate::engine::{Engine, EngineError};
use std::collections::BTreeMap;

/// Set on every image this driver imports: `<file>.xz@<unix ms>`, where the file is the cache
/// file the image owns (empty when it owns none). Images without it (imported by the `pot` CLI,
/// or pots created by hand) are never removed.
pub(in crate::engine) const IMAGE_PROP: &str = "nomad-pot-driver:image";

pub(super) fn stamp(xz_file: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{xz_file}@{ms}")
}

/// What a GC run removed (or would remove) and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Local names of the removed images, oldest first.
    pub removed: Vec<String>,
    /// Local names of the images kept: in use, busy, or within the bound.
    pub kept: Vec<String>,
}

struct CachedImage {
    dataset: String,
    xz_file: String,
    imported_ms: u128,
    used: bool,
}

impl Engine {
    /// Removes unused images, oldest first, until at most `max` remain (images in use always
    /// stay). Runs under pot's global lock, so clones made by other processes are seen; images
    /// being imported or cloned by this engine are skipped.
    pub async fn gc_images(&self, max: usize, dry_run: bool) -> Result<GcReport, EngineError> {
        let _global = self.global_lock("image gc").await?;
        let jails = self.cfg.jails_dataset();
        let gc_err = |e| EngineError::Image {
            image: "cache".to_string(),
            source: ImageError::Host(e),
        };
        let rows = self
            .host
            .zfs_list_tree(&jails, IMAGE_PROP)
            .await
            .map_err(gc_err)?;
        let origins: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.origin.as_deref())
            .map(|o| o.split('@').next().unwrap_or(o))
            .collect();
        let mut images: BTreeMap<String, CachedImage> = BTreeMap::new();
        for row in &rows {
            let Some(local) = row.name.strip_prefix(&format!("{jails}/")) else {
                continue;
            };
            let Some((xz_file, ms)) = row.user_prop.as_deref().and_then(|v| v.rsplit_once('@'))
            else {
                continue;
            };
            if local.contains('/') {
                continue;
            }
            let prefix = format!("{}/", row.name);
            images.insert(
                local.to_string(),
                CachedImage {
                    used: origins
                        .iter()
                        .any(|o| *o == row.name || o.starts_with(&prefix)),
                    dataset: row.name.clone(),
                    xz_file: xz_file.to_string(),
                    imported_ms: ms.parse().unwrap_or(0),
                },
            );
        }
        let mut order: Vec<(&String, &CachedImage)> = images.iter().collect();
        order.sort_by_key(|(name, img)| (img.imported_ms, name.to_string()));
        let mut excess = order.len().saturating_sub(max);
        let mut report = GcReport::default();
        for (name, img) in order {
            // Starts lock an image under pot's name, whichever name its dataset has.
            let lock = (excess > 0 && !img.used)
                .then(|| {
                    super::provenance::lock_names(name)
                        .iter()
                        .map(|n| self.images.try_exclusive(n))
                        .collect::<Option<Vec<_>>>()
                })
                .flatten();
            let Some(_lock) = lock else {
                report.kept.push(name.clone());
                continue;
            };
            if !dry_run {
                self.host
                    .zfs_destroy_recursive(&img.dataset)
                    .await
                    .map_err(gc_err)?;
                if !img.xz_file.is_empty() {
                    CacheFiles::new(&self.cfg.cache_dir, &img.xz_file).remove();
                }
                tracing::info!(image = %name, "removed unused image");
            }
            report.removed.push(name.clone());
            excess -= 1;
        }
        Ok(report)
    }
}
