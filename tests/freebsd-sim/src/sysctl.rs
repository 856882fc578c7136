//! `sysctl`: a fixed set of OIDs; `name=value` changes are kept in state.

use crate::state::{Host, State, now};
use crate::{Fail, Res, getopt, usage};

const USAGE: &str = "usage: sysctl [-bdehiNnoqTtWx] [ -B <bufsize> ] [-f filename] name[=value] ...\n       sysctl [-bdehNnoqTtWx] [ -B <bufsize> ] -a";

fn builtin(name: &str) -> Option<String> {
    Some(match name {
        "kern.features.vimage" | "kern.features.inet6" | "kern.racct.enable" => "1".into(),
        "hw.ncpu" => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
        "hw.clockrate" => "2000".into(),
        "net.inet.ip.forwarding" => "0".into(),
        "kern.osrelease" => "14.2-RELEASE".into(),
        "kern.boottime" => {
            let up = std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|s| s.split('.').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let boot = now().saturating_sub(up);
            format!("{{ sec = {boot}, usec = 0 }} {}", crate::zfs::ctime(boot))
        }
        _ => return None,
    })
}

/// hw.ncpu as tools see it (a `sysctl hw.ncpu=N` in state wins over the real count).
pub fn ncpu(st: &State) -> u32 {
    st.sysctl
        .get("hw.ncpu")
        .cloned()
        .or_else(|| builtin("hw.ncpu"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, names) = getopt("sysctl", args, "nqihNe", USAGE)?;
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    if names.is_empty() {
        return Err(usage(USAGE));
    }
    let mut out = String::new();
    for arg in &names {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let st = host.load()?;
        let Some(old) = st.sysctl.get(name).cloned().or_else(|| builtin(name)) else {
            if has('q') {
                continue;
            }
            return Err(Fail::new(1, format!("sysctl: unknown oid '{name}'")));
        };
        match value {
            Some(v) => {
                host.update(|st| {
                    st.sysctl.insert(name.to_string(), v.to_string());
                    Ok(())
                })?;
                out.push_str(&if has('n') {
                    format!("{v}\n")
                } else {
                    format!("{name}: {old} -> {v}\n")
                });
            }
            None => out.push_str(&if has('n') {
                format!("{old}\n")
            } else {
                format!("{name}: {old}\n")
            }),
        }
    }
    Ok(out)
}
