//! Pot images: `<pot>_<tag>.xz` (a compressed `zfs send -R`), `.xz.meta` and `.xz.skein`,
//! fetched from `http://` or `file://`, verified with Skein-1024 and received into ZFS.

use super::EngineError;
use crate::host::Host;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use skein::{Digest, Skein1024, U128};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
        for (key, value) in [("pot", pot), ("tag", tag)] {
            let ok = !value.is_empty()
                && value != "."
                && !value.contains("..")
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
            if !ok {
                return Err(EngineError::InvalidInput(format!(
                    "{key} {value:?}: only letters, digits, '.', '_', '+' and '-' are allowed (no '/', '..', spaces or control characters)"
                )));
            }
        }
        let source = if let Some(rest) = image.strip_prefix("http://") {
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
                "image {image:?}: unsupported URL scheme (supported: http://, file://)"
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

    /// The imported template pot's name: `<pot>_<tag>` with every `.` turned into `_`, as pot does.
    pub fn local_name(&self) -> String {
        format!("{}_{}", self.pot, self.tag).replace('.', "_")
    }

    fn location(&self, file: &str) -> String {
        match &self.source {
            Source::Http { base } => format!("{base}/{file}"),
            Source::File { dir } => dir.join(file).display().to_string(),
        }
    }

    fn err(&self, reason: impl Into<String>, transient: bool) -> EngineError {
        EngineError::Image {
            image: self.local_name(),
            reason: reason.into(),
            transient,
        }
    }
}

/// Serialises imports of the same image; different images proceed in parallel.
#[derive(Default)]
pub struct ImageLocks {
    locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageLocks {
    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("image lock table poisoned")
            .entry(name.to_string())
            .or_default()
            .clone()
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

/// Imports `image` unless a pot of that name already exists.
pub async fn ensure_imported(
    host: &Host,
    locks: &ImageLocks,
    jails_dataset: &str,
    cache_dir: &Path,
    image: &ImageRef,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Imported, EngineError> {
    let lock = locks.lock_for(&image.local_name());
    let _guard = lock.lock().await;
    let dataset = format!("{jails_dataset}/{}", image.local_name());
    let host_err = |e| image.err(format!("{e}"), false);
    if !host.zfs_exists(&dataset).await.map_err(host_err)? {
        progress(format!("Downloading image {}", image.local_name()));
        let files = download(image, cache_dir).await?;
        verify(image, &files).await?;
        receive(host, image, &dataset, &files.xz).await?;
        progress(format!("Imported image {}", image.local_name()));
    }
    let snapshot = host
        .zfs_snapshots(&format!("{dataset}/m"))
        .await
        .map_err(host_err)?
        .pop()
        .ok_or_else(|| image.err(format!("{dataset}/m has no snapshot to clone"), false))?;
    Ok(Imported { dataset, snapshot })
}

struct ImageFiles {
    xz: PathBuf,
    meta: PathBuf,
    skein: PathBuf,
}

/// Fetches the three files into the cache dir, each through a `.part` file renamed when complete.
async fn download(image: &ImageRef, cache_dir: &Path) -> Result<ImageFiles, EngineError> {
    std::fs::create_dir_all(cache_dir).map_err(|e| {
        image.err(
            format!("create cache dir {}: {e}", cache_dir.display()),
            false,
        )
    })?;
    let xz_name = image.file_name();
    let files = ImageFiles {
        xz: cache_dir.join(&xz_name),
        meta: cache_dir.join(format!("{xz_name}.meta")),
        skein: cache_dir.join(format!("{xz_name}.skein")),
    };
    for path in [&files.skein, &files.xz, &files.meta] {
        let name = path
            .file_name()
            .expect("cache file has a name")
            .to_string_lossy();
        fetch(image, &name, path).await?;
    }
    Ok(files)
}

async fn fetch(image: &ImageRef, file: &str, dest: &Path) -> Result<(), EngineError> {
    let location = image.location(file);
    let part = dest.with_extension(format!(
        "{}.part",
        dest.extension().unwrap_or_default().to_string_lossy()
    ));
    let result = match &image.source {
        Source::File { .. } => std::fs::copy(&location, &part)
            .map(drop)
            .map_err(|e| image.err(format!("read {location}: {e}"), false)),
        Source::Http { .. } => http_get(image, &location, &part).await,
    };
    match result {
        Ok(()) => std::fs::rename(&part, dest)
            .map_err(|e| image.err(format!("rename {}: {e}", part.display()), false)),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

async fn http_get(image: &ImageRef, url: &str, dest: &Path) -> Result<(), EngineError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| image.err(format!("bad URL {url}: {e}"), false))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(CONNECT_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| {
            image.err(
                format!("GET {url}: no response within {CONNECT_TIMEOUT:?}"),
                true,
            )
        })?
        .map_err(|e| image.err(format!("GET {url}: {e}"), true))?;
    let status = response.status();
    if !status.is_success() {
        return Err(image.err(
            format!("GET {url}: HTTP {status}"),
            status.is_server_error(),
        ));
    }
    let mut out = std::fs::File::create(dest)
        .map_err(|e| image.err(format!("create {}: {e}", dest.display()), false))?;
    let mut body = response.into_body();
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| image.err(format!("GET {url}: stalled for {IDLE_TIMEOUT:?}"), true))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| image.err(format!("GET {url}: {e}"), true))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .map_err(|e| image.err(format!("write {}: {e}", dest.display()), false))?;
        }
    }
    Ok(())
}

