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
    let (opts, rest) = getopt("mount", args, "adflprt:uvwo:F:", MOUNT_USAGE)?;
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
        (None, []) => list(host, opts.iter().any(|(c, _)| *c == 'p')),
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

fn list(host: &Host, fstab: bool) -> Res<String> {
    let st = host.load()?;
    let mut rows: Vec<(String, String, String, bool)> = st
        .datasets
        .keys()
        .filter_map(|n| {
            let (mp, _) = mountpoint(&st, n);
            mp.starts_with('/')
                .then(|| (n.clone(), mp, "zfs".to_string(), false))
        })
        .collect();
    rows.extend(
        st.mounts
            .iter()
            .map(|m| (m.src.clone(), m.target.clone(), m.fstype.clone(), m.ro)),
    );
    Ok(rows
        .iter()
        .map(|(src, target, t, ro)| {
            if fstab {
                format!(
                    "{src}\t{target}\t{t}\t{}\t0 0\n",
                    if *ro { "ro" } else { "rw" }
                )
            } else {
                format!(
                    "{src} on {target} ({t}, local{})\n",
                    if *ro { ", read-only" } else { "" }
                )
            }
        })
        .collect())
}

pub fn umount_main(host: &Host, args: &[String]) -> Res<String> {
    let (_, rest) = getopt("umount", args, "adfNnvt:", UMOUNT_USAGE)?;
    if rest.is_empty() {
        return Err(usage(UMOUNT_USAGE));
    }
    host.update(|st| {
        for t in &rest {
            let t = norm(t);
            let i = st
                .mounts
                .iter()
                .rposition(|m| m.target == t)
                .ok_or_else(|| {
                    Fail::new(1, format!("umount: {t}: not a file system root directory"))
                })?;
            st.mounts.remove(i);
        }
        Ok(String::new())
    })
}
