//! POSIX shared memory: `posixshmcontrol` (usr.bin/posixshmcontrol), `freebsd-sim shm` (a jailed
//! process creating an object) and `freebsd-sim dying` (how long removed jails stay dying).

use crate::state::{Host, ShmObject};
use crate::{Fail, Res, getopt, usage};

const USAGE: &str = "Usage:\nposixshmcontrol create [-m <mode>] [-l <largepage>] <path> ...\nposixshmcontrol rm <path> ...\nposixshmcontrol ls [-h] [-n] [-j jail]\nposixshmcontrol dump <path> ...\nposixshmcontrol stat [-h] [-n] <path> ...\nposixshmcontrol truncate [-s <newlen>] <path> ...";

/// posixshmcontrol's usage error: exit 2, as its `main` returns.
fn bad_usage() -> Fail {
    Fail::new(2, USAGE)
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(bad_usage());
    };
    match cmd.as_str() {
        "ls" | "list" => list(host, rest),
        "rm" => remove(host, rest),
        "create" => create(host, rest),
        "dump" | "stat" | "truncate" => Err(Fail::new(
            64,
            format!("posixshmcontrol: {cmd}: not simulated"),
        )),
        _ => Err(bad_usage()),
    }
}

/// `ls [-h] [-n] [-j jail]`: a header, then one tab-separated line per object, as list_shm.
fn list(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("posixshmcontrol", args, "hj:n", USAGE).map_err(|_| bad_usage())?;
    if !rest.is_empty() {
        return Err(bad_usage());
    }
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let st = host.load()?;
    let prefix = match opts.iter().find(|(c, _)| *c == 'j') {
        None => None,
        Some((_, key)) => match st.jail(key) {
            Some(j) => Some(format!("{}/", j.path.trim_end_matches('/'))),
            None => {
                return Err(Fail::new(
                    1,
                    format!("posixshmcontrol: no such jail: {key}"),
                ));
            }
        },
    };
    let mut out = String::from("MODE    \tOWNER\tGROUP\tSIZE\tPATH\n");
    for o in &st.shm {
        if prefix.as_ref().is_some_and(|p| !o.path.starts_with(p)) {
            continue;
        }
        let (owner, group) = if has('n') {
            (o.uid.to_string(), o.gid.to_string())
        } else {
            (user_name(o.uid), group_name(o.gid))
        };
        let size = if has('h') {
            humanize(o.size)
        } else {
            o.size.to_string()
        };
        out.push_str(&format!(
            "{}\t{owner}\t{group}\t{size}\t{}\n",
            mode_string(o.mode),
            o.path
        ));
    }
    Ok(out)
}

/// `rm PATH..`: each failure is warned about, the exit status is 1 if any failed.
fn remove(host: &Host, paths: &[String]) -> Res<String> {
    if paths.is_empty() {
        return Err(bad_usage());
    }
    let failed = host.update(|st| {
        let mut failed = Vec::new();
        for p in paths {
            match st.shm.iter().position(|o| o.path == *p) {
                Some(i) => {
                    st.shm.remove(i);
                }
                None => failed.push(format!(
                    "posixshmcontrol: unlink of {p} failed: No such file or directory"
                )),
            }
        }
        Ok(failed)
    })?;
    if failed.is_empty() {
        Ok(String::new())
    } else {
        Err(Fail::new(1, failed.join("\n")))
    }
}

/// `create [-m mode] PATH..` from the host: the path is stored as given.
fn create(host: &Host, args: &[String]) -> Res<String> {
    let (opts, paths) = getopt("posixshmcontrol", args, "l:m:", USAGE).map_err(|_| bad_usage())?;
    if paths.is_empty() {
        return Err(bad_usage());
    }
    let mode = match opts.iter().rev().find(|(c, _)| *c == 'm') {
        None => 0o600,
        Some((_, m)) => {
            parse_mode(m).ok_or_else(|| Fail::new(1, "posixshmcontrol: non-integer mode"))?
        }
    };
    host.update(|st| {
        for p in &paths {
            open_create(st, p, mode, 0, 0)
                .map_err(|e| Fail::new(1, format!("posixshmcontrol: create {p}: {e}")))?;
        }
        Ok(String::new())
    })
}

/// strtol(optarg, &end, 0): decimal, 0x hex or leading-0 octal.
fn parse_mode(m: &str) -> Option<u32> {
    if let Some(h) = m.strip_prefix("0x") {
        u32::from_str_radix(h, 16).ok()
    } else if m.len() > 1 && m.starts_with('0') {
        u32::from_str_radix(&m[1..], 8).ok()
    } else {
        m.parse().ok()
    }
}

