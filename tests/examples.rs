//! Every configuration we ship or show is checked against the schemas the real plugin returns,
//! the way Nomad checks them: the agent configs in `driver-config/`, every task of the jobs in
//! `nomad-jobs/`, every HCL block and every option example of the README. Every shell block of
//! the README is syntax-checked and either run here or exercised by the FreeBSD rig
//! (`Vagrantfile`, `tests/freebsd/`), whose scripts are syntax-checked and shellchecked here.

mod common;

use common::env::{config_schema, set_config_bytes, task_schema};
use common::sim::signify_keys;
use common::{Plugin, cty};
use nomad_pot_driver::driver::TaskConfig;
use nomad_pot_driver::jobspec;
use nomad_pot_driver::proto::hclspec::Spec;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .hcl files in {dir}");
    files
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Schemas {
    plugin: Plugin,
    agent: Spec,
    task: Spec,
    /// A signify key pair made here: the configs name keys that exist on their FreeBSD host.
    keys: tempfile::TempDir,
}

impl Schemas {
    async fn get() -> Schemas {
        let plugin = Plugin::launch().await;
        let agent = config_schema(&plugin).await;
        let task = task_schema(&plugin).await;
        Schemas {
            plugin,
            agent,
            task,
            keys: signify_keys(),
        }
    }

