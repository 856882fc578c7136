//! Nomad's task id, `<alloc_id>/<task_name>/<invocation>`: Nomad makes a new one per start, the
//! driver names the task's pot after it and records it on the pot as its owner.

use super::EngineError;
use super::layout::PotName;
use std::fmt;

/// A task id taken apart once, where it enters (StartTask, the owner property).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub alloc_id: String,
    pub task_name: String,
    /// The rest after the second `/`, so that the id reads back whole.
    pub invocation: String,
}

impl TaskId {
    /// Three non-empty parts; only the first two `/` separate them.
    pub fn parse(id: &str) -> Result<TaskId, EngineError> {
        let mut parts = id.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(t), Some(i)) if !a.is_empty() && !t.is_empty() && !i.is_empty() => {
                Ok(TaskId {
                    alloc_id: a.to_string(),
                    task_name: t.to_string(),
                    invocation: i.to_string(),
                })
            }
            _ => Err(EngineError::InvalidInput(format!(
                "task id {id:?} is not of the form <alloc>/<task>/<invocation>"
            ))),
        }
    }

    /// The pot the driver makes for this task (see [`PotName::for_task`]).
    pub fn pot_name(&self) -> Result<PotName, EngineError> {
        PotName::for_task(&self.task_name, &self.invocation, &self.alloc_id)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.alloc_id, self.task_name, self.invocation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nomad_task_ids_and_reads_back_whole() {
        let id = TaskId::parse("a-1/web/0f3c").unwrap();
        assert_eq!(
            (
                id.alloc_id.as_str(),
                id.task_name.as_str(),
                id.invocation.as_str()
            ),
            ("a-1", "web", "0f3c")
        );
        assert_eq!(id.to_string(), "a-1/web/0f3c");
        let slashed = TaskId::parse("a/web/0f/3c").unwrap();
        assert_eq!(slashed.invocation, "0f/3c");
        assert_eq!(slashed.to_string(), "a/web/0f/3c");
    }

    #[test]
    fn rejects_ids_without_three_parts() {
        for bad in ["a/web", "a//0f3c", "/web/0f3c", "a/web/", ""] {
            let e = TaskId::parse(bad).unwrap_err();
            assert!(matches!(e, EngineError::InvalidInput(_)), "{bad:?}: {e}");
            assert_eq!(
                e.to_string(),
                format!("task id {bad:?} is not of the form <alloc>/<task>/<invocation>")
            );
        }
    }

    #[test]
    fn names_the_pot_as_the_go_driver_does() {
        let id = TaskId::parse("4fe1de8e-eab5/web.v2/a510890d").unwrap();
        assert_eq!(
            id.pot_name().unwrap().as_str(),
            "web_v2_a510890d_4fe1de8e-eab5"
        );
    }
}
