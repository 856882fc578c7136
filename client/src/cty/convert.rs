//! cty's conversion of a JSON body's values to the type an attribute declares.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::types::Ty;
use super::value::{Num, Val};

/// HCL JSON value → cty value (before conversion): arrays are tuples, objects are objects.
pub fn json_to_val(j: &Json) -> Val {
    match j {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => Val::Num(Num::from_json(n)),
        Json::String(s) => Val::Str(s.clone()),
        Json::Array(a) => Val::Seq(a.iter().map(json_to_val).collect()),
        Json::Object(o) => Val::Map(o.iter().map(|(k, v)| (k.clone(), json_to_val(v))).collect()),
    }
}

/// cty `convert.Convert` restricted to what Nomad's pipeline meets. Error = cty's message.
pub fn convert(v: &Val, ty: &Ty) -> Result<Val, String> {
    if *v == Val::Null {
        return Ok(Val::Null);
    }
    let required = || format!("{} required", ty.friendly());
    match ty {
        Ty::Any => Ok(v.clone()),
        Ty::String => match v {
            Val::Str(s) => Ok(Val::Str(s.clone())),
            Val::Num(n) => Ok(Val::Str(n.to_cty_string())),
            Val::Bool(b) => Ok(Val::Str(b.to_string())),
            _ => Err(required()),
        },
        Ty::Number => match v {
            Val::Num(n) => Ok(Val::Num(*n)),
            Val::Str(s) => Num::parse(s)
                .map(Val::Num)
                .ok_or_else(|| "a number is required".to_string()),
            _ => Err(required()),
        },
        Ty::Bool => match v {
            Val::Bool(b) => Ok(Val::Bool(*b)),
            Val::Str(s) => match s.as_str() {
                "true" | "1" => Ok(Val::Bool(true)),
                "false" | "0" => Ok(Val::Bool(false)),
                _ => Err("a bool is required".to_string()),
            },
            _ => Err(required()),
        },
        Ty::List(et) | Ty::Set(et) => match v {
            Val::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(convert(it, et)?);
                }
                if matches!(ty, Ty::Set(_)) {
                    canonical_set(&mut out);
                }
                Ok(Val::Seq(out))
            }
            _ => Err(required()),
        },
        Ty::Map(et) => match v {
            Val::Map(m) => {
                let mut out = BTreeMap::new();
                for (k, x) in m {
                    out.insert(k.clone(), convert(x, et)?);
                }
                Ok(Val::Map(out))
            }
            _ => Err(required()),
        },
        Ty::Object(attrs) => match v {
            Val::Map(m) => {
                let mut out = BTreeMap::new();
                for (k, t) in attrs {
                    match m.get(k) {
                        Some(x) => out.insert(k.clone(), convert(x, t)?),
                        None => return Err(format!("attribute {k:?} is required")),
                    };
                }
                if let Some(extra) = m.keys().find(|k| !attrs.contains_key(*k)) {
                    return Err(format!("unsupported attribute {extra:?}"));
                }
                Ok(Val::Map(out))
            }
            _ => Err("object required".into()),
        },
        Ty::Tuple(ts) => match v {
            Val::Seq(items) if items.len() == ts.len() => {
                let mut out = Vec::new();
                for (it, t) in items.iter().zip(ts) {
                    out.push(convert(it, t)?);
                }
                Ok(Val::Seq(out))
            }
            _ => Err("tuple required".into()),
        },
    }
}

fn canonical_set(items: &mut Vec<Val>) {
    if items.iter().all(|v| matches!(v, Val::Str(_))) {
        items.sort_by(|a, b| match (a, b) {
            (Val::Str(a), Val::Str(b)) => a.cmp(b),
            _ => unreachable!(),
        });
    } else if items.iter().all(|v| matches!(v, Val::Num(_))) {
        items.sort_by(|a, b| match (a, b) {
            (Val::Num(a), Val::Num(b)) => a.as_f64().total_cmp(&b.as_f64()),
            _ => unreachable!(),
        });
    } else if items.iter().all(|v| matches!(v, Val::Bool(_))) {
        items.sort_by_key(|v| matches!(v, Val::Bool(true)));
    }
    items.dedup();
}
