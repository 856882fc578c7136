//! The group's `network {}` block of a job file, read as Nomad's job parser and scheduler read
//! it: the ports a task's group asks for (`static`, `to`), its `dns {}` and its `mode`.

use super::{JobspecError, show};

/// Nomad's default dynamic port range (`client { min_dynamic_port, max_dynamic_port }`).
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 20000..=32000;

/// The `network {}` of the group a task is in, with what potctl does not apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupNetwork {
    pub ports: Vec<PortDecl>,
    pub dns: Option<DnsDecl>,
    /// Settings that are read but mean nothing on a single node without Nomad, one line each.
    pub notes: Vec<String>,
}

/// One `port "label" {}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDecl {
    pub label: String,
    /// `static`: the host port; `None` lets the scheduler pick one from [`DYNAMIC_PORTS`].
    pub static_port: Option<u16>,
    /// `to`: the port inside the pot; `None` (unset, 0 or -1) means the host port.
    pub to: Option<u16>,
}

/// `dns {}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsDecl {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The `network {}` of the group holding task `task` (the first task when `None`); an empty
/// [`GroupNetwork`] when the group has none.
pub fn group_network(hcl: &str, task: Option<&str>) -> Result<GroupNetwork, JobspecError> {
    let body = hcl::parse(hcl).map_err(|e| JobspecError::Parse(e.to_string()))?;
    let mut groups = Vec::new();
    collect_groups(&body, &mut groups);
    let group = groups
        .into_iter()
        .find(|g| {
            g.blocks().any(|b| {
                b.identifier() == "task"
                    && task.is_none_or(|w| b.labels().first().is_some_and(|l| l.as_str() == w))
            })
        })
        .ok_or_else(|| JobspecError::NoTask(task.unwrap_or_default().to_string()))?;
    let mut networks = group.blocks().filter(|b| b.identifier() == "network");
    let Some(network) = networks.next() else {
        return Ok(GroupNetwork::default());
    };
    if networks.next().is_some() {
        return Err(bad(
            "",
            "a group has at most one network block (as Nomad requires)",
        ));
    }
    network_of(network.body())
}

/// Every `group` block, at any depth (a job file may hold one job or be a bare group).
fn collect_groups<'a>(body: &'a hcl::Body, out: &mut Vec<&'a hcl::Body>) {
    for block in body.blocks() {
        if block.identifier() == "group" {
            out.push(block.body());
        } else if block.identifier() != "task" {
            collect_groups(block.body(), out);
        }
    }
}

fn bad(key: &str, reason: impl Into<String>) -> JobspecError {
    let key = if key.is_empty() {
        "network".to_string()
    } else {
        format!("network.{key}")
    };
    JobspecError::Unsupported {
        key,
        reason: reason.into(),
    }
}

fn network_of(body: &hcl::Body) -> Result<GroupNetwork, JobspecError> {
    let mut out = GroupNetwork::default();
    for attr in body.attributes() {
        match attr.key() {
            "mode" => match literal(attr.expr()).as_deref() {
                Some("host" | "") => {}
                Some(other) => {
                    return Err(bad(
                        "mode",
                        format!(
                            "{other:?} is not supported: a pot's network is its task's \
                             `network_mode` (config {{}}), and the group's mode must be \"host\", \
                             Nomad's default"
                        ),
                    ));
                }
                None => return Err(bad("mode", not_literal(attr.expr(), "a string"))),
            },
            "hostname" => out
                .notes
                .push("network.hostname is ignored: it applies to Nomad's bridge mode only".into()),
            other => {
                return Err(bad(other, "is not a setting of Nomad's network block"));
            }
        }
    }
    for block in body.blocks() {
        match block.identifier() {
            "port" => {
                let port = port_of(block, &mut out.notes)?;
                if out.ports.iter().any(|p| p.label == port.label) {
                    return Err(bad(&format!("port.{}", port.label), "is declared twice"));
                }
                out.ports.push(port);
            }
            "dns" => {
                if out.dns.is_some() {
                    return Err(bad("dns", "is declared twice"));
                }
                out.dns = Some(dns_of(block.body())?);
            }
            "cni" => {
                return Err(bad(
                    "cni",
                    "is not supported: CNI networks need Nomad's bridge mode, which FreeBSD lacks",
                ));
            }
            other => return Err(bad(other, "is not a block of Nomad's network block")),
        }
    }
    Ok(out)
}

fn port_of(block: &hcl::Block, notes: &mut Vec<String>) -> Result<PortDecl, JobspecError> {
    let label = match block.labels() {
        [l] => l.as_str().to_string(),
        _ => return Err(bad("port", "needs exactly one label: port \"http\" {}")),
    };
    // The label becomes part of the NOMAD_PORT_<label> … variable names.
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad(
            &format!("port.{label}"),
            "a port label has only letters, digits and underscores",
        ));
    }
    let key = |k: &str| format!("port.{label}.{k}");
    let mut port = PortDecl {
        label: label.clone(),
        static_port: None,
        to: None,
    };
    for attr in block.body().attributes() {
        match attr.key() {
            "static" => match number(attr.expr()) {
                Some(n @ 1..=65535) => port.static_port = Some(n as u16),
                _ => {
                    return Err(bad(
                        &key("static"),
                        format!("{} is not a port number (1-65535)", show(attr.expr())),
                    ));
                }
            },
            "to" => match number(attr.expr()) {
                Some(-1 | 0) => port.to = None,
                Some(n @ 1..=65535) => port.to = Some(n as u16),
                _ => {
                    return Err(bad(
                        &key("to"),
                        format!(
                            "{} is not a port number (1-65535), or -1 for the host port",
                            show(attr.expr())
                        ),
                    ));
                }
            },
            "host_network" => notes.push(format!(
                "network.port.{label}.host_network is ignored: potctl publishes on the node's \
                 external interface"
            )),
            "ignore_collision" => {}
            other => {
                return Err(bad(
                    &format!("port.{label}.{other}"),
                    "is not a setting of Nomad's port block",
                ));
            }
        }
    }
    Ok(port)
}

