//! `rctl`: rules are recorded; `-u jail:NAME` reads usage from /proc of the jail's processes.

use crate::jail::pids_in;
use crate::state::Host;
use crate::zfs::nicenum;
use crate::{Fail, Res, getopt, usage};

const USAGE: &str = "usage: rctl [ -h ] [-a rule | -l filter | -r filter | -u filter | filter]";

/// As rctl(8): flags first, then any number of rules or filters, each acted on in turn; the exit
/// status counts the ones that failed, each with its own message.
pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("rctl", args, "ahlnru", USAGE)?;
    let human = opts.iter().any(|(c, _)| *c == 'h');
    let modes: Vec<char> = opts
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| "alru".contains(*c))
        .collect();
    if modes.len() > 1 {
        return Err(Fail::new(
            1,
            "rctl: at most one of -a, -l, -r, or -u may be specified",
        ));
    }
    if rest.is_empty() {
        return match modes.first() {
            None => list(host, ""),
            Some(_) => Err(usage(USAGE)),
        };
    }
    let mut out = String::new();
    let mut errors = Vec::new();
    for arg in &rest {
        let one = match modes.first() {
            None | Some('l') => list(host, arg),
            Some('a') => add(host, arg),
            Some('r') => remove(host, arg),
            Some('u') => usage_of(host, arg, human),
            Some(_) => unreachable!("modes are a, l, r or u"),
        };
        match one {
            Ok(text) => out.push_str(&text),
            Err(e) => errors.push(e.msg),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Fail::new(errors.len() as i32, errors.join("\n")))
    }
}

fn list(host: &Host, filter: &str) -> Res<String> {
    let st = host.load()?;
    Ok(st
        .rctl
        .iter()
        .filter(|r| r.starts_with(filter))
        .map(|r| format!("{r}\n"))
        .collect())
}

fn add(host: &Host, rule: &str) -> Res<String> {
    if rule.split(':').count() != 4 || !rule.contains('=') {
        return Err(Fail::new(
            1,
            format!("rctl: failed to add rule '{rule}': Invalid argument"),
        ));
    }
    host.update(|st| {
        st.rctl
            .retain(|r| r.split('=').next() != rule.split('=').next());
        st.rctl.push(rule.to_string());
        Ok(String::new())
    })
}

/// `rctl -r FILTER`: removes the rules the filter matches; none is ESRCH, which rctl(8)
/// reports as `failed to remove rule` (kern_rctl.c sys_rctl_remove_rule, rctl.c remove_rule).
fn remove(host: &Host, filter: &str) -> Res<String> {
    host.update(|st| {
        let before = st.rctl.len();
        st.rctl.retain(|r| !matches_filter(r, filter));
        st.rctl_exceeded.retain(|r| !matches_filter(r, filter));
        if st.rctl.len() == before {
            return Err(Fail::new(
                1,
                format!("rctl: failed to remove rule '{filter}': No such process"),
            ));
        }
        Ok(String::new())
    })
}

/// A filter matches a rule when each of its non-empty fields (subject, subject id, resource,
/// action, amount) equals the rule's: `jail:web_1` matches no rule of `web_10`.
fn matches_filter(rule: &str, filter: &str) -> bool {
    let fields = |s: &str| -> Vec<String> {
        let (head, amount) = s.split_once('=').unwrap_or((s, ""));
        let mut f: Vec<String> = head.split(':').map(str::to_string).collect();
        f.resize(4, String::new());
        f.push(amount.to_string());
        f
    };
    let (r, f) = (fields(rule), fields(filter));
    f.iter()
        .zip(&r)
        .all(|(want, have)| want.is_empty() || want == have)
}

fn usage_of(host: &Host, filter: &str, human: bool) -> Res<String> {
    let name = filter
        .strip_prefix("jail:")
        .map(|n| n.trim_end_matches(':'))
        .ok_or_else(|| usage(USAGE))?;
    let st = host.load()?;
    let jail = st.jail(name).ok_or_else(|| {
        Fail::new(
            1,
            format!("rctl: failed to get resource usage for '{filter}': No such process"),
        )
    })?;
    let pids = pids_in(&jail.ns);
    // SAFETY: sysconf has no preconditions.
    let (page, hz) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE) as u64,
            libc::sysconf(libc::_SC_CLK_TCK) as u64,
        )
    };
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let (mut rss, mut vsz, mut ticks, mut files, mut threads, mut pcpu) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0f64);
    for pid in &pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesized command name, which may contain spaces.
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let t = num(11) + num(12);
        ticks += t;
        threads += num(17);
        vsz += num(20);
        rss += num(21) * page;
        let age = uptime - num(19) as f64 / hz as f64;
        if age > 0.0 {
            pcpu += t as f64 / hz as f64 / age * 100.0;
        }
        files += std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    }
    let bytes = |n: u64| if human { nicenum(n) } else { n.to_string() };
    let rows = [
        ("cputime", (ticks / hz.max(1)).to_string()),
        ("datasize", "0".into()),
        ("stacksize", "0".into()),
        ("coredumpsize", "0".into()),
        ("memoryuse", bytes(rss)),
        ("memorylocked", "0".into()),
        ("maxproc", pids.len().to_string()),
        ("openfiles", files.to_string()),
        ("vmemoryuse", bytes(vsz)),
        ("pseudoterminals", "0".into()),
        ("swapuse", "0".into()),
        ("nthr", threads.to_string()),
        ("msgqqueued", "0".into()),
        ("msgqsize", "0".into()),
        ("nmsgq", "0".into()),
        ("nsem", "0".into()),
        ("nsemop", "0".into()),
        ("nshm", "0".into()),
        ("shmsize", "0".into()),
        ("wallclock", "0".into()),
        ("pcpu", (pcpu.round() as u64).to_string()),
        ("readbps", "0".into()),
        ("writebps", "0".into()),
        ("readiops", "0".into()),
        ("writeiops", "0".into()),
    ];
    Ok(rows.iter().map(|(k, v)| format!("{k}={v}\n")).collect())
}
