//! Builds `TaskConfig`s the way Nomad's task runner does (`nomad_pot_client::task`, panicking).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use nomad_plugin_proto::drivers::TaskConfig;
use nomad_pot_client::LogMon;

use crate::ok;

/// `n` random bytes from /dev/urandom.
pub fn random_bytes(n: usize) -> Vec<u8> {
    ok(nomad_pot_client::task::random_bytes(n))
}

pub fn random_hex(n_chars: usize) -> String {
    ok(nomad_pot_client::task::random_hex(n_chars))
}

/// A random UUID-shaped id (8-4-4-4-12 hex).
pub fn random_uuid() -> String {
    ok(nomad_pot_client::task::random_uuid())
}

/// One task of one allocation: its alloc dir, logmon and the TaskConfig to send. The client's
/// `Task` with its fields laid open, so that a test can borrow two of them mutably at once.
pub struct TestTask {
    pub alloc_id: String,
    pub task_name: String,
    pub alloc_dir: PathBuf,
    pub logs: LogMon,
    pub config: TaskConfig,
}

impl TestTask {
    /// Shorthand: `TaskBuilder::new(task, cfg).build(allocs_root)`.
    pub fn new(allocs_root: &Path, task_name: &str, msgpack_driver_config: Vec<u8>) -> TestTask {
        TaskBuilder::new(task_name, msgpack_driver_config).build(allocs_root)
    }

    pub fn id(&self) -> String {
        self.config.id.clone()
    }
}

impl From<nomad_pot_client::Task> for TestTask {
    fn from(t: nomad_pot_client::Task) -> TestTask {
        TestTask {
            alloc_id: t.alloc_id,
            task_name: t.task_name,
            alloc_dir: t.alloc_dir,
            logs: t.logs,
            config: t.config,
        }
    }
}

/// The client's task builder with job `e2e-job`, group `e2e-group`; its fields through deref.
pub struct TaskBuilder(nomad_pot_client::TaskBuilder);

impl TaskBuilder {
    pub fn new(task_name: &str, msgpack_driver_config: Vec<u8>) -> TaskBuilder {
        TaskBuilder(ok(nomad_pot_client::TaskBuilder::new(
            task_name,
            msgpack_driver_config,
        )))
    }

    pub fn env(self, k: &str, v: &str) -> Self {
        TaskBuilder(self.0.env(k, v))
    }

    /// Creates `<allocs_root>/<alloc_id>` with Nomad's layout, starts logmon, builds the config.
    pub fn build(self, allocs_root: &Path) -> TestTask {
        ok(self.0.build(allocs_root)).into()
    }
}

impl Deref for TaskBuilder {
    type Target = nomad_pot_client::TaskBuilder;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for TaskBuilder {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
