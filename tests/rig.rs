//! The FreeBSD rig's provisioning, played on a simulated host: everything an agent config that
//! `tests/freebsd/provision.sh` installs names must exist before the `driver` phase starts
//! Nomad, because Nomad hands that config to the plugin's SetConfig at start and exits when it
//! fails (and SetConfig refuses, for one, a missing signing key file).
//!
//! The phases are read from the script and their file-making commands (`install`, `mkdir -p`,
//! `signify -G`, `touch`, `truncate`, output redirections) are played into the simulated
//! host's root; every other command is left to the real VM. Like the real `install` and
//! `signify`, they fail when the target's directory does not exist; the few directories that
//! FreeBSD's base system and the rig's packages bring are made first.

mod common;

use common::{SimHost, cty, env::config_schema, env::set_config_bytes};
use nomad_pot_driver::jobspec;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Directories a fresh FreeBSD with the rig's packages has: base's /etc, /boot and the mtree of
/// /usr/local (BSD.local.dist: bin, share/man/man8), and pkg pot's /usr/local/etc/pot.
const BASE_DIRS: [&str; 5] = [
    "etc",
    "boot",
    "usr/local/bin",
    "usr/local/share/man/man8",
    "usr/local/etc/pot",
];

/// The lines of `phase_NAME() { … }` in provision.sh.
fn phase<'a>(script: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("phase_{name}() {{\n");
    let start = script
        .find(&head)
        .unwrap_or_else(|| panic!("provision.sh: no phase_{name}"))
        + head.len();
    script[start..]
        .lines()
        .take_while(|l| *l != "}")
        .map(str::trim)
        .collect()
}

/// The script's top-level `NAME=value` and `NAME=${NAME:-value}` settings.
fn settings(script: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in script.lines().take_while(|l| !l.contains("() {")) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let value = match value.strip_prefix(&format!("${{{name}:-")) {
            Some(default) => default.trim_end_matches('}'),
            None => value,
        };
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}

/// `line` with `$NAME`/`${NAME}` of known settings replaced; None while a `$` is left.
fn expand(line: &str, vars: &HashMap<String, String>) -> Option<String> {
    let mut out = line.to_string();
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    (!out.contains('$')).then_some(out)
}

/// Plays provision.sh's file-making commands into a simulated host's root.
struct Player<'a> {
    root: &'a Path,
}

impl Player<'_> {
    fn host(&self, path: &str) -> PathBuf {
        assert!(
            path.starts_with('/'),
            "provision.sh: a relative target {path}"
        );
        self.root.join(path.trim_start_matches('/'))
    }

    fn parent_exists(&self, path: &Path, what: &str) {
        let dir = path.parent().unwrap();
        assert!(
            dir.is_dir(),
            "provision.sh: `{what}` writes into {}, which nothing has made yet",
            dir.display()
        );
    }

    /// One command: a fragment of a line between `||`, `&&` and `;`.
    fn run(&self, command: &str) {
        let (command, redirect) = match command.split_once(" >> ").or(command.split_once(" > ")) {
            Some((c, target)) => (c, Some(target.trim().trim_matches(['"', '\'']))),
            None => (command, None),
        };
        let Ok(words) = shell_words::split(command) else {
            return;
        };
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        if let Some(target) = redirect.filter(|t| t.starts_with('/')) {
            let path = self.host(target);
            self.parent_exists(&path, command);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
        }
        match words.as_slice() {
            ["install", "-d", dirs @ ..] | ["mkdir", "-p", dirs @ ..] => {
                for dir in dirs {
                    std::fs::create_dir_all(self.host(dir)).unwrap();
                }
            }
            ["install", "-m", _mode, files @ .., target] if !files.is_empty() => {
                for file in files {
                    let dest = if target.ends_with('/') {
                        self.host(target).join(Path::new(file).file_name().unwrap())
                    } else {
                        self.host(target)
                    };
                    self.parent_exists(&dest, command);
                    // The repository's own files (configs) as they are; what the phase built or
                    // unpacked (binaries, man pages) as an empty stand-in.
                    let source = repo().join(file);
                    if source.is_file() {
                        std::fs::copy(&source, &dest).unwrap();
                    } else {
                        std::fs::write(&dest, "").unwrap();
                    }
                }
            }
            ["signify", "-G", "-n", "-p", public, "-s", secret] => {
                let keys = common::sim::signify_keys();
                for (file, dest) in [("sim.pub", public), ("sim.sec", secret)] {
                    let dest = self.host(dest);
                    self.parent_exists(&dest, command);
                    std::fs::copy(keys.path().join(file), dest).unwrap();
                }
            }
            ["touch" | "truncate", .., file] if file.starts_with('/') => {
                let path = self.host(file);
                self.parent_exists(&path, command);
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
            }
            _ => {}
        }
    }

    /// Plays lines until one equals `stop` (when given); returns whether it was met.
    fn play(&self, lines: &[&str], vars: &HashMap<String, String>, stop: Option<&str>) -> bool {
        for line in lines {
            if Some(*line) == stop {
                return true;
            }
            let Some(line) = expand(line, vars) else {
                continue;
            };
            let line = line
                .trim_start_matches("if ! ")
                .trim_end_matches("; then")
                .to_string();
            for command in line.split("||").flat_map(|c| c.split("&&")) {
                for command in command.split("; ") {
                    self.run(command.trim().trim_start_matches("{ ").trim());
                }
            }
        }
        false
    }
}

