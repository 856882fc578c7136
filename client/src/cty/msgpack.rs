//! go-cty's msgpack encoding of a decoded value.

use nomad_plugin_proto::hclspec::Spec;
use serde_json::Value as Json;

use super::convert::json_to_val;
use super::decode::{CtyError, decode};
use super::value::{Num, Val};

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
