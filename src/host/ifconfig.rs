//! ifconfig(8): bridges, epairs and addresses, on the host or inside a vnet jail (`-j`).

use super::{Host, HostError, Tool, argv};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the engine reads of an interface in `ifconfig -a` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    pub name: String,
    pub description: String,
    /// IPv4 addresses with their prefix length.
    pub inet: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses, without their `%scope`.
    pub inet6: Vec<Ipv6Addr>,
    pub members: Vec<String>,
}

impl Host {
    /// Every interface of `group` with its details (`ifconfig -a -g group`), in one call.
    pub async fn ifaces_in_group(&self, group: &str) -> Result<Vec<IfaceInfo>, HostError> {
        let out = self.run(Tool::Ifconfig, argv!["-a", "-g", group]).await?;
        parse_listing(&out.stdout).map_err(|detail| HostError::Parse {
            command: format!("ifconfig -a -g {group}"),
            detail,
        })
    }

    /// One interface's details (`ifconfig NAME`).
    pub async fn iface_info(&self, name: &str) -> Result<IfaceInfo, HostError> {
        let out = self.run(Tool::Ifconfig, argv![name]).await?;
        let parse = |detail| HostError::Parse {
            command: format!("ifconfig {name}"),
            detail,
        };
        parse_listing(&out.stdout)
            .map_err(parse)?
            .into_iter()
            .next()
            .ok_or_else(|| parse("no interface in the output".to_string()))
    }

    /// Every interface of the host with its addresses (`ifconfig -a`), in one call.
    pub async fn ifaces_all(&self) -> Result<Vec<IfaceInfo>, HostError> {
        let out = self.run(Tool::Ifconfig, argv!["-a"]).await?;
        parse_listing(&out.stdout).map_err(|detail| HostError::Parse {
            command: "ifconfig -a".to_string(),
            detail,
        })
    }

    /// `ifconfig bridge create descr D group pot`; returns the new bridge's name.
    pub async fn bridge_create(&self, descr: &str) -> Result<String, HostError> {
        let out = self
            .run(
                Tool::Ifconfig,
                argv!["bridge", "create", "descr", descr, "group", "pot"],
            )
            .await?;
        created_name("ifconfig bridge create", &out.stdout)
    }

    /// `ifconfig epair create descr D group pot`; returns the a end (`epairNa`).
    pub async fn epair_create(&self, descr: &str) -> Result<String, HostError> {
        let out = self
            .run(
                Tool::Ifconfig,
                argv!["epair", "create", "descr", descr, "group", "pot"],
            )
            .await?;
        let name = created_name("ifconfig epair create", &out.stdout)?;
        if !name.starts_with("epair") || !name.ends_with('a') {
            return Err(HostError::Parse {
                command: "ifconfig epair create".into(),
                detail: format!("expected epairNa, got {name:?}"),
            });
        }
        Ok(name)
    }

    /// `ifconfig OLD name NEW up`.
    pub async fn iface_rename_up(&self, old: &str, new: &str) -> Result<(), HostError> {
        self.run(Tool::Ifconfig, argv![old, "name", new, "up"])
            .await
            .map(drop)
    }

    /// `ifconfig BRIDGE addm M [private M]`.
    pub async fn bridge_addm(
        &self,
        bridge: &str,
        member: &str,
        private: bool,
    ) -> Result<(), HostError> {
        let mut args = argv![bridge, "addm", member];
        if private {
            args.extend(argv!["private", member]);
        }
        self.run(Tool::Ifconfig, args).await.map(drop)
    }

    /// `ifconfig [-j JAIL] IF inet ADDR netmask MASK [alias]`.
    pub async fn iface_inet(
        &self,
        jail: Option<&str>,
        iface: &str,
        addr: Ipv4Addr,
        netmask: Ipv4Addr,
        alias: bool,
    ) -> Result<(), HostError> {
        let mut args = jail_prefix(jail);
        args.extend(argv![
            iface,
            "inet",
            addr.to_string(),
            "netmask",
            netmask.to_string()
        ]);
        if alias {
            args.push("alias".into());
        }
        self.run(Tool::Ifconfig, args).await.map(drop)
    }

    /// `ifconfig [-j JAIL] IF inet6 up`.
    pub async fn iface_inet6_up(&self, jail: Option<&str>, iface: &str) -> Result<(), HostError> {
        let mut args = jail_prefix(jail);
        args.extend(argv![iface, "inet6", "up"]);
        self.run(Tool::Ifconfig, args).await.map(drop)
    }

    /// `ifconfig [-j JAIL] IF inet6 up accept_rtadv -ifdisabled`: IPv6 autoconfiguration.
    pub async fn iface_inet6_autoconf(
        &self,
        jail: Option<&str>,
        iface: &str,
    ) -> Result<(), HostError> {
        let mut args = jail_prefix(jail);
        args.extend(argv![iface, "inet6", "up", "accept_rtadv", "-ifdisabled"]);
        self.run(Tool::Ifconfig, args).await.map(drop)
    }

