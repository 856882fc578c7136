//! Decoding go-cty msgpack (what Nomad sends for agent and task configs) against a schema table.
//!
//! Nomad encodes an object with every attribute of the schema, `nil` for the absent ones. We
//! check each key and type ourselves so that a bad config names the offending key.

use super::schema::{AttrDef, Ty};
use std::collections::BTreeMap;

/// A config that does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{block}: {reason}")]
pub struct CtyError {
    pub block: &'static str,
    pub reason: String,
}

/// A decoded, schema-checked config object.
#[derive(Debug, Clone, Default)]
pub struct CtyObject {
    values: BTreeMap<&'static str, rmpv::Value>,
}

/// How deep a config may nest. The schemas go three deep (an object of lists of maps); the
/// decoder recurses once per level, so a deeper limit would only let a crafted config spend
/// the handler's stack.
const MAX_DEPTH: usize = 8;

/// Decodes `bytes` as an object of `attrs`; `block` names the config in errors.
pub fn decode(block: &'static str, bytes: &[u8], attrs: &[AttrDef]) -> Result<CtyObject, CtyError> {
    let err = |reason: String| CtyError { block, reason };
    // rmpv counts two steps per container (the value, its body) and three for a string.
    let rmpv_depth = 2 * MAX_DEPTH + 3;
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], rmpv_depth).map_err(
        |e| match e {
            rmpv::decode::Error::DepthLimitExceeded => err(format!(
                "not a config: values nest deeper than {MAX_DEPTH} levels"
            )),
            e => err(format!("not valid msgpack: {e}")),
        },
    )?;
    let rmpv::Value::Map(entries) = value else {
        return Err(err(format!("expected an object, got {}", kind(&value))));
    };
    let mut values = BTreeMap::new();
    for (key, value) in entries {
        let key = key.as_str().ok_or_else(|| {
            err(format!(
                "attribute names must be strings, got {}",
                kind(&key)
            ))
        })?;
        let def = attrs
            .iter()
            .find(|a| a.name == key)
            .ok_or_else(|| err(format!("unknown attribute {key:?}")))?;
        if value.is_nil() {
            continue;
        }
        if !matches_type(&value, def.ty) {
            return Err(err(format!(
                "attribute {key:?} must be {}, got {}",
                def.ty.expr(),
                kind(&value)
            )));
        }
        values.insert(def.name, value);
    }
    if let Some(missing) = attrs
        .iter()
        .find(|a| a.required && !values.contains_key(a.name))
    {
        return Err(err(format!(
            "missing required attribute {:?}",
            missing.name
        )));
    }
    Ok(CtyObject { values })
}

fn matches_type(v: &rmpv::Value, ty: Ty) -> bool {
    use rmpv::Value;
    let is_str = |v: &Value| matches!(v, Value::String(s) if s.is_str());
    match ty {
        Ty::String => is_str(v),
        Ty::Bool => v.is_bool(),
        Ty::ListString => matches!(v, Value::Array(a) if a.iter().all(is_str)),
        Ty::ListMapString => matches!(v, Value::Array(a) if a.iter().all(|m| {
            matches!(m, Value::Map(kv) if kv.iter().all(|(k, v)| is_str(k) && is_str(v)))
        })),
    }
}

fn kind(v: &rmpv::Value) -> &'static str {
    use rmpv::Value;
    match v {
        Value::Nil => "null",
        Value::Boolean(_) => "bool",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "number",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "list",
        Value::Map(_) => "object",
        Value::Ext(..) => "extension",
    }
}