/// The absolute paths quoted in an HCL text, outside comments.
fn named_paths(hcl: &str) -> Vec<String> {
    hcl.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split('"').skip(1).step_by(2))
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// The value of `sysrc NAME="…"` in the phase.
fn sysrc(lines: &[&str], name: &str) -> String {
    let prefix = format!("sysrc {name}=\"");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("provision.sh: no `{prefix}…\"`"))
        .to_string()
}

/// The repository file a phase installs as `target` (`install -m MODE FILE TARGET`).
fn installed_from<'a>(lines: &[&'a str], target: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["install", "-m", _, file, t] if *t == target => Some(*file),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rig_makes_what_its_agent_config_names_before_nomad_starts() {
    let script = std::fs::read_to_string(repo().join("tests/freebsd/provision.sh")).unwrap();
    let vars = settings(&script);
    assert!(
        vars.contains_key("RIG_KEY"),
        "provision.sh: no RIG_KEY: {vars:?}"
    );
    let sim = SimHost::create();
    let root = sim.dir.join("root");
    for dir in BASE_DIRS {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let player = Player { root: &root };
    let host = phase(&script, "host");
    let driver = phase(&script, "driver");
    player.play(&host, &vars, None);

    // The agent's flags: FreeBSD's interface instead of -dev's `lo`, its output kept.
    let args = sysrc(&host, "nomad_args");
    assert!(
        args.contains("-network-interface=$extif"),
        "nomad_args: -dev fingerprints `lo`, which FreeBSD lacks: {args}"
    );
    assert!(
        host.contains(&"sysrc nomad_debug=YES"),
        "provision.sh: without nomad_debug the rc script's daemon -f discards Nomad's output"
    );
    let configs: Vec<&str> = args
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("-config="))
        .collect();
    assert!(!configs.is_empty(), "nomad_args names no -config: {args}");

    for config in &configs {
        let source = installed_from(&driver, config)
            .unwrap_or_else(|| panic!("provision.sh: the driver phase does not install {config}"));
        let hcl = std::fs::read_to_string(repo().join(source)).unwrap();
        let paths = named_paths(&hcl);
        assert!(!paths.is_empty(), "{source}: names no path");
        for path in &paths {
            assert!(
                root.join(path.trim_start_matches('/')).exists(),
                "{source} names {path}, which the phases before `driver` do not make"
            );
        }

        // As the agent at start: the plugin on this host accepts the config, with its paths
        // inside the simulated root.
        let plugin_config = jobspec::plugin_config(&hcl, "nomad-pot-driver")
            .unwrap()
            .unwrap_or_else(|| panic!("{source}: no plugin \"nomad-pot-driver\" block"));
        let mut text = serde_json::to_string(&plugin_config).unwrap();
        for path in &paths {
            let rooted = root.join(path.trim_start_matches('/'));
            text = text.replace(&format!("\"{path}\""), &format!("\"{}\"", rooted.display()));
        }
        let mut agent = sim.agent_config();
        let rooted: Value = serde_json::from_str(&text).unwrap();
        for (k, v) in rooted.as_object().unwrap() {
            agent[k] = v.clone();
        }
        let plugin = common::Plugin::launch().await;
        let schema = config_schema(&plugin).await;
        let bytes = cty::encode(&schema, &agent).unwrap_or_else(|e| panic!("{source}: {e}"));
        set_config_bytes(&plugin, bytes, true)
            .await
            .unwrap_or_else(|e| panic!("{source}: SetConfig refuses it on the rig: {e:?}"));
        plugin.shutdown().await;
    }

    // The driver phase installs the configs before it (re)starts the agent.
    let restart = "service nomad restart";
    assert!(
        player.play(&driver, &vars, Some(restart)),
        "provision.sh: the driver phase never runs `{restart}`"
    );
    for config in &configs {
        assert!(
            root.join(config.trim_start_matches('/')).is_file(),
            "{config}: not installed before `{restart}`"
        );
    }
}

#[test]
fn the_vagrantfile_gives_the_pool_a_disk_and_the_first_boot_time() {
    let vagrantfile = std::fs::read_to_string(repo().join("Vagrantfile")).unwrap();
    assert!(
        vagrantfile.contains("config.vm.disk :disk,"),
        "Vagrantfile: the pool needs a disk of its own, the box's 8 GB UFS disk fills up"
    );
    let timeout: u32 = vagrantfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("config.vm.boot_timeout = "))
        .expect("Vagrantfile: no boot_timeout (the first boot runs freebsd-update and reboots)")
        .parse()
        .unwrap();
    assert!(timeout >= 900, "Vagrantfile: boot_timeout {timeout} s");
    let dev = std::fs::read_to_string(repo().join("driver-config/dev.hcl")).unwrap();
    assert!(
        dev.contains("memory_oversubscription_enabled = true"),
        "dev.hcl: without oversubscription Nomad ignores memory_max, which e2e.sh checks"
    );
}
