//! pot's jail attributes (`pot set-attribute`, pot-engine spec §4.20): their jail(8) parameters,
//! value types and secure defaults, and which of them a job may change without the operator.

use super::EngineError;
use super::potconf::PotConf;
use crate::host::JailParams;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `YES`/`NO`; YES adds the bare parameter.
    Bool,
    Uint,
    /// `new`, `inherit` or `disable`.
    Sysv,
    Text,
}

struct Attr {
    name: &'static str,
    param: &'static str,
    kind: Kind,
    /// pot's default, which is also the secure value.
    default: &'static str,
}

const fn attr(name: &'static str, param: &'static str, kind: Kind, default: &'static str) -> Attr {
    Attr {
        name,
        param,
        kind,
        default,
    }
}

/// pot's table, in the order `_js_start` passes the parameters.
const ATTRS: &[Attr] = &[
    attr("enforce_statfs", "enforce_statfs", Kind::Uint, "2"),
    attr("mount", "allow.mount", Kind::Bool, "NO"),
    attr("fdescfs", "mount.fdescfs", Kind::Bool, "NO"),
    attr("linprocfs", "allow.mount.linprocfs", Kind::Bool, "NO"),
    attr("nullfs", "allow.mount.nullfs", Kind::Bool, "NO"),
    attr("procfs", "mount.procfs", Kind::Bool, "NO"),
    attr("tmpfs", "allow.mount.tmpfs", Kind::Bool, "NO"),
    attr("zfs", "allow.mount.zfs", Kind::Bool, "NO"),
    attr("raw_sockets", "allow.raw_sockets", Kind::Bool, "NO"),
    attr("sysvshm", "sysvshm", Kind::Sysv, "new"),
    attr("sysvsem", "sysvsem", Kind::Sysv, "new"),
    attr("sysvmsg", "sysvmsg", Kind::Sysv, "new"),
    attr("children", "children.max", Kind::Uint, "0"),
    attr("mlock", "allow.mlock", Kind::Bool, "NO"),
    attr("devfs_ruleset", "devfs_ruleset", Kind::Uint, "4"),
    attr("exec_stop", "exec.stop", Kind::Text, ""),
    attr("stop_timeout", "stop.timeout", Kind::Uint, "10"),
];

/// Attributes a job may set to any value: they act only inside the jail.
pub const SAFE: &[&str] = &["exec_stop", "stop_timeout"];

/// pot's own (non-jail) attributes: they steer the `pot` CLI, not the jail.
const POT_ONLY: &[&str] = &[
    "start-at-boot",
    "early-start-at-boot",
    "persistent",
    "no-rc-script",
    "prunable",
    "localhost-tunnel",
    "no-tmpfs",
    "no-etc-hosts",
    "to-be-pruned",
];

/// Whether `name` is a jail attribute pot knows.
pub fn is_known(name: &str) -> bool {
    ATTRS.iter().any(|a| a.name == name)
}

/// Every jail attribute's name, for error messages.
pub fn names() -> Vec<&'static str> {
    ATTRS.iter().map(|a| a.name).collect()
}

/// The jail attributes of one pot: pot's defaults with the job's values applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailAttributes {
    values: BTreeMap<&'static str, String>,
}

impl Default for JailAttributes {
    fn default() -> Self {
        JailAttributes {
            values: ATTRS
                .iter()
                .map(|a| (a.name, a.default.to_string()))
                .collect(),
        }
    }
}

impl JailAttributes {
    /// pot's defaults with the image's values for the [`SAFE`] attributes (an image may bring
    /// its own `exec_stop`, as pot honours it); the image's other attributes are ignored, since
    /// whoever picks the image is not the operator. Values pot would not accept are skipped.
    pub fn from_image(conf: &PotConf) -> JailAttributes {
        let mut attrs = JailAttributes::default();
        for a in ATTRS.iter().filter(|a| SAFE.contains(&a.name)) {
            let key = format!("pot.attr.{}", a.name);
            let raw = if a.kind == Kind::Text {
                conf.get_raw(&key).map(|v| v.trim().to_string())
            } else {
                conf.get(&key)
            };
            if let Some(v) = raw.and_then(|v| normalise(a.kind, &v).ok()) {
                attrs.values.insert(a.name, v);
            }
        }
        attrs
    }

