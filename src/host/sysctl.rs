//! sysctl(8).

use super::{Host, HostError, Tool, argv};

impl Host {
    /// `sysctl -n name`, trimmed.
    pub async fn sysctl(&self, name: &str) -> Result<String, HostError> {
        let out = self.run(Tool::Sysctl, argv!["-n", name]).await?;
        Ok(out.stdout.trim().to_string())
    }
}

impl Host {
    /// `sysctl name=value`.
    pub async fn sysctl_set(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.run(Tool::Sysctl, argv![format!("{name}={value}")])
            .await
            .map(drop)
    }
}

impl Host {
    /// `kern.boottime` in seconds since the epoch: one value per boot of the host.
    pub async fn boot_time(&self) -> Result<u64, HostError> {
        let out = self.run(Tool::Sysctl, argv!["-n", "kern.boottime"]).await?;
        parse_boottime(&out.stdout).ok_or_else(|| HostError::Parse {
            command: "sysctl -n kern.boottime".to_string(),
            detail: format!("no `sec = N` in {:?}", out.stdout.trim()),
        })
    }
}

/// `{ sec = 1700000000, usec = 123456 } Tue Nov 14 22:13:20 2023` → 1700000000.
pub fn parse_boottime(text: &str) -> Option<u64> {
    let rest = text
        .trim()
        .strip_prefix('{')?
        .trim_start()
        .strip_prefix("sec")?;
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_boottime;

    #[test]
    fn boottime_seconds() {
        assert_eq!(
            parse_boottime("{ sec = 1700000000, usec = 123456 } Tue Nov 14 22:13:20 2023\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boottime("{ sec = 5, usec = 0 }"), Some(5));
        for bad in [
            "",
            "sec = 5",
            "{ usec = 1 }",
            "{ sec = , usec = 0 }",
            "{ sec = x }",
        ] {
            assert_eq!(parse_boottime(bad), None, "{bad:?}");
        }
    }
}