/// pot checks `skein1024 -q` of the image followed by its meta file against the `.skein` file.
async fn verify(image: &ImageRef, files: &ImageFiles) -> Result<(), EngineError> {
    let (xz, meta, skein) = (files.xz.clone(), files.meta.clone(), files.skein.clone());
    let image2 = image.clone();
    let verified = tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
        let expected = std::fs::read_to_string(&skein)
            .map_err(|e| image2.err(format!("read {}: {e}", skein.display()), false))?;
        let mut hasher = Skein1024::<U128>::new();
        for path in [&xz, &meta] {
            let mut f = std::fs::File::open(path)
                .map_err(|e| image2.err(format!("read {}: {e}", path.display()), false))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| image2.err(format!("read {}: {e}", path.display()), false))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        let actual: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != expected.trim() {
            return Err(image2.err(
                format!(
                    "{} does not match the Skein-1024 hash of {} and its .meta",
                    skein.display(),
                    xz.display()
                ),
                false,
            ));
        }
        let meta_text = std::fs::read_to_string(&meta)
            .map_err(|e| image2.err(format!("read {}: {e}", meta.display()), false))?;
        let origin = meta_text.lines().next().unwrap_or("").trim();
        if !origin.is_empty() && origin != "-" {
            return Err(image2.err(
                format!("layered image (origin {origin}) is not supported yet"),
                false,
            ));
        }
        Ok(())
    })
    .await
    .expect("verify task panicked");
    if verified.is_err() {
        for f in [&files.xz, &files.meta, &files.skein] {
            let _ = std::fs::remove_file(f);
        }
    }
    verified
}

/// Receives into a temporary name and renames only when complete, so no half-imported image is
/// ever visible under the final name.
async fn receive(
    host: &Host,
    image: &ImageRef,
    dataset: &str,
    xz: &Path,
) -> Result<(), EngineError> {
    let temp = format!("{dataset}_importing");
    if host
        .zfs_exists(&temp)
        .await
        .map_err(|e| image.err(e.to_string(), false))?
    {
        host.zfs_destroy_recursive(&temp)
            .await
            .map_err(|e| image.err(e.to_string(), false))?;
    }
    let (host2, temp2, xz2, image2) = (host.clone(), temp.clone(), xz.to_path_buf(), image.clone());
    let received = tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
        let file = std::fs::File::open(&xz2)
            .map_err(|e| image2.err(format!("read {}: {e}", xz2.display()), false))?;
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(decoder_threads())
            .memlimit_threading(256 << 20)
            .memlimit_stop(u64::MAX)
            .decoder()
            .map_err(|e| image2.err(format!("xz decoder: {e}"), false))?;
        let mut reader = TrackedReader {
            inner: liblzma::read::XzDecoder::new_stream(file, stream),
            error: None,
        };
        let result = host2.zfs_receive_blocking(&temp2, &mut reader);
        match (reader.error, result) {
            (Some(e), _) => Err(image2.err(
                format!("corrupt xz stream in {}: {e}", xz2.display()),
                false,
            )),
            (None, Err(e)) => Err(image2.err(e.to_string(), false)),
            (None, Ok(())) => Ok(()),
        }
    })
    .await
    .expect("receive task panicked");
    if let Err(e) = received {
        let _ = host.zfs_destroy_recursive(&temp).await;
        return Err(e);
    }
    if let Err(e) = host.zfs_rename(&temp, dataset).await {
        // A received but unrenamed image is never used: the next import starts over.
        let _ = host.zfs_destroy_recursive(&temp).await;
        return Err(image.err(e.to_string(), false));
    }
    Ok(())
}

fn decoder_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u32)
        .unwrap_or(1)
}

/// Remembers the first read error, to tell a corrupt image from a failing `zfs receive`.
struct TrackedReader<R> {
    inner: R,
    error: Option<String>,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.error.get_or_insert_with(|| e.to_string());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pot() {
        let i = ImageRef::parse(
            "http://r.example/images/",
            "nginx-nomad-amd64-13_1",
            "1.1.13",
        )
        .unwrap();
        assert_eq!(i.file_name(), "nginx-nomad-amd64-13_1_1.1.13.xz");
        assert_eq!(i.local_name(), "nginx-nomad-amd64-13_1_1_1_13");
        assert_eq!(i.location("x.xz"), "http://r.example/images/x.xz");
    }

    #[test]
    fn rejects_unsafe_names_and_schemes() {
        for (pot, tag) in [
            ("a/b", "1"),
            ("..", "1"),
            ("a b", "1"),
            ("a", "1\0"),
            ("a", ""),
        ] {
            assert!(matches!(
                ImageRef::parse("http://h/", pot, tag),
                Err(EngineError::InvalidInput(_))
            ));
        }
        assert!(ImageRef::parse("ftp://h/", "a", "1").is_err());
        assert!(ImageRef::parse("file://relative", "a", "1").is_err());
        assert!(ImageRef::parse("file:///srv/img", "a", "1").is_ok());
    }
}
