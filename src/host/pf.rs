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

    /// Loads the main ruleset from `file` (`pfctl -f FILE`), as pot's vnet-start does when the
    /// anchors are missing.
    pub async fn pf_load_main(&self, file: &std::path::Path) -> Result<(), HostError> {
        self.run(Tool::Pfctl, argv!["-f", file]).await.map(drop)
    }

    /// The translation rules of `anchor` (`pfctl -a ANCHOR -s nat`); none for a missing anchor.
    pub async fn pf_nat_rules(&self, anchor: &str) -> Result<Vec<String>, HostError> {
        match self
            .run(Tool::Pfctl, argv!["-a", anchor, "-s", "nat"])
            .await
        {
            Ok(out) => Ok(out
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(HostError::Failed { stderr, .. }) if stderr.contains("Invalid argument") => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether pf filters packets (`pfctl -s info` says `Status: Enabled`).
    pub async fn pf_enabled(&self) -> Result<bool, HostError> {
        let out = self.run(Tool::Pfctl, argv!["-s", "info"]).await?;
        Ok(out
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("Status: Enabled")))
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
