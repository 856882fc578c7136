//! Builds `TaskConfig`s the way Nomad's task runner does (protocol spec §3.3), with the alloc
//! directory layout and the logmon FIFOs.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use nomad_plugin_proto::drivers::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedTaskResources, LinuxResources,
    Resources, TaskConfig,
};

use super::logmon::LogMon;

/// `n` random bytes from /dev/urandom.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

pub fn random_hex(n_chars: usize) -> String {
    random_bytes(n_chars.div_ceil(2))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..n_chars]
        .to_string()
}

/// A random UUID-shaped id (8-4-4-4-12 hex).
pub fn random_uuid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One task of one allocation: its alloc dir, logmon and the TaskConfig to send.
pub struct TestTask {
    pub alloc_id: String,
    pub task_name: String,
    pub alloc_dir: PathBuf,
    pub logs: LogMon,
    pub config: TaskConfig,
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
    pub fn new(task_name: &str, msgpack_driver_config: Vec<u8>) -> TaskBuilder {
        TaskBuilder {
            task_name: task_name.into(),
            job_name: "e2e-job".into(),
            group_name: "e2e-group".into(),
            alloc_id: random_uuid(),
            msgpack_driver_config,
            env: HashMap::new(),
            cpu_shares: 100,
            memory_mb: 64,
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Creates `<allocs_root>/<alloc_id>` with Nomad's layout, starts logmon, builds the config.
    pub fn build(self, allocs_root: &Path) -> TestTask {
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
            std::fs::create_dir_all(&d).unwrap();
        }
        let logs = LogMon::start(&alloc_dir, task);

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

        let id = format!("{}/{}/{}", self.alloc_id, task, random_hex(8));
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
        TestTask {
            alloc_id: self.alloc_id,
            task_name: self.task_name,
            alloc_dir,
            logs,
            config,
        }
    }
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
