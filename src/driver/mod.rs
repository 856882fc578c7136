//! Nomad semantics: the BasePlugin and Driver services, config schemas and decoding, task
//! handles and recovery. Protocol types stop here; the engine sees typed calls only.

mod config;
mod cty;
mod handle;
mod schema;
mod service;
mod status;

pub use config::{AgentConfig, TaskConfig};
pub use handle::{DriverState, HANDLE_VERSION};
pub use service::{PotDriver, TaskSpecError, task_spec};

/// Reported as `PluginInfo.plugin_version`: above the Go driver's v0.10.0 so that Nomad prefers
/// this plugin when both are installed.
pub const PLUGIN_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
/// The driver name jobs use: `driver = "pot"`.
pub const DRIVER_NAME: &str = "pot";
/// Nomad's only driver plugin API version.
pub const API_VERSION: &str = "v0.1.0";

/// The hclspec of the task's `config {}` block, as TaskConfigSchema returns it.
pub fn task_schema() -> crate::proto::hclspec::Spec {
    schema::to_spec(schema::TASK)
}
