//! End to end: a pot-style vnet network (bridge, epair, pf anchor, cpuset) and signed images.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_freebsd-sim");

fn tool(host: &Path, name: &str, args: &[&str]) -> Output {
    Command::new(host.join("bin").join(name))
        .args(args)
        .env_clear()
        .output()
        .expect("run tool")
}

fn ok(host: &Path, name: &str, args: &[&str]) -> String {
    let o = tool(host, name, args);
    assert!(
        o.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf8")
}

fn fails(host: &Path, name: &str, args: &[&str]) -> String {
    let o = tool(host, name, args);
    assert_eq!(o.status.code(), Some(1), "{name} {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check(host: &Path) -> Output {
    Command::new(BIN)
        .args(["check", host.to_str().unwrap()])
        .output()
        .unwrap()
}

fn fresh(tag: &str) -> PathBuf {
    let host = std::env::temp_dir().join(format!("fsim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    host
}

#[test]
fn vnet_network_pf_cpuset_and_cleanup() {
    let host = fresh("net");
    assert!(
        Command::new(BIN)
            .args(["init", host.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(ok(&host, "ifconfig", &["-l"]), "lo0 em0\n");

    assert_eq!(ok(&host, "ifconfig", &["bridge", "create"]), "bridge0\n");
    ok(
        &host,
        "ifconfig",
        &[
            "bridge0",
            "inet",
            "10.192.0.1",
            "netmask",
            "255.192.0.0",
            "up",
        ],
    );
    let epair = ok(
        &host,
        "ifconfig",
        &["epair", "create", "descr", "pot web", "group", "pot"],
    );
    assert_eq!(epair, "epair0a\n");
    assert_eq!(
        ok(&host, "ifconfig", &["epair0a", "name", "p4web0a"]),
        "p4web0a\n"
    );
    ok(&host, "ifconfig", &["bridge0", "addm", "p4web0a"]);
    ok(&host, "ifconfig", &["p4web0a", "up"]);
    let a = ok(&host, "ifconfig", &["p4web0a"]);
    assert!(
        a.starts_with("p4web0a: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500\n\tdescription: pot web\n"),
        "{a}"
    );
    assert!(a.contains("\tgroups: epair pot\n"), "{a}");
    assert_eq!(ok(&host, "ifconfig", &["-g", "pot"]), "p4web0a\n");
    let b = ok(&host, "ifconfig", &["bridge0"]);
    assert!(
        b.contains("\tinet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255\n")
            && b.contains("\tmember: p4web0a flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n")
            && b.contains("\tgroups: bridge\n"),
        "{b}"
    );

    let root = host.join("root/opt/pot/jails/web/m");
    std::fs::create_dir_all(&root).unwrap();
    let path = format!("path={}", root.display());
    let jid = ok(
        &host,
        "jail",
        &["-i", "-c", "name=web", &path, "vnet", "persist"],
    );
    let jid = jid.trim();
    assert_eq!(ok(&host, "ifconfig", &["-j", "web", "-l"]), "lo0\n");
    ok(&host, "ifconfig", &["epair0b", "vnet", "web"]);
    assert_eq!(
        fails(&host, "ifconfig", &["epair0b"]).trim(),
        "ifconfig: interface epair0b does not exist"
    );
    ok(
        &host,
        "ifconfig",
        &[
            "-j",
            "web",
            "epair0b",
            "inet",
            "10.192.0.3",
            "netmask",
            "255.192.0.0",
        ],
    );
    ok(
        &host,
        "ifconfig",
        &["-j", jid, "lo0", "inet", "127.0.0.1", "up"],
    );
    assert_eq!(ok(&host, "ifconfig", &["-j", "web", "-l"]), "lo0 epair0b\n");
    let inside = ok(&host, "ifconfig", &["-j", "web", "epair0b"]);
    assert!(
        inside.contains("\tinet 10.192.0.3 netmask 0xffc00000 broadcast 10.255.255.255\n"),
        "{inside}"
    );
    assert_eq!(ok(&host, "ifconfig", &["-l"]), "lo0 em0 bridge0 p4web0a\n");

    let rules = host.join("rdr.conf");
    std::fs::write(
        &rules,
        "ext_if = \"em0\"\n# web\nrdr pass on $ext_if proto tcp from any to ($ext_if) port 8080 -> 10.192.0.3 port 80\n",
    )
    .unwrap();
    ok(
        &host,
        "pfctl",
        &["-a", "pot-rdr/web_1", "-f", rules.to_str().unwrap()],
    );
    let mut nat = Command::new(host.join("bin/pfctl"))
        .args(["-a", "pot-nat", "-f", "-"])
        .env_clear()
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nat.stdin
        .take()
        .unwrap()
        .write_all(b"nat on em0 from 10.192.0.0/10 to any -> (em0:0) round-robin\n")
        .unwrap();
    assert!(nat.wait().unwrap().success());
    assert_eq!(
        ok(&host, "pfctl", &["-a", "pot-rdr/web_1", "-s", "nat", "-P"]),
        "rdr pass on em0 proto tcp from any to (em0) port 8080 -> 10.192.0.3 port 80\n"
    );
    assert_eq!(
        ok(&host, "pfctl", &["-a", "pot-rdr", "-s", "Anchors"]),
        "  pot-rdr/web_1\n"
    );
    assert_eq!(
        ok(&host, "pfctl", &["-s", "Anchors"]),
        "  pot-nat\n  pot-rdr\n"
    );
    let bad = host.join("bad.conf");
    std::fs::write(&bad, "rdr on em0 all\nfrobnicate\n").unwrap();
    assert!(
        fails(
            &host,
            "pfctl",
            &["-a", "pot-rdr/x", "-f", bad.to_str().unwrap()]
        )
        .contains("bad.conf:2: syntax error")
    );
    ok(&host, "pfctl", &["-e"]);
    assert_eq!(
        fails(&host, "pfctl", &["-e"]).trim(),
        "pfctl: pf already enabled"
    );
    assert!(ok(&host, "pfctl", &["-s", "info"]).starts_with("Status: Enabled for 0 days"));

    ok(&host, "sysctl", &["hw.ncpu=2"]);
    ok(&host, "cpuset", &["-l", "0-1", "-j", jid]);
    assert_eq!(
        ok(&host, "cpuset", &["-g", "-j", "web"]),
        format!("jail {jid} mask: 0, 1\njail {jid} domain policy: first-touch mask: 0\n")
    );
    assert!(fails(&host, "cpuset", &["-l", "0-2", "-j", jid]).contains("Invalid argument"));
    assert_eq!(
        fails(&host, "cpuset", &["-g", "-j", "nope"]).trim(),
        "cpuset: jail \"nope\" not found"
    );

    let report = String::from_utf8(check(&host).stderr).unwrap();
    assert!(
        report.contains("epair interface epair0b exists in jail web")
            && report.contains("epair interface p4web0a exists in the host")
            && report.contains("pf anchor pot-rdr/web_1 has rules"),
        "{report}"
    );

    ok(&host, "pfctl", &["-a", "pot-rdr/web_1", "-F", "all", "-q"]);
    assert_eq!(
        ok(&host, "pfctl", &["-a", "pot-rdr/web_1", "-s", "nat"]),
        ""
    );
    ok(&host, "jail", &["-R", "web"]);
    assert_eq!(
        ok(&host, "ifconfig", &["-l"]),
        "lo0 em0 bridge0 p4web0a epair0b\n"
    );
    assert!(!ok(&host, "ifconfig", &["epair0b"]).contains("inet "));
    ok(&host, "ifconfig", &["p4web0a", "destroy"]);
    assert_eq!(ok(&host, "ifconfig", &["-l"]), "lo0 em0 bridge0\n");
    assert!(!ok(&host, "ifconfig", &["bridge0"]).contains("member:"));

    let clean = check(&host);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    std::fs::remove_dir_all(&host).unwrap();
}

#[test]
fn signed_image_verifies() {
    use libsignify::{Codeable, PublicKey, Signature};
    let dir = fresh("signed");
    let keys = dir.join("keys");
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["keygen", keys.to_str().unwrap()]);
    let sec = keys.join("sim.sec");
    run(&[
        "image",
        "web",
        "1.0",
        dir.to_str().unwrap(),
        "--sign",
        sec.to_str().unwrap(),
    ]);
    let skein = std::fs::read(dir.join("web_1.0.xz.skein")).unwrap();
    let sig = std::fs::read_to_string(dir.join("web_1.0.xz.skein.sig")).unwrap();
    assert!(sig.starts_with("untrusted comment: verify with sim.pub\n"));
    let pubkey = std::fs::read_to_string(keys.join("sim.pub")).unwrap();
    let (pk, _) = PublicKey::from_base64(&pubkey).unwrap();
    let (sig, _) = Signature::from_base64(&sig).unwrap();
    pk.verify(&skein, &sig)
        .expect("signature over the .skein bytes");
    std::fs::remove_dir_all(&dir).unwrap();
}
