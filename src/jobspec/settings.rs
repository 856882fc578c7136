//! A task's own settings that a Nomad client puts in the `TaskConfig` it hands the plugin
//! (`env`, `user`, `resources`, `kill_timeout`, `kill_signal`), with the defaults Nomad gives
//! them.

use super::{JobspecError, collect_tasks, show};
use nix::sys::signal::Signal;
use std::str::FromStr;
use std::time::Duration;

/// Nomad's `cpu` when a task sets neither `cpu` nor `cores` (MHz).
pub const DEFAULT_CPU_MHZ: u64 = 100;
/// Nomad's `memory` when a task does not set it (MB).
pub const DEFAULT_MEMORY_MB: u64 = 300;
/// Nomad's `kill_timeout` when a task does not set it.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A task's settings outside its `config {}`, as Nomad's job parser and its defaults leave them.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSettings {
    pub name: String,
    /// `env {}`, by key; values may refer to the task's environment (`${NOMAD_PORT_http}`),
    /// which the client interpolates.
    pub env: std::collections::BTreeMap<String, EnvValue>,
    /// `user`, `None` when unset.
    pub user: Option<String>,
    pub resources: TaskResources,
    /// `kill_timeout`, Nomad's 5 s when unset.
    pub kill_timeout: Duration,
    /// `kill_signal`, `None` when unset (the plugin then uses SIGINT).
    pub kill_signal: Option<Signal>,
}

/// `resources {}` with Nomad's defaults: `cpu` 100 MHz unless `cores` is set, `memory` 300 MB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskResources {
    /// MHz; 0 when the task reserves `cores` instead.
    pub cpu: u64,
    /// Whole cores reserved for the task; 0 for none.
    pub cores: u64,
    pub memory_mb: u64,
    /// 0 when unset (no oversubscription).
    pub memory_max_mb: u64,
}

/// An `env {}` value: literal text and references to variables of the task's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvValue(Vec<EnvPart>);

#[derive(Debug, Clone, PartialEq)]
enum EnvPart {
    Text(String),
    Var(String),
}

