//! Simulator state: one JSON document under `DIR/state`, changed only under `DIR/state/lock`.

use crate::{Fail, Res, TOOLS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Snapshot {
    pub name: String,
    pub creation: u64,
    /// Directory `DIR/state/snapshots/<id>`; an id (not the name) so renames never move copies.
    pub id: u64,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Dataset {
    /// Locally set properties (native and `:user` ones).
    pub props: BTreeMap<String, String>,
    pub origin: Option<String>,
    pub creation: u64,
    pub snapshots: Vec<Snapshot>,
    /// Not mounted (`zfs receive -u`, or a received `canmount` of `off`/`noauto`): its files live
    /// in a private directory until `zfs mount`.
    pub unmounted: bool,
}

/// A jexec'd mount namespace. The inode is a cheap first filter, but inodes are recycled, also by
/// other simulated hosts running in parallel: a process only belongs to the jail when its root is
/// the jail's path, or, before it has chrooted, when its namespace carries the marker (the source
/// name of a tmpfs mounted only inside that namespace).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct NsMark {
    pub ino: u64,
    pub marker: String,
    pub root: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Jail {
    pub jid: u32,
    pub name: String,
    pub path: String,
    /// Parameters as given to `jail -c`, in order; `None` for a bare boolean (`persist`).
    pub params: Vec<(String, Option<String>)>,
    /// Mount namespaces of the jexec'd processes: membership test for jail processes.
    pub ns: Vec<NsMark>,
    /// Being removed: no process may join it any more (a dying jail cannot be attached to).
    pub dying: bool,
}

impl Jail {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or("true"))
    }
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Mount {
    pub fstype: String,
    pub src: String,
    pub target: String,
    pub ro: bool,
}

/// What an interface is; decides its flags, output lines and whether it can be destroyed.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IfKind {
    Loopback,
    #[default]
    Ether,
    Epair,
    Bridge,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Iface {
    pub name: String,
    pub kind: IfKind,
    /// Clone unit of an epair or bridge; both ends of an epair share it, whatever their names.
    pub unit: u32,
    pub up: bool,
    pub descr: String,
    pub groups: Vec<String>,
    pub ether: String,
    /// `addr/prefixlen`, in the order the kernel lists them.
    pub inet: Vec<String>,
    pub inet6: Vec<String>,
    /// Bridge members in the order they were added; `private` holds those with PRIVATE set.
    pub members: Vec<String>,
    pub private: Vec<String>,
    /// nd6 flags set with `accept_rtadv` / `-ifdisabled` (IPv6 autoconfiguration).
    pub accept_rtadv: bool,
    pub ifdisabled: bool,
    /// Jail whose vnet holds the interface now; `None` is the host.
    pub vnet: Option<String>,
    /// Jail whose vnet created the interface (it dies with that vnet); `None` is the host.
    pub home: Option<String>,
}

/// A jail after `jail -r`/`-R`: the kernel keeps it dying while something still references it
/// (README "Dying jails").
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct DyingJail {
    pub jail: Jail,
    /// Until when (µs since the epoch) the host's dying time keeps it; later, only its shm
    /// objects do.
    pub until_us: u64,
}

/// A named POSIX shared memory object (shm_open(2) with O_CREAT).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct ShmObject {
    /// As the kernel stores it: a jailed creator's path prefixed with its jail's path.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// JID of the creator's jail, 0 for the host: its credential references that jail.
    pub jid: u32,
}

/// A static route of the host or of a vnet jail.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Route {
    /// Jail whose vnet holds the route; `None` is the host.
    pub vnet: Option<String>,
    /// `default` or `a.b.c.d/len`.
    pub dest: String,
    pub gateway: String,
    /// The interface whose connected network holds the gateway.
    pub iface: String,
}

/// A pf ruleset: translation (nat/rdr/binat) rules and filter rules, as loaded.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Anchor {
    pub nat: Vec<String>,
    pub rules: Vec<String>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct State {
    pub datasets: BTreeMap<String, Dataset>,
    pub next_snapshot_id: u64,
    pub jails: Vec<Jail>,
    pub next_jid: u32,
    /// Namespaces of removed jails, so `check` still finds processes that escaped removal.
    pub retired_ns: Vec<NsMark>,
    pub mounts: Vec<Mount>,
    /// Interfaces of the host and of every vnet jail, in attach order.
    pub ifaces: Vec<Iface>,
    pub pf_enabled: bool,
    /// When pf was last enabled or disabled (`pfctl -s info` shows the time since).
    pub pf_since: u64,
    /// pf rulesets by anchor path; `""` is the main ruleset.
    pub anchors: BTreeMap<String, Anchor>,
    pub rctl: Vec<String>,
    /// `devctl` rules whose amount the jail's usage exceeds (`freebsd-sim usage`): they notify
    /// again only after the usage was back at or below it.
    pub rctl_exceeded: Vec<String>,
    /// CPU lists set with `cpuset -l LIST -j JID`, by JID.
    pub cpusets: BTreeMap<u32, Vec<u32>>,
    pub sysctl: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    /// `(NIC, IP)` aliases that `jail -c` added for `ip4.addr`/`ip6.addr`.
    pub jail_aliases: Vec<(String, String)>,
    /// Kernel modules `kldunload` removed (every module the simulator knows starts loaded).
    pub unloaded_kmods: BTreeSet<String>,
    /// Removed jails the kernel still holds.
    pub dying: Vec<DyingJail>,
    /// How long a removed jail stays dying when nothing else holds it (`freebsd-sim dying`).
    pub dying_secs: f64,
    pub shm: Vec<ShmObject>,
}

