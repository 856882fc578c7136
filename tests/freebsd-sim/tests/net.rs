//! End to end: a pot-style vnet network (bridge, epair, pf anchor, cpuset) and signed images.

use std::io::Write;
use std::process::Stdio;

mod common;

use common::{Host, TempDir, sim, stderr};

#[test]
fn vnet_network_pf_cpuset_and_cleanup() {
    let host = Host::new("net");
    assert_eq!(host.ok("ifconfig", &["-l"]), "lo0 em0\n");

    assert_eq!(host.ok("ifconfig", &["bridge", "create"]), "bridge0\n");
    host.ok(
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
    let epair = host.ok(
        "ifconfig",
        &["epair", "create", "descr", "pot web", "group", "pot"],
    );
    assert_eq!(epair, "epair0a\n");
    assert_eq!(
        host.ok("ifconfig", &["epair0a", "name", "p4web0a"]),
        "p4web0a\n"
    );
    host.ok("ifconfig", &["bridge0", "addm", "p4web0a"]);
    host.ok("ifconfig", &["p4web0a", "up"]);
    let a = host.ok("ifconfig", &["p4web0a"]);
    assert!(
        a.starts_with("p4web0a: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500\n\tdescription: pot web\n"),
        "{a}"
    );
    assert!(a.contains("\tgroups: epair pot\n"), "{a}");
    assert_eq!(host.ok("ifconfig", &["-g", "pot"]), "p4web0a\n");
    let b = host.ok("ifconfig", &["bridge0"]);
    assert!(
        b.contains("\tinet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255\n")
            && b.contains("\tmember: p4web0a flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n")
            && b.contains("\tgroups: bridge\n"),
        "{b}"
    );

    let root = host.join("root/opt/pot/jails/web/m");
    std::fs::create_dir_all(&root).unwrap();
    let path = format!("path={}", root.display());
    let jid = host.ok("jail", &["-i", "-c", "name=web", &path, "vnet", "persist"]);
    let jid = jid.trim();
    assert_eq!(host.ok("ifconfig", &["-j", "web", "-l"]), "lo0\n");
    host.ok("ifconfig", &["epair0b", "vnet", "web"]);
    assert_eq!(
        host.fails("ifconfig", &["epair0b"]).trim(),
        "ifconfig: interface epair0b does not exist"
    );
    host.ok(
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
    host.ok("ifconfig", &["-j", jid, "lo0", "inet", "127.0.0.1", "up"]);
    assert_eq!(host.ok("ifconfig", &["-j", "web", "-l"]), "lo0 epair0b\n");
    let inside = host.ok("ifconfig", &["-j", "web", "epair0b"]);
    assert!(
        inside.contains("\tinet 10.192.0.3 netmask 0xffc00000 broadcast 10.255.255.255\n"),
        "{inside}"
    );
    assert_eq!(host.ok("ifconfig", &["-l"]), "lo0 em0 bridge0 p4web0a\n");

    let rules = host.join("rdr.conf");
    std::fs::write(
        &rules,
        "ext_if = \"em0\"\n# web\nrdr pass on $ext_if proto tcp from any to ($ext_if) port 8080 -> 10.192.0.3 port 80\n",
    )
    .unwrap();
    host.ok(
        "pfctl",
        &["-a", "pot-rdr/web_1", "-f", rules.to_str().unwrap()],
    );
    let mut nat = host
        .command("pfctl")
        .args(["-a", "pot-nat", "-f", "-"])
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
        host.ok("pfctl", &["-a", "pot-rdr/web_1", "-s", "nat", "-P"]),
        "rdr pass on em0 proto tcp from any to (em0) port 8080 -> 10.192.0.3 port 80\n"
    );
    assert_eq!(
        host.ok("pfctl", &["-a", "pot-rdr", "-s", "Anchors"]),
        "  pot-rdr/web_1\n"
    );
    assert_eq!(
        host.ok("pfctl", &["-s", "Anchors"]),
        "  pot-nat\n  pot-rdr\n"
    );
    let bad = host.join("bad.conf");
    std::fs::write(&bad, "rdr on em0 all\nfrobnicate\n").unwrap();
    assert!(
        host.fails("pfctl", &["-a", "pot-rdr/x", "-f", bad.to_str().unwrap()])
            .contains("bad.conf:2: syntax error")
    );
    host.ok("pfctl", &["-e"]);
    assert_eq!(
        host.fails("pfctl", &["-e"]).trim(),
        "pfctl: pf already enabled"
    );
    assert!(
        host.ok("pfctl", &["-s", "info"])
            .starts_with("Status: Enabled for 0 days")
    );

    host.ok("sysctl", &["hw.ncpu=2"]);
    host.ok("cpuset", &["-l", "0-1", "-j", jid]);
    assert_eq!(
        host.ok("cpuset", &["-g", "-j", "web"]),
        format!("jail {jid} mask: 0, 1\njail {jid} domain policy: first-touch mask: 0\n")
    );
    assert!(
        host.fails("cpuset", &["-l", "0-2", "-j", jid])
            .contains("Invalid argument")
    );
    assert_eq!(
        host.fails("cpuset", &["-g", "-j", "nope"]).trim(),
        "cpuset: jail \"nope\" not found"
    );

    let report = String::from_utf8(host.check().stderr).unwrap();
    assert!(
        report.contains("epair interface epair0b exists in jail web")
            && report.contains("epair interface p4web0a exists in the host")
            && report.contains("pf anchor pot-rdr/web_1 has rules"),
        "{report}"
    );

    host.ok("pfctl", &["-a", "pot-rdr/web_1", "-F", "all", "-q"]);
    assert_eq!(host.ok("pfctl", &["-a", "pot-rdr/web_1", "-s", "nat"]), "");
    host.ok("jail", &["-R", "web"]);
    assert_eq!(
        host.ok("ifconfig", &["-l"]),
        "lo0 em0 bridge0 p4web0a epair0b\n"
    );
    assert!(!host.ok("ifconfig", &["epair0b"]).contains("inet "));
    host.ok("ifconfig", &["p4web0a", "destroy"]);
    assert_eq!(host.ok("ifconfig", &["-l"]), "lo0 em0 bridge0\n");
    assert!(!host.ok("ifconfig", &["bridge0"]).contains("member:"));

    let clean = host.check();
    assert!(clean.status.success(), "{}", stderr(&clean));
}

#[test]
fn signed_image_verifies() {
    use libsignify::{Codeable, PublicKey, Signature};
    let dir = TempDir::new("signed");
    let keys = dir.join("keys");
    let run = |args: &[&str]| {
        let o = sim(args);
        assert!(o.status.success(), "{}", stderr(&o));
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
}
