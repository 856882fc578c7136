//! Files inside a jail root, handled from the host without ever leaving that root.
//!
//! The root is a clone of an image the job chose, so any symlink in it may point anywhere. Paths
//! are resolved the way the jail itself would see them (symlinks relative to the jail root, `..`
//! stopping at it), as pot does with `chroot $M realpath`, and files are created with
//! `O_NOFOLLOW`. The jail is not running yet when these run, so nothing changes the tree meanwhile.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (FreeBSD's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 32;

/// A path inside a jail root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPath {
    /// The path on the host, under the jail root.
    pub host: PathBuf,
    /// The same path as the jail sees it, absolute.
    pub in_jail: PathBuf,
}

/// Resolves `target` (as seen from inside the jail) to a path under `root`. Symlinks are followed
/// relative to `root`; components that do not exist yet are kept as they are.
pub fn resolve(root: &Path, target: &Path) -> io::Result<JailPath> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components(target);
    pending.reverse();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        target.display()
                    )));
                }
                let link = std::fs::read_link(&candidate)?;
                if link.is_absolute() {
                    resolved.clear();
                }
                pending.extend(components(&link).into_iter().rev());
            }
            _ => resolved.push(c),
        }
    }
    Ok(JailPath {
        host: join(root, &resolved),
        in_jail: join(Path::new("/"), &resolved),
    })
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn join(base: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = base.to_path_buf();
    p.extend(parts);
    p
}

/// Creates `target` and its missing parents as directories inside the jail; returns it resolved.
pub fn create_dir(root: &Path, target: &Path) -> io::Result<JailPath> {
    let path = resolve(root, target)?;
    std::fs::create_dir_all(&path.host)?;
    Ok(path)
}

/// Writes `bytes` to `target` inside the jail (mode `mode`), replacing a regular file there.
pub fn write_file(root: &Path, target: &Path, bytes: &[u8], mode: u32) -> io::Result<JailPath> {
    use std::io::Write;
    let path = resolve(root, target)?;
    if let Some(parent) = path.host.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = create_nofollow(&path.host, mode)?;
    file.write_all(bytes)?;
    Ok(path)
}

/// Creates or replaces a regular file. A FIFO or device the image put there is refused before
/// it is opened (an open of a FIFO waits for a reader, of a device may act on it), and
/// `O_NONBLOCK` keeps even a swap in between from waiting.
fn create_nofollow(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(super::files::not_regular(path, m.file_type()));
        }
        _ => {}
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(super::files::not_regular(path, kind));
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Copies the host file or directory `source` to `target` inside the jail, like `cp -a` run in
/// the jail: into `target` when that is a directory, symlinks inside a copied directory copied as
/// symlinks (never followed), modes and owners kept.
pub fn copy_in(root: &Path, source: &Path, target: &Path) -> io::Result<JailPath> {
    let mut dest = resolve(root, target)?;
    if dest.host.is_dir()
        && !std::fs::symlink_metadata(source)?.is_dir()
        && let Some(name) = source.file_name()
    {
        dest = resolve(root, &dest.in_jail.join(name))?;
    }
    if let Some(parent) = dest.host.parent() {
        std::fs::create_dir_all(parent)?;
    }
    copy_tree(root, source, &dest)?;
    Ok(dest)
}

fn copy_tree(root: &Path, source: &Path, dest: &JailPath) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(source)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        match std::fs::create_dir(&dest.host) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dest.host.is_dir() => {}
            other => other?,
        }
        let dir = std::fs::File::open(&dest.host)?;
        dir.set_permissions(meta.permissions())?;
        std::os::unix::fs::fchown(&dir, Some(meta.uid()), Some(meta.gid()))?;
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            // Each child is resolved again: the image may hold a symlink where it lands.
            let child = resolve(root, &dest.in_jail.join(entry.file_name()))?;
            copy_tree(root, &entry.path(), &child)?;
        }
        Ok(())
    } else if ft.is_file() {
        let mut from = super::files::open_regular(source)?;
        let mut to = create_nofollow(&dest.host, meta.mode() & 0o7777)?;
        io::copy(&mut from, &mut to)?;
        std::os::unix::fs::fchown(&to, Some(meta.uid()), Some(meta.gid()))
    } else if ft.is_symlink() {
        let link = std::fs::read_link(source)?;
        match std::fs::symlink_metadata(&dest.host) {
            Ok(m) if !m.is_dir() => std::fs::remove_file(&dest.host)?,
            _ => {}
        }
        std::os::unix::fs::symlink(link, &dest.host)?;
        std::os::unix::fs::lchown(&dest.host, Some(meta.uid()), Some(meta.gid()))
    } else {
        Err(io::Error::other(format!(
            "{}: not a regular file, directory or symlink",
            source.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn jail() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/home")).unwrap();
        (d, root)
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (d, root) = jail();
        symlink("/usr/home", root.join("home")).unwrap();
        symlink("/", root.join("up")).unwrap();
        symlink("../../../../..", root.join("etc/dots")).unwrap();
        symlink(d.path(), root.join("outside")).unwrap();
        let r = resolve(&root, Path::new("/home/u/x")).unwrap();
        assert_eq!(r.host, root.join("usr/home/u/x"));
        assert_eq!(r.in_jail, PathBuf::from("/usr/home/u/x"));
        assert_eq!(
            resolve(&root, Path::new("/up/etc")).unwrap().host,
            root.join("etc")
        );
        assert_eq!(
            resolve(&root, Path::new("/etc/dots/etc/passwd"))
                .unwrap()
                .host,
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve(&root, Path::new("/../../x")).unwrap().host,
            root.join("x")
        );
        // An absolute host path in a link is read as a jail path.
        let o = resolve(&root, Path::new("/outside/m")).unwrap();
        assert!(o.host.starts_with(&root), "{o:?}");
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve(&root, Path::new("/loop")).is_err());
    }

    #[test]
    fn writes_do_not_follow_a_final_symlink_out() {
        let (d, root) = jail();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "host").unwrap();
        symlink(&victim, root.join("etc/hosts")).unwrap();
        write_file(&root, Path::new("/etc/hosts"), b"jail", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host");
        // The link was resolved inside the root instead.
        let inside = root.join(victim.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read_to_string(inside).unwrap(), "jail");
    }

    #[test]
    fn fifos_in_the_image_or_the_source_are_refused_without_waiting() {
        let (d, root) = jail();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&root.join("etc/hosts"), mode).unwrap();
        let e = write_file(&root, Path::new("/etc/hosts"), b"x", 0o644).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        nix::unistd::mkfifo(&src.join("pipe"), mode).unwrap();
        let e = copy_in(&root, &src, Path::new("/opt")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        nix::unistd::mkfifo(&root.join("etc/target"), mode).unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = copy_in(&root, &file, Path::new("/etc/target")).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
    }

    #[test]
    fn copy_in_is_like_cp_a_inside_the_jail() {
        let (d, root) = jail();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        symlink("/etc/passwd", src.join("link")).unwrap();
        copy_in(&root, &src, Path::new("/opt/app")).unwrap();
        let f = root.join("opt/app/sub/f");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "data");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_link(root.join("opt/app/link")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        // A file copied onto a directory lands inside it.
        let file = d.path().join("motd");
        std::fs::write(&file, "hi").unwrap();
        let r = copy_in(&root, &file, Path::new("/etc")).unwrap();
        assert_eq!(r.in_jail, PathBuf::from("/etc/motd"));
        assert_eq!(
            std::fs::read_to_string(root.join("etc/motd")).unwrap(),
            "hi"
        );
    }
}