impl State {
    pub fn jail(&self, key: &str) -> Option<&Jail> {
        self.jails
            .iter()
            .find(|j| j.name == key || j.jid.to_string() == key)
    }

    /// A dying jail by name or JID (the newest of that name).
    pub fn dying_jail(&self, key: &str) -> Option<&Jail> {
        self.dying
            .iter()
            .rev()
            .map(|d| &d.jail)
            .find(|j| j.name == key || j.jid.to_string() == key)
    }

    /// The POSIX shm objects whose creator's credential still references jail `jid`.
    pub fn shm_of(&self, jid: u32) -> impl Iterator<Item = &ShmObject> {
        self.shm.iter().filter(move |o| jid != 0 && o.jid == jid)
    }

    /// Frees the dying jails nothing holds any more: their dying time is over and no shm
    /// object references them.
    fn free_dead_jails(&mut self, now_us: u64) {
        let shm = std::mem::take(&mut self.shm);
        self.dying
            .retain(|d| now_us < d.until_us || shm.iter().any(|o| o.jid == d.jail.jid));
        self.shm = shm;
    }
}

pub struct Host {
    pub dir: PathBuf,
}

impl Host {
    pub fn new(dir: PathBuf) -> Self {
        // Absolute, so paths stored in state and printed never depend on the caller's cwd.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Host { dir }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.state_dir().join("snapshots").join(id.to_string())
    }

    pub fn load(&self) -> Res<State> {
        let path = self.state_dir().join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(|mut st: State| {
                    st.free_dead_jails(now_us());
                    st
                })
                .map_err(|e| Fail::new(1, format!("freebsd-sim: parse {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Fail::new(
                1,
                format!("freebsd-sim: read {}: {e}", path.display()),
            )),
        }
    }

    fn save(&self, st: &State) -> Res<()> {
        let path = self.state_dir().join("state.json");
        let tmp = self
            .state_dir()
            .join(format!("state.json.tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(st).expect("state serializes");
        fs::write(&tmp, bytes)
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|e| Fail::new(1, format!("freebsd-sim: write {}: {e}", path.display())))
    }

    /// Runs `f` on the state under the lock; the state is saved only when `f` succeeds.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> Res<T>) -> Res<T> {
        self.locked(|| {
            let mut st = self.load()?;
            let out = f(&mut st)?;
            self.save(&st)?;
            Ok(out)
        })
    }

    /// Runs `f` holding `DIR/state/lock`, which guards every file under `DIR/state`.
    pub fn locked<T>(&self, f: impl FnOnce() -> Res<T>) -> Res<T> {
        let lockpath = self.state_dir().join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lockpath)
            .map_err(|e| Fail::new(1, format!("freebsd-sim: open {}: {e}", lockpath.display())))?;
        let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, e)| Fail::new(1, format!("freebsd-sim: lock {}: {e}", lockpath.display())),
        )?;
        f()
    }

    /// One O_APPEND write per call keeps concurrent tools' lines whole. `start_us` is when the
    /// tool began, the end is now (both µs since the epoch), so benchmarks can tell the
    /// simulator's share of a latency from the caller's.
    pub fn log_call(&self, argv: &[String], exit: i32, start_us: u64) {
        self.log_line(serde_json::json!({
            "argv": argv, "exit": exit, "start_us": start_us, "end_us": now_us()
        }));
    }

    /// Appends one JSON object as a line of `calls.jsonl`.
    pub fn log_line(&self, entry: serde_json::Value) {
        let mut line = serde_json::to_string(&entry).expect("json");
        line.push('\n');
        let path = self.state_dir().join("calls.jsonl");
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

pub fn io_fail(op: &str, path: &Path, e: std::io::Error) -> Fail {
    Fail::new(1, format!("freebsd-sim: {op} {}: {e}", path.display()))
}

/// Wall clock, µs since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The interfaces the host has after boot: its loopback and its NIC, as configured.
fn boot_ifaces() -> Vec<Iface> {
    vec![
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
            inet: vec!["10.0.2.15/24".into()],
            ..Default::default()
        },
    ]
}

