//! The gRPC services Nomad calls: BasePlugin and Driver.

use super::config::{AgentConfig, TaskConfig};
use super::handle::{DriverState, HANDLE_VERSION};
use super::{API_VERSION, DRIVER_NAME, PLUGIN_VERSION, schema, status};
use crate::engine::{
    Dns, Engine, EngineConfig, EngineError, EventSink, ExecInput, ExecOutputEvent, ExitInfo,
    HostMount, ImageRef, Instance, Limits, MountSpec, NetworkRecord, PotName, TaskSpec, TaskUsage,
    TtySize, parse_cpu_list,
};
use crate::proto::base::{self, base_plugin_server::BasePlugin};
use crate::proto::drivers::{self, driver_server::Driver};
use crate::proto::structs;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

mod starting;

/// How often the fingerprint is re-sent (the Go drivers use the same period).
const FINGERPRINT_PERIOD: Duration = Duration::from_secs(30);
/// Reconcile waits this long after the long-lived plugin starts: Nomad recovers the tasks it
/// still wants first, and only unclaimed pots are collected.
const RECONCILE_GRACE: Duration = Duration::from_secs(300);
const RECONCILE_PERIOD: Duration = Duration::from_secs(600);

/// The driver plugin: shared by the BasePlugin and Driver services.
#[derive(Clone, Default)]
pub struct PotDriver {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    configured: RwLock<Option<Configured>>,
    tasks: Mutex<HashMap<String, Arc<TaskEntry>>>,
    /// Starts under way, by task id (see [`starting`]).
    starting: Mutex<HashMap<String, Arc<starting::Starting>>>,
    /// Pots of tasks whose recovery failed, by task id: Nomad follows a failed RecoverTask with
    /// DestroyTask, which must then remove what the task left.
    unrecovered: Mutex<HashMap<String, PotName>>,
    routes: Arc<Mutex<HashMap<PotName, Route>>>,
    events: EventBus,
    reconciling: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct Configured {
    agent: AgentConfig,
    engine: Arc<Engine>,
}

/// Where a pot's events go in Nomad: events are routed by alloc id and task name.
#[derive(Clone)]
struct Route {
    task_id: String,
    alloc_id: String,
    task_name: String,
}

struct EventBus(broadcast::Sender<drivers::DriverTaskEvent>);

impl Default for EventBus {
    fn default() -> Self {
        EventBus(broadcast::channel(256).0)
    }
}

struct TaskEntry {
    config: drivers::TaskConfig,
    pot: PotName,
    instance: Arc<Instance>,
}

impl PotDriver {
    fn configured(&self) -> Result<Configured, Status> {
        self.inner
            .configured
            .read()
            .expect("config lock poisoned")
            .clone()
            .ok_or_else(|| {
                Status::failed_precondition("the plugin has not been configured (SetConfig)")
            })
    }

    fn engine(&self) -> Result<Arc<Engine>, Status> {
        self.configured().map(|c| c.engine)
    }

    fn task(&self, id: &str) -> Option<Arc<TaskEntry>> {
        self.inner
            .tasks
            .lock()
            .expect("tasks poisoned")
            .get(id)
            .cloned()
    }

    fn event_sink(&self) -> EventSink {
        let routes = self.inner.routes.clone();
        let bus = self.inner.events.0.clone();
        Arc::new(move |pot: &PotName, message: String| {
            tracing::info!(pot = %pot, "{message}");
            let route = routes.lock().expect("routes poisoned").get(pot).cloned();
            if let Some(r) = route {
                let _ = bus.send(drivers::DriverTaskEvent {
                    task_id: r.task_id,
                    alloc_id: r.alloc_id,
                    task_name: r.task_name,
                    timestamp: Some(timestamp(SystemTime::now())),
                    message,
                    annotations: HashMap::new(),
                });
            }
        })
    }

