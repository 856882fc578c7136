//! The values of cty that Nomad's pipeline produces, and its number rules.

use std::collections::BTreeMap;

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
    pub(super) fn from_f64(f: f64) -> Num {
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

    pub(super) fn from_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i)
        } else if let Some(u) = n.as_u64() {
            Num::UInt(u)
        } else {
            Num::from_f64(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    pub(super) fn parse(s: &str) -> Option<Num> {
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

    pub(super) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Float(f) => f,
        }
    }

    pub(super) fn to_cty_string(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::UInt(u) => u.to_string(),
            Num::Float(f) => format!("{f}"),
        }
    }
}
