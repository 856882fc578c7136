//! `cpuset -l LIST -j JAIL` and `cpuset -g -j JAIL`: the CPU list of a jail, within hw.ncpu.

use crate::state::Host;
use crate::{Fail, Res, getopt, usage};

const USAGE: &str = "usage: cpuset [-l cpu-list] [-n policy:domain-list] [-s setid] cmd ...\n       cpuset [-l cpu-list] [-n policy:domain-list] [-s setid] -p pid\n       cpuset [-c] [-l cpu-list] [-n policy:domain-list] -C -p pid\n       cpuset [-c] [-l cpu-list] [-n policy:domain-list]\n              [-j jailid | -p pid | -t tid | -s setid | -x irq]\n       cpuset -g [-cir]\n              [-d domain | -j jailid | -p pid | -t tid | -s setid | -x irq]";

/// CPU_SETSIZE: list entries at or above it are rejected while parsing.
const SETSIZE: u32 = 1024;

/// cpuset(1)'s list syntax: `all`, or numbers and `a-b` ranges separated by commas.
pub fn parse_list(list: &str, ncpu: u32) -> Res<Vec<u32>> {
    if list.eq_ignore_ascii_case("all") {
        return Ok((0..ncpu).collect());
    }
    let malformed = || Fail::new(1, format!("cpuset: Malformed cpu-list {list}"));
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let num = |s: &str| -> Res<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let n: u32 = s.parse().unwrap_or(u32::MAX);
            if n >= SETSIZE {
                return Err(Fail::new(
                    1,
                    format!("cpuset: List entry {n} exceeds maximum of {}", SETSIZE - 1),
                ));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(num(a)?..=num(b)?),
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// printset: `0, 1, 3`.
pub fn format_list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("cpuset", args, "Ccd:gij:l:n:p:rs:t:x:", USAGE)?;
    let arg = |c: char| {
        opts.iter()
            .rev()
            .find(|(o, _)| *o == c)
            .map(|(_, v)| v.clone())
    };
    // Only jail masks are simulated: `-g -j` and `-l LIST -j`.
    let simulated = opts.iter().all(|(c, _)| "gjl".contains(*c));
    let (Some(key), true, true) = (arg('j'), simulated, rest.is_empty()) else {
        return Err(usage(USAGE));
    };
    let get = opts.iter().any(|(c, _)| *c == 'g');
    let list = arg('l');
    let st = host.load()?;
    let jail = st
        .jail(&key)
        .ok_or_else(|| Fail::new(1, format!("cpuset: jail \"{key}\" not found")))?;
    let jid = jail.jid;
    let ncpu = crate::sysctl::ncpu(&st);
    match (get, list) {
        (true, None) => {
            let cpus = st
                .cpusets
                .get(&jid)
                .cloned()
                .unwrap_or_else(|| (0..ncpu).collect());
            Ok(format!(
                "jail {jid} mask: {}\njail {jid} domain policy: first-touch mask: 0\n",
                format_list(&cpus)
            ))
        }
        (false, Some(list)) => {
            let cpus = parse_list(&list, ncpu)?;
            // The kernel refuses an empty mask and CPUs outside the root set.
            if cpus.is_empty() {
                return Err(Fail::new(
                    1,
                    "cpuset: setaffinity: Resource deadlock avoided",
                ));
            }
            if cpus.iter().any(|c| *c >= ncpu) {
                return Err(Fail::new(1, "cpuset: setaffinity: Invalid argument"));
            }
            host.update(|st| {
                if st.jail(&jid.to_string()).is_none() {
                    return Err(Fail::new(1, format!("cpuset: jail \"{key}\" not found")));
                }
                st.cpusets.insert(jid, cpus);
                Ok(String::new())
            })
        }
        _ => Err(usage(USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0,1", 4).unwrap(), [0, 1]);
        assert_eq!(parse_list("0-2,1", 4).unwrap(), [0, 1, 2]);
        assert_eq!(parse_list("all", 2).unwrap(), [0, 1]);
        assert_eq!(
            parse_list("0-", 4).unwrap_err().msg,
            "cpuset: Malformed cpu-list 0-"
        );
        assert!(parse_list("a", 4).is_err());
        assert!(parse_list("2000", 4).unwrap_err().msg.contains("exceeds"));
        assert_eq!(format_list(&[0, 1, 3]), "0, 1, 3");
    }
}
