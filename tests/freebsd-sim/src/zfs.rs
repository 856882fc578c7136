//! `zfs`: datasets are directories at their mountpoints; snapshots are copies under `state/snapshots`.

use crate::state::{Dataset, Host, Snapshot, State, io_fail, now};
use crate::stream::{self, StreamDataset, StreamWriter};
use crate::{Fail, Res, getopt, usage};
use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
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

/// Simulated pool size, so `available` has a plausible value.
const POOL_BYTES: u64 = 100 << 30;

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

/// zfs_nicenum: 3 significant digits with a K/M/G/T suffix, `0B` style for small values.
pub fn nicenum(n: u64) -> String {
    const UNITS: &[char] = &['B', 'K', 'M', 'G', 'T', 'P', 'E'];
    let mut i = 0;
    let mut v = n;
    while v >= 1024 && i < UNITS.len() - 1 {
        v /= 1024;
        i += 1;
    }
    let u = UNITS[i];
    if i == 0 || n.is_multiple_of(1u64 << (10 * i)) {
        return format!("{v}{u}");
    }
    let f = n as f64 / (1u64 << (10 * i)) as f64;
    for prec in [2, 1, 0] {
        let s = format!("{f:.prec$}{u}");
        if s.len() <= 5 {
            return s;
        }
    }
    format!("{f:.0}{u}")
}

/// ctime-like `Sat Nov 29  6:35 2025`, as `zfs get creation` prints it (UTC).
pub fn ctime(t: u64) -> String {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    // Civil-from-days (H. Hinnant): proleptic Gregorian date of a day count.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:2}:{:02} {y}",
        WD[days.rem_euclid(7) as usize],
        MO[(m - 1) as usize],
        d,
        secs / 3600,
        secs % 3600 / 60
    )
}

struct Ctx<'a> {
    host: &'a Host,
    st: &'a State,
    parsable: bool,
}

impl Ctx<'_> {
    fn size(&self, n: u64) -> String {
        if self.parsable {
            n.to_string()
        } else {
            nicenum(n)
        }
    }

    /// Value and source of `prop` for a dataset or snapshot.
    fn prop(&self, name: &str, prop: &str) -> (String, String) {
        let dash = || ("-".to_string(), "-".to_string());
        if let Some((ds, _)) = split_snap(name) {
            let Some(s) = snapshot(self.st, name) else {
                return dash();
            };
            return match prop {
                "name" => (name.to_string(), "-".into()),
                "type" => ("snapshot".into(), "-".into()),
                "creation" => (self.time(s.creation), "-".into()),
                "used" => (self.size(0), "-".into()),
                "referenced" => (
                    self.size(stream::tree_size(&self.host.snapshot_dir(s.id), &[])),
                    "-".into(),
                ),
                p if p.contains(':') => self.user_prop(ds, p),
                _ => dash(),
            };
        }
        let Some(d) = self.st.datasets.get(name) else {
            return dash();
        };
        match prop {
            "name" => (name.to_string(), "-".into()),
            "type" => ("filesystem".into(), "-".into()),
            "creation" => (self.time(d.creation), "-".into()),
            "used" => (self.size(self.used(name)), "-".into()),
            "available" => (
                self.size(POOL_BYTES.saturating_sub(self.used("zroot"))),
                "-".into(),
            ),
            "referenced" => (self.size(self.referenced(name)), "-".into()),
            "origin" => (d.origin.clone().unwrap_or_else(|| "-".into()), "-".into()),
            "mountpoint" => mountpoint(self.st, name),
            "mounted" => (
                if is_mounted(self.st, name) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                "-".into(),
            ),
            "canmount" => d
                .props
                .get(prop)
                .map(|v| (v.clone(), "local".into()))
                .unwrap_or(("on".into(), "default".into())),
            p if p.contains(':') => self.user_prop(name, p),
            p => self.inherited(name, p),
        }
    }

    fn time(&self, t: u64) -> String {
        if self.parsable {
            t.to_string()
        } else {
            ctime(t)
        }
    }

    fn referenced(&self, name: &str) -> u64 {
        stream::tree_size(
            &data_dir(self.host, self.st, name),
            &foreign_dirs(self.host, self.st, name),
        )
    }

    fn used(&self, name: &str) -> u64 {
        let snaps: u64 = self.st.datasets.get(name).map_or(0, |d| {
            d.snapshots
                .iter()
                .map(|s| stream::tree_size(&self.host.snapshot_dir(s.id), &[]))
                .sum()
        });
        let children: u64 = self
            .st
            .datasets
            .keys()
            .filter(|n| parent(n) == Some(name))
            .map(|n| self.used(n))
            .sum();
        self.referenced(name) + snaps + children
    }

    fn inherited(&self, name: &str, prop: &str) -> (String, String) {
        let mut cur = Some(name);
        while let Some(c) = cur {
            if let Some(v) = self.st.datasets.get(c).and_then(|d| d.props.get(prop)) {
                return (
                    v.clone(),
                    if c == name {
                        "local".into()
                    } else {
                        format!("inherited from {c}")
                    },
                );
            }
            cur = parent(c);
        }
        let default = NATIVE
            .iter()
            .find(|(n, _)| *n == prop)
            .and_then(|(_, d)| *d)
            .unwrap_or("-");
        (default.to_string(), "default".into())
    }

    fn user_prop(&self, name: &str, prop: &str) -> (String, String) {
        let (v, s) = self.inherited(name, prop);
        if s == "default" {
            ("-".into(), "-".into())
        } else {
            (v, s)
        }
    }
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let Some(cmd) = args.first() else {
        return Err(usage(USAGE));
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "list" => list(host, rest),
        "get" => get(host, rest),
        "set" => set(host, rest),
        "create" => create(host, rest),
        "snapshot" | "snap" => snapshot_cmd(host, rest),
        "clone" => clone(host, rest),
        "destroy" => destroy(host, rest),
        "rename" => rename(host, rest),
        "send" => send(host, rest),
        "receive" | "recv" => receive(host, rest),
        "mount" => mount(host, rest),
        _ => Err(Fail::new(
            64,
            format!("unrecognized command '{cmd}'\n{USAGE}"),
        )),
    }
}

