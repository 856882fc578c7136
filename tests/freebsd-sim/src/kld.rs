//! `kldstat`, `kldload`, `kldunload`: the kernel modules pot's setup cares about. All of
//! [`KMODS`] start loaded; `kldunload pf` plays a host that has not loaded pf yet.

use crate::state::Host;
use crate::{Fail, Res, getopt, usage};

/// Modules the simulated kernel can load, with a size for `kldstat`'s listing.
const KMODS: &[(&str, u64)] = &[("pf", 0x5a8e8), ("pflog", 0x3120), ("if_bridge", 0x8940)];

const KLDSTAT_USAGE: &str =
    "usage: kldstat [-dhqv] [-i id] [-n filename]\n       kldstat [-dq] [-m modname]";
const KLDLOAD_USAGE: &str = "usage: kldload [-nqv] file ...";
const KLDUNLOAD_USAGE: &str =
    "usage: kldunload [-fv] -i id ...\n       kldunload [-fv] [-n] name ...";

fn known(name: &str) -> Option<u64> {
    KMODS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// kldload takes a file name or a path: `pf`, `pf.ko`, `/boot/kernel/pf.ko`.
fn module_of(arg: &str) -> &str {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    base.strip_suffix(".ko").unwrap_or(base)
}

pub fn kldstat_main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("kldstat", args, "dhqvi:n:m:", KLDSTAT_USAGE)?;
    if !rest.is_empty() {
        return Err(usage(KLDSTAT_USAGE));
    }
    let quiet = opts.iter().any(|(o, _)| *o == 'q');
    let st = host.load()?;
    let loaded = |m: &str| known(m).is_some() && !st.unloaded_kmods.contains(m);
    if let Some((_, m)) = opts.iter().find(|(o, _)| *o == 'm') {
        if !loaded(m) {
            if quiet {
                return Err(Fail::new(1, ""));
            }
            return Err(Fail::new(
                1,
                format!("kldstat: can't find module {m}: No such file or directory"),
            ));
        }
        let id = KMODS.iter().position(|(n, _)| n == m).unwrap_or(0) + 2;
        return Ok(format!("Id  Refs Name\n{id:>3} {:>4} {m}\n", 1));
    }
    let mut out = String::from("Id Refs Address                Size Name\n");
    out.push_str(" 1   30 0xffffffff80200000  1f3c6b0 kernel\n");
    let mut address = 0xffffffff82200000u64;
    for (i, (name, size)) in KMODS.iter().enumerate() {
        if !loaded(name) {
            continue;
        }
        out.push_str(&format!(
            "{:>2} {:>4} {address:#x} {size:>8x} {name}.ko\n",
            i + 2,
            1
        ));
        address += size.next_multiple_of(0x1000);
    }
    Ok(out)
}

pub fn kldload_main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, files) = getopt("kldload", args, "nqv", KLDLOAD_USAGE)?;
    if files.is_empty() {
        return Err(usage(KLDLOAD_USAGE));
    }
    let skip_loaded = opts.iter().any(|(o, _)| *o == 'n');
    host.update(|st| {
        for file in &files {
            let m = module_of(file);
            if known(m).is_none() {
                return Err(Fail::new(
                    1,
                    format!("kldload: can't load {file}: No such file or directory"),
                ));
            }
            if !st.unloaded_kmods.remove(m) && !skip_loaded {
                return Err(Fail::new(
                    1,
                    format!("kldload: can't load {file}: module already loaded or in kernel"),
                ));
            }
        }
        Ok(String::new())
    })
}

pub fn kldunload_main(host: &Host, args: &[String]) -> Res<String> {
    let (_, names) = getopt("kldunload", args, "fvn", KLDUNLOAD_USAGE)?;
    if names.is_empty() {
        return Err(usage(KLDUNLOAD_USAGE));
    }
    host.update(|st| {
        for name in &names {
            let m = module_of(name);
            if known(m).is_none() || st.unloaded_kmods.contains(m) {
                return Err(Fail::new(1, format!("kldunload: can't find file {name}")));
            }
            st.unloaded_kmods.insert(m.to_string());
            if m == "pf" {
                // Unloading pf drops its rulesets and switches it off.
                st.pf_enabled = false;
                st.anchors.clear();
            }
        }
        Ok(String::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated host in the temp dir, removed again when the guard drops.
    struct Scratch(Host, std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    fn host(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("fsim-kld-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        crate::state::init(&d, false).unwrap();
        Scratch(Host::new(d.clone()), d)
    }

    fn s(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn unload_load_and_status() {
        let scratch = host("status");
        let h = &scratch.0;
        assert!(kldstat_main(h, &s(&["-q", "-m", "pf"])).is_ok());
        assert!(kldstat_main(h, &[]).unwrap().contains(" pf.ko\n"));
        kldunload_main(h, &s(&["pf"])).unwrap();
        let quiet = kldstat_main(h, &s(&["-q", "-m", "pf"])).unwrap_err();
        assert_eq!((quiet.code, quiet.msg.as_str()), (1, ""));
        assert!(
            kldstat_main(h, &s(&["-m", "pf"]))
                .unwrap_err()
                .msg
                .contains("can't find module pf")
        );
        assert!(!kldstat_main(h, &[]).unwrap().contains(" pf.ko\n"));
        assert!(
            kldunload_main(h, &s(&["pf"]))
                .unwrap_err()
                .msg
                .contains("can't find file pf")
        );
        kldload_main(h, &s(&["-n", "/boot/kernel/pf.ko"])).unwrap();
        assert!(kldstat_main(h, &s(&["-q", "-m", "pf"])).is_ok());
        assert!(
            kldload_main(h, &s(&["pf"]))
                .unwrap_err()
                .msg
                .contains("already loaded")
        );
        kldload_main(h, &s(&["-n", "pf"])).unwrap();
        assert!(
            kldload_main(h, &s(&["nosuch"]))
                .unwrap_err()
                .msg
                .contains("No such file")
        );
    }

    #[test]
    fn unloading_pf_drops_its_rules() {
        let scratch = host("rules");
        let h = &scratch.0;
        h.update(|st| {
            st.pf_enabled = true;
            st.anchors.insert("pot-nat".into(), Default::default());
            Ok(())
        })
        .unwrap();
        kldunload_main(h, &s(&["pf"])).unwrap();
        let st = h.load().unwrap();
        assert!(!st.pf_enabled && st.anchors.is_empty());
    }
}
