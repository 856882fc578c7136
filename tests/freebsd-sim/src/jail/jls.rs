//! `jls`: the jails (with `-d` the dying ones too) in jls(8)'s default table, or the parameters
//! asked for, named (`-n`) and quoted (`-q`) as jls prints them.

use super::not_found;
use crate::state::{Host, Jail};
use crate::{Fail, Res, getopt};

const JLS_USAGE: &str = "usage: jls [-dhNnqv] [-j jail] [param ...]";

fn param_value(j: &Jail, key: &str) -> Option<String> {
    match key {
        "jid" => Some(j.jid.to_string()),
        "name" => Some(j.name.clone()),
        "path" => Some(j.path.clone()),
        "dying" => Some(j.dying.to_string()),
        "host.hostname" => Some(j.param(key).unwrap_or("").to_string()),
        "ip4.addr" | "ip6.addr" => j.param(key).map(|v| {
            v.split(',')
                .map(|a| {
                    a.rsplit('|')
                        .next()
                        .unwrap_or(a)
                        .split('/')
                        .next()
                        .unwrap_or(a)
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        }),
        _ => j
            .params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone().unwrap_or_else(|| "true".into())),
    }
}

fn quote(v: &str, q: bool) -> String {
    if q && (v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')) {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

pub fn jls_main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, params) = getopt("jls", args, "adhj:Nnqsv", JLS_USAGE)?;
    let st = host.load()?;
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let with_dying = has('d') || has('a');
    let jails: Vec<&Jail> = match opts.iter().find(|(c, _)| *c == 'j') {
        Some((_, key)) => match (st.jail(key), st.dying_jail(key)) {
            (Some(j), _) => vec![j],
            (None, Some(j)) if with_dying => vec![j],
            // kern_jail_get's message for a dying jail asked for without JAIL_DYING.
            (None, Some(j)) if j.name == *key => {
                return Err(Fail::new(1, format!("jls: jail \"{key}\" is dying")));
            }
            (None, Some(_)) => return Err(Fail::new(1, format!("jls: jail {key} is dying"))),
            (None, None) => return Err(not_found("jls", key)),
        },
        None => {
            let mut all: Vec<&Jail> = st.jails.iter().collect();
            if with_dying {
                all.extend(st.dying.iter().map(|d| &d.jail));
                all.sort_by_key(|j| j.jid);
            }
            all
        }
    };
    Ok(jls_output(
        &jails,
        &params,
        has('h'),
        has('n'),
        has('q'),
        has('N'),
    ))
}

fn jls_output(
    jails: &[&Jail],
    params: &[String],
    header: bool,
    named: bool,
    q: bool,
    by_name: bool,
) -> String {
    let mut out = String::new();
    if params.is_empty() {
        out.push_str(if by_name {
            " JID             IP Address      Hostname                      Path\n"
        } else {
            "   JID  IP Address      Hostname                      Path\n"
        });
        for j in jails {
            let ip = param_value(j, "ip4.addr")
                .map(|v| v.split(',').next().unwrap_or("").to_string())
                .unwrap_or_default();
            let id = if by_name {
                format!(" {:<15}", j.name)
            } else {
                format!("{:>6}", j.jid)
            };
            let host = param_value(j, "host.hostname").unwrap_or_default();
            out.push_str(&format!("{id}  {ip:<15.15} {host:<29.29} {}\n", j.path));
        }
        return out;
    }
    if header {
        out.push_str(&params.join(" "));
        out.push('\n');
    }
    for j in jails {
        let cells: Vec<String> = params
            .iter()
            .map(|p| {
                let v = param_value(j, p).unwrap_or_default();
                if named {
                    format!("{p}={}", quote(&v, q))
                } else {
                    quote(&v, q)
                }
            })
            .collect();
        out.push_str(&cells.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(jid: u32, name: &str) -> Jail {
        Jail {
            jid,
            name: name.into(),
            path: format!("/p/{name}"),
            params: vec![
                ("host.hostname".into(), Some(format!("{name}.sim"))),
                ("ip4.addr".into(), Some("em0|10.0.0.5/24,10.0.0.6".into())),
                ("persist".into(), None),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn jls_formats() {
        let a = jail(1, "web");
        let out = jls_output(&[&a], &[], false, false, false, false);
        assert_eq!(
            out,
            format!(
                "   JID  IP Address      Hostname                      Path\n     1  10.0.0.5        {:<29} /p/web\n",
                "web.sim"
            )
        );
        assert_eq!(
            jls_output(&[&a], &["jid".into()], false, false, false, false),
            "1\n"
        );
        assert_eq!(
            jls_output(
                &[&a],
                &["name".into(), "ip4.addr".into()],
                true,
                true,
                false,
                false
            ),
            "name ip4.addr\nname=web ip4.addr=10.0.0.5,10.0.0.6\n"
        );
        assert_eq!(
            jls_output(&[&a], &["exec.stop".into()], false, true, true, false),
            "exec.stop=\"\"\n"
        );
    }
}
