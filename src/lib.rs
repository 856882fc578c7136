//! nomad-pot-driver: a Nomad task driver that runs tasks in FreeBSD jails the way `pot` does.
//!
//! Layers, top to bottom: [`plugin`] (go-plugin process), [`driver`] (Nomad semantics),
//! [`engine`] (pot semantics), [`host`] (FreeBSD tools). Data flows down as typed calls.

pub mod driver;
pub mod engine;
pub mod host;
pub mod jobspec;
pub mod plugin;
pub mod skein;
pub mod text;
pub use nomad_plugin_proto as proto;
