//! Generated protobuf/gRPC types for the Nomad plugin protocol (Nomad's driver and base plugin
//! services and go-plugin's internal services), wire-identical to the originals.
//!
//! The module tree mirrors the protobuf packages because prost emits
//! cross-package references as relative paths
//! (e.g. `super::super::shared::hclspec::Spec`). Use the short aliases
//! [`base`], [`drivers`], [`hclspec`], [`structs`] and [`plugin`].

pub mod hashicorp {
    pub mod nomad {
        pub mod plugins {
            pub mod base {
                pub mod proto {
                    tonic::include_proto!("hashicorp.nomad.plugins.base.proto");
                }
            }
            pub mod drivers {
                pub mod proto {
                    tonic::include_proto!("hashicorp.nomad.plugins.drivers.proto");
                }
            }
            pub mod shared {
                pub mod hclspec {
                    tonic::include_proto!("hashicorp.nomad.plugins.shared.hclspec");
                }
                pub mod structs {
                    tonic::include_proto!("hashicorp.nomad.plugins.shared.structs");
                }
            }
        }
    }
}

/// go-plugin's internal services (GRPCController, GRPCStdio, GRPCBroker).
pub mod plugin {
    tonic::include_proto!("plugin");
}

pub use hashicorp::nomad::plugins::base::proto as base;
pub use hashicorp::nomad::plugins::drivers::proto as drivers;
pub use hashicorp::nomad::plugins::shared::hclspec;
pub use hashicorp::nomad::plugins::shared::structs;

include!(concat!(env!("OUT_DIR"), "/grpc_methods.rs"));
