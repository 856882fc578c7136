//! `ifconfig` on a small host state: the output formats, addresses, vnet moves and jail release.

use super::addr::{parse_inet, parse_inet6};
use super::*;
use crate::state::{IfKind, Jail};

fn host_state() -> State {
    State {
        ifaces: vec![
            Iface {
                name: "lo0".into(),
                kind: IfKind::Loopback,
                up: true,
                groups: vec!["lo".into()],
                inet: vec!["127.0.0.1/8".into()],
                ..Default::default()
            },
            Iface {
                name: "em0".into(),
                up: true,
                ether: "08:00:27:5e:00:01".into(),
                ..Default::default()
            },
            jail_loopback("web"),
        ],
        jails: vec![Jail {
            jid: 1,
            name: "web".into(),
            params: vec![("vnet".into(), None)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn run(st: &mut State, ns: &Ns, args: &[&str]) -> Res<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    apply(st, ns, &args[0], &args[1..])
}

#[test]
fn formats_like_freebsd() {
    let mut st = host_state();
    assert_eq!(
        run(&mut st, &None, &["bridge", "create"]).unwrap(),
        "bridge0\n"
    );
    run(
        &mut st,
        &None,
        &[
            "bridge0",
            "inet",
            "10.192.0.1",
            "netmask",
            "255.192.0.0",
            "descr",
            "pot bridge",
        ],
    )
    .unwrap();
    assert_eq!(
        run(&mut st, &None, &["epair", "create", "group", "pot"]).unwrap(),
        "epair0a\n"
    );
    run(
        &mut st,
        &None,
        &["bridge0", "addm", "epair0a", "private", "epair0a"],
    )
    .unwrap();
    let list = in_ns(&st, &None);
    let b = list.iter().find(|i| i.name == "bridge0").unwrap();
    assert_eq!(
        show(&list, b),
        "bridge0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500\n\
         \tdescription: pot bridge\n\
         \tether 58:9c:fc:10:00:00\n\
         \tinet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255\n\
         \tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15\n\
         \tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200\n\
         \troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0\n\
         \tmember: epair0a flags=943<LEARNING,DISCOVER,PRIVATE,AUTOEDGE,AUTOPTP>\n\
         \t        ifmaxaddr 0 port 4 priority 128 path cost 2000\n\
         \tgroups: bridge\n"
    );
    let lo = list[0];
    assert_eq!(
        show(&list, lo),
        "lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384\n\tinet 127.0.0.1 netmask 0xff000000\n\tgroups: lo\n"
    );
    let b_end = list.iter().find(|i| i.name == "epair0b").unwrap();
    assert_eq!(
        show(&list, b_end),
        "epair0b: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tether 02:00:00:00:00:0b\n\tgroups: epair\n"
    );
    let opts = vec![('l', String::new())];
    assert_eq!(
        listing(&st, &None, &opts),
        "lo0 em0 bridge0 epair0a epair0b\n"
    );
    let opts = vec![('g', "pot".to_string())];
    assert_eq!(listing(&st, &None, &opts), "epair0a\n");
}

#[test]
fn addresses() {
    assert_eq!(parse_inet("10.192.0.3/10", None).unwrap().1, 10);
    assert_eq!(parse_inet("10.1.2.3", Some("0xffffff00")).unwrap().1, 24);
    assert_eq!(parse_inet("10.1.2.3", None).unwrap().1, 8);
    assert!(
        parse_inet("10.1.2", None)
            .unwrap_err()
            .msg
            .contains("bad value")
    );
    assert!(parse_inet("10.1.2.3", Some("255.0.255.0")).is_err());
    assert_eq!(parse_inet6("fd00::1", None).unwrap().1, 64);
    assert_eq!(parse_inet6("fd00::1/48", None).unwrap().1, 48);
    let mut st = host_state();
    run(&mut st, &None, &["em0", "inet", "10.0.0.1/24"]).unwrap();
    run(&mut st, &None, &["em0", "inet", "10.0.0.2/24", "alias"]).unwrap();
    // Without alias the first address is replaced.
    run(&mut st, &None, &["em0", "inet", "10.0.0.3/24"]).unwrap();
    assert_eq!(st.ifaces[1].inet, ["10.0.0.2/24", "10.0.0.3/24"]);
    let e = run(&mut st, &None, &["em0", "inet", "10.0.0.2/24", "alias"]).unwrap_err();
    assert_eq!(e.msg, "ifconfig: ioctl (SIOCAIFADDR): File exists");
    run(&mut st, &None, &["em0", "inet", "10.0.0.2", "-alias"]).unwrap();
    run(
        &mut st,
        &None,
        &["em0", "inet6", "fd00::1", "prefixlen", "64", "alias"],
    )
    .unwrap();
    assert_eq!(st.ifaces[1].inet, ["10.0.0.3/24"]);
    assert_eq!(st.ifaces[1].inet6, ["fd00::1/64"]);
    let e = run(&mut st, &None, &["em0", "inet", "10.9.9.9", "-alias"]).unwrap_err();
    assert!(e.msg.contains("SIOCDIFADDR"), "{}", e.msg);
}

#[test]
fn vnet_moves_and_jail_release() {
    let mut st = host_state();
    run(&mut st, &None, &["bridge", "create"]).unwrap();
    run(&mut st, &None, &["epair", "create"]).unwrap();
    assert_eq!(
        run(&mut st, &None, &["epair0a", "name", "p0a"]).unwrap(),
        "p0a\n"
    );
    run(&mut st, &None, &["bridge0", "addm", "p0a"]).unwrap();
    run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
    let web = Some("web".to_string());
    assert!(find(&st, &None, "epair0b").is_none());
    run(&mut st, &web, &["epair0b", "inet", "10.192.0.3/10"]).unwrap();
    let names: Vec<&str> = in_ns(&st, &web).iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["lo0", "epair0b"]);
    // Out and back in again.
    run(&mut st, &None, &["epair0b", "-vnet", "web"]).unwrap();
    assert!(
        st.ifaces[find(&st, &None, "epair0b").unwrap()]
            .inet
            .is_empty()
    );
    run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
    let e = run(&mut st, &None, &["lo0", "vnet", "nope"]).unwrap_err();
    assert_eq!(e.msg, "ifconfig: jail \"nope\" not found");
    // A second epair gets the lowest free unit.
    assert_eq!(
        run(&mut st, &None, &["epair", "create"]).unwrap(),
        "epair1a\n"
    );
    run(&mut st, &None, &["epair1a", "destroy"]).unwrap();
    release_jail(&mut st, "web");
    assert!(in_ns(&st, &web).is_empty());
    let b = find(&st, &None, "epair0b").expect("returned to the host");
    assert!(!st.ifaces[b].up);
    // Destroying the renamed a-end takes the b-end and the bridge membership along.
    run(&mut st, &None, &["p0a", "destroy"]).unwrap();
    assert!(find(&st, &None, "epair0b").is_none());
    assert!(
        st.ifaces[find(&st, &None, "bridge0").unwrap()]
            .members
            .is_empty()
    );
    let e = run(&mut st, &None, &["em0", "destroy"]).unwrap_err();
    assert_eq!(e.msg, "ifconfig: SIOCIFDESTROY: Invalid argument");
}

#[test]
fn epair_end_destroyed_from_jail_side_too() {
    let mut st = host_state();
    run(&mut st, &None, &["epair", "create"]).unwrap();
    run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
    run(&mut st, &Some("web".into()), &["epair0b", "destroy"]).unwrap();
    assert!(st.ifaces.iter().all(|i| i.kind != IfKind::Epair));
}
