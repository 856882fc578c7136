//! The simulator's `zfs send` stream: a dataset tree ([`crate::tree`]) written out and read back.
//!
//! Format (all integers little endian, strings = u32 length + bytes):
//! `MAGIC`, then per dataset `S name snap creation:u64 nprops:u32 (key value)*`, its entries
//! (`D path mode uid gid`, `F path mode uid gid len:u64 bytes`, `L path target uid gid`) and `E`;
//! finally `Z total:u64 hash[32]` where `total` counts every byte before it (magic through `Z`)
//! and `hash` is Skein-512-256 of those bytes. A short or altered stream fails the check.

use crate::tree::{Entry, walk};
use skein::{Digest, Skein512, U32};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"SIMZFS\x00\x01";

/// One dataset in a stream: name relative to the sent top (`""` for the top itself).
#[derive(Debug)]
pub struct StreamDataset {
    pub rel: String,
    pub snap: String,
    pub creation: u64,
    pub props: Vec<(String, String)>,
}

/// Hashes and counts everything written through it.
pub struct StreamWriter<W: Write> {
    out: W,
    hash: Skein512<U32>,
    total: u64,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut w = StreamWriter {
            out,
            hash: Skein512::<U32>::new(),
            total: 0,
        };
        w.put(MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.hash.update(b);
        self.total += b.len() as u64;
        self.out.write_all(b)
    }

    fn put_u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    fn put_u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    fn put_str(&mut self, s: &[u8]) -> io::Result<()> {
        let len =
            u32::try_from(s.len()).map_err(|_| io::Error::other("string too long for stream"))?;
        self.put_u32(len)?;
        self.put(s)
    }

    fn put_owner(&mut self, m: &fs::Metadata) -> io::Result<()> {
        self.put_u32(m.uid())?;
        self.put_u32(m.gid())
    }

    /// Writes one dataset: its header and every entry of `dir` outside `exclude`.
    pub fn dataset(
        &mut self,
        ds: &StreamDataset,
        dir: &Path,
        exclude: &[PathBuf],
    ) -> io::Result<()> {
        self.put(b"S")?;
        self.put_str(ds.rel.as_bytes())?;
        self.put_str(ds.snap.as_bytes())?;
        self.put_u64(ds.creation)?;
        self.put_u32(ds.props.len() as u32)?;
        for (k, v) in &ds.props {
            self.put_str(k.as_bytes())?;
            self.put_str(v.as_bytes())?;
        }
        use std::os::unix::ffi::OsStrExt;
        for e in walk(dir, exclude)? {
            match e {
                Entry::Dir(r) => {
                    let m = fs::symlink_metadata(dir.join(&r))?;
                    self.put(b"D")?;
                    self.put_str(r.as_os_str().as_bytes())?;
                    self.put_u32(m.mode() & 0o7777)?;
                    self.put_owner(&m)?;
                }
                Entry::File(r) => {
                    let m = fs::symlink_metadata(dir.join(&r))?;
                    self.put(b"F")?;
                    self.put_str(r.as_os_str().as_bytes())?;
                    self.put_u32(m.mode() & 0o7777)?;
                    self.put_owner(&m)?;
                    self.put_u64(m.len())?;
                    let mut f = fs::File::open(dir.join(&r))?;
                    let mut buf = vec![0u8; 1 << 16];
                    let mut left = m.len();
                    while left > 0 {
                        let n = f.read(&mut buf[..left.min(1 << 16) as usize])?;
                        if n == 0 {
                            return Err(io::Error::other(format!(
                                "{} shrank while sending",
                                r.display()
                            )));
                        }
                        self.put(&buf[..n])?;
                        left -= n as u64;
                    }
                }
                Entry::Symlink(r) => {
                    let m = fs::symlink_metadata(dir.join(&r))?;
                    let target = fs::read_link(dir.join(&r))?;
                    self.put(b"L")?;
                    self.put_str(r.as_os_str().as_bytes())?;
                    self.put_str(target.as_os_str().as_bytes())?;
                    self.put_owner(&m)?;
                }
            }
        }
        self.put(b"E")
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.put(b"Z")?;
        let total = self.total;
        let digest = self.hash.clone().finalize();
        self.out.write_all(&total.to_le_bytes())?;
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

struct StreamReader<R: Read> {
    inp: R,
    /// `None` when draining: only the byte count is checked.
    hash: Option<Skein512<U32>>,
    total: u64,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl<R: Read> StreamReader<R> {
    fn raw(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inp.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad("stream is truncated")
            } else {
                e
            }
        })
    }

