//! `potctl plugin-check`: launches a plugin binary the way a Nomad agent does (go-plugin's
//! environment, the handshake line on stdout, gRPC on the announced socket) and shows what the
//! agent would see, or the first step at which the agent would give up, and why.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nomad_pot_client::plugin::go_plugin_command;
use nomad_pot_driver::plugin::announced_socket;
use nomad_pot_driver::proto::base::{
    ConfigSchemaRequest, PluginInfoRequest, PluginType, SetConfigRequest,
    base_plugin_client::BasePluginClient,
};
use nomad_pot_driver::proto::drivers::{
    CapabilitiesRequest, FingerprintRequest, driver_capabilities, driver_client::DriverClient,
    fingerprint_response::HealthState, network_isolation_spec::NetworkIsolationMode,
};
use nomad_pot_driver::proto::plugin::{Empty, grpc_controller_client::GrpcControllerClient};
use nomad_pot_driver::proto::structs::attribute::Value as AttrValue;
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long the agent waits for a plugin to exit after Shutdown before it kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Each gRPC call gets this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct PluginCheckArgs {
    /// The plugin binary, as it lies in Nomad's plugin_dir.
    pub path: PathBuf,
    /// How long to wait for the handshake line (go-plugin waits 60 s).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// The app protocol versions announced in PLUGIN_PROTOCOL_VERSIONS (Nomad: 2).
    #[arg(long, value_name = "LIST", default_value = "2")]
    pub protocol_versions: String,
}

/// What the check found, step by step; printed as text or JSON.
#[derive(Default)]
struct Report {
    steps: Vec<(String, Json, String)>,
}

impl Report {
    fn ok(&mut self, step: &str, data: Json, text: String) {
        self.steps.push((step.to_string(), data, text));
    }

    fn print(&self, json: bool, failure: Option<&anyhow::Error>) {
        if json {
            let mut obj = serde_json::Map::new();
            for (step, data, _) in &self.steps {
                obj.insert(step.clone(), data.clone());
            }
            obj.insert("ok".into(), failure.is_none().into());
            if let Some(e) = failure {
                obj.insert("error".into(), format!("{e:#}").into());
            }
            println!("{}", Json::Object(obj));
            return;
        }
        for (step, _, text) in &self.steps {
            println!("{:<13} {text}", format!("{step}:"));
        }
        match failure {
            None => println!("ok: Nomad can load this plugin"),
            Some(e) => println!("FAILED: {e:#}"),
        }
    }
}

pub async fn plugin_check(
    args: &PluginCheckArgs,
    agent_config: Json,
    json: bool,
) -> Result<ExitCode> {
    let mut report = Report::default();
    let result = check(args, agent_config, &mut report).await;
    report.print(json, result.as_ref().err());
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(args: &PluginCheckArgs, agent: Json, report: &mut Report) -> Result<()> {
    let key = check_binary(&args.path)?;
    report.ok(
        "binary",
        json!({"path": args.path, "config_key": key}),
        format!(
            "{} is executable; Nomad's agent config must name it `plugin \"{key}\" {{ … }}`",
            args.path.display()
        ),
    );
    let mut plugin = Launched::spawn(&args.path, &args.protocol_versions)?;
    let outcome = async {
        let line = plugin.handshake(Duration::from_secs(args.timeout))?;
        let socket = announced_socket(&line)
            .map_err(|e| anyhow!("bad handshake line {line:?}: {e}{}", plugin.stderr_tail()))?;
        report.ok(
            "handshake",
            json!({"line": line, "socket": socket}),
            line.clone(),
        );
        let channel = connect(&socket).await?;
        talk(channel.clone(), agent, report).await?;
        Ok::<_, anyhow::Error>(channel)
    }
    .await;
    let shutdown = match &outcome {
        Ok(channel) => plugin.shutdown(channel.clone()).await,
        Err(_) => {
            plugin.kill();
            None
        }
    };
    outcome?;
    match shutdown {
        Some(text) => {
            report.ok("shutdown", json!({"graceful": true}), text);
            Ok(())
        }
        None => bail!(
            "the plugin did not exit within {SHUTDOWN_GRACE:?} of GRPCController.Shutdown: Nomad kills it and warns \"plugin failed to exit gracefully\""
        ),
    }
}

/// Nomad's loader skips what is not a regular executable file; its config key is the file name.
fn check_binary(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "{}: cannot be read (install the plugin into Nomad's plugin_dir)",
            path.display()
        )
    })?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file: Nomad's loader skips it",
            path.display()
        );
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "{} is not executable: Nomad's loader skips it (fix: chmod 0755 {})",
            path.display(),
            path.display()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(name.strip_suffix(".exe").unwrap_or(&name).to_string())
}

