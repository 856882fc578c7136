//! What a Nomad agent accepts on a plugin's stdio: go-plugin's handshake line on stdout and
//! hclog's JSON lines on stderr, checked as the agent checks them.

use std::path::{Path, PathBuf};

/// Validates a handshake line exactly like go-plugin's client (plus the strict 6-field form the
/// Go server prints). Returns the socket path. Written apart from the plugin's own
/// `plugin::announced_socket` on purpose: this crate is the tests' independent view of Nomad.
pub fn validate_handshake(line: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() != 6 {
        return Err(format!(
            "handshake must have 6 '|'-separated fields, got {}: {line:?}",
            parts.len()
        ));
    }
    if parts[0] != "1" {
        return Err(format!("incompatible core API version {:?}", parts[0]));
    }
    if parts[1] != "2" {
        return Err(format!(
            "incompatible API version with plugin. Plugin version: {}, Client versions: [2]",
            parts[1]
        ));
    }
    if parts[2] != "unix" {
        return Err(format!("expected network type unix, got {:?}", parts[2]));
    }
    let p = Path::new(parts[3]);
    if !p.is_absolute() {
        return Err(format!("socket path must be absolute: {:?}", parts[3]));
    }
    if parts[3].len() >= 104 {
        return Err(format!(
            "socket path longer than FreeBSD's sun_path: {:?}",
            parts[3]
        ));
    }
    if parts[4] != "grpc" {
        return Err(format!(
            "unsupported plugin protocol {:?}. Supported: [grpc]",
            parts[4]
        ));
    }
    if !parts[5].is_empty() {
        return Err(format!(
            "sixth field (server cert) must be empty, got {:?}",
            parts[5]
        ));
    }
    Ok(p.to_path_buf())
}

/// Whether `ts` has hclog's `2006-01-02T15:04:05.000000Z07:00` form.
fn is_go_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    if b.len() < 27 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    let base_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26);
    if !base_ok {
        return false;
    }
    let zone = &ts[26..];
    if zone == "Z" {
        return true;
    }
    let z = zone.as_bytes();
    z.len() == 6
        && (z[0] == b'+' || z[0] == b'-')
        && z[1].is_ascii_digit()
        && z[2].is_ascii_digit()
        && z[3] == b':'
        && z[4].is_ascii_digit()
        && z[5].is_ascii_digit()
}

/// Why a stderr line would not be accepted as an hclog JSON entry by the agent (None = fine).
pub fn stderr_line_violation(line: &str) -> Option<String> {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON ({e}): {line}")),
    };
    let Some(obj) = v.as_object() else {
        return Some(format!("not a JSON object: {line}"));
    };
    let fields = ["@level", "@message", "@timestamp"].map(|key| (key, obj.get(key)));
    for (key, value) in &fields {
        match value {
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Some(format!("{key} is not a string: {line}")),
            None => return Some(format!("{key} missing: {line}")),
        }
    }
    let text = |i: usize| {
        fields[i]
            .1
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    };
    let level = text(0);
    if !matches!(level, "trace" | "debug" | "info" | "warn" | "error") {
        return Some(format!("unknown @level {level:?}: {line}"));
    }
    let ts = text(2);
    if !is_go_timestamp(ts) {
        return Some(format!(
            "@timestamp {ts:?} not in 2006-01-02T15:04:05.000000Z07:00 form: {line}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_go_plugin_refuses_are_refused() {
        let ok = "1|2|unix|/tmp/plugin123/plugin.sock|grpc|";
        assert_eq!(
            validate_handshake(ok),
            Ok(PathBuf::from("/tmp/plugin123/plugin.sock"))
        );
        for (line, why) in [
            ("1|2|unix|/tmp/p.sock|grpc", "6 '|'-separated fields"),
            ("2|2|unix|/tmp/p.sock|grpc|", "core API version"),
            ("1|1|unix|/tmp/p.sock|grpc|", "Plugin version: 1"),
            ("1|2|tcp|127.0.0.1:1|grpc|", "network type unix"),
            ("1|2|unix|p.sock|grpc|", "must be absolute"),
            ("1|2|unix|/tmp/p.sock|netrpc|", "Supported: [grpc]"),
            ("1|2|unix|/tmp/p.sock|grpc|cert", "sixth field"),
        ] {
            let err = validate_handshake(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
        let long = format!("1|2|unix|/{}|grpc|", "x".repeat(110));
        assert!(validate_handshake(&long).unwrap_err().contains("sun_path"));
    }

    #[test]
    fn only_hclog_json_passes_as_a_stderr_line() {
        let good =
            r#"{"@level":"info","@message":"hi","@timestamp":"2026-12-06T16:08:57.123456Z"}"#;
        assert_eq!(stderr_line_violation(good), None);
        let zoned = good.replace("Z\"", "+01:00\"");
        assert_eq!(stderr_line_violation(&zoned), None);
        for (line, why) in [
            ("plain text", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"@level":"info","@message":"hi"}"#, "@timestamp missing"),
            (
                r#"{"@level":5,"@message":"hi","@timestamp":"x"}"#,
                "@level is not a string",
            ),
            (
                r#"{"@level":"fatal","@message":"hi","@timestamp":"2026-12-06T16:08:57.123456Z"}"#,
                "unknown @level",
            ),
            (
                r#"{"@level":"info","@message":"hi","@timestamp":"2026-12-06 16:08:57"}"#,
                "not in 2006-01-02",
            ),
        ] {
            let v = stderr_line_violation(line).unwrap_or_default();
            assert!(v.contains(why), "{line}: {v:?}");
        }
    }
}
