//! rctl(8): resource limits and usage of a jail.

use super::{Host, HostError, Tool, argv};

/// A resource a jail can be limited on, with the action the driver uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RctlResource {
    /// Resident memory, bytes.
    MemoryUse,
    /// CPU, percent of one CPU.
    Pcpu,
    MaxProc,
    OpenFiles,
    /// Address space, bytes.
    VMemoryUse,
    /// Swap reserved, bytes.
    SwapUse,
    /// Bytes per second.
    ReadBps,
    WriteBps,
}

impl RctlResource {
    pub fn name(self) -> &'static str {
        match self {
            RctlResource::MemoryUse => "memoryuse",
            RctlResource::Pcpu => "pcpu",
            RctlResource::MaxProc => "maxproc",
            RctlResource::OpenFiles => "openfiles",
            RctlResource::VMemoryUse => "vmemoryuse",
            RctlResource::SwapUse => "swapuse",
            RctlResource::ReadBps => "readbps",
            RctlResource::WriteBps => "writebps",
        }
    }

    fn from_name(name: &str) -> Option<RctlResource> {
        [
            RctlResource::MemoryUse,
            RctlResource::Pcpu,
            RctlResource::MaxProc,
            RctlResource::OpenFiles,
            RctlResource::VMemoryUse,
            RctlResource::SwapUse,
            RctlResource::ReadBps,
            RctlResource::WriteBps,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }

    /// How a limit on this resource is enforced: rctl cannot deny I/O rates, only throttle
    /// them; everything else is denied.
    pub fn limit_action(self) -> RctlAction {
        match self {
            RctlResource::ReadBps | RctlResource::WriteBps => RctlAction::Throttle,
            _ => RctlAction::Deny,
        }
    }
}

/// What the kernel does when a rule's amount is exceeded (rctl(8) ACTIONS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RctlAction {
    Deny,
    Throttle,
    /// A devctl(4) notification, `system=RCTL subsystem=rule type=matched`, which devd(8)
    /// passes on to its clients; once per process each time the amount is exceeded.
    Devctl,
}

impl RctlAction {
    pub fn name(self) -> &'static str {
        match self {
            RctlAction::Deny => "deny",
            RctlAction::Throttle => "throttle",
            RctlAction::Devctl => "devctl",
        }
    }

    fn from_name(name: &str) -> Option<RctlAction> {
        [RctlAction::Deny, RctlAction::Throttle, RctlAction::Devctl]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// One rule on one jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RctlRule {
    pub jail: String,
    pub resource: RctlResource,
    pub action: RctlAction,
    pub amount: u64,
}

impl RctlRule {
    /// `jail:<name>:<resource>:<action>=<amount>`
    pub fn text(&self) -> String {
        format!(
            "jail:{}:{}:{}={}",
            self.jail,
            self.resource.name(),
            self.action.name(),
            self.amount
        )
    }

    /// A jail rule as the kernel prints it (the form [`RctlRule::text`] writes, with no
    /// `/per`); `None` for anything else.
    pub fn parse(text: &str) -> Option<RctlRule> {
        let mut parts = text.rsplitn(3, ':');
        let (action, amount) = parts.next()?.split_once('=')?;
        let resource = RctlResource::from_name(parts.next()?)?;
        let jail = parts.next()?.strip_prefix("jail:")?;
        if jail.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(RctlRule {
            jail: jail.to_string(),
            resource,
            action: RctlAction::from_name(action)?,
            amount: amount.parse().ok()?,
        })
    }
}

/// Usage figures from `rctl -u jail:NAME`, in rctl's units (bytes, percent, seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceUsage {
    pub memoryuse: u64,
    pub vmemoryuse: u64,
    pub swapuse: u64,
    pub pcpu: f64,
    pub cputime: u64,
}