impl CtyObject {
    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name)?.as_str().map(str::to_string)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.values.get(name)?.as_bool()
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A `list(map(string))` merged into one map, later entries winning, as the Go driver does.
    pub fn merged_map(&self, name: &str) -> BTreeMap<String, String> {
        let mut merged = BTreeMap::new();
        for m in self
            .values
            .get(name)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            for (k, v) in m.as_map().into_iter().flatten() {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    merged.insert(k.to_string(), v.to_string());
                }
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::TASK;
    use super::*;

    /// nomad-protocol.md §4.6 example B, as go-cty encodes it.
    fn example_b() -> Vec<u8> {
        let hex = "8ca461726773 92a22d67ab6461656d6f6e206f66663b aa61747472696275746573c0 a7636f6d6d616e64a56e67696e78 a4636f7079c0 ab65787472615f686f737473c0 a5696d616765aa68747470733a2f2f722f a56d6f756e74c0 af6d6f756e745f726561645f6f6e6c79c0 ac6e6574776f726b5f6d6f6465c0 a8706f72745f6d61709181a468747470a23830 a3706f74a56e67696e78 a3746167a3312e30";
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_nomads_bytes_for_the_go_driver_schema() {
        let o = decode("task config", &example_b(), TASK).unwrap();
        assert_eq!(o.string("image").unwrap(), "https://r/");
        assert_eq!(o.string("command").unwrap(), "nginx");
        assert_eq!(o.strings("args"), ["-g", "daemon off;"]);
        assert_eq!(o.merged_map("port_map")["http"], "80");
        assert_eq!(o.string("network_mode"), None);
        assert!(o.strings("mount").is_empty());
    }

    fn encode(pairs: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
        let map = rmpv::Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect());
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    }

    #[test]
    fn errors_name_the_key() {
        let base = || {
            vec![
                ("image", "http://h/".into()),
                ("pot", "p".into()),
                ("tag", "1".into()),
            ]
        };
        let mut unknown = base();
        unknown.push(("foo", "x".into()));
        let e = decode("task config", &encode(unknown), TASK).unwrap_err();
        assert_eq!(e.to_string(), "task config: unknown attribute \"foo\"");
        let mut wrong = base();
        wrong.push(("args", "x".into()));
        let e = decode("task config", &encode(wrong), TASK).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task config: attribute \"args\" must be list(string), got string"
        );
        let e = decode("task config", &encode(base()[1..].to_vec()), TASK).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task config: missing required attribute \"image\""
        );
        let e = decode("task config", &[0x81], TASK).unwrap_err();
        assert!(e.reason.starts_with("not valid msgpack"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_before_it_costs_the_stack() {
        // {"args": [[[…nil…]]]}, 500 lists deep: enough to overflow a debug build's stack.
        let mut bytes = vec![0x81, 0xa4];
        bytes.extend(b"args");
        bytes.extend(std::iter::repeat_n(0x91, 500));
        bytes.push(0xc0);
        let e = decode("task config", &bytes, TASK).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("task config: not a config: values nest deeper than {MAX_DEPTH} levels")
        );
        // What Nomad sends for the deepest schema type still decodes.
        let ok = encode(vec![
            ("image", "http://h/".into()),
            ("pot", "p".into()),
            ("tag", "1".into()),
            (
                "port_map",
                rmpv::Value::Array(vec![rmpv::Value::Map(vec![("http".into(), "80".into())])]),
            ),
        ]);
        assert_eq!(
            decode("task config", &ok, TASK)
                .unwrap()
                .merged_map("port_map")["http"],
            "80"
        );
        // Exactly MAX_DEPTH containers around a string pass the decoder (and fail the schema).
        let nested = |levels: usize| {
            let mut bytes = vec![0x81, 0xa4];
            bytes.extend(b"args");
            bytes.extend(std::iter::repeat_n(0x91, levels - 1));
            bytes.extend([0xa1, b'x']);
            decode("task config", &bytes, TASK).unwrap_err().reason
        };
        assert!(
            nested(MAX_DEPTH).contains("must be list(string)"),
            "{}",
            nested(MAX_DEPTH)
        );
        assert!(nested(MAX_DEPTH + 1).contains("nest deeper"));
    }
}
