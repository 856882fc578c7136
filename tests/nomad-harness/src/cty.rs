//! A cty-msgpack encoder driven by the plugin's `hclspec::Spec`, mimicking Nomad's pipeline:
//! job `config {}` (as JSON) → HCL JSON body → `hcldec.Decode` against the converted spec →
//! `go-cty/cty/msgpack.Marshal(val, val.Type())` (protocol spec §4.2–§4.6).
//!
//! Supported spec blocks: `Object` (root and nested), `Attr`, `Default`, `Literal`, `Array`.
//! Block-style specs (`BlockValue`, `BlockList`, …) are reported as unsupported: the pot schemas
//! do not use them.

#![allow(dead_code)]

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use nomad_plugin_proto::hclspec::{self, Spec, spec::Block};
use serde_json::Value as Json;

/// A decoded cty value (enough of cty for msgpack encoding).
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
    /// list, set or tuple
    Seq(Vec<Val>),
    /// map or object; keys sorted bytewise like cty
    Map(BTreeMap<String, Val>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Num {
    fn from_f64(f: f64) -> Num {
        if f.is_finite() && f.fract() == 0.0 {
            if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                return Num::Int(f as i64);
            }
            if f >= 0.0 && f < 2f64.powi(64) {
                return Num::UInt(f as u64);
            }
        }
        Num::Float(f)
    }

    fn from_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i)
        } else if let Some(u) = n.as_u64() {
            Num::UInt(u)
        } else {
            Num::from_f64(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn parse(s: &str) -> Option<Num> {
        if s.is_empty() || s.trim() != s {
            return None;
        }
        if let Ok(i) = s.parse::<i64>() {
            return Some(Num::Int(i));
        }
        if let Ok(u) = s.parse::<u64>() {
            return Some(Num::UInt(u));
        }
        // Reject things Rust accepts but cty does not (inf, nan, hex …).
        if !s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            return None;
        }
        s.parse::<f64>().ok().map(Num::from_f64)
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Float(f) => f,
        }
    }

    fn to_cty_string(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::UInt(u) => u.to_string(),
            Num::Float(f) => format!("{f}"),
        }
    }
}

/// An HCL type expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    String,
    Number,
    Bool,
    Any,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>),
    Object(BTreeMap<String, Ty>),
    Tuple(Vec<Ty>),
}

impl Ty {
    /// cty's `FriendlyName`.
    pub fn friendly(&self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Number => "number".into(),
            Ty::Bool => "bool".into(),
            Ty::Any => "any type".into(),
            Ty::List(t) => format!("list of {}", t.friendly()),
            Ty::Set(t) => format!("set of {}", t.friendly()),
            Ty::Map(t) => format!("map of {}", t.friendly()),
            Ty::Object(_) => "object".into(),
            Ty::Tuple(_) => "tuple".into(),
        }
    }

    /// Parses `string`, `list(map(string))`, `object({a = string})`, `tuple([string, number])` …
    pub fn parse(s: &str) -> Result<Ty, String> {
        let mut p = TyParser {
            s: s.as_bytes(),
            i: 0,
        };
        let t = p.ty()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("invalid type expression {s:?}"));
        }
        Ok(t)
    }
}

struct TyParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl TyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && ((self.s[self.i] as char).is_ascii_alphanumeric()
                || self.s[self.i] == b'_'
                || self.s[self.i] == b'-')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at {} in type expression",
                c as char, self.i
            ))
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn ty(&mut self) -> Result<Ty, String> {
        let name = self.ident();
        match name.as_str() {
            "string" => Ok(Ty::String),
            "number" => Ok(Ty::Number),
            "bool" => Ok(Ty::Bool),
            "any" => Ok(Ty::Any),
            "list" | "set" | "map" => {
                self.expect(b'(')?;
                let inner = Box::new(self.ty()?);
                self.expect(b')')?;
                Ok(match name.as_str() {
                    "list" => Ty::List(inner),
                    "set" => Ty::Set(inner),
                    _ => Ty::Map(inner),
                })
            }
            "object" => {
                self.expect(b'(')?;
                self.expect(b'{')?;
                let mut attrs = BTreeMap::new();
                while self.peek() != Some(b'}') {
                    let k = self.ident();
                    if k.is_empty() {
                        return Err("bad object attribute name".into());
                    }
                    self.expect(b'=')?;
                    let t = self.ty()?;
                    attrs.insert(k, t);
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    }
                }
                self.expect(b'}')?;
                self.expect(b')')?;
                Ok(Ty::Object(attrs))
            }
            "tuple" => {
                self.expect(b'(')?;
                self.expect(b'[')?;
                let mut elems = Vec::new();
                while self.peek() != Some(b']') {
                    elems.push(self.ty()?);
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    }
                }
                self.expect(b']')?;
                self.expect(b')')?;
                Ok(Ty::Tuple(elems))
            }
            other => Err(format!("unknown type keyword {other:?}")),
        }
    }
}

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

