//! Checks and parsers for single setting values; each error names the setting's key.

use super::{ConfigError, bad};
use std::net::Ipv4Addr;

/// [`crate::engine::limits::bytes`] of an agent-config value, or an error naming its key.
pub(super) fn parse_size(key: &str, v: &str) -> Result<u64, ConfigError> {
    crate::engine::limits::bytes(v.trim()).ok_or_else(|| {
        bad(
            key,
            format!("{v:?} is not a size (a positive number of bytes, or with K, M, G or T)"),
        )
    })
}

/// An interface name as FreeBSD allows it: up to 15 characters, letters, digits, `_`, `.`, `-`.
pub(super) fn validate_nic(key: &str, nic: &str) -> Result<(), ConfigError> {
    let ok = !nic.is_empty()
        && nic.len() <= 15
        && nic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(key, format!("{nic:?} is not an interface name")))
    }
}

pub(super) fn validate_dataset_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("{name:?} is not a valid ZFS dataset name"),
        ))
    }
}

pub(super) fn parse_ip(key: &str, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| bad(key, format!("{v:?} is not an IPv4 address")))
}

pub(super) fn parse_cidr(key: &str, v: &str) -> Result<String, ConfigError> {
    let (addr, len) = v
        .split_once('/')
        .ok_or_else(|| bad(key, format!("{v:?} is not in CIDR form (a.b.c.d/len)")))?;
    parse_ip(key, addr)?;
    match len.parse::<u8>() {
        Ok(l) if l <= 32 => Ok(v.to_string()),
        _ => Err(bad(key, format!("{v:?} has an invalid prefix length"))),
    }
}
