//! `zfs send` and `zfs receive`: snapshots written as, and datasets made from, the simulator's
//! own stream format ([`crate::stream`]); a failed receive leaves nothing behind.

use super::destroy::destroy_tree;
use super::{
    USAGE, assignment, data_dir, descendants, no_dataset, parent, snapshot, split_snap, valid_name,
};
use crate::state::{Dataset, Host, Snapshot, io_fail, now};
use crate::stream::{self, StreamDataset, StreamWriter};
use crate::tree;
use crate::{Fail, Res, getopt, usage};
use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub(super) fn send(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "RLcepvnw", USAGE)?;
    let [full] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    let recursive = opts.iter().any(|(c, _)| *c == 'R');
    let st = host.load()?;
    let Some((ds, snap)) = split_snap(full) else {
        return Err(Fail::new(
            1,
            format!("cannot send '{full}': operation only applies to snapshots"),
        ));
    };
    if snapshot(&st, full).is_none() {
        return Err(no_dataset(full));
    }
    if std::io::stdout().is_terminal() {
        return Err(Fail::new(
            1,
            "Error: Stream can not be written to a terminal.\nYou must redirect standard output.",
        ));
    }
    let mut names = vec![ds.to_string()];
    if recursive {
        names.extend(descendants(&st, ds));
    }
    let stdout = std::io::stdout().lock();
    let mut w = StreamWriter::new(std::io::BufWriter::with_capacity(1 << 20, stdout))
        .map_err(|e| Fail::new(1, format!("cannot send '{full}': {e}")))?;
    for n in &names {
        let s = snapshot(&st, &format!("{n}@{snap}")).ok_or_else(|| {
            Fail::new(
                1,
                format!("cannot send '{full}' recursively: snapshot '{n}@{snap}' does not exist"),
            )
        })?;
        let d = &st.datasets[n];
        let sd = StreamDataset {
            rel: n[ds.len()..].trim_start_matches('/').to_string(),
            snap: snap.to_string(),
            creation: s.creation,
            props: d
                .props
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        w.dataset(&sd, &host.snapshot_dir(s.id), &[])
            .map_err(|e| Fail::new(1, format!("cannot send '{full}': {e}")))?;
    }
    w.finish()
        .map_err(|e| Fail::new(1, format!("cannot send '{full}': {e}")))?;
    Ok(String::new())
}

pub(super) fn receive(host: &Host, args: &[String]) -> Res<String> {
    receive_from(host, args, std::io::stdin().lock())
}

pub(super) fn receive_from(host: &Host, args: &[String], input: impl std::io::Read) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "uFvnsdeo:x:", USAGE)?;
    let [name] = rest.as_slice() else {
        return Err(usage(USAGE));
    };
    let force = opts.iter().any(|(c, _)| *c == 'F');
    let unmounted = opts.iter().any(|(c, _)| *c == 'u');
    let set: Vec<(String, String)> = opts
        .iter()
        .filter(|(c, _)| *c == 'o')
        .map(|(_, v)| assignment(v))
        .collect::<Res<_>>()?;
    let excluded: Vec<&String> = opts
        .iter()
        .filter(|(c, _)| *c == 'x')
        .map(|(_, v)| v)
        .collect();
    if !valid_name(name) || split_snap(name).is_some() {
        return Err(Fail::new(
            1,
            format!("cannot receive: invalid name '{name}'"),
        ));
    }
    let unpack = crate::receiver::mode(host)?;
    let staging = host
        .state_dir()
        .join(format!("recv.{}.{}", std::process::id(), now()));
    let result = stream::receive(input, &staging, unpack)
        .map_err(|e| Fail::new(1, format!("cannot receive new filesystem stream: {e}")))
        .and_then(|datasets| {
            let how = Receive {
                force,
                unmounted,
                set: &set,
                excluded: &excluded,
            };
            commit_receive(host, name, &datasets, &staging, &how)
        });
    let _ = fs::remove_dir_all(&staging);
    result
}

