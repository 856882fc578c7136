//! The agent and task config schemas: one table each, from which both the HCL spec sent to Nomad
//! and the msgpack decoder are derived, so the two can never disagree.

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

/// `plugin "nomad-pot-driver" { config { … } }`. Engine settings have no default in the schema:
/// absent means "take pot's own configuration", which an HCL default would hide.
pub const AGENT: &[AttrDef] = &[
    with_default("enabled", Ty::Bool, "true"),
    attr("tool_path", Ty::String),
    attr("zfs_root", Ty::String),
    attr("fs_root", Ty::String),
    attr("cache_dir", Ty::String),
    attr("tmp_dir", Ty::String),
    attr("state_dir", Ty::String),
    attr("lock_file", Ty::String),
    attr("pot_conf_dir", Ty::String),
    attr("network", Ty::String),
    attr("netmask", Ty::String),
    attr("gateway", Ty::String),
    attr("dns_ip", Ty::String),
    attr("extif", Ty::String),
    attr("extra_extif", Ty::ListMapString),
    attr("extif_addr", Ty::String),
    attr("vpn_extif", Ty::String),
    attr("vpn_networks", Ty::ListString),
    attr("isolate_vnet_pots", Ty::Bool),
    attr("network_stack", Ty::String),
    with_default("args_quote_compat", Ty::Bool, "true"),
    attr("allowed_host_paths", Ty::ListString),
    attr("allowed_attributes", Ty::ListString),
    attr("allowed_image_dirs", Ty::ListString),
    attr("signature_pubkeys", Ty::ListString),
    // No default: absent means "required exactly when keys are configured".
    attr("require_signature", Ty::Bool),
    attr("image_max_size", Ty::String),
    // A count; HCL turns `image_cache_max = 10` into the string Nomad sends.
    attr("image_cache_max", Ty::String),
    attr("image_ca_file", Ty::String),
    // No default: absent means devd's own socket, empty turns memory-limit reports off.
    attr("devd_socket", Ty::String),
    // The default of the task option of that name (docker's and podman's meaning).
    with_default("cpu_hard_limit", Ty::Bool, "false"),
];

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
}
