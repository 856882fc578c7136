//! The one streaming pass of an import: the `.xz` from a download, the cache or a `file://`
//! image through the Skein-1024 hasher (and the cache copy) into the xz decoder and `zfs receive`
//! of a temporary dataset, which succeeds only when the hash matches at the end.

use super::fetch::{Chunk, Http};
use super::{ImageError, ImageRef};
use crate::engine::{EngineError, ImagePolicy, files};
use crate::host::Host;
use crate::skein::Skein1024;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Chunks in flight between the download and the decoder, each at most `fetch::MAX_CHUNK`.
const CHANNEL_CHUNKS: usize = 64;
/// The decoder's input buffer. liblzma's reader defaults to 8 KiB, and each refill is a call
/// into the multi-threaded decoder, which takes its lock and signals its workers.
const DECODER_INPUT: usize = 256 << 10;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

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
        .map_err(|e| image.err(ImageError::Host(e)))?
    {
        excluded.push("encryption");
    }
    Ok(excluded)
}

/// Where the `.xz` bytes come from.
pub(super) enum Feed<'a> {
    Download(&'a Http<'a>),
    /// A `file://` image or the cache; `location` names it in errors.
    File {
        path: PathBuf,
        location: String,
    },
}

/// A failed pass: `Image` when the image's bytes were at fault (read, size, xz, hash), else
/// `Receive`, the host's side.
pub(super) enum StreamFailure {
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

/// One pass: where the `.xz` comes from and where it goes.
pub(super) struct Pass<'a> {
    pub(super) feed: Feed<'a>,
    /// The temporary dataset `zfs receive` creates.
    pub(super) temp: &'a str,
    /// The cache file the compressed bytes are copied to, if any.
    pub(super) copy: Option<&'a Path>,
    /// The `.meta`, hashed after the `.xz`.
    pub(super) meta: &'a [u8],
    /// The digest of `.xz ‖ .meta` the `.skein` names.
    pub(super) expected: Vec<u8>,
}

/// Push the `.xz` from `feed` through hasher, the cache file `copy` (if any), decoder and
/// `zfs receive <temp>`. Succeeds only when the whole stream was received and its hash matched.
pub(super) async fn stream_into_zfs(
    host: &Host,
    policy: &ImagePolicy,
    image: &ImageRef,
    pass: Pass<'_>,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), StreamFailure> {
    let Pass {
        feed,
        temp,
        copy,
        meta,
        expected,
    } = pass;
    let xz = image.file_name();
    let out = copy
        .map(|part| {
            std::fs::File::create(part)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|source| {
                    image.err(ImageError::Io {
                        op: "create",
                        path: part.display().to_string(),
                        source,
                    })
                })
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
            tee.inner = Box::new(files::open_regular(&path).map_err(|source| {
                StreamFailure::Image(image.err(ImageError::Io {
                    op: "read",
                    path: location.clone(),
                    source,
                }))
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
        decoder: liblzma::bufread::XzDecoder::new_stream(
            BufReader::with_capacity(DECODER_INPUT, tee),
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
        let received = checked.image.err(ImageError::Host(e));
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
                .unwrap_or_else(|| checked.image.err(ImageError::Drain(e)))
        })
}

fn mt_decoder(image: &ImageRef) -> Result<liblzma::stream::Stream, EngineError> {
    // memlimit_threading must be set: left at its default, liblzma decodes on one thread.
    liblzma::stream::MtStreamBuilder::new()
        .threads(decoder_threads())
        .memlimit_threading(256 << 20)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(|e| image.err(ImageError::XzDecoder(e)))
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
            Err(source) => {
                let location = self.location.clone();
                let e = self.image.err(ImageError::Read { location, source });
                return Err(self.failure.record(e));
            }
        };
        self.read += n as u64;
        if self.read > self.max_size {
            let e = self.image.err(ImageError::FileTooLarge {
                location: self.location.clone(),
                max: self.max_size,
            });
            return Err(self.failure.record(e));
        }
        self.hasher.update(&buf[..n]);
        if let Some(Err(source)) = self.out.as_mut().map(|out| out.write_all(&buf[..n])) {
            let e = self.image.err(cache_write(&self.location, source));
            return Err(self.failure.record(e));
        }
        Ok(n)
    }
}

/// The decompressed side, read by `zfs receive`: caps the size and, at the end of the stream,
/// checks the hash, so a mismatch fails the receive instead of completing it.
struct Checked {
    decoder: liblzma::bufread::XzDecoder<BufReader<Tee>>,
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
        let tee = self.decoder.get_mut().get_mut();
        if let Err(e) = std::io::copy(tee, &mut std::io::sink()) {
            let failure = tee.failure.take();
            return Err(self
                .failure
                .record(failure.unwrap_or_else(|| self.image.err(ImageError::ReadRest(e)))));
        }
        if let Some(Err(source)) = tee.out.as_mut().map(|out| out.flush()) {
            let e = self.image.err(cache_write(&self.location, source));
            return Err(self.failure.record(e));
        }
        let mut hasher = std::mem::take(&mut tee.hasher);
        hasher.update(&self.meta);
        if hasher.finalize()[..] != self.expected[..] {
            let location = self.location.clone();
            let e = self.image.err(ImageError::HashMismatch { location });
            return Err(self.failure.record(e));
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
            Err(source) => {
                let failure = self
                    .decoder
                    .get_mut()
                    .get_mut()
                    .failure
                    .take()
                    .unwrap_or_else(|| {
                        self.image.err(ImageError::CorruptXz {
                            location: self.location.clone(),
                            source,
                        })
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
            let e = self.image.err(ImageError::ExpandsTooFar {
                location: self.location.clone(),
                max: self.max_size,
            });
            return Err(self.failure.record(e));
        }
        Ok(n)
    }
}

fn cache_write(location: &str, source: std::io::Error) -> ImageError {
    ImageError::Io {
        op: "write the cache copy of",
        path: location.to_string(),
        source,
    }
}

/// "Downloading image nginx-nomad_1.1.13: 45% of 103 MB", at most once per interval.
pub(super) struct Meter {
    name: String,
    last: Option<Instant>,
}

impl Meter {
    pub(super) fn new(name: String) -> Meter {
        Meter { name, last: None }
    }

    pub(super) fn update(&mut self, now: Instant, done: u64, total: Option<u64>) -> Option<String> {
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
