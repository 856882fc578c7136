//! The boundaries ARCHITECTURE.md marks "(checked)": which room may import what, where tools
//! are spawned, and that the shipped crate links no test support. Read from the sources, so a
//! change that crosses a boundary fails here with the file and the line.

use regex::Regex;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, with its product code only: test modules (`tests.rs`, a `tests/`
/// directory, or what follows a file's first `#[cfg(test)]`) may do what the product may not.
fn product_sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let base = root().join(dir);
    if base.is_file() {
        files.push(base);
    } else {
        walk(&base, &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let product = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            (path, product)
        })
        .collect()
}

/// `file:line: text` for every line of `dirs` matching `pattern`, outside comments.
fn offenders(dirs: &[&str], pattern: &str, allowed: impl Fn(&Path, &str) -> bool) -> Vec<String> {
    let re = Regex::new(pattern).unwrap();
    let mut found = Vec::new();
    for dir in dirs {
        for (path, text) in product_sources(dir) {
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || !re.is_match(code) || allowed(&path, code) {
                    continue;
                }
                let shown = path
                    .strip_prefix(root())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                found.push(format!("{shown}:{}: {code}", n + 1));
            }
        }
    }
    found
}

#[test]
fn protocol_types_stay_in_plugin_and_driver() {
    let found = offenders(
        &[
            "src/engine",
            "src/host",
            "src/skein.rs",
            "src/text.rs",
            "src/jobspec.rs",
            "src/jobspec",
        ],
        r"\b(nomad_plugin_proto|tonic|prost|prost_types|crate::proto)\b",
        |_, _| false,
    );
    assert!(
        found.is_empty(),
        "protocol types below the driver:\n{}",
        found.join("\n")
    );
}

#[test]
fn layers_import_only_downwards() {
    let up_from_engine = offenders(&["src/engine"], r"\bcrate::(driver|plugin)\b", |_, _| false);
    let up_from_host = offenders(
        &["src/host"],
        r"\bcrate::(engine|driver|plugin)\b",
        |_, _| false,
    );
    let up_from_driver = offenders(&["src/driver"], r"\bcrate::plugin\b", |_, _| false);
    let found = [up_from_engine, up_from_host, up_from_driver].concat();
    assert!(
        found.is_empty(),
        "imports against the layering:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_host_spawns_tools() {
    // The one exception: the engine starting its own binary as a task's supervisor.
    let supervisor_spawn = root().join("src/engine/lifecycle/supervise.rs");
    let found = offenders(
        &[
            "src/plugin",
            "src/driver",
            "src/engine",
            "src/skein.rs",
            "src/text.rs",
            "src/jobspec.rs",
        ],
        r"\bCommand::new\b|\bprocess::Command::new\b|\bsh\s+-c\b",
        |path, code| path == supervisor_spawn && code.contains("Command::new(&self.supervisor)"),
    );
    assert!(
        found.is_empty(),
        "processes spawned outside host/:\n{}",
        found.join("\n")
    );
}

#[test]
fn freebsd_only_code_stays_in_host() {
    let found = offenders(
        &["src/plugin", "src/driver", "src/engine", "src/bin"],
        r#"target_os\s*=\s*"freebsd""#,
        |_, _| false,
    );
    assert!(
        found.is_empty(),
        "FreeBSD-only code outside host/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_supervisor_depends_only_on_host_and_the_task_state() {
    let engine_item = Regex::new(r"\bcrate::engine::(\w+)").unwrap();
    let crate_item = Regex::new(r"\bcrate::(\w+)").unwrap();
    // In supervisor/mod.rs `super` is the engine; in its children `super::super` is.
    let parent_item = Regex::new(r"\bsuper::(super::)?(\w+)").unwrap();
    let mut found = Vec::new();
    for (path, text) in product_sources("src/engine/supervisor") {
        let is_mod = path.ends_with("mod.rs");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let mut reached: Vec<String> = Vec::new();
            for c in engine_item.captures_iter(code) {
                reached.push(format!("engine::{}", &c[1]));
            }
            for c in crate_item.captures_iter(code) {
                if &c[1] != "engine" {
                    reached.push(c[1].to_string());
                }
            }
            for c in parent_item.captures_iter(code) {
                let into_engine = is_mod || c.get(1).is_some();
                if into_engine && &c[2] != "super" {
                    reached.push(format!("engine::{}", &c[2]));
                }
            }
            for item in reached {
                if !matches!(
                    item.as_str(),
                    "host" | "engine::state" | "engine::supervisor"
                ) {
                    let shown = path.strip_prefix(root()).unwrap().display();
                    found.push(format!("{shown}:{}: reaches {item}: {code}", n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the supervisor reaches beyond host and state:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_product_links_no_test_support() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(["-p", "nomad-pot-driver"])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let test_support: Vec<&str> = tree
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            matches!(name, "nomad-harness" | "freebsd-sim" | "tempfile" | "regex")
        })
        .collect();
    assert!(
        test_support.is_empty(),
        "the shipped crate's normal dependencies hold test support:\n{}",
        test_support.join("\n")
    );
}

/// ARCHITECTURE.md: a room that passes ~600 lines has more than one job, so it is split along
/// its seams. 650 leaves the margin of "about".
#[test]
fn no_room_passes_about_600_lines() {
    const LIMIT: usize = 650;
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["src", "client", "tests", "benches", "proto", "fuzz"] {
        walk(&root().join(dir), &mut files);
    }
    assert!(files.len() > 100, "found only {} sources", files.len());
    let mut long = Vec::new();
    for path in files {
        let shown = path.strip_prefix(root()).unwrap().display().to_string();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines > LIMIT {
            long.push(format!("{shown}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "rooms over {LIMIT} lines:\n{}",
        long.join("\n")
    );
}
