//! End to end: the built binary driven through its tool names, as the driver would.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Host, sim, stderr};

/// Writes the image `web_1.0` into `dir` with `freebsd-sim image` and returns its zfs stream.
fn image_stream(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let img = Command::new(BIN)
        .args(["image", "web", "1.0", dir.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        img.status.success(),
        "{}",
        String::from_utf8_lossy(&img.stderr)
    );
    let xz = std::fs::read(dir.join("web_1.0.xz")).unwrap();
    let mut stream = Vec::new();
    liblzma::read::XzDecoder::new_multi_decoder(&xz[..]).read_to_end_into(&mut stream);
    stream
}

#[test]
fn image_receive_clone_jail_exec_stop_and_clean() {
    let (host, cfg) = Host::init("it", &[]);
    assert_eq!(cfg["zfs_root"], "zroot/pot");

    let cache = host.join("root/var/cache/pot");
    let stream = image_stream(&cache, &[]);

    let mut recv = host
        .command("zfs")
        .args(["receive", "zroot/pot/jails/web_1_0"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    recv.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(recv.wait().unwrap().success());
    let snaps = host.ok(
        "zfs",
        &[
            "list",
            "-H",
            "-d",
            "1",
            "-t",
            "snapshot",
            "-o",
            "name",
            "zroot/pot/jails/web_1_0/m",
        ],
    );
    let snap = snaps.lines().next().expect("one snapshot").to_string();

    host.ok("zfs", &["create", "zroot/pot/jails/t1"]);
    host.ok("zfs", &["clone", &snap, "zroot/pot/jails/t1/m"]);
    let root = host.join("root/opt/pot/jails/t1/m");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/sim-image")).unwrap(),
        "web_1.0\n"
    );
    let path = format!("path={}", root.display());
    host.ok(
        "jail",
        &[
            "-c",
            "name=t1",
            &path,
            "mount.devfs",
            "stop.timeout=5",
            "persist",
        ],
    );

    let o = host.tool("jexec", &["t1", "/bin/sh", "-c", "echo hi; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert_eq!(o.status.code(), Some(3));

    let mut sleeper = host
        .command("jexec")
        .args(["t1", "sleep", "30"])
        .spawn()
        .unwrap();
    // The sleeper counts as a jail process once its namespace is recorded.
    let deadline = Instant::now() + Duration::from_secs(5);
    let registered = || -> bool {
        use std::os::unix::fs::MetadataExt;
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(host.join("state/state.json")).unwrap()).unwrap();
        let ns: Vec<u64> = st["jails"][0]["ns"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["ino"].as_u64())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::metadata(e.path().join("ns/mnt")).is_ok_and(|m| ns.contains(&m.ino()))
                    && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c == "sleep\n")
            })
    };
    while !registered() {
        assert!(Instant::now() < deadline, "jexec never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    host.ok("jail", &["-r", "t1"]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(
        sleeper.wait().unwrap().signal(),
        Some(15),
        "jexec dies by the jailed command's signal"
    );
    let jls = host.tool("jls", &["-j", "t1"]);
    assert_eq!(jls.status.code(), Some(1));

    let leftovers = host.check();
    assert_eq!(leftovers.status.code(), Some(1));
    let report = String::from_utf8_lossy(&leftovers.stderr);
    assert!(
        report.contains("devfs mount") && report.contains("clone zroot/pot/jails/t1/m"),
        "{report}"
    );

    host.ok("umount", &["-f", &format!("{}/dev", root.display())]);
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/t1"]);
    let clean = host.check();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    let calls = std::fs::read_to_string(host.join("state/calls.jsonl")).unwrap();
    // Each line also carries the call's start_us/end_us, which vary.
    assert!(
        calls.lines().any(|l| {
            let call: serde_json::Value = serde_json::from_str(l).unwrap();
            call["argv"] == serde_json::json!(["jexec", "t1", "/bin/sh", "-c", "echo hi; exit 3"])
                && call["exit"] == 3
        }),
        "{calls}"
    );
}

/// Runs `zfs receive NAME` with `stream` on stdin; returns whether all of it was written and
/// the tool's output.
fn receive(host: &Host, name: &str, stream: &[u8]) -> (bool, Output) {
    let mut recv = host
        .command("zfs")
        .args(["receive", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = recv.stdin.take().unwrap().write_all(stream).is_ok();
    (written, recv.wait_with_output().unwrap())
}

fn receiver(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["receiver", host.dir()];
    all.extend_from_slice(args);
    let o = sim(&all);
    assert!(o.status.success(), "receiver {args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_draining_receiver_reads_the_whole_stream_and_creates_the_datasets_only() {
    let host = Host::new("drain");
    // 2 MiB of filler: far more than a pipe holds, so the whole write returns only once the
    // receiver has read nearly all of it.
    let stream = image_stream(&host.join("images"), &["--filler-mb", "2"]);
    assert!(stream.len() > 2 << 20);

    assert_eq!(
        receiver(&host, &[]),
        "write\n",
        "the default receiver writes"
    );
    receiver(&host, &["drain"]);
    assert_eq!(receiver(&host, &[]), "drain\n");

    let name = "zroot/pot/jails/web_importing";
    let exists = |ds: &str| {
        host.tool("zfs", &["list", "-H", "-o", "name", ds])
            .status
            .success()
    };
    // Truncated anywhere, or followed by more data: refused, nothing created.
    for bad in [
        stream[..stream.len() / 2].to_vec(),
        stream[..stream.len() - 1].to_vec(),
        [&stream[..], b"x"].concat(),
    ] {
        let (_, o) = receive(&host, name, &bad);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("stream is truncated") || err.contains("trailing data"),
            "{err}"
        );
        assert!(!exists(name), "a refused stream leaves no dataset");
    }
    // A wrong byte count in the trailer: the framing check catches it (a drain computes no
    // checksum, so a byte altered inside a file would pass; the engine's hash catches that).
    let mut corrupt = stream.clone();
    corrupt[stream.len() - 40] ^= 1;
    let (_, o) = receive(&host, name, &corrupt);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stream is corrupt"), "{err}");
    assert!(!exists(name));

    let (written, o) = receive(&host, name, &stream);
    assert!(written, "the receiver read the whole stream");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps = host.ok(
        "zfs",
        &["list", "-H", "-r", "-t", "snapshot", "-o", "name", name],
    );
    assert_eq!(
        snaps.lines().count(),
        2,
        "the dataset and its m, each with its snapshot: {snaps}"
    );
    // What an import does next works on the drained datasets.
    host.ok("zfs", &["set", "nomad-pot-driver:image=web_1.0.xz@1", name]);
    host.ok("zfs", &["rename", name, "zroot/pot/jails/web_1_0"]);
    let listed = host.ok(
        "zfs",
        &[
            "list",
            "-H",
            "-o",
            "name,nomad-pot-driver:image",
            "zroot/pot/jails/web_1_0",
        ],
    );
    assert_eq!(listed, "zroot/pot/jails/web_1_0\tweb_1.0.xz@1\n");
    let m = host.join("root/opt/pot/jails/web_1_0/m");
    assert!(m.is_dir());
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), 0, "no file written");

    receiver(&host, &["write"]);
    assert!(
        !host.join("state/receiver").exists(),
        "write is the absence of the setting"
    );
    let (_, o) = receive(&host, "zroot/pot/jails/web_2", &stream);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(host.join("root/opt/pot/jails/web_2/m/etc/sim-image")).unwrap(),
        "web_1.0\n"
    );
}

