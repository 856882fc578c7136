//! rctl(8): resource usage of a jail.

use super::{Host, HostError, Tool, argv};

/// Usage figures from `rctl -u jail:NAME`, in rctl's units (bytes, percent, seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceUsage {
    pub memoryuse: u64,
    pub swapuse: u64,
    pub pcpu: f64,
    pub cputime: u64,
}

impl Host {
    /// Current usage of jail `name`.
    pub async fn rctl_usage(&self, name: &str) -> Result<ResourceUsage, HostError> {
        let out = self
            .run(Tool::Rctl, argv!["-u", format!("jail:{name}")])
            .await?;
        Ok(parse_usage(&out.stdout))
    }
}

fn parse_usage(text: &str) -> ResourceUsage {
    let mut u = ResourceUsage::default();
    for (key, value) in text.lines().filter_map(|l| l.trim().split_once('=')) {
        match key {
            "memoryuse" => u.memoryuse = value.parse().unwrap_or(0),
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
    fn parses_rctl_usage() {
        let u = parse_usage("cputime=3\nmemoryuse=1048576\nswapuse=0\npcpu=12\nmaxproc=2\n");
        assert_eq!(u.memoryuse, 1048576);
        assert_eq!(u.cputime, 3);
        assert_eq!(u.pcpu, 12.0);
    }
}