    fn register(
        &self,
        config: drivers::TaskConfig,
        pot: PotName,
        instance: Arc<Instance>,
    ) -> Arc<TaskEntry> {
        let entry = Arc::new(TaskEntry {
            config,
            pot,
            instance,
        });
        self.inner
            .tasks
            .lock()
            .expect("tasks poisoned")
            .insert(entry.config.id.clone(), entry.clone());
        entry
    }

    fn route(&self, pot: &PotName, cfg: &drivers::TaskConfig) {
        self.inner.routes.lock().expect("routes poisoned").insert(
            pot.clone(),
            Route {
                task_id: cfg.id.clone(),
                alloc_id: cfg.alloc_id.clone(),
                task_name: cfg.name.clone(),
            },
        );
    }

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

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

/// What Go sends for "no time": 0001-01-01T00:00:00Z.
fn zero_time() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    }
}

fn exit_result(e: &ExitInfo) -> drivers::ExitResult {
    drivers::ExitResult {
        exit_code: e.exit_code,
        signal: e.signal,
        oom_killed: e.memory_limit_hit.is_some(),
    }
}

/// Signal names as Nomad sends them (`SIGTERM`), also accepted without the prefix or in lower case.
/// The longest duration taken from a request: longer waits are of no use, and deadlines
/// computed from them must not overflow.
const MAX_CLIENT_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A request's duration; negative is zero, longer than [`MAX_CLIENT_DURATION`] is that.
fn client_duration(d: prost_types::Duration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos).min(MAX_CLIENT_DURATION)
}

fn parse_signal(name: &str) -> Result<Signal, Status> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map_err(|_| status::invalid_argument(format!("unknown signal {name:?}")))
}

/// `<alloc_id>/<task_name>/<invocation>`, the task id Nomad generates per start.
fn split_task_id(id: &str) -> Result<(&str, &str, &str), Status> {
    let mut parts = id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(t), Some(i)) if !a.is_empty() && !t.is_empty() && !i.is_empty() => {
            Ok((a, t, i))
        }
        _ => Err(status::invalid_argument(format!(
            "task id {id:?} is not of the form <alloc>/<task>/<invocation>"
        ))),
    }
}

fn handle_for(entry: &TaskEntry) -> drivers::TaskHandle {
    let (alloc_id, task_name) = (entry.config.alloc_id.clone(), entry.config.name.clone());
    let state = DriverState {
        pot: entry.pot.to_string(),
        task_id: entry.config.id.clone(),
        task_name,
        alloc_id,
        pid: entry.instance.pid,
        started_at_ms: entry.instance.started_at_ms,
    };
    drivers::TaskHandle {
        version: HANDLE_VERSION,
        config: Some(entry.config.clone()),
        state: drivers::TaskState::Running as i32,
        driver_state: state.encode(),
    }
}

fn tty_size(size: &drivers::exec_task_streaming_request::TerminalSize) -> TtySize {
    let clamp = |v: i32| v.clamp(0, i32::from(u16::MAX)) as u16;
    TtySize {
        rows: clamp(size.height),
        cols: clamp(size.width),
    }
}

