//! The engine's settings, one row each. The driver's agent-config schema, the decoding of the
//! agent config into [`Overrides`], pot's `POT_*` variables with pot's defaults, and
//! `potctl config` all come from this table.
//!
//! To add a setting: a field in [`Overrides`] (its type gives the setting's type in the schema),
//! a row here, its typed field in [`EngineConfig`] with its rule in `EngineConfig::resolve`,
//! and a check in `EngineConfig::validate` when it needs one. Those two stay key by key: each
//! setting is parsed, defaulted and checked in its own way, in an order the errors depend on.
//! Then its line in the schema pin (`driver::schema`'s tests) and its row in the README's
//! agent option table, which `tests/examples.rs` holds to the schema.

use super::{EngineConfig, Overrides};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The shape of a setting's value in the agent config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Flag,
    /// A list of strings.
    Texts,
    /// A list of string maps, merged into one.
    Pairs,
}

/// One setting of the agent config.
#[derive(Clone, Copy)]
pub struct SettingDef {
    /// The agent-config key: also the setting's name in `potctl config` and in errors.
    pub name: &'static str,
    pub kind: Kind,
    /// A literal the agent-config schema applies when the key is absent. Most settings have
    /// none: absent means pot's value, which a schema default would hide.
    pub schema_default: Option<&'static str>,
    /// pot's variable for the setting, used when the agent config leaves it out.
    pub(super) pot: Option<PotVar>,
    /// Sets the setting's [`Overrides`] field from the agent config.
    fill: fn(&mut Overrides, &dyn Values),
    /// Whether the agent config gave the setting.
    given: fn(&Overrides) -> bool,
    /// The effective value as `potctl config` shows it; `None`: not listed there.
    show: Option<fn(&EngineConfig) -> String>,
}

/// A `POT_*` variable of pot's config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PotVar {
    pub(super) name: &'static str,
    /// pot's value when none of its files sets the variable.
    pub(super) default: &'static str,
}

/// The agent config's values by key, as its decoder holds them; absent keys give `None` or
/// empty.
pub trait Values {
    fn text(&self, key: &str) -> Option<String>;
    fn flag(&self, key: &str) -> Option<bool>;
    fn texts(&self, key: &str) -> Vec<String>;
    /// A list of string maps merged into one.
    fn pairs(&self, key: &str) -> BTreeMap<String, String>;
}

/// The type of an [`Overrides`] field: the setting's shape, and how the field holds the agent's
/// value. An empty list is the same as an absent key, as in the agent config.
trait Field: Sized {
    const KIND: Kind;
    fn read(values: &dyn Values, key: &str) -> Self;
    fn given(&self) -> bool;
}

impl Field for Option<String> {
    const KIND: Kind = Kind::Text;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.text(key)
    }
    fn given(&self) -> bool {
        self.is_some()
    }
}

impl Field for Option<PathBuf> {
    const KIND: Kind = Kind::Text;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.text(key).map(PathBuf::from)
    }
    fn given(&self) -> bool {
        self.is_some()
    }
}

impl Field for Option<bool> {
    const KIND: Kind = Kind::Flag;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.flag(key)
    }
    fn given(&self) -> bool {
        self.is_some()
    }
}

impl Field for Vec<String> {
    const KIND: Kind = Kind::Texts;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.texts(key)
    }
    fn given(&self) -> bool {
        !self.is_empty()
    }
}

impl Field for Vec<PathBuf> {
    const KIND: Kind = Kind::Texts;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.texts(key).into_iter().map(PathBuf::from).collect()
    }
    fn given(&self) -> bool {
        !self.is_empty()
    }
}

impl Field for BTreeMap<String, String> {
    const KIND: Kind = Kind::Pairs;
    fn read(values: &dyn Values, key: &str) -> Self {
        values.pairs(key)
    }
    fn given(&self) -> bool {
        !self.is_empty()
    }
}

/// The [`Kind`] of the field `field` reads; the field is only named, never called.
const fn kind_of<T: Field>(_field: fn(&Overrides) -> &T) -> Kind {
    T::KIND
}

/// A row for the [`Overrides`] field of the setting's name.
macro_rules! setting {
    ($name:ident) => {
        SettingDef::new(
            stringify!($name),
            kind_of(|o| &o.$name),
            |o, values| o.$name = Field::read(values, stringify!($name)),
            |o| o.$name.given(),
        )
    };
}

