//! The Nomad-like client of the end-to-end tests lives in the `nomad-harness` crate (shared with
//! `potctl demo`); this module re-exports it for the test files, with the scenario world
//! ([`env::Env`]) that the end-to-end and fault suites share.

#![allow(dead_code, unused_imports)]

pub mod env;
pub mod names;
pub mod potctl;

pub use nomad_harness::*;

use std::future::Future;
use std::time::Duration;

/// Runs `fut` with a deadline; panics naming `what` when it expires.
pub async fn within<T>(secs: f64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs_f64(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}
