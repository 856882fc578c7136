//! `mount`, `mount_nullfs`, `umount`: mounts are recorded only; jexec applies them privately.

use crate::state::{Host, Mount};
use crate::zfs::mountpoint;
use crate::{Fail, Res, getopt, usage};
use std::path::Path;

const MOUNT_USAGE: &str = "usage: mount [-adflpruvw] [-F fstab] [-o options] [-t ufs | external_type]\n       mount [-dfpruvw] special | node\n       mount [-dfpruvw] [-o options] [-t ufs | external_type] special node";
const NULLFS_USAGE: &str = "usage: mount_nullfs [-o options] target mount-point";
const UMOUNT_USAGE: &str =
    "usage: umount [-dfNnv] [-t fstypelist] special ... | node ... | fsid ...";

/// Trailing slashes dropped, so `/a/b/` and `/a/b` name the same mount.
fn norm(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

fn record(
    host: &Host,
    tool: &str,
    fstype: &str,
    opts: &str,
    src: &str,
    target: &str,
) -> Res<String> {
    let target = norm(target);
    if fstype == "nullfs" && !Path::new(src).is_dir() {
        return Err(Fail::new(
            1,
            format!("{tool}: {src}: No such file or directory"),
        ));
    }
    if !Path::new(&target).is_dir() {
        return Err(Fail::new(
            1,
            format!("{tool}: {target}: No such file or directory"),
        ));
    }
    let ro = opts.split(',').any(|o| o == "ro" || o == "rdonly");
    let src = if fstype == "nullfs" {
        norm(src)
    } else {
        src.to_string()
    };
    host.update(|st| {
        if st.mounts.iter().any(|m| m.target == target) {
            return Err(Fail::new(1, format!("{tool}: {target}: Device busy")));
        }
        st.mounts.push(Mount {
            fstype: fstype.into(),
            src: src.clone(),
            target: target.clone(),
            ro,
        });
        Ok(String::new())
    })
}

pub fn mount_main(host: &Host, args: &[String]) -> Res<String> {
    let (style, args) = libxo_style(args)?;
    let (opts, rest) = getopt("mount", &args, "adflprt:uvwo:F:", MOUNT_USAGE)?;
    let fstype = opts
        .iter()
        .find(|(c, _)| *c == 't')
        .map(|(_, v)| v.as_str());
    let mo: Vec<&str> = opts
        .iter()
        .filter(|(c, _)| *c == 'o')
        .map(|(_, v)| v.as_str())
        .collect();
    match (fstype, rest.as_slice()) {
        (None, []) => list(host, opts.iter().any(|(c, _)| *c == 'p'), style),
        (Some(t @ ("nullfs" | "tmpfs")), [src, target]) => {
            record(host, "mount", t, &mo.join(","), src, target)
        }
        (Some(t), [_, _]) => Err(Fail::new(
            1,
            format!("mount: {t}: file system type not supported by the simulator"),
        )),
        _ => Err(usage(MOUNT_USAGE)),
    }
}

pub fn mount_nullfs_main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("mount_nullfs", args, "o:", NULLFS_USAGE)?;
    let [src, target] = rest.as_slice() else {
        return Err(usage(NULLFS_USAGE));
    };
    let mo: Vec<&str> = opts.iter().map(|(_, v)| v.as_str()).collect();
    record(host, "mount_nullfs", "nullfs", &mo.join(","), src, target)
}

/// One mounted file system as `mount` lists it.
struct Row {
    src: String,
    target: String,
    fstype: String,
    ro: bool,
}

/// libxo output styles the simulator speaks.
#[derive(Debug, PartialEq)]
enum Style {
    Json,
}

/// Takes libxo's `--libxo json` / `--libxo=json` out of `args`, as `xo_parse_args` does before
/// getopt sees them.
fn libxo_style(args: &[String]) -> Res<(Option<Style>, Vec<String>)> {
    let mut style = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let opts = if a == "--libxo" {
            it.next().cloned().unwrap_or_default()
        } else if let Some(o) = a.strip_prefix("--libxo=") {
            o.to_string()
        } else {
            rest.push(a.clone());
            continue;
        };
        if opts.split(',').any(|o| o != "json") {
            return Err(Fail::new(
                1,
                format!("mount: --libxo {opts}: only json is simulated"),
            ));
        }
        style = Some(Style::Json);
    }
    Ok((style, rest))
}

fn list(host: &Host, fstab: bool, style: Option<Style>) -> Res<String> {
    let st = host.load()?;
    let mut rows: Vec<Row> = st
        .datasets
        .keys()
        .filter_map(|n| {
            let (mp, _) = mountpoint(&st, n);
            mp.starts_with('/').then(|| Row {
                src: n.clone(),
                target: mp,
                fstype: "zfs".into(),
                ro: false,
            })
        })
        .collect();
    rows.extend(st.mounts.iter().map(|m| Row {
        src: m.src.clone(),
        target: m.target.clone(),
        fstype: m.fstype.clone(),
        ro: m.ro,
    }));
    match (fstab, style) {
        (true, Some(Style::Json)) => Ok(fstab_json(&rows)),
        (true, None) => Ok(rows.iter().map(fstab_line).collect()),
        (false, Some(Style::Json)) => Err(Fail::new(
            1,
            "mount: --libxo is simulated for mount -p only",
        )),
        (false, None) => Ok(rows
            .iter()
            .map(|r| {
                format!(
                    "{} on {} ({}, local{})\n",
                    r.src,
                    r.target,
                    r.fstype,
                    if r.ro { ", read-only" } else { "" }
                )
            })
            .collect()),
    }
}

