//! Reading the files a job controls (an image's files, the jail's own) without ever blocking.
//!
//! A job can put a FIFO or a device where the engine expects a file: a plain `open` of a FIFO
//! waits for a writer forever, and a read of one waits for data. Such files are opened with
//! `O_NONBLOCK` (an open that never waits) and refused unless they are regular files; the
//! blocking work itself runs on tokio's blocking pool ([`off_runtime`]), so a slow disk stalls
//! one start, never the plugin's other calls.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading; an error unless it is a regular file (symlinks are followed).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(path, kind));
    }
    Ok(file)
}

/// The whole of a regular file of at most `limit` bytes; `None` when there is none at `path`.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_regular(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "{}: larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(Some(out))
}

/// The error for a FIFO, socket or device where a regular file belongs.
pub fn not_regular(path: &Path, kind: std::fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {what}, not a regular file", path.display()),
    )
}

/// Runs blocking file-system work on tokio's blocking pool.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("file-system work panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_waiting() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("x.skein");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A plain open would wait here for a writer that never comes.
        let e = read_regular(&fifo, 10).unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
        let e = open_regular(d.path()).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(read_regular(&d.path().join("absent"), 10).unwrap(), None);
        let file = d.path().join("f");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap().unwrap(), b"0123456789");
        assert!(
            read_regular(&file, 9)
                .unwrap_err()
                .to_string()
                .contains("larger than 9")
        );
    }
}
