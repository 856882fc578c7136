//! The agent and task config schemas: one table each, from which both the HCL spec sent to Nomad
//! and the msgpack decoder are derived, so the two can never disagree.

use crate::engine::{Kind, SETTINGS};
use crate::proto::hclspec::{self, spec::Block};
use std::collections::HashMap;

/// The HCL types our schemas use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Bool,
    ListString,
    ListMapString,
}

impl Ty {
    /// The HCL type expression Nomad parses.
    pub fn expr(self) -> &'static str {
        match self {
            Ty::String => "string",
            Ty::Bool => "bool",
            Ty::ListString => "list(string)",
            Ty::ListMapString => "list(map(string))",
        }
    }
}

/// One attribute of a config block.
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// An HCL literal expression applied when the attribute is absent.
    pub default: Option<&'static str>,
}

const fn attr(name: &'static str, ty: Ty) -> AttrDef {
    AttrDef {
        name,
        ty,
        required: false,
        default: None,
    }
}

const fn required(name: &'static str, ty: Ty) -> AttrDef {
    AttrDef {
        name,
        ty,
        required: true,
        default: None,
    }
}

const fn with_default(name: &'static str, ty: Ty, default: &'static str) -> AttrDef {
    AttrDef {
        name,
        ty,
        required: false,
        default: Some(default),
    }
}

/// `plugin "nomad-pot-driver" { config { … } }`: the driver's `enabled`, the engine's settings
/// ([`SETTINGS`]), and the driver's `cpu_hard_limit`.
pub const AGENT: &[AttrDef] = &agent();

const AGENT_LEN: usize = SETTINGS.len() + 2;

const fn agent() -> [AttrDef; AGENT_LEN] {
    // First, as in the Go driver, whose agent schema is this one attribute.
    let mut attrs = [with_default("enabled", Ty::Bool, "true"); AGENT_LEN];
    // A `while`: `for` is not allowed in a const fn.
    let mut i = 0;
    while i < SETTINGS.len() {
        let def = &SETTINGS[i];
        attrs[i + 1] = AttrDef {
            name: def.name,
            ty: match def.kind {
                Kind::Text => Ty::String,
                Kind::Flag => Ty::Bool,
                Kind::Texts => Ty::ListString,
                Kind::Pairs => Ty::ListMapString,
            },
            required: false,
            default: def.schema_default,
        };
        i += 1;
    }
    // The default of the task option of that name (docker's and podman's meaning).
    attrs[AGENT_LEN - 1] = with_default("cpu_hard_limit", Ty::Bool, "false");
    attrs
}

/// A job's `config { … }`: the Go driver's schema, key for key.
pub const TASK: &[AttrDef] = &[
    required("image", Ty::String),
    required("pot", Ty::String),
    required("tag", Ty::String),
    attr("command", Ty::String),
    attr("args", Ty::ListString),
    attr("port_map", Ty::ListMapString),
    attr("network_mode", Ty::String),
    attr("ip", Ty::String),
    attr("bridge", Ty::String),
    attr("mount", Ty::ListString),
    attr("copy", Ty::ListString),
    attr("mount_read_only", Ty::ListString),
    attr("extra_hosts", Ty::ListString),
    attr("attributes", Ty::ListString),
    // Ours, beyond the Go driver's: rctl limits and a ZFS quota. Strings, so that both
    // `maxproc = 100` and `swapuse = "1G"` work.
    attr("maxproc", Ty::String),
    attr("openfiles", Ty::String),
    attr("vmemoryuse", Ty::String),
    attr("swapuse", Ty::String),
    attr("readbps", Ty::String),
    attr("writebps", Ty::String),
    attr("quota", Ty::String),
    // Docker's and podman's key: `cpu` becomes a cap (rctl pcpu) instead of a reservation. No
    // default, so that the agent's `cpu_hard_limit` applies when a job does not say.
    attr("cpu_hard_limit", Ty::Bool),
];

/// The hclspec Object Nomad converts into its decoder.
pub fn to_spec(attrs: &[AttrDef]) -> hclspec::Spec {
    let attributes: HashMap<String, hclspec::Spec> = attrs
        .iter()
        .map(|a| {
            let attr = spec(Block::Attr(hclspec::Attr {
                name: a.name.to_string(),
                r#type: a.ty.expr().to_string(),
                required: a.required,
            }));
            let s = match a.default {
                // Children of Default get no implied name, so the Attr carries its own.
                Some(default) => spec(Block::Default(Box::new(hclspec::Default {
                    primary: Some(Box::new(attr)),
                    default: Some(Box::new(spec(Block::Literal(hclspec::Literal {
                        value: default.to_string(),
                    })))),
                }))),
                None => attr,
            };
            (a.name.to_string(), s)
        })
        .collect();
    spec(Block::Object(hclspec::Object { attributes }))
}