/// The command line of a `zfs receive`.
struct Receive<'a> {
    force: bool,
    /// `-u`: nothing received is mounted.
    unmounted: bool,
    set: &'a [(String, String)],
    excluded: &'a [&'a String],
}

fn commit_receive(
    host: &Host,
    name: &str,
    datasets: &[StreamDataset],
    staging: &Path,
    how: &Receive,
) -> Res<String> {
    let Receive {
        force,
        set,
        excluded,
        ..
    } = *how;
    let mut created: Vec<PathBuf> = Vec::new();
    let result = host.update(|st| {
        if !parent(name).is_some_and(|p| st.datasets.contains_key(p)) {
            return Err(Fail::new(1, format!("cannot receive new filesystem stream: parent of '{name}' does not exist")));
        }
        if let Some(d) = st.datasets.get(name) {
            if !force {
                return Err(Fail::new(1, format!("cannot receive new filesystem stream: destination '{name}' exists\nmust specify -F to overwrite it")));
            }
            if let Some(s) = d.snapshots.first() {
                return Err(Fail::new(1, format!("cannot receive new filesystem stream: destination has snapshots (eg. {name}@{})\nmust destroy them to overwrite it", s.name)));
            }
            destroy_tree(host, st, name, false)?;
        }
        for (i, sd) in datasets.iter().enumerate() {
            let full = if sd.rel.is_empty() { name.to_string() } else { format!("{name}/{}", sd.rel) };
            if !valid_name(&full) || st.datasets.contains_key(&full) || !parent(&full).is_some_and(|p| st.datasets.contains_key(p)) {
                return Err(Fail::new(1, format!("cannot receive new filesystem stream: invalid or existing dataset '{full}' in stream")));
            }
            let mut props: BTreeMap<String, String> = sd.props.iter().filter(|(k, _)| !excluded.contains(&k)).cloned().collect();
            // A non-raw stream with properties (`send -R`, `-p`; ours always is one) leaves
            // `encryption` out; the receiver infers `off` for each new dataset unless `-o` or `-x`
            // names it, so under an encrypted parent the dataset arrives unencrypted
            // (libzfs_sendrecv.c `zfs_receive_one`).
            if !excluded.iter().any(|k| *k == "encryption") && !set.iter().any(|(k, _)| k == "encryption") {
                props.insert("encryption".into(), "off".into());
            }
            let mut origin = None;
            // `-o` sets a property on the top dataset; below it the stream's value gives way to
            // inheritance (zfs-receive(8)).
            for (k, v) in set {
                if !sd.rel.is_empty() {
                    props.remove(k);
                } else if k == "origin" {
                    origin = Some(v.clone());
                } else {
                    props.insert(k.clone(), v.clone());
                }
            }
            st.next_snapshot_id += 1;
            let id = st.next_snapshot_id;
            // A received canmount of off or noauto leaves the dataset unmounted, as `-u` does.
            let unmounted = how.unmounted || props.get("canmount").is_some_and(|v| v == "off" || v == "noauto");
            st.datasets.insert(full.clone(), Dataset { props, origin, creation: now(), snapshots: vec![Snapshot { name: sd.snap.clone(), creation: sd.creation, id }], unmounted });
            let src = staging.join(i.to_string());
            let snapdir = host.snapshot_dir(id);
            created.push(snapdir.clone());
            tree::copy_tree(&src, &snapdir, &[]).map_err(|e| io_fail("receive copy to", &snapdir, e))?;
            let dir = data_dir(host, st, &full);
            if let Some(p) = dir.parent() {
                fs::create_dir_all(p).map_err(|e| io_fail("mkdir", p, e))?;
            }
            let _ = fs::remove_dir(&dir);
            fs::rename(&src, &dir).map_err(|e| io_fail("receive into", &dir, e))?;
            created.push(dir);
        }
        Ok(String::new())
    });
    // A failed receive leaves nothing behind (the state is not saved): nor the copies it made.
    if result.is_err() {
        for path in created.iter().rev() {
            let _ = fs::remove_dir_all(path);
        }
    }
    result
}