/// `freebsd-sim reboot DIR`: what a host restart leaves. Every jailed process is killed; jails,
/// cloned interfaces, addresses added at run time, routes, mounts, pf's rules and state, rctl
/// rules, cpusets and run-time sysctl values are gone; datasets and files stay; kern.boottime
/// moves to now. Loaded kernel modules stay as they were (rc.conf would load them again).
pub fn reboot(dir: &Path) -> Res<String> {
    let host = Host::new(dir.to_path_buf());
    host.update(|st| {
        let mut ns: Vec<NsMark> = st.jails.iter().flat_map(|j| j.ns.iter().cloned()).collect();
        ns.extend(st.retired_ns.iter().cloned());
        for pid in crate::jail::pids_in(&ns) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        st.retired_ns = ns;
        st.jails.clear();
        st.dying.clear();
        st.shm.clear();
        st.ifaces = boot_ifaces();
        st.routes.clear();
        st.jail_aliases.clear();
        st.mounts.clear();
        st.pf_enabled = false;
        st.pf_since = now();
        st.anchors.clear();
        st.rctl.clear();
        st.rctl_exceeded.clear();
        st.cpusets.clear();
        st.sysctl.remove("net.inet.ip.forwarding");
        let t = now();
        st.sysctl.insert(
            "kern.boottime".into(),
            format!("{{ sec = {t}, usec = 0 }} {}", crate::zfs::ctime(t)),
        );
        Ok(format!("rebooted at {t}\n"))
    })
}

/// `freebsd-sim init [--encrypted] DIR`: lays out the host (idempotent) and prints the driver's
/// plugin config. `encrypted` makes a new host's `zroot/pot` an encryption root (aes-256-gcm, as
/// `zfs create -o encryption=on` chooses), which its descendants inherit.
pub fn init(dir: &Path, encrypted: bool) -> Res<String> {
    fs::create_dir_all(dir).map_err(|e| io_fail("mkdir", dir, e))?;
    let host = Host::new(dir.to_path_buf());
    let d = host.dir.clone();
    let root = host.root();
    for sub in [
        "etc",
        "opt/pot",
        "var/cache/pot",
        "tmp",
        "var/db/nomad-pot-driver",
        "usr/local/etc/pot",
        "var/run",
    ] {
        let p = root.join(sub);
        fs::create_dir_all(&p).map_err(|e| io_fail("mkdir", &p, e))?;
    }
    for sub in ["bin", "state/snapshots", "images"] {
        let p = d.join(sub);
        fs::create_dir_all(&p).map_err(|e| io_fail("mkdir", &p, e))?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| Fail::new(1, format!("freebsd-sim: current_exe: {e}")))?;
    for tool in TOOLS {
        let link = d.join("bin").join(tool);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link).map_err(|e| io_fail("symlink", &link, e))?;
    }
    let pot = root.join("opt/pot").display().to_string();
    let cache = root.join("var/cache/pot").display().to_string();
    host.update(|st| {
        if st.datasets.is_empty() {
            let t = now();
            let mk = |mp: Option<&str>| Dataset {
                props: mp
                    .map(|m| BTreeMap::from([("mountpoint".to_string(), m.to_string())]))
                    .unwrap_or_default(),
                creation: t,
                ..Default::default()
            };
            st.datasets.insert("zroot".into(), mk(Some("none")));
            let mut pot_ds = mk(Some(&pot));
            if encrypted {
                for (k, v) in [
                    ("encryption", "aes-256-gcm"),
                    ("keyformat", "passphrase"),
                    ("keylocation", "prompt"),
                ] {
                    pot_ds.props.insert(k.into(), v.into());
                }
            }
            st.datasets.insert("zroot/pot".into(), pot_ds);
            for child in ["bases", "jails", "fscomp"] {
                st.datasets.insert(format!("zroot/pot/{child}"), mk(None));
            }
            st.datasets
                .insert("zroot/pot/cache".into(), mk(Some(&cache)));
            st.next_jid = 1;
            st.ifaces = boot_ifaces();
        }
        Ok(())
    })?;
    for child in ["bases", "jails", "fscomp"] {
        let p = root.join("opt/pot").join(child);
        fs::create_dir_all(&p).map_err(|e| io_fail("mkdir", &p, e))?;
    }
    let p = |s: &str| d.join(s).display().to_string();
    let cfg = serde_json::json!({
        "enabled": true, "tool_path": p("bin"), "zfs_root": "zroot/pot", "fs_root": p("root/opt/pot"),
        "cache_dir": p("root/var/cache/pot"), "tmp_dir": p("root/tmp"),
        "state_dir": p("root/var/db/nomad-pot-driver"), "pot_conf_dir": p("root/usr/local/etc/pot"),
        "lock_file": p("root/tmp/pot-lock-file"),
        "network": "10.192.0.0/10", "netmask": "255.192.0.0", "gateway": "10.192.0.1",
        "dns_ip": "10.192.0.2", "extif": "em0",
        "devd_socket": crate::devd::socket_path(&d).display().to_string(),
        "allowed_image_dirs": [p("images")]
    });
    Ok(format!("{cfg}\n"))
}