fn is_scalar(v: &Val) -> bool {
    !matches!(v, Val::Seq(_) | Val::Map(_))
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
    let _ = is_scalar;
}

/// Parses an HCL literal expression (`Literal.value`): `true`, `5`, `"x"`, `[]`, `{}` …
pub fn parse_literal(s: &str) -> Result<Val, String> {
    let mut p = LitParser {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters in literal {s:?}"));
    }
    Ok(v)
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn value(&mut self) -> Result<Val, String> {
        match self.peek() {
            None => Err("empty literal".into()),
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b']') {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err("expected , or ] in literal".into()),
                    }
                }
                self.i += 1;
                Ok(Val::Seq(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                while self.peek() != Some(b'}') {
                    let k = if self.peek() == Some(b'"') {
                        self.string()?
                    } else {
                        self.ident()
                    };
                    if k.is_empty() {
                        return Err("bad key in object literal".into());
                    }
                    match self.peek() {
                        Some(b'=') | Some(b':') => self.i += 1,
                        _ => return Err("expected = or : in object literal".into()),
                    }
                    let v = self.value()?;
                    m.insert(k, v);
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Ok(Val::Map(m))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit()
                        || matches!(self.s[self.i], b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Num::parse(t)
                    .map(Val::Num)
                    .ok_or_else(|| format!("bad number {t:?}"))
            }
            Some(_) => match self.ident().as_str() {
                "true" => Ok(Val::Bool(true)),
                "false" => Ok(Val::Bool(false)),
                "null" => Ok(Val::Null),
                other => Err(format!("unsupported literal expression {other:?}")),
            },
        }
    }
    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || matches!(self.s[self.i], b'_' | b'-'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string literal".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("bad escape".into());
                    };
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'"' => b'"',
                        b'\\' => b'\\',
                        other => return Err(format!("unsupported escape \\{}", other as char)),
                    });
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

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