fn resize(size: &drivers::exec_task_streaming_request::TerminalSize) -> ExecInput {
    let TtySize { rows, cols } = tty_size(size);
    ExecInput::Resize { rows, cols }
}

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Response<BoxStream<T>> {
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

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
        Ok(stream_of(rx))
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
        let spec = task_spec(&cfg, configured.agent.cpu_hard_limit)?;
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
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("ExecTaskStreaming: no setup message"))?;
        let setup = first
            .setup
            .ok_or_else(|| Status::invalid_argument("first message should always be setup"))?;
        let entry = self
            .task(&setup.task_id)
            .ok_or_else(|| status::not_found(format!("task {} not found", setup.task_id)))?;
        let session = self
            .engine()?
            .exec_session(
                &entry.pot,
                task_user(&entry),
                &setup.command,
                &task_env(&entry),
                setup
                    .tty
                    .then(|| first.tty_size.as_ref().map(tty_size).unwrap_or_default()),
            )
            .await
            .map_err(|e| status::from_engine(&e))?;
        let input = session.input;
        tokio::spawn(async move {
            // Client EOF only means no more input; output keeps streaming.
            while let Ok(Some(msg)) = inbound.message().await {
                if let Some(io) = msg.stdin {
                    if !io.data.is_empty() && input.send(ExecInput::Data(io.data)).await.is_err() {
                        break;
                    }
                    if io.close && input.send(ExecInput::Close).await.is_err() {
                        break;
                    }
                }
                if let Some(size) = msg.tty_size
                    && input.send(resize(&size)).await.is_err()
                {
                    break;
                }
            }
        });
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(forward_exec_output(session.output, session.exit, tx));
        Ok(stream_of(rx))
    }

    async fn exec_task(
        &self,
        request: Request<drivers::ExecTaskRequest>,
    ) -> Result<Response<drivers::ExecTaskResponse>, Status> {
        let req = request.into_inner();
        let entry = self
            .task(&req.task_id)
            .ok_or_else(|| status::not_found(format!("task {} not found", req.task_id)))?;
        let timeout = req.timeout.map(client_duration);
        let out = self
            .engine()?
            .exec(
                &entry.pot,
                task_user(&entry),
                &req.command,
                &task_env(&entry),
                timeout,
            )
            .await
            .map_err(|e| status::from_engine(&e))?;
        Ok(Response::new(drivers::ExecTaskResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            result: Some(exit_result(&out.exit)),
        }))
    }
}