impl EnvValue {
    /// The value with each `${NAME}` replaced by `lookup(NAME)`; the first name `lookup` does not
    /// know is the error.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                EnvPart::Text(t) => out.push_str(t),
                EnvPart::Var(name) => out.push_str(&lookup(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(out)
    }
}

/// The settings of task `task` (the first task when `None`).
pub fn task_settings(hcl: &str, task: Option<&str>) -> Result<TaskSettings, JobspecError> {
    let body = hcl::parse(hcl).map_err(|e| JobspecError::Parse(e.to_string()))?;
    let mut tasks = Vec::new();
    collect_tasks(&body, &mut tasks);
    let (name, body) = tasks
        .into_iter()
        .find(|(name, _)| task.is_none_or(|w| w == name.as_str()))
        .ok_or_else(|| JobspecError::NoTask(task.unwrap_or_default().to_string()))?;
    settings_of(&name, body)
}

fn settings_of(task: &str, body: &hcl::Body) -> Result<TaskSettings, JobspecError> {
    let bad = |key: &str, reason: String| JobspecError::Setting {
        task: task.to_string(),
        key: key.to_string(),
        reason,
    };
    let attr = |body: &'_ hcl::Body, key: &str| {
        body.attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr().clone())
    };
    let mut env = std::collections::BTreeMap::new();
    for block in body.blocks().filter(|b| b.identifier() == "env") {
        for a in block.body().attributes() {
            let key = format!("env.{}", a.key());
            env.insert(
                a.key().to_string(),
                env_value(a.expr()).map_err(|r| bad(&key, r))?,
            );
        }
    }
    if let Some(hcl::Expression::Object(obj)) = attr(body, "env") {
        for (k, v) in obj.iter() {
            let key = format!("env.{k}");
            env.insert(k.to_string(), env_value(v).map_err(|r| bad(&key, r))?);
        }
    }
    let user = attr(body, "user")
        .map(|e| literal_string(&e).ok_or_else(|| bad("user", not_literal("a user name"))))
        .transpose()?
        .filter(|u| !u.is_empty());
    let kill_timeout = attr(body, "kill_timeout")
        .map(|e| {
            literal_string(&e)
                .and_then(|s| parse_duration(&s))
                .ok_or_else(|| {
                    bad(
                        "kill_timeout",
                        format!("{} is not a duration such as \"10s\"", show(&e)),
                    )
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_KILL_TIMEOUT);
    let kill_signal = attr(body, "kill_signal")
        .map(|e| {
            literal_string(&e)
                .filter(|s| !s.is_empty())
                .and_then(|s| Signal::from_str(&s.to_ascii_uppercase()).ok())
                .ok_or_else(|| {
                    bad(
                        "kill_signal",
                        format!("{} is not a signal name such as \"SIGTERM\"", show(&e)),
                    )
                })
        })
        .transpose()?;
    let resources = match body.blocks().find(|b| b.identifier() == "resources") {
        Some(block) => resources_of(block.body(), &bad)?,
        None => TaskResources {
            cpu: DEFAULT_CPU_MHZ,
            cores: 0,
            memory_mb: DEFAULT_MEMORY_MB,
            memory_max_mb: 0,
        },
    };
    Ok(TaskSettings {
        name: task.to_string(),
        env,
        user,
        resources,
        kill_timeout,
        kill_signal,
    })
}

fn resources_of(
    body: &hcl::Body,
    bad: &dyn Fn(&str, String) -> JobspecError,
) -> Result<TaskResources, JobspecError> {
    let number = |key: &str, min: u64, unit: &str| -> Result<Option<u64>, JobspecError> {
        let Some(a) = body.attributes().find(|a| a.key() == key) else {
            return Ok(None);
        };
        let n = match a.expr() {
            hcl::Expression::Number(n) => n.as_u64(),
            _ => None,
        };
        match n {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(bad(
                &format!("resources.{key}"),
                format!(
                    "{} is not a whole number of {unit} of at least {min}",
                    show(a.expr())
                ),
            )),
        }
    };
    let cpu = number("cpu", 1, "MHz")?;
    let cores = number("cores", 1, "cores")?;
    let memory_mb = number("memory", 10, "MB")?.unwrap_or(DEFAULT_MEMORY_MB);
    let memory_max_mb = number("memory_max", 1, "MB")?.unwrap_or(0);
    if cpu.is_some() && cores.is_some() {
        return Err(bad(
            "resources",
            "a task asks for cpu or cores, not both (as Nomad requires)".to_string(),
        ));
    }
    if memory_max_mb > 0 && memory_max_mb < memory_mb {
        return Err(bad(
            "resources.memory_max",
            format!("{memory_max_mb} is below memory ({memory_mb})"),
        ));
    }
    Ok(TaskResources {
        cpu: cpu.unwrap_or(if cores.is_some() { 0 } else { DEFAULT_CPU_MHZ }),
        cores: cores.unwrap_or(0),
        memory_mb,
        memory_max_mb,
    })
}

fn not_literal(what: &str) -> String {
    format!(
        "must be {what} written as a literal string (interpolations and functions are not evaluated here)"
    )
}

fn literal_string(expr: &hcl::Expression) -> Option<String> {
    match expr {
        hcl::Expression::String(s) => Some(s.clone()),
        hcl::Expression::Parenthesis(inner) => literal_string(inner),
        _ => None,
    }
}

/// An env value: a string, number or bool (Nomad turns them into strings), whose `${NAME}`
/// references the client interpolates; functions, attribute paths and directives are refused.
fn env_value(expr: &hcl::Expression) -> Result<EnvValue, String> {
    use hcl::Expression as E;
    use hcl::template::Element;
    let refused = || {
        format!(
            "{} is not supported: only literal text and ${{NAME}} of a variable of the task's environment are (no functions, attributes or directives)",
            show(expr)
        )
    };
    Ok(EnvValue(match expr {
        E::String(s) => vec![EnvPart::Text(s.clone())],
        E::Number(n) => vec![EnvPart::Text(n.to_string())],
        E::Bool(b) => vec![EnvPart::Text(b.to_string())],
        E::TemplateExpr(t) => {
            let template = hcl::Template::from_expr(t).map_err(|e| e.to_string())?;
            template
                .elements()
                .iter()
                .map(|el| match el {
                    Element::Literal(text) => Ok(EnvPart::Text(text.clone())),
                    Element::Interpolation(i) => match &i.expr {
                        E::Variable(v) => Ok(EnvPart::Var(v.to_string())),
                        _ => Err(refused()),
                    },
                    Element::Directive(_) => Err(refused()),
                })
                .collect::<Result<_, _>>()?
        }
        _ => return Err(refused()),
    }))
}

/// A Go duration (`time.ParseDuration`): decimal numbers with units `h`, `m`, `s`, `ms`, `us`
/// (or `µs`), `ns`, as in `1m30s`; at least one, no sign.
fn parse_duration(text: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = text;
    let mut secs = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (_, scale) = UNITS.iter().find(|(u, _)| *u == &rest[..unit_len])?;
        secs += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(settings: &str) -> String {
        format!(
            "job \"j\" {{\n  group \"g\" {{\n    task \"t\" {{\n{settings}\n      config {{ pot = \"x\" }}\n    }}\n  }}\n}}\n"
        )
    }

    fn setting_error(settings: &str) -> (String, String) {
        match task_settings(&task(settings), None) {
            Err(JobspecError::Setting { task, key, reason }) => {
                assert_eq!(task, "t");
                (key, reason)
            }
            other => panic!("{settings}: {other:?}"),
        }
    }

    #[test]
    fn settings_default_as_nomad_does() {
        let s = task_settings(&task(""), None).unwrap();
        assert_eq!(
            s,
            TaskSettings {
                name: "t".into(),
                env: Default::default(),
                user: None,
                resources: TaskResources {
                    cpu: 100,
                    cores: 0,
                    memory_mb: 300,
                    memory_max_mb: 0
                },
                kill_timeout: Duration::from_secs(5),
                kill_signal: None,
            }
        );
        let s = task_settings(&task("resources {\n  cores = 2\n}"), Some("t")).unwrap();
        assert_eq!((s.resources.cpu, s.resources.cores), (0, 2));
        assert_eq!(s.resources.memory_mb, 300);
        assert!(matches!(
            task_settings(&task(""), Some("u")),
            Err(JobspecError::NoTask(_))
        ));
    }

    #[test]
    fn reads_each_setting() {
        let s = task_settings(
            &task(
                r#"user = "nobody"
kill_timeout = "1m30s"
kill_signal  = "sigusr1"
env {
  GREETING = "hi $${NOT_A_VAR}"
  PORT     = 8080
  ADDR     = "http://127.0.0.1:${NOMAD_HOST_PORT_http}/${NOMAD_TASK_NAME}"
}
resources {
  cpu        = 500
  memory     = 64
  memory_max = 128
}"#,
            ),
            None,
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("nobody"));
        assert_eq!(s.kill_timeout, Duration::from_secs(90));
        assert_eq!(s.kill_signal, Some(Signal::SIGUSR1));
        assert_eq!(
            s.resources,
            TaskResources {
                cpu: 500,
                cores: 0,
                memory_mb: 64,
                memory_max_mb: 128
            }
        );
        let vars = |name: &str| match name {
            "NOMAD_HOST_PORT_http" => Some("8080".to_string()),
            "NOMAD_TASK_NAME" => Some("t".to_string()),
            _ => None,
        };
        let env: Vec<(&str, String)> = s
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.resolve(vars).unwrap()))
            .collect();
        assert_eq!(
            env,
            [
                ("ADDR", "http://127.0.0.1:8080/t".to_string()),
                ("GREETING", "hi ${NOT_A_VAR}".to_string()),
                ("PORT", "8080".to_string()),
            ]
        );
        let unknown = task_settings(&task("env {\n  A = \"x${NOMAD_META_a}\"\n}"), None).unwrap();
        assert_eq!(
            unknown.env["A"].resolve(vars),
            Err("NOMAD_META_a".to_string())
        );
    }

    #[test]
    fn durations_are_read_as_go_writes_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "10", "s", "10 s", "-1s", "1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        for (settings, key, says) in [
            (
                "resources {\n  memory = \"lots\"\n}",
                "resources.memory",
                "\"lots\" is not a whole number of MB",
            ),
            (
                "resources {\n  cpu = -5\n}",
                "resources.cpu",
                "-5 is not a whole number of MHz",
            ),
            (
                "resources {\n  memory = 4\n}",
                "resources.memory",
                "at least 10",
            ),
            (
                "resources {\n  cores = 1.5\n}",
                "resources.cores",
                "1.5 is not a whole number of cores",
            ),
            (
                "resources {\n  cpu = 100\n  cores = 1\n}",
                "resources",
                "cpu or cores, not both",
            ),
            (
                "resources {\n  memory = 256\n  memory_max = 128\n}",
                "resources.memory_max",
                "128 is below memory (256)",
            ),
            (
                "kill_signal = \"SIGNOPE\"",
                "kill_signal",
                "\"SIGNOPE\" is not a signal name",
            ),
            (
                "kill_timeout = \"soon\"",
                "kill_timeout",
                "\"soon\" is not a duration",
            ),
            ("kill_timeout = 10", "kill_timeout", "10 is not a duration"),
            ("user = \"${NOMAD_TASK_NAME}\"", "user", "literal string"),
            ("env {\n  A = upper(\"x\")\n}", "env.A", "no functions"),
            (
                "env {\n  A = \"${attr.unique.hostname}\"\n}",
                "env.A",
                "no functions, attributes",
            ),
            (
                "env {\n  A = \"%{ if true }x%{ endif }\"\n}",
                "env.A",
                "directives",
            ),
        ] {
            let (got_key, reason) = setting_error(settings);
            assert_eq!(got_key, key, "{settings}");
            assert!(reason.contains(says), "{settings}: {reason}");
        }
    }
}
