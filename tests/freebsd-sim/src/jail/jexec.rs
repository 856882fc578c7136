//! `jexec` and a jail's processes: the command forked into a private mount namespace, the jail's
//! root assembled and chrooted into, run as the jail's user with its signals forwarded; and the
//! live processes of a jail found again by their namespace.

use super::not_found;
use crate::state::{Host, Mount, NsMark, State};
use crate::{Fail, Outcome, Res, getopt, usage};
use nix::mount::{MsFlags, mount};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill, sigaction, sigprocmask,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, chdir, chroot, execvp, execvpe, fork};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const JEXEC_USAGE: &str = "usage: jexec [-l] [-u username | -U username] jail [command ...]";

/// Signals the jexec process passes on to the jailed command.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Live processes whose mount namespace is one of `ns` (zombies have none and are skipped).
pub fn pids_in(ns: &[NsMark]) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/mnt")) else {
                return false;
            };
            let candidates: Vec<&NsMark> = ns.iter().filter(|n| n.ino == meta.ino()).collect();
            if candidates.is_empty() {
                return false;
            }
            let root = fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
            candidates.iter().any(|n| Path::new(&n.root) == root)
                || (root == Path::new("/")
                    && fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|info| {
                        candidates
                            .iter()
                            .any(|n| info.split_whitespace().any(|field| field == n.marker))
                    }))
        })
        .collect()
}

/// Mounts a tiny tmpfs whose source name is unique to this namespace; returns that name.
fn mark_namespace(host: &Host, ino: u64) -> Res<String> {
    let dir = host.dir.join("state/ns");
    fs::create_dir_all(&dir)
        .map_err(|e| Fail::new(1, format!("jexec: mkdir {}: {e}", dir.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let marker = format!("fsim-{ino}-{}-{nanos}", std::process::id());
    sys(
        "mount namespace marker",
        mount(
            Some(marker.as_str()),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=4k"),
        ),
    )?;
    Ok(marker)
}

/// Credentials from the jail's `etc/passwd` (a numeric id need not be listed).
#[derive(Debug)]
struct User {
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
    name: String,
}

fn lookup_user(root: &Path, who: &str) -> Res<User> {
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let entry = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 7 && (f[0] == who || who.parse::<u32>().is_ok_and(|n| f[2] == n.to_string()))
        });
    if let Some(f) = entry {
        let num = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                Fail::new(
                    1,
                    format!(
                        "jexec: {}: malformed passwd entry for {who}",
                        root.display()
                    ),
                )
            })
        };
        return Ok(User {
            uid: num(f[2])?,
            gid: num(f[3])?,
            home: f[5].into(),
            shell: f[6].into(),
            name: f[0].into(),
        });
    }
    match who.parse::<u32>() {
        Ok(n) => Ok(User {
            uid: n,
            gid: n,
            home: "/".into(),
            shell: "/bin/sh".into(),
            name: who.into(),
        }),
        Err(_) => Err(Fail::new(
            1,
            format!("jexec: getpwnam: {who}: no such user"),
        )),
    }
}

pub fn jexec_main(host: &Host, args: &[String]) -> Res<Outcome> {
    let (opts, rest) = getopt("jexec", args, "lu:U:", JEXEC_USAGE)?;
    let [key, cmd @ ..] = rest.as_slice() else {
        return Err(usage(JEXEC_USAGE));
    };
    let user = opts
        .iter()
        .rev()
        .find(|(c, _)| *c == 'u' || *c == 'U')
        .map(|(_, v)| v.clone());
    let login = opts.iter().any(|(c, _)| *c == 'l');
    let argv: Vec<String> = if cmd.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        cmd.to_vec()
    };
    run_in_jail(host, key, user.as_deref(), login, &argv)
}

/// Everything the child needs, computed before fork so errors surface in the caller.
struct Plan {
    jid: u32,
    root: PathBuf,
    binds: Vec<Mount>,
    devfs: bool,
    user: Option<User>,
    login: bool,
    argv: Vec<CString>,
    /// This jexec: the command must not outlive it.
    parent: Pid,
}

fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| Fail::new(64, format!("jexec: argument contains NUL: {s:?}")))
}

