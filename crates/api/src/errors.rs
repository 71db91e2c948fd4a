//! The one place where service errors become wire errors, for every front door: the binary
//! protocol sends them as they are, the HTTP API as `{"code", "name", "message"}` with a status.

use tern_core::{ServiceError, StoreError};
use tern_proto::{ErrorCode, pb};

/// The wire error for a service error. Internal details are logged here and never sent.
pub fn to_wire(err: &ServiceError) -> pb::Error {
    let code = match err {
        ServiceError::InvalidUserId => ErrorCode::InvalidUserId,
        ServiceError::InvalidDevice => ErrorCode::InvalidDevice,
        ServiceError::InvalidPassword => ErrorCode::InvalidPassword,
        ServiceError::UserExists => ErrorCode::UserExists,
        ServiceError::AuthFailed => ErrorCode::AuthFailed,
        ServiceError::TokenInvalid => ErrorCode::TokenInvalid,
        ServiceError::UserDisabled => ErrorCode::UserDisabled,
        ServiceError::UnknownUser(_) => ErrorCode::UnknownUser,
        ServiceError::ContentTooLarge { .. } => ErrorCode::ContentTooLarge,
        ServiceError::InvalidContent(_) => ErrorCode::InvalidContent,
        ServiceError::ContentRejected => ErrorCode::ContentRejected,
        ServiceError::InvalidClientMsgId => ErrorCode::InvalidClientMsgId,
        ServiceError::NotAParticipant => ErrorCode::NotAParticipant,
        ServiceError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        ServiceError::PermissionDenied(_) => ErrorCode::PermissionDenied,
        ServiceError::Muted => ErrorCode::Muted,
        ServiceError::GroupDissolved => ErrorCode::GroupDissolved,
        ServiceError::GroupFull { .. } => ErrorCode::GroupFull,
        ServiceError::OwnerCannotLeave => ErrorCode::OwnerCannotLeave,
        ServiceError::MessageNotFound => ErrorCode::MessageNotFound,
        ServiceError::WindowPassed { .. } => ErrorCode::WindowPassed,
        ServiceError::NotEditable(_) => ErrorCode::NotEditable,
        ServiceError::NotAccepted => ErrorCode::NotAccepted,
        ServiceError::RequestNotFound => ErrorCode::RequestNotFound,
        ServiceError::ClientMsgIdReused => ErrorCode::ClientMsgIdReused,
        ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
        ServiceError::Overloaded => ErrorCode::Overloaded,
        ServiceError::RejectedByApp { code, message } => {
            let mut error = ErrorCode::RejectedByApp.to_error(message.clone());
            if let Some(code) = code {
                error.code = *code;
            }
            return error;
        }
        ServiceError::HookUnavailable => ErrorCode::Unavailable,
        ServiceError::FileNotFound => ErrorCode::FileNotFound,
        ServiceError::FileTooLarge { .. } => ErrorCode::FileTooLarge,
        ServiceError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
        ServiceError::RateLimited { retry_after, .. } => {
            let mut error = ErrorCode::RateLimited.to_error(err.to_string());
            error.retry_after_ms = retry_after.as_millis().max(1) as u64;
            return error;
        }
        ServiceError::Store(StoreError::Unavailable(detail) | StoreError::Conflict(detail)) => {
            tracing::warn!(%detail, "store unavailable");
            return ErrorCode::Unavailable
                .to_error("the server cannot store or read data right now; retry later");
        }
        ServiceError::Store(StoreError::Corrupt(detail) | StoreError::NotFound(detail)) => {
            tracing::error!(%detail, "store returned invalid data");
            return ErrorCode::Internal.to_error("internal error");
        }
        ServiceError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            return ErrorCode::Internal.to_error("internal error");
        }
    };
    code.to_error(err.to_string())
}