fn spec_ref<B: Borrow<Spec>>(b: &B) -> &Spec {
    b.borrow()
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
                    "test encoder: unsupported spec block {:?}",
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
                    "test encoder: root spec must be an object, got {}",
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

/// decode + go-cty msgpack encoding: what Nomad puts in `msgpack_driver_config` /
/// `SetConfigRequest.msgpack_config`.
pub fn encode(spec: &Spec, config: &Json) -> Result<Vec<u8>, CtyError> {
    let v = decode(spec, config)?;
    let mut out = Vec::new();
    write_val(&mut out, &v);
    Ok(out)
}

/// Encodes a JSON value straight to msgpack with go-cty's conventions (sorted keys, compact
/// ints, float64, str) without any schema validation — for sending bad configs to the plugin.
pub fn encode_raw(config: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    write_val(&mut out, &json_to_val(config));
    out
}

/// Encodes an already decoded value.
pub fn encode_val(v: &Val) -> Vec<u8> {
    let mut out = Vec::new();
    write_val(&mut out, v);
    out
}

fn write_uint(out: &mut Vec<u8>, u: u64) {
    if u <= 0x7f {
        out.push(u as u8);
    } else if u <= 0xff {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        write_uint(out, i as u64);
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 65536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_len(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n < 65536 {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_val(out: &mut Vec<u8>, v: &Val) {
    match v {
        Val::Null => out.push(0xc0),
        Val::Bool(false) => out.push(0xc2),
        Val::Bool(true) => out.push(0xc3),
        Val::Num(Num::Int(i)) => write_int(out, *i),
        Val::Num(Num::UInt(u)) => write_uint(out, *u),
        Val::Num(Num::Float(f)) => {
            if f.is_finite() && f.fract() == 0.0 {
                // integral but outside u64/i64: go-cty ≥ 1.14.4 writes a decimal string
                write_str(out, &format!("{f}"));
            } else {
                out.push(0xcb);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
        }
        Val::Str(s) => write_str(out, s),
        Val::Seq(items) => {
            write_len(out, items.len(), 0x90, 0xdc, 0xdd);
            for it in items {
                write_val(out, it);
            }
        }
        Val::Map(m) => {
            write_len(out, m.len(), 0x80, 0xde, 0xdf);
            for (k, x) in m {
                write_str(out, k);
                write_val(out, x);
            }
        }
    }
}

// ---- hand-built specs (tests, and for scenarios that need a spec without a plugin) ----

pub fn spec_attr(name: &str, ty: &str, required: bool) -> Spec {
    Spec {
        block: Some(Block::Attr(hclspec::Attr {
            name: name.into(),
            r#type: ty.into(),
            required,
        })),
    }
}

pub fn spec_literal(value: &str) -> Spec {
    Spec {
        block: Some(Block::Literal(hclspec::Literal {
            value: value.into(),
        })),
    }
}

pub fn spec_default(primary: Spec, default: Spec) -> Spec {
    Spec {
        block: Some(Block::Default(
            hclspec::Default {
                primary: Some(primary.into()),
                default: Some(default.into()),
            }
            .into(),
        )),
    }
}

pub fn spec_object<'a>(attrs: impl IntoIterator<Item = (&'a str, Spec)>) -> Spec {
    Spec {
        block: Some(Block::Object(hclspec::Object {
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })),
    }
}

/// The root Object's attributes (name → spec), empty if the root is not an Object.
pub fn object_attrs(spec: &Spec) -> Vec<(String, &Spec)> {
    match &spec.block {
        Some(Block::Object(o)) => {
            let mut v: Vec<_> = o.attributes.iter().map(|(k, s)| (k.clone(), s)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        _ => Vec::new(),
    }
}

/// The `Attr` of a root-object entry, looking through `Default.primary`.
pub fn find_attr<'a>(spec: &'a Spec, key: &str) -> Option<&'a hclspec::Attr> {
    let Some(Block::Object(o)) = &spec.block else {
        return None;
    };
    let mut s = o.attributes.get(key)?;
    loop {
        match &s.block {
            Some(Block::Attr(a)) => return Some(a),
            Some(Block::Default(d)) => s = spec_ref(d.primary.as_ref()?),
            _ => return None,
        }
    }
}

/// Whether a root-object entry is wrapped in a `Default`.
pub fn has_default(spec: &Spec, key: &str) -> bool {
    let Some(Block::Object(o)) = &spec.block else {
        return false;
    };
    matches!(
        o.attributes.get(key).and_then(|s| s.block.as_ref()),
        Some(Block::Default(_))
    )
}

/// Normalises a type expression for comparison (`list( string )` → `list(string)`).
pub fn norm_type(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// The Go pot driver's task schema (protocol spec §7.3).
    fn pot_task_spec() -> Spec {
        spec_object([
            ("image", spec_attr("image", "string", true)),
            ("pot", spec_attr("pot", "string", true)),
            ("tag", spec_attr("tag", "string", true)),
            ("command", spec_attr("command", "string", false)),
            ("args", spec_attr("args", "list(string)", false)),
            (
                "port_map",
                spec_attr("port_map", "list(map(string))", false),
            ),
            ("network_mode", spec_attr("network_mode", "string", false)),
            ("mount", spec_attr("mount", "list(string)", false)),
            ("copy", spec_attr("copy", "list(string)", false)),
            (
                "mount_read_only",
                spec_attr("mount_read_only", "list(string)", false),
            ),
            (
                "extra_hosts",
                spec_attr("extra_hosts", "list(string)", false),
            ),
            ("attributes", spec_attr("attributes", "list(string)", false)),
        ])
    }

    #[test]
    fn example_a_agent_config() {
        let spec = spec_object([(
            "enabled",
            spec_default(spec_attr("enabled", "bool", false), spec_literal("true")),
        )]);
        assert_eq!(
            encode(&spec, &json!({})).unwrap(),
            hex("81 a7 65 6e 61 62 6c 65 64 c3")
        );
        assert_eq!(
            encode(&spec, &Json::Null).unwrap(),
            hex("81 a7 65 6e 61 62 6c 65 64 c3")
        );
        assert_eq!(
            encode(&spec, &json!({"enabled": false})).unwrap(),
            hex("81 a7 65 6e 61 62 6c 65 64 c2")
        );
        // hcldec converts the string "false" to bool
        assert_eq!(
            encode(&spec, &json!({"enabled": "false"})).unwrap(),
            hex("81 a7 65 6e 61 62 6c 65 64 c2")
        );
    }

    #[test]
    fn example_b_pot_task_config() {
        let expected = hex(
            "8c a4 61 72 67 73 92 a2 2d 67 ab 64 61 65 6d 6f 6e 20 6f 66 66 3b aa 61 74 74 72 69 62 75 74 65
             73 c0 a7 63 6f 6d 6d 61 6e 64 a5 6e 67 69 6e 78 a4 63 6f 70 79 c0 ab 65 78 74 72 61 5f 68 6f 73 74 73
             c0 a5 69 6d 61 67 65 aa 68 74 74 70 73 3a 2f 2f 72 2f a5 6d 6f 75 6e 74 c0 af 6d 6f 75 6e 74 5f 72 65
             61 64 5f 6f 6e 6c 79 c0 ac 6e 65 74 77 6f 72 6b 5f 6d 6f 64 65 c0 a8 70 6f 72 74 5f 6d 61 70 91 81 a4
             68 74 74 70 a2 38 30 a3 70 6f 74 a5 6e 67 69 6e 78 a3 74 61 67 a3 31 2e 30",
        );
        assert_eq!(expected.len(), 159);
        let cfg = json!({
            "image": "https://r/",
            "pot": "nginx",
            "tag": "1.0",
            "command": "nginx",
            "args": ["-g", "daemon off;"],
            "port_map": [{"http": "80"}],
        });
        assert_eq!(encode(&pot_task_spec(), &cfg).unwrap(), expected);
        // port_map given a number is converted to a string like hcldec does
        let cfg2 = json!({
            "image": "https://r/", "pot": "nginx", "tag": "1.0", "command": "nginx",
            "args": ["-g", "daemon off;"], "port_map": [{"http": 80}],
        });
        assert_eq!(encode(&pot_task_spec(), &cfg2).unwrap(), expected);
        // two port_map blocks
        let cfg3 = json!({"image": "i", "pot": "p", "tag": "t",
            "port_map": [{"http": "80"}, {"https": "443"}]});
        let b = encode(&pot_task_spec(), &cfg3).unwrap();
        let needle = hex(
            "a8 70 6f 72 74 5f 6d 61 70 92 81 a4 68 74 74 70 a2 38 30 81 a5 68 74 74 70 73 a3 34 34 33",
        );
        assert!(
            b.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{b:02x?}"
        );
    }

    #[test]
    fn example_c_scalar_coverage() {
        let spec = spec_object([
            ("image", spec_attr("image", "string", true)),
            ("args", spec_attr("args", "list(string)", false)),
            ("count", spec_attr("count", "number", false)),
            (
                "debug",
                spec_default(spec_attr("debug", "bool", false), spec_literal("false")),
            ),
            ("labels", spec_attr("labels", "map(string)", false)),
            ("any", spec_attr("any", "any", false)),
            ("ratio", spec_attr("ratio", "number", false)),
        ]);
        let mut expected = vec![0x87];
        expected.extend(hex("a3 61 6e 79 c0"));
        expected.extend(hex(
            "a4 61 72 67 73 92 a2 2d 67 ab 64 61 65 6d 6f 6e 20 6f 66 66 3b",
        ));
        expected.extend(hex("a5 63 6f 75 6e 74 03"));
        expected.extend(hex("a5 64 65 62 75 67 c2"));
        expected.extend(hex("a5 69 6d 61 67 65 a5 6e 67 69 6e 78"));
        expected.extend(hex("a6 6c 61 62 65 6c 73 82 a1 61 a1 31 a1 62 a1 32"));
        expected.extend(hex("a5 72 61 74 69 6f c0"));
        assert_eq!(expected.len(), 76);
        let cfg = json!({"image": "nginx", "args": ["-g", "daemon off;"], "count": 3,
                         "labels": {"b": "2", "a": "1"}});
        assert_eq!(encode(&spec, &cfg).unwrap(), expected);

        let cfg = json!({"image": "x", "count": 1.5, "any": {"k": [1, 2]}, "ratio": 300000});
        let b = encode(&spec, &cfg).unwrap();
        for needle in [
            hex("a3 61 6e 79 81 a1 6b 92 01 02"),
            hex("a5 63 6f 75 6e 74 cb 3f f8 00 00 00 00 00 00"),
            hex("a5 72 61 74 69 6f ce 00 04 93 e0"),
        ] {
            assert!(
                b.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{needle:02x?} in {b:02x?}"
            );
        }
    }

    #[test]
    fn example_d_numbers_strings_sets() {
        let spec = spec_object([
            ("neg", spec_attr("neg", "number", false)),
            ("s", spec_attr("s", "string", false)),
            ("n", spec_attr("n", "number", false)),
            ("long", spec_attr("long", "string", false)),
            ("set", spec_attr("set", "set(string)", false)),
            ("big", spec_attr("big", "number", false)),
        ]);
        let long = "x".repeat(40);
        let cfg = json!({"neg": -1, "s": 80, "n": "8080", "long": long, "set": ["b", "a", "b"], "big": 1e20});
        let v = decode(&spec, &cfg).unwrap();
        let Val::Map(m) = &v else { panic!() };
        assert_eq!(encode_val(&m["neg"]), hex("ff"));
        assert_eq!(encode_val(&m["s"]), hex("a2 38 30"));
        assert_eq!(encode_val(&m["n"]), hex("cd 1f 90"));
        let mut l = hex("d9 28");
        l.extend(long.as_bytes());
        assert_eq!(encode_val(&m["long"]), l);
        assert_eq!(encode_val(&m["set"]), hex("92 a1 61 a1 62"));
        let mut big = vec![0xb5];
        big.extend(b"100000000000000000000");
        assert_eq!(encode_val(&m["big"]), big);
        // int widths
        for (n, bytes) in [
            (json!(127), "7f"),
            (json!(128), "cc 80"),
            (json!(65535), "cd ff ff"),
            (json!(-32), "e0"),
            (json!(-33), "d0 df"),
            (json!(-129), "d1 ff 7f"),
            (json!(3.0), "03"),
        ] {
            assert_eq!(encode_raw(&n), hex(bytes), "{n}");
        }
    }

    #[test]
    fn nomad_style_errors() {
        let spec = pot_task_spec();
        let e = encode(
            &spec,
            &json!({"image": "i", "pot": "p", "tag": "t", "foo": 1}),
        )
        .unwrap_err();
        assert!(
            e.contains("Invalid label: No argument or block type is named \"foo\"."),
            "{e}"
        );
        let e = encode(&spec, &json!({"pot": "p", "tag": "t"})).unwrap_err();
        assert!(
            e.contains("Missing required argument: The argument \"image\" is required, but no definition was found."),
            "{e}"
        );
        let e = encode(
            &spec,
            &json!({"image": "i", "pot": "p", "tag": "t", "args": "x"}),
        )
        .unwrap_err();
        assert!(
            e.contains("Incorrect attribute value type: Inappropriate value for attribute \"args\": list of string required."),
            "{e}"
        );
        let e = encode(
            &spec,
            &json!({"image": "i", "pot": "p", "tag": "t", "port_map": {"http": "80"}}),
        )
        .unwrap_err();
        assert!(
            e.contains(
                "Inappropriate value for attribute \"port_map\": list of map of string required."
            ),
            "{e}"
        );
        // a list given where a string is expected
        assert!(encode(&spec, &json!({"image": ["x"], "pot": "p", "tag": "t"})).is_err());
    }

    #[test]
    fn literals_and_raw() {
        assert_eq!(parse_literal("true").unwrap(), Val::Bool(true));
        assert_eq!(
            parse_literal("\"public-bridge\"").unwrap(),
            Val::Str("public-bridge".into())
        );
        assert_eq!(parse_literal("[]").unwrap(), Val::Seq(vec![]));
        assert_eq!(parse_literal("{}").unwrap(), Val::Map(BTreeMap::new()));
        assert_eq!(parse_literal("5").unwrap(), Val::Num(Num::Int(5)));
        assert_eq!(
            parse_literal("[\"a\", 1]").unwrap(),
            Val::Seq(vec![Val::Str("a".into()), Val::Num(Num::Int(1))])
        );
        assert_eq!(
            Ty::parse("list(map(string))").unwrap(),
            Ty::List(Box::new(Ty::Map(Box::new(Ty::String))))
        );
        assert_eq!(encode_raw(&json!({"zfs_root": 5, "enabled": true})), {
            let mut v = hex("82 a7");
            v.extend(b"enabled");
            v.push(0xc3);
            v.push(0xa8);
            v.extend(b"zfs_root");
            v.push(0x05);
            v
        });
    }
}