/// Datasets then their snapshots, parents before children, as `zfs list` orders them.
fn ordered(st: &State, types: (bool, bool)) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (name, d) in &st.datasets {
        let depth = name.matches('/').count();
        if types.0 {
            out.push((name.clone(), depth));
        }
        if types.1 {
            let mut snaps = d.snapshots.clone();
            snaps.sort_by_key(|s| s.creation);
            out.extend(
                snaps
                    .iter()
                    .map(|s| (format!("{name}@{}", s.name), depth + 1)),
            );
        }
    }
    out
}

fn table(rows: &[Vec<String>], header: Option<&[String]>, scripted: bool) -> String {
    let mut out = String::new();
    if scripted {
        for r in rows {
            out.push_str(&r.join("\t"));
            out.push('\n');
        }
        return out;
    }
    let hdr: Vec<String> = header
        .map(|h| h.iter().map(|c| c.to_uppercase()).collect())
        .unwrap_or_default();
    let ncol = hdr.len().max(rows.first().map_or(0, Vec::len));
    let widths: Vec<usize> = (0..ncol)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&hdr))
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let right = |h: &str| matches!(h, "USED" | "AVAIL" | "REFER" | "AVAILABLE" | "REFERENCED");
    for r in std::iter::once(&hdr).filter(|h| !h.is_empty()).chain(rows) {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = if i + 1 == r.len() { 0 } else { widths[i] };
                if hdr.get(i).is_some_and(|h| right(h)) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn list(host: &Host, args: &[String]) -> Res<String> {
    let (opts, names) = getopt("zfs", args, "Hprd:t:o:s:S:", USAGE)?;
    let st = host.load()?;
    let mut scripted = false;
    let mut parsable = false;
    let mut depth: Option<usize> = None;
    let mut types = (true, false);
    let mut cols: Vec<String> = ["name", "used", "available", "referenced", "mountpoint"]
        .map(String::from)
        .to_vec();
    let mut headers: Vec<String> = ["name", "used", "avail", "refer", "mountpoint"]
        .map(String::from)
        .to_vec();
    let mut sort: Option<(String, bool)> = None;
    for (c, v) in opts {
        match c {
            'H' => scripted = true,
            'p' => parsable = true,
            'r' => depth = Some(usize::MAX),
            'd' => {
                depth = Some(
                    v.parse()
                        .map_err(|_| Fail::new(2, format!("invalid depth '{v}'")))?,
                )
            }
            't' => {
                types = (false, false);
                for t in v.split(',') {
                    match t {
                        "filesystem" | "fs" => types.0 = true,
                        "snapshot" | "snap" => types.1 = true,
                        "all" => types = (true, true),
                        "volume" | "bookmark" => {}
                        _ => return Err(Fail::new(2, format!("invalid type '{t}'\n{USAGE}"))),
                    }
                }
            }
            'o' => {
                headers = v.split(',').map(String::from).collect();
                cols = parse_props(&v)?;
            }
            's' | 'S' => sort = Some((parse_props(&v)?.remove(0), c == 'S')),
            _ => unreachable!(),
        }
    }
    let ctx = Ctx {
        host,
        st: &st,
        parsable,
    };
    let all = ordered(&st, types);
    let mut picked: Vec<String> = Vec::new();
    if names.is_empty() {
        picked.extend(
            all.iter()
                .filter(|(_, d)| depth.is_none_or(|m| *d <= m))
                .map(|(n, _)| n.clone()),
        );
    } else {
        for name in &names {
            if split_snap(name).is_some() {
                if snapshot(&st, name).is_none() {
                    return Err(no_dataset(name));
                }
                picked.push(name.clone());
                continue;
            }
            if !st.datasets.contains_key(name) {
                return Err(no_dataset(name));
            }
            let base = name.matches('/').count();
            // A filesystem named with `-t snapshot` lists its snapshots (depth 1 below it).
            let max = depth.unwrap_or(if types.0 { 0 } else { 1 });
            picked.extend(
                all.iter()
                    .filter(|(n, d)| {
                        (n == name
                            || n.starts_with(&format!("{name}/"))
                            || n.starts_with(&format!("{name}@")))
                            && d - base <= max
                    })
                    .map(|(n, _)| n.clone()),
            );
        }
    }
    let mut rows: Vec<(Vec<String>, String)> = picked
        .iter()
        .map(|n| {
            let key = sort
                .as_ref()
                .map(|(p, _)| ctx_sort_key(host, &st, n, p))
                .unwrap_or_default();
            (cols.iter().map(|c| ctx.prop(n, c).0).collect(), key)
        })
        .collect();
    if let Some((_, desc)) = &sort {
        rows.sort_by(|a, b| if *desc { b.1.cmp(&a.1) } else { a.1.cmp(&b.1) });
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(r, _)| r).collect();
    Ok(table(&rows, Some(&headers), scripted))
}

/// Sort key: numeric properties zero-padded so string order is numeric order.
fn ctx_sort_key(host: &Host, st: &State, name: &str, prop: &str) -> String {
    let (v, _) = Ctx {
        host,
        st,
        parsable: true,
    }
    .prop(name, prop);
    match v.parse::<u64>() {
        Ok(n) => format!("{n:020}"),
        Err(_) => v,
    }
}

fn get(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("zfs", args, "Hprd:o:s:t:", USAGE)?;
    let mut scripted = false;
    let mut parsable = false;
    let mut fields: Vec<String> = ["name", "property", "value", "source"]
        .map(String::from)
        .to_vec();
    let mut recursive = false;
    for (c, v) in opts {
        match c {
            'H' => scripted = true,
            'p' => parsable = true,
            'r' | 'd' => recursive = true,
            'o' => {
                fields = v.split(',').map(String::from).collect();
                if let Some(f) = fields.iter().find(|f| {
                    !["name", "property", "value", "source", "received"].contains(&f.as_str())
                }) {
                    return Err(Fail::new(2, format!("invalid field '{f}'\n{USAGE}")));
                }
            }
            's' | 't' => {}
            _ => unreachable!(),
        }
    }
    let (Some(props), names) = (rest.first(), rest.get(1..).unwrap_or_default()) else {
        return Err(usage(USAGE));
    };
    let st = host.load()?;
    let ctx = Ctx {
        host,
        st: &st,
        parsable,
    };
    let mut targets = Vec::new();
    for n in names {
        if !st.datasets.contains_key(n) && snapshot(&st, n).is_none() {
            return Err(no_dataset(n));
        }
        targets.push(n.clone());
        if recursive {
            targets.extend(descendants(&st, n));
        }
    }
    let mut rows = Vec::new();
    for n in &targets {
        let plist: Vec<String> = if props == "all" {
            let mut v: Vec<String> = std::iter::once("name")
                .chain(NATIVE.iter().map(|(p, _)| *p))
                .map(String::from)
                .collect();
            let mut cur = Some(n.as_str());
            while let Some(c) = cur {
                for k in st
                    .datasets
                    .get(c)
                    .map(|d| {
                        d.props
                            .keys()
                            .filter(|k| k.contains(':'))
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                {
                    if !v.contains(&k) {
                        v.push(k);
                    }
                }
                cur = parent(c);
            }
            v.retain(|p| p != "name");
            v
        } else {
            parse_props(props)?
        };
        for p in plist {
            let (val, src) = ctx.prop(n, &p);
            rows.push(
                fields
                    .iter()
                    .map(|f| match f.as_str() {
                        "name" => n.clone(),
                        "property" => p.clone(),
                        "value" => val.clone(),
                        "source" => src.clone(),
                        _ => "-".into(),
                    })
                    .collect(),
            );
        }
    }
    Ok(table(&rows, Some(&fields), scripted))
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

fn set(host: &Host, args: &[String]) -> Res<String> {
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

fn create(host: &Host, args: &[String]) -> Res<String> {
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
    stream::copy_tree(&data_dir(host, st, ds), &dst, &foreign_dirs(host, st, ds))
        .map_err(|e| io_fail("snapshot copy of", &dst, e))?;
    let d = st.datasets.get_mut(ds).expect("caller checked");
    d.snapshots.push(Snapshot {
        name: snap.to_string(),
        creation: now(),
        id,
    });
    Ok(())
}

fn snapshot_cmd(host: &Host, args: &[String]) -> Res<String> {
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

fn clone(host: &Host, args: &[String]) -> Res<String> {
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
        stream::copy_tree(&host.snapshot_dir(snap.id), &dir, &[])
            .map_err(|e| io_fail("clone copy to", &dir, e))?;
        Ok(String::new())
    })
}

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
        for e in stream::walk(&dir, &foreign)
            .map_err(|e| io_fail("walk", &dir, e))?
            .iter()
            .rev()
        {
            let p = dir.join(e.rel());
            let _ = if matches!(e, stream::Entry::Dir(_)) {
                fs::remove_dir(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

fn destroy(host: &Host, args: &[String]) -> Res<String> {
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
fn destroy_tree(host: &Host, st: &mut State, name: &str, force: bool) -> Res<()> {
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

fn rename(host: &Host, args: &[String]) -> Res<String> {
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

fn send(host: &Host, args: &[String]) -> Res<String> {
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

/// `zfs mount NAME`: mounts a dataset left unmounted, as zfs_main.c `share_mount_one` checks.
fn mount(host: &Host, args: &[String]) -> Res<String> {
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

fn receive(host: &Host, args: &[String]) -> Res<String> {
    receive_from(host, args, std::io::stdin().lock())
}

fn receive_from(host: &Host, args: &[String], input: impl std::io::Read) -> Res<String> {
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
            stream::copy_tree(&src, &snapdir, &[]).map_err(|e| io_fail("receive copy to", &snapdir, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(tag: &str) -> Host {
        let d = std::env::temp_dir().join(format!("fsim-zfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        crate::state::init(&d, false).unwrap();
        Host::new(d)
    }

    fn zfs(h: &Host, args: &[&str]) -> Res<String> {
        main(h, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn inherited_mountpoints() {
        let h = host("mp");
        zfs(&h, &["create", "zroot/pot/jails/a"]).unwrap();
        zfs(&h, &["create", "zroot/pot/jails/a/m"]).unwrap();
        let st = h.load().unwrap();
        let pot = h.root().join("opt/pot");
        assert_eq!(
            mountpoint(&st, "zroot/pot/jails/a/m"),
            (
                format!("{}/jails/a/m", pot.display()),
                "inherited from zroot/pot".into()
            )
        );
        assert!(pot.join("jails/a/m").is_dir());
        fs::write(pot.join("jails/a/m/f"), "x").unwrap();
        let other = h.dir.join("elsewhere");
        zfs(
            &h,
            &[
                "set",
                &format!("mountpoint={}", other.display()),
                "zroot/pot/jails/a",
            ],
        )
        .unwrap();
        assert!(
            other.join("m/f").is_file(),
            "child with inherited mountpoint moves along"
        );
        assert!(!pot.join("jails/a").exists());
        let out = zfs(
            &h,
            &[
                "get",
                "-H",
                "-o",
                "value,source",
                "mountpoint",
                "zroot/pot/jails/a/m",
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            format!("{}/m\tinherited from zroot/pot/jails/a\n", other.display())
        );
        fs::remove_dir_all(&h.dir).unwrap();
    }

    #[test]
    fn clone_destroy_dependencies() {
        let h = host("dep");
        zfs(&h, &["create", "zroot/pot/jails/img"]).unwrap();
        fs::write(h.root().join("opt/pot/jails/img/f"), "data").unwrap();
        zfs(&h, &["snapshot", "zroot/pot/jails/img@1"]).unwrap();
        zfs(&h, &["clone", "zroot/pot/jails/img@1", "zroot/pot/jails/c"]).unwrap();
        assert_eq!(
            fs::read_to_string(h.root().join("opt/pot/jails/c/f")).unwrap(),
            "data"
        );
        assert_eq!(
            zfs(&h, &["list", "-H", "-o", "origin", "zroot/pot/jails/c"]).unwrap(),
            "zroot/pot/jails/img@1\n"
        );
        let e = zfs(&h, &["destroy", "zroot/pot/jails/img@1"]).unwrap_err();
        assert!(
            e.msg.contains("snapshot has dependent clones") && e.msg.contains("zroot/pot/jails/c"),
            "{}",
            e.msg
        );
        let e = zfs(&h, &["destroy", "zroot/pot/jails/img"]).unwrap_err();
        assert!(e.msg.contains("filesystem has children"), "{}", e.msg);
        let e = zfs(&h, &["destroy", "-r", "zroot/pot/jails/img"]).unwrap_err();
        assert!(
            e.msg.contains("filesystem has dependent clones"),
            "{}",
            e.msg
        );
        zfs(&h, &["destroy", "zroot/pot/jails/c"]).unwrap();
        zfs(&h, &["destroy", "-r", "zroot/pot/jails/img"]).unwrap();
        assert!(!h.root().join("opt/pot/jails/img").exists());
        let e = zfs(&h, &["list", "zroot/pot/jails/img"]).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                1,
                "cannot open 'zroot/pot/jails/img': dataset does not exist"
            )
        );
        fs::remove_dir_all(&h.dir).unwrap();
    }

    /// A stream of datasets with the given names relative to the received one, each holding
    /// one file.
    fn stream_of(h: &Host, rels: &[&str], props: &[(&str, &str)]) -> Vec<u8> {
        let src = h.dir.join("src");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), "data").unwrap();
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        for rel in rels {
            let ds = StreamDataset {
                rel: rel.to_string(),
                snap: "1".into(),
                creation: 7,
                props: props
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            w.dataset(&ds, &src, &[]).unwrap();
        }
        let bytes = w.finish().unwrap();
        fs::remove_dir_all(&src).unwrap();
        bytes
    }

    fn recv(h: &Host, args: &[&str], bytes: &[u8]) -> Res<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        receive_from(h, &args, bytes)
    }

    #[test]
    fn a_failed_receive_leaves_nothing_behind() {
        let h = host("recvfail");
        // The second `m` fails the receive after two datasets were laid out.
        let bad = stream_of(&h, &["", "m", "m"], &[]);
        let e = recv(&h, &["zroot/pot/jails/img"], &bad).unwrap_err();
        assert!(
            e.msg.contains("cannot receive new filesystem stream"),
            "{}",
            e.msg
        );
        assert_eq!(
            fs::read_dir(h.state_dir().join("snapshots"))
                .unwrap()
                .count(),
            0,
            "no snapshot copy stays"
        );
        assert!(!h.root().join("opt/pot/jails/img").exists());
        let good = stream_of(&h, &["", "m"], &[]);
        recv(&h, &["zroot/pot/jails/img"], &good).unwrap();
        assert_eq!(
            fs::read_to_string(h.root().join("opt/pot/jails/img/m/f")).unwrap(),
            "data"
        );
        // ZFS names never hold `.` or `..` components.
        let dots = stream_of(&h, &["", ".."], &[]);
        assert!(recv(&h, &["zroot/pot/jails/dots"], &dots).is_err());
        assert!(!h.root().join("opt/pot/jails/dots").exists());
        fs::remove_dir_all(&h.dir).unwrap();
    }

    #[test]
    fn list_snapshots_and_formats() {
        let h = host("ls");
        zfs(&h, &["create", "zroot/pot/jails/a"]).unwrap();
        zfs(&h, &["snapshot", "zroot/pot/jails/a@s1"]).unwrap();
        let out = zfs(
            &h,
            &[
                "list",
                "-d",
                "1",
                "-H",
                "-t",
                "snapshot",
                "-o",
                "name",
                "zroot/pot/jails/a",
            ],
        )
        .unwrap();
        assert_eq!(out, "zroot/pot/jails/a@s1\n");
        let out = zfs(&h, &["list", "-o", "name,origin", "zroot/pot/jails/a"]).unwrap();
        assert_eq!(out, "NAME               ORIGIN\nzroot/pot/jails/a  -\n");
        assert_eq!(nicenum(0), "0B");
        assert_eq!(nicenum(1536), "1.50K");
        assert_eq!(nicenum(100 << 30), "100G");
        assert_eq!(ctime(0), "Thu Jan  1  0:00 1970");
        fs::remove_dir_all(&h.dir).unwrap();
    }
}