/// What the engine runs for Nomad's `cfg`: the decoded task config, the task's dirs, its log
/// FIFOs, mounts, network, limits and environment. `potctl run` builds its task through this
/// too, so that it runs exactly what the plugin would. `cpu_hard_limit` is the agent's default
/// for tasks that do not set it.
pub fn task_spec(cfg: &drivers::TaskConfig, cpu_hard_limit: bool) -> Result<TaskSpec, Status> {
    let (alloc, task_name, invocation) = split_task_id(&cfg.id)?;
    let tc = TaskConfig::decode(&cfg.msgpack_driver_config)
        .map_err(|e| status::invalid_argument(e.to_string()))?;
    let image =
        ImageRef::parse(&tc.image, &tc.pot, &tc.tag).map_err(|e| status::from_engine(&e))?;
    let pot =
        PotName::for_task(task_name, invocation, alloc).map_err(|e| status::from_engine(&e))?;
    let alloc_dir = Path::new(&cfg.alloc_dir);
    let task_dir = alloc_dir.join(&cfg.name);
    let mounts = vec![
        MountSpec {
            source: task_dir.join("local"),
            target: "/local".into(),
            readonly: false,
        },
        MountSpec {
            source: task_dir.join("secrets"),
            target: "/secrets".into(),
            readonly: false,
        },
        MountSpec {
            source: alloc_dir.join("alloc"),
            target: "/alloc".into(),
            readonly: false,
        },
    ];
    // Host volumes (`volume_mount`): the client resolved them from its host_volume config.
    let volumes: Vec<HostMount> = cfg
        .mounts
        .iter()
        .map(|m| HostMount {
            origin: format!("volume_mount {:?}", m.task_path),
            source: m.host_path.clone().into(),
            target: m.task_path.clone(),
            readonly: m.readonly,
        })
        .collect();
    let nomad_ports = cfg
        .resources
        .as_ref()
        .map(|r| r.ports.as_slice())
        .unwrap_or_default();
    let network = tc
        .network_request(nomad_ports, &cfg.env)
        .map_err(|e| status::invalid_argument(format!("task config: {e}")))?;
    let cpu_hard_limit = tc.cpu_hard_limit.unwrap_or(cpu_hard_limit);
    let limits = nomad_limits(cfg, tc.limits, cpu_hard_limit)?;
    Ok(TaskSpec {
        pot,
        image,
        command: tc.command,
        args: tc.args,
        env: cfg.env.clone().into_iter().collect(),
        stdout: cfg.stdout_path.clone().into(),
        stderr: cfg.stderr_path.clone().into(),
        task_dir,
        alloc_dir: alloc_dir.to_path_buf(),
        mounts,
        host_mounts: tc.mounts.into_iter().chain(volumes).collect(),
        copies: tc.copy,
        extra_hosts: tc.extra_hosts,
        attributes: tc.attributes,
        user: Some(cfg.user.clone()).filter(|u| !u.is_empty()),
        dns: cfg.dns.as_ref().map(|d| Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        limits,
        owner: cfg.id.clone(),
        network,
    })
}

/// The environment of commands exec'd in a task: the task's own, as `docker exec` does.
/// The task config's limits plus Nomad's resources: memory (`memory_max` when higher, as with
/// oversubscription), reserved cores, and the cpu share as a cap only with `cpu_hard_limit`.
/// Nomad's `cpu` is a reservation that docker and podman turn into a weight; FreeBSD has no CPU
/// weight for jails, and a `pcpu` cap would hold a default task (100 MHz) to a few percent of
/// one core, so without `cpu_hard_limit` the scheduler's reservation is all there is.
fn nomad_limits(
    cfg: &drivers::TaskConfig,
    from_job: Limits,
    cpu_hard_limit: bool,
) -> Result<Limits, Status> {
    let resources = cfg.resources.as_ref();
    let memory_mb = resources
        .and_then(|r| r.allocated_resources.as_ref())
        .and_then(|a| a.memory.as_ref())
        .map(|m| m.memory_mb.max(m.memory_max_mb))
        .filter(|mb| *mb > 0);
    let linux = resources.and_then(|r| r.linux_resources.as_ref());
    let cpus = parse_cpu_list(linux.map_or("", |l| l.cpuset_cpus.as_str()))
        .map_err(|e| status::from_engine(&e))?;
    Ok(Limits {
        memory_bytes: memory_mb.map(|mb| (mb as u64) << 20),
        cpu_share: linux
            .map(|l| l.percent_ticks)
            .filter(|t| *t > 0.0 && cpu_hard_limit),
        cpus,
        ..from_job
    })
}

fn task_env(entry: &TaskEntry) -> BTreeMap<String, String> {
    entry.config.env.clone().into_iter().collect()
}

/// The task's `user`, who runs exec'd commands too (Nomad sends "" for none).
fn task_user(entry: &TaskEntry) -> Option<&str> {
    Some(entry.config.user.as_str()).filter(|u| !u.is_empty())
}

/// Streams a session's output to the client: chunks, close frames, then one `exited` message
/// with the result (the Nomad CLI only reports an exit code when that result is set).
async fn forward_exec_output(
    mut session_output: mpsc::Receiver<ExecOutputEvent>,
    exit: tokio::sync::oneshot::Receiver<crate::engine::ExitInfo>,
    tx: mpsc::Sender<Result<drivers::ExecTaskStreamingResponse, Status>>,
) {
    use drivers::{ExecTaskStreamingIoOperation as Io, ExecTaskStreamingResponse as Resp};
    let data = |data: Vec<u8>| Some(Io { data, close: false });
    let close = || {
        Some(Io {
            data: Vec::new(),
            close: true,
        })
    };
    while let Some(event) = session_output.recv().await {
        let resp = match event {
            ExecOutputEvent::Stdout(d) => Resp {
                stdout: data(d),
                ..Default::default()
            },
            ExecOutputEvent::Stderr(d) => Resp {
                stderr: data(d),
                ..Default::default()
            },
            ExecOutputEvent::StdoutClosed => Resp {
                stdout: close(),
                ..Default::default()
            },
            ExecOutputEvent::StderrClosed => Resp {
                stderr: close(),
                ..Default::default()
            },
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
    let result = match exit.await {
        Ok(info) => exit_result(&info),
        Err(_) => drivers::ExitResult {
            exit_code: -1,
            ..Default::default()
        },
    };
    let _ = tx
        .send(Ok(Resp {
            exited: true,
            result: Some(result),
            ..Default::default()
        }))
        .await;
}

/// For a bridged pot, the pot's address and the in-pot ports, for services with
/// `address_mode = "driver"`; Nomad keeps advertising the host's address otherwise, which the
/// rdr rules serve, so `auto_advertise` stays off. An alias pot is only reachable on its own
/// addresses: its first one is advertised.
fn network_override(record: Option<&NetworkRecord>) -> Option<drivers::NetworkOverride> {
    let record = record?;
    if let Some(alias) = record.aliases.first() {
        let ip = record
            .aliases
            .iter()
            .find(|a| a.ip.is_ipv4())
            .unwrap_or(alias)
            .ip;
        return Some(drivers::NetworkOverride {
            port_map: HashMap::new(),
            addr: ip.to_string(),
            auto_advertise: true,
        });
    }
    let ip = record.ip?;
    Some(drivers::NetworkOverride {
        port_map: record
            .ports
            .iter()
            .map(|p| (p.label.clone(), i32::from(p.pot_port)))
            .collect(),
        addr: ip.to_string(),
        auto_advertise: false,
    })
}

/// One TaskStats sample. Without usage (racct off, jail gone) the sample is still sent, with no
/// measured fields, because Nomad dereferences it unconditionally.
fn stats_sample(task_id: &str, usage: Option<TaskUsage>) -> drivers::TaskStatsResponse {
    use drivers::{cpu_usage, memory_usage};
    let (cpu, memory) = match usage {
        Some(u) => (
            drivers::CpuUsage {
                percent: u.cpu_percent,
                measured_fields: vec![cpu_usage::Fields::Percent as i32],
                ..Default::default()
            },
            drivers::MemoryUsage {
                rss: u.memory_bytes,
                swap: u.swap_bytes,
                measured_fields: vec![
                    memory_usage::Fields::Rss as i32,
                    memory_usage::Fields::Swap as i32,
                ],
                ..Default::default()
            },
        ),
        None => Default::default(),
    };
    drivers::TaskStatsResponse {
        stats: Some(drivers::TaskStats {
            id: task_id.to_string(),
            timestamp: Some(timestamp(SystemTime::now())),
            agg_resource_usage: Some(drivers::TaskResourceUsage {
                cpu: Some(cpu),
                memory: Some(memory),
            }),
            resource_usage_by_pid: HashMap::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_names_as_nomad_sends_them() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn client_durations_are_clamped() {
        let d = |seconds, nanos| client_duration(prost_types::Duration { seconds, nanos });
        assert_eq!(d(5, 500), Duration::new(5, 500));
        assert_eq!(d(-1, -1), Duration::ZERO);
        assert_eq!(d(i64::MAX, 999_999_999), MAX_CLIENT_DURATION);
        assert_eq!(d(0, i32::MAX), Duration::new(0, 999_999_999));
    }

    #[test]
    fn splits_nomad_task_ids() {
        assert_eq!(
            split_task_id("a-1/web/0f3c").unwrap(),
            ("a-1", "web", "0f3c")
        );
        assert!(split_task_id("a/web").is_err());
    }

    #[test]
    fn nomad_cpu_becomes_a_pcpu_cap_only_with_cpu_hard_limit() {
        let cfg = drivers::TaskConfig {
            resources: Some(drivers::Resources {
                linux_resources: Some(drivers::LinuxResources {
                    percent_ticks: 0.25,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let share = |hard| {
            nomad_limits(&cfg, Limits::default(), hard)
                .unwrap()
                .cpu_share
        };
        assert_eq!(share(false), None);
        assert_eq!(share(true), Some(0.25));
    }

    #[test]
    fn stats_samples_always_carry_usage_and_timestamp() {
        let s = stats_sample("t", None).stats.unwrap();
        assert!(s.timestamp.is_some() && s.agg_resource_usage.is_some());
    }
}
