//! `potctl config`: each setting with its effective value and where that value came from.

use super::pot_files::PotSettings;
use super::table::SETTINGS;
use super::{ConfigError, EngineConfig, Overrides};
use std::path::PathBuf;

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// pot's default, or the driver's where pot has none.
    Default,
    /// A `POT_*` variable in one of pot's config files.
    PotConf,
    /// The plugin's agent config.
    AgentConfig,
}

/// One setting of the engine: its agent-config key, effective value and source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
    /// The pot config file, for [`Source::PotConf`].
    pub file: Option<PathBuf>,
}

impl EngineConfig {
    /// Each setting [`EngineConfig::resolve`] decides that `potctl config` lists, with where its
    /// value came from.
    pub fn explain(o: &Overrides) -> Result<Vec<Setting>, ConfigError> {
        let cfg = EngineConfig::resolve(o)?;
        let pot = PotSettings::read(&cfg.pot_conf_dir)?;
        Ok(SETTINGS
            .iter()
            .filter_map(|def| {
                let value = def.show(&cfg)?;
                let (source, file) = match def.pot.and_then(|var| pot.set_by.get(var.name)) {
                    _ if def.given(o) => (Source::AgentConfig, None),
                    Some(file) => (Source::PotConf, Some(file.clone())),
                    None => (Source::Default, None),
                };
                Some(Setting {
                    key: def.name,
                    value,
                    source,
                    file,
                })
            })
            .collect())
    }
}