fn spec(block: Block) -> hclspec::Spec {
    hclspec::Spec { block: Some(block) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn enabled_alone_encodes_like_the_go_driver() {
        // nomad-protocol.md §2.3: the Go pot driver's agent schema, byte for byte.
        let s = to_spec(&AGENT[..1]);
        let bytes = s.encode_to_vec();
        let mut expected = vec![0x0a, 0x2c, 0x0a, 0x2a, 0x0a, 0x07];
        expected.extend(b"enabled");
        expected.extend([0x12, 0x1f, 0x4a, 0x1d, 0x0a, 0x11, 0x1a, 0x0f, 0x0a, 0x07]);
        expected.extend(b"enabled");
        expected.extend([0x12, 0x04]);
        expected.extend(b"bool");
        expected.extend([0x12, 0x08, 0x52, 0x06, 0x0a, 0x04]);
        expected.extend(b"true");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn task_schema_keeps_go_driver_keys_and_types() {
        // The Go driver's keys in its order, plus `ip` and `bridge` (pot's `-i`, `-B`).
        let names: Vec<&str> = TASK.iter().map(|a| a.name).collect();
        assert_eq!(
            names[..14],
            [
                "image",
                "pot",
                "tag",
                "command",
                "args",
                "port_map",
                "network_mode",
                "ip",
                "bridge",
                "mount",
                "copy",
                "mount_read_only",
                "extra_hosts",
                "attributes"
            ]
        );
        let req: Vec<&str> = TASK.iter().filter(|a| a.required).map(|a| a.name).collect();
        let ty =
            |attrs: &[AttrDef], name: &str| attrs.iter().find(|a| a.name == name).map(|a| a.ty);
        assert_eq!(ty(TASK, "cpu_hard_limit"), Some(Ty::Bool));
        assert_eq!(ty(AGENT, "cpu_hard_limit"), Some(Ty::Bool));
        assert_eq!(req, ["image", "pot", "tag"]);
        assert_eq!(TASK[5].ty.expr(), "list(map(string))");
    }

    /// What an operator may write in `plugin "nomad-pot-driver" { config { … } }`, as Nomad
    /// receives it: every attribute with its type and default, sorted by name (the wire map has
    /// no order). A change here is a change of the plugin's interface.
    #[test]
    fn agent_schema_is_pinned() {
        let Some(Block::Object(object)) = to_spec(AGENT).block else {
            panic!("the agent schema is not an object");
        };
        let block = |s: &Option<Box<hclspec::Spec>>| s.as_deref().and_then(|s| s.block.clone());
        let mut lines: Vec<String> = object
            .attributes
            .iter()
            .map(|(key, s)| {
                let (attr, default) = match &s.block {
                    Some(Block::Attr(a)) => (a.clone(), String::new()),
                    Some(Block::Default(d)) => match (block(&d.primary), block(&d.default)) {
                        (Some(Block::Attr(a)), Some(Block::Literal(l))) => {
                            (a, format!(" = {}", l.value))
                        }
                        other => panic!("{key}: {other:?}"),
                    },
                    other => panic!("{key}: {other:?}"),
                };
                assert_eq!(&attr.name, key);
                assert!(!attr.required, "{key} is required");
                format!("{key}: {}{default}", attr.r#type)
            })
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "allowed_attributes: list(string)",
                "allowed_host_paths: list(string)",
                "allowed_image_dirs: list(string)",
                "args_quote_compat: bool = true",
                "cache_dir: string",
                "cpu_hard_limit: bool = false",
                "devd_socket: string",
                "dns_ip: string",
                "enabled: bool = true",
                "extif: string",
                "extif_addr: string",
                "extra_extif: list(map(string))",
                "fs_root: string",
                "gateway: string",
                "image_ca_file: string",
                "image_cache_max: string",
                "image_max_size: string",
                "isolate_vnet_pots: bool",
                "lock_file: string",
                "netmask: string",
                "network: string",
                "network_stack: string",
                "pot_conf_dir: string",
                "require_signature: bool",
                "signature_pubkeys: list(string)",
                "state_dir: string",
                "tmp_dir: string",
                "tool_path: string",
                "vpn_extif: string",
                "vpn_networks: list(string)",
                "zfs_root: string",
            ]
        );
    }
}
