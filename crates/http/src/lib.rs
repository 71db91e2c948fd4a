//! The HTTP API for an app's own backend: JSON under `/v1`, authenticated with admin API keys
//! (`Authorization: Bearer KEY`), every failure in one shape with the binary protocol's codes,
//! and an OpenAPI 3.1 document generated from the handlers at `/v1/openapi.json`.
//!
//! It is a front door like the binary protocol: it maps JSON to domain calls on the same
//! services and says nothing of its own about the rules.

pub mod error;
mod files;
mod groups;
mod messages;
mod people;
mod presence;
mod push;
mod search;
mod settings;
mod users;
mod webhooks;

use axum::{
    Json, Router,
    extract::{FromRequest, FromRequestParts, Path, Request, State, rejection::JsonRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tern_core::{admin::AdminKeys, store::AdminKeyRecord};
use tern_proto::ErrorCode;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::{ApiError, ErrorBody};
pub use files::if_none_match;

/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Requests each admin key may make: a sustained rate and a burst.
pub type KeyLimiter = governor::DefaultKeyedRateLimiter<String>;

/// A limiter of `per_second` requests per key (bursts of as many), or none for 0.
pub fn key_limiter(per_second: u32) -> Option<std::sync::Arc<KeyLimiter>> {
    std::num::NonZeroU32::new(per_second)
        .map(|n| std::sync::Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(n))))
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpApi {
    /// The admin keys requests authenticate with.
    pub admin_keys: AdminKeys,
    /// Requests per key (none: unlimited).
    pub limiter: Option<std::sync::Arc<KeyLimiter>>,
    /// The handlers and services the binary protocol uses too.
    pub api: tern_api::Api,
    /// The webhooks in force and their outbox.
    pub webhooks: tern_core::webhooks::WebhookAdmin,
    /// Accounts as administrators see them.
    pub users: tern_core::accounts::UserAdmin,
    /// Who sends the messages a request names no sender for.
    pub system_user: tern_core::UserId,
    /// Who is connected, here and on the other nodes.
    pub presence: std::sync::Arc<tern_gateway::presence::Presence>,
    /// Settings changed at run time: the content filter, webhooks, observers.
    pub settings: std::sync::Arc<tern_core::settings::LiveSettings>,
    /// Uploads and downloads.
    pub files: tern_core::files::FileService,
    /// The VAPID public key browsers subscribe with, when Web Push is configured.
    pub vapid_public_key: Option<String>,
}

impl HttpApi {
    /// The existing user `id` names: `UNKNOWN_USER` when there is none.
    pub(crate) async fn existing_user(&self, id: &str) -> Result<tern_core::UserId, ApiError> {
        self.users.get(id).await?;
        Ok(tern_core::UserId::parse(id)?)
    }
}

/// The document's header; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tern HTTP API",
        description = "Drive Tern from an app's own backend. Every request carries an admin key as `Authorization: Bearer KEY`; every failure answers `{\"code\", \"name\", \"message\"}` with the binary protocol's stable codes."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct Document;

/// Declares the bearer scheme the paths refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and its OpenAPI document.
fn parts(api: HttpApi) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = api_routes().split_for_parts();
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api);
    (router, doc)
}

/// The API as a router to merge into the HTTP listener's, `/v1/openapi.json` included.
pub fn router(api: HttpApi) -> Router {
    let (router, doc) = parts(api);
    let doc = std::sync::Arc::new(doc);
    router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        // Paths under /v1 and methods nobody serves answer in the API's error shape too. Routes
        // rather than a fallback: the API owns /v1 only, so the listener that merges this router
        // keeps its own fallback (the web client's files) for every other path.
        .route("/v1", axum::routing::any(no_such_endpoint))
        .route("/v1/{*rest}", axum::routing::any(no_such_endpoint))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn no_such_endpoint(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidArgument,
        format!(
            "there is no endpoint {method} {}; the API is described at /v1/openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        format!("{} does not take {method}", uri.path()),
    )
}

/// The OpenAPI document alone (for tools that want it without a server).
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts_doc()
}