/// Runs `argv` as a process of jail `key` and waits for it, forwarding signals.
pub fn run_in_jail(
    host: &Host,
    key: &str,
    user: Option<&str>,
    login: bool,
    argv: &[String],
) -> Res<Outcome> {
    let st = host.load()?;
    let jail = st.jail(key).ok_or_else(|| not_found("jexec", key))?;
    let root = PathBuf::from(&jail.path);
    let mut binds: Vec<Mount> = st
        .mounts
        .iter()
        .filter(|m| m.fstype == "nullfs" && Path::new(&m.target).starts_with(&root))
        .cloned()
        .collect();
    binds.sort_by_key(|m| Path::new(&m.target).components().count());
    let plan = Plan {
        jid: jail.jid,
        devfs: jail
            .param("mount.devfs")
            .is_some_and(|v| v != "false" && v != "0"),
        user: user.map(|u| lookup_user(&root, u)).transpose()?,
        root,
        binds,
        login,
        argv: argv.iter().map(|a| cstr(a)).collect::<Res<_>>()?,
        parent: nix::unistd::getpid(),
    };
    let mut set = SigSet::empty();
    FORWARDED.iter().for_each(|s| set.add(*s));
    set.add(Signal::SIGCHLD);
    // Default dispositions while we wait (an inherited SIG_IGN must not swallow what we forward);
    // the child gets the originals back before exec, as if jexec had exec'd it directly.
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    let mut saved = Vec::new();
    for s in FORWARDED.iter().chain([Signal::SIGCHLD].iter()) {
        // SAFETY: installing SIG_DFL has no handler code that could be unsound.
        saved.push((
            *s,
            unsafe { sigaction(*s, &dfl) }
                .map_err(|e| Fail::new(1, format!("jexec: sigaction: {e}")))?,
        ));
    }
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))
        .map_err(|e| Fail::new(1, format!("jexec: sigprocmask: {e}")))?;
    let restore = |saved: &[(Signal, SigAction)]| {
        for (s, a) in saved {
            // SAFETY: restores dispositions that were installed before we changed them.
            let _ = unsafe { sigaction(*s, a) };
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    };
    // SAFETY: the simulator is single-threaded, so the child may allocate freely before exec.
    match unsafe { fork() } {
        Err(e) => {
            restore(&saved);
            Err(Fail::new(1, format!("jexec: fork: {e}")))
        }
        Ok(ForkResult::Child) => {
            let err = child(host, &plan, || restore(&saved));
            eprintln!("{}", err.msg);
            // SAFETY: _exit skips the parent's atexit handlers and stdio buffers, as a failed exec must.
            unsafe { libc::_exit(err.code) }
        }
        Ok(ForkResult::Parent { child }) => {
            let out = wait_forwarding(child, &set);
            restore(&saved);
            out
        }
    }
}

fn wait_forwarding(child: Pid, set: &SigSet) -> Res<Outcome> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(Outcome::Exit(c)),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(Outcome::Signal(s as i32)),
            Ok(_) => {}
            Err(e) => return Err(Fail::new(1, format!("jexec: waitpid {child}: {e}"))),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(s) => {
                let _ = kill(child, s);
            }
        }
    }
}

fn sys<T>(what: &str, r: nix::Result<T>) -> Res<T> {
    r.map_err(|e| Fail::new(1, format!("jexec: {what}: {e}")))
}

fn bind(src: &Path, target: &Path, ro: bool) -> Res<()> {
    let none: Option<&str> = None;
    sys(
        &format!("bind {} on {}", src.display(), target.display()),
        mount(
            Some(src),
            target,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        ),
    )?;
    if ro {
        sys(
            &format!("remount {} read-only", target.display()),
            mount(
                none,
                target,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                none,
            ),
        )?;
    }
    Ok(())
}

