//! The Nomad-like client of the end-to-end tests lives in the `nomad-harness` crate (over the
//! `nomad-pot-client` that `potctl demo` uses); this module re-exports it for the test files,
//! with what needs the driver crate: the scenario world ([`env::Env`], the harness's `Node` with
//! pot names and the engine) that the end-to-end and fault suites share.

#![allow(dead_code, unused_imports)]

pub mod env;
pub mod names;
pub mod potctl;

pub use nomad_harness::*;
