//! Pot names and pot's on-disk layout for the pots the engine creates.

use super::EngineError;
use super::potconf::PotConf;
use std::path::{Path, PathBuf};

/// A pot (and jail) name: letters, digits, `_` and `-` only (not first), so it is valid as a jail
/// name, a ZFS dataset component, a file name and a tool's argument, and pot accepts it (no `.`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PotName(String);

impl PotName {
    /// Room for the pot's datasets (`<zfs_root>/jails/<pot>/m`, within ZFS's 255) and for
    /// `pot_status_<pot>` and the task's state dir (file names, within NAME_MAX 255).
    pub const MAX_LEN: usize = 200;

    pub fn new(name: &str) -> Result<PotName, EngineError> {
        let ok = !name.is_empty()
            && name.len() <= PotName::MAX_LEN
            // jexec, jail -r and jls would read a leading `-` as an option.
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(PotName(name.to_string()))
        } else {
            Err(EngineError::InvalidInput(format!(
                "{name:?} is not a valid pot name (letters, digits, '_' and '-', not first)"
            )))
        }
    }

    /// `<task>_<invocation>_<alloc>` as the Go driver names pots; characters pot or jail(8)
    /// would reject (`.` makes a child jail, spaces, non-ASCII, …) become `_`. A long task name
    /// is cut so the whole stays within [`PotName::MAX_LEN`]; the ids keep it unique.
    pub fn for_task(task: &str, invocation: &str, alloc: &str) -> Result<PotName, EngineError> {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let ids = format!("_{}_{}", clean(invocation), clean(alloc));
        let mut task = clean(task);
        if task.starts_with('-') {
            task.replace_range(..1, "_");
        }
        // Only ASCII is left, so any byte is a character boundary.
        task.truncate(PotName::MAX_LEN.saturating_sub(ids.len()));
        PotName::new(&format!("{task}{ids}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PotName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// ZFS user property marking the pots this driver created, with the owning task's id. Only
/// pots carrying it are ever garbage-collected.
pub const OWNER_PROPERTY: &str = "nomad-pot-driver:task";

/// The value of the owner property for a Nomad task id: `%` and control characters (a task
/// name may hold tabs and newlines) percent-encoded, since `zfs list -H` prints values raw
/// between tabs and newlines.
pub fn owner_value(task_id: &str) -> String {
    let mut out = String::with_capacity(task_id.len());
    for c in task_id.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The task id back from an owner property value; a `%` without two hex digits is kept.
pub fn task_id_of_owner(value: &str) -> String {
    percent_decode(value)
}

/// `%XX` escapes decoded; anything else, a `%` without two hex digits included, kept as it is.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paths of one pot.
#[derive(Clone)]
pub struct PotPaths {
    /// `$ROOT/jails/<p>`
    pub dir: PathBuf,
    /// `$ROOT/jails/<p>/m`, the jail root.
    pub root: PathBuf,
    pub conf_dir: PathBuf,
}

impl PotPaths {
    pub fn new(jails_dir: &Path, pot: &PotName) -> Self {
        let dir = jails_dir.join(pot.as_str());
        PotPaths {
            root: dir.join("m"),
            conf_dir: dir.join("conf"),
            dir,
        }
    }
}

/// A directory shown inside the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    /// Absolute path inside the jail.
    pub target: String,
    pub readonly: bool,
}

/// What `pot clone` + `pot prepare` would leave in the new pot's pot.conf, from the image's.
pub fn clone_conf(
    image: &PotConf,
    hostname: &str,
    command_line: &str,
    memory_mb: Option<i64>,
) -> PotConf {
    let mut conf = image.clone();
    // pot clone drops the network identity of its source and writes its own.
    for key in [
        "host.hostname",
        "bridge",
        "ip",
        "vnet",
        "network_type",
        "pot.stack",
        "pot.dns",
    ] {
        conf.remove(key);
    }
    conf.set("host.hostname", format!("\"{hostname}\""));
    conf.set("pot.stack", "ipv4");
    conf.set("network_type", "inherit");
    conf.set("vnet", "false");
    conf.set("pot.dns", "inherit");
    // pot prepare's attributes for Nomad pots.
    for (attr, value) in [
        ("persistent", "NO"),
        ("no-rc-script", "YES"),
        ("prunable", "YES"),
        ("localhost-tunnel", "YES"),
        ("no-etc-hosts", "YES"),
        ("no-tmpfs", "YES"),
    ] {
        conf.set(&format!("pot.attr.{attr}"), value);
    }
    conf.set("pot.cmd", command_line);
    if let Some(mb) = memory_mb.filter(|mb| *mb > 0) {
        conf.set("pot.rss.memory", format!("{mb}M"));
    }
    conf
}

/// fscomp.conf lines for directory mounts, in pot's `<dir> /<mnt> [ro]` form.
pub fn fscomp_lines(mounts: &[MountSpec]) -> String {
    mounts
        .iter()
        .map(|m| {
            let ro = if m.readonly { " ro" } else { "" };
            format!("{} {}{ro}\n", m.source.display(), m.target)
        })
        .collect()
}

/// The jail's /etc/hosts as pot's `_js_etc_hosts` writes it for a pot with `no-etc-hosts=YES`:
/// localhost under the pot's hostname, then the `pot.hosts` lines.
pub fn etc_hosts(hostname: &str, extra: &[String]) -> String {
    let mut s = format!("::1 localhost {hostname}\n127.0.0.1 localhost {hostname}\n");
    for line in extra {
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// pot's `_get_usable_hostname`: `<p>.<host>` when it fits, else `<p>`, else `<p>` cut short.
pub fn usable_hostname(pot: &PotName, host_hostname: &str, max_len: usize) -> String {
    let p = pot.as_str();
    if p.len() > max_len {
        return p[..max_len].to_string();
    }
    let full = format!("{p}.{host_hostname}");
    if full.len() <= max_len {
        full
    } else {
        p.to_string()
    }
}

/// Quotes an argv for `pot.cmd`, so that pot's own tools read back the same words.
pub fn command_line(argv: &[String]) -> String {
    shell_words::join(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_become_pot_names() {
        let p = PotName::for_task("web.v2", "a510890d", "4fe1de8e-eab5").unwrap();
        assert_eq!(p.as_str(), "web_v2_a510890d_4fe1de8e-eab5");
        let spaced = PotName::for_task("web v2", "a510890d", "4fe1de8e-eab5").unwrap();
        assert_eq!(spaced, p, "the ids, not the task name, keep pots apart");
        let odd = PotName::for_task("w\t\"é#$:=\n日", "a510890d", "4f").unwrap();
        assert_eq!(odd.as_str(), "w__________a510890d_4f");
        let alloc = "4fe1de8e-eab5-11ee-9c3a-0242ac120002";
        let long = PotName::for_task(&"n".repeat(242), "a510890d", alloc).unwrap();
        assert_eq!(long.as_str().len(), PotName::MAX_LEN);
        assert!(long.as_str().ends_with(&format!("_a510890d_{alloc}")));
        let dash = PotName::for_task("-rf", "a510890d", "4f").unwrap();
        assert_eq!(dash.as_str(), "_rf_a510890d_4f");
        assert!(PotName::new("-rf").is_err());
        assert!(PotName::new("a.b").is_err());
        assert!(PotName::new("").is_err());
    }

    #[test]
    fn owner_values_hold_no_tab_or_newline_and_read_back() {
        for id in ["a1/web/0f", "a1/web v2\tx\n%41ü/0f", "a1/100%/0f"] {
            let v = owner_value(id);
            assert!(!v.contains(['\t', '\n']), "{v:?}");
            assert_eq!(task_id_of_owner(&v), id);
        }
        assert_eq!(owner_value("a/w\tv/1"), "a/w%09v/1");
        assert_eq!(task_id_of_owner("a/50%/1"), "a/50%/1");
    }

    #[test]
    fn whatever_the_task_name_the_names_on_the_host_are_plain() {
        let alloc = "4fe1de8e-eab5-11ee-9c3a-0242ac120002";
        for task in [
            "web v2",
            "web.v2",
            "-x",
            "a#b",
            "日本",
            "x\n127.0.0.1 evil",
            &"é".repeat(121),
        ] {
            let p = PotName::for_task(task, "a510890d", alloc).unwrap();
            // No `.` (a child jail to jail(8)), no blank or `#` (/etc/hosts), no `=` or quote
            // (pot.conf), nothing a tool would take for an option.
            assert!(PotName::new(p.as_str()).is_ok(), "{task:?}: {p}");
            let host = usable_hostname(&p, "node1", 64);
            assert!(!host.contains([' ', '\t', '\n', '#', '=', '"']), "{host:?}");
            assert_eq!(etc_hosts(&host, &[]).lines().count(), 2, "{task:?}");
        }
    }

    #[test]
    fn hostname_rule_matches_pot() {
        let p = PotName::new("web_1").unwrap();
        assert_eq!(usable_hostname(&p, "node1", 64), "web_1.node1");
        assert_eq!(usable_hostname(&p, &"h".repeat(70), 64), "web_1");
        assert_eq!(usable_hostname(&p, "node1", 3), "web");
    }

    #[test]
    fn clone_conf_rewrites_network_and_prepare_attributes() {
        let image = PotConf::parse(
            "pot.type=single\nhost.hostname=\"img.x\"\nnetwork_type=public-bridge\nip=10.192.0.3\nvnet=true\npot.attr.persistent=YES\n",
        );
        let c = clone_conf(&image, "web_1.node", "nginx -g 'daemon off;'", Some(64));
        assert_eq!(c.get_raw("host.hostname"), Some("\"web_1.node\""));
        assert_eq!(c.get_raw("network_type"), Some("inherit"));
        assert_eq!(c.get_raw("ip"), None);
        assert_eq!(c.get_raw("pot.attr.persistent"), Some("NO"));
        assert_eq!(c.get_raw("pot.rss.memory"), Some("64M"));
        assert_eq!(c.get_raw("pot.type"), Some("single"));
    }

    #[test]
    fn etc_hosts_is_pots() {
        assert_eq!(
            etc_hosts("web_1.node", &["10.0.0.5 db".into()]),
            "::1 localhost web_1.node\n127.0.0.1 localhost web_1.node\n10.0.0.5 db\n"
        );
    }

    #[test]
    fn fscomp_uses_pot_directory_form() {
        let m = [
            MountSpec {
                source: "/a/local".into(),
                target: "/local".into(),
                readonly: false,
            },
            MountSpec {
                source: "/a/ro".into(),
                target: "/data".into(),
                readonly: true,
            },
        ];
        assert_eq!(fscomp_lines(&m), "/a/local /local\n/a/ro /data ro\n");
    }
}
