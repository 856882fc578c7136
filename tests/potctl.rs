//! `potctl`'s inspect commands against a simulated node set up the real way: tasks started
//! through the plugin (one running with a published port and limits, one exited), the image
//! they were cloned from, and a pot the driver did not create. Each command's table and
//! `--json` output is compared with a golden file under tests/golden/potctl/, after the parts
//! that differ from run to run (paths, ids, ports, times, sizes) are replaced by placeholders.
//! `UPDATE_GOLDEN=1 cargo test --test potctl` rewrites the golden files.

mod common;

use common::env::{Env, Setup, gated_task_config, open_gate, pot_of, publish_port};
use common::potctl::{ok, potctl, text};
use regex::Regex;
use serde_json::{Value as Json, json};

/// A pot as `pot create -p handmade -t single -N alias -i em0|10.0.2.50` leaves it.
const HANDMADE_CONF: &str = "pot.level=0
pot.type=single
pot.base=14.2
pot.potbase=
pot.dns=inherit
pot.cmd=sh /etc/rc
host.hostname=\"handmade.node1\"
osrelease=\"14.2-RELEASE\"
pot.attr.no-rc-script=NO
pot.attr.persistent=YES
pot.attr.start-at-boot=NO
pot.attr.prunable=NO
pot.attr.no-tmpfs=NO
pot.attr.enforce_statfs=2
pot.attr.mount=NO
pot.attr.fdescfs=NO
pot.attr.linprocfs=NO
pot.attr.nullfs=NO
pot.attr.procfs=NO
pot.attr.tmpfs=NO
pot.attr.zfs=NO
pot.attr.raw_sockets=NO
pot.attr.sysvshm=new
pot.attr.sysvsem=new
pot.attr.sysvmsg=new
pot.attr.children=0
pot.attr.mlock=NO
pot.attr.devfs_ruleset=4
pot.attr.exec_stop=
pot.attr.stop_timeout=10
pot.stack=ipv4
network_type=alias
vnet=false
ip=em0|10.0.2.50
";

/// Replaces what varies between runs with placeholders.
struct Normaliser {
    literals: Vec<(String, String)>,
}

impl Normaliser {
    fn text(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.literals {
            s = s.replace(from, to);
        }
        let rules = [
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<TIME>"),
            (
                r#"host\.hostname=\\?"[^"\\]*\\?""#,
                "host.hostname=<HOSTNAME>",
            ),
            (r"(disk used +)\S+", "${1}<SIZE>"),
            // A cached image's compressed size moves by a few bytes between runs.
            (r"(\.xz +)\S+", "${1}<SIZE>"),
        ];
        for (re, to) in rules {
            s = Regex::new(re).unwrap().replace_all(&s, to).into_owned();
        }
        s
    }

    /// JSON: every string normalised, times and sizes zeroed, pretty-printed.
    fn json(&self, text: &str) -> String {
        let mut v: Json =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
        self.walk(&mut v);
        serde_json::to_string_pretty(&v).unwrap() + "\n"
    }

    fn walk(&self, v: &mut Json) {
        match v {
            Json::String(s) => *s = self.text(s),
            Json::Array(a) => a.iter_mut().for_each(|x| self.walk(x)),
            Json::Object(o) => {
                for (k, x) in o.iter_mut() {
                    let varies = [
                        "started_at_ms",
                        "finished_at_ms",
                        "imported_at_ms",
                        "disk_used",
                        "host_port",
                        "size",
                    ];
                    if varies.contains(&k.as_str()) && x.is_number() {
                        *x = json!(0);
                    } else {
                        self.walk(x);
                    }
                }
                if o.get("key").and_then(Json::as_str) == Some("host.hostname") {
                    o.insert("value".into(), json!("<HOSTNAME>"));
                }
            }
            _ => {}
        }
    }
}

/// Compares with `tests/golden/potctl/<name>` ([`common::potctl::golden`]).
fn golden(name: &str, actual: &str) {
    common::potctl::golden(&format!("potctl/{name}"), actual);
}

