//! `zfs`: datasets are directories at their mountpoints; snapshots are copies under `state/snapshots`.
//!
//! Here: the dataset tree every subcommand reads (names, parents, inherited properties, where a
//! dataset's files live) and the dispatch. The subcommands: making datasets, snapshots and
//! clones ([`create`]), destroying them ([`destroy`]); `set`, `rename` and `mount`, which move
//! their files ([`modify`]); `list` and `get` ([`report`]); `send` and `receive` ([`sendrecv`]).

mod create;
mod destroy;
mod modify;
mod report;
mod sendrecv;
#[cfg(test)]
mod tests;

pub use report::{ctime, nicenum};

use crate::state::{Host, Snapshot, State};
use crate::{Fail, Res, usage};
use std::path::{Path, PathBuf};

const USAGE: &str =
    "usage: zfs <list|get|set|create|snapshot|clone|destroy|rename|send|receive|mount> ...";

/// Native properties: (name, default for inheritable ones; `None` = read-only/computed).
const NATIVE: &[(&str, Option<&str>)] = &[
    ("type", None),
    ("creation", None),
    ("used", None),
    ("available", None),
    ("referenced", None),
    ("mountpoint", Some("")),
    ("origin", None),
    ("mounted", None),
    ("canmount", Some("on")),
    ("compression", Some("off")),
    ("atime", Some("on")),
    ("readonly", Some("off")),
    ("quota", Some("none")),
    ("encryption", Some("off")),
    ("keyformat", Some("none")),
    ("keylocation", Some("none")),
];

fn canonical_prop(p: &str) -> Option<String> {
    let p = match p {
        "avail" => "available",
        "refer" => "referenced",
        "compress" => "compression",
        "rdonly" => "readonly",
        other => other,
    };
    if p == "name" || p.contains(':') || NATIVE.iter().any(|(n, _)| *n == p) {
        Some(p.to_string())
    } else {
        None
    }
}

fn parse_props(list: &str) -> Res<Vec<String>> {
    list.split(',')
        .map(|p| {
            canonical_prop(p).ok_or_else(|| {
                Fail::new(
                    2,
                    format!("bad property list: invalid property '{p}'\n{USAGE}"),
                )
            })
        })
        .collect()
}

fn no_dataset(name: &str) -> Fail {
    Fail::new(1, format!("cannot open '{name}': dataset does not exist"))
}

fn parent(name: &str) -> Option<&str> {
    name.rfind('/').map(|i| &name[..i])
}

/// zfs_namecheck: components of `[A-Za-z0-9_-.:]`, never `.` or `..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
        })
}

/// Effective mountpoint value and its source: (`path`|`none`|`legacy`, `local`|`inherited from X`|`default`).
pub fn mountpoint(st: &State, name: &str) -> (String, String) {
    let mut cur = name;
    let mut suffix = String::new();
    loop {
        if let Some(v) = st.datasets.get(cur).and_then(|d| d.props.get("mountpoint")) {
            let src = if cur == name {
                "local".to_string()
            } else {
                format!("inherited from {cur}")
            };
            if v == "none" || v == "legacy" {
                return (v.clone(), src);
            }
            return (format!("{}{suffix}", v.trim_end_matches('/')), src);
        }
        match parent(cur) {
            Some(p) => {
                suffix = format!("{}{suffix}", &cur[p.len()..]);
                cur = p;
            }
            None => return (format!("/{name}"), "default".into()),
        }
    }
}

/// The value of `prop` set on `name` or the nearest ancestor that sets it.
pub fn inherited_value(st: &State, name: &str, prop: &str) -> Option<String> {
    let mut cur = Some(name);
    while let Some(c) = cur {
        if let Some(v) = st.datasets.get(c).and_then(|d| d.props.get(prop)) {
            return Some(v.clone());
        }
        cur = parent(c);
    }
    None
}

