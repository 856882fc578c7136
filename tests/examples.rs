//! Every configuration we ship or show is checked against the schemas the real plugin returns,
//! the way Nomad checks them: the agent configs in `driver-config/`, every task of the jobs in
//! `nomad-jobs/`, every HCL block of the README; and the README's demo command runs.

mod common;

use common::{Plugin, cty, within};
use nomad_pot_driver::driver::TaskConfig;
use nomad_pot_driver::jobspec;
use nomad_pot_driver::proto::base::{ConfigSchemaRequest, SetConfigRequest};
use nomad_pot_driver::proto::drivers::TaskConfigSchemaRequest;
use nomad_pot_driver::proto::hclspec::Spec;
use std::path::{Path, PathBuf};

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

struct Schemas {
    plugin: Plugin,
    agent: Spec,
    task: Spec,
}

impl Schemas {
    async fn get() -> Schemas {
        let plugin = Plugin::launch().await;
        let agent = plugin
            .base()
            .config_schema(ConfigSchemaRequest {})
            .await
            .expect("ConfigSchema")
            .into_inner()
            .spec
            .expect("agent schema");
        let task = plugin
            .driver()
            .task_config_schema(TaskConfigSchemaRequest {})
            .await
            .expect("TaskConfigSchema")
            .into_inner()
            .spec
            .expect("task schema");
        Schemas {
            plugin,
            agent,
            task,
        }
    }

    /// As the agent at start-up: decode against ConfigSchema, then SetConfig must accept it.
    async fn check_agent(&self, what: &str, hcl: &str) {
        let config = jobspec::plugin_config(hcl, "nomad-pot-driver")
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: no plugin \"nomad-pot-driver\" block"));
        let bytes = cty::encode(&self.agent, &config).unwrap_or_else(|e| panic!("{what}: {e}"));
        within(
            5.0,
            "SetConfig",
            self.plugin.base().set_config(SetConfigRequest {
                msgpack_config: bytes,
                nomad_config: None,
                plugin_api_version: "v0.1.0".into(),
            }),
        )
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

#[test]
fn the_readme_demo_command_works() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("cargo build --workspace && cargo run -q --bin potctl -- demo"),
        "the README's demo command changed: update this test"
    );
    let potctl = nomad_harness::bin_dir().join("potctl");
    let out = std::process::Command::new(&potctl)
        .arg("demo")
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", potctl.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "potctl demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello from hello in a jail"), "{stdout}");
    assert!(stdout.contains("exit code 3, signal 0"), "{stdout}");
    assert!(stdout.contains("no leftovers"), "{stdout}");
}