/// shm_open(path, O_CREAT | O_RDWR, mode) by a process of jail `jid` (0: the host) rooted at
/// `root`: kern_shm_open2 stores a jailed caller's path prefixed with its jail's path. An
/// existing object is opened, not replaced.
fn open_create(
    st: &mut crate::state::State,
    path: &str,
    mode: u32,
    jid: u32,
    size: u64,
) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("Invalid argument");
    }
    let root = match jid {
        0 => String::new(),
        _ => st
            .jails
            .iter()
            .find(|j| j.jid == jid)
            .map(|j| j.path.trim_end_matches('/').to_string())
            .ok_or("No such process")?,
    };
    let full = format!("{root}{path}");
    if !st.shm.iter().any(|o| o.path == full) {
        st.shm.push(ShmObject {
            path: full.clone(),
            mode: mode & 0o777,
            uid: 0,
            gid: 0,
            size,
            jid,
        });
    }
    Ok(full)
}

/// `freebsd-sim shm DIR JAIL PATH [BYTES]`: a process of JAIL creates the object PATH of BYTES
/// bytes, mode 0600, as root, and leaves it (as a killed PostgreSQL does); prints the path
/// `posixshmcontrol ls` shows.
pub fn shm_main(args: &[String]) -> Res<String> {
    const SHM_USAGE: &str = "usage: freebsd-sim shm DIR JAIL PATH [BYTES]";
    let (dir, jail, path, size) = match args {
        [d, j, p] => (d, j, p, 0),
        [d, j, p, n] => (d, j, p, n.parse().map_err(|_| usage(SHM_USAGE))?),
        _ => return Err(usage(SHM_USAGE)),
    };
    let host = Host::new(dir.into());
    host.update(|st| {
        let jid = st
            .jail(jail)
            .map(|j| j.jid)
            .ok_or_else(|| Fail::new(1, format!("freebsd-sim: jail \"{jail}\" not found")))?;
        let full = open_create(st, path, 0o600, jid, size)
            .map_err(|e| Fail::new(1, format!("freebsd-sim: shm_open {path}: {e}")))?;
        Ok(format!("{full}\n"))
    })
}

/// `freebsd-sim dying DIR [SECS]`: how long a removed jail stays dying when nothing else holds
/// it (default 0); without SECS prints the current value.
pub fn dying_main(args: &[String]) -> Res<String> {
    const DYING_USAGE: &str = "usage: freebsd-sim dying DIR [SECS]";
    let (dir, secs) = match args {
        [d] => (d, None),
        [d, s] => (
            d,
            Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| usage(DYING_USAGE))?,
            ),
        ),
        _ => return Err(usage(DYING_USAGE)),
    };
    let host = Host::new(dir.into());
    if !host.state_dir().is_dir() {
        return Err(Fail::new(
            1,
            format!("freebsd-sim: {dir} is not a simulated host (run init)"),
        ));
    }
    host.update(|st| {
        if let Some(s) = secs {
            st.dying_secs = s;
        }
        Ok(format!("{}\n", st.dying_secs))
    })
}

fn mode_string(m: u32) -> String {
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    bits.iter()
        .map(|(b, c)| if m & b != 0 { *c } else { '-' })
        .collect()
}

fn user_name(uid: u32) -> String {
    match uid {
        0 => "root".into(),
        n => n.to_string(),
    }
}

fn group_name(gid: u32) -> String {
    match gid {
        0 => "wheel".into(),
        n => n.to_string(),
    }
}

/// humanize_number(3) with HN_AUTOSCALE | HN_NOSPACE, no decimals, into 8 bytes: the number
/// and its unit fit in 7 characters.
fn humanize(n: u64) -> String {
    let units = ["", "K", "M", "G", "T", "P", "E"];
    let (mut v, mut i) = (n, 0);
    while v >= 1_000_000 && i + 1 < units.len() {
        v = (v + 512) / 1024;
        i += 1;
    }
    format!("{v}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_sizes_print_like_posixshmcontrol() {
        assert_eq!(mode_string(0o600), "rw-------");
        assert_eq!(mode_string(0o644), "rw-r--r--");
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("420"), Some(420));
        assert_eq!(humanize(4096), "4096");
        assert_eq!(humanize(16_580_608), "16192K");
    }
}