/// The plugin process with its stdout and stderr drained in the background.
struct Launched {
    child: Child,
    first_line: mpsc::Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Launched {
    fn spawn(path: &Path, versions: &str) -> Result<Launched> {
        let mut child = go_plugin_command(path, versions)
            .spawn()
            .with_context(|| format!("executing {}", path.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("stderr lines poisoned").push(line);
            }
        });
        let (tx, first_line) = mpsc::channel();
        // Like the agent: the first line is the handshake, everything after it is discarded.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = tx.send(reader.read_line(&mut first).map(|_| first));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        Ok(Launched {
            child,
            first_line,
            stderr: lines,
        })
    }

    /// The handshake line, or why there is none.
    fn handshake(&mut self, timeout: Duration) -> Result<String> {
        match self.first_line.recv_timeout(timeout) {
            Ok(Ok(line)) if line.is_empty() => {
                let status = self.child.wait().context("waiting for the plugin")?;
                // Let the stderr reader catch up with what the plugin printed before exiting.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "the plugin exited ({status}) before the handshake: Nomad reports \"plugin exited before we could connect\"{}",
                    self.stderr_tail()
                )
            }
            Ok(Ok(line)) => Ok(line.trim_end_matches('\n').to_string()),
            Ok(Err(e)) => bail!("reading the plugin's stdout: {e}"),
            Err(_) => bail!(
                "no handshake line within {timeout:?}: the plugin must print it on stdout once its socket listens{}",
                self.stderr_tail()
            ),
        }
    }

    /// The last lines the plugin wrote to stderr, as context for an error.
    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().expect("stderr lines poisoned");
        if lines.is_empty() {
            return String::new();
        }
        let tail = &lines[lines.len().saturating_sub(5)..];
        format!("; its stderr:\n  {}", tail.join("\n  "))
    }

    /// GRPCController.Shutdown, then the agent's grace period. Describes a graceful exit.
    async fn shutdown(&mut self, channel: Channel) -> Option<String> {
        let _ = tokio::time::timeout(
            CALL_TIMEOUT,
            GrpcControllerClient::new(channel).shutdown(Empty {}),
        )
        .await;
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(format!("exited ({status}) after GRPCController.Shutdown"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    let endpoint = Endpoint::try_from("http://[::]:50051").expect("static URI");
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(path).await?,
            ))
        }
    }));
    tokio::time::timeout(CALL_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", socket.display()))?
        .with_context(|| {
            format!(
                "connecting to {}: the handshake must come after the socket listens",
                socket.display()
            )
        })
}

async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => bail!("{what}: no answer within {CALL_TIMEOUT:?}"),
        Ok(Err(status)) => bail!("{what} failed: {:?}: {}", status.code(), status.message()),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// The calls of Nomad's fingerprint and long-lived launches.
