//! The imported images (pots others are cloned from, or that the driver imported) and the files
//! in the image cache.

use super::image_of_origin;
use crate::engine::{Engine, EngineError};
use serde::Serialize;
use std::collections::BTreeMap;

/// An imported image: a pot others are cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub name: String,
    /// Bytes used by its datasets.
    pub used: u64,
    /// Imported by this driver (so `potctl images gc` may remove it once unused).
    pub driver: bool,
    pub imported_at_ms: Option<u64>,
    /// The cache file it was imported from.
    pub file: Option<String>,
    /// Pots cloned from it.
    pub users: Vec<String>,
}

/// A file in the image cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheFile {
    pub file: String,
    pub size: u64,
    /// The imported image made from it, if it is still there.
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Images {
    pub images: Vec<ImageInfo>,
    pub cache: Vec<CacheFile>,
}

impl Engine {
    /// Imported images (pots that others are cloned from, or that this driver imported) and
    /// the files in the image cache.
    pub async fn images(&self) -> Result<Images, EngineError> {
        let datasets = self.pot_datasets().await?;
        let jails = self.cfg.jails_dataset();
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, d) in &datasets {
            if let Some(image) = d.origin.as_deref().and_then(|o| image_of_origin(&jails, o)) {
                users.entry(image).or_default().push(name.clone());
            }
        }
        let images: Vec<ImageInfo> = datasets
            .iter()
            .filter(|(name, d)| d.image_prop.is_some() || users.contains_key(*name))
            .map(|(name, d)| {
                let stamp = d.image_prop.as_deref().and_then(|v| v.rsplit_once('@'));
                ImageInfo {
                    name: name.clone(),
                    used: d.used.unwrap_or(0),
                    driver: d.image_prop.is_some(),
                    imported_at_ms: stamp.and_then(|(_, ms)| ms.parse().ok()),
                    file: stamp
                        .map(|(file, _)| file.to_string())
                        .filter(|f| !f.is_empty()),
                    users: users.get(name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let mut cache = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.cfg.cache_dir) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if !(file.ends_with(".xz") || file.ends_with(".xz.part")) {
                    continue;
                }
                // The driver records its source file; pot imports `<pot>_<tag>.xz` as
                // `<pot>_<tag>` with dots turned into underscores.
                let image = images
                    .iter()
                    .find(|i| i.file.as_deref() == Some(file.as_str()))
                    .or_else(|| {
                        let local = file.strip_suffix(".xz")?.replace('.', "_");
                        images.iter().find(|i| i.name == local)
                    })
                    .map(|i| i.name.clone());
                cache.push(CacheFile {
                    size: e.metadata().map(|m| m.len()).unwrap_or(0),
                    image,
                    file,
                });
            }
        }
        cache.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(Images { images, cache })
    }
}
