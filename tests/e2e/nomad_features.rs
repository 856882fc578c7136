//! Nomad-native task features: `nomad alloc exec` (ExecTaskStreaming over pipes and over a
//! pty), user, dns, volume_mount, NOMAD_*_DIR and the exact environment.

use std::time::Duration;

use crate::common::env::*;
use crate::common::{TaskBuilder, within};
use nomad_pot_driver::proto::drivers::CapabilitiesRequest;
use serde_json::json;

/// Runs one streaming exec and returns (stdout, stderr, exit code, close frames seen).
async fn exec_streaming(
    env: &Env,
    task_id: &str,
    command: &[&str],
    tty: bool,
    input: &[u8],
) -> (String, String, i32, usize) {
    use nomad_pot_driver::proto::drivers::{
        ExecTaskStreamingIoOperation, ExecTaskStreamingRequest,
        exec_task_streaming_request::{Setup, TerminalSize},
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(ExecTaskStreamingRequest {
        setup: Some(Setup {
            task_id: task_id.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            tty,
        }),
        tty_size: tty.then_some(TerminalSize {
            height: 40,
            width: 100,
        }),
        stdin: None,
    })
    .await
    .unwrap();
    if !input.is_empty() {
        let stdin = |data: Vec<u8>, close| ExecTaskStreamingRequest {
            stdin: Some(ExecTaskStreamingIoOperation { data, close }),
            ..Default::default()
        };
        tx.send(stdin(input.to_vec(), false)).await.unwrap();
        tx.send(stdin(Vec::new(), true)).await.unwrap();
    }
    // An empty message is a heartbeat and must be ignored.
    tx.send(ExecTaskStreamingRequest::default()).await.unwrap();
    let mut stream = within(
        10.0,
        "ExecTaskStreaming",
        env.plugin
            .driver()
            .exec_task_streaming(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("ExecTaskStreaming")
    .into_inner();
    let (mut out, mut err, mut closes) = (Vec::new(), Vec::new(), 0);
    let code = within(20.0, "exec output", async {
        loop {
            let msg = stream
                .message()
                .await
                .expect("exec stream error")
                .expect("exec stream ended before `exited`");
            for (io, buf) in [(&msg.stdout, &mut out), (&msg.stderr, &mut err)] {
                if let Some(io) = io {
                    buf.extend_from_slice(&io.data);
                    closes += usize::from(io.close);
                }
            }
            if msg.exited {
                break msg.result.expect("exited without result").exit_code;
            }
        }
    })
    .await;
    drop(tx);
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
        closes,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streaming_over_pipes_and_a_pty() {
    let env = Env::new().await;
    let cfg = env.sh_config("echo ready; while :; do sleep 1; done");
    let t = env.task("execd", &cfg);
    env.start_ready(&t).await;

    let (out, err, code, closes) = exec_streaming(
        &env,
        &t.id(),
        &["/bin/sh", "-c", "read x; echo got:$x; echo err >&2; exit 4"],
        false,
        b"hello\n",
    )
    .await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("got:hello\n", "err\n", 4)
    );
    assert_eq!(closes, 2, "stdout and stderr each end with a close frame");

    let (out, _, code, _) = exec_streaming(
        &env,
        &t.id(),
        &["/bin/sh", "-c", "stty size; exit 2"],
        true,
        b"",
    )
    .await;
    assert!(
        out.contains("40 100"),
        "the pty has the requested size: {out:?}"
    );
    assert_eq!(code, 2);

    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_dns_volumes_and_task_dirs() {
    use nomad_pot_driver::proto::drivers::{DnsConfig, ExecTaskRequest, Mount};
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "from-volume\n").unwrap();
    let vol_path = std::fs::canonicalize(vol.path()).unwrap();
    let env =
        Env::with_agent_config(json!({"allowed_host_paths": [vol_path.display().to_string()]}))
            .await;
    let caps = within(
        5.0,
        "Capabilities",
        env.plugin.driver().capabilities(CapabilitiesRequest {}),
    )
    .await
    .expect("Capabilities")
    .into_inner()
    .capabilities
    .unwrap();
    assert_eq!(caps.mount_configs, 0, "host volumes must be accepted");

    let script = "id -u; cat /etc/resolv.conf /vol/f; \
                  (echo x > /vol/w) 2>/dev/null || echo vol-read-only; \
                  echo in-task-dir > \"$NOMAD_TASK_DIR/t\"; echo in-alloc-dir > \"$NOMAD_ALLOC_DIR/data/a\"; \
                  echo ready; while [ ! -e /local/go ]; do sleep 0.1; done";
    let cfg = env.sh_config(script);
    let mut t = env.task("native", &cfg);
    t.config.user = "nobody".into();
    t.config.dns = Some(DnsConfig {
        servers: vec!["10.0.0.53".into(), "2001:db8::53".into()],
        searches: vec!["service.consul".into()],
        options: vec!["ndots:2".into()],
    });
    t.config.mounts = vec![Mount {
        task_path: "/vol".into(),
        host_path: vol_path.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    // Nomad makes these world-writable, so tasks with a `user` can write there.
    for d in ["native/local", "alloc/data"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.alloc_dir.join(d), std::fs::Permissions::from_mode(0o777))
            .unwrap();
    }
    env.start_ready(&t).await;
    let out = t.logs.stdout();
    let resolv = "# Generated by nomad-pot-driver from the job's dns block\nnameserver 10.0.0.53\n\
                  nameserver 2001:db8::53\nsearch service.consul\noptions ndots:2\n";
    assert!(
        out.starts_with(&format!("65534\n{resolv}from-volume\nvol-read-only\n")),
        "{out:?} / {:?}",
        t.logs.stderr()
    );
    let task_dir = t.alloc_dir.join("native");
    assert_eq!(
        std::fs::read_to_string(task_dir.join("local/t")).unwrap(),
        "in-task-dir\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.alloc_dir.join("alloc/data/a")).unwrap(),
        "in-alloc-dir\n"
    );
    assert_eq!(t.config.env["NOMAD_TASK_DIR"], "/local");
    let pot = pot_of(&t).to_string();
    let conf = std::fs::read_to_string(env.jail_root(&pot).join("conf/pot.conf")).unwrap();
    assert!(conf.contains("pot.dns=custom\n"), "{conf}");

    // ExecTask runs as the task's user too.
    let r = within(
        10.0,
        "ExecTask",
        env.plugin.driver().exec_task(ExecTaskRequest {
            task_id: t.id(),
            command: vec!["/usr/bin/id".into(), "-un".into()],
            timeout: Some(dur(5)),
        }),
    )
    .await
    .expect("ExecTask")
    .into_inner();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "nobody\n");
    // So does `nomad alloc exec` (ExecTaskStreaming).
    let (out, _, code, _) =
        exec_streaming(&env, &t.id(), &["/usr/bin/id", "-un"], false, b"").await;
    assert_eq!((out.as_str(), code), ("nobody\n", 0));
    open_gate(&t);
    env.wait(&t.id(), 10.0).await;
    // calls.jsonl records a call when it ends: the task's and the exec's, both as nobody.
    let programs: Vec<String> = env
        .calls_starting(&["jexec", "-U", "nobody", &pot])
        .into_iter()
        .map(|a| a[4].clone())
        .collect();
    assert_eq!(programs, ["/usr/bin/id", "/usr/bin/id", "/bin/sh"]);
    env.destroy(&t.id()).await;

    // A user the image does not know, and an unusable dns block, are refused before the jail.
    let mut bad_user = env.task("nouser", &cfg);
    bad_user.config.user = "mallory".into();
    let s = env.start_err(&bad_user).await;
    assert!(s.message().contains("\"mallory\" does not exist"), "{s:?}");
    let mut bad_dns = env.task("nodns", &cfg);
    bad_dns.config.dns = Some(DnsConfig {
        servers: vec!["10.0.0.53\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    let s = env.start_err(&bad_dns).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("dns: server"), "{s:?}");
    let mut bad_vol = env.task("novol", &cfg);
    bad_vol.config.mounts = vec![Mount {
        task_path: "/etc".into(),
        host_path: "/etc".into(),
        ..Default::default()
    }];
    let s = env.start_err(&bad_vol).await;
    assert!(
        s.message().contains("volume_mount \"/etc\"") && s.message().contains("allowed_host_paths"),
        "{s:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_env_reaches_the_process_byte_for_byte() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/usr/bin/env", "args": ["-0"],
    });
    let values = [
        ("QUOTES", "it's \"quoted\" `back`"),
        ("DOLLAR", "$HOME ${PATH} $(id -u) $$"),
        ("NEWLINES", "line1\nline2\n"),
        ("EQUALS", "a=b==c="),
        ("SHELL_META", "; rm -rf / # | & > < * ? [ ] ~ \\"),
        ("UNICODE", "grüße ✓ 日本"),
        ("EMPTY", ""),
    ];
    let mut b = TaskBuilder::new("envdump", env.encode_task(&cfg));
    for (k, v) in values {
        b = b.env(k, v);
    }
    let t = b.build(&env.sim.allocs_dir());
    env.start(&t).await;
    let w = env.wait(&t.id(), 30.0).await;
    assert_eq!(
        w.result.map(|r| r.exit_code),
        Some(0),
        "{:?}",
        t.logs.stderr()
    );
    assert!(t.logs.wait_for_eof(Duration::from_secs(5)).await);
    let got: std::collections::BTreeMap<String, String> = t
        .logs
        .stdout()
        .split_terminator('\0')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut want: std::collections::BTreeMap<String, String> =
        t.config.env.clone().into_iter().collect();
    want.insert(
        "PATH".into(),
        "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin".into(),
    );
    assert_eq!(got, want);
    env.destroy(&t.id()).await;
    env.finish().await;
}
