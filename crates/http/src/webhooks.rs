//! Webhooks for operators: which are in force, adding and removing them, the deliveries given
//! up on (dead letters), and replaying one of them.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use tern_core::{
    settings::{Source, WebhookEntry},
    webhooks::QueuedEvent,
};
use utoipa::{IntoParams, ToSchema};

use crate::{Admin, ApiError, ApiJson, ErrorBody, HttpApi};

/// A webhook in force (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookInfo {
    /// Its unique name.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// `file` (the configuration file; changed there) or `api`.
    pub source: SourceName,
    /// When it was added through the API (Unix ms; 0 for the file's).
    pub created_ms: i64,
}

/// Where a setting comes from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceName {
    /// The configuration file.
    File,
    /// The HTTP API.
    Api,
}

impl From<Source> for SourceName {
    fn from(s: Source) -> Self {
        match s {
            Source::File => SourceName::File,
            Source::Api => SourceName::Api,
        }
    }
}

impl From<WebhookEntry> for WebhookInfo {
    fn from(e: WebhookEntry) -> Self {
        WebhookInfo {
            name: e.hook.name,
            url: e.hook.url,
            events: e
                .hook
                .events
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            source: e.source.into(),
            created_ms: e.created_ms,
        }
    }
}

/// A webhook to add or replace.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: an `http://` or `https://` address.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// The signing secret (`whsec_` and base64, or any text); absent: one is made.
    #[serde(default)]
    pub secret: Option<String>,
    /// The events it gets (names such as `message.created`, or `*` for all).
    #[schema(min_items = 1)]
    pub events: Vec<String>,
}

/// A webhook added: the only answer that shows its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    /// The secret requests are signed with.
    pub secret: String,
}

/// Adds a webhook on every node, or replaces one added through the API under this name (its
/// queued events then go to the new address).
#[utoipa::path(
    put,
    path = "/v1/webhooks/{name}",
    tag = "webhooks",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "1 to 64 letters, digits, '_', '.' or '-' (not `dead-letters`, the list's path)")),
    request_body = NewWebhook,
    responses(
        (status = 200, description = "In force on this node now, on the others within `settings_poll_ms`", body = CreatedWebhook),
        (status = 400, description = "A bad name, URL, secret or event", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The configuration file has a webhook of this name", body = ErrorBody),
    )
)]
pub(crate) async fn put(
    _: Admin,
    State(api): State<HttpApi>,
    Path(name): Path<String>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> Result<Json<CreatedWebhook>, ApiError> {
    let (entry, secret) = api
        .settings
        .put_webhook(&name, &new.url, new.secret.as_deref(), &new.events)
        .await?;
    Ok(Json(CreatedWebhook {
        webhook: entry.into(),
        secret,
    }))
}

/// Removes a webhook added through the API, on every node. Its queued events are retried until
/// they become dead letters (replayable if a webhook of this name is added again).
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{name}",
    tag = "webhooks",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "No webhook added through the API has this name", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The webhook is the configuration file's", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
    _: Admin,
    State(api): State<HttpApi>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.settings.remove_webhook(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The webhooks in force and the deliveries waiting.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookList {
    /// The webhooks, as configured.
    pub webhooks: Vec<WebhookInfo>,
    /// Deliveries waiting for a (further) attempt, over all webhooks.
    pub backlog: u64,
}

/// Lists the webhooks in force and the size of the backlog.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _: Admin,
    State(api): State<HttpApi>,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = api
        .settings
        .webhooks()
        .into_iter()
        .map(WebhookInfo::from)
        .collect();
    Ok(Json(WebhookList {
        webhooks,
        backlog: api.webhooks.backlog().await?,
    }))
}

/// A page of dead letters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only dead letters with a greater seq (the previous page's `next_after`).
    #[serde(default)]
    pub after: u64,
    /// At most this many (1 to 1000, default 100).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// A delivery given up on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetter {
    /// Its position in the outbox; what replaying names.
    pub seq: u64,
    /// The webhook it was for.
    pub webhook: String,
    /// The event's id (the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// When the event happened (Unix ms).
    pub created_ms: i64,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: String,
    /// The body that was sent.
    pub body: serde_json::Value,
}

impl From<QueuedEvent> for DeadLetter {
    fn from(e: QueuedEvent) -> Self {
        DeadLetter {
            seq: e.seq,
            webhook: e.webhook,
            event_type: e.kind,
            created_ms: e.created_ms,
            attempts: e.attempts,
            last_error: e.last_error,
            body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::String(e.body)),
            event_id: e.event_id,
        }
    }
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Lists deliveries given up on after too many failures, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/dead-letters",
    tag = "webhooks",
    security(("admin_key" = [])),
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn dead_letters(
    _: Admin,
    State(api): State<HttpApi>,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(tern_proto::ErrorCode::InvalidArgument, e.body_text()))?;
    let limit = q.limit.clamp(1, 1000);
    let page = api.webhooks.dead_letters(q.after, limit).await?;
    let next_after = (page.len() == limit as usize)
        .then(|| page.last().map(|e| e.seq))
        .flatten();
    Ok(Json(DeadLetterPage {
        dead_letters: page.into_iter().map(DeadLetter::from).collect(),
        next_after,
    }))
}

/// Queues a dead letter again, due at once, its attempts reset.
#[utoipa::path(
    post,
    path = "/v1/webhooks/dead-letters/{seq}/replay",
    tag = "webhooks",
    security(("admin_key" = [])),
    params(("seq" = u64, Path, description = "The dead letter's seq")),
    responses(
        (status = 202, description = "Queued again"),
        (status = 400, description = "No dead letter has this seq", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn replay(
    _: Admin,
    State(api): State<HttpApi>,
    seq: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(seq) =
        seq.map_err(|e| ApiError::new(tern_proto::ErrorCode::InvalidArgument, e.body_text()))?;
    api.webhooks.replay(seq).await?;
    Ok(StatusCode::ACCEPTED)
}