    /// As the agent at start-up: decode against ConfigSchema, then SetConfig must accept it.
    /// The files SetConfig reads are the FreeBSD host's: `signature_pubkeys` entries become a
    /// key made here, `image_ca_file` the test PKI's CA.
    async fn check_agent(&self, what: &str, hcl: &str) {
        let mut config = jobspec::plugin_config(hcl, "nomad-pot-driver")
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: no plugin \"nomad-pot-driver\" block"));
        if let Some(Value::Array(keys)) = config.get_mut("signature_pubkeys") {
            let local = self.keys.path().join("sim.pub").display().to_string();
            keys.iter_mut()
                .for_each(|k| *k = Value::String(local.clone()));
        }
        if let Some(ca) = config.get_mut("image_ca_file") {
            *ca = Value::String(repo().join("tests/tls/ca.pem").display().to_string());
        }
        let bytes = cty::encode(&self.agent, &config).unwrap_or_else(|e| panic!("{what}: {e}"));
        set_config_bytes(&self.plugin, bytes, false)
            .await
            .unwrap_or_else(|e| panic!("{what}: SetConfig refused it: {e:?}"));
    }

    /// As the Nomad client before StartTask, then as the plugin decodes it.
    fn check_tasks(&self, what: &str, hcl: &str) -> usize {
        let tasks = jobspec::task_configs(hcl).unwrap_or_else(|e| panic!("{what}: {e}"));
        for (name, config) in &tasks {
            let bytes = cty::encode(&self.task, config)
                .unwrap_or_else(|e| panic!("{what}, task {name}: {e}"));
            TaskConfig::decode(&bytes)
                .unwrap_or_else(|e| panic!("{what}, task {name}: the plugin refuses it: {e}"));
        }
        tasks.len()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_agent_configs_and_jobs_are_valid() {
    let s = Schemas::get().await;
    for path in files("driver-config") {
        s.check_agent(
            &path.display().to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        )
        .await;
    }
    for path in files("nomad-jobs") {
        let n = s.check_tasks(
            &path.display().to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        );
        assert!(n > 0, "{}: no task", path.display());
    }
    s.plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hcl_block_of_the_readme_is_valid() {
    let s = Schemas::get().await;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```hcl\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty(), "the README has no HCL block");
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("README HCL block {}", i + 1);
        if block.contains("plugin \"nomad-pot-driver\"") {
            s.check_agent(&what, block).await;
        } else if block.contains("driver = \"pot\"") {
            assert!(s.check_tasks(&what, block) > 0, "{what}: no task");
        } else {
            panic!("{what} is neither an agent plugin block nor a pot task:\n{block}");
        }
    }
    s.plugin.shutdown().await;
}

/// stdout of `potctl demo ARGS` run from the repository, which must succeed.
fn potctl_demo(args: &[&str]) -> String {
    let potctl = nomad_harness::bin_dir().join("potctl");
    let out = Command::new(&potctl)
        .arg("demo")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", potctl.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "potctl demo {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_readme_demo_command_works() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("cargo build --workspace && cargo run -q --bin potctl -- demo"),
        "the README's demo command changed: update this test"
    );
    let stdout = potctl_demo(&[]);
    assert!(stdout.contains("hello from hello in a jail"), "{stdout}");
    assert!(stdout.contains("exit code 3, signal 0"), "{stdout}");
    assert!(stdout.contains("no leftovers"), "{stdout}");
}

/// The inline code spans of a markdown table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The rows of the first `| option | type | default | example | meaning |` table after the
/// heading `section`: each row's option names and its example snippets.
fn option_rows(readme: &str, section: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let start = readme
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("README: no section {section}"));
    let mut lines = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| option | type | default | example | meaning |"));
    assert!(
        lines.next().is_some(),
        "{section}: no `| option | type | default | example | meaning |` table"
    );
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
            assert!(cells.len() >= 5, "{section}: a row without 5 cells: {row}");
            (code_spans(cells[0]), code_spans(cells[3]))
        })
        .collect()
}

/// Every option of a schema has a row, every row an example per option it names; returns the
/// examples as the lines of one config body.
fn examples_cover(section: &str, rows: &[(Vec<String>, Vec<String>)], spec: &Spec) -> String {
    for (names, examples) in rows {
        for name in names {
            assert!(
                examples.iter().any(|e| e.split(" = ").next() == Some(name)),
                "{section}: option {name} has no example `{name} = …`"
            );
        }
        for e in examples {
            let key = e.split(" = ").next().unwrap_or_default();
            assert!(
                names.iter().any(|n| n == key),
                "{section}: example `{e}` is not about this row's options {names:?}"
            );
        }
    }
    for (key, _) in nomad_harness::cty::object_attrs(spec) {
        assert!(
            rows.iter().any(|(names, _)| names.contains(&key)),
            "{section}: option {key} of the plugin's schema is not in the table"
        );
    }
    rows.iter()
        .flat_map(|(_, examples)| examples.iter())
        .map(|e| format!("    {e}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_option_has_a_valid_example_in_the_readme() {
    let s = Schemas::get().await;
    let readme = read("README.md");

    let section = "## Agent configuration";
    let body = examples_cover(section, &option_rows(&readme, section), &s.agent);
    let agent = format!("plugin \"nomad-pot-driver\" {{\n  config {{\n{body}  }}\n}}\n");
    s.check_agent(&format!("{section} examples:\n{agent}"), &agent)
        .await;

    let section = "## Task configuration";
    let body = examples_cover(section, &option_rows(&readme, section), &s.task);
    let task = format!("task \"t\" {{\n  driver = \"pot\"\n  config {{\n{body}  }}\n}}\n");
    assert_eq!(
        s.check_tasks(&format!("{section} examples:\n{task}"), &task),
        1
    );
    s.plugin.shutdown().await;
}

/// The shell blocks of a markdown text (fences may be indented, as in a list), dedented.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == "```sh" => current = Some((indent, String::new())),
            Some(_) if trimmed == "```" => blocks.push(current.take().unwrap().1),
            Some((indent, text)) => {
                text.push_str(line.get(*indent..).unwrap_or(""));
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

/// The commands of a shell block: without blank lines, trailing `# comments` and `export`s
/// (they set a variable for the commands that follow and run nothing).
fn commands(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("export "))
        .collect()
}

fn syntax_check(shell: &str, what: &str, script: &Path) {
    let out = Command::new(shell)
        .arg("-n")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{shell}: {e}"));
    assert!(
        out.status.success(),
        "{what}: `{shell} -n` finds a syntax error:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the FreeBSD rig runs this README command: it is part of a line of the Vagrantfile or
/// its scripts, or it is a `nomad`, `potctl` or `curl` command whose arguments name a run's own
/// objects (an alloc id, a port) and the e2e script runs that command (its first two words).
fn rig_runs(command: &str, rig: &[String], e2e: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    rig.iter().any(|line| line.contains(command))
        || (words.len() >= 2
            && ["nomad", "potctl", "curl"].contains(&words[0])
            && e2e.contains(&format!("{} {} ", words[0], words[1])))
}

#[test]
fn every_shell_block_of_the_readme_is_checked_or_run() {
    let readme = read("README.md");
    let rig_files = [
        "Vagrantfile",
        "tests/freebsd/provision.sh",
        "tests/freebsd/e2e.sh",
    ];
    let rig: Vec<String> = rig_files
        .iter()
        .flat_map(|f| read(f).lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let e2e = read("tests/freebsd/e2e.sh");
    let ci = read(".ci/run");
    let tmp = tempfile::tempdir().unwrap();
    let blocks = shell_blocks(&readme);
    assert!(
        blocks.len() >= 6,
        "the README has {} shell blocks",
        blocks.len()
    );
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("README shell block {}:\n{block}", i + 1);
        let script = tmp.path().join(format!("block{i}.sh"));
        std::fs::write(&script, block).unwrap();
        syntax_check("sh", &what, &script);
        syntax_check("bash", &what, &script);

        let cmds = commands(block);
        if block.contains("cargo run -q --bin potctl -- demo") {
            // Run by the_readme_demo_command_works.
            assert_eq!(cmds.len(), 1, "{what}");
        } else if block.contains("cargo test --workspace") {
            assert_eq!(cmds.len(), 1, "{what}");
            assert!(
                ci.lines().any(|l| l == cmds[0]),
                "{what}: .ci/run must run exactly the README's test command"
            );
        } else if block.contains("target/debug/freebsd-sim") {
            // Runs here, on a scratch directory instead of /tmp.
            let scratch = format!("{}/", tmp.path().display());
            for cmd in &cmds {
                let cmd = cmd.replace("/tmp/", &scratch);
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .current_dir(repo())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{what}: `{cmd}` failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        } else {
            for cmd in &cmds {
                assert!(
                    rig_runs(cmd, &rig, &e2e),
                    "{what}: `{cmd}` is neither run here nor by the FreeBSD rig ({rig_files:?}): \
                     have tests/freebsd/e2e.sh run it, or run it in this test"
                );
            }
        }
    }
}

#[test]
fn the_readme_figures_are_those_of_benchmarks_md() {
    let readme = read("README.md");
    let benchmarks = read("BENCHMARKS.md");
    let start = readme
        .find("\n## Performance\n")
        .expect("README: no Performance section");
    let rows: Vec<&str> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| figure | value | command"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        rows.len() >= 5,
        "README: no figures table under Performance"
    );
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let (value, command) = (cells[1].trim(), cells[2].trim().trim_matches('`'));
        assert!(
            benchmarks.contains(value),
            "README figure {value:?} is not in BENCHMARKS.md: {row}"
        );
        assert!(
            benchmarks.contains(command),
            "README command {command:?} is not in BENCHMARKS.md: {row}"
        );
    }
}

/// Set by `.ci/run`, which installs shellcheck: there a missing shellcheck fails the test
/// instead of skipping the lint (the README's test command must pass on a machine without it).
const SHELLCHECK_REQUIRED: &str = "NOMAD_POT_DRIVER_REQUIRE_SHELLCHECK";

/// Syntax-checks every rig script, then shellchecks each when shellcheck is installed.
#[test]
fn freebsd_scripts_are_valid_shell_and_pass_shellcheck() {
    let dir = repo().join("tests/freebsd");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 2, "tests/freebsd: {scripts:?}");
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        let what = script.display().to_string();
        let shell = match text.lines().next() {
            Some("#!/bin/sh") => "sh",
            Some("#!/usr/bin/env bash") => "bash",
            other => panic!("{what}: shebang {other:?}: #!/bin/sh or #!/usr/bin/env bash"),
        };
        syntax_check(shell, &what, script);
        let out = match Command::new("shellcheck").arg(script).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var_os(SHELLCHECK_REQUIRED).is_none(),
                    "shellcheck is not installed, and {SHELLCHECK_REQUIRED} says it must be"
                );
                // Straight to stderr, past the test harness's capture: a skip must show.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED shellcheck of tests/freebsd/*.sh: shellcheck is not installed \
                     (only the syntax checks ran; .ci/run installs it and sets \
                     {SHELLCHECK_REQUIRED}=1)"
                );
                return;
            }
            Err(e) => panic!("shellcheck: {e}"),
        };
        assert!(
            out.status.success(),
            "{what}: shellcheck:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_rig_runs_every_example_job_with_the_dev_config() {
    let vagrantfile = read("Vagrantfile");
    let provision = read("tests/freebsd/provision.sh");
    for phase in ["host", "driver", "image"] {
        assert!(
            vagrantfile.contains(&format!("args: [\"{phase}\"]")),
            "Vagrantfile: no provisioner for phase {phase}"
        );
        assert!(
            provision.contains(&format!("    {phase}) phase_{phase} ;;")),
            "provision.sh: no phase {phase}"
        );
    }
    assert!(provision.contains("install -m 0644 driver-config/dev.hcl "));
    for config in ["minimal.hcl", "full.hcl", "dev.hcl"] {
        assert!(
            repo().join("driver-config").join(config).is_file(),
            "driver-config/{config} is missing"
        );
    }
    let e2e = read("tests/freebsd/e2e.sh");
    for job in files("nomad-jobs") {
        let name = job.file_name().unwrap().to_str().unwrap();
        assert!(
            e2e.contains(&format!(" {name}\n")),
            "tests/freebsd/e2e.sh does not run nomad-jobs/{name}"
        );
    }
}

#[test]
fn the_signed_image_job_runs_on_the_simulated_host() {
    let stdout = potctl_demo(&["--job", "nomad-jobs/signed-image.nomad.hcl"]);
    assert!(stdout.contains("running from a signed image"), "{stdout}");
    assert!(stdout.contains("exit code 0, signal 0"), "{stdout}");
    assert!(stdout.contains("no leftovers"), "{stdout}");
}

#[test]
fn the_port_skeleton_installs_what_it_lists_at_the_crate_version() {
    let makefile = read("packaging/freebsd/Makefile");
    let plist = read("packaging/freebsd/pkg-plist");
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml: no package version");
    assert!(
        makefile.contains(&format!("DISTVERSION=\t{version}\n")),
        "packaging/freebsd/Makefile: DISTVERSION is not Cargo.toml's {version}"
    );
    for entry in plist.lines().filter(|l| !l.is_empty()) {
        let installed = format!(
            "${{STAGEDIR}}${{PREFIX}}/{}",
            entry.rsplit_once('/').unwrap().0
        );
        assert!(
            makefile.contains(&installed),
            "pkg-plist lists {entry} but the Makefile installs nothing into {installed}"
        );
    }
}
