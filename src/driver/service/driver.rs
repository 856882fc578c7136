//! The Driver service: schemas and capabilities, and each task's life in Nomad's terms (start,
//! recover, wait, stop, destroy, inspect, stats, signal). Exec and the fingerprint have rooms of
//! their own.

use super::convert::{
    client_duration, exit_result, handle_for, network_override, parse_signal, stats_sample,
    task_spec, timestamp_ms, zero_time,
};
use super::{PotDriver, stream_of};
use crate::driver::handle::DriverState;
use crate::driver::{schema, status};
use crate::engine::{EngineError, PotName};
use crate::proto::drivers::{self, driver_server::Driver};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl Driver for PotDriver {
    async fn task_config_schema(
        &self,
        _: Request<drivers::TaskConfigSchemaRequest>,
    ) -> Result<Response<drivers::TaskConfigSchemaResponse>, Status> {
        Ok(Response::new(drivers::TaskConfigSchemaResponse {
            spec: Some(schema::to_spec(schema::TASK)),
        }))
    }

    async fn capabilities(
        &self,
        _: Request<drivers::CapabilitiesRequest>,
    ) -> Result<Response<drivers::CapabilitiesResponse>, Status> {
        use drivers::driver_capabilities::{FsIsolation, MountConfigs};
        use drivers::network_isolation_spec::NetworkIsolationMode;
        Ok(Response::new(drivers::CapabilitiesResponse {
            capabilities: Some(drivers::DriverCapabilities {
                send_signals: true,
                exec: true,
                // The jail sees /alloc, /local and /secrets, so NOMAD_*_DIR point inside it.
                fs_isolation: FsIsolation::Image as i32,
                network_isolation_modes: vec![NetworkIsolationMode::Host as i32],
                must_create_network: false,
                // Any mounts (UNKNOWN_MOUNTS is ANY_MOUNTS): host volumes are nullfs-mounted, within
                // allowed_host_paths.
                mount_configs: MountConfigs::UnknownMounts as i32,
                disable_log_collection: false,
                dynamic_workload_users: false,
            }),
        }))
    }

    async fn fingerprint(
        &self,
        _: Request<drivers::FingerprintRequest>,
    ) -> Result<Response<BoxStream<drivers::FingerprintResponse>>, Status> {
        Ok(self.fingerprints())
    }

    async fn task_events(
        &self,
        _: Request<drivers::TaskEventsRequest>,
    ) -> Result<Response<BoxStream<drivers::DriverTaskEvent>>, Status> {
        let mut events = self.inner.events.0.subscribe();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => if tx.send(Ok(ev)).await.is_err() { break },
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(dropped = n, "task events dropped: the client reads too slowly");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(stream_of(rx))
    }

    async fn start_task(
        &self,
        request: Request<drivers::StartTaskRequest>,
    ) -> Result<Response<drivers::StartTaskResponse>, Status> {
        let cfg = request
            .into_inner()
            .task
            .ok_or_else(|| Status::invalid_argument("StartTask without a task"))?;
        let configured = self.configured()?;
        let engine = configured.engine;
        // A retry after a plugin crash or a lost response gets the same handle back.
        if let Some(entry) = self.task(&cfg.id) {
            return Ok(Response::new(drivers::StartTaskResponse {
                handle: Some(handle_for(&entry)),
                ..Default::default()
            }));
        }
        let spec = task_spec(&cfg, configured.agent.cpu_hard_limit)
            .map_err(|e| status::from_task_spec(&e))?;
        let entry = self.start_tracked(engine.clone(), cfg, spec).await?;
        let network_override = network_override(entry.instance.network.as_ref());
        Ok(Response::new(drivers::StartTaskResponse {
            handle: Some(handle_for(&entry)),
            network_override,
            ..Default::default()
        }))
    }

    async fn recover_task(
        &self,
        request: Request<drivers::RecoverTaskRequest>,
    ) -> Result<Response<drivers::RecoverTaskResponse>, Status> {
        let req = request.into_inner();
        let handle = req
            .handle
            .ok_or_else(|| Status::invalid_argument("RecoverTask without a handle"))?;
        let config = handle
            .config
            .clone()
            .ok_or_else(|| Status::invalid_argument("RecoverTask: handle has no task config"))?;
        // Nomad leaves the request's task_id empty after an agent restart.
        let id = if req.task_id.is_empty() {
            config.id.clone()
        } else {
            req.task_id
        };
        if self.task(&id).is_some() {
            return Ok(Response::new(drivers::RecoverTaskResponse {}));
        }
        let state = DriverState::decode(handle.version, &handle.driver_state)
            .map_err(|e| status::failed_precondition(format!("task {id}: {e}")))?;
        let engine = self.engine()?;
        let pot = PotName::new(&state.pot).map_err(|e| status::from_engine(&e))?;
        // The handle only names the pot: adopt it (and so let Signal and Destroy act on it)
        // only if the driver made it for this very task.
        if let Err(e) = engine.check_owner(&pot, &id).await {
            tracing::warn!(task_id = %id, pot = %pot, error = %e, "not recovering the pot");
            return Err(match e {
                EngineError::State { .. } => status::failed_precondition(e.to_string()),
                e => status::from_engine(&e),
            });
        }
        let instance = match engine.recover(&pot).await {
            Ok(instance) => instance,
            Err(e) => {
                tracing::warn!(task_id = %id, pot = %pot, error = %e, "recovery failed");
                self.inner
                    .unrecovered
                    .lock()
                    .expect("unrecovered poisoned")
                    .insert(id, pot);
                return Err(status::from_engine(&e));
            }
        };
        self.route(&pot, &config);
        self.register(drivers::TaskConfig { id, ..config }, pot, instance);
        Ok(Response::new(drivers::RecoverTaskResponse {}))
    }

    async fn wait_task(
        &self,
        request: Request<drivers::WaitTaskRequest>,
    ) -> Result<Response<drivers::WaitTaskResponse>, Status> {
        let id = request.into_inner().task_id;
        let entry = self
            .task(&id)
            .ok_or_else(|| status::not_found(format!("task {id} not found")))?;
        let exit = entry.instance.wait().await;
        Ok(Response::new(drivers::WaitTaskResponse {
            result: Some(exit_result(&exit)),
            err: exit.error.unwrap_or_default(),
        }))
    }

    async fn stop_task(
        &self,
        request: Request<drivers::StopTaskRequest>,
    ) -> Result<Response<drivers::StopTaskResponse>, Status> {
        let req = request.into_inner();
        // Nomad retries failed stops for minutes and cannot tell "not found" apart: gone is done.
        let Some(entry) = self.task(&req.task_id) else {
            return Ok(Response::new(drivers::StopTaskResponse {}));
        };
        let signal = if req.signal.is_empty() {
            Signal::SIGINT
        } else {
            parse_signal(&req.signal)?
        };
        let timeout = req.timeout.map(client_duration).unwrap_or_default();
        self.engine()?
            .stop(&entry.pot, signal, timeout)
            .await
            .map_err(|e| status::from_engine(&e))?;
        Ok(Response::new(drivers::StopTaskResponse {}))
    }

    async fn destroy_task(
        &self,
        request: Request<drivers::DestroyTaskRequest>,
    ) -> Result<Response<drivers::DestroyTaskResponse>, Status> {
        let req = request.into_inner();
        // A start under way is rolled back, and what it made removed, before this answers.
        self.cancel_start(&req.task_id).await;
        let Some(entry) = self.task(&req.task_id) else {
            let unrecovered = self
                .inner
                .unrecovered
                .lock()
                .expect("unrecovered poisoned")
                .get(&req.task_id)
                .cloned();
            if let Some(pot) = unrecovered {
                self.engine()?
                    .destroy(&pot)
                    .await
                    .map_err(|e| status::from_engine(&e))?;
                self.inner
                    .unrecovered
                    .lock()
                    .expect("unrecovered poisoned")
                    .remove(&req.task_id);
            }
            return Ok(Response::new(drivers::DestroyTaskResponse {}));
        };
        if entry.instance.exit().is_none() && !req.force {
            return Err(Status::failed_precondition(format!(
                "task {} is still running: stop it first or destroy with force",
                req.task_id
            )));
        }
        self.engine()?
            .destroy(&entry.pot)
            .await
            .map_err(|e| status::from_engine(&e))?;
        self.inner
            .tasks
            .lock()
            .expect("tasks poisoned")
            .remove(&req.task_id);
        self.inner
            .routes
            .lock()
            .expect("routes poisoned")
            .remove(&entry.pot);
        Ok(Response::new(drivers::DestroyTaskResponse {}))
    }

    async fn inspect_task(
        &self,
        request: Request<drivers::InspectTaskRequest>,
    ) -> Result<Response<drivers::InspectTaskResponse>, Status> {
        let id = request.into_inner().task_id;
        let entry = self
            .task(&id)
            .ok_or_else(|| status::not_found(format!("task {id} not found")))?;
        let exit = entry.instance.exit();
        let (state, completed_at, result) = match &exit {
            Some(e) => (
                drivers::TaskState::Exited,
                timestamp_ms(e.finished_at_ms),
                exit_result(e),
            ),
            None => (
                drivers::TaskState::Running,
                zero_time(),
                drivers::ExitResult::default(),
            ),
        };
        Ok(Response::new(drivers::InspectTaskResponse {
            task: Some(drivers::TaskStatus {
                id: entry.config.id.clone(),
                name: entry.config.name.clone(),
                state: state as i32,
                started_at: Some(timestamp_ms(entry.instance.started_at_ms)),
                completed_at: Some(completed_at),
                result: Some(result),
            }),
            driver: Some(drivers::TaskDriverStatus {
                attributes: HashMap::from([
                    ("pot".to_string(), entry.pot.to_string()),
                    ("pid".to_string(), entry.instance.pid.to_string()),
                ]),
            }),
            network_override: network_override(entry.instance.network.as_ref()),
        }))
    }

    async fn task_stats(
        &self,
        request: Request<drivers::TaskStatsRequest>,
    ) -> Result<Response<BoxStream<drivers::TaskStatsResponse>>, Status> {
        let req = request.into_inner();
        let entry = self
            .task(&req.task_id)
            .ok_or_else(|| status::not_found(format!("task {} not found", req.task_id)))?;
        let engine = self.engine()?;
        let interval = req
            .collection_interval
            .map(client_duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(1));
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let usage = engine.usage(&entry.pot).await;
                if let Err(e) = &usage {
                    tracing::debug!(pot = %entry.pot, error = %e, "stats sample failed");
                }
                let sample = stats_sample(&entry.config.id, usage.ok());
                if tx.send(Ok(sample)).await.is_err() || entry.instance.exit().is_some() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(stream_of(rx))
    }

    async fn signal_task(
        &self,
        request: Request<drivers::SignalTaskRequest>,
    ) -> Result<Response<drivers::SignalTaskResponse>, Status> {
        let req = request.into_inner();
        let entry = self
            .task(&req.task_id)
            .ok_or_else(|| status::not_found(format!("task {} not found", req.task_id)))?;
        let signal = parse_signal(&req.signal)?;
        self.engine()?
            .signal(&entry.pot, signal)
            .map_err(|e| status::from_engine(&e))?;
        Ok(Response::new(drivers::SignalTaskResponse {}))
    }

    async fn exec_task_streaming(
        &self,
        request: Request<tonic::Streaming<drivers::ExecTaskStreamingRequest>>,
    ) -> Result<Response<BoxStream<drivers::ExecTaskStreamingResponse>>, Status> {
        self.exec_streaming(request).await
    }

    async fn exec_task(
        &self,
        request: Request<drivers::ExecTaskRequest>,
    ) -> Result<Response<drivers::ExecTaskResponse>, Status> {
        self.exec_once(request).await
    }
}
