//! BasePlugin: plugin info, the agent config schema and SetConfig, which makes the engine and,
//! in the long-lived plugin, starts the reconciler.

use super::{Configured, PotDriver};
use crate::driver::config::AgentConfig;
use crate::driver::{API_VERSION, DRIVER_NAME, PLUGIN_VERSION, schema, status};
use crate::engine::{Engine, EngineConfig};
use crate::proto::base::{self, base_plugin_server::BasePlugin};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Reconcile waits this long after the long-lived plugin starts: Nomad recovers the tasks it
/// still wants first, and only unclaimed pots are collected.
const RECONCILE_GRACE: Duration = Duration::from_secs(300);
const RECONCILE_PERIOD: Duration = Duration::from_secs(600);

#[tonic::async_trait]
impl BasePlugin for PotDriver {
    async fn plugin_info(
        &self,
        _: Request<base::PluginInfoRequest>,
    ) -> Result<Response<base::PluginInfoResponse>, Status> {
        Ok(Response::new(base::PluginInfoResponse {
            r#type: base::PluginType::Driver as i32,
            plugin_api_versions: vec![API_VERSION.to_string()],
            plugin_version: PLUGIN_VERSION.to_string(),
            name: DRIVER_NAME.to_string(),
        }))
    }

    async fn config_schema(
        &self,
        _: Request<base::ConfigSchemaRequest>,
    ) -> Result<Response<base::ConfigSchemaResponse>, Status> {
        Ok(Response::new(base::ConfigSchemaResponse {
            spec: Some(schema::to_spec(schema::AGENT)),
        }))
    }

    async fn set_config(
        &self,
        request: Request<base::SetConfigRequest>,
    ) -> Result<Response<base::SetConfigResponse>, Status> {
        let req = request.into_inner();
        let agent = AgentConfig::decode(&req.msgpack_config)
            .map_err(|e| status::invalid_argument(e.to_string()))?;
        let engine_config = EngineConfig::resolve(&agent.engine)
            .map_err(|e| status::invalid_argument(format!("agent config: {e}")))?;
        let mut slot = self.inner.configured.write().expect("config lock poisoned");
        // Nomad sends the same config twice while validating; keep the engine (and its tasks).
        if let Some(current) = slot.as_ref()
            && current.agent == agent
            && *current.engine.config() == engine_config
        {
            return Ok(Response::new(base::SetConfigResponse {}));
        }
        tracing::info!(
            zfs_root = %engine_config.zfs_root,
            fs_root = %engine_config.fs_root.display(),
            tool_path = %engine_config.tool_path,
            image_downloads = %engine_config.image.proxies,
            "configured"
        );
        *slot = Some(Configured {
            agent,
            engine: Arc::new(Engine::new(engine_config, self.event_sink())),
        });
        // Only the long-lived instance gets Nomad's config; the validation launches must stay
        // free of host work.
        if req.nomad_config.is_some() {
            self.start_reconciler();
        }
        Ok(Response::new(base::SetConfigResponse {}))
    }
}

impl PotDriver {
    fn start_reconciler(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.reconciling.swap(true, Ordering::SeqCst) {
            return;
        }
        let driver = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RECONCILE_GRACE).await;
            loop {
                if let Ok(engine) = driver.engine() {
                    match engine.gc(false, Duration::ZERO).await {
                        Ok(report) => {
                            for (pot, why) in &report.collected {
                                tracing::info!(pot = %pot, reason = %why, "reconcile: removed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                    }
                }
                tokio::time::sleep(RECONCILE_PERIOD).await;
            }
        });
    }
}
