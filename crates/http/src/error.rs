//! The HTTP API's one error shape: `{"code", "name", "message"}` with the binary protocol's
//! stable codes, under a real HTTP status.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tern_core::ServiceError;
use tern_proto::{ErrorCode, pb};
use utoipa::ToSchema;

/// What every failed request answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The stable numeric code (the same as the binary protocol's).
    pub code: u32,
    /// The code's name, such as `AUTH_FAILED`.
    pub name: String,
    /// What went wrong, for people.
    pub message: String,
}

/// A failed request: a protocol error and the HTTP status it is sent with.
#[derive(Debug, Clone)]
pub struct ApiError {
    error: pb::Error,
    /// A status the code alone does not say (no such endpoint, a method it does not take).
    status: Option<StatusCode>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code.to_error(message.into()),
            status: None,
        }
    }

    /// An error with `code` and `message` under `status`.
    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code.to_error(message.into()),
            status: Some(status),
        }
    }

    /// The HTTP status for the error's code.
    pub fn status(&self) -> StatusCode {
        if let Some(status) = self.status {
            return status;
        }
        match ErrorCode::from_u32(self.error.code) {
            Some(ErrorCode::AuthFailed | ErrorCode::TokenInvalid) => StatusCode::UNAUTHORIZED,
            Some(ErrorCode::PermissionDenied | ErrorCode::UserDisabled) => StatusCode::FORBIDDEN,
            Some(
                ErrorCode::UnknownUser
                | ErrorCode::NotAParticipant
                | ErrorCode::MessageNotFound
                | ErrorCode::RequestNotFound
                | ErrorCode::FileNotFound,
            ) => StatusCode::NOT_FOUND,
            Some(ErrorCode::UserExists | ErrorCode::ClientMsgIdReused) => StatusCode::CONFLICT,
            Some(
                ErrorCode::ContentTooLarge | ErrorCode::FrameTooLarge | ErrorCode::FileTooLarge,
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            Some(
                ErrorCode::ContentRejected | ErrorCode::NotAccepted | ErrorCode::RejectedByApp,
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            // A code the app's before-send hook chose.
            None if tern_core::before_send::APP_CODES.contains(&self.error.code) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Some(ErrorCode::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
            Some(ErrorCode::QuotaExceeded) => StatusCode::INSUFFICIENT_STORAGE,
            Some(ErrorCode::Unavailable | ErrorCode::ShuttingDown | ErrorCode::Overloaded) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Some(ErrorCode::Internal) | None => StatusCode::INTERNAL_SERVER_ERROR,
            Some(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl ApiError {
    /// The error as the API shows it.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.error.code,
            // The wire error's own name: an app's code from the before-send hook has none in
            // the table but travels as `REJECTED_BY_APP`.
            name: self.error.name.clone(),
            message: self.error.message.clone(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self {
            error: tern_api::errors::to_wire(&e),
            status: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        if self.error.retry_after_ms > 0 {
            let secs = self.error.retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
