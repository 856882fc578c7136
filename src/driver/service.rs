//! The gRPC services Nomad calls, BasePlugin ([`base`]) and Driver ([`driver`]), and the state
//! they share: the configured engine, the tasks, the starts under way and the event routes.
//! Conversions between Nomad's messages and engine types live in [`convert`], exec sessions in
//! [`exec`], the fingerprint in [`fingerprint`].

use super::config::AgentConfig;
use crate::engine::{Engine, EventSink, Instance, PotName};
use crate::proto::drivers;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Response, Status};

mod base;
mod convert;
mod driver;
mod exec;
mod fingerprint;
mod starting;

pub use convert::{TaskSpecError, task_spec};

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
                    timestamp: Some(convert::timestamp(SystemTime::now())),
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
}

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Response<BoxStream<T>> {
    Response::new(Box::pin(ReceiverStream::new(rx)))
}
