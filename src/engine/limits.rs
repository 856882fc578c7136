//! A task's resource limits: rctl rules on its jail, a cpuset, a ZFS quota on its pot. pot
//! applies memory and CPUs (`_js_rss`) and never removes its rules; every rule added here goes
//! again in teardown (`rctl -r jail:<pot>`).

use super::EngineError;
use crate::host::{RctlAction, RctlResource, RctlRule};

/// Limits of one task; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// memoryuse, bytes: Nomad's `memory`, or `memory_max` when that is higher.
    pub memory_bytes: Option<u64>,
    /// The task's share of the node's CPU (Nomad's PercentTicks: cpu MHz / the node's MHz).
    pub cpu_share: Option<f64>,
    /// CPUs reserved with Nomad's `cores`.
    pub cpus: Vec<u32>,
    pub maxproc: Option<u64>,
    pub openfiles: Option<u64>,
    pub vmemoryuse: Option<u64>,
    pub swapuse: Option<u64>,
    pub readbps: Option<u64>,
    pub writebps: Option<u64>,
    /// ZFS quota on the pot's datasets, bytes.
    pub quota: Option<u64>,
}

impl Limits {
    /// Limits the job set itself in its config, as opposed to Nomad's resources.
    pub fn has_explicit_rctl(&self) -> bool {
        [
            self.maxproc,
            self.openfiles,
            self.vmemoryuse,
            self.swapuse,
            self.readbps,
            self.writebps,
        ]
        .iter()
        .any(Option::is_some)
    }

    /// The rctl rules for jail `jail` on a host with `ncpu` CPUs. With `report_memory`, the
    /// memory limit also gets a `devctl` rule of the same amount, so that the kernel reports
    /// the jail reaching it (memoryuse is enforced by paging out, never by killing).
    pub fn rules(&self, jail: &str, ncpu: u32, report_memory: bool) -> Vec<RctlRule> {
        let rule = |resource: RctlResource, amount: Option<u64>| {
            amount.map(|amount| RctlRule {
                jail: jail.to_string(),
                resource,
                action: resource.limit_action(),
                amount,
            })
        };
        let report = self
            .memory_bytes
            .filter(|_| report_memory)
            .map(|amount| RctlRule {
                jail: jail.to_string(),
                resource: RctlResource::MemoryUse,
                action: RctlAction::Devctl,
                amount,
            });
        [
            rule(RctlResource::MemoryUse, self.memory_bytes),
            rule(RctlResource::Pcpu, self.cpu_share.map(|s| pcpu(s, ncpu))),
            rule(RctlResource::MaxProc, self.maxproc),
            rule(RctlResource::OpenFiles, self.openfiles),
            rule(RctlResource::VMemoryUse, self.vmemoryuse),
            rule(RctlResource::SwapUse, self.swapuse),
            rule(RctlResource::ReadBps, self.readbps),
            rule(RctlResource::WriteBps, self.writebps),
            report,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// rctl's `pcpu` is a percentage of one CPU (a jail may use up to `ncpu × 100`), so a share
/// of the whole node is `share × ncpu × 100`, rounded up and at least 1.
fn pcpu(share: f64, ncpu: u32) -> u64 {
    ((share * f64::from(ncpu) * 100.0).ceil() as u64).max(1)
}

/// A positive size in bytes: digits with an optional binary suffix `k`, `m`, `g` or `t` (any
/// case), optionally followed by `B` or `iB` (`512M`, `100MiB`, `1TB`).
pub fn bytes(value: &str) -> Option<u64> {
    let v = value
        .strip_suffix("iB")
        .or_else(|| value.strip_suffix('B'))
        .unwrap_or(value);
    let (digits, shift) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return None,
            };
            (&v[..i], shift)
        }
        _ => (v, 0),
    };
    parse_digits(digits)?
        .checked_mul(1u64 << shift)
        .filter(|b| *b > 0)
}

/// [`bytes`] of a task-config value, or an error naming its key.
pub fn parse_size(key: &str, value: &str) -> Result<u64, EngineError> {
    bytes(value).ok_or_else(|| {
        EngineError::InvalidInput(format!(
            "{key}: {value:?} is not a size (a number with an optional k, m, g or t suffix)"
        ))
    })
}

/// A positive count.
pub fn parse_count(key: &str, value: &str) -> Result<u64, EngineError> {
    parse_digits(value).filter(|n| *n > 0).ok_or_else(|| {
        EngineError::InvalidInput(format!("{key}: {value:?} is not a positive number"))
    })
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Nomad's cpuset form (`0-2,5`) as a sorted list of CPU numbers.
pub fn parse_cpu_list(list: &str) -> Result<Vec<u32>, EngineError> {
    let bad = || EngineError::InvalidInput(format!("reserved cores {list:?} are not a CPU list"));
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (
            parse_digits(a).ok_or_else(bad)?,
            parse_digits(b).ok_or_else(bad)?,
        );
        if a > b || b >= 4096 {
            return Err(bad());
        }
        cpus.extend(a as u32..=b as u32);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_counts_and_cpu_lists() {
        assert_eq!(parse_size("swapuse", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("swapuse", "2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("readbps", "1000").unwrap(), 1000);
        for bad in ["", "M", "1.5G", "-1", "10x", "0", "99999999999T", "1 G"] {
            let e = parse_size("swapuse", bad).unwrap_err().to_string();
            assert!(e.starts_with("swapuse: "), "{bad:?}: {e}");
        }
        assert_eq!(parse_count("maxproc", "64").unwrap(), 64);
        assert!(parse_count("maxproc", "0").is_err());
        assert!(parse_count("maxproc", "1e3").is_err());
        assert_eq!(parse_cpu_list("0-2,5,1").unwrap(), [0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u32>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn cpu_share_becomes_percent_of_one_cpu() {
        // 1000 MHz of a 4 × 2000 MHz node: an eighth of it, half of one CPU.
        assert_eq!(pcpu(0.125, 4), 50);
        assert_eq!(pcpu(0.0001, 4), 1);
        assert_eq!(pcpu(1.0, 8), 800);
        let limits = Limits {
            memory_bytes: Some(256 << 20),
            cpu_share: Some(0.125),
            writebps: Some(1 << 20),
            ..Default::default()
        };
        let rules: Vec<String> = limits
            .rules("p", 4, true)
            .iter()
            .map(|r| r.text())
            .collect();
        assert_eq!(
            rules,
            [
                "jail:p:memoryuse:deny=268435456",
                "jail:p:pcpu:deny=50",
                "jail:p:writebps:throttle=1048576",
                "jail:p:memoryuse:devctl=268435456",
            ]
        );
        assert_eq!(limits.rules("p", 4, false).len(), 3);
        assert!(limits.has_explicit_rctl());
        let nomad_only = Limits {
            writebps: None,
            ..limits
        };
        assert!(!nomad_only.has_explicit_rctl());
        assert!(Limits::default().rules("p", 4, true).is_empty());
    }
}