/// Whether a dataset is mounted: it has a mountpoint and was not left unmounted.
pub fn is_mounted(st: &State, name: &str) -> bool {
    st.datasets.get(name).is_some_and(|d| !d.unmounted) && mountpoint(st, name).0.starts_with('/')
}

/// Where a dataset's files live: its mountpoint, or a private directory when it is not mounted.
/// A mountpoint outside the simulated host is placed under `DIR/root`: the simulator never
/// writes outside its directory.
pub fn data_dir(host: &Host, st: &State, name: &str) -> PathBuf {
    let (mp, _) = mountpoint(st, name);
    if !is_mounted(st, name) {
        host.state_dir()
            .join("unmounted")
            .join(name.replace('/', "%"))
    } else if Path::new(&mp).starts_with(&host.dir) {
        PathBuf::from(mp)
    } else {
        host.root().join(mp.trim_start_matches('/'))
    }
}

/// Directories of other datasets inside `dir`: they are not part of this dataset's contents.
fn foreign_dirs(host: &Host, st: &State, name: &str) -> Vec<PathBuf> {
    let dir = data_dir(host, st, name);
    st.datasets
        .keys()
        .filter(|n| n.as_str() != name)
        .map(|n| data_dir(host, st, n))
        .filter(|d| d.starts_with(&dir) && *d != dir)
        .collect()
}

fn descendants(st: &State, name: &str) -> Vec<String> {
    let prefix = format!("{name}/");
    st.datasets
        .keys()
        .filter(|n| n.starts_with(&prefix))
        .cloned()
        .collect()
}

fn split_snap(full: &str) -> Option<(&str, &str)> {
    full.split_once('@')
        .filter(|(d, s)| !d.is_empty() && !s.is_empty())
}

fn snapshot<'a>(st: &'a State, full: &str) -> Option<&'a Snapshot> {
    let (ds, snap) = split_snap(full)?;
    st.datasets
        .get(ds)?
        .snapshots
        .iter()
        .find(|s| s.name == snap)
}

/// Clones whose origin is a snapshot of one of `names`.
fn dependent_clones(st: &State, names: &[String]) -> Vec<String> {
    st.datasets
        .iter()
        .filter(|(_, d)| {
            d.origin
                .as_ref()
                .and_then(|o| split_snap(o))
                .is_some_and(|(ods, _)| names.iter().any(|n| n == ods))
        })
        .map(|(n, _)| n.clone())
        .collect()
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let Some(cmd) = args.first() else {
        return Err(usage(USAGE));
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "list" => report::list(host, rest),
        "get" => report::get(host, rest),
        "set" => modify::set(host, rest),
        "create" => create::create(host, rest),
        "snapshot" | "snap" => create::snapshot_cmd(host, rest),
        "clone" => create::clone(host, rest),
        "destroy" => destroy::destroy(host, rest),
        "rename" => modify::rename(host, rest),
        "send" => sendrecv::send(host, rest),
        "receive" | "recv" => sendrecv::receive(host, rest),
        "mount" => modify::mount(host, rest),
        _ => Err(Fail::new(
            64,
            format!("unrecognized command '{cmd}'\n{USAGE}"),
        )),
    }
}

/// Validates a `prop=value` assignment for `zfs set`/`-o`.
fn assignment(kv: &str) -> Res<(String, String)> {
    let Some((k, v)) = kv.split_once('=') else {
        return Err(Fail::new(
            2,
            format!("missing '=' for property argument '{kv}'\n{USAGE}"),
        ));
    };
    let settable = k.contains(':') || NATIVE.iter().any(|(n, d)| *n == k && d.is_some());
    if !settable && k != "origin" {
        return Err(Fail::new(
            1,
            format!("cannot set property for '{v}': invalid property '{k}'"),
        ));
    }
    if k == "mountpoint" && !(v.starts_with('/') || v == "none" || v == "legacy") {
        return Err(Fail::new(
            1,
            "cannot set property: 'mountpoint' must be an absolute path, 'none', or 'legacy'",
        ));
    }
    Ok((k.to_string(), v.to_string()))
}