    fn get(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.raw(buf)?;
        if let Some(h) = self.hash.as_mut() {
            h.update(&*buf);
        }
        self.total += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.get(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.get(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.get(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> io::Result<String> {
        let len = self.u32()? as usize;
        if len > 1 << 20 {
            return Err(bad("stream string length is implausible"));
        }
        let mut b = vec![0u8; len];
        self.get(&mut b)?;
        String::from_utf8(b).map_err(|_| bad("stream string is not UTF-8"))
    }

    /// A relative path that cannot escape the dataset directory.
    fn path(&mut self) -> io::Result<PathBuf> {
        let p = PathBuf::from(self.string()?);
        if p.as_os_str().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad("stream path is not a plain relative path"));
        }
        Ok(p)
    }

    fn owner(&mut self) -> io::Result<(u32, u32)> {
        Ok((self.u32()?, self.u32()?))
    }
}

/// What `receive` does with the entries (directories, files, links) of a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unpack {
    /// Creates them under `staging/N`, with modes and owners.
    Write,
    /// Reads them to the end and checks the framing (records, lengths, paths, the trailer's
    /// byte count) but neither hashes nor creates anything: `staging/N` stays empty, and an
    /// altered byte inside a record goes unnoticed. Benchmarks use it to take the receiver's
    /// own work (checksum, unpacking, disk writes) out of an import.
    Drain,
}

/// Reads a whole stream, unpacking dataset number N into `staging/N`; returns the datasets.
/// Any truncation, corruption or trailing data is an error (the caller removes `staging`).
pub fn receive(inp: impl Read, staging: &Path, unpack: Unpack) -> io::Result<Vec<StreamDataset>> {
    let mut r = StreamReader {
        inp,
        hash: (unpack == Unpack::Write).then(Skein512::<U32>::new),
        total: 0,
    };
    let mut magic = [0u8; 8];
    r.get(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("invalid stream (bad magic number)"));
    }
    let mut out = Vec::new();
    loop {
        match r.byte()? {
            b'S' => {
                let rel = r.string()?;
                let snap = r.string()?;
                let creation = r.u64()?;
                let n = r.u32()?;
                let mut props = Vec::new();
                for _ in 0..n {
                    props.push((r.string()?, r.string()?));
                }
                let dir = staging.join(out.len().to_string());
                fs::create_dir_all(&dir)?;
                receive_entries(&mut r, &dir, unpack)?;
                out.push(StreamDataset {
                    rel,
                    snap,
                    creation,
                    props,
                });
            }
            b'Z' => break,
            _ => return Err(bad("invalid stream (unknown record)")),
        }
    }
    let counted = r.total;
    let digest = r.hash.take().map(|h| h.finalize());
    let mut total = [0u8; 8];
    r.raw(&mut total)?;
    let mut want = [0u8; 32];
    r.raw(&mut want)?;
    if u64::from_le_bytes(total) != counted || digest.is_some_and(|d| want[..] != d[..]) {
        return Err(bad("checksum mismatch: stream is corrupt"));
    }
    if r.inp.read(&mut [0u8; 1])? != 0 {
        return Err(bad("trailing data after end of stream"));
    }
    Ok(out)
}

