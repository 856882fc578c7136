//! Unit tests of the test harness itself (the cty-msgpack encoder against the exact bytes of
//! protocol spec §4.6, handshake and hclog checks). They live in `tests/common` and run here
//! without needing the plugin or the simulator: `cargo test --test cty_encoder`.

mod common;

use common::plugin::{stderr_line_violation, validate_handshake};

#[test]
fn handshake_validation() {
    assert!(validate_handshake("1|2|unix|/tmp/pot-plugin-abc/s|grpc|").is_ok());
    assert!(
        validate_handshake("1|2|unix|/tmp/pot-plugin-abc/s|grpc").is_err(),
        "5 fields"
    );
    assert!(validate_handshake("2|2|unix|/tmp/s|grpc|").is_err());
    assert!(validate_handshake("1|1|unix|/tmp/s|grpc|").is_err());
    assert!(validate_handshake("1|2|tcp|127.0.0.1:1|grpc|").is_err());
    assert!(validate_handshake("1|2|unix|tmp/s|grpc|").is_err());
    assert!(validate_handshake("1|2|unix|/tmp/s|netrpc|").is_err());
    assert!(validate_handshake("1|2|unix|/tmp/s|grpc|CERT").is_err());
}

#[test]
fn hclog_line_validation() {
    let ok = r#"{"@level":"info","@message":"hi","@timestamp":"2024-01-02T03:04:05.123456Z","@module":"pot"}"#;
    assert_eq!(stderr_line_violation(ok), None);
    let ok2 =
        r#"{"@level":"debug","@message":"hi","@timestamp":"2024-01-02T03:04:05.123456+02:00"}"#;
    assert_eq!(stderr_line_violation(ok2), None);
    for bad in [
        "plain text",
        r#"{"@level":"info","@message":"hi","@timestamp":"2024-01-02T03:04:05.123Z"}"#,
        r#"{"@level":"info","@message":"hi","@timestamp":"2024-01-02T03:04:05.1234567Z"}"#,
        r#"{"@level":"info","@message":5,"@timestamp":"2024-01-02T03:04:05.123456Z"}"#,
        r#"{"@level":"INFO","@message":"x","@timestamp":"2024-01-02T03:04:05.123456Z"}"#,
        r#"{"@message":"x","@timestamp":"2024-01-02T03:04:05.123456Z"}"#,
        r#"["@level"]"#,
    ] {
        assert!(stderr_line_violation(bad).is_some(), "{bad}");
    }
}
