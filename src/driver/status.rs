//! Engine errors → gRPC statuses, with Nomad's recoverable-error detail for transient failures.

use super::TaskSpecError;
use crate::engine::EngineError;
use crate::proto::structs::RecoverableError;
use crate::text::{MAX_MESSAGE, clip};
use prost::Message;
use tonic::{Code, Status};

/// `google.rpc.Status`, the payload of the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

const RECOVERABLE_TYPE_URL: &str =
    "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError";

/// A failure Nomad should retry: FAILED_PRECONDITION with `RecoverableError{recoverable: true}`
/// as the first detail, which is what the client's restart tracker looks for.
pub fn recoverable(message: String) -> Status {
    let message = clip(&message, MAX_MESSAGE).into_owned();
    let details = RpcStatus {
        code: Code::FailedPrecondition as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: RECOVERABLE_TYPE_URL.to_string(),
            value: RecoverableError { recoverable: true }.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::FailedPrecondition,
        message,
        details.encode_to_vec().into(),
    )
}

/// INVALID_ARGUMENT with a message of at most [`MAX_MESSAGE`] bytes: messages quote job input.
pub fn invalid_argument(message: String) -> Status {
    Status::invalid_argument(clip(&message, MAX_MESSAGE))
}

/// FAILED_PRECONDITION with a message of at most [`MAX_MESSAGE`] bytes.
pub fn failed_precondition(message: String) -> Status {
    Status::failed_precondition(clip(&message, MAX_MESSAGE))
}

/// NOT_FOUND with a message of at most [`MAX_MESSAGE`] bytes.
pub fn not_found(message: String) -> Status {
    Status::not_found(clip(&message, MAX_MESSAGE))
}

pub fn from_engine(e: &EngineError) -> Status {
    let message = clip(&e.to_string(), MAX_MESSAGE).into_owned();
    match e {
        EngineError::InvalidInput(_) => Status::invalid_argument(message),
        EngineError::NotFound { .. } => Status::not_found(message),
        _ if e.is_transient() => recoverable(message),
        // Go plugins answer plain errors with Unknown; the Nomad client shows the message as is.
        _ => Status::unknown(message),
    }
}

/// A task that cannot be made: bad input is INVALID_ARGUMENT, the engine's errors map as above.
pub fn from_task_spec(e: &TaskSpecError) -> Status {
    match e {
        TaskSpecError::Config(_) | TaskSpecError::Ports(_) => invalid_argument(e.to_string()),
        TaskSpecError::Engine(e) => from_engine(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::config::PortError;
    use crate::engine::ImageError;

    fn http_status(code: u16) -> ImageError {
        ImageError::Status {
            url: "http://h/a_1.xz".into(),
            status: code.try_into().unwrap(),
            from: String::new(),
        }
    }

    #[test]
    fn recoverable_status_carries_nomads_detail_bytes() {
        let s = recoverable("x".to_string());
        assert_eq!(s.code(), Code::FailedPrecondition);
        // nomad-protocol.md §3.3: the exact google.rpc.Status for message "x".
        let mut expected = vec![0x08, 0x09, 0x12, 0x01, b'x', 0x1a, 0x51, 0x0a, 0x4b];
        expected.extend(RECOVERABLE_TYPE_URL.as_bytes());
        expected.extend([0x12, 0x02, 0x08, 0x01]);
        assert_eq!(s.details(), &expected[..]);
    }

    #[test]
    fn maps_error_kinds_to_codes() {
        assert_eq!(
            from_engine(&EngineError::InvalidInput("bad".into())).code(),
            Code::InvalidArgument
        );
        let transient = EngineError::Image {
            image: "a_1".into(),
            source: http_status(503),
        };
        assert_eq!(from_engine(&transient).code(), Code::FailedPrecondition);
        let permanent = EngineError::Image {
            image: "a_1".into(),
            source: http_status(404),
        };
        assert_eq!(from_engine(&permanent).code(), Code::Unknown);
    }

    #[test]
    fn task_spec_errors_are_invalid_arguments_unless_the_engine_says_otherwise() {
        use crate::driver::cty::CtyError;
        let config = TaskSpecError::Config(CtyError {
            block: "task config",
            reason: "image: required".into(),
        });
        let s = from_task_spec(&config);
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "task config: image: required")
        );
        let s = from_task_spec(&TaskSpecError::Ports(PortError::OutOfRange {
            label: "http".into(),
            what: "to",
            number: 0,
        }));
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::InvalidArgument,
                "task config: port \"http\": to 0 is not in 1-65535"
            )
        );
        let transient = TaskSpecError::Engine(EngineError::Image {
            image: "a_1".into(),
            source: http_status(503),
        });
        assert_eq!(from_task_spec(&transient).code(), Code::FailedPrecondition);
    }

    #[test]
    fn messages_are_bounded() {
        let huge = EngineError::InvalidInput(format!("command {:?}", "x".repeat(10 << 20)));
        let s = from_engine(&huge);
        assert!(
            s.message().len() < MAX_MESSAGE + 32,
            "{}",
            s.message().len()
        );
        assert!(s.message().ends_with("more bytes)"));
        let transient = EngineError::Image {
            image: "a_1".into(),
            source: ImageError::Changed {
                url: "y".repeat(1 << 20),
            },
        };
        assert!(from_engine(&transient).message().len() < MAX_MESSAGE + 32);
        assert!(invalid_argument("z".repeat(1 << 20)).message().len() < MAX_MESSAGE + 32);
    }
}
