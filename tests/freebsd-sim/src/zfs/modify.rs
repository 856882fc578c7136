//! `zfs set`, `zfs rename` and `zfs mount`: changes to a dataset's properties, name or mounted
//! state, which move the directories holding its files and its descendants'.

use super::{
    USAGE, assignment, data_dir, descendants, mountpoint, no_dataset, parent, split_snap,
    valid_name,
};
use crate::state::{Host, State, io_fail};
use crate::{Fail, Res, getopt, usage};
use std::fs;
use std::path::PathBuf;

/// Moves the data directories whose location changed when `st` became `new` (mountpoint edits,
/// renames): every moved directory is first pulled out deepest-first, then placed parent-first.
fn relocate(host: &Host, old: &State, new: &State, pairs: &[(String, String)]) -> Res<()> {
    let moves: Vec<(PathBuf, PathBuf)> = pairs
        .iter()
        .map(|(o, n)| (data_dir(host, old, o), data_dir(host, new, n)))
        .filter(|(a, b)| a != b)
        .collect();
    let park = host
        .state_dir()
        .join(format!("relocate.{}", std::process::id()));
    let mut order: Vec<usize> = (0..moves.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(moves[*i].0.components().count()));
    for i in &order {
        let (from, _) = &moves[*i];
        if from.exists() {
            let to = park.join(i.to_string());
            fs::create_dir_all(&park).map_err(|e| io_fail("mkdir", &park, e))?;
            fs::rename(from, &to).map_err(|e| io_fail("rename", from, e))?;
        }
    }
    for i in order.iter().rev() {
        let (_, to) = &moves[*i];
        let parked = park.join(i.to_string());
        if let Some(p) = to.parent() {
            fs::create_dir_all(p).map_err(|e| io_fail("mkdir", p, e))?;
        }
        let _ = fs::remove_dir(to);
        if parked.exists() {
            fs::rename(&parked, to).map_err(|e| io_fail("rename", to, e))?;
        } else {
            fs::create_dir_all(to).map_err(|e| io_fail("mkdir", to, e))?;
        }
    }
    let _ = fs::remove_dir(&park);
    Ok(())
}

pub(super) fn set(host: &Host, args: &[String]) -> Res<String> {
    let (assigns, names): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| a.contains('='));
    if assigns.is_empty() || names.is_empty() {
        return Err(usage(USAGE));
    }
    let kvs = assigns
        .iter()
        .map(|a| assignment(a))
        .collect::<Res<Vec<_>>>()?;
    // Set-once properties: fixed when the dataset is made.
    if let Some((k, _)) = kvs
        .iter()
        .find(|(k, _)| k == "origin" || k == "encryption" || k == "keyformat")
    {
        return Err(Fail::new(
            1,
            format!("cannot set property for '{}': '{k}' is readonly", names[0]),
        ));
    }
    host.update(|st| {
        for name in &names {
            if !st.datasets.contains_key(name.as_str()) {
                return Err(no_dataset(name));
            }
            let old = st.clone();
            let d = st.datasets.get_mut(name.as_str()).expect("checked");
            for (k, v) in &kvs {
                d.props.insert(k.clone(), v.clone());
            }
            let mut affected = vec![name.to_string()];
            affected.extend(descendants(st, name));
            let pairs: Vec<(String, String)> =
                affected.iter().map(|n| (n.clone(), n.clone())).collect();
            relocate(host, &old, st, &pairs)?;
        }
        Ok(String::new())
    })
}

pub(super) fn rename(host: &Host, args: &[String]) -> Res<String> {
    let (_, rest) = getopt("zfs", args, "fpu", USAGE)?;
    let [old, new] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    host.update(|st| {
        if !st.datasets.contains_key(old) {
            return Err(no_dataset(old));
        }
        if !valid_name(new) {
            return Err(Fail::new(
                1,
                format!("cannot rename to '{new}': invalid dataset name"),
            ));
        }
        if st.datasets.contains_key(new) {
            return Err(Fail::new(
                1,
                format!("cannot rename to '{new}': dataset already exists"),
            ));
        }
        if !parent(new).is_some_and(|p| st.datasets.contains_key(p)) {
            return Err(Fail::new(
                1,
                format!("cannot rename to '{new}': parent does not exist"),
            ));
        }
        let snapshot_before = st.clone();
        let mut pairs = vec![(old.clone(), new.clone())];
        pairs.extend(
            descendants(st, old)
                .into_iter()
                .map(|d| (d.clone(), format!("{new}{}", &d[old.len()..]))),
        );
        for (o, n) in &pairs {
            let d = st.datasets.remove(o).expect("listed");
            st.datasets.insert(n.clone(), d);
        }
        for d in st.datasets.values_mut() {
            if let Some(origin) = &d.origin
                && let Some((ods, snap)) = split_snap(origin)
                && let Some((_, n)) = pairs.iter().find(|(o, _)| o == ods)
            {
                d.origin = Some(format!("{n}@{snap}"));
            }
        }
        relocate(host, &snapshot_before, st, &pairs)?;
        Ok(String::new())
    })
}

/// `zfs mount NAME`: mounts a dataset left unmounted, as zfs_main.c `share_mount_one` checks.
pub(super) fn mount(host: &Host, args: &[String]) -> Res<String> {
    let (_, rest) = getopt("zfs", args, "vO", USAGE)?;
    let [name] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    host.update(|st| {
        let Some(d) = st.datasets.get(name) else {
            return Err(no_dataset(name));
        };
        let cannot = |why: &str| Err(Fail::new(1, format!("cannot mount '{name}': {why}")));
        match mountpoint(st, name).0.as_str() {
            "legacy" => {
                return cannot("legacy mountpoint\nuse mount(8) to mount this filesystem");
            }
            "none" => return cannot("no mountpoint set"),
            _ => {}
        }
        if d.props.get("canmount").is_some_and(|v| v == "off") {
            return cannot("'canmount' property is set to 'off'");
        }
        if !d.unmounted {
            return cannot("filesystem already mounted");
        }
        let old = st.clone();
        st.datasets.get_mut(name).expect("checked").unmounted = false;
        let dir = data_dir(host, st, name);
        if fs::read_dir(&dir).is_ok_and(|mut rd| rd.next().is_some()) {
            return cannot("directory is not empty");
        }
        relocate(host, &old, st, &[(name.clone(), name.clone())])?;
        Ok(String::new())
    })
}