trait ReadAll {
    fn read_to_end_into(self, out: &mut Vec<u8>);
}

impl<R: std::io::Read> ReadAll for R {
    fn read_to_end_into(mut self, out: &mut Vec<u8>) {
        self.read_to_end(out).expect("decompress image");
    }
}

/// `freebsd-sim check` lines naming a live jail process.
fn jail_processes(host: &Host) -> Vec<String> {
    stderr(&host.check())
        .lines()
        .filter(|l| l.starts_with("jail process"))
        .map(String::from)
        .collect()
}

#[test]
fn a_sigkilled_jexec_takes_its_command_along() {
    let host = Host::new("kill");
    let root = host.join("root/opt/pot/jails/k");
    std::fs::create_dir_all(&root).unwrap();
    let path = format!("path={}", root.display());
    host.ok("jail", &["-c", "name=k", &path, "persist"]);
    let mut jexec = host
        .command("jexec")
        .args(["k", "sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while jail_processes(&host).is_empty() {
        assert!(Instant::now() < deadline, "jexec never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    // On FreeBSD jexec's pid is the command's: SIGKILL to it ends the command.
    jexec.kill().unwrap();
    assert_eq!(jexec.wait().unwrap().signal(), Some(9));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !jail_processes(&host).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the command outlived its jexec: {:?}",
            jail_processes(&host)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    host.ok("jail", &["-R", "k"]);
}

fn receive_with(host: &Host, args: &[&str], stream: &[u8]) -> Output {
    let mut recv = host
        .command("zfs")
        .arg("receive")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    recv.stdin.take().unwrap().write_all(stream).unwrap();
    recv.wait_with_output().unwrap()
}

#[test]
fn received_properties_place_and_mount_datasets_as_zfs_does() {
    let host = Host::new("props");
    let images = host.join("images");
    let stream = image_stream(
        &images,
        &[
            "--prop",
            "mountpoint=/anywhere",
            "--m-prop",
            "canmount=noauto",
        ],
    );
    // Received as is: the pot mounts where its sender said, its m (canmount=noauto) not at all.
    let o = receive_with(&host, &["zroot/pot/jails/web_1_0"], &stream);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let props = |name: &str| {
        host.ok(
            "zfs",
            &[
                "get",
                "-H",
                "-o",
                "value",
                "mountpoint,mounted,canmount",
                name,
            ],
        )
    };
    assert_eq!(
        props("zroot/pot/jails/web_1_0"),
        "/anywhere\nyes\non\n",
        "the stream's mountpoint applies"
    );
    assert_eq!(
        props("zroot/pot/jails/web_1_0/m"),
        "/anywhere/m\nno\nnoauto\n"
    );
    assert!(host.join("root/anywhere/conf/pot.conf").is_file());
    let report = stderr(&host.check());
    assert!(
        report.contains("dataset zroot/pot/jails/web_1_0 is mounted at /anywhere, outside fs_root"),
        "{report}"
    );
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/web_1_0"]);
    assert!(!host.join("root/anywhere/conf").exists());

    // Received unmounted, with the stream's mountpoint and canmount excluded: inherited, and
    // mounted under fs_root only on request.
    let o = receive_with(
        &host,
        &[
            "-u",
            "-x",
            "mountpoint",
            "-x",
            "canmount",
            "zroot/pot/jails/web_1_0",
        ],
        &stream,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pot = host.join("root/opt/pot/jails/web_1_0");
    assert_eq!(
        props("zroot/pot/jails/web_1_0/m"),
        format!("{}/m\nno\non\n", pot.display())
    );
    assert!(!pot.join("conf").exists(), "-u mounts nothing");
    host.ok("zfs", &["mount", "zroot/pot/jails/web_1_0"]);
    host.ok("zfs", &["mount", "zroot/pot/jails/web_1_0/m"]);
    assert!(pot.join("conf/pot.conf").is_file() && pot.join("m/etc/sim-image").is_file());
    let again = host.tool("zfs", &["mount", "zroot/pot/jails/web_1_0"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "cannot mount 'zroot/pot/jails/web_1_0': filesystem already mounted\n"
    );
    assert_eq!(stderr(&host.check()), "");
}

#[test]
fn created_datasets_mount_unless_told_not_to() {
    let host = Host::new("create");
    let jails = host.join("root/opt/pot/jails");
    let mounted = |name: &str| {
        host.ok(
            "zfs",
            &[
                "get",
                "-H",
                "-o",
                "value",
                "mounted",
                &format!("zroot/pot/jails/{name}"),
            ],
        )
    };
    host.ok("zfs", &["create", "zroot/pot/jails/a"]);
    host.ok("zfs", &["create", "-u", "zroot/pot/jails/b"]);
    host.ok(
        "zfs",
        &["create", "-o", "canmount=noauto", "zroot/pot/jails/c"],
    );
    host.ok(
        "zfs",
        &["create", "-o", "canmount=off", "zroot/pot/jails/d"],
    );
    assert_eq!(mounted("a"), "yes\n");
    assert!(jails.join("a").is_dir());
    for name in ["b", "c", "d"] {
        assert_eq!(mounted(name), "no\n", "{name}");
        assert!(!jails.join(name).exists(), "{name}");
    }
    let again = host.tool("zfs", &["create", "zroot/pot/jails/b"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "cannot create 'zroot/pot/jails/b': dataset already exists\n"
    );
    host.ok("zfs", &["mount", "zroot/pot/jails/b"]);
    assert!(jails.join("b").is_dir());
    for name in ["a", "b", "c", "d"] {
        host.ok("zfs", &["destroy", &format!("zroot/pot/jails/{name}")]);
    }
    assert_eq!(stderr(&host.check()), "");
}

#[test]
fn under_an_encrypted_root_an_image_stays_encrypted_only_without_its_encryption_property() {
    let (host, _) = Host::init("enc", &["--encrypted"]);
    let enc = |name: &str| {
        host.ok("zfs", &["get", "-H", "-o", "value", "encryption", name])
            .trim()
            .to_string()
    };
    assert_eq!(enc("zroot/pot/jails"), "aes-256-gcm");
    // pot asks whether ZFS knows the property before it passes `-x encryption`.
    let props = host.ok("zfs", &["get", "-H", "-o", "property", "all", "zroot/pot"]);
    assert!(props.lines().any(|p| p == "encryption"), "{props}");
    let stream = image_stream(&host.join("images"), &[]);

    // A plain receive of a non-raw replication stream: accepted, and unencrypted.
    let o = receive_with(&host, &["zroot/pot/jails/plain"], &stream);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(enc("zroot/pot/jails/plain/m"), "off");
    host.ok("zfs", &["create", "zroot/pot/jails/t"]);
    let snap = host.ok(
        "zfs",
        &[
            "list",
            "-H",
            "-t",
            "snapshot",
            "-o",
            "name",
            "zroot/pot/jails/plain/m",
        ],
    );
    host.ok("zfs", &["clone", snap.trim(), "zroot/pot/jails/t/m"]);
    assert_eq!(
        enc("zroot/pot/jails/t/m"),
        "off",
        "a clone follows its origin"
    );
    let report = stderr(&host.check());
    assert!(
        report.contains(
            "dataset zroot/pot/jails/plain/m is not encrypted below the encrypted zroot/pot"
        ),
        "{report}"
    );
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/t"]);
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/plain"]);

    // With `-x encryption`, as pot receives: the datasets inherit the root's encryption.
    let o = receive_with(&host, &["-x", "encryption", "zroot/pot/jails/web"], &stream);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(enc("zroot/pot/jails/web/m"), "aes-256-gcm");
    let set = host.tool("zfs", &["set", "encryption=off", "zroot/pot/jails/web"]);
    assert_eq!(
        String::from_utf8_lossy(&set.stderr),
        "cannot set property for 'zroot/pot/jails/web': 'encryption' is readonly\n"
    );
    assert_eq!(stderr(&host.check()), "");
}
