//! sysctl(8).

use super::{Host, HostError, Tool, argv};

impl Host {
    /// `sysctl -n name`, trimmed.
    pub async fn sysctl(&self, name: &str) -> Result<String, HostError> {
        let out = self.run(Tool::Sysctl, argv!["-n", name]).await?;
        Ok(out.stdout.trim().to_string())
    }
}