fn opts(r: &Row) -> &'static str {
    if r.ro { "ro" } else { "rw" }
}

/// mount.c `putfsent()`: names are printed raw, padded with tabs to column 24 or followed by
/// one space, so a name with blanks cannot be told from the padding.
fn fstab_line(r: &Row) -> String {
    let pad = |l: usize| {
        format!(
            "{}{}{}",
            if l < 8 { "\t" } else { "" },
            if l < 16 { "\t" } else { "" },
            if l < 24 { "\t" } else { " " }
        )
    };
    let o = opts(r);
    format!(
        "{}{}{}{}{}\t{o}{}\t0 0\n",
        r.src,
        pad(r.src.len()),
        r.target,
        pad(r.target.len()),
        r.fstype,
        if o.len() < 8 { "\t" } else { " " }
    )
}

/// libxo (1.x, as in FreeBSD 14) escapes only `\\`, `"`, newline and carriage return in JSON
/// strings; a tab or other control character is written raw.
fn libxo_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `mount -p --libxo json`: the container `mount`, the list `fstab`, one instance per mount
/// with `device`, `mntpoint`, `fstype`, `opts` and the numbers `dump` and `pass`, in libxo's
/// compact JSON (`", "` between instances, `","` between fields, `}\n` from `xo_finish`).
fn fstab_json(rows: &[Row]) -> String {
    let entries: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"device\":{},\"mntpoint\":{},\"fstype\":{},\"opts\":\"{}\",\"dump\":0,\"pass\":0}}",
                libxo_json_string(&r.src),
                libxo_json_string(&r.target),
                libxo_json_string(&r.fstype),
                opts(r)
            )
        })
        .collect();
    format!("{{\"mount\": {{\"fstab\": [{}]}}}}\n", entries.join(", "))
}

pub fn umount_main(host: &Host, args: &[String]) -> Res<String> {
    let (_, rest) = getopt("umount", args, "adfNnvt:", UMOUNT_USAGE)?;
    if rest.is_empty() {
        return Err(usage(UMOUNT_USAGE));
    }
    // umount.c's main: every target is tried (`checkname`), a failed one only warns and sets
    // the exit status to 1; the others are unmounted all the same.
    let failed = host.update(|st| {
        let mut failed = Vec::new();
        for t in &rest {
            let t = norm(t);
            match st.mounts.iter().rposition(|m| m.target == t) {
                Some(i) => drop(st.mounts.remove(i)),
                None => failed.push(format!("umount: {t}: not a file system root directory")),
            }
        }
        Ok(failed)
    })?;
    match failed.is_empty() {
        true => Ok(String::new()),
        false => Err(Fail::new(1, failed.join("\n"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(src: &str, target: &str, fstype: &str, ro: bool) -> Row {
        Row {
            src: src.into(),
            target: target.into(),
            fstype: fstype.into(),
            ro,
        }
    }

    #[test]
    fn fstab_lines_pad_like_putfsent() {
        // Short fields get tabs up to column 24, long ones a single space; opts under 8
        // characters a tab; then "\t0 0".
        assert_eq!(
            fstab_line(&row("zroot", "/", "zfs", false)),
            "zroot\t\t\t/\t\t\tzfs\trw\t\t0 0\n"
        );
        assert_eq!(
            fstab_line(&row("/a/web v2/local", "/j/m/local", "nullfs", true)),
            "/a/web v2/local\t\t/j/m/local\t\tnullfs\tro\t\t0 0\n"
        );
        let long = "/var/nomad/alloc/1234/web\tv2/local";
        assert_eq!(
            fstab_line(&row(long, "/opt/pot/jails/web_1/m/local", "nullfs", false)),
            format!("{long} /opt/pot/jails/web_1/m/local nullfs\trw\t\t0 0\n")
        );
    }

    #[test]
    fn libxo_json_is_mounts_fstab_list_escaped_like_libxo_1() {
        let out = fstab_json(&[
            row("zroot/pot", "/opt/pot", "zfs", false),
            row("/a/\"x\"\\\ty\nz", "/j/m/local", "nullfs", true),
        ]);
        assert_eq!(
            out,
            "{\"mount\": {\"fstab\": [{\"device\":\"zroot/pot\",\"mntpoint\":\"/opt/pot\",\
             \"fstype\":\"zfs\",\"opts\":\"rw\",\"dump\":0,\"pass\":0}, \
             {\"device\":\"/a/\\\"x\\\"\\\\\ty\\nz\",\"mntpoint\":\"/j/m/local\",\
             \"fstype\":\"nullfs\",\"opts\":\"ro\",\"dump\":0,\"pass\":0}]}}\n"
        );
        assert_eq!(fstab_json(&[]), "{\"mount\": {\"fstab\": []}}\n");
    }

    #[test]
    fn libxo_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            libxo_style(&args(&["--libxo", "json", "-p"])).unwrap(),
            (Some(Style::Json), args(&["-p"]))
        );
        assert_eq!(
            libxo_style(&args(&["-p", "--libxo=json"])).unwrap(),
            (Some(Style::Json), args(&["-p"]))
        );
        assert_eq!(libxo_style(&args(&["-p"])).unwrap(), (None, args(&["-p"])));
        assert!(libxo_style(&args(&["--libxo", "xml", "-p"])).is_err());
    }
}
