//! Test support: drives a Nomad task-driver plugin binary the way a Nomad client does, on a
//! simulated FreeBSD host (`freebsd-sim`). A thin wrapper over `nomad-pot-client` (which
//! `potctl` uses) whose failures panic with a message naming what failed, plus what only tests
//! need: fault injection, the calls log, the test PKI.
//!
//! * [`plugin`]: launch the binary like go-plugin, validate the handshake and stdio, gRPC clients.
//! * [`cty`]: the hclspec-driven cty-msgpack encoder (Nomad's `config {}` pipeline).
//! * [`logmon`]: FIFO readers like Nomad's logmon.
//! * [`task`]: `TaskConfig` builder with Nomad's alloc dir layout.
//! * [`node`]: a simulated host with the plugin configured on it, and the task runner's calls:
//!   the end-to-end tests' and the benches' set-up.
//! * [`sim`]: the simulated FreeBSD host and an HTTP(S) file server.
//! * [`proxy`]: a forward HTTP proxy, as image downloads may have to go through.
//! * [`tls`]: the test PKI for `https://` servers.

pub mod node;
pub mod plugin;
pub mod proxy;
pub mod sim;
pub mod task;
pub mod tls;

pub use nomad_pot_client::{cty, logmon};

use std::fmt::Display;
use std::path::PathBuf;

pub use cty::{CtyError, encode, encode_raw};
pub use logmon::LogMon;
pub use node::{Node, Setup, within};
pub use plugin::Plugin;
pub use proxy::ForwardProxy;
pub use sim::{Call, FileServer, SimHost};
pub use task::{TaskBuilder, TestTask};

/// Where the workspace's binaries are: the directory of the running executable, or its parent
/// for test executables (which live in `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    ok(nomad_pot_client::bin_dir())
}

/// The value, or a panic with the error: what a test's failed setup step is.
#[track_caller]
fn ok<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}
