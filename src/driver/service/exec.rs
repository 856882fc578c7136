//! Commands exec'd in a running task: ExecTask (run to completion) and ExecTaskStreaming (an
//! interactive session, with or without a tty).

use super::convert::{client_duration, exit_result};
use super::{PotDriver, TaskEntry, stream_of};
use crate::driver::status;
use crate::engine::{ExecInput, ExecOutputEvent, TtySize};
use crate::proto::drivers;
use std::collections::BTreeMap;
use tokio::sync::mpsc;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

impl PotDriver {
    /// ExecTaskStreaming: the setup message names the task and the command; stdin and resizes
    /// follow on the same stream.
    pub(super) async fn exec_streaming(
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

    /// ExecTask: runs the command to completion, within the request's timeout.
    pub(super) async fn exec_once(
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

/// The environment of commands exec'd in a task: the task's own, as `docker exec` does.
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
