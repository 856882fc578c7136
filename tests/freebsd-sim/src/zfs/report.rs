//! `zfs list` and `zfs get`: each property's value and source as zfs reports them, sizes and
//! times human or parsable (`-p`), in zfs's aligned tables or tab-separated (`-H`).

use super::{
    NATIVE, USAGE, data_dir, descendants, foreign_dirs, is_mounted, mountpoint, no_dataset, parent,
    parse_props, snapshot, split_snap,
};
use crate::state::{Host, State};
use crate::tree;
use crate::{Fail, Res, getopt, usage};

/// Simulated pool size, so `available` has a plausible value.
const POOL_BYTES: u64 = 100 << 30;

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
                    self.size(tree::tree_size(&self.host.snapshot_dir(s.id), &[])),
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
        tree::tree_size(
            &data_dir(self.host, self.st, name),
            &foreign_dirs(self.host, self.st, name),
        )
    }

    fn used(&self, name: &str) -> u64 {
        let snaps: u64 = self.st.datasets.get(name).map_or(0, |d| {
            d.snapshots
                .iter()
                .map(|s| tree::tree_size(&self.host.snapshot_dir(s.id), &[]))
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

pub(super) fn list(host: &Host, args: &[String]) -> Res<String> {
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

pub(super) fn get(host: &Host, args: &[String]) -> Res<String> {
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
