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
