//! Dying jails, POSIX shm objects and the "already gone" answers of the tools, through the
//! built binary (README "Dying jails" and "Already gone, already done").

use std::path::{Path, PathBuf};

use std::time::Duration;

mod common;

use common::{Host, sim, stderr, wait_until};

impl Host {
    /// `name`'s answer to `args` must be exit 1 with exactly `message` on stderr.
    fn fails_with(&self, name: &str, args: &[&str], message: &str) {
        assert_eq!(
            self.fails(name, args).trim_end(),
            message,
            "{name} {args:?}"
        );
    }

    /// A pot-like dataset `zroot/pot/jails/NAME` with its `m`, and a jail rooted at `m`.
    fn jail(&self, name: &str) -> PathBuf {
        self.ok("zfs", &["create", &format!("zroot/pot/jails/{name}")]);
        self.ok("zfs", &["create", &format!("zroot/pot/jails/{name}/m")]);
        let root = self.0.join(format!("root/opt/pot/jails/{name}/m"));
        let path = format!("path={}", root.display());
        self.ok("jail", &["-c", &format!("name={name}"), &path, "persist"]);
        root
    }
}

#[test]
fn a_removed_jail_stays_dying_for_the_hosts_dying_time_and_keeps_its_datasets_busy() {
    let host = Host::new("dying");
    assert_eq!(sim(&["dying", host.dir()]).stdout, b"0\n");
    assert!(sim(&["dying", host.dir(), "1.5"]).status.success());
    let root = host.jail("web_1");
    host.ok("jail", &["-r", "web_1"]);

    assert_eq!(
        host.ok("jls", &["jid", "name"]),
        "",
        "jls lists live jails only"
    );
    assert_eq!(
        host.ok("jls", &["-d", "jid", "name", "dying"]),
        "1 web_1 true\n"
    );
    host.fails_with("jls", &["-j", "web_1"], "jls: jail \"web_1\" is dying");
    host.fails_with("jls", &["-j", "1"], "jls: jail 1 is dying");
    assert_eq!(host.ok("jls", &["-d", "-j", "web_1", "dying"]), "true\n");
    host.fails_with("jail", &["-r", "web_1"], "jail: \"web_1\" not found");
    host.fails_with(
        "zfs",
        &["destroy", "-r", "zroot/pot/jails/web_1"],
        &format!(
            "cannot unmount '{}': pool or dataset is busy",
            root.display()
        ),
    );
    // A new jail of the same name is another prison (a new JID) beside the dying one.
    host.ok("zfs", &["create", "zroot/pot/jails/web_1b"]);
    let other = host.0.join("root/opt/pot/jails/web_1b");
    host.ok(
        "jail",
        &[
            "-c",
            "name=web_1",
            &format!("path={}", other.display()),
            "persist",
        ],
    );
    assert_eq!(
        host.ok("jls", &["-d", "jid", "name", "dying"]),
        "1 web_1 true\n2 web_1 false\n"
    );
    host.ok("jail", &["-R", "web_1"]);
    // Nothing holds them but time, so check reports no leftover: the kernel frees them.
    assert!(host.check().status.success(), "{}", stderr(&host.check()));
    wait_until("the dying jails are freed", 10, || {
        host.ok("jls", &["-d", "jid"]).is_empty()
    });
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/web_1"]);
    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/web_1b"]);
}

#[test]
fn force_destroys_the_datasets_of_a_dying_jail() {
    let host = Host::new("dying-f");
    assert!(sim(&["dying", host.dir(), "60"]).status.success());
    host.jail("web_1");
    host.ok("jail", &["-R", "web_1"]);
    host.ok("zfs", &["destroy", "-f", "-r", "zroot/pot/jails/web_1"]);
    assert_eq!(host.ok("jls", &["-d", "name"]), "web_1\n", "still dying");
    assert!(host.check().status.success(), "{}", stderr(&host.check()));
}

