//! The go-plugin process: handshake, gRPC serving on a unix socket, health, controller, logging.

mod handshake;
pub mod logging;

pub use handshake::{LineError, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, announced_socket};

use crate::driver::PotDriver;
use crate::proto::base::base_plugin_server::BasePluginServer;
use crate::proto::drivers::driver_server::DriverServer;
use crate::proto::plugin::Empty;
use crate::proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

/// Nomad's env maps and handles can exceed tonic's 4 MiB default.
const MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Long-lived streams (WaitTask, Fingerprint…) never finish by themselves; after a shutdown
/// request they get this long before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

struct Controller {
    shutdown: watch::Sender<bool>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(
        &self,
        _: tonic::Request<Empty>,
    ) -> Result<tonic::Response<Empty>, tonic::Status> {
        tracing::info!("shutdown requested by the host");
        let _ = self.shutdown.send(true);
        Ok(tonic::Response::new(Empty {}))
    }
}

/// Runs the plugin process until the host asks it to stop.
pub fn run() -> ExitCode {
    if let Err(e) = handshake::check_environment(|k| std::env::var(k).ok()) {
        // A plain line, as go-plugin prints it; stdout stays untouched.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{e}\n").as_bytes());
        return ExitCode::from(1);
    }
    logging::init("nomad-pot-driver");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "plugin failed");
            ExitCode::from(1)
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let dir = handshake::SocketDir::create()?;
    let socket = dir.socket();
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    spawn_signal_handlers(shutdown_tx.clone())?;
    let driver = PotDriver::default();
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: shutdown_tx,
        }))
        .add_service(
            BasePluginServer::new(driver.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .add_service(
            DriverServer::new(driver)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        );
    // Only now, with the socket listening, may the host learn its address.
    handshake::announce(&socket)?;
    tracing::info!(socket = %socket.display(), version = crate::driver::PLUGIN_VERSION, "plugin serving");
    let mut stop = shutdown_rx.clone();
    let serving =
        server.serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result?,
        _ = async {
            let _ = shutdown_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::debug!("open streams did not finish within the shutdown grace"),
    }
    drop(dir);
    Ok(())
}

/// SIGINT is ignored, as go-plugin plugins do: a Ctrl-C at a foreground agent reaches the whole
/// process group, and the agent decides when plugins stop. SIGTERM shuts down cleanly.
fn spawn_signal_handlers(shutdown: watch::Sender<bool>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => tracing::debug!("ignoring SIGINT"),
                _ = term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    let _ = shutdown.send(true);
                }
            }
        }
    });
    Ok(())
}
