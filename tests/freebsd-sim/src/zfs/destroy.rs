//! `zfs destroy`: a dataset with its children, snapshots and dependent clones as far as `-r` and
//! `-R` allow, refused while a mount or a jail keeps a dataset busy unless forced.

use super::{
    USAGE, data_dir, dependent_clones, descendants, foreign_dirs, no_dataset, parent, snapshot,
    split_snap,
};
use crate::state::{Host, State, io_fail};
use crate::tree;
use crate::{Fail, Res, getopt, usage};
use std::fs;
use std::path::{Path, PathBuf};

/// Whether unmounting `name` without force fails with EBUSY: a mount lies on it, or a jail,
/// alive or dying, holds a vnode of it as its root (`pr_root`, released only when the prison
/// is freed).
fn busy(host: &Host, st: &State, name: &str) -> Option<PathBuf> {
    let dir = data_dir(host, st, name);
    let under = |p: &str| Path::new(p).starts_with(&dir);
    (st.mounts.iter().any(|m| under(&m.target))
        || st.jails.iter().any(|j| under(&j.path))
        || st.dying.iter().any(|d| under(&d.jail.path)))
    .then_some(dir)
}

fn remove_dataset(host: &Host, st: &mut State, name: &str) -> Res<()> {
    let dir = data_dir(host, st, name);
    let foreign = foreign_dirs(host, st, name);
    if let Some(d) = st.datasets.remove(name) {
        for s in d.snapshots {
            let _ = fs::remove_dir_all(host.snapshot_dir(s.id));
        }
    }
    if foreign.is_empty() {
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_fail("remove", &dir, e));
            }
            _ => {}
        }
    } else {
        // Other datasets still live inside: remove only this dataset's own entries.
        for e in tree::walk(&dir, &foreign)
            .map_err(|e| io_fail("walk", &dir, e))?
            .iter()
            .rev()
        {
            let p = dir.join(e.rel());
            let _ = if matches!(e, tree::Entry::Dir(_)) {
                fs::remove_dir(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

pub(super) fn destroy(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "fnprRv", USAGE)?;
    let [name] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let (force, recursive, all_deps) = (has('f'), has('r') || has('R'), has('R'));
    host.update(|st| {
        if let Some((ds, snap)) = split_snap(name) {
            if !st.datasets.contains_key(ds) {
                return Err(no_dataset(ds));
            }
            let mut targets: Vec<String> = vec![ds.to_string()];
            if recursive {
                targets.extend(descendants(st, ds));
            }
            targets.retain(|d| snapshot(st, &format!("{d}@{snap}")).is_some());
            if targets.is_empty() {
                return Err(Fail::new(1, "could not find any snapshots to destroy; check snapshot names."));
            }
            let full: Vec<String> = targets.iter().map(|d| format!("{d}@{snap}")).collect();
            let clones: Vec<String> = st.datasets.iter().filter(|(_, d)| d.origin.as_ref().is_some_and(|o| full.contains(o))).map(|(n, _)| n.clone()).collect();
            if !clones.is_empty() {
                if !all_deps {
                    return Err(Fail::new(1, format!("cannot destroy '{name}': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\n{}", clones.join("\n"))));
                }
                for c in clones {
                    destroy_tree(host, st, &c, force)?;
                }
            }
            for d in targets {
                let ds = st.datasets.get_mut(&d).expect("checked");
                if let Some(i) = ds.snapshots.iter().position(|s| s.name == snap) {
                    let s = ds.snapshots.remove(i);
                    let _ = fs::remove_dir_all(host.snapshot_dir(s.id));
                }
            }
            return Ok(String::new());
        }
        if !st.datasets.contains_key(name) {
            return Err(no_dataset(name));
        }
        if !name.contains('/') {
            return Err(Fail::new(1, format!("cannot destroy '{name}': operation does not apply to pools\nuse 'zfs destroy -r {name}' to destroy all datasets in the pool\nuse 'zpool destroy {name}' to destroy the pool itself")));
        }
        let mut tree = vec![name.clone()];
        tree.extend(descendants(st, name));
        if !recursive {
            let mut kids: Vec<String> = descendants(st, name).into_iter().filter(|d| parent(d) == Some(name)).collect();
            kids.extend(st.datasets[name].snapshots.iter().map(|s| format!("{name}@{}", s.name)));
            if !kids.is_empty() {
                return Err(Fail::new(1, format!("cannot destroy '{name}': filesystem has children\nuse '-r' to destroy the following datasets:\n{}", kids.join("\n"))));
            }
        }
        let clones: Vec<String> = dependent_clones(st, &tree).into_iter().filter(|c| !tree.contains(c)).collect();
        if !clones.is_empty() && !all_deps {
            return Err(Fail::new(1, format!("cannot destroy '{name}': filesystem has dependent clones\nuse '-R' to destroy the following datasets:\n{}", clones.join("\n"))));
        }
        for c in clones {
            if st.datasets.contains_key(&c) {
                destroy_tree(host, st, &c, force)?;
            }
        }
        destroy_tree(host, st, name, force)?;
        Ok(String::new())
    })
}

/// Destroys `name`, its descendants and (recursively) their clones, children first.
pub(super) fn destroy_tree(host: &Host, st: &mut State, name: &str, force: bool) -> Res<()> {
    let mut tree = vec![name.to_string()];
    tree.extend(descendants(st, name));
    for c in dependent_clones(st, &tree) {
        if !tree.contains(&c) && st.datasets.contains_key(&c) {
            destroy_tree(host, st, &c, force)?;
        }
    }
    tree.sort_by_key(|n| std::cmp::Reverse(n.matches('/').count()));
    for n in &tree {
        if !force && let Some(dir) = busy(host, st, n) {
            return Err(Fail::new(
                1,
                format!(
                    "cannot unmount '{}': pool or dataset is busy",
                    dir.display()
                ),
            ));
        }
    }
    for n in tree {
        remove_dataset(host, st, &n)?;
    }
    Ok(())
}