#[tokio::test(flavor = "multi_thread")]
async fn potctl_inspects_a_node() {
    let env = Env::setup(Setup {
        pot_pf_main: true,
        ..Setup::default()
    })
    .await;
    let sim = env.sim.dir.clone();

    // A running task with a published port (so a bridge, pf rules and a relay) and limits.
    let port = 21000 + (std::process::id() as i32 % 400) * 20;
    let mut web = env.task("web", &gated_task_config(&env, 0));
    publish_port(&mut web, "http", port, 80);
    env.start_ready(&web).await;
    // A task that exited with code 3 and that Nomad has not destroyed yet.
    let job = env.task("job", &gated_task_config(&env, 3));
    env.start_ready(&job).await;
    open_gate(&job);
    env.wait(&job.id(), 20.0).await;
    // A pot made with pot's CLI, not by the driver.
    let jails = sim.join("root/opt/pot/jails");
    env.sim
        .tool_ok("zfs", &["create", "zroot/pot/jails/handmade"]);
    env.sim
        .tool_ok("zfs", &["create", "zroot/pot/jails/handmade/m"]);
    std::fs::create_dir_all(jails.join("handmade/conf")).unwrap();
    std::fs::write(jails.join("handmade/conf/pot.conf"), HANDMADE_CONF).unwrap();
    // Task state without a pot: what an interrupted start leaves (`ls` shows it as debris).
    let ghost = sim.join("root/var/db/nomad-pot-driver/tasks/ghost_1");
    std::fs::create_dir_all(&ghost).unwrap();
    // pot's own config sets one value, so `config` has every kind of source.
    std::fs::write(
        sim.join("root/usr/local/etc/pot/pot.conf"),
        "POT_ISOLATE_VNET_POTS=false\n",
    )
    .unwrap();

    let mut literals = vec![
        (sim.display().to_string(), "<SIM>".to_string()),
        (
            env.sim.allocs_dir().display().to_string(),
            "<ALLOCS>".to_string(),
        ),
    ];
    for (t, name) in [(&web, "WEB"), (&job, "JOB")] {
        let id = t.id();
        let invocation = id.rsplit('/').next().unwrap().to_string();
        literals.push((t.alloc_id.clone(), format!("<ALLOC_{name}>")));
        literals.push((invocation, format!("<ID_{name}>")));
    }
    literals.push((format!(":{port}"), ":<PORT>".to_string()));
    literals.push((format!("port {port} "), "port <PORT> ".to_string()));
    let norm = Normaliser { literals };
    let web_pot = pot_of(&web).to_string();

    let check = |name: &str, args: &[&str]| {
        let out = ok(&env.sim, args);
        if name.ends_with(".json") {
            golden(name, &norm.json(&out));
        } else {
            golden(name, &norm.text(&out));
        }
    };
    check("ls.txt", &["ls"]);
    check("ls.json", &["ls", "--json"]);
    check("ps.txt", &["ps"]);
    check("ps.json", &["--json", "ps"]);
    check("show-web.txt", &["show", &web_pot]);
    check("show-web.json", &["show", &web_pot, "--json"]);
    check("show-handmade.txt", &["show", "handmade"]);
    check("info-web.txt", &["info", &web_pot]);
    check("info-handmade.json", &["info", "handmade", "--json"]);
    check("ports.txt", &["ports"]);
    check("ports-web.json", &["ports", &web_pot, "--json"]);
    check("images.txt", &["images"]);
    check("images.json", &["images", "--json"]);
    check("config.txt", &["config"]);
    check("config.json", &["config", "--json"]);

    // Usage changes by the second: check the shape and that the running task uses memory.
    let table = ok(&env.sim, &["stats"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "POT", "MEMORY", "VIRTUAL", "SWAP", "PCPU", "CPUTIME", "CPU", "MHZ"
        ]
    );
    let web_row = rows
        .iter()
        .find(|r| r[0] == web_pot)
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(web_row.len(), 7, "{table}");
    assert!(
        web_row[4].ends_with('%') && web_row[5].ends_with('s'),
        "{table}"
    );
    let stats: Json = serde_json::from_str(&ok(&env.sim, &["stats", &web_pot, "--json"])).unwrap();
    let entries = stats.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{stats}");
    assert_eq!(entries[0]["pot"], json!(web_pot));
    let usage = &entries[0]["ResourceUsage"];
    assert!(usage["MemoryStats"]["RSS"].as_u64().unwrap() > 0, "{stats}");
    assert!(usage["MemoryStats"]["Swap"].is_u64(), "{stats}");
    assert!(usage["CpuStats"]["TotalTicks"].is_number(), "{stats}");
    assert!(usage["CpuStats"]["Percent"].is_number(), "{stats}");

    // Bad input is named, and nothing is printed on stdout.
    let refused = |args: &[&str]| {
        let out = potctl(&env.sim, args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = refused(&["show", "nope"]);
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert!(err.contains("pot nope not found"), "{err}");
    let (code, _, err) = refused(&["stats", "handmade"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("handmade") && err.contains("not running"),
        "{err}"
    );
    let (code, _, err) = refused(&["ports", "handmade"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("publishes nothing"), "{err}");

    // `images gc` still works beside `images`: both images are in use, nothing goes.
    assert_eq!(
        ok(&env.sim, &["images", "gc", "--dry-run"]),
        "kept demo_1_0\n"
    );

    env.destroy(&web.id()).await;
    env.destroy(&job.id()).await;
    std::fs::remove_dir(&ghost).unwrap();
    assert_eq!(ok(&env.sim, &["ps"]), "no pots\n");
    assert_eq!(ok(&env.sim, &["ports"]), "no task publishes anything\n");
    env.sim
        .tool_ok("zfs", &["destroy", "-r", "zroot/pot/jails/handmade"]);
    env.finish().await;
}

/// `potctl help <cmd>` shows examples; completions come from the same definition.
#[test]
fn help_has_examples_and_completions_cover_every_command() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_potctl"))
            .args(args)
            .output()
            .expect("run potctl");
        assert!(out.status.success(), "potctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = [
        "ls", "ps", "show", "info", "ports", "stats", "images", "config",
    ];
    for cmd in commands {
        let help = run(&["help", cmd]);
        assert!(
            help.contains("Examples:\n  potctl "),
            "potctl help {cmd}:\n{help}"
        );
    }
    for shell in ["sh", "bash", "zsh"] {
        let script = run(&["completions", shell]);
        for cmd in commands
            .iter()
            .chain(&["gc", "demo", "export", "completions"])
        {
            assert!(script.contains(cmd), "{shell} completion lacks {cmd}");
        }
        assert!(script.contains("--json"), "{shell} completion lacks --json");
    }
    assert!(run(&["completions", "bash"]).contains("complete -F _potctl"));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef potctl"));
}