/// A ZFS stream addresses objects, not paths: nothing in it can reach outside the dataset. Our
/// path-based entries could, through a link entry followed by an entry below or on that link;
/// such a stream is malformed.
fn check_placement(dir: &Path, p: &Path) -> io::Result<()> {
    let mut cur = dir.to_path_buf();
    let last = p.components().count();
    for (i, c) in p.components().enumerate() {
        cur.push(c);
        let misplaced = match fs::symlink_metadata(&cur) {
            Ok(m) => i + 1 == last || m.file_type().is_symlink(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if misplaced {
            return Err(bad(
                "invalid stream (an entry on or below an earlier link or entry)",
            ));
        }
    }
    Ok(())
}

fn receive_entries<R: Read>(r: &mut StreamReader<R>, dir: &Path, unpack: Unpack) -> io::Result<()> {
    let write = unpack == Unpack::Write;
    let mut dirs = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.byte()? {
            b'D' => {
                let p = r.path()?;
                let mode = r.u32()?;
                let (uid, gid) = r.owner()?;
                if !write {
                    continue;
                }
                check_placement(dir, &p)?;
                fs::create_dir(dir.join(&p))?;
                std::os::unix::fs::lchown(dir.join(&p), Some(uid), Some(gid))?;
                dirs.push((p, mode));
            }
            b'F' => {
                let p = r.path()?;
                let mode = r.u32()?;
                let (uid, gid) = r.owner()?;
                let mut left = r.u64()?;
                if write {
                    check_placement(dir, &p)?;
                }
                let mut f = write
                    .then(|| fs::File::create_new(dir.join(&p)))
                    .transpose()?;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    r.get(&mut buf[..n])?;
                    if let Some(f) = f.as_mut() {
                        f.write_all(&buf[..n])?;
                    }
                    left -= n as u64;
                }
                if !write {
                    continue;
                }
                std::os::unix::fs::lchown(dir.join(&p), Some(uid), Some(gid))?;
                fs::set_permissions(dir.join(&p), fs::Permissions::from_mode(mode))?;
            }
            b'L' => {
                let p = r.path()?;
                let target = r.string()?;
                let (uid, gid) = r.owner()?;
                if !write {
                    continue;
                }
                check_placement(dir, &p)?;
                std::os::unix::fs::symlink(target, dir.join(&p))?;
                std::os::unix::fs::lchown(dir.join(&p), Some(uid), Some(gid))?;
            }
            b'E' => break,
            _ => return Err(bad("invalid stream (unknown entry)")),
        }
    }
    for (p, mode) in dirs.iter().rev() {
        fs::set_permissions(dir.join(p), fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tmp: &Path) -> Vec<u8> {
        let src = tmp.join("src");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::create_dir_all(src.join("m/skip")).unwrap();
        fs::write(src.join("etc/a"), b"hello").unwrap();
        std::os::unix::fs::symlink("etc/a", src.join("link")).unwrap();
        let ds = StreamDataset {
            rel: String::new(),
            snap: "1".into(),
            creation: 7,
            props: vec![(":pot.tag".into(), "1.0".into())],
        };
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        w.dataset(&ds, &src, &[src.join("m")]).unwrap();
        w.finish().unwrap()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fsim-stream-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A stream of one dataset with hand-made entries, as a crafted image would carry them.
    fn crafted(entries: impl FnOnce(&mut StreamWriter<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        w.put(b"S").unwrap();
        w.put_str(b"").unwrap();
        w.put_str(b"1").unwrap();
        w.put_u64(7).unwrap();
        w.put_u32(0).unwrap();
        entries(&mut w).unwrap();
        w.put(b"E").unwrap();
        w.finish().unwrap()
    }

    fn link(w: &mut StreamWriter<Vec<u8>>, path: &str, target: &Path) -> io::Result<()> {
        w.put(b"L")?;
        w.put_str(path.as_bytes())?;
        w.put_str(target.as_os_str().as_encoded_bytes())?;
        w.put_u32(0)?;
        w.put_u32(0)
    }

    fn file(w: &mut StreamWriter<Vec<u8>>, path: &str) -> io::Result<()> {
        w.put(b"F")?;
        w.put_str(path.as_bytes())?;
        w.put_u32(0o644)?;
        w.put_u32(0)?;
        w.put_u32(0)?;
        w.put_u64(4)?;
        w.put(b"evil")
    }

    #[test]
    fn entries_never_write_through_a_link() {
        let t = tmpdir("link");
        let outside = t.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "safe").unwrap();
        // A file below a link to a directory outside, a file on a link to a file outside, and a
        // directory below such a link.
        let streams = [
            crafted(|w| {
                link(w, "a", &outside)?;
                file(w, "a/planted")
            }),
            crafted(|w| {
                link(w, "a", &outside.join("victim"))?;
                file(w, "a")
            }),
            crafted(|w| {
                link(w, "a", &outside)?;
                w.put(b"D")?;
                w.put_str(b"a/dir")?;
                w.put_u32(0o755)?;
                w.put_u32(0)?;
                w.put_u32(0)
            }),
        ];
        for (i, bytes) in streams.iter().enumerate() {
            let _ = fs::remove_dir_all(t.join("s"));
            let e = receive(&bytes[..], &t.join("s"), Unpack::Write).unwrap_err();
            assert!(e.to_string().contains("invalid stream"), "stream {i}: {e}");
        }
        assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "safe");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "nothing planted"
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn round_trip() {
        let t = tmpdir("rt");
        let bytes = sample(&t);
        let got = receive(&bytes[..], &t.join("stage"), Unpack::Write).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].props,
            vec![(":pot.tag".to_string(), "1.0".to_string())]
        );
        assert_eq!(fs::read(t.join("stage/0/etc/a")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(t.join("stage/0/link")).unwrap(),
            PathBuf::from("etc/a")
        );
        assert!(
            !t.join("stage/0/m").exists(),
            "excluded child mountpoint must not be sent"
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn drain_reads_the_datasets_and_writes_nothing() {
        let t = tmpdir("drain");
        let bytes = sample(&t);
        let got = receive(&bytes[..], &t.join("stage"), Unpack::Drain).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].snap, "1");
        assert_eq!(
            fs::read_dir(t.join("stage/0")).unwrap().count(),
            0,
            "a drained dataset's directory stays empty"
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn truncated_and_corrupt_rejected() {
        let t = tmpdir("bad");
        let bytes = sample(&t);
        for unpack in [Unpack::Write, Unpack::Drain] {
            for cut in [4, bytes.len() / 2, bytes.len() - 1] {
                let _ = fs::remove_dir_all(t.join("s"));
                let e = receive(&bytes[..cut], &t.join("s"), unpack).unwrap_err();
                assert!(e.to_string().contains("truncated"), "{unpack:?}: {e}");
            }
            // The end-of-entries record turned into a file record: bad framing, in both modes.
            let end = bytes.len() - 42;
            assert_eq!(bytes[end], b'E');
            let mut bad = bytes.clone();
            bad[end] = b'F';
            let _ = fs::remove_dir_all(t.join("s"));
            assert!(
                receive(&bad[..], &t.join("s"), unpack).is_err(),
                "{unpack:?}"
            );
            // A link's owner and a byte of a file's contents: only the checksum sees them,
            // which a drain does not compute.
            let content = bytes.windows(5).position(|w| w == b"hello").unwrap();
            for i in [bytes.len() - 45, content] {
                let mut bad = bytes.clone();
                bad[i] ^= 1;
                let _ = fs::remove_dir_all(t.join("s"));
                let got = receive(&bad[..], &t.join("s"), unpack);
                match unpack {
                    Unpack::Write => assert!(
                        got.unwrap_err().to_string().contains("checksum mismatch"),
                        "at {i}"
                    ),
                    Unpack::Drain => assert!(got.is_ok(), "at {i}"),
                }
            }
            let mut long = bytes.clone();
            long.push(0);
            let _ = fs::remove_dir_all(t.join("s"));
            let e = receive(&long[..], &t.join("s"), unpack).unwrap_err();
            assert!(e.to_string().contains("trailing"), "{unpack:?}: {e}");
        }
        fs::remove_dir_all(&t).unwrap();
    }
}