impl Host {
    /// `rctl -a RULE…`: one call for all of a jail's rules, which rctl adds one by one.
    pub async fn rctl_add(&self, rules: &[RctlRule]) -> Result<(), HostError> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut args = argv!["-a"];
        args.extend(rules.iter().map(|r| std::ffi::OsString::from(r.text())));
        self.run(Tool::Rctl, args).await.map(drop)
    }

    /// `rctl -r jail:<name>`: every rule on the jail. None there (or racct off, so none can
    /// exist) is [`HostError::Absent`].
    pub async fn rctl_remove_jail(&self, name: &str) -> Result<(), HostError> {
        match self
            .run(Tool::Rctl, argv!["-r", format!("jail:{name}")])
            .await
        {
            Ok(_) => Ok(()),
            Err(HostError::Failed {
                command, stderr, ..
            }) if stderr.contains("No such process") || stderr.contains("disabled") => {
                Err(HostError::Absent {
                    command,
                    what: format!("rctl rules of jail {name}"),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The rules on jail `name`, as rctl prints them (`jail:NAME:RES:ACTION=AMOUNT`), from the
    /// list of every rule; none when racct is off.
    pub async fn rctl_rules(&self, name: &str) -> Result<Vec<String>, HostError> {
        let out = match self.run(Tool::Rctl, argv![]).await {
            Ok(out) => out,
            // Without racct there are no rules to list.
            Err(HostError::Failed { stderr, .. })
                if stderr.contains("disabled") || stderr.contains("not present") =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let prefix = format!("jail:{name}:");
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_string)
            .collect())
    }

    /// Current usage of jail `name`.
    pub async fn rctl_usage(&self, name: &str) -> Result<ResourceUsage, HostError> {
        let out = self
            .run(Tool::Rctl, argv!["-u", format!("jail:{name}")])
            .await?;
        Ok(parse_usage(&out.stdout))
    }
}

/// `rctl -u` output: `resource=amount` lines; unknown resources and bad numbers are ignored.
pub fn parse_usage(text: &str) -> ResourceUsage {
    let mut u = ResourceUsage::default();
    for (key, value) in text.lines().filter_map(|l| l.trim().split_once('=')) {
        match key {
            "memoryuse" => u.memoryuse = value.parse().unwrap_or(0),
            "vmemoryuse" => u.vmemoryuse = value.parse().unwrap_or(0),
            "swapuse" => u.swapuse = value.parse().unwrap_or(0),
            "pcpu" => u.pcpu = value.parse().unwrap_or(0.0),
            "cputime" => u.cputime = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_deny_amounts_and_throttle_rates() {
        let rule = |resource: RctlResource, amount| RctlRule {
            jail: "web_1".into(),
            resource,
            action: resource.limit_action(),
            amount,
        };
        assert_eq!(
            rule(RctlResource::MemoryUse, 268435456).text(),
            "jail:web_1:memoryuse:deny=268435456"
        );
        assert_eq!(
            rule(RctlResource::Pcpu, 50).text(),
            "jail:web_1:pcpu:deny=50"
        );
        assert_eq!(
            rule(RctlResource::WriteBps, 1048576).text(),
            "jail:web_1:writebps:throttle=1048576"
        );
        let devctl = RctlRule {
            action: RctlAction::Devctl,
            ..rule(RctlResource::MemoryUse, 1 << 20)
        };
        assert_eq!(devctl.text(), "jail:web_1:memoryuse:devctl=1048576");
        assert_eq!(RctlRule::parse(&devctl.text()), Some(devctl));
        for bad in [
            "jail::memoryuse:devctl=1",
            "user:0:memoryuse:devctl=1",
            "jail:x:memoryuse:devctl=1/process",
            "jail:x:nthr:devctl=1",
            "jail:x:memoryuse:sigkill=1",
            "jail:x:memoryuse:devctl",
        ] {
            assert_eq!(RctlRule::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_rctl_usage() {
        let u = parse_usage(
            "cputime=3\nmemoryuse=1048576\nvmemoryuse=4194304\nswapuse=0\npcpu=12\nmaxproc=2\n",
        );
        assert_eq!(u.memoryuse, 1048576);
        assert_eq!(u.vmemoryuse, 4194304);
        assert_eq!(u.cputime, 3);
        assert_eq!(u.pcpu, 12.0);
    }
}
