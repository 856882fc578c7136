//! `hcldec.Decode` of a JSON body against a spec, with Nomad's diagnostics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use nomad_plugin_proto::hclspec::{Spec, spec::Block};
use serde_json::Value as Json;

use super::convert::{convert, json_to_val};
use super::literal::parse_literal;
use super::spec::spec_ref;
use super::types::Ty;
use super::value::Val;

/// Nomad-style diagnostics (`Summary: Detail`).
#[derive(Debug, Clone)]
pub struct CtyError {
    pub diags: Vec<String>,
}

impl fmt::Display for CtyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diags.join("\n"))
    }
}

impl std::error::Error for CtyError {}

impl CtyError {
    pub fn contains(&self, needle: &str) -> bool {
        self.diags.iter().any(|d| d.contains(needle))
    }
}

fn block_name(b: &Block) -> &'static str {
    match b {
        Block::Object(_) => "object",
        Block::Array(_) => "array",
        Block::Attr(_) => "attr",
        Block::BlockValue(_) => "block",
        Block::BlockAttrs(_) => "block_attrs",
        Block::BlockList(_) => "block_list",
        Block::BlockSet(_) => "block_set",
        Block::BlockMap(_) => "block_map",
        Block::Default(_) => "default",
        Block::Literal(_) => "literal",
    }
}

/// Every argument name the body accepts (for the "Invalid label" check).
fn collect_names(spec: &Spec, implied: Option<&str>, out: &mut BTreeSet<String>) {
    match &spec.block {
        Some(Block::Object(o)) => {
            for (k, child) in &o.attributes {
                collect_names(child, Some(k), out);
            }
        }
        Some(Block::Array(a)) => {
            for child in &a.values {
                collect_names(child, None, out);
            }
        }
        Some(Block::Attr(a)) => {
            let n = if a.name.is_empty() {
                implied.unwrap_or("")
            } else {
                &a.name
            };
            if !n.is_empty() {
                out.insert(n.to_string());
            }
        }
        Some(Block::Default(d)) => {
            if let Some(p) = &d.primary {
                collect_names(spec_ref(p), None, out);
            }
            if let Some(p) = &d.default {
                collect_names(spec_ref(p), None, out);
            }
        }
        _ => {}
    }
}

struct Decoder<'a> {
    body: &'a serde_json::Map<String, Json>,
    diags: Vec<String>,
}

impl Decoder<'_> {
    fn decode(&mut self, spec: &Spec, implied: Option<&str>) -> Val {
        let Some(block) = &spec.block else {
            self.diags.push("Invalid spec block: empty spec".into());
            return Val::Null;
        };
        match block {
            Block::Object(o) => {
                let mut out = BTreeMap::new();
                for (k, child) in &o.attributes {
                    let v = self.decode(child, Some(k));
                    out.insert(k.clone(), v);
                }
                Val::Map(out)
            }
            Block::Array(a) => Val::Seq(a.values.iter().map(|c| self.decode(c, None)).collect()),
            Block::Attr(a) => {
                let name = if a.name.is_empty() {
                    implied.unwrap_or("")
                } else {
                    a.name.as_str()
                };
                if name.is_empty() {
                    self.diags
                        .push("Invalid spec: attr spec has no name".into());
                    return Val::Null;
                }
                let ty = match Ty::parse(&a.r#type) {
                    Ok(t) => t,
                    Err(e) => {
                        self.diags
                            .push(format!("Invalid spec: attribute {name:?}: {e}"));
                        return Val::Null;
                    }
                };
                match self.body.get(name) {
                    None => {
                        if a.required {
                            self.diags.push(format!(
                                "Missing required argument: The argument \"{name}\" is required, but no definition was found."
                            ));
                        }
                        Val::Null
                    }
                    Some(j) => match convert(&json_to_val(j), &ty) {
                        Ok(v) => v,
                        Err(e) => {
                            self.diags.push(format!(
                                "Incorrect attribute value type: Inappropriate value for attribute \"{name}\": {e}."
                            ));
                            Val::Null
                        }
                    },
                }
            }
            Block::Default(d) => {
                let primary = match &d.primary {
                    Some(p) => self.decode(spec_ref(p), None),
                    None => {
                        self.diags
                            .push("Missing spec block: default has no primary".into());
                        Val::Null
                    }
                };
                if primary != Val::Null {
                    return primary;
                }
                match &d.default {
                    Some(p) => self.decode(spec_ref(p), None),
                    None => {
                        self.diags
                            .push("Missing spec block: default has no default".into());
                        Val::Null
                    }
                }
            }
            Block::Literal(l) => match parse_literal(&l.value) {
                Ok(v) => v,
                Err(e) => {
                    self.diags
                        .push(format!("Invalid literal {:?}: {e}", l.value));
                    Val::Null
                }
            },
            other => {
                self.diags.push(format!(
                    "cty encoder: unsupported spec block {:?}",
                    block_name(other)
                ));
                Val::Null
            }
        }
    }
}

/// Decodes `config` (the job's `config {}` as a JSON object) against `spec` like Nomad's
/// `hclutils.ParseHclInterface`: all diagnostics, or the cty value.
pub fn decode(spec: &Spec, config: &Json) -> Result<Val, CtyError> {
    let empty = serde_json::Map::new();
    let body = match config {
        Json::Object(m) => m,
        Json::Null => &empty,
        other => {
            return Err(CtyError {
                diags: vec![format!("config must be an object, got {other}")],
            });
        }
    };
    match &spec.block {
        Some(Block::Object(_)) => {}
        Some(b) => {
            return Err(CtyError {
                diags: vec![format!(
                    "cty encoder: root spec must be an object, got {}",
                    block_name(b)
                )],
            });
        }
        None => {
            return Err(CtyError {
                diags: vec!["Invalid spec block: empty root spec".into()],
            });
        }
    }
    let mut names = BTreeSet::new();
    collect_names(spec, None, &mut names);
    let mut dec = Decoder {
        body,
        diags: Vec::new(),
    };
    for k in body.keys() {
        if !names.contains(k) {
            dec.diags.push(format!(
                "Invalid label: No argument or block type is named \"{k}\"."
            ));
        }
    }
    let v = dec.decode(spec, None);
    if dec.diags.is_empty() {
        Ok(v)
    } else {
        Err(CtyError { diags: dec.diags })
    }
}
