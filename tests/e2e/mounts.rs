//! Job options: mount, mount_read_only, copy, extra_hosts, attributes, and the refusals of
//! their trust boundary.

use std::time::Duration;

use crate::common::env::*;
use serde_json::{Value as Json, json};

#[tokio::test(flavor = "multi_thread")]
async fn job_mounts_copies_hosts_and_attributes() {
    let outside = tempfile::tempdir().unwrap();
    let shared = outside.path().join("shared");
    std::fs::create_dir_all(shared.join("www")).unwrap();
    std::fs::write(shared.join("www/index"), "from-www\n").unwrap();
    std::fs::write(shared.join("app.conf"), "key=from-copy\n").unwrap();
    let shared = std::fs::canonicalize(&shared).unwrap();
    let env = Env::with_agent_config(json!({
        "allowed_host_paths": [shared.display().to_string()],
        "allowed_attributes": ["devfs_ruleset"],
    }))
    .await;
    let script = "cat /etc/app.conf /www/index; echo written > /data/out; \
                  (echo x > /www/new) 2>/dev/null && echo RO-VIOLATED; \
                  cat /etc/hosts; cat /opt/tree/file; echo done";
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", script],
        "mount": ["local/data:/data"],
        "mount_read_only": [format!("{}:/www", shared.join("www").display())],
        "copy": [
            // Onto a directory: the file lands inside it, as with cp.
            format!("{}:/etc", shared.join("app.conf").display()),
            "local/tree:/opt/tree",
        ],
        "extra_hosts": ["db:10.1.2.3", "db6:2001:db8::1"],
        "attributes": ["devfs_ruleset:3", "exec_stop:/bin/echo bye"],
    });
    let t = env.task("opts", &cfg);
    let local = t.alloc_dir.join("opts/local");
    std::fs::create_dir_all(local.join("data")).unwrap();
    std::fs::create_dir_all(local.join("tree")).unwrap();
    std::fs::write(local.join("tree/file"), "tree-file\n").unwrap();
    // Copied as a symlink: later mounts through it must still land inside the jail.
    std::os::unix::fs::symlink("/", local.join("tree/up")).unwrap();
    env.start(&t).await;
    let pot = pot_of(&t).to_string();
    let dir = env.jail_root(&pot);
    let root = dir.join("m");

    let w = env.wait(&t.id(), 30.0).await;
    // The exit can be reported before the log reader has drained the FIFO.
    assert!(
        t.logs.wait_for_eof(Duration::from_secs(5)).await,
        "stdout never reached EOF"
    );
    let out = t.logs.stdout();
    assert_eq!(
        w.result.map(|r| r.exit_code),
        Some(0),
        "stdout {out:?} stderr {:?}",
        t.logs.stderr()
    );
    for line in [
        "key=from-copy",
        "from-www",
        "127.0.0.1 localhost",
        "10.1.2.3 db\n",
        "2001:db8::1 db6\n",
        "tree-file",
        "done",
    ] {
        assert!(out.contains(line), "stdout lacks {line:?}: {out:?}");
    }
    assert!(!out.contains("RO-VIOLATED"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(local.join("data/out")).unwrap(),
        "written\n"
    );

    let real_data = std::fs::canonicalize(local.join("data")).unwrap();
    let mounts = env.calls_starting(&["mount", "-t", "nullfs"]);
    let expect = |opt: &str, src: &std::path::Path, target: &str| {
        let want: Vec<String> = ["mount", "-t", "nullfs", "-o", opt]
            .iter()
            .map(|s| s.to_string())
            .chain([
                src.display().to_string(),
                root.join(target).display().to_string(),
            ])
            .collect();
        assert!(mounts.contains(&want), "no {want:?} in {mounts:#?}");
    };
    expect("rw", &real_data, "data");
    expect("ro", &shared.join("www"), "www");
    let conf = std::fs::read_to_string(dir.join("conf/pot.conf")).unwrap();
    for line in [
        "pot.hosts=10.1.2.3 db\n",
        "pot.hosts=2001:db8::1 db6\n",
        "pot.attr.devfs_ruleset=3\n",
        "pot.attr.enforce_statfs=2\n",
        "pot.attr.exec_stop=/bin/echo bye\n",
    ] {
        assert!(conf.contains(line), "pot.conf lacks {line:?}:\n{conf}");
    }
    let fscomp = std::fs::read_to_string(dir.join("conf/fscomp.conf")).unwrap();
    assert!(
        fscomp.ends_with(&format!(
            "{} /data\n{} /www ro\n",
            real_data.display(),
            shared.join("www").display()
        )),
        "{fscomp}"
    );
    let jail = env.calls_starting(&["jail", "-i", "-c"]);
    let params = &jail.last().expect("jail -c").clone();
    for p in [
        "devfs_ruleset=3",
        "enforce_statfs=2",
        "children.max=0",
        "exec.stop=/bin/echo bye",
    ] {
        assert!(
            params.iter().any(|a| a == p),
            "jail -c lacks {p}: {params:?}"
        );
    }
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_targets_resolve_inside_the_jail() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "cat /escaped/f"],
        // /opt/tree/up is a symlink to "/" copied in from the task: as the jail sees it, it is
        // the jail's root, not the host's.
        "copy": ["local/tree:/opt/tree"],
        "mount_read_only": ["local/data:/opt/tree/up/escaped"],
    });
    let t = env.task("links", &cfg);
    let local = t.alloc_dir.join("links/local");
    std::fs::create_dir_all(local.join("tree")).unwrap();
    std::fs::create_dir_all(local.join("data")).unwrap();
    std::fs::write(local.join("data/f"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/", local.join("tree/up")).unwrap();
    env.start(&t).await;
    let root = env.jail_root(&pot_of(&t).to_string()).join("m");
    let w = env.wait(&t.id(), 30.0).await;
    assert_eq!(w.result.map(|r| r.exit_code), Some(0));
    assert!(t.logs.stdout().contains("inside"), "{:?}", t.logs.stderr());
    let targets: Vec<String> = env
        .calls_starting(&["mount", "-t", "nullfs"])
        .into_iter()
        .map(|a| a[a.len() - 1].clone())
        .collect();
    assert!(
        targets.contains(&root.join("escaped").display().to_string()),
        "{targets:?}"
    );
    assert!(
        targets
            .iter()
            .all(|t| t.starts_with(&root.display().to_string())),
        "a mount left the jail root: {targets:?}"
    );
    assert!(!std::path::Path::new("/escaped").exists());
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_paths_and_attributes_outside_the_boundary_are_refused() {
    let env = Env::new().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let other = env.task(
        "other",
        &json!({"image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0"}),
    );
    let base = json!({
        "image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    });
    let out = outside.path().display().to_string();
    let cases: Vec<(&str, Json, &str)> = vec![
        (
            "mount",
            json!([format!("{out}:/data")]),
            "allowed_host_paths",
        ),
        ("mount", json!(["local/escape:/data"]), "allowed_host_paths"),
        (
            "mount",
            json!(["local/../../../..:/data"]),
            "allowed_host_paths",
        ),
        (
            "mount_read_only",
            json!([format!("{}:/other", other.alloc_dir.display())]),
            "allowed_host_paths",
        ),
        (
            "copy",
            json!([format!("{out}/secret:/etc/secret")]),
            "allowed_host_paths",
        ),
        ("copy", json!(["local/nothing-here:/x"]), "No such file"),
        (
            "copy",
            json!(["local/fifo:/x"]),
            "not a regular file or directory",
        ),
        ("mount", json!(["local:/"]), "root"),
        ("mount", json!(["local:relative"]), "absolute"),
        ("mount", json!(["local:/a b"]), "whitespace"),
        ("mount", json!(["no-colon"]), "host_path:jail_path"),
        (
            "attributes",
            json!(["enforce_statfs:1"]),
            "allowed_attributes",
        ),
        ("attributes", json!(["nullfs:YES"]), "allowed_attributes"),
        ("attributes", json!(["children:10"]), "allowed_attributes"),
        ("attributes", json!(["bogus:1"]), "unknown attribute"),
        ("attributes", json!(["persistent:YES"]), "pot attribute"),
        ("extra_hosts", json!(["db:10.1.2"]), "not an IP address"),
    ];
    for (i, (key, value, needle)) in cases.iter().enumerate() {
        let mut cfg = base.clone();
        cfg[*key] = value.clone();
        let t = env.task(&format!("refused{i}"), &cfg);
        std::os::unix::fs::symlink(
            outside.path(),
            t.alloc_dir.join(format!("refused{i}/local/escape")),
        )
        .unwrap();
        nix::unistd::mkfifo(
            &t.alloc_dir.join(format!("refused{i}/local/fifo")),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let s = env.start_err(&t).await;
        assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "{key} {value}: {s:?}"
        );
        assert!(
            s.message().contains(&format!("{key}[0]")) || *key == "attributes",
            "{key} {value}: the error should name the entry: {s:?}"
        );
        assert!(
            s.message().contains(needle),
            "{key} {value}: error should say {needle:?}: {s:?}"
        );
    }
    let touched: Vec<String> = env
        .sim
        .calls()
        .iter()
        .map(|c| c.line())
        .filter(|l| {
            [
                "zfs create",
                "zfs clone",
                "zfs receive",
                "jail ",
                "mount -t",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(
        touched.is_empty(),
        "refused jobs reached the host: {touched:?}"
    );
    for (key, value) in [
        ("allowed_attributes", json!(["persistent"])),
        ("allowed_host_paths", json!(["relative/dir"])),
    ] {
        let cfg = env.sim.agent_config_with(json!({ key: value }));
        let s = set_config(&env.plugin, &cfg, true)
            .await
            .expect_err("SetConfig must refuse it");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(key), "{s:?}");
    }
    env.finish().await;
}
