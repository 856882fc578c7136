//! `zfs create`, `zfs snapshot` and `zfs clone`: new datasets with their directories, and
//! snapshots as copies of a dataset's files.

use super::{
    USAGE, assignment, data_dir, descendants, foreign_dirs, inherited_value, no_dataset, parent,
    snapshot, split_snap, valid_name,
};
use crate::state::{Dataset, Host, Snapshot, State, io_fail, now};
use crate::tree;
use crate::{Fail, Res, getopt, usage};
use std::collections::BTreeMap;
use std::fs;

pub(super) fn create(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "puo:", USAGE)?;
    let [name] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    let parents = opts.iter().any(|(c, _)| *c == 'p');
    // zfs_main.c `zfs_do_create`: the new file system is mounted only when its canmount is on
    // and `-u` was not given (parents made by `-p` are mounted).
    let nomount = opts.iter().any(|(c, _)| *c == 'u');
    let props = opts
        .iter()
        .filter(|(c, _)| *c == 'o')
        .map(|(_, v)| assignment(v))
        .collect::<Res<Vec<_>>>()?;
    if !valid_name(name) || !name.contains('/') {
        return Err(Fail::new(
            1,
            format!("cannot create '{name}': invalid dataset name"),
        ));
    }
    host.update(|st| {
        if st.datasets.contains_key(name) {
            if parents {
                return Ok(String::new());
            }
            return Err(Fail::new(
                1,
                format!("cannot create '{name}': dataset already exists"),
            ));
        }
        let mut chain = vec![name.clone()];
        let mut cur = parent(name);
        while let Some(p) = cur.filter(|p| !st.datasets.contains_key(*p)) {
            if !parents {
                return Err(Fail::new(
                    1,
                    format!("cannot create '{name}': parent does not exist"),
                ));
            }
            chain.push(p.to_string());
            cur = parent(p);
        }
        if cur.is_none() {
            return Err(Fail::new(
                1,
                format!(
                    "cannot create '{name}': no such pool '{}'",
                    name.split('/').next().unwrap_or(name)
                ),
            ));
        }
        for n in chain.iter().rev() {
            let mut d = Dataset {
                creation: now(),
                ..Default::default()
            };
            if n == name {
                d.props.extend(props.iter().cloned());
                d.unmounted = nomount || d.props.get("canmount").is_some_and(|v| v != "on");
            }
            st.datasets.insert(n.clone(), d);
            let dir = data_dir(host, st, n);
            fs::create_dir_all(&dir).map_err(|e| io_fail("mkdir", &dir, e))?;
        }
        Ok(String::new())
    })
}

/// Records snapshot `snap` of `ds` with a copy of its current contents.
fn take_snapshot(host: &Host, st: &mut State, ds: &str, snap: &str) -> Res<()> {
    let full = format!("{ds}@{snap}");
    if snapshot(st, &full).is_some() {
        return Err(Fail::new(
            1,
            format!("cannot create snapshot '{full}': dataset already exists"),
        ));
    }
    st.next_snapshot_id += 1;
    let id = st.next_snapshot_id;
    let dst = host.snapshot_dir(id);
    let _ = fs::remove_dir_all(&dst);
    tree::copy_tree(&data_dir(host, st, ds), &dst, &foreign_dirs(host, st, ds))
        .map_err(|e| io_fail("snapshot copy of", &dst, e))?;
    let d = st.datasets.get_mut(ds).expect("caller checked");
    d.snapshots.push(Snapshot {
        name: snap.to_string(),
        creation: now(),
        id,
    });
    Ok(())
}

pub(super) fn snapshot_cmd(host: &Host, args: &[String]) -> Res<String> {
    let (opts, names) = getopt("zfs", args, "ro:", USAGE)?;
    let recursive = opts.iter().any(|(c, _)| *c == 'r');
    if names.is_empty() {
        return Err(usage(USAGE));
    }
    host.update(|st| {
        for full in &names {
            let Some((ds, snap)) = split_snap(full) else {
                return Err(Fail::new(
                    1,
                    format!("cannot create snapshot '{full}': invalid snapshot name"),
                ));
            };
            if !st.datasets.contains_key(ds) {
                return Err(no_dataset(ds));
            }
            let mut all = vec![ds.to_string()];
            if recursive {
                all.extend(descendants(st, ds));
            }
            for d in all {
                take_snapshot(host, st, &d, snap)?;
            }
        }
        Ok(String::new())
    })
}

pub(super) fn clone(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "po:", USAGE)?;
    let [src, dst] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    let props = opts
        .iter()
        .filter(|(c, _)| *c == 'o')
        .map(|(_, v)| assignment(v))
        .collect::<Res<Vec<_>>>()?;
    host.update(|st| {
        let Some(snap) = snapshot(st, src).cloned() else {
            return Err(no_dataset(src));
        };
        if !valid_name(dst) {
            return Err(Fail::new(
                1,
                format!("cannot create '{dst}': invalid dataset name"),
            ));
        }
        if st.datasets.contains_key(dst) {
            return Err(Fail::new(
                1,
                format!("cannot create '{dst}': dataset already exists"),
            ));
        }
        if !parent(dst).is_some_and(|p| st.datasets.contains_key(p)) {
            return Err(Fail::new(
                1,
                format!("cannot create '{dst}': parent does not exist"),
            ));
        }
        let mut props: BTreeMap<String, String> = props.iter().cloned().collect();
        // A clone shares its origin's encryption (and key), whatever its new parent's.
        let (origin_ds, _) = split_snap(src).expect("a snapshot");
        if let Some(enc) = inherited_value(st, origin_ds, "encryption") {
            props.insert("encryption".into(), enc);
        }
        let d = Dataset {
            props,
            origin: Some(src.clone()),
            creation: now(),
            snapshots: vec![],
            unmounted: false,
        };
        st.datasets.insert(dst.clone(), d);
        let dir = data_dir(host, st, dst);
        if dir.exists() && fs::remove_dir(&dir).is_err() {
            return Err(Fail::new(
                1,
                format!("cannot mount '{}': directory is not empty", dir.display()),
            ));
        }
        tree::copy_tree(&host.snapshot_dir(snap.id), &dir, &[])
            .map_err(|e| io_fail("clone copy to", &dir, e))?;
        Ok(String::new())
    })
}
