//! A simulated FreeBSD host: one binary answering to the base-tool names (see README.md).

mod check;
mod cpuset;
mod devd;
mod fault;
mod image;
mod jail;
mod kld;
mod mount;
mod net;
mod pf;
mod rctl;
mod receiver;
mod route;
mod shm;
mod sign;
mod state;
mod stream;
mod sysctl;
mod tree;
mod zfs;

use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed tool run: the full stderr text and the exit status.
#[derive(Debug)]
pub struct Fail {
    pub code: i32,
    pub msg: String,
}

impl Fail {
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        Fail {
            code,
            msg: msg.into(),
        }
    }
}

pub type Res<T> = Result<T, Fail>;

/// Parsed command line: `(option letter, argument)` pairs and the operands.
pub type Parsed = (Vec<(char, String)>, Vec<String>);

/// Exit status of a tool that ran: normal exit, or death by a signal that the caller must see.
pub enum Outcome {
    Exit(i32),
    Signal(i32),
}

/// Tools the host links into `DIR/bin`.
pub const TOOLS: &[&str] = &[
    "zfs",
    "jail",
    "jls",
    "jexec",
    "mount",
    "mount_nullfs",
    "umount",
    "sysctl",
    "ifconfig",
    "pfctl",
    "rctl",
    "cpuset",
    "route",
    "kldstat",
    "kldload",
    "kldunload",
    "posixshmcontrol",
];

/// BSD getopt: options until the first operand or `--`; `spec` lists letters, `:` marks an argument.
pub fn getopt(tool: &str, args: &[String], spec: &str, usage: &str) -> Res<Parsed> {
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            let Some(pos) = spec.find(c).filter(|_| c != ':') else {
                return Err(Fail::new(
                    64,
                    format!("{tool}: illegal option -- {c}\n{usage}"),
                ));
            };
            if spec[pos + 1..].starts_with(':') {
                let rest: String = chars[j + 1..].iter().collect();
                let val = if !rest.is_empty() {
                    rest
                } else {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| {
                        Fail::new(
                            64,
                            format!("{tool}: option requires an argument -- {c}\n{usage}"),
                        )
                    })?
                };
                opts.push((c, val));
                break;
            }
            opts.push((c, String::new()));
            j += 1;
        }
        i += 1;
    }
    Ok((opts, args[i..].to_vec()))
}

/// The usage error every tool returns for a malformed command line.
pub fn usage(usage: &str) -> Fail {
    Fail::new(64, usage.to_string())
}

fn host_dir(argv0: &str) -> PathBuf {
    let exe = Path::new(argv0);
    let bin = exe.parent().unwrap_or(Path::new("."));
    let dir = bin.parent().unwrap_or(Path::new("."));
    if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    }
}

fn run_tool(tool: &str, host: &state::Host, args: &[String]) -> Res<Outcome> {
    let out = match tool {
        "zfs" => zfs::main(host, args)?,
        "jail" => jail::jail_main(host, args)?,
        "jls" => jail::jls_main(host, args)?,
        "jexec" => return jail::jexec_main(host, args),
        "mount" => mount::mount_main(host, args)?,
        "mount_nullfs" => mount::mount_nullfs_main(host, args)?,
        "umount" => mount::umount_main(host, args)?,
        "sysctl" => sysctl::main(host, args)?,
        "ifconfig" => net::main(host, args)?,
        "pfctl" => pf::main(host, args)?,
        "rctl" => rctl::main(host, args)?,
        "cpuset" => cpuset::main(host, args)?,
        "route" => route::main(host, args)?,
        "kldstat" => kld::kldstat_main(host, args)?,
        "kldload" => kld::kldload_main(host, args)?,
        "kldunload" => kld::kldunload_main(host, args)?,
        "posixshmcontrol" => shm::main(host, args)?,
        _ => unreachable!("main dispatches only names listed in TOOLS"),
    };
    print_out(&out);
    Ok(Outcome::Exit(0))
}

fn print_out(out: &str) {
    let mut so = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not turn a successful tool run into a panic.
    let _ = so.write_all(out.as_bytes()).and_then(|_| so.flush());
}

fn own_main(args: &[String]) -> Res<String> {
    const USAGE: &str = "usage: freebsd-sim init [--encrypted] DIR | image NAME TAG OUTDIR [--filler-mb N] [--sign SECKEY] [--prop K=V].. [--m-prop K=V].. | keygen DIR | check DIR | reboot DIR | fault DIR ... | receiver DIR [write|drain] | devd DIR [-l N] | usage DIR JAIL RESOURCE AMOUNT | shm DIR JAIL PATH [BYTES] | dying DIR [SECS]";
    match args.first().map(String::as_str) {
        Some("init") if args.len() == 2 => state::init(Path::new(&args[1]), false),
        Some("init") if args.len() == 3 && args[1] == "--encrypted" => {
            state::init(Path::new(&args[2]), true)
        }
        Some("image") => image::main(&args[1..]),
        Some("keygen") if args.len() == 2 => sign::keygen(Path::new(&args[1])),
        Some("check") if args.len() == 2 => check::main(Path::new(&args[1])),
        Some("reboot") if args.len() == 2 => state::reboot(Path::new(&args[1])),
        Some("fault") => fault::main(&args[1..]),
        Some("receiver") => receiver::main(&args[1..]),
        Some("devd") => devd::daemon(&args[1..]),
        Some("usage") => devd::usage_main(&args[1..]),
        Some("shm") => shm::shm_main(&args[1..]),
        Some("dying") => shm::dying_main(&args[1..]),
        _ => Err(usage(USAGE)),
    }
}

fn main() {
    let start_us = state::now_us();
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let tool = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !TOOLS.contains(&tool.as_str()) {
        match own_main(&argv[1..]) {
            Ok(out) => print_out(&out),
            Err(f) => {
                eprintln!("{}", f.msg);
                std::process::exit(f.code)
            }
        }
        return;
    }
    let host = state::Host::new(host_dir(&argv0));
    let mut logged = vec![tool.clone()];
    logged.extend(argv[1..].iter().cloned());
    match fault::take(&host, &tool, &argv[1..]) {
        Err(f) => {
            eprintln!("{}", f.msg);
            std::process::exit(f.code)
        }
        Ok(Some(fault::Action::Fail { exit, stderr })) => {
            if !stderr.is_empty() {
                eprintln!("{stderr}");
            }
            host.log_line(serde_json::json!({
                "argv": logged, "exit": exit, "fault": "fail",
                "start_us": start_us, "end_us": state::now_us()
            }));
            std::process::exit(exit)
        }
        Ok(Some(fault::Action::Hang { secs })) => {
            // Logged when the hang begins, so a test can act while the caller waits.
            host.log_line(serde_json::json!({
                "argv": logged, "fault": "hang", "pid": std::process::id(), "start_us": start_us
            }));
            if !fault::hang(secs) {
                std::process::exit(137)
            }
        }
        Ok(None) => {}
    }
    let outcome = match run_tool(&tool, &host, &argv[1..]) {
        Ok(o) => o,
        Err(f) => {
            if !f.msg.is_empty() {
                eprintln!("{}", f.msg);
            }
            Outcome::Exit(f.code)
        }
    };
    let code = match outcome {
        Outcome::Exit(c) => c,
        Outcome::Signal(n) => 128 + n,
    };
    host.log_call(&logged, code, start_us);
    match outcome {
        Outcome::Exit(c) => std::process::exit(c),
        Outcome::Signal(n) => jail::die_by_signal(n),
    }
}
