//! The `zfs` tool on a fresh simulated host: inherited mountpoints, clone and destroy
//! dependencies, a failed receive, `list` formats.

use super::sendrecv::receive_from;
use super::*;
use crate::stream::{StreamDataset, StreamWriter};
use std::fs;

fn host(tag: &str) -> Host {
    let d = std::env::temp_dir().join(format!("fsim-zfs-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    crate::state::init(&d, false).unwrap();
    Host::new(d)
}

fn zfs(h: &Host, args: &[&str]) -> Res<String> {
    main(h, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn inherited_mountpoints() {
    let h = host("mp");
    zfs(&h, &["create", "zroot/pot/jails/a"]).unwrap();
    zfs(&h, &["create", "zroot/pot/jails/a/m"]).unwrap();
    let st = h.load().unwrap();
    let pot = h.root().join("opt/pot");
    assert_eq!(
        mountpoint(&st, "zroot/pot/jails/a/m"),
        (
            format!("{}/jails/a/m", pot.display()),
            "inherited from zroot/pot".into()
        )
    );
    assert!(pot.join("jails/a/m").is_dir());
    fs::write(pot.join("jails/a/m/f"), "x").unwrap();
    let other = h.dir.join("elsewhere");
    zfs(
        &h,
        &[
            "set",
            &format!("mountpoint={}", other.display()),
            "zroot/pot/jails/a",
        ],
    )
    .unwrap();
    assert!(
        other.join("m/f").is_file(),
        "child with inherited mountpoint moves along"
    );
    assert!(!pot.join("jails/a").exists());
    let out = zfs(
        &h,
        &[
            "get",
            "-H",
            "-o",
            "value,source",
            "mountpoint",
            "zroot/pot/jails/a/m",
        ],
    )
    .unwrap();
    assert_eq!(
        out,
        format!("{}/m\tinherited from zroot/pot/jails/a\n", other.display())
    );
    fs::remove_dir_all(&h.dir).unwrap();
}

#[test]
fn clone_destroy_dependencies() {
    let h = host("dep");
    zfs(&h, &["create", "zroot/pot/jails/img"]).unwrap();
    fs::write(h.root().join("opt/pot/jails/img/f"), "data").unwrap();
    zfs(&h, &["snapshot", "zroot/pot/jails/img@1"]).unwrap();
    zfs(&h, &["clone", "zroot/pot/jails/img@1", "zroot/pot/jails/c"]).unwrap();
    assert_eq!(
        fs::read_to_string(h.root().join("opt/pot/jails/c/f")).unwrap(),
        "data"
    );
    assert_eq!(
        zfs(&h, &["list", "-H", "-o", "origin", "zroot/pot/jails/c"]).unwrap(),
        "zroot/pot/jails/img@1\n"
    );
    let e = zfs(&h, &["destroy", "zroot/pot/jails/img@1"]).unwrap_err();
    assert!(
        e.msg.contains("snapshot has dependent clones") && e.msg.contains("zroot/pot/jails/c"),
        "{}",
        e.msg
    );
    let e = zfs(&h, &["destroy", "zroot/pot/jails/img"]).unwrap_err();
    assert!(e.msg.contains("filesystem has children"), "{}", e.msg);
    let e = zfs(&h, &["destroy", "-r", "zroot/pot/jails/img"]).unwrap_err();
    assert!(
        e.msg.contains("filesystem has dependent clones"),
        "{}",
        e.msg
    );
    zfs(&h, &["destroy", "zroot/pot/jails/c"]).unwrap();
    zfs(&h, &["destroy", "-r", "zroot/pot/jails/img"]).unwrap();
    assert!(!h.root().join("opt/pot/jails/img").exists());
    let e = zfs(&h, &["list", "zroot/pot/jails/img"]).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            1,
            "cannot open 'zroot/pot/jails/img': dataset does not exist"
        )
    );
    fs::remove_dir_all(&h.dir).unwrap();
}

/// A stream of datasets with the given names relative to the received one, each holding
/// one file.
fn stream_of(h: &Host, rels: &[&str], props: &[(&str, &str)]) -> Vec<u8> {
    let src = h.dir.join("src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "data").unwrap();
    let mut w = StreamWriter::new(Vec::new()).unwrap();
    for rel in rels {
        let ds = StreamDataset {
            rel: rel.to_string(),
            snap: "1".into(),
            creation: 7,
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        w.dataset(&ds, &src, &[]).unwrap();
    }
    let bytes = w.finish().unwrap();
    fs::remove_dir_all(&src).unwrap();
    bytes
}

fn recv(h: &Host, args: &[&str], bytes: &[u8]) -> Res<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    receive_from(h, &args, bytes)
}

#[test]
fn a_failed_receive_leaves_nothing_behind() {
    let h = host("recvfail");
    // The second `m` fails the receive after two datasets were laid out.
    let bad = stream_of(&h, &["", "m", "m"], &[]);
    let e = recv(&h, &["zroot/pot/jails/img"], &bad).unwrap_err();
    assert!(
        e.msg.contains("cannot receive new filesystem stream"),
        "{}",
        e.msg
    );
    assert_eq!(
        fs::read_dir(h.state_dir().join("snapshots"))
            .unwrap()
            .count(),
        0,
        "no snapshot copy stays"
    );
    assert!(!h.root().join("opt/pot/jails/img").exists());
    let good = stream_of(&h, &["", "m"], &[]);
    recv(&h, &["zroot/pot/jails/img"], &good).unwrap();
    assert_eq!(
        fs::read_to_string(h.root().join("opt/pot/jails/img/m/f")).unwrap(),
        "data"
    );
    // ZFS names never hold `.` or `..` components.
    let dots = stream_of(&h, &["", ".."], &[]);
    assert!(recv(&h, &["zroot/pot/jails/dots"], &dots).is_err());
    assert!(!h.root().join("opt/pot/jails/dots").exists());
    fs::remove_dir_all(&h.dir).unwrap();
}

#[test]
fn list_snapshots_and_formats() {
    let h = host("ls");
    zfs(&h, &["create", "zroot/pot/jails/a"]).unwrap();
    zfs(&h, &["snapshot", "zroot/pot/jails/a@s1"]).unwrap();
    let out = zfs(
        &h,
        &[
            "list",
            "-d",
            "1",
            "-H",
            "-t",
            "snapshot",
            "-o",
            "name",
            "zroot/pot/jails/a",
        ],
    )
    .unwrap();
    assert_eq!(out, "zroot/pot/jails/a@s1\n");
    let out = zfs(&h, &["list", "-o", "name,origin", "zroot/pot/jails/a"]).unwrap();
    assert_eq!(out, "NAME               ORIGIN\nzroot/pot/jails/a  -\n");
    assert_eq!(nicenum(0), "0B");
    assert_eq!(nicenum(1536), "1.50K");
    assert_eq!(nicenum(100 << 30), "100G");
    assert_eq!(ctime(0), "Thu Jan  1  0:00 1970");
    fs::remove_dir_all(&h.dir).unwrap();
}