    /// Applies the job's `(attribute, value)` pairs over `base`. Each value is checked and
    /// normalised as `pot set-attribute` does; changing an attribute away from pot's default
    /// needs it to be in [`SAFE`] or in the operator's `allowed`.
    pub fn from_job(
        base: JailAttributes,
        pairs: &[(String, String)],
        allowed: &[String],
    ) -> Result<Self, EngineError> {
        let mut attrs = base;
        for (name, value) in pairs {
            let bad =
                |why: String| EngineError::InvalidInput(format!("attributes: {name:?}: {why}"));
            let Some(def) = ATTRS.iter().find(|a| a.name == name) else {
                if POT_ONLY.contains(&name.as_str()) {
                    return Err(bad(
                        "is a pot attribute for the pot CLI; the driver sets pot's attributes for Nomad tasks itself".into(),
                    ));
                }
                return Err(bad(format!(
                    "unknown attribute (jail attributes: {})",
                    names().join(", ")
                )));
            };
            let value = normalise(def.kind, value).map_err(bad)?;
            let permitted = value == def.default
                || SAFE.contains(&def.name)
                || allowed.iter().any(|a| a == def.name);
            if !permitted {
                return Err(bad(format!(
                    "changing it from pot's secure default {:?} to {value:?} needs the operator: add \"{}\" to allowed_attributes in the plugin config",
                    def.default, def.name
                )));
            }
            attrs.values.insert(def.name, value);
        }
        Ok(attrs)
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// The attribute parameters of `jail -c`, after pot's fixed ones, as `_js_start` adds them.
    pub fn add_params(&self, p: &mut JailParams) {
        for a in ATTRS {
            let v = self.get(a.name);
            match a.kind {
                Kind::Bool if v == "YES" => {
                    // `_js_start` always passes allow.raw_sockets already.
                    if a.param != "allow.raw_sockets" {
                        p.flag(a.param);
                    }
                }
                Kind::Bool => {}
                Kind::Text if v.is_empty() => {}
                _ => {
                    p.set(a.param, v);
                }
            }
        }
    }

    /// `pot.attr.<name>=<value>` for every jail attribute, so pot.conf shows what the jail got.
    pub fn write_conf(&self, conf: &mut PotConf) {
        for a in ATTRS {
            conf.set(&format!("pot.attr.{}", a.name), self.get(a.name));
        }
    }
}

/// A pot's attributes as `pot info` shows them: pot's own ones (missing: `NO`) and the jail
/// attributes (missing: pot's default), read from its pot.conf.
pub fn of_pot(conf: &PotConf) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let read = |name: &str| conf.get(&format!("pot.attr.{name}"));
    let pot = POT_ONLY
        .iter()
        .map(|n| (n.to_string(), read(n).unwrap_or_else(|| "NO".to_string())))
        .collect();
    let jail = ATTRS
        .iter()
        .map(|a| {
            let value = match a.kind {
                Kind::Text => conf
                    .get_raw(&format!("pot.attr.{}", a.name))
                    .map(|v| v.trim().to_string()),
                _ => read(a.name),
            };
            (
                a.name.to_string(),
                value.unwrap_or_else(|| a.default.to_string()),
            )
        })
        .collect();
    (pot, jail)
}

