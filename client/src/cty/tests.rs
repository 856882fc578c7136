use super::*;
use nomad_plugin_proto::hclspec::Spec;
use serde_json::Value as Json;
use serde_json::json;
use std::collections::BTreeMap;

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
    let cfg =
        json!({"neg": -1, "s": 80, "n": "8080", "long": long, "set": ["b", "a", "b"], "big": 1e20});
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
