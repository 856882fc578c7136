//! The node's CPUs and the running pots' resource usage, as rctl and sysctl report them.

use crate::engine::{Engine, EngineError, PotName};
use serde::Serialize;

/// The node's CPUs as Nomad's fingerprint counts them: its compute is `cpus × mhz` MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeCpu {
    pub cpus: u32,
    /// Clock rate of one CPU (`hw.clockrate`).
    pub mhz: u64,
}

/// A running pot's resource usage, as pot's `get-rss` reads it from rctl.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PotUsage {
    pub pot: String,
    /// Bytes.
    pub memoryuse: u64,
    pub vmemoryuse: u64,
    pub swapuse: u64,
    /// Percent of one CPU.
    pub pcpu: f64,
    /// Seconds.
    pub cputime: u64,
    /// `hw.clockrate * pcpu / 100`, get-rss's `TotalTicks`.
    pub cputime_mhz: f64,
}

impl Engine {
    /// `hw.ncpu` and `hw.clockrate`, from which a Nomad client derives a task's CPU share.
    pub async fn node_cpu(&self) -> Result<NodeCpu, EngineError> {
        let read = |name: &'static str| async move {
            let v = self
                .host
                .sysctl(name)
                .await
                .map_err(EngineError::node(&format!("read {name}")))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| EngineError::Node {
                    what: format!("read {name}"),
                    reason: format!("{v:?} is not a positive number"),
                })
        };
        let cpus = read("hw.ncpu").await?;
        Ok(NodeCpu {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            mhz: read("hw.clockrate").await?,
        })
    }

    /// rctl usage of every running pot (or of `only`), as pot's `get-rss` reports it. Needs
    /// `kern.racct.enable=1`.
    pub async fn usage_report(&self, only: Option<&PotName>) -> Result<Vec<PotUsage>, EngineError> {
        if !self.racct().await {
            return Err(EngineError::Node {
                what: "resource usage".to_string(),
                reason: "kern.racct.enable is 0: set kern.racct.enable=1 in /boot/loader.conf and reboot".to_string(),
            });
        }
        let clockrate: f64 = self
            .host
            .sysctl("hw.clockrate")
            .await
            .map_err(EngineError::node("read hw.clockrate"))?
            .trim()
            .parse()
            .unwrap_or(0.0);
        let mut running = self
            .host
            .jail_names()
            .await
            .map_err(EngineError::node("list jails"))?;
        if let Some(pot) = only {
            if !running.contains(pot.as_str()) {
                return Err(EngineError::State {
                    pot: pot.to_string(),
                    reason: "not running (no jail)".to_string(),
                });
            }
            running.retain(|n| n == pot.as_str());
        }
        let mut out = Vec::new();
        for name in running {
            let u = self
                .host
                .rctl_usage(&name)
                .await
                .map_err(EngineError::host(&name))?;
            out.push(PotUsage {
                memoryuse: u.memoryuse,
                vmemoryuse: u.vmemoryuse,
                swapuse: u.swapuse,
                pcpu: u.pcpu,
                cputime: u.cputime,
                // get-rss computes it with bc at scale 3.
                cputime_mhz: (clockrate * u.pcpu / 100.0 * 1000.0).round() / 1000.0,
                pot: name,
            });
        }
        Ok(out)
    }
}