/// `pot set-attribute`'s value rules: booleans as YES/NO, digits only for numbers.
fn normalise(kind: Kind, value: &str) -> Result<String, String> {
    match kind {
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Ok("YES".into()),
            "no" | "false" | "off" => Ok("NO".into()),
            _ => Err(format!(
                "{value:?} is not a boolean (YES/NO, true/false, on/off)"
            )),
        },
        Kind::Uint => {
            if !value.is_empty() && value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit()) {
                Ok(value.trim_start_matches('0').to_string())
                    .map(|v| if v.is_empty() { "0".to_string() } else { v })
            } else {
                Err(format!("{value:?} is not a number"))
            }
        }
        Kind::Sysv => match value {
            "new" | "inherit" | "disable" => Ok(value.to_string()),
            _ => Err(format!("{value:?} is not one of new, inherit, disable")),
        },
        // jail(8) takes the value as one argv element; only a NUL could not pass.
        Kind::Text if value.contains('\0') || value.contains('\n') => {
            Err("must be one line without NUL".into())
        }
        Kind::Text => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn params(a: &JailAttributes) -> Vec<String> {
        let mut p = JailParams::default();
        a.add_params(&mut p);
        p.to_strings()
    }

    #[test]
    fn defaults_are_pots_secure_parameters() {
        assert_eq!(
            params(&JailAttributes::default()),
            [
                "enforce_statfs=2",
                "sysvshm=new",
                "sysvsem=new",
                "sysvmsg=new",
                "children.max=0",
                "devfs_ruleset=4",
                "stop.timeout=10"
            ]
        );
    }

    #[test]
    fn privileges_need_the_operator() {
        for (attr, value) in [
            ("enforce_statfs", "1"),
            ("nullfs", "yes"),
            ("children", "5"),
            ("devfs_ruleset", "0"),
            ("raw_sockets", "on"),
            ("sysvshm", "inherit"),
        ] {
            let e =
                JailAttributes::from_job(JailAttributes::default(), &pairs(&[(attr, value)]), &[])
                    .unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("add \"{attr}\" to allowed_attributes")),
                "{e}"
            );
        }
        let a = JailAttributes::from_job(
            JailAttributes::default(),
            &pairs(&[
                ("enforce_statfs", "1"),
                ("nullfs", "true"),
                ("devfs_ruleset", "3"),
            ]),
            &[
                "enforce_statfs".into(),
                "nullfs".into(),
                "devfs_ruleset".into(),
            ],
        )
        .unwrap();
        let p = params(&a);
        assert!(p.contains(&"enforce_statfs=1".to_string()), "{p:?}");
        assert!(p.contains(&"allow.mount.nullfs".to_string()), "{p:?}");
        assert!(p.contains(&"devfs_ruleset=3".to_string()), "{p:?}");
    }

    #[test]
    fn safe_values_and_defaults_need_nothing() {
        let a = JailAttributes::from_job(
            JailAttributes::default(),
            &pairs(&[
                ("exec_stop", "/bin/sh -c 'echo bye; kill -TERM 1'"),
                ("stop_timeout", "030"),
                ("enforce_statfs", "2"),
                ("mount", "off"),
            ]),
            &[],
        )
        .unwrap();
        let p = params(&a);
        assert!(p.contains(&"exec.stop=/bin/sh -c 'echo bye; kill -TERM 1'".to_string()));
        assert!(p.contains(&"stop.timeout=30".to_string()));
        let mut conf = PotConf::default();
        a.write_conf(&mut conf);
        assert_eq!(conf.get_raw("pot.attr.mount"), Some("NO"));
        assert_eq!(conf.get_raw("pot.attr.stop_timeout"), Some("30"));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        for (attr, value, why) in [
            ("bogus", "1", "unknown attribute"),
            ("persistent", "YES", "pot attribute"),
            ("mount", "maybe", "not a boolean"),
            ("children", "-1", "not a number"),
            ("sysvsem", "shared", "not one of"),
            ("exec_stop", "a\nb", "one line"),
        ] {
            let e = JailAttributes::from_job(
                JailAttributes::default(),
                &pairs(&[(attr, value)]),
                &[attr.to_string()],
            )
            .unwrap_err();
            assert!(e.to_string().contains(why), "{attr}: {e}");
        }
    }
}
