//! The SDK's error type.

use tern_proto::{ErrorCode, pb};

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("server error {name} ({code}): {message}")]
    Server {
        /// The numeric code (see docs/protocol.md).
        code: u32,
        /// The symbolic name.
        name: String,
        /// The server's explanation.
        message: String,
        /// Whether retrying the same request may succeed.
        retryable: bool,
        /// With `RATE_LIMITED`: how long to wait first, in ms (0: unknown).
        retry_after_ms: u64,
    },
    /// The connection failed or closed before the answer arrived.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// No answer within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The endpoint could not be reached.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The server sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
    /// The server kicked this device (another login replaced it).
    #[error("kicked by the server: {0}")]
    Kicked(String),
}

impl ClientError {
    /// Builds the error for an error payload.
    pub fn from_wire(e: pb::Error) -> Self {
        ClientError::Server {
            code: e.code,
            name: e.name,
            message: e.message,
            retryable: e.retryable,
            retry_after_ms: e.retry_after_ms,
        }
    }

    /// The server's error code, if this is a server error with a known code.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => ErrorCode::from_u32(*code),
            _ => None,
        }
    }

    /// How long to wait before retrying, when the server said (`RATE_LIMITED`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ClientError::Server { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(std::time::Duration::from_millis(*retry_after_ms))
            }
            _ => None,
        }
    }

    /// Whether sending the same request again (after reconnecting) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server { retryable, .. } => *retryable,
            ClientError::Disconnected(_) | ClientError::Timeout | ClientError::Connect { .. } => {
                true
            }
            ClientError::Protocol(_) | ClientError::Closed | ClientError::Kicked(_) => false,
        }
    }
}
