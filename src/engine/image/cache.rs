//! The image's files in the cache dir, where pot keeps them too.

use std::path::{Path, PathBuf};

/// The image's files in the cache dir. The `.xz` is written through a `.part` file during the
/// stream and renamed into place only once the import succeeded.
pub(super) struct CacheFiles {
    pub(super) part: PathBuf,
    pub(super) xz: PathBuf,
    pub(super) meta: PathBuf,
    pub(super) skein: PathBuf,
    pub(super) sig: PathBuf,
    /// The source URL of files the driver downloaded; absent for files put there by pot or the
    /// operator, which serve every source of their name.
    source: PathBuf,
}

impl CacheFiles {
    pub(super) fn new(dir: &Path, xz: &str) -> CacheFiles {
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
    pub(super) fn serves(&self, source: &str) -> bool {
        match std::fs::read_to_string(&self.source) {
            Ok(recorded) => recorded.trim_end() == source,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// The files an import from the cache needs (`.meta` may be absent, as pot allows).
    pub(super) fn holds_image(&self) -> bool {
        self.xz.is_file() && self.skein.is_file()
    }

    pub(super) fn store(
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

    pub(super) fn remove(&self) {
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
