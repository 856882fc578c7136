//! pfctl(8): anchors and their translation rules.

use super::{Host, HostError, Tool, argv};

impl Host {
    /// Top-level anchors (`pfctl -s Anchors`), without the indentation.
    pub async fn pf_anchors(&self) -> Result<Vec<String>, HostError> {
        let out = self.run(Tool::Pfctl, argv!["-s", "Anchors"]).await?;
        Ok(parse_anchors(&out.stdout))
    }

    /// The anchors directly under `parent` (`pfctl -a PARENT -s Anchors`), by full path.
    pub async fn pf_child_anchors(&self, parent: &str) -> Result<Vec<String>, HostError> {
        let out = self
            .run(Tool::Pfctl, argv!["-a", parent, "-s", "Anchors"])
            .await?;
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

/// The host port an `rdr` rule redirects (`… to … port 8080 -> …`, or `port = 8080` as pfctl
/// prints a single port); `None` for other rules and for ranges or service names.
pub fn rdr_host_port(rule: &str) -> Option<u16> {
    let (matched, _) = rule.split_once("->")?;
    if !rule.trim_start().starts_with("rdr") {
        return None;
    }
    let mut words = matched
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .skip(1);
    match words.next()? {
        "=" => words.next()?.parse().ok(),
        w => w.parse().ok(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_port_of_rdr_rules() {
        for (rule, port) in [
            (
                "rdr pass on em0 proto tcp from any to (em0) port 8080 -> 10.192.0.3 port 80",
                Some(8080),
            ),
            (
                "rdr pass on em0 inet proto udp from any to 192.0.2.1 port = 53 -> 10.192.0.3 port 5353",
                Some(53),
            ),
            (
                "rdr pass on em0 proto tcp from any to (em0) port 8000:8010 -> 10.1.1.1",
                None,
            ),
            (
                "rdr pass on em0 proto tcp from any to (em0) port = http -> 10.1.1.1 port 80",
                None,
            ),
            ("nat on em0 from 10.192.0.0/10 to any -> (em0)", None),
            (
                "rdr pass on em0 proto tcp from any to (em0) -> 10.1.1.1",
                None,
            ),
        ] {
            assert_eq!(rdr_host_port(rule), port, "{rule}");
        }
    }
}
