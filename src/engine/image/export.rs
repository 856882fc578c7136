//! `pot export`: a single pot's snapshot as pot's image files, the `.xz` multi-block so the
//! multi-threaded decoder can use every core on import.

use super::reference::check_name;
use super::verify::hex;
use crate::engine::{Engine, EngineError};
use crate::host::Host;
use crate::skein::Skein1024;
use libsignify::Codeable;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What `pot export -p <pot> [-t tag] [-D dir] [-l level] [-S seckey]` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    pub pot: String,
    /// Default: the snapshot's name, as pot does.
    pub tag: Option<String>,
    pub dir: PathBuf,
    /// xz preset, 0–9 (pot's default: 6).
    pub level: u32,
    /// An unencrypted signify secret key: also writes `.xz.skein.sig`.
    pub seckey: Option<PathBuf>,
}

/// The files written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub xz: PathBuf,
    pub snapshot: String,
    pub tag: String,
    pub signed: bool,
}

impl Engine {
    /// Writes `<dir>/<pot>_<tag>.xz`, `.xz.meta`, `.xz.skein` (and `.xz.skein.sig`) from the
    /// pot's only snapshot, then records `:pot.tag` and `:pot.snap` on the pot as pot does.
    /// On failure no file is left.
    pub async fn export(&self, o: &ExportOptions) -> Result<Exported, EngineError> {
        check_name("pot", &o.pot)?;
        if let Some(tag) = &o.tag {
            check_name("tag", tag)?;
        }
        if o.level > 9 {
            return Err(EngineError::InvalidInput(format!(
                "compression level {} is not in 0-9",
                o.level
            )));
        }
        let pot = o.pot.as_str();
        let state = |reason: String| EngineError::State {
            pot: pot.to_string(),
            reason,
        };
        let dataset = format!("{}/{pot}", self.cfg.jails_dataset());
        if !self
            .host
            .zfs_exists(&dataset)
            .await
            .map_err(EngineError::host(pot))?
        {
            return Err(EngineError::NotFound {
                pot: pot.to_string(),
            });
        }
        let tree = self
            .host
            .zfs_list_tree(&dataset, ":pot.tag")
            .await
            .map_err(EngineError::host(pot))?;
        if let Some(clone) = tree.iter().find(|d| d.origin.is_some()) {
            return Err(state(format!(
                "export: {} is a clone of {}; layered images are not supported yet",
                clone.name,
                clone.origin.as_deref().unwrap_or_default()
            )));
        }
        let snaps = self
            .host
            .zfs_snapshots(&dataset)
            .await
            .map_err(EngineError::host(pot))?;
        let [snapshot] = snaps.as_slice() else {
            return Err(state(format!(
                "export: {dataset} has {} snapshots; exactly one is needed (pot snapshot, pot purge-snapshots)",
                snaps.len()
            )));
        };
        let tag = o.tag.clone().unwrap_or_else(|| snapshot.clone());
        check_name("tag", &tag)?;
        let xz = o.dir.join(format!("{pot}_{tag}.xz"));
        let files = ExportFiles::new(&xz);
        let (host, source) = (self.host.clone(), format!("{dataset}@{snapshot}"));
        let (o2, files2, pot2) = (o.clone(), files.clone(), pot.to_string());
        let written = tokio::task::spawn_blocking(move || {
            write_image(&host, &source, &o2, &files2)
                .map_err(|reason| EngineError::State { pot: pot2, reason })
        })
        .await
        .expect("export task panicked");
        if let Err(e) = written {
            files.remove();
            return Err(e);
        }
        for (prop, value) in [(":pot.tag", tag.as_str()), (":pot.snap", snapshot)] {
            self.host
                .zfs_set(&dataset, prop, value)
                .await
                .map_err(EngineError::host(pot))?;
        }
        Ok(Exported {
            xz,
            snapshot: snapshot.clone(),
            tag,
            signed: o.seckey.is_some(),
        })
    }
}

#[derive(Clone)]
struct ExportFiles {
    part: PathBuf,
    xz: PathBuf,
    meta: PathBuf,
    skein: PathBuf,
    sig: PathBuf,
}

impl ExportFiles {
    fn new(xz: &Path) -> ExportFiles {
        let with = |suffix: &str| {
            let mut p = xz.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        ExportFiles {
            part: with(".part"),
            xz: xz.to_path_buf(),
            meta: with(".meta"),
            skein: with(".skein"),
            sig: with(".skein.sig"),
        }
    }

    fn remove(&self) {
        for f in [&self.part, &self.xz, &self.meta, &self.skein, &self.sig] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// `zfs send -R | xz -T0` with the hash taken on the way to the file, then meta, hash, signature.
fn write_image(
    host: &Host,
    snapshot: &str,
    o: &ExportOptions,
    files: &ExportFiles,
) -> Result<(), String> {
    let file = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let out = std::fs::File::create(&files.part).map_err(|e| file(&files.part, e))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    // liblzma's default block size for -T (3 × the preset's dictionary) gives several blocks per
    // image, each decodable on its own thread.
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .preset(o.level)
        .encoder()
        .map_err(|e| format!("xz encoder: {e}"))?;
    let mut encoder = liblzma::write::XzEncoder::new_stream(
        HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, out),
            hasher: Skein1024::new(),
        },
        stream,
    );
    host.zfs_send_recursive_blocking(snapshot, &mut encoder)
        .map_err(|e| e.to_string())?;
    let mut hashed = encoder.finish().map_err(|e| file(&files.part, e))?;
    hashed.inner.flush().map_err(|e| file(&files.part, e))?;
    // Non-layered images have `-` as their origin.
    let meta = b"-\n";
    hashed.hasher.update(meta);
    let skein = format!("{}\n", hex(&hashed.hasher.finalize()));
    std::fs::write(&files.meta, meta).map_err(|e| file(&files.meta, e))?;
    std::fs::write(&files.skein, &skein).map_err(|e| file(&files.skein, e))?;
    if let Some(seckey) = &o.seckey {
        let sig = sign(seckey, skein.as_bytes())?;
        std::fs::write(&files.sig, sig).map_err(|e| file(&files.sig, e))?;
    }
    std::fs::rename(&files.part, &files.xz).map_err(|e| file(&files.xz, e))
}

/// What `signify -S -s <seckey> -m <file>.skein` writes.
fn sign(seckey: &Path, message: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(seckey).map_err(|e| format!("{}: {e}", seckey.display()))?;
    let (key, _) = libsignify::PrivateKey::from_base64(&text)
        .map_err(|e| format!("{}: not a signify secret key: {e}", seckey.display()))?;
    if key.is_encrypted() {
        return Err(format!(
            "{}: passphrase-protected keys are not supported (make one with signify -G -n)",
            seckey.display()
        ));
    }
    let pubkey = seckey.with_extension("pub");
    let pubkey_name = pubkey.file_name().unwrap_or_default().to_string_lossy();
    Ok(key
        .sign(message)
        .to_file_encoding(&format!("verify with {pubkey_name}")))
}

struct HashingWriter<W> {
    inner: W,
    hasher: Skein1024,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