/// The forked child: isolate, register with the jail, assemble the root, exec. Returns only on error.
fn child(host: &Host, plan: &Plan, restore_signals: impl FnOnce()) -> Fail {
    let run = || -> Res<Fail> {
        sys(
            "unshare(CLONE_NEWNS)",
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
        )?;
        let none: Option<&str> = None;
        sys(
            "make / rprivate",
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
        )?;
        let ino = fs::metadata("/proc/self/ns/mnt")
            .map_err(|e| Fail::new(1, format!("jexec: stat /proc/self/ns/mnt: {e}")))?
            .ino();
        let marker = mark_namespace(host, ino)?;
        host.update(|st: &mut State| {
            // Namespace inodes are recycled: a reused one now belongs to this jail only.
            st.retired_ns.retain(|n| n.ino != ino);
            for j in st.jails.iter_mut() {
                j.ns.retain(|n| n.ino != ino);
            }
            let j = st
                .jails
                .iter_mut()
                .find(|j| j.jid == plan.jid && !j.dying)
                .ok_or_else(|| Fail::new(1, format!("jexec: jail {} was removed", plan.jid)))?;
            j.ns.push(NsMark {
                ino,
                marker,
                root: plan.root.display().to_string(),
            });
            Ok(())
        })?;
        for m in &plan.binds {
            bind(Path::new(&m.src), Path::new(&m.target), m.ro)?;
        }
        if plan.devfs {
            let dev = plan.root.join("dev");
            fs::create_dir_all(&dev)
                .map_err(|e| Fail::new(1, format!("jexec: mkdir {}: {e}", dev.display())))?;
            bind(Path::new("/dev"), &dev, false)?;
        }
        if !plan.root.join("bin/sh").exists() {
            // An image without a userland borrows the host's, read-only.
            for d in ["bin", "sbin", "lib", "lib64", "usr"] {
                let host_dir = Path::new("/").join(d);
                if host_dir.is_dir() {
                    let target = plan.root.join(d);
                    fs::create_dir_all(&target).map_err(|e| {
                        Fail::new(1, format!("jexec: mkdir {}: {e}", target.display()))
                    })?;
                    bind(&host_dir, &target, true)?;
                }
            }
        }
        sys(
            &format!("chroot {}", plan.root.display()),
            chroot(&plan.root),
        )?;
        sys("chdir /", chdir("/"))?;
        let mut env: Option<Vec<CString>> = None;
        if let Some(u) = &plan.user {
            sys("setgroups", nix::unistd::setgroups(&[Gid::from_raw(u.gid)]))?;
            sys("setgid", nix::unistd::setgid(Gid::from_raw(u.gid)))?;
            sys("setuid", nix::unistd::setuid(Uid::from_raw(u.uid)))?;
        }
        if plan.login {
            let (home, shell, name) = plan
                .user
                .as_ref()
                .map_or(("/root", "/bin/sh", "root"), |u| {
                    (u.home.as_str(), u.shell.as_str(), u.name.as_str())
                });
            let _ = chdir(home);
            let mut e = vec![
                format!("HOME={home}"),
                format!("SHELL={shell}"),
                format!("USER={name}"),
                "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin".into(),
            ];
            e.extend(std::env::var("TERM").ok().map(|t| format!("TERM={t}")));
            env = Some(e.iter().map(|s| cstr(s)).collect::<Res<_>>()?);
        }
        // FreeBSD's jexec execs the command in its own process, so a SIGKILL sent to jexec's pid
        // kills the command. Ours waits in a parent: that death must reach the command too. Set
        // after setuid, which clears it; a parent already gone is caught by the ppid check.
        sys(
            "prctl(PR_SET_PDEATHSIG)",
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
        )?;
        if nix::unistd::getppid() != plan.parent {
            return Ok(Fail::new(1, "jexec: killed before exec".to_string()));
        }
        restore_signals();
        let err = match &env {
            Some(e) => execvpe(&plan.argv[0], &plan.argv, e),
            None => execvp(&plan.argv[0], &plan.argv),
        };
        let e = err.err().map(|e| e.desc()).unwrap_or("exec returned");
        Ok(Fail::new(
            1,
            format!("jexec: execvp: {}: {e}", plan.argv[0].to_string_lossy()),
        ))
    };
    run().unwrap_or_else(|f| f)
}

/// Ends this process by signal `n`, so our caller sees the same death as the jailed command's.
pub fn die_by_signal(n: i32) -> ! {
    if let Ok(sig) = Signal::try_from(n) {
        // No core file: the signal is a relay of the child's, not our own crash.
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads a valid, initialized rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL runs no handler code.
        let _ = unsafe { sigaction(sig, &dfl) };
        let mut one = SigSet::empty();
        one.add(sig);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
        let _ = nix::sys::signal::raise(sig);
    }
    std::process::exit(128 + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lookup() {
        let d = std::env::temp_dir().join(format!("fsim-pw-{}", std::process::id()));
        fs::create_dir_all(d.join("etc")).unwrap();
        fs::write(d.join("etc/passwd"), "root:*:0:0:Charlie &:/root:/bin/sh\nwww:*:80:80:World Wide Web Owner:/nonexistent:/usr/sbin/nologin\n").unwrap();
        assert_eq!(lookup_user(&d, "www").unwrap().uid, 80);
        assert_eq!(lookup_user(&d, "1234").unwrap().gid, 1234);
        assert!(
            lookup_user(&d, "nobody2")
                .unwrap_err()
                .msg
                .contains("no such user")
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
