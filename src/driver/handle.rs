//! `TaskHandle.driver_state`: everything needed to find a task again after an agent restart,
//! when Nomad hands back the handle without the task's driver config.

use serde::{Deserialize, Serialize};

/// Handle version written by this driver. The Go driver wrote 1 and 2; 0 is reserved by Nomad.
pub const HANDLE_VERSION: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverState {
    pub pot: String,
    pub task_id: String,
    pub task_name: String,
    pub alloc_id: String,
    pub pid: u32,
    pub started_at_ms: u64,
}

impl DriverState {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("driver state serializes")
    }

    pub fn decode(version: i32, bytes: &[u8]) -> Result<DriverState, String> {
        match version {
            HANDLE_VERSION => serde_json::from_slice(bytes)
                .map_err(|e| format!("driver_state of handle version {version} is corrupt: {e}")),
            1 | 2 => Err(format!(
                "handle version {version} was written by the Go nomad-pot-driver and cannot be recovered; Nomad will start the task again"
            )),
            other => Err(format!("unknown handle version {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_go_handles() {
        let s = DriverState {
            pot: "web_a_b".into(),
            task_id: "b/web/a".into(),
            task_name: "web".into(),
            alloc_id: "b".into(),
            pid: 42,
            started_at_ms: 7,
        };
        assert_eq!(DriverState::decode(HANDLE_VERSION, &s.encode()).unwrap(), s);
        assert!(
            DriverState::decode(2, b"\x80")
                .unwrap_err()
                .contains("Go nomad-pot-driver")
        );
        assert!(DriverState::decode(0, b"").is_err());
    }
}
