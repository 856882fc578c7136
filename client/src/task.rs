//! Builds `TaskConfig`s the way Nomad's task runner does (protocol spec §3.3), with the alloc
//! directory layout and the logmon FIFOs.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nomad_plugin_proto::drivers::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedTaskResources, LinuxResources,
    Resources, TaskConfig,
};

use crate::logmon::{LogMon, LogMonError};

/// Why a task could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("reading random bytes from /dev/urandom: {0}")]
    Random(#[source] io::Error),
    #[error("creating the alloc dir {}: {source}", path.display())]
    AllocDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    LogMon(#[from] LogMonError),
}

/// `n` random bytes from /dev/urandom.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, TaskError> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(TaskError::Random)?;
    Ok(buf)
}

/// `n_chars` random lower-case hex digits.
pub fn random_hex(n_chars: usize) -> Result<String, TaskError> {
    let mut hex: String = random_bytes(n_chars.div_ceil(2))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.truncate(n_chars);
    Ok(hex)
}

/// A random UUID-shaped id (8-4-4-4-12 hex).
pub fn random_uuid() -> Result<String, TaskError> {
    let h = random_hex(32)?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// One task of one allocation: its alloc dir, logmon and the TaskConfig to send.
pub struct Task {
    pub alloc_id: String,
    pub task_name: String,
    pub alloc_dir: PathBuf,
    pub logs: LogMon,
    pub config: TaskConfig,
}

impl Task {
    /// Shorthand: `TaskBuilder::new(task, cfg)?.build(allocs_root)`.
    pub fn new(
        allocs_root: &Path,
        task_name: &str,
        msgpack_driver_config: Vec<u8>,
    ) -> Result<Task, TaskError> {
        TaskBuilder::new(task_name, msgpack_driver_config)?.build(allocs_root)
    }

    pub fn id(&self) -> String {
        self.config.id.clone()
    }
}

pub struct TaskBuilder {
    pub task_name: String,
    pub job_name: String,
    pub group_name: String,
    pub alloc_id: String,
    pub msgpack_driver_config: Vec<u8>,
    pub env: HashMap<String, String>,
    pub cpu_shares: i64,
    pub memory_mb: i64,
}

impl TaskBuilder {
    /// A task of a fresh allocation (a random alloc id) of job `e2e-job`, group `e2e-group`.
    pub fn new(task_name: &str, msgpack_driver_config: Vec<u8>) -> Result<TaskBuilder, TaskError> {
        Ok(TaskBuilder {
            task_name: task_name.into(),
            job_name: "e2e-job".into(),
            group_name: "e2e-group".into(),
            alloc_id: random_uuid()?,
            msgpack_driver_config,
            env: HashMap::new(),
            cpu_shares: 100,
            memory_mb: 64,
        })
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Creates `<allocs_root>/<alloc_id>` with Nomad's layout, starts logmon, builds the config.
    pub fn build(self, allocs_root: &Path) -> Result<Task, TaskError> {
        let alloc_dir = allocs_root.join(&self.alloc_id);
        let task = &self.task_name;
        for d in [
            alloc_dir.join(task).join("local"),
            alloc_dir.join(task).join("secrets"),
            alloc_dir.join(task).join("private"),
            alloc_dir.join("alloc").join("data"),
            alloc_dir.join("alloc").join("tmp"),
            alloc_dir.join("alloc").join("logs"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(|source| TaskError::AllocDir { path: d, source })?;
        }
        let logs = LogMon::start(&alloc_dir, task)?;

        let mut env: HashMap<String, String> = [
            ("NOMAD_ALLOC_ID", self.alloc_id.as_str()),
            (
                "NOMAD_ALLOC_NAME",
                &format!("{}.{}[0]", self.job_name, self.group_name),
            ),
            ("NOMAD_ALLOC_INDEX", "0"),
            ("NOMAD_TASK_NAME", task.as_str()),
            ("NOMAD_GROUP_NAME", self.group_name.as_str()),
            ("NOMAD_JOB_NAME", self.job_name.as_str()),
            ("NOMAD_JOB_ID", self.job_name.as_str()),
            ("NOMAD_NAMESPACE", "default"),
            ("NOMAD_REGION", "global"),
            ("NOMAD_DC", "dc1"),
            ("NOMAD_ALLOC_DIR", "/alloc"),
            ("NOMAD_TASK_DIR", "/local"),
            ("NOMAD_SECRETS_DIR", "/secrets"),
            ("NOMAD_CPU_LIMIT", &self.cpu_shares.to_string()),
            ("NOMAD_MEMORY_LIMIT", &self.memory_mb.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(self.env.clone());

        let id = format!("{}/{}/{}", self.alloc_id, task, random_hex(8)?);
        let config = TaskConfig {
            id,
            name: task.clone(),
            msgpack_driver_config: self.msgpack_driver_config.clone(),
            env,
            resources: Some(Resources {
                allocated_resources: Some(AllocatedTaskResources {
                    cpu: Some(AllocatedCpuResources {
                        cpu_shares: self.cpu_shares,
                    }),
                    memory: Some(AllocatedMemoryResources {
                        memory_mb: self.memory_mb,
                        memory_max_mb: 0,
                    }),
                    ..Default::default()
                }),
                linux_resources: Some(LinuxResources {
                    cpu_shares: self.cpu_shares,
                    memory_limit_bytes: self.memory_mb * 1024 * 1024,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            alloc_dir: alloc_dir.to_string_lossy().into_owned(),
            stdout_path: logs.stdout_path.to_string_lossy().into_owned(),
            stderr_path: logs.stderr_path.to_string_lossy().into_owned(),
            task_group_name: self.group_name.clone(),
            job_name: self.job_name.clone(),
            alloc_id: self.alloc_id.clone(),
            ..Default::default()
        };
        Ok(Task {
            alloc_id: self.alloc_id,
            task_name: self.task_name,
            alloc_dir,
            logs,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_their_shape() {
        let hex = random_hex(7).unwrap();
        assert_eq!(hex.len(), 7);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let uuid = random_uuid().unwrap();
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert_ne!(random_uuid().unwrap(), uuid);
    }
}
