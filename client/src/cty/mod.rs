//! A cty-msgpack encoder driven by the plugin's `hclspec::Spec`, mimicking Nomad's pipeline:
//! job `config {}` (as JSON) → HCL JSON body → `hcldec.Decode` against the converted spec →
//! `go-cty/cty/msgpack.Marshal(val, val.Type())` (protocol spec §4.2–§4.6).
//!
//! Supported spec blocks: `Object` (root and nested), `Attr`, `Default`, `Literal`, `Array`.
//! Block-style specs (`BlockValue`, `BlockList`, …) are reported as unsupported: the pot schemas
//! do not use them.

mod convert;
mod decode;
mod literal;
mod msgpack;
mod spec;
mod types;
mod value;

pub use convert::{convert, json_to_val};
pub use decode::{CtyError, decode};
pub use literal::parse_literal;
pub use msgpack::{encode, encode_raw, encode_val};
pub use spec::{
    find_attr, has_default, norm_type, object_attrs, spec_attr, spec_default, spec_literal,
    spec_object,
};
pub use types::Ty;
pub use value::{Num, Val};

#[cfg(test)]
mod tests;
