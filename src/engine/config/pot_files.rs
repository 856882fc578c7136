//! pot's own configuration files, `pot.default.conf` and `pot.conf`.

use super::table::SETTINGS;
use super::{ConfigError, bad};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The values of the pot variables named in [`SETTINGS`], from pot's defaults and files.
pub(super) struct PotSettings {
    /// By setting name.
    values: BTreeMap<&'static str, String>,
    /// Every `POT_NETWORK_<nic>` seen.
    nic_networks: BTreeMap<String, String>,
    /// The file that last set each pot variable.
    pub(super) set_by: BTreeMap<String, PathBuf>,
}

impl PotSettings {
    /// pot's defaults, then `pot.default.conf` and `pot.conf` from `conf_dir`, as pot reads them.
    pub(super) fn read(conf_dir: &Path) -> Result<Self, ConfigError> {
        let mut pot = PotSettings {
            values: SETTINGS
                .iter()
                .filter_map(|def| Some((def.name, def.pot?.default.to_string())))
                .collect(),
            nic_networks: BTreeMap::new(),
            set_by: BTreeMap::new(),
        };
        for file in ["pot.default.conf", "pot.conf"] {
            pot.overlay_file(&conf_dir.join(file))?;
        }
        Ok(pot)
    }

    /// The value of the pot variable of `setting`.
    ///
    /// # Panics
    /// If the table gives `setting` no pot variable: a bug that any resolve of an empty agent
    /// config shows, as it asks for every one.
    pub(super) fn get(&self, setting: &str) -> &str {
        self.values
            .get(setting)
            .unwrap_or_else(|| panic!("setting {setting} has no pot variable in SETTINGS"))
    }

    /// `POT_EXTRA_EXTIF` NICs with their `POT_NETWORK_<nic>`; pot skips NICs without one.
    pub(super) fn extra_extif(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        Ok(self
            .get("extra_extif")
            .split_whitespace()
            .filter_map(|nic| {
                self.nic_networks
                    .get(nic)
                    .map(|net| (nic.to_string(), net.clone()))
            })
            .collect())
    }

    /// pot sources these files as sh; like potnet we read plain `KEY=value` lines and ignore the
    /// rest, stripping one pair of surrounding quotes and any trailing comment.
    fn overlay_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(bad("pot_conf_dir", format!("{}: {e}", path.display())));
            }
        };
        for (key, value) in parse_shell_assignments(&text) {
            if key.starts_with("POT_") {
                self.set_by.insert(key.clone(), path.to_path_buf());
            }
            let def = SETTINGS
                .iter()
                .find(|def| def.pot.is_some_and(|var| var.name == key));
            if let Some(def) = def {
                self.values.insert(def.name, value);
            } else if let Some(nic) = key.strip_prefix("POT_NETWORK_") {
                // After the table: `POT_NETWORK_STACK` is a setting, not a NIC's network.
                self.nic_networks.insert(nic.to_string(), value);
            }
        }
        Ok(())
    }
}

fn parse_shell_assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| {
            let v = v.split(" #").next().unwrap_or("").trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect()
}