    /// Whether interface `name` exists on the host (`ifconfig NAME`).
    pub async fn iface_exists(&self, name: &str) -> Result<bool, HostError> {
        match self.run(Tool::Ifconfig, argv![name]).await {
            Ok(_) => Ok(true),
            Err(HostError::Failed { stderr, .. }) if stderr.contains("does not exist") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ifconfig NIC inet|inet6 IP -alias`. An address not there is [`HostError::Absent`].
    pub async fn iface_remove_alias(&self, nic: &str, ip: IpAddr) -> Result<(), HostError> {
        let family = if ip.is_ipv6() { "inet6" } else { "inet" };
        match self
            .run(Tool::Ifconfig, argv![nic, family, ip.to_string(), "-alias"])
            .await
        {
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("Can't assign requested address")
                || stderr.contains("does not exist") =>
            {
                Err(HostError::Absent {
                    command,
                    what: format!("address {ip} on {nic}"),
                })
            }
            other => other.map(drop),
        }
    }

    /// `ifconfig IF destroy` (an epair end takes the other end along). A missing interface is
    /// [`HostError::Absent`].
    pub async fn iface_destroy(&self, iface: &str) -> Result<(), HostError> {
        match self.run(Tool::Ifconfig, argv![iface, "destroy"]).await {
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("does not exist") => Err(HostError::Absent {
                command,
                what: format!("interface {iface}"),
            }),
            other => other.map(drop),
        }
    }
}

fn jail_prefix(jail: Option<&str>) -> Vec<OsString> {
    match jail {
        Some(j) => argv!["-j", j],
        None => Vec::new(),
    }
}

/// The interface name `ifconfig … create` prints.
pub fn created_name(command: &str, stdout: &str) -> Result<String, HostError> {
    let name = stdout.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(HostError::Parse {
            command: command.to_string(),
            detail: format!("expected an interface name, got {name:?}"),
        });
    }
    Ok(name.to_string())
}

/// Parses ifconfig's status format: a `name: flags=…` line per interface, then tab-indented
/// detail lines.
pub fn parse_listing(text: &str) -> Result<Vec<IfaceInfo>, String> {
    let mut list: Vec<IfaceInfo> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if !line.starts_with(['\t', ' ']) {
            let name = line
                .split_once(": ")
                .map(|(n, _)| n)
                .ok_or_else(|| format!("not an interface line: {line:?}"))?;
            list.push(IfaceInfo {
                name: name.to_string(),
                ..Default::default()
            });
            continue;
        }
        let cur = list
            .last_mut()
            .ok_or_else(|| format!("detail before any interface: {line:?}"))?;
        let line = line.trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("description:") => {
                cur.description = line["description:".len()..].trim().to_string();
            }
            Some("member:") => cur.members.extend(words.next().map(str::to_string)),
            Some("inet") => {
                let addr = words.next().and_then(|a| a.parse::<Ipv4Addr>().ok());
                let mask = match (words.next(), words.next()) {
                    (Some("netmask"), Some(m)) => m
                        .strip_prefix("0x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok()),
                    _ => None,
                };
                match (addr, mask) {
                    (Some(a), Some(m)) => cur.inet.push((a, m.leading_ones() as u8)),
                    _ => return Err(format!("bad inet line: {line:?}")),
                }
            }
            Some("inet6") => {
                // Link-local addresses carry their zone: `fe80::1%lo0`.
                let addr = words
                    .next()
                    .map(|a| a.split_once('%').map_or(a, |(a, _)| a))
                    .and_then(|a| a.parse::<Ipv6Addr>().ok())
                    .ok_or_else(|| format!("bad inet6 line: {line:?}"))?;
                cur.inet6.push(addr);
            }
            _ => {}
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_freebsd_status_blocks() {
        let text = "bridge0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500\n\
\tdescription: pot public bridge\n\
\tether 58:9c:fc:10:00:00\n\
\tinet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255\n\
\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15\n\
\tmember: p4abc flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n\
\tgroups: bridge pot\n\
bridge1: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\
\tmember: em0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n\
lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384\n\
\tinet6 ::1 prefixlen 128\n\
\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x2\n\
\tinet 127.0.0.1 netmask 0xff000000\n";
        let l = parse_listing(text).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "bridge0");
        assert_eq!(l[0].description, "pot public bridge");
        assert_eq!(l[0].inet, vec![(Ipv4Addr::new(10, 192, 0, 1), 10)]);
        assert_eq!(l[0].members, ["p4abc"]);
        assert_eq!(l[1].members, ["em0"]);
        assert_eq!(
            l[2].inet6,
            [Ipv6Addr::LOCALHOST, "fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(l[2].inet, vec![(Ipv4Addr::LOCALHOST, 8)]);
        assert!(parse_listing("lo0: flags=0\n\tinet6 nope prefixlen 64\n").is_err());
        assert!(parse_listing("\tinet 1.2.3.4\n").is_err());
    }
}
