//! `freebsd-sim check DIR`: leftovers after all tasks are gone (README "What check reports").

use crate::jail::pids_in;
use crate::state::{Host, IfKind};
use crate::{Fail, Res};
use std::fs;
use std::path::Path;

pub fn leftovers(host: &Host) -> Res<Vec<String>> {
    let st = host.load()?;
    let mut out = Vec::new();
    for j in &st.jails {
        out.push(format!("jail {} (jid {}) is still recorded", j.name, j.jid));
    }
    // A jail dying for the host's dying time goes by itself; one an shm object holds never does.
    for d in &st.dying {
        if let Some(o) = st.shm_of(d.jail.jid).next() {
            out.push(format!(
                "jail {} (jid {}) is dying, held by POSIX shm object {}",
                d.jail.name, d.jail.jid, o.path
            ));
        }
    }
    for o in st.shm.iter().filter(|o| o.jid != 0) {
        out.push(format!(
            "POSIX shm object {} (of jid {}) exists",
            o.path, o.jid
        ));
    }
    let mut ns: Vec<_> = st.jails.iter().flat_map(|j| j.ns.iter().cloned()).collect();
    ns.extend(st.retired_ns.iter().cloned());
    for pid in pids_in(&ns) {
        out.push(format!("jail process {pid} is alive"));
    }
    for m in &st.mounts {
        out.push(format!(
            "{} mount {} on {} is still recorded",
            m.fstype, m.src, m.target
        ));
    }
    // By kind, not name: pot renames the host end of its epairs.
    for i in st.ifaces.iter().filter(|i| i.kind == IfKind::Epair) {
        let place = i
            .vnet
            .as_deref()
            .map_or("the host".into(), |j| format!("jail {j}"));
        out.push(format!("epair interface {} exists in {place}", i.name));
    }
    for (nic, ip) in &st.jail_aliases {
        let still = st.ifaces.iter().any(|i| {
            i.vnet.is_none()
                && i.name == *nic
                && i.inet
                    .iter()
                    .chain(&i.inet6)
                    .any(|a| a.split('/').next() == Some(ip))
        });
        if still {
            out.push(format!("jail alias {ip} is still on {nic}"));
        }
    }
    for (a, set) in &st.anchors {
        if a.starts_with("pot-rdr/") && !(set.nat.is_empty() && set.rules.is_empty()) {
            out.push(format!("pf anchor {a} has rules"));
        }
    }
    for r in &st.rctl {
        out.push(format!("rctl rule {r}"));
    }
    for (name, d) in &st.datasets {
        if let Some(o) = &d.origin {
            out.push(format!("clone {name} (origin {o}) exists"));
        }
    }
    // Data written under an encrypted zfs_root is encrypted: pot receives images with
    // `-x encryption` so they inherit it.
    let encryption = |name: &str| {
        crate::zfs::inherited_value(&st, name, "encryption").unwrap_or_else(|| "off".into())
    };
    if encryption("zroot/pot") != "off" {
        for name in st.datasets.keys().filter(|n| n.starts_with("zroot/pot/")) {
            if encryption(name) == "off" {
                out.push(format!(
                    "dataset {name} is not encrypted below the encrypted zroot/pot"
                ));
            }
        }
    }
    // pot's datasets live under fs_root; only the cache dataset has a mountpoint of its own.
    let fs_root = crate::zfs::data_dir(host, &st, "zroot/pot");
    for name in st.datasets.keys() {
        let pot_dataset = name.starts_with("zroot/pot/")
            && name != "zroot/pot/cache"
            && !name.starts_with("zroot/pot/cache/");
        let dir = crate::zfs::data_dir(host, &st, name);
        if pot_dataset && crate::zfs::is_mounted(&st, name) && !dir.starts_with(&fs_root) {
            out.push(format!(
                "dataset {name} is mounted at {}, outside fs_root",
                crate::zfs::mountpoint(&st, name).0
            ));
        }
    }
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for f in names(&host.root().join("tmp")) {
        if f.starts_with("pot_status_") {
            out.push(format!(
                "status file {} exists",
                host.root().join("tmp").join(f).display()
            ));
        }
    }
    let tasks = host.root().join("var/db/nomad-pot-driver/tasks");
    for t in names(&tasks) {
        if tasks.join(&t).is_dir() {
            out.push(format!("task directory {} exists", tasks.join(t).display()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn main(dir: &Path) -> Res<String> {
    let found = leftovers(&Host::new(dir.to_path_buf()))?;
    if found.is_empty() {
        Ok(String::new())
    } else {
        Err(Fail::new(1, found.join("\n")))
    }
}
