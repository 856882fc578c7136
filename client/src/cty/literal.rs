//! HCL literal expressions, the values of `Literal` specs.

use std::collections::BTreeMap;

use super::value::{Num, Val};

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
