//! Webhooks for operators: which are in force, the deliveries given up on (dead letters), and
//! replaying one of them.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use tern_core::webhooks::QueuedEvent;
use utoipa::{IntoParams, ToSchema};

use crate::{Admin, ApiError, ErrorBody, HttpApi};

/// A webhook in force (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookInfo {
    /// Its unique name.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
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
        .webhooks
        .hooks()
        .iter()
        .map(|h| WebhookInfo {
            name: h.name.clone(),
            url: h.url.clone(),
            events: h.events.names().into_iter().map(str::to_owned).collect(),
        })
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
