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

use crate::{Admin, ApiError, ApiJson, Caller, ErrorBody, HttpApi};

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
        (status = 403, description = "The account is disabled", body = ErrorBody),
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

/// A profile as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileView {
    /// Display name (empty when never set).
    pub nickname: String,
    /// A file id or URL.
    pub avatar: String,
    /// A short status line.
    pub signature: String,
    /// A JSON object as text, or empty.
    pub extra: String,
    /// When it last changed (Unix ms; 0: never).
    pub updated_ms: i64,
}

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// Its id.
    pub user_id: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// Whether it can log in with a password (else only with tokens).
    pub has_password: bool,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Since when (Unix ms), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_ms: Option<i64>,
    /// Its public profile.
    pub profile: ProfileView,
}

impl From<tern_core::accounts::UserInfo> for UserView {
    fn from(u: tern_core::accounts::UserInfo) -> Self {
        UserView {
            user_id: u.record.user.to_string(),
            created_ms: u.record.created_ms,
            has_password: u.record.has_password,
            disabled: u.record.disabled_ms.is_some(),
            disabled_ms: u.record.disabled_ms,
            profile: ProfileView {
                nickname: u.profile.nickname,
                avatar: u.profile.avatar,
                signature: u.profile.signature,
                extra: u.profile.extra,
                updated_ms: u.profile.updated_ms,
            },
        }
    }
}

/// Reads an account and its profile.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "users",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "The account")),
    responses(
        (status = 200, description = "The account", body = UserView),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn get_user(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.may_act_for(&user_id)?;
    Ok(Json(api.users.get(&user_id).await?.into()))
}

/// Profile fields to change; absent fields keep their value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// Display name (at most 64 characters).
    #[serde(default)]
    pub nickname: Option<String>,
    /// A file id or URL.
    #[serde(default)]
    pub avatar: Option<String>,
    /// A short status line.
    #[serde(default)]
    pub signature: Option<String>,
    /// A JSON object as text.
    #[serde(default)]
    pub extra: Option<String>,
}

/// Changes a user's profile, as if the user did (its devices hear of it like of any change).
#[utoipa::path(
    patch,
    path = "/v1/users/{user_id}",
    tag = "users",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "The account")),
    request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The account after the change", body = UserView),
        (status = 400, description = "An invalid id or field", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn update_user(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiJson(update): ApiJson<ProfileUpdate>,
) -> Result<Json<UserView>, ApiError> {
    caller.may_act_for(&user_id)?;
    // The account first: a profile change of nobody is an error, not a new profile.
    api.users.get(&user_id).await?;
    let user = tern_core::UserId::parse(&user_id)?;
    api.api
        .services()
        .social
        .update_profile(
            &user,
            tern_core::social::ProfilePatch {
                nickname: update.nickname,
                avatar: update.avatar,
                signature: update.signature,
                extra: update.extra,
                stranger_policy: None,
            },
        )
        .await?;
    Ok(Json(api.users.get(&user_id).await?.into()))
}

/// Disables an account: its logins are refused (`USER_DISABLED`) and every device of it is
/// disconnected with a kick, on every node.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/disable",
    tag = "users",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "The account")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn disable_user(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.users.disable(&user_id).await?;
    // A disabled account's devices are told nothing more.
    let user = tern_core::UserId::parse(&user_id)?;
    api.api.services().push.unregister_all(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a disabled account log in again.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/enable",
    tag = "users",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "The account")),
    responses(
        (status = 204, description = "Enabled"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn enable_user(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.users.enable(&user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tokens revoked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Revoked {
    /// How many tokens were revoked.
    pub revoked: u64,
}

/// Logs every device of a user out: their tokens stop working and connected devices are
/// disconnected with a kick.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/tokens",
    tag = "users",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "The account")),
    responses(
        (status = 200, description = "Tokens revoked", body = Revoked),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_all_tokens(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    caller.may_act_for(&user_id)?;
    let revoked = api.users.revoke_tokens(&user_id, None).await?;
    // Devices logged out are told nothing more.
    let user = tern_core::UserId::parse(&user_id)?;
    api.api.services().push.unregister_all(&user).await?;
    Ok(Json(Revoked { revoked }))
}

/// Logs one device of a user out: its token stops working and, if connected, it is
/// disconnected with a kick.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/tokens/{device_id}",
    tag = "users",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "The account"),
        ("device_id" = String, Path, description = "The device"),
    ),
    responses(
        (status = 200, description = "Tokens revoked", body = Revoked),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_device_tokens(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, device_id)): Path<(String, String)>,
) -> Result<Json<Revoked>, ApiError> {
    caller.may_act_for(&user_id)?;
    let revoked = api.users.revoke_tokens(&user_id, Some(&device_id)).await?;
    let user = tern_core::UserId::parse(&user_id)?;
    let device = tern_core::DeviceId::parse(&device_id)?;
    api.api.services().push.unregister(&user, &device).await?;
    Ok(Json(Revoked { revoked }))
}
