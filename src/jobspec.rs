//! Reads `config {}` blocks from Nomad HCL files: a task's from a job file, shaped the way Nomad's
//! job parser hands it to the client (an attribute written as an object, `port_map = { http =
//! "80" }`, and every nested block become lists, for HCL1 compatibility, nomad-protocol.md §4.3),
//! and a plugin's from an agent config file. The task's own settings that a Nomad client puts in
//! the `TaskConfig` it hands the plugin are read in [`settings`], its group's `network {}` in
//! [`network`].

pub mod network;
mod settings;

pub use settings::{
    DEFAULT_CPU_MHZ, DEFAULT_KILL_TIMEOUT, DEFAULT_MEMORY_MB, EnvValue, TaskResources,
    TaskSettings, task_settings,
};

use serde_json::{Map, Value};

/// Why a job file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JobspecError {
    #[error("not valid HCL: {0}")]
    Parse(String),
    #[error("no task {0:?} in the job file")]
    NoTask(String),
    #[error("task {0:?} has no config block")]
    NoConfig(String),
    #[error("config attribute {key:?}: {reason}")]
    Unsupported { key: String, reason: String },
    #[error("task {task:?}: {key}: {reason}")]
    Setting {
        task: String,
        key: String,
        reason: String,
    },
}

/// The `config {}` of task `task` (the first task when `None`), as JSON.
pub fn task_config(hcl: &str, task: Option<&str>) -> Result<Value, JobspecError> {
    let wanted = task.map(str::to_string);
    task_configs(hcl)?
        .into_iter()
        .find(|(name, _)| wanted.as_ref().is_none_or(|w| w == name))
        .map(|(_, config)| config)
        .ok_or_else(|| JobspecError::NoTask(wanted.unwrap_or_default()))
}

/// Every task of the file with its `config {}`, in file order.
pub fn task_configs(hcl: &str) -> Result<Vec<(String, Value)>, JobspecError> {
    let body = hcl::parse(hcl).map_err(|e| JobspecError::Parse(e.to_string()))?;
    let mut tasks = Vec::new();
    collect_tasks(&body, &mut tasks);
    tasks
        .into_iter()
        .map(|(name, task)| {
            let config = task
                .blocks()
                .find(|b| b.identifier() == "config")
                .ok_or_else(|| JobspecError::NoConfig(name.clone()))?;
            Ok((name, body_to_json(config.body())?))
        })
        .collect()
}

/// The `config {}` of `plugin "<name>" { … }` in an agent config file: `None` when the plugin
/// block is absent, an empty object when it has no config block (Nomad then applies defaults).
pub fn plugin_config(hcl: &str, name: &str) -> Result<Option<Value>, JobspecError> {
    let body = hcl::parse(hcl).map_err(|e| JobspecError::Parse(e.to_string()))?;
    let Some(plugin) = body.blocks().find(|b| {
        b.identifier() == "plugin" && b.labels().first().is_some_and(|l| l.as_str() == name)
    }) else {
        return Ok(None);
    };
    match plugin.body().blocks().find(|b| b.identifier() == "config") {
        Some(config) => body_to_json(config.body()).map(Some),
        None => Ok(Some(Value::Object(Map::new()))),
    }
}

fn collect_tasks<'a>(body: &'a hcl::Body, out: &mut Vec<(String, &'a hcl::Body)>) {
    for block in body.blocks() {
        if block.identifier() == "task" {
            let name = block
                .labels()
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            out.push((name, block.body()));
        } else {
            collect_tasks(block.body(), out);
        }
    }
}

fn body_to_json(body: &hcl::Body) -> Result<Value, JobspecError> {
    let mut map = Map::new();
    for attr in body.attributes() {
        let value = expr_to_json(attr.key(), attr.expr())?;
        // An object constructor becomes a one-element list, as Nomad's jobspec2 stores it.
        let value = if matches!(attr.expr(), hcl::Expression::Object(_)) {
            Value::Array(vec![value])
        } else {
            value
        };
        map.insert(attr.key().to_string(), value);
    }
    for block in body.blocks() {
        let entry = map
            .entry(block.identifier().to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = entry {
            items.push(body_to_json(block.body())?);
        }
    }
    Ok(Value::Object(map))
}

fn expr_to_json(key: &str, expr: &hcl::Expression) -> Result<Value, JobspecError> {
    use hcl::Expression as E;
    let unsupported = |reason: &str| JobspecError::Unsupported {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    Ok(match expr {
        E::Null => Value::Null,
        E::Bool(b) => Value::Bool(*b),
        E::Number(n) => serde_json::to_value(n).map_err(|e| unsupported(&e.to_string()))?,
        E::String(s) => Value::String(s.clone()),
        E::Array(items) => Value::Array(
            items
                .iter()
                .map(|e| expr_to_json(key, e))
                .collect::<Result<_, _>>()?,
        ),
        E::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| Ok((k.to_string(), expr_to_json(key, v)?)))
                .collect::<Result<_, JobspecError>>()?,
        ),
        E::Parenthesis(inner) => expr_to_json(key, inner)?,
        _ => {
            return Err(unsupported(
                "only literal values are supported here (Nomad interpolates ${…} on the client)",
            ));
        }
    })
}

/// The HCL text of an expression, for error messages.
fn show(expr: &hcl::Expression) -> String {
    hcl::format::to_string(expr).unwrap_or_else(|_| format!("{expr:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_plugin_config_blocks() {
        let agent = "plugin_dir = \"/p\"\nplugin \"nomad-pot-driver\" {\n  config {\n    enabled = false\n  }\n}\nplugin \"other\" {}\n";
        assert_eq!(
            plugin_config(agent, "nomad-pot-driver").unwrap(),
            Some(json!({"enabled": false}))
        );
        assert_eq!(plugin_config(agent, "other").unwrap(), Some(json!({})));
        assert_eq!(plugin_config(agent, "absent").unwrap(), None);
    }

    #[test]
    fn shapes_config_like_nomads_job_parser() {
        let job = r#"
job "j" {
  group "g" {
    task "a" {
      driver = "pot"
      config {
        image    = "http://h/"
        args     = ["-g", "daemon off;"]
        port_map = { http = "80" }
        count    = 2
      }
    }
    task "b" {
      config { pot = "x" }
    }
  }
}"#;
        assert_eq!(
            task_config(job, None).unwrap(),
            json!({"image": "http://h/", "args": ["-g", "daemon off;"],
                   "port_map": [{"http": "80"}], "count": 2})
        );
        assert_eq!(task_config(job, Some("b")).unwrap(), json!({"pot": "x"}));
        assert!(matches!(
            task_config(job, Some("c")),
            Err(JobspecError::NoTask(_))
        ));
        assert!(matches!(
            task_config("task \"t\" {\n  config {\n    x = \"${a}\"\n  }\n}\n", None),
            Err(JobspecError::Unsupported { .. })
        ));
    }
}