fn dns_of(body: &hcl::Body) -> Result<DnsDecl, JobspecError> {
    let mut dns = DnsDecl::default();
    for attr in body.attributes() {
        let list = match attr.key() {
            "servers" => &mut dns.servers,
            "searches" => &mut dns.searches,
            "options" => &mut dns.options,
            other => {
                return Err(bad(
                    &format!("dns.{other}"),
                    "is not a setting of Nomad's dns block",
                ));
            }
        };
        let hcl::Expression::Array(items) = attr.expr() else {
            return Err(bad(
                &format!("dns.{}", attr.key()),
                not_literal(attr.expr(), "a list of strings"),
            ));
        };
        for item in items {
            list.push(literal(item).ok_or_else(|| {
                bad(
                    &format!("dns.{}", attr.key()),
                    not_literal(item, "a string"),
                )
            })?);
        }
    }
    Ok(dns)
}

fn literal(expr: &hcl::Expression) -> Option<String> {
    match expr {
        hcl::Expression::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn number(expr: &hcl::Expression) -> Option<i64> {
    match expr {
        hcl::Expression::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn not_literal(expr: &hcl::Expression, what: &str) -> String {
    format!(
        "{} is not {what} written literally (potctl does not evaluate interpolations)",
        show(expr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(network: &str) -> String {
        format!(
            "job \"j\" {{\n  group \"a\" {{\n    task \"first\" {{\n      config {{}}\n    }}\n  }}\n  group \"b\" {{\n{network}\n    task \"web\" {{\n      config {{}}\n    }}\n  }}\n}}\n"
        )
    }

    fn refused(network: &str) -> (String, String) {
        match group_network(&job(network), Some("web")) {
            Err(JobspecError::Unsupported { key, reason }) => (key, reason),
            other => panic!("{network}: {other:?}"),
        }
    }

    #[test]
    fn reads_the_group_of_the_task() {
        let hcl = job(r#"network {
  mode = "host"
  port "http" {
    to = 80
  }
  port "admin" {
    static = 8081
    to     = -1
    host_network = "public"
  }
  port "metrics" {}
  dns {
    servers  = ["10.0.0.2"]
    searches = ["internal"]
  }
}"#);
        let net = group_network(&hcl, Some("web")).unwrap();
        assert_eq!(
            net.ports,
            [
                PortDecl {
                    label: "http".into(),
                    static_port: None,
                    to: Some(80)
                },
                PortDecl {
                    label: "admin".into(),
                    static_port: Some(8081),
                    to: None
                },
                PortDecl {
                    label: "metrics".into(),
                    static_port: None,
                    to: None
                },
            ]
        );
        assert_eq!(
            net.dns,
            Some(DnsDecl {
                servers: vec!["10.0.0.2".into()],
                searches: vec!["internal".into()],
                options: vec![],
            })
        );
        assert_eq!(net.notes.len(), 1, "{:?}", net.notes);
        assert!(net.notes[0].contains("admin.host_network is ignored"));
        // The first task's group has no network block.
        assert_eq!(group_network(&hcl, None).unwrap(), GroupNetwork::default());
        assert!(matches!(
            group_network(&hcl, Some("nope")),
            Err(JobspecError::NoTask(_))
        ));
    }

    #[test]
    fn refuses_what_nomad_or_freebsd_would_not_run() {
        for (network, key, says) in [
            (
                "network {\n  mode = \"bridge\"\n}",
                "network.mode",
                "\"bridge\" is not supported",
            ),
            (
                "network {\n  port \"http\" {\n    to = 70000\n  }\n}",
                "network.port.http.to",
                "70000 is not a port number",
            ),
            (
                "network {\n  port \"http\" {\n    static = 0\n  }\n}",
                "network.port.http.static",
                "0 is not a port number",
            ),
            (
                "network {\n  port \"my-port\" {}\n}",
                "network.port.my-port",
                "letters, digits and underscores",
            ),
            (
                "network {\n  port \"a\" {}\n  port \"a\" {}\n}",
                "network.port.a",
                "declared twice",
            ),
            (
                "network {\n  port \"a\" {\n    value = 1\n  }\n}",
                "network.port.a.value",
                "not a setting",
            ),
            (
                "network {\n  dns {\n    servers = \"1.1.1.1\"\n  }\n}",
                "network.dns.servers",
                "a list of strings",
            ),
            ("network {\n  cni {}\n}", "network.cni", "bridge mode"),
            (
                "network {}\nnetwork {}",
                "network",
                "at most one network block",
            ),
        ] {
            let (got, reason) = refused(network);
            assert_eq!(got, key, "{network}");
            assert!(reason.contains(says), "{network}: {reason}");
        }
    }
}
