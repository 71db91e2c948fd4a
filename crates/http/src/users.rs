//! Users and their tokens, for an app's backend: make accounts (with a password, or none for
//! users who only ever log in with tokens) and hand a device a token without its password.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tern_core::Platform;
use utoipa::ToSchema;

use crate::{Admin, ApiError, ApiJson, ErrorBody, HttpApi};

/// The most users one call makes.
pub const MAX_USERS_PER_CALL: usize = 1000;

/// An account to make.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewUser {
    /// 1 to 64 characters from `[A-Za-z0-9_.@-]`.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub user_id: String,
    /// 8 to 256 bytes; absent for a user who logs in only with tokens from
    /// `POST /v1/users/{user_id}/tokens`.
    #[serde(default)]
    pub password: Option<String>,
}

/// One account, or many at once.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NewUsers {
    /// Up to 1,000 accounts; each succeeds or fails on its own.
    Many {
        /// The accounts.
        users: Vec<NewUser>,
    },
    /// One account.
    One(NewUser),
}

/// An account made.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedUser {
    /// Its id.
    pub user_id: String,
}

/// What became of one account of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOutcome {
    /// The id asked for.
    pub user_id: String,
    /// Whether it was made.
    pub created: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// What became of each account of a batch, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOutcomes {
    /// One per account asked for.
    pub users: Vec<UserOutcome>,
}

/// Makes accounts: one (answered 201, or with the error's status), or up to 1,000 (answered
/// 200 with each one's outcome).
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    security(("admin_key" = [])),
    request_body = NewUsers,
    responses(
        (status = 201, description = "The account was made", body = CreatedUser),
        (status = 200, description = "Each account's outcome, in order", body = UserOutcomes),
        (status = 400, description = "An invalid id or password, or too many at once", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
    )
)]
pub(crate) async fn create_users(
    _: Admin,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewUsers>,
) -> Result<Response, ApiError> {
    match new {
        NewUsers::One(u) => {
            let user = api
                .api
                .services()
                .accounts
                .create_user(&u.user_id, u.password.as_deref())
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedUser {
                    user_id: user.to_string(),
                }),
            )
                .into_response())
        }
        NewUsers::Many { users } => {
            if users.len() > MAX_USERS_PER_CALL {
                return Err(ApiError::new(
                    tern_proto::ErrorCode::InvalidArgument,
                    format!("at most {MAX_USERS_PER_CALL} users per call"),
                ));
            }
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                let result = api
                    .api
                    .services()
                    .accounts
                    .create_user(&u.user_id, u.password.as_deref())
                    .await;
                out.push(match result {
                    Ok(_) => UserOutcome {
                        user_id: u.user_id,
                        created: true,
                        error: None,
                    },
                    Err(e) => UserOutcome {
                        user_id: u.user_id,
                        created: false,
                        error: Some(ApiError::from(e).body()),
                    },
                });
            }
            Ok(Json(UserOutcomes { users: out }).into_response())
        }
    }
}

/// A device to hand a token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewToken {
    /// 1 to 64 characters from `[A-Za-z0-9_.:-]`.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub device_id: String,
    /// `ios`, `android`, `web`, `desktop` or `cli` (the kick policy works per platform);
    /// anything else counts as unspecified.
    #[serde(default)]
    pub platform: Option<String>,
}

/// A device's token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedToken {
    /// Whose.
    pub user_id: String,
    /// For which device.
    pub device_id: String,
    /// The token: the device logs in with it (LOGIN with a token credential).
    pub token: String,
    /// When it stops working (Unix ms).
    pub expires_at_ms: i64,
}

/// Hands a device a token without its password (the app-server login flow): the device's
/// previous token stops working.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/tokens",
    tag = "users",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "Whose device")),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token", body = IssuedToken),
        (status = 400, description = "An invalid device id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn issue_token(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiJson(new): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let platform = Platform::from_name(new.platform.as_deref().unwrap_or(""));
    let login = api
        .api
        .services()
        .accounts
        .issue_token(&user_id, &new.device_id, platform)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            user_id: login.user.to_string(),
            device_id: login.device.to_string(),
            token: login.token,
            expires_at_ms: login.expires_ms,
        }),
    )
        .into_response())
}