#[test]
fn a_jails_shm_object_keeps_it_dying_until_posixshmcontrol_removes_it() {
    let host = Host::new("shm");
    let root = host.jail("pg_1");
    let made = sim(&[
        "shm",
        host.dir(),
        "pg_1",
        "/PostgreSQL.1329587820",
        "16580608",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let path = format!("{}/PostgreSQL.1329587820", root.display());
    assert_eq!(String::from_utf8_lossy(&made.stdout), format!("{path}\n"));
    host.ok("posixshmcontrol", &["create", "/host-object"]);
    let header = "MODE    \tOWNER\tGROUP\tSIZE\tPATH\n";
    assert_eq!(
        host.ok("posixshmcontrol", &["ls"]),
        format!(
            "{header}rw-------\troot\twheel\t16580608\t{path}\nrw-------\troot\twheel\t0\t/host-object\n"
        )
    );
    assert_eq!(
        host.ok("posixshmcontrol", &["ls", "-n", "-h", "-j", "pg_1"]),
        format!("{header}rw-------\t0\t0\t16192K\t{path}\n")
    );

    host.ok("jail", &["-r", "pg_1"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        host.ok("jls", &["-d", "name"]),
        "pg_1\n",
        "held by its shm object"
    );
    let report = stderr(&host.check());
    assert!(
        report.contains(&format!(
            "jail pg_1 (jid 1) is dying, held by POSIX shm object {path}"
        )) && report.contains(&format!("POSIX shm object {path} (of jid 1) exists")),
        "{report}"
    );

    // pot's stop.sh: every object whose path lies under the pot's directory.
    let listed = host.ok("posixshmcontrol", &["ls"]);
    let pot_dir = format!("{}/", root.parent().unwrap().display());
    let mine: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split('\t').nth(4))
        .filter(|p| p.starts_with(&pot_dir))
        .collect();
    assert_eq!(mine, [path.as_str()]);
    host.ok("posixshmcontrol", &["rm", mine[0]]);
    assert_eq!(
        host.ok("jls", &["-d", "name"]),
        "",
        "freed with its last reference"
    );
    host.fails_with(
        "posixshmcontrol",
        &["rm", &path],
        &format!("posixshmcontrol: unlink of {path} failed: No such file or directory"),
    );
    let usage = host.tool("posixshmcontrol", &["rm"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).starts_with("Usage:\nposixshmcontrol create"));

    host.ok("zfs", &["destroy", "-r", "zroot/pot/jails/pg_1"]);
    host.ok("posixshmcontrol", &["rm", "/host-object"]);
    assert!(host.check().status.success(), "{}", stderr(&host.check()));
}

#[test]
fn rctl_remove_without_a_matching_rule_is_esrch() {
    let host = Host::new("rctl");
    host.ok("rctl", &["-a", "jail:web_10:memoryuse:deny=1048576"]);
    host.fails_with(
        "rctl",
        &["-r", "jail:web_1"],
        "rctl: failed to remove rule 'jail:web_1': No such process",
    );
    assert_eq!(
        host.ok("rctl", &[]),
        "jail:web_10:memoryuse:deny=1048576\n",
        "a filter matches whole fields, not a prefix"
    );
    host.ok("rctl", &["-r", "jail:web_10"]);
    host.fails_with(
        "rctl",
        &["-r", "jail:web_10"],
        "rctl: failed to remove rule 'jail:web_10': No such process",
    );
}

#[test]
fn already_gone_and_already_done_fail_as_on_freebsd() {
    let host = Host::new("gone");
    host.fails_with(
        "ifconfig",
        &["epair9a", "destroy"],
        "ifconfig: interface epair9a does not exist",
    );
    let dir = Path::new(host.dir()).join("root/tmp");
    host.fails_with(
        "umount",
        &["-f", dir.to_str().unwrap()],
        &format!(
            "umount: {}: not a file system root directory",
            dir.display()
        ),
    );
    host.ok("pfctl", &["-e"]);
    host.fails_with("pfctl", &["-e"], "pfctl: pf already enabled");
    host.ok("pfctl", &["-d"]);
    host.fails_with("pfctl", &["-d"], "pfctl: pf not enabled");
    host.fails_with(
        "zfs",
        &["destroy", "-f", "-r", "zroot/pot/jails/nope"],
        "cannot open 'zroot/pot/jails/nope': dataset does not exist",
    );
    host.fails_with("jail", &["-R", "nope"], "jail: \"nope\" not found");
    host.fails_with(
        "route",
        &["delete", "10.9.9.9"],
        "route: route has not been found",
    );
}

/// umount(8) with several targets unmounts every one it can and names each it cannot, exiting 1
/// if any failed: a target not mounted in the middle stops none of the others.
#[test]
fn umount_of_several_targets_goes_on_past_a_failed_one() {
    let host = Host::new("umounts");
    let root = Path::new(host.dir()).join("root/tmp");
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|d| root.join(d)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for d in [&dirs[0], &dirs[2]] {
        host.ok("mount", &["-t", "nullfs", "-o", "ro", &s(&root), &s(d)]);
    }
    let all: Vec<String> = dirs.iter().map(|d| s(d)).collect();
    let mut args = vec!["-f"];
    args.extend(all.iter().map(String::as_str));
    host.fails_with(
        "umount",
        &args,
        &format!("umount: {}: not a file system root directory", all[1]),
    );
    assert_eq!(host.ok("mount", &["-p"]).matches("nullfs").count(), 0);
    host.ok("mount", &["-t", "nullfs", "-o", "ro", &s(&root), &all[0]]);
    host.ok("umount", &["-f", &all[0]]);
}