fn parts_doc() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// Every endpoint, with its part of the document: one list for the router and the document.
fn api_routes() -> OpenApiRouter<HttpApi> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(users::create_users))
        .routes(routes!(users::issue_token, users::revoke_all_tokens))
        .routes(routes!(users::get_user, users::update_user))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::enable_user))
        .routes(routes!(users::revoke_device_tokens))
        .routes(routes!(messages::send))
        .routes(routes!(messages::history))
        .routes(routes!(messages::recall))
        .routes(routes!(search::as_user))
        .routes(routes!(search::everywhere))
        .routes(routes!(presence::online))
        .routes(routes!(people::conversations))
        .routes(routes!(people::friends, people::add_friend))
        .routes(routes!(people::remove_friend))
        .routes(routes!(people::blocked))
        .routes(routes!(people::block, people::unblock))
        .routes(routes!(groups::create))
        .routes(routes!(groups::get, groups::update))
        .routes(routes!(groups::dissolve))
        .routes(routes!(groups::members, groups::add_members))
        .routes(routes!(groups::remove_member))
        .routes(routes!(groups::set_role))
        .routes(routes!(groups::mute))
        .routes(routes!(groups::of_user))
        .routes(routes!(webhooks::list))
        .routes(routes!(webhooks::put, webhooks::remove))
        .routes(routes!(
            settings::filter,
            settings::set_filter,
            settings::clear_filter
        ))
        .routes(routes!(settings::observers))
        .routes(routes!(settings::grant_observer, settings::revoke_observer))
        .routes(routes!(webhooks::dead_letters))
        .routes(routes!(webhooks::replay))
        .routes(routes!(files::upload))
        .routes(routes!(files::download))
        .routes(routes!(files::link))
        .routes(routes!(push::register, push::unregister))
        .routes(routes!(push::devices))
        .routes(routes!(push::vapid))
}

/// The client's address, which the listener puts in each request's extensions: failed user
/// tokens are counted per address, as failed token logins are.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The bearer credential of a request.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::AuthFailed,
                "an admin key or a user token is required: Authorization: Bearer KEY",
            )
        })
}

/// Holds requests to the caller's rate (`who` names the key or user).
fn limit(api: &HttpApi, who: &str) -> Result<(), ApiError> {
    if let Some(limiter) = &api.limiter
        && let Err(not_until) = limiter.check_key(&who.to_owned())
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(tern_core::ServiceError::RateLimited {
            what: "requests with this credential",
            retry_after: wait.max(std::time::Duration::from_millis(1)),
        }
        .into());
    }
    Ok(())
}

async fn admin_of(api: &HttpApi, key: &str) -> Result<AdminKeyRecord, ApiError> {
    let admin = api
        .admin_keys
        .verify(key)
        .await
        .map_err(|_| ApiError::new(ErrorCode::AuthFailed, "the key is unknown or revoked"))?;
    limit(api, &admin.id)?;
    Ok(admin)
}

/// A request authenticated with a live admin key: the endpoints only an app's backend may
/// call. A user's token is refused here like a wrong key.
#[derive(Debug, Clone)]
pub struct Admin(pub AdminKeyRecord);

impl FromRequestParts<HttpApi> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &HttpApi) -> Result<Self, ApiError> {
        Ok(Admin(admin_of(api, bearer(parts)?).await?))
    }
}

/// Who a request acts for: the app's backend (an admin key) or one user (a token one of its
/// devices was issued, by LOGIN or by `POST /v1/users/{user_id}/tokens`). For the endpoints
/// a user may call about themself.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An admin key: acts for any user.
    Admin(AdminKeyRecord),
    /// A user's token: acts for that user only, and was issued to one of its devices.
    User(tern_core::UserId, tern_core::DeviceId),
}

