//! HCL type expressions (`Attr.type`): `string`, `list(map(string))`, `object({a = string})` …

use std::collections::BTreeMap;

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
