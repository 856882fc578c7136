//! Hand-built specs and lookups into a plugin's spec.

use std::borrow::Borrow;

use nomad_plugin_proto::hclspec::{self, Spec, spec::Block};

pub(super) fn spec_ref<B: Borrow<Spec>>(b: &B) -> &Spec {
    b.borrow()
}

// ---- hand-built specs (tests, and for scenarios that need a spec without a plugin) ----

pub fn spec_attr(name: &str, ty: &str, required: bool) -> Spec {
    Spec {
        block: Some(Block::Attr(hclspec::Attr {
            name: name.into(),
            r#type: ty.into(),
            required,
        })),
    }
}

pub fn spec_literal(value: &str) -> Spec {
    Spec {
        block: Some(Block::Literal(hclspec::Literal {
            value: value.into(),
        })),
    }
}

pub fn spec_default(primary: Spec, default: Spec) -> Spec {
    Spec {
        block: Some(Block::Default(
            hclspec::Default {
                primary: Some(primary.into()),
                default: Some(default.into()),
            }
            .into(),
        )),
    }
}

pub fn spec_object<'a>(attrs: impl IntoIterator<Item = (&'a str, Spec)>) -> Spec {
    Spec {
        block: Some(Block::Object(hclspec::Object {
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })),
    }
}

/// The root Object's attributes (name → spec), empty if the root is not an Object.
pub fn object_attrs(spec: &Spec) -> Vec<(String, &Spec)> {
    match &spec.block {
        Some(Block::Object(o)) => {
            let mut v: Vec<_> = o.attributes.iter().map(|(k, s)| (k.clone(), s)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        _ => Vec::new(),
    }
}

/// The `Attr` of a root-object entry, looking through `Default.primary`.
pub fn find_attr<'a>(spec: &'a Spec, key: &str) -> Option<&'a hclspec::Attr> {
    let Some(Block::Object(o)) = &spec.block else {
        return None;
    };
    let mut s = o.attributes.get(key)?;
    loop {
        match &s.block {
            Some(Block::Attr(a)) => return Some(a),
            Some(Block::Default(d)) => s = spec_ref(d.primary.as_ref()?),
            _ => return None,
        }
    }
}

/// Whether a root-object entry is wrapped in a `Default`.
pub fn has_default(spec: &Spec, key: &str) -> bool {
    let Some(Block::Object(o)) = &spec.block else {
        return false;
    };
    matches!(
        o.attributes.get(key).and_then(|s| s.block.as_ref()),
        Some(Block::Default(_))
    )
}

/// Normalises a type expression for comparison (`list( string )` → `list(string)`).
pub fn norm_type(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace()).collect()
}
