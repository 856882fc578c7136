//! Directory trees as the simulator's datasets hold them: walks that skip the datasets mounted
//! inside, the bytes they hold, and copies with modes and owners (snapshots, clones, receives).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub enum Entry {
    Dir(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
}

impl Entry {
    pub fn rel(&self) -> &Path {
        match self {
            Entry::Dir(r) | Entry::File(r) | Entry::Symlink(r) => r,
        }
    }
}

/// Entries of `dir` (relative paths, parents first), skipping the subtrees in `exclude`
/// (other datasets mounted inside) and anything that is not a dir, file or symlink.
pub fn walk(dir: &Path, exclude: &[PathBuf]) -> io::Result<Vec<Entry>> {
    fn rec(root: &Path, rel: &Path, exclude: &[PathBuf], out: &mut Vec<Entry>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let r = rel.join(e.file_name());
            let abs = root.join(&r);
            if exclude.contains(&abs) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_symlink() {
                out.push(Entry::Symlink(r));
            } else if ft.is_dir() {
                out.push(Entry::Dir(r.clone()));
                rec(root, &r, exclude, out)?;
            } else if ft.is_file() {
                out.push(Entry::File(r));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        rec(dir, Path::new(""), exclude, &mut out)?;
    }
    Ok(out)
}

/// Bytes in regular files under `dir` (the simulator's `used`/`referenced`).
pub fn tree_size(dir: &Path, exclude: &[PathBuf]) -> u64 {
    walk(dir, exclude)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| match e {
            Entry::File(p) => fs::symlink_metadata(dir.join(p)).ok().map(|m| m.len()),
            _ => None,
        })
        .sum()
}

fn copy_attrs(src_meta: &fs::Metadata, dst: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(src_meta.uid()), Some(src_meta.gid()))?;
    if !src_meta.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(src_meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies `src` to a new directory `dst` with modes and owners, skipping `exclude`.
pub fn copy_tree(src: &Path, dst: &Path, exclude: &[PathBuf]) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    let entries = walk(src, exclude)?;
    for e in &entries {
        match e {
            Entry::Dir(r) => fs::create_dir(dst.join(r))?,
            Entry::File(r) => {
                fs::copy(src.join(r), dst.join(r))?;
            }
            Entry::Symlink(r) => {
                std::os::unix::fs::symlink(fs::read_link(src.join(r))?, dst.join(r))?
            }
        }
        let r = e.rel();
        if !matches!(e, Entry::Dir(_)) {
            copy_attrs(&fs::symlink_metadata(src.join(r))?, &dst.join(r))?;
        }
    }
    // Directory modes last, so a read-only directory does not block copying its contents.
    for e in entries.iter().rev() {
        if let Entry::Dir(r) = e {
            copy_attrs(&fs::symlink_metadata(src.join(r))?, &dst.join(r))?;
        }
    }
    if src.is_dir() {
        copy_attrs(&fs::metadata(src)?, dst)?;
    }
    Ok(())
}
