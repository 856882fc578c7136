//! pfctl(8): anchors and their translation rules.

use super::{Host, HostError, Tool, argv};

impl Host {
    /// Top-level anchors (`pfctl -s Anchors`), without the indentation.
    pub async fn pf_anchors(&self) -> Result<Vec<String>, HostError> {
        let out = self.run(Tool::Pfctl, argv!["-s", "Anchors"]).await?;
        Ok(parse_anchors(&out.stdout))
    }

    /// Loads `rules` into `anchor`, replacing its rules (`pfctl -a ANCHOR -f -`, rules on stdin).
    pub async fn pf_load(&self, anchor: &str, rules: &str) -> Result<(), HostError> {
        self.run_with_stdin(
            Tool::Pfctl,
            argv!["-a", anchor, "-f", "-"],
            rules.as_bytes(),
        )
        .await
        .map(drop)
    }

    /// Flushes the translation rules of `anchor` (`pfctl -a ANCHOR -F nat -q`); pf drops an
    /// anchor left empty and unreferenced. A missing anchor is fine.
    pub async fn pf_flush_nat(&self, anchor: &str) -> Result<(), HostError> {
        self.run(Tool::Pfctl, argv!["-a", anchor, "-F", "nat", "-q"])
            .await
            .map(drop)
    }

    /// `pfctl -e`; pf already enabled is success.
    pub async fn pf_enable(&self) -> Result<(), HostError> {
        match self.run(Tool::Pfctl, argv!["-e"]).await {
            Err(HostError::Failed { stderr, .. }) if stderr.contains("already enabled") => Ok(()),
            other => other.map(drop),
        }
    }
}

/// `pfctl -s Anchors` output: one anchor per line, indented.
pub fn parse_anchors(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}
