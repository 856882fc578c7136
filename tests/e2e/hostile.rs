//! No shell: hostile strings in every string field reach their tool verbatim or are refused.

use std::time::Duration;

use crate::common::env::*;
use crate::common::{TaskBuilder, within};
use nomad_pot_driver::proto::drivers::StartTaskRequest;
use serde_json::{Value as Json, json};

/// A small deterministic generator (xorshift64*) of strings made of shell metacharacters,
/// quotes, newlines and non-ASCII text.
struct Hostile(u64);

impl Hostile {
    const FRAGMENTS: &[&str] = &[
        "$(touch /tmp/pwned)",
        "`id`",
        "'",
        "\"",
        "\n",
        ";",
        "|",
        "&&",
        "$HOME",
        "${IFS}",
        "\\",
        "*",
        "?",
        "~",
        "#",
        "ü",
        "日本",
        " ",
        "\t",
        "=",
        ":",
        ">",
        "<",
        "!",
        "%s",
        "-rf",
        "{a,b}",
        "x",
    ];

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn string(&mut self) -> String {
        let n = 1 + self.next() % 4;
        (0..n)
            .map(|_| Self::FRAGMENTS[(self.next() % Self::FRAGMENTS.len() as u64) as usize])
            .collect()
    }

    /// A file name: no `/`, and no `:` (the separator of `host:jail` entries).
    fn file_name(&mut self) -> String {
        format!("f{}", self.string().replace(['/', ':'], "_"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_strings_duplicate_mounts_and_file_images_are_refused_before_any_change() {
    let env = Env::new().await;
    let base = env.sh_config("exit 0");
    let with = |extra: Json| {
        let mut cfg = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    // (task name, config, an env variable, what the refusal says)
    type Case<'a> = (&'a str, Json, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "eqkey",
            base.clone(),
            Some(("A=B", "x")),
            "\"A=B\" is empty or contains '='",
        ),
        (
            "nulkey",
            base.clone(),
            Some(("A\0B", "x")),
            "contains '=' or a NUL byte",
        ),
        (
            "nulval",
            base.clone(),
            Some(("A", "x\0y")),
            "environment variable A contains a NUL",
        ),
        (
            "nularg",
            with(json!({"args": ["-c", "a\0b"]})),
            None,
            "args[1] contains a NUL",
        ),
        (
            "nulcmd",
            with(json!({"command": "/bin/\0sh"})),
            None,
            "command",
        ),
        (
            "dupmount",
            with(json!({"mount": ["local/a:/data", "local/b:/data/"]})),
            None,
            "mount[1]: jail path \"/data/\" is already a mount target (of mount[0])",
        ),
        (
            "overlocal",
            with(json!({"mount": ["local/a://local"]})),
            None,
            "is already a mount target (of the task's own mounts)",
        ),
        // Outside the sim's allowed_image_dirs, existing or not.
        (
            "etc",
            with(json!({"image": "file:///etc"})),
            None,
            "allowed_image_dirs",
        ),
        (
            "nodir",
            with(json!({"image": "file:///no/such/dir"})),
            None,
            "allowed_image_dirs",
        ),
    ];
    let before = env.sim.calls().len();
    for (name, cfg, var, want) in &cases {
        let mut b = TaskBuilder::new(name, env.encode_task(cfg));
        if let Some((k, v)) = var {
            b = b.env(k, v);
        }
        let t = b.build(&env.sim.allocs_dir());
        for d in ["a", "b"] {
            std::fs::create_dir_all(t.alloc_dir.join(&t.task_name).join("local").join(d)).unwrap();
        }
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        let e = within(30.0, "StartTask", env.plugin.driver().start_task(req))
            .await
            .expect_err(name);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(want), "{name}: {e:?}");
    }
    // Refused before the image import, the clone, the jail: not one tool ran.
    let calls: Vec<String> = env.sim.calls()[before..].iter().map(|c| c.line()).collect();
    assert!(calls.is_empty(), "refused starts ran tools: {calls:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_too_long_for_execve_fails_with_a_bounded_message() {
    let env = Env::new().await;
    // One argument over Linux's 128 KiB MAX_ARG_STRLEN: the task's execve fails with E2BIG.
    let huge = "x".repeat(1 << 20);
    let cfg = env.sh_config(&huge);
    let t = env.task("huge", &cfg);
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let e = within(60.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("E2BIG");
    assert!(
        e.message().contains("Argument list too long"),
        "{}",
        &e.message()[..200.min(e.message().len())]
    );
    assert!(
        e.message().len() <= 4200,
        "grpc-message of {} bytes",
        e.message().len()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_strings_reach_tools_verbatim_or_are_refused() {
    use nomad_pot_driver::proto::drivers::{DnsConfig, ExecTaskRequest};
    let env = Env::with_agent_config(json!({"args_quote_compat": false})).await;
    let image = env.file_image();
    let mut hostile = Hostile(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..6 {
        // Always accepted: args, env values and copy targets, which need no validation.
        let args: Vec<String> = (0..3).map(|_| hostile.string()).collect();
        let copy_name = hostile.file_name();
        let copy_target = format!("/opt/{}", hostile.string().replace('\0', ""));
        let mut cfg = json!({
            "image": image, "pot": "demo", "tag": "1.0", "command": "/usr/bin/printf",
            "args": ([vec!["%s\\0".to_string()], args.clone()].concat()),
            "copy": [format!("local/{copy_name}:{copy_target}")],
        });
        cfg["network_mode"] = json!("host");
        let mut b = TaskBuilder::new(&format!("hostile{round}"), env.encode_task(&cfg));
        let env_values: Vec<String> = (0..3).map(|_| hostile.string()).collect();
        for (i, v) in env_values.iter().enumerate() {
            b = b.env(&format!("HOSTILE_{i}"), v);
        }
        let t = b.build(&env.sim.allocs_dir());
        std::fs::write(
            t.alloc_dir
                .join(&t.task_name)
                .join("local")
                .join(&copy_name),
            &copy_name,
        )
        .unwrap();
        env.start(&t).await;
        let pot = pot_of(&t).to_string();
        env.wait(&t.id(), 30.0).await;
        assert!(t.logs.wait_for_eof(Duration::from_secs(5)).await);
        let printed: Vec<String> = t
            .logs
            .stdout()
            .split_terminator('\0')
            .map(String::from)
            .collect();
        assert_eq!(printed, args, "round {round}: the task's argv");
        let jexec = env.calls_starting(&["jexec", &pot, "/usr/bin/printf"]);
        assert_eq!(jexec.len(), 1);
        assert_eq!(jexec[0][4..], args[..], "round {round}: jexec argv");
        let copied = nomad_pot_driver::engine::PotName::new(&pot).unwrap();
        let root = env.jail_root(copied.as_str()).join("m");
        let landed = root.join(copy_target.trim_start_matches('/'));
        let landed = if landed.is_dir() {
            landed.join(&copy_name)
        } else {
            landed
        };
        assert_eq!(std::fs::read_to_string(&landed).unwrap(), copy_name);
        // The environment, through an exec with the task's env.
        let r = within(
            10.0,
            "ExecTask env",
            env.plugin.driver().exec_task(ExecTaskRequest {
                task_id: t.id(),
                command: vec!["/usr/bin/env".into(), "-0".into()],
                timeout: Some(dur(5)),
            }),
        )
        .await
        .expect("ExecTask")
        .into_inner();
        let seen = String::from_utf8(r.stdout).unwrap();
        for (i, v) in env_values.iter().enumerate() {
            let entry = format!("HOSTILE_{i}={v}");
            assert!(
                seen.split('\0').any(|e| e == entry),
                "round {round}: {entry:?} not in {seen:?}"
            );
        }
        env.destroy(&t.id()).await;
        accepted += 1;

        // Fields with rules: each alone, accepted verbatim or refused naming the field.
        let local_dir = hostile.file_name();
        let mount_target = format!("/mnt/{}", hostile.string());
        let host_name = hostile.string();
        let exec_stop = hostile.string();
        let search = hostile.string();
        let user = hostile.string();
        let command = format!("/{}", hostile.string());
        let (net, count, size) = (hostile.string(), hostile.string(), hostile.string());
        let (pot_name, tag) = (format!("demo{}", hostile.string()), hostile.string());
        let cases: Vec<(&str, Json)> = vec![
            (
                "mount",
                json!({"mount": [format!("local/{local_dir}:{mount_target}")]}),
            ),
            (
                "extra_hosts",
                json!({"extra_hosts": [format!("{host_name}:10.0.0.1")]}),
            ),
            (
                "attributes",
                json!({"attributes": [format!("exec_stop:{exec_stop}")]}),
            ),
            ("dns", json!({})),
            ("user", json!({})),
            ("command", json!({"command": command})),
            ("network_mode", json!({"network_mode": net})),
            ("maxproc", json!({"maxproc": count})),
            ("quota", json!({"quota": size})),
            ("pot", json!({"pot": pot_name})),
            ("tag", json!({"tag": tag})),
        ];
        for (field, extra) in cases {
            let mut cfg = json!({
                "image": image, "pot": "demo", "tag": "1.0",
                "command": "/bin/sh", "args": ["-c", "exit 0"],
            });
            for (k, v) in extra.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let mut t = env.task(&format!("r{round}{}", field.replace('_', "")), &cfg);
            std::fs::create_dir_all(
                t.alloc_dir
                    .join(&t.task_name)
                    .join("local")
                    .join(&local_dir),
            )
            .unwrap();
            if field == "dns" {
                t.config.dns = Some(DnsConfig {
                    searches: vec![search.clone()],
                    ..Default::default()
                });
            }
            if field == "user" {
                t.config.user = user.clone();
            }
            let before = env.sim.calls().len();
            let req = StartTaskRequest {
                task: Some(t.config.clone()),
            };
            match within(60.0, "StartTask", env.plugin.driver().start_task(req)).await {
                // A valid-looking pot or tag names an image that does not exist.
                Err(s) if matches!(field, "pot" | "tag") && s.message().starts_with("image ") => {
                    refused += 1;
                    continue;
                }
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{field}: {s:?}");
                    assert!(s.message().contains(field), "{field}: {s:?}");
                    let touched: Vec<String> = env.sim.calls()[before..]
                        .iter()
                        .map(|c| c.line())
                        .filter(|l| l.starts_with("jail ") || l.starts_with("mount -t"))
                        .collect();
                    assert!(
                        touched.is_empty() || field == "user",
                        "{field}: refused after {touched:?}"
                    );
                    refused += 1;
                    continue;
                }
                Ok(_) => accepted += 1,
            }
            let pot = pot_of(&t).to_string();
            let dir = env.jail_root(&pot);
            match field {
                "mount" => {
                    let real = std::fs::canonicalize(
                        t.alloc_dir
                            .join(&t.task_name)
                            .join("local")
                            .join(&local_dir),
                    )
                    .unwrap();
                    let want = vec![
                        "mount".to_string(),
                        "-t".into(),
                        "nullfs".into(),
                        "-o".into(),
                        "rw".into(),
                        real.display().to_string(),
                        dir.join("m").join(&mount_target[1..]).display().to_string(),
                    ];
                    assert!(env.sim.calls().iter().any(|c| c.argv == want), "{want:?}");
                }
                "extra_hosts" => {
                    let hosts = std::fs::read_to_string(dir.join("m/etc/hosts")).unwrap();
                    assert!(
                        hosts.ends_with(&format!("10.0.0.1 {host_name}\n")),
                        "{hosts:?}"
                    );
                }
                "attributes" => {
                    let want = format!("exec.stop={exec_stop}");
                    let jail = env.calls_starting(&["jail", "-i", "-c"]);
                    assert!(jail.last().unwrap().contains(&want), "{want:?}");
                }
                "dns" => {
                    let resolv = std::fs::read_to_string(dir.join("m/etc/resolv.conf")).unwrap();
                    assert!(
                        resolv.contains(&format!("\nsearch {search}\n")),
                        "{resolv:?}"
                    );
                }
                "command" => {
                    env.wait(&t.id(), 30.0).await;
                    let jexec = env.calls_starting(&["jexec", &pot]);
                    assert_eq!(
                        jexec.last().unwrap()[2..],
                        [command.clone(), "-c".into(), "exit 0".into()]
                    );
                }
                other => panic!("{other}: a hostile value was accepted"),
            }
            env.wait_and_destroy(&t.id(), 30.0).await;
        }
    }
    assert!(
        refused > 0 && accepted > 6,
        "accepted {accepted}, refused {refused}"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    env.finish().await;
}