/// Every engine setting of the agent config, in the schema's and `potctl config`'s order.
pub const SETTINGS: &[SettingDef] = &[
    setting!(tool_path).shown(|c| c.tool_path.clone()),
    setting!(zfs_root)
        .pot("POT_ZFS_ROOT", "zroot/pot")
        .shown(|c| c.zfs_root.clone()),
    setting!(fs_root)
        .pot("POT_FS_ROOT", "/opt/pot")
        .shown(|c| path(&c.fs_root)),
    setting!(cache_dir)
        .pot("POT_CACHE", "/var/cache/pot")
        .shown(|c| path(&c.cache_dir)),
    setting!(tmp_dir)
        .pot("POT_TMP", "/tmp")
        .shown(|c| path(&c.tmp_dir)),
    setting!(state_dir).shown(|c| path(&c.state_dir)),
    setting!(lock_file).shown(|c| path(&c.lock_file)),
    setting!(pot_conf_dir).shown(|c| path(&c.pot_conf_dir)),
    setting!(network)
        .pot("POT_NETWORK", "10.192.0.0/10")
        .shown(|c| c.network.network.clone()),
    setting!(netmask)
        .pot("POT_NETMASK", "255.192.0.0")
        .shown(|c| c.network.netmask.to_string()),
    setting!(gateway)
        .pot("POT_GATEWAY", "10.192.0.1")
        .shown(|c| c.network.gateway.to_string()),
    setting!(dns_ip)
        .pot("POT_DNS_IP", "10.192.0.2")
        .shown(|c| address(c.network.dns_ip)),
    setting!(extif)
        .pot("POT_EXTIF", "em0")
        .shown(|c| c.network.extif.clone()),
    // Each NIC's network comes from its `POT_NETWORK_<nic>` (see `PotSettings`).
    setting!(extra_extif).pot("POT_EXTRA_EXTIF", "").shown(|c| {
        c.network
            .extra_extif
            .iter()
            .map(|(nic, net)| format!("{nic}={net}"))
            .collect::<Vec<_>>()
            .join(" ")
    }),
    setting!(extif_addr)
        .pot("POT_EXTIF_ADDR", "")
        .shown(|c| address(c.network.extif_addr)),
    setting!(vpn_extif)
        .pot("POT_VPN_EXTIF", "")
        .shown(|c| c.network.vpn_extif.clone().unwrap_or_default()),
    setting!(vpn_networks)
        .pot("POT_VPN_NETWORKS", "")
        .shown(|c| c.network.vpn_networks.join(" ")),
    setting!(isolate_vnet_pots)
        .pot("POT_ISOLATE_VNET_POTS", "false")
        .shown(|c| c.network.isolate_vnet_pots.to_string()),
    setting!(network_stack)
        .pot("POT_NETWORK_STACK", "ipv4")
        .shown(|c| c.network.stack.as_str().to_string()),
    setting!(args_quote_compat)
        .schema_default("true")
        .shown(|c| c.args_quote_compat.to_string()),
    setting!(allowed_host_paths).shown(|c| paths(&c.allowed_host_paths)),
    setting!(allowed_attributes).shown(|c| c.allowed_attributes.join(" ")),
    setting!(allowed_image_dirs).shown(|c| paths(&c.allowed_image_dirs)),
    // pot's one key is added to the agent's list, not replaced by it (see `image_policy`).
    setting!(signature_pubkeys)
        .pot("POT_DEFAULT_SIGNATURE_PUBKEY", "")
        .shown(|c| paths(&c.image.pubkeys)),
    // No schema default: absent means "required exactly when keys are configured".
    setting!(require_signature).shown(|c| c.image.require_signature.to_string()),
    setting!(image_max_size).shown(|c| c.image.max_size.to_string()),
    // A count; HCL turns `image_cache_max = 10` into the string Nomad sends.
    setting!(image_cache_max)
        .shown(|c| c.image.cache_max.map(|m| m.to_string()).unwrap_or_default()),
    // `potctl config` has never listed the two below; the table keeps its output as it was.
    setting!(image_ca_file),
    // No schema default: absent means devd's own socket, empty turns memory-limit reports off.
    setting!(devd_socket),
];

impl SettingDef {
    const fn new(
        name: &'static str,
        kind: Kind,
        fill: fn(&mut Overrides, &dyn Values),
        given: fn(&Overrides) -> bool,
    ) -> SettingDef {
        SettingDef {
            name,
            kind,
            schema_default: None,
            pot: None,
            fill,
            given,
            show: None,
        }
    }

    const fn pot(mut self, name: &'static str, default: &'static str) -> SettingDef {
        self.pot = Some(PotVar { name, default });
        self
    }

    const fn schema_default(mut self, literal: &'static str) -> SettingDef {
        self.schema_default = Some(literal);
        self
    }

    const fn shown(mut self, show: fn(&EngineConfig) -> String) -> SettingDef {
        self.show = Some(show);
        self
    }

    /// Whether the agent config gives this setting.
    pub(super) fn given(&self, o: &Overrides) -> bool {
        (self.given)(o)
    }

    /// The effective value as `potctl config` shows it, if it lists this setting.
    pub(super) fn show(&self, cfg: &EngineConfig) -> Option<String> {
        self.show.map(|show| show(cfg))
    }
}

impl Overrides {
    /// The agent config's value of every setting in [`SETTINGS`].
    pub fn from_values(values: &dyn Values) -> Overrides {
        let mut o = Overrides::default();
        for def in SETTINGS {
            (def.fill)(&mut o, values);
        }
        o
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn paths(v: &[PathBuf]) -> String {
    v.iter().map(|p| path(p)).collect::<Vec<_>>().join(" ")
}

fn address(v: Option<Ipv4Addr>) -> String {
    v.map(|a| a.to_string()).unwrap_or_default()
}
