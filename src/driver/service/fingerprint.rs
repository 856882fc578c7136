//! The fingerprint Nomad polls: health from the engine, and the `driver.pot.*` node attributes.

use super::{PotDriver, stream_of};
use crate::driver::PLUGIN_VERSION;
use crate::proto::{drivers, structs};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::Response;
use tonic::codegen::BoxStream;

/// How often the fingerprint is re-sent (the Go drivers use the same period).
const FINGERPRINT_PERIOD: Duration = Duration::from_secs(30);

impl PotDriver {
    /// The Fingerprint stream: one fingerprint now, then one every [`FINGERPRINT_PERIOD`].
    pub(super) fn fingerprints(&self) -> Response<BoxStream<drivers::FingerprintResponse>> {
        let (tx, rx) = mpsc::channel(1);
        let driver = self.clone();
        tokio::spawn(async move {
            loop {
                let fp = driver.fingerprint_now().await;
                if tx.send(Ok(fp)).await.is_err() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FINGERPRINT_PERIOD) => {}
                    _ = tx.closed() => break,
                }
            }
        });
        stream_of(rx)
    }

    async fn fingerprint_now(&self) -> drivers::FingerprintResponse {
        use drivers::fingerprint_response::HealthState;
        let (health, description, racct, bridge) = match self.configured() {
            Err(_) => (
                HealthState::Undetected,
                "not configured".to_string(),
                false,
                false,
            ),
            Ok(c) if !c.agent.enabled => (
                HealthState::Undetected,
                "disabled".to_string(),
                false,
                false,
            ),
            Ok(c) => {
                let h = c.engine.health().await;
                let state = if h.healthy {
                    HealthState::Healthy
                } else {
                    HealthState::Unhealthy
                };
                (
                    state,
                    h.description,
                    h.racct,
                    h.bridge_unavailable.is_none(),
                )
            }
        };
        let mut attributes = HashMap::new();
        if health != HealthState::Undetected {
            use structs::attribute::Value;
            attributes.insert("driver.pot".to_string(), attr(Value::BoolVal(true)));
            attributes.insert(
                "driver.pot.version".to_string(),
                attr(Value::StringVal(PLUGIN_VERSION.to_string())),
            );
            attributes.insert("driver.pot.racct".to_string(), attr(Value::BoolVal(racct)));
            attributes.insert(
                "driver.pot.network.bridge".to_string(),
                attr(Value::BoolVal(bridge)),
            );
        }
        drivers::FingerprintResponse {
            attributes,
            health: health as i32,
            health_description: description,
        }
    }
}

fn attr(value: structs::attribute::Value) -> structs::Attribute {
    structs::Attribute {
        value: Some(value),
        unit: String::new(),
    }
}
