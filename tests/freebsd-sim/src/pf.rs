//! `pfctl`: one ruleset per anchor, rules kept as loaded after macro expansion; the enable switch.

use crate::state::{Anchor, Host, State, now};
use crate::{Fail, Res, getopt, usage};
use std::collections::BTreeMap;
use std::io::Read;

const USAGE: &str = "usage: pfctl [-AdeghMmNnOPqRSrvz] [-a anchor] [-D macro=value] [-F modifier]\n\t[-f file] [-i interface] [-K host | network]\n\t[-k host | network | gateway | label | id] [-o level] [-p device]\n\t[-s modifier] [-t table -T command [address ...]] [-x level]";

const SHOW: &[&str] = &[
    "nat",
    "queue",
    "rules",
    "Anchors",
    "Sources",
    "states",
    "info",
    "Interfaces",
    "labels",
    "timeouts",
    "memory",
    "Tables",
    "osfp",
    "Running",
    "all",
    "creatorids",
];
const FLUSH: &[&str] = &[
    "nat", "queue", "rules", "Sources", "states", "info", "Tables", "osfp", "all", "ethernet",
    "Reset",
];

/// pfctl_lookup_option: the first list entry the argument is a prefix of.
fn lookup(arg: &str, list: &[&'static str]) -> Option<&'static str> {
    list.iter()
        .copied()
        .find(|o| !arg.is_empty() && o.starts_with(arg))
}

/// Keywords a ruleset line may start with, by the ruleset it lands in.
const NAT_KEYWORDS: &[&str] = &[
    "nat",
    "rdr",
    "binat",
    "no",
    "nat-anchor",
    "rdr-anchor",
    "binat-anchor",
];
const FILTER_KEYWORDS: &[&str] = &["pass", "block", "match", "anchor", "antispoof"];

/// A parsed rules file: its rulesets and the anchors its anchor rules refer to.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    pub nat: Vec<String>,
    pub rules: Vec<String>,
    pub refs: Vec<String>,
}

/// Parses `text` the way pfctl reads a rules file loaded into `anchor`; errors are pfctl's
/// stderr lines (`src:line: message`).
pub fn parse(text: &str, src: &str, anchor: &str) -> Result<Loaded, String> {
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Loaded::default();
    let mut errors = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (n, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = n + 1;
        }
        // A backslash at the end of a line continues it.
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        if let Err(e) = parse_line(&line, anchor, &mut macros, &mut out) {
            errors.push(format!("{src}:{start}: {e}"));
        }
    }
    if !pending.is_empty()
        && let Err(e) = parse_line(&pending, anchor, &mut macros, &mut out)
    {
        errors.push(format!("{src}:{start}: {e}"));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn expand(line: &str, macros: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        let value = macros
            .get(name)
            .ok_or_else(|| format!("macro '{name}' not defined"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_line(
    raw: &str,
    anchor: &str,
    macros: &mut BTreeMap<String, String>,
    out: &mut Loaded,
) -> Result<(), String> {
    let line = strip_comment(raw).trim();
    if line.is_empty() {
        return Ok(());
    }
    if let Some((name, value)) = line.split_once('=')
        && let name = name.trim()
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        let value = expand(value.trim(), macros)?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(&value);
        macros.insert(name.to_string(), value.to_string());
        return Ok(());
    }
    let line = expand(line, macros)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let keyword = words[0];
    let text = words.join(" ");
    if NAT_KEYWORDS.contains(&keyword) {
        out.nat.push(text);
    } else if FILTER_KEYWORDS.contains(&keyword) {
        out.rules.push(text);
    } else {
        return Err("syntax error".into());
    }
    if keyword.ends_with("anchor")
        && let Some(name) = words.get(1).map(|w| w.trim_matches('"'))
        && !name.starts_with('{')
    {
        let name = name.trim_end_matches("/*");
        // Anchor names in rules are relative to the anchor being loaded unless absolute.
        let path = match name.strip_prefix('/') {
            Some(abs) => abs.to_string(),
            None if anchor.is_empty() => name.to_string(),
            None => format!("{anchor}/{name}"),
        };
        out.refs.push(path);
    }
    Ok(())
}

/// Creates `path` and every ancestor, as loading into or referring to an anchor does.
fn ensure(st: &mut State, path: &str) {
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        st.anchors.entry(cur.clone()).or_default();
    }
}

/// `pfctl -s Anchors`: the children of `anchor` (every descendant with `-v`), indented.
pub fn children(anchors: &BTreeMap<String, Anchor>, anchor: &str, recursive: bool) -> String {
    let mut out = String::new();
    for name in anchors.keys() {
        let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
        if parent == anchor && !name.is_empty() {
            out.push_str(&format!("  {name}\n"));
            if recursive {
                out.push_str(&children(anchors, name, true));
            }
        }
    }
    out
}

/// `pfctl -s info`: the status line (pfctl pads it to 44 columns) and the state table.
pub fn info(enabled: bool, since: u64, now: u64) -> String {
    let status = if enabled {
        let t = now.saturating_sub(since);
        format!(
            "Status: Enabled for {} days {:02}:{:02}:{:02}",
            t / 86400,
            t / 3600 % 24,
            t / 60 % 60,
            t % 60
        )
    } else {
        "Status: Disabled".into()
    };
    let mut s = format!("{status:<44}{:>15}\n\n", "Debug: Urgent");
    s.push_str(&format!(
        "{:<27} {:>14} {:>16}\n",
        "State Table", "Total", "Rate"
    ));
    s.push_str(&format!(
        "  {:<25} {:>14} {:>14}\n",
        "current entries", 0, ""
    ));
    for what in ["searches", "inserts", "removals"] {
        s.push_str(&format!("  {what:<25} {:>14} {:>14.1}/s\n", 0, 0.0));
    }
    s
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("pfctl", args, "a:deF:f:nPqs:v", USAGE)?;
    if !rest.is_empty() {
        return Err(usage(USAGE));
    }
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let arg = |c: char| {
        opts.iter()
            .rev()
            .find(|(o, _)| *o == c)
            .map(|(_, v)| v.clone())
    };
    let anchor = arg('a').unwrap_or_default().trim_matches('/').to_string();
    let quiet = has('q');
    let unsimulated = |what: &str| Fail::new(64, format!("pfctl: {what}: not simulated\n{USAGE}"));
    let show = match arg('s') {
        None => None,
        Some(s) => match lookup(&s, SHOW) {
            Some(o @ ("nat" | "rules" | "Anchors" | "info")) => Some(o),
            Some(o) => return Err(unsimulated(&format!("-s {o}"))),
            None => {
                return Err(Fail::new(
                    64,
                    format!("pfctl: Unknown show modifier '{s}'\n{USAGE}"),
                ));
            }
        },
    };
    let flush = match arg('F') {
        None => None,
        Some(f) => match lookup(&f, FLUSH) {
            Some(o @ ("nat" | "rules" | "all")) => Some(o),
            Some(o) => return Err(unsimulated(&format!("-F {o}"))),
            None => {
                return Err(Fail::new(
                    64,
                    format!("pfctl: Unknown flush modifier '{f}'\n{USAGE}"),
                ));
            }
        },
    };
    // Read (and parse) the rules before taking the state lock: stdin may be slow.
    let load = match arg('f') {
        None => None,
        Some(file) => {
            let (text, src) = if file == "-" {
                let mut t = String::new();
                std::io::stdin()
                    .read_to_string(&mut t)
                    .map_err(|e| Fail::new(1, format!("pfctl: read rules from stdin: {e}")))?;
                (t, "stdin".to_string())
            } else {
                let t = std::fs::read_to_string(&file).map_err(|e| {
                    Fail::new(
                        1,
                        format!("pfctl: cannot open the main config file!: {e}\npfctl: Syntax error in config file: pf rules not loaded"),
                    )
                })?;
                (t, file.clone())
            };
            Some(parse(&text, &src, &anchor).map_err(|e| {
                Fail::new(
                    1,
                    format!("{e}\npfctl: Syntax error in config file: pf rules not loaded"),
                )
            })?)
        }
    };
    let parse_only = has('n');
    // Steps before a failing one stay applied, as with pfctl: the state is saved either way.
    let (out, failure) = host.update(|st| {
        if st.unloaded_kmods.contains("pf") {
            return Err(Fail::new(1, "pfctl: /dev/pf: No such file or directory"));
        }
        let mut out = String::new();
        let mut failure = None;
        let note = |msg: &str| {
            if !quiet {
                eprintln!("{msg}");
            }
        };
        // pfctl's order: disable, show, flush, load, enable.
        if has('d') {
            if !st.pf_enabled {
                return Ok((out, Some(Fail::new(1, "pfctl: pf not enabled"))));
            }
            st.pf_enabled = false;
            st.pf_since = now();
            note("pf disabled");
        }
        let exists = anchor.is_empty() || st.anchors.contains_key(&anchor);
        match show {
            Some("info") => out.push_str(&info(st.pf_enabled, st.pf_since, now())),
            Some(_) if !exists => {
                let ioctl = if show == Some("Anchors") {
                    "DIOCGETRULESETS"
                } else {
                    "DIOCGETRULES"
                };
                failure = Some(Fail::new(1, format!("pfctl: {ioctl}: Invalid argument")));
            }
            Some("Anchors") => out.push_str(&children(&st.anchors, &anchor, has('v'))),
            Some(which) => {
                let a = st.anchors.get(&anchor).cloned().unwrap_or_default();
                let rules = if which == "nat" { a.nat } else { a.rules };
                out.extend(rules.iter().map(|r| format!("{r}\n")));
            }
            None => {}
        }
        if let Some(what) = flush
            && let Some(a) = st.anchors.get_mut(&anchor)
        {
            if what != "nat" {
                a.rules.clear();
                note("rules cleared");
            }
            if what != "rules" {
                a.nat.clear();
                note("nat cleared");
            }
            if what == "all" {
                note("0 tables deleted.");
            }
        }
        if let Some(l) = &load
            && !parse_only
        {
            ensure(st, &anchor);
            for r in &l.refs {
                ensure(st, r);
            }
            let a = st.anchors.entry(anchor.clone()).or_default();
            a.nat = l.nat.clone();
            a.rules = l.rules.clone();
        }
        if has('e') {
            if st.pf_enabled {
                return Ok((out, Some(Fail::new(1, "pfctl: pf already enabled"))));
            }
            st.pf_enabled = true;
            st.pf_since = now();
            note("pf enabled");
        }
        Ok((out, failure))
    })?;
    match failure {
        Some(f) => Err(f),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_expands_macros_and_sorts_rulesets() {
        let text = "# pot nat\next_if = \"em0\"\nnet = 10.192.0.0/10\n\nnat on $ext_if from $net to any -> ($ext_if:0) round-robin\nrdr pass on em0 proto tcp \\\n  from any to (em0) port 8080 -> 10.192.0.3 port 80 # web\npass in   all\nrdr-anchor \"sub/*\"\n";
        let l = parse(text, "stdin", "pot-rdr").unwrap();
        assert_eq!(
            l.nat,
            [
                "nat on em0 from 10.192.0.0/10 to any -> (em0:0) round-robin",
                "rdr pass on em0 proto tcp from any to (em0) port 8080 -> 10.192.0.3 port 80",
                "rdr-anchor \"sub/*\"",
            ]
        );
        assert_eq!(l.rules, ["pass in all"]);
        assert_eq!(l.refs, ["pot-rdr/sub"]);
        assert_eq!(
            parse("nat on $x from any to any\nfoo bar\n", "/tmp/r", "").unwrap_err(),
            "/tmp/r:1: macro 'x' not defined\n/tmp/r:2: syntax error"
        );
    }

    #[test]
    fn anchors_listing_and_info() {
        let mut st = State::default();
        ensure(&mut st, "pot-rdr/web_1");
        ensure(&mut st, "pot-rdr/db_2");
        ensure(&mut st, "pot-nat");
        assert_eq!(children(&st.anchors, "", false), "  pot-nat\n  pot-rdr\n");
        assert_eq!(
            children(&st.anchors, "pot-rdr", false),
            "  pot-rdr/db_2\n  pot-rdr/web_1\n"
        );
        assert_eq!(
            children(&st.anchors, "", true),
            "  pot-nat\n  pot-rdr\n  pot-rdr/db_2\n  pot-rdr/web_1\n"
        );
        let i = info(true, 100, 100 + 86400 + 3661);
        assert!(
            i.starts_with(
                "Status: Enabled for 1 days 01:01:01           Debug: Urgent

"
            ),
            "{i}"
        );
        assert!(info(false, 0, 5).starts_with("Status: Disabled"));
    }

    #[test]
    fn show_modifiers_are_prefixes() {
        assert_eq!(lookup("n", SHOW), Some("nat"));
        assert_eq!(lookup("A", SHOW), Some("Anchors"));
        assert_eq!(lookup("r", SHOW), Some("rules"));
        assert_eq!(lookup("x", SHOW), None);
    }
}
