//! Fault injection: `DIR/state/faults.json` makes chosen tool calls fail or hang (README.md).
//!
//! Rules are matched and counted under the state lock, so concurrent calls each see a distinct
//! count and exactly one call is the Nth.

use crate::state::{Host, io_fail};
use crate::{Fail, Res, usage};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a matching call does instead of (or before) its work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Exit with `exit` and `stderr`, changing nothing.
    Fail { exit: i32, stderr: String },
    /// Sleep `secs` (forever when `None`), then run normally. Ends early, without doing the work,
    /// when the process that ran the tool exits.
    Hang { secs: Option<f64> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Rule {
    pub tool: String,
    /// Only calls whose arguments contain this exact word match.
    #[serde(default)]
    pub word: Option<String>,
    /// Fire on the Nth matching call only (1-based); `None` fires on every matching call.
    #[serde(default)]
    pub nth: Option<u32>,
    #[serde(flatten)]
    pub action: Action,
    /// Matching calls seen so far.
    #[serde(default)]
    pub seen: u32,
    /// Times the rule fired.
    #[serde(default)]
    pub fired: u32,
}

impl Rule {
    fn matches(&self, tool: &str, args: &[String]) -> bool {
        self.tool == tool && self.word.as_ref().is_none_or(|w| args.contains(w))
    }
}

fn faults_path(host: &Host) -> std::path::PathBuf {
    host.state_dir().join("faults.json")
}

fn load(path: &Path) -> Res<Vec<Rule>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Fail::new(1, format!("freebsd-sim: parse {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_fail("read", path, e)),
    }
}

fn save(path: &Path, rules: &[Rule]) -> Res<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(rules).expect("rules serialize");
    fs::write(&tmp, bytes)
        .and_then(|_| fs::rename(&tmp, path))
        .map_err(|e| io_fail("write", path, e))
}

/// Counts this call against every rule and returns the action of the first rule that fires.
pub fn take(host: &Host, tool: &str, args: &[String]) -> Res<Option<Action>> {
    let path = faults_path(host);
    // The common case, no faults at all, costs no lock.
    if !path.exists() {
        return Ok(None);
    }
    host.locked(|| {
        let mut rules = load(&path)?;
        let mut action = None;
        for rule in rules.iter_mut().filter(|r| r.matches(tool, args)) {
            rule.seen += 1;
            let fires = rule.nth.is_none_or(|n| n == rule.seen);
            if fires && action.is_none() {
                rule.fired += 1;
                action = Some(rule.action.clone());
            }
        }
        save(&path, &rules)?;
        Ok(action)
    })
}

/// Sleeps for a hang; returns false when the caller went away first (even before the hang).
pub fn hang(secs: Option<f64>) -> bool {
    let parent = nix::unistd::getppid();
    let deadline = secs.map(|s| Instant::now() + Duration::from_secs_f64(s));
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return true;
        }
        // A caller that died before this process first looked had already handed it to init
        // (pid 1), which never runs a simulated tool: that is gone too.
        let now = nix::unistd::getppid();
        if now != parent || now.as_raw() == 1 {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const USAGE: &str = "usage: freebsd-sim fault DIR TOOL [--word W] [--nth N] (--fail CODE [--stderr MSG] | --hang [SECS])\n       freebsd-sim fault DIR --list | --clear";

/// `freebsd-sim fault DIR …`: adds a rule, lists the rules with their counts, or clears them.
pub fn main(args: &[String]) -> Res<String> {
    let (dir, rest) = args.split_first().ok_or_else(|| usage(USAGE))?;
    let host = Host::new(dir.into());
    if !host.state_dir().is_dir() {
        return Err(Fail::new(
            1,
            format!("freebsd-sim: {dir} is not a simulated host (run init)"),
        ));
    }
    let path = faults_path(&host);
    match rest {
        [flag] if flag == "--list" => {
            let rules = host.locked(|| load(&path))?;
            Ok(format!(
                "{}\n",
                serde_json::to_string(&rules).expect("rules serialize")
            ))
        }
        [flag] if flag == "--clear" => host.locked(|| match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_fail("remove", &path, e)),
            _ => Ok(String::new()),
        }),
        [tool, opts @ ..] if crate::TOOLS.contains(&tool.as_str()) => {
            let rule = parse_rule(tool, opts)?;
            host.locked(|| {
                let mut rules = load(&path)?;
                rules.push(rule);
                save(&path, &rules)
            })?;
            Ok(String::new())
        }
        [tool, ..] if !tool.starts_with('-') => Err(Fail::new(
            64,
            format!("freebsd-sim fault: unknown tool {tool:?}\n{USAGE}"),
        )),
        _ => Err(usage(USAGE)),
    }
}

fn parse_rule(tool: &str, opts: &[String]) -> Res<Rule> {
    let bad = |what: &str| Fail::new(64, format!("freebsd-sim fault: {what}\n{USAGE}"));
    let (mut word, mut nth, mut fail, mut stderr, mut hang) = (None, None, None, None, None);
    let mut it = opts.iter().peekable();
    while let Some(opt) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| bad(&format!("{name} needs a value")))
        };
        match opt.as_str() {
            "--word" => word = Some(value("--word")?),
            "--nth" => {
                let n: u32 = value("--nth")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("--nth needs a number from 1"))?;
                nth = Some(n);
            }
            "--fail" => {
                let code: i32 = value("--fail")?
                    .parse()
                    .ok()
                    .filter(|c| (1..=255).contains(c))
                    .ok_or_else(|| bad("--fail needs an exit code from 1 to 255"))?;
                fail = Some(code);
            }
            "--stderr" => stderr = Some(value("--stderr")?),
            "--hang" => {
                let secs = match it.peek() {
                    Some(v) if !v.starts_with("--") => {
                        let s: f64 = it
                            .next()
                            .and_then(|v| v.parse().ok())
                            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                            .ok_or_else(|| bad("--hang takes seconds (a number)"))?;
                        Some(s)
                    }
                    _ => None,
                };
                hang = Some(secs);
            }
            other => return Err(bad(&format!("unknown option {other}"))),
        }
    }
    let action = match (fail, hang) {
        (Some(exit), None) => Action::Fail {
            exit,
            stderr: stderr.unwrap_or_else(|| format!("{tool}: injected failure")),
        },
        (None, Some(secs)) if stderr.is_none() => Action::Hang { secs },
        (None, Some(_)) => return Err(bad("--stderr goes with --fail")),
        _ => return Err(bad("give exactly one of --fail and --hang")),
    };
    Ok(Rule {
        tool: tool.to_string(),
        word,
        nth,
        action,
        seen: 0,
        fired: 0,
    })
}