async fn talk(channel: Channel, agent: Json, report: &mut Report) -> Result<()> {
    let mut base = BasePluginClient::new(channel.clone());
    let mut driver = DriverClient::new(channel);
    let info = call("PluginInfo", base.plugin_info(PluginInfoRequest {})).await?;
    let kind = PluginType::try_from(info.r#type)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN");
    report.ok(
        "plugin_info",
        json!({"type": kind, "name": info.name, "plugin_version": info.plugin_version,
               "api_versions": info.plugin_api_versions}),
        format!(
            "type {kind}, name {:?} (jobs say driver = {:?}), version {}, API versions {}",
            info.name,
            info.name,
            info.plugin_version,
            info.plugin_api_versions.join(",")
        ),
    );
    if kind != "DRIVER" {
        bail!("the plugin reports type {kind}, not DRIVER");
    }
    let api_version = info
        .plugin_api_versions
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("PluginInfo lists no API version"))?;
    let schema = call("ConfigSchema", base.config_schema(ConfigSchemaRequest {}))
        .await?
        .spec
        .ok_or_else(|| anyhow!("ConfigSchema returned no spec"))?;
    let msgpack = nomad_pot_client::cty::encode(&schema, &agent)
        .map_err(|e| anyhow!("the agent config does not fit the plugin's schema: {e}"))?;
    call(
        "SetConfig",
        base.set_config(SetConfigRequest {
            msgpack_config: msgpack,
            nomad_config: None,
            plugin_api_version: api_version,
        }),
    )
    .await?;
    report.ok(
        "set_config",
        json!({"config": agent}),
        format!("accepted {agent}"),
    );
    let caps = call("Capabilities", driver.capabilities(CapabilitiesRequest {}))
        .await?
        .capabilities
        .ok_or_else(|| anyhow!("Capabilities returned none"))?;
    let fs = driver_capabilities::FsIsolation::try_from(caps.fs_isolation)
        .map(|f| f.as_str_name())
        .unwrap_or("UNKNOWN");
    let modes: Vec<&str> = caps
        .network_isolation_modes
        .iter()
        .map(|m| {
            NetworkIsolationMode::try_from(*m)
                .map(|m| m.as_str_name())
                .unwrap_or("UNKNOWN")
        })
        .collect();
    report.ok(
        "capabilities",
        json!({"send_signals": caps.send_signals, "exec": caps.exec, "fs_isolation": fs,
               "network_isolation_modes": modes, "must_create_network": caps.must_create_network}),
        format!(
            "send_signals={} exec={} fs_isolation={fs} network_isolation={}",
            caps.send_signals,
            caps.exec,
            modes.join(",")
        ),
    );
    let mut stream = call("Fingerprint", driver.fingerprint(FingerprintRequest {})).await?;
    let first = tokio::time::timeout(CALL_TIMEOUT, stream.message())
        .await
        .map_err(|_| anyhow!("Fingerprint: no message within {CALL_TIMEOUT:?}"))?
        .map_err(|s| anyhow!("Fingerprint failed: {}", s.message()))?
        .ok_or_else(|| anyhow!("Fingerprint ended without a message"))?;
    let health = HealthState::try_from(first.health)
        .map(|h| h.as_str_name())
        .unwrap_or("UNKNOWN");
    let mut attributes: Vec<(String, String)> = first
        .attributes
        .iter()
        .map(|(k, a)| {
            let v = match &a.value {
                Some(AttrValue::StringVal(s)) => s.clone(),
                Some(AttrValue::BoolVal(b)) => b.to_string(),
                Some(AttrValue::IntVal(i)) => i.to_string(),
                Some(AttrValue::FloatVal(f)) => f.to_string(),
                None => String::new(),
            };
            (k.clone(), format!("{v}{}", a.unit))
        })
        .collect();
    attributes.sort();
    report.ok(
        "fingerprint",
        json!({"health": health, "description": first.health_description,
               "attributes": attributes.iter().map(|(k, v)| (k.clone(), Json::from(v.clone())))
                   .collect::<serde_json::Map<_, _>>()}),
        format!(
            "{health}: {}{}",
            first.health_description,
            attributes
                .iter()
                .map(|(k, v)| format!("\n              {k} = {v}"))
                .collect::<String>()
        ),
    );
    Ok(())
}
