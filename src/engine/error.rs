//! Engine errors: each names the object and the operation.

use super::image::ImageError;
use crate::host::HostError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The task's input is unusable; nothing was changed on the host.
    #[error("{0}")]
    InvalidInput(String),
    /// An image could not be fetched, verified or imported.
    #[error("image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: ImageError,
    },
    /// A host operation on a pot failed.
    #[error("pot {pot}: {source}")]
    Host {
        pot: String,
        #[source]
        source: HostError,
    },
    /// A file operation on a pot's files failed.
    #[error("pot {pot}: {op} {}: {source}", path.display())]
    Io {
        pot: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pot is not in a state that allows the operation.
    #[error("pot {pot}: {reason}")]
    State { pot: String, reason: String },
    /// No such pot or task.
    #[error("pot {pot} not found")]
    NotFound { pot: String },
    /// A node-wide operation (about no single pot) cannot be done on this node.
    #[error("{what}: {reason}")]
    Node { what: String, reason: String },
    /// A host operation about the whole node, `what` naming it ("list jails"), failed.
    #[error("{what}: {source}")]
    NodeHost {
        what: String,
        #[source]
        source: HostError,
    },
}

impl EngineError {
    /// Failures that may succeed when retried; Nomad restarts the task for these.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Image { source, .. } => source.is_transient(),
            EngineError::Host { source, .. } => matches!(source, HostError::Spawn { .. }),
            _ => false,
        }
    }

    pub(crate) fn host(pot: &str) -> impl FnOnce(HostError) -> EngineError + '_ {
        move |source| EngineError::Host {
            pot: pot.to_string(),
            source,
        }
    }

    /// For a host operation about the whole node, `what` naming it ("list jails").
    pub(crate) fn node(what: &str) -> impl FnOnce(HostError) -> EngineError + '_ {
        move |source| EngineError::NodeHost {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn io<'a>(
        pot: &'a str,
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
        move |source| EngineError::Io {
            pot: pot.to_string(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn node_errors_keep_the_host_error_and_its_text() {
        let e = EngineError::node("list jails")(HostError::Failed {
            command: "jls".into(),
            status: "exit status 1".into(),
            stderr: "jls: boom".into(),
        });
        assert_eq!(
            e.to_string(),
            "list jails: jls failed (exit status 1): jls: boom"
        );
        let source = e.source().and_then(|s| s.downcast_ref::<HostError>());
        assert!(matches!(source, Some(HostError::Failed { .. })), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn image_errors_keep_the_host_and_io_errors_underneath() {
        let e = EngineError::Image {
            image: "web_1.0".into(),
            source: ImageError::RemoveStale {
                dataset: "zroot/pot/jails/web_1.0_importing".into(),
                source: HostError::Failed {
                    command: "zfs destroy".into(),
                    status: "exit status 1".into(),
                    stderr: "dataset is busy".into(),
                },
            },
        };
        assert_eq!(
            e.to_string(),
            "image web_1.0: remove a stale zroot/pot/jails/web_1.0_importing: zfs destroy failed (exit status 1): dataset is busy"
        );
        let image = e.source().and_then(|s| s.downcast_ref::<ImageError>());
        assert!(
            matches!(image, Some(ImageError::RemoveStale { .. })),
            "{e:?}"
        );
        let host = e.source().and_then(|s| s.source());
        let host = host.and_then(|s| s.downcast_ref::<HostError>());
        assert!(matches!(host, Some(HostError::Failed { .. })), "{e:?}");
        assert!(!e.is_transient());

        let e = EngineError::Image {
            image: "web_1.0".into(),
            source: ImageError::Read {
                location: "file:///images/web_1.0.xz".into(),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            },
        };
        let io = e.source().and_then(|s| s.source());
        let io = io.and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::UnexpectedEof)
        );
        assert!(
            e.is_transient(),
            "a read cut in the middle may succeed again"
        );
    }
}