impl Caller {
    /// Refuses a user acting for another user; an admin key acts for anyone.
    pub fn may_act_for(&self, user: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin(_) => Ok(()),
            Caller::User(me, _) if me.as_str() == user => Ok(()),
            Caller::User(..) => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "a user's token acts for that user only",
            )),
        }
    }

    /// The existing user `id` names, when this caller may act for it.
    pub(crate) async fn acting_for(
        &self,
        api: &HttpApi,
        id: &str,
    ) -> Result<tern_core::UserId, ApiError> {
        self.may_act_for(id)?;
        api.existing_user(id).await
    }

    /// Refuses a user's token acting for another device than its own (a device's push
    /// registration is that device's business); an admin key acts for any.
    pub fn may_act_for_device(&self, device: &str) -> Result<(), ApiError> {
        match self {
            Caller::User(_, own) if own.as_str() != device => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "a user's token acts for its own device only",
            )),
            _ => Ok(()),
        }
    }

    /// The user a token authenticates (none for an admin key).
    pub fn user(&self) -> Option<&tern_core::UserId> {
        match self {
            Caller::Admin(_) => None,
            Caller::User(u, _) => Some(u),
        }
    }
}

impl FromRequestParts<HttpApi> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &HttpApi) -> Result<Self, ApiError> {
        let credential = bearer(parts)?;
        if credential.starts_with(tern_core::admin::KEY_PREFIX) {
            return Ok(Caller::Admin(admin_of(api, credential).await?));
        }
        let source = parts
            .extensions
            .get::<ClientAddr>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.0.ip());
        let (user, device) = api
            .api
            .services()
            .accounts
            .authenticate(credential, source)
            .await
            .map_err(|e| match e {
                tern_core::ServiceError::TokenInvalid => ApiError::new(
                    ErrorCode::AuthFailed,
                    "the credential is not a live admin key or user token",
                ),
                other => other.into(),
            })?;
        limit(api, &format!("user:{user}"))?;
        Ok(Caller::User(user, device))
    }
}

/// A JSON body; a body that does not parse is refused in the API's error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::new(
                ErrorCode::FrameTooLarge,
                format!("the body cannot be read: {e}"),
            )),
            Err(e) => Err(ApiError::new(ErrorCode::InvalidArgument, e.body_text())),
        }
    }
}

/// A query string; one that does not parse is refused in the API's error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))
    }
}

/// An admin key as lists show it: never the key itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    /// The key's public id.
    pub id: String,
    /// What it was called.
    pub name: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_ms: Option<i64>,
}

impl From<AdminKeyRecord> for KeyInfo {
    fn from(k: AdminKeyRecord) -> Self {
        KeyInfo {
            id: k.id,
            name: k.name,
            created_ms: k.created_ms,
            revoked_ms: k.revoked_ms,
        }
    }
}

/// Every admin key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyList {
    /// Oldest first, revoked ones included.
    pub keys: Vec<KeyInfo>,
}

/// A key to make.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewKey {
    /// What to call it: 1 to 64 printable characters.
    #[schema(min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    pub name: String,
}

/// A key just made: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key's public id.
    pub id: String,
    /// What it is called.
    pub name: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// The key: send it as `Authorization: Bearer KEY`. It cannot be shown again.
    pub key: String,
}

/// Lists the admin keys.
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Every key, oldest first", body = KeyList),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
async fn list_keys(_: Admin, State(api): State<HttpApi>) -> Result<Json<KeyList>, ApiError> {
    let keys = api.admin_keys.list().await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyInfo::from).collect(),
    }))
}

/// Makes an admin key and shows it once.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    tag = "admin",
    security(("admin_key" = [])),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key, shown this once", body = CreatedKey),
        (status = 400, description = "The name is blank or too long", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
async fn create_key(
    _: Admin,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<Response, ApiError> {
    let (record, key) = api.admin_keys.create(&new.name).await?;
    let body = CreatedKey {
        id: record.id,
        name: record.name,
        created_ms: record.created_ms,
        key,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revokes an admin key: it authenticates nothing from then on (the key revoking may be
/// itself).
#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{id}",
    tag = "admin",
    security(("admin_key" = [])),
    params(("id" = String, Path, description = "The key's public id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "No live key has this id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
async fn revoke_key(
    _: Admin,
    State(api): State<HttpApi>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.admin_keys.revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
