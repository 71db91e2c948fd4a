//! Messages from an app's backend: sent as one of its users (or as the system user), to one
//! user, a group or many users at once, stored, acked and delivered exactly as a send from a
//! device would be (the same rules, the same content filter, the same deduplication by client
//! message id); a user's view of a conversation's history; recalls.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tern_core::{
    ConversationId, UserId,
    messages::{SendAck, SendInput, SendTarget},
    pb,
    store::Direction,
};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, ApiJson, Caller, ErrorBody, HttpApi};

/// The most users one send reaches with `to_users`.
pub const MAX_RECIPIENTS: usize = 1000;

/// A message to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The user it is sent as; absent: the system user (`system_user`, an account like others).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub sender: Option<String>,
    /// A one-to-one message to this user (give exactly one of `to_user`, `group_id` and
    /// `to_users`).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub to_user: Option<String>,
    /// A message to this group.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// One one-to-one message to each of these users (1 to 1,000, each once).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000)]
    pub to_users: Option<Vec<String>>,
    /// The sender's idempotency key (1 to 64 bytes): a retry with the same key and message is
    /// answered with the original and stores nothing. With `to_users` each recipient's message
    /// gets a key derived from it and the recipient, so a retry of the whole call is safe.
    #[schema(min_length = 1, max_length = 64)]
    pub client_msg_id: String,
    /// The content, in the protocol's `Content` shape (for example `{"text": {"text": "hi"}}`).
    #[schema(value_type = Object)]
    pub content: pb::Content,
}

/// A message stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SentMessage {
    /// Its id, unique across conversations.
    pub message_id: u64,
    /// Its conversation (`p:a:b` or `g:ID`).
    pub conversation_id: String,
    /// Its seq in the conversation.
    pub seq: u64,
    /// When the server accepted it (Unix ms).
    pub server_time_ms: i64,
    /// True when this answers a retry of a message stored before.
    pub duplicate: bool,
}

impl From<SendAck> for SentMessage {
    fn from(ack: SendAck) -> Self {
        let m = &ack.message;
        SentMessage {
            message_id: m.id.0,
            conversation_id: m.conversation.to_string(),
            seq: m.seq,
            server_time_ms: m.server_time_ms,
            duplicate: ack.duplicate,
        }
    }
}

/// What became of the message to one of `to_users`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivered {
    /// The recipient.
    pub to_user: String,
    /// The message, when it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<SentMessage>,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Each recipient's outcome, in the order asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SentToMany {
    /// One per recipient.
    pub results: Vec<Delivered>,
}

/// The key of the message to `to` of a send to many: the same for every retry of the call,
/// different for each recipient, and within the 64 bytes a key may have.
fn recipient_key(client_msg_id: &str, to: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{client_msg_id}\u{0}{to}").as_bytes());
    format!("m:{}", hex::encode(&digest[..24]))
}

/// Sends a message as one of the app's users (or as the system user); answers once it is
/// durable. With `to_users`, one message per recipient, each answered on its own.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    security(("admin_key" = []), ("user_token" = [])),
    request_body = NewMessage,
    responses(
        (status = 201, description = "Stored (or a retry of a message stored before)", body = SentMessage),
        (status = 200, description = "With `to_users`: each recipient's outcome", body = SentToMany),
        (status = 400, description = "No or two targets, a bad client message id, invalid content", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "The sender or the receiver does not exist, or the sender is not in the group", body = ErrorBody),
        (status = 409, description = "The client message id was used for another message", body = ErrorBody),
        (status = 413, description = "The content is larger than the server takes", body = ErrorBody),
        (status = 422, description = "Refused: the content filter, the receiver's blacklist or stranger policy, or the app's before-send hook", body = ErrorBody),
    )
)]
pub(crate) async fn send(
    caller: Caller,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewMessage>,
) -> Result<Response, ApiError> {
    let sender = match (&new.sender, caller.user()) {
        (Some(s), _) => {
            caller.may_act_for(s)?;
            UserId::parse(s)?
        }
        // A user's token sends as that user; only the app's backend sends as the system user.
        (None, Some(me)) => me.clone(),
        (None, None) => api.system_user.clone(),
    };
    if caller.user().is_some() && new.to_users.is_some() {
        return Err(ApiError::new(
            tern_proto::ErrorCode::PermissionDenied,
            "sends to many users at once take an admin key",
        ));
    }
    let content = tern_core::wire::sent_content(new.content)?;
    let messages = &api.api.services().messages;
    let target = match (new.to_user, new.group_id, new.to_users) {
        (Some(to), None, None) => SendTarget::User(to),
        (None, Some(g), None) => SendTarget::Group(g),
        (None, None, Some(users)) => {
            if users.is_empty() || users.len() > MAX_RECIPIENTS {
                return Err(ApiError::new(
                    tern_proto::ErrorCode::InvalidArgument,
                    format!("to_users names 1 to {MAX_RECIPIENTS} users"),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = users.iter().find(|u| !seen.insert(u.as_str())) {
                return Err(ApiError::new(
                    tern_proto::ErrorCode::InvalidArgument,
                    format!("to_users names {twice:?} twice"),
                ));
            }
            // Queued one after another, so they commit together; then each is awaited.
            let pending: Vec<_> = users
                .iter()
                .map(|to| {
                    messages.send(
                        &sender,
                        None,
                        SendInput {
                            target: SendTarget::User(to.clone()),
                            client_msg_id: recipient_key(&new.client_msg_id, to),
                            content: Some(content.clone()),
                        },
                    )
                })
                .collect();
            let mut results = Vec::with_capacity(users.len());
            for (to, queued) in users.into_iter().zip(pending) {
                let outcome = match queued {
                    Ok(p) => p.await,
                    Err(e) => Err(e),
                };
                results.push(match outcome {
                    Ok(ack) => Delivered {
                        to_user: to,
                        message: Some(ack.into()),
                        error: None,
                    },
                    Err(e) => Delivered {
                        to_user: to,
                        message: None,
                        error: Some(ApiError::from(e).body()),
                    },
                });
            }
            return Ok(Json(SentToMany { results }).into_response());
        }
        _ => {
            return Err(ApiError::new(
                tern_proto::ErrorCode::InvalidArgument,
                "give exactly one of to_user, group_id and to_users",
            ));
        }
    };
    let pending = messages.send(
        &sender,
        None,
        SendInput {
            target,
            client_msg_id: new.client_msg_id,
            content: Some(content),
        },
    )?;
    let ack = pending.await?;
    Ok((StatusCode::CREATED, Json(SentMessage::from(ack))).into_response())
}

/// Which way a history page goes.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HistoryDirection {
    /// Older messages: seq below the anchor (the newest when the anchor is 0).
    #[default]
    Backward,
    /// Newer messages: seq above the anchor.
    Forward,
}

/// A page of history.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The page starts next to this seq (0: the newest, going backward).
    #[serde(default)]
    pub anchor_seq: u64,
    /// `backward` (default) or `forward`.
    #[serde(default)]
    #[param(inline)]
    pub direction: HistoryDirection,
    /// At most this many messages (0: the server's default).
    #[serde(default)]
    pub limit: u32,
}

/// A stored message as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// Its id, unique across conversations.
    pub message_id: u64,
    /// Its conversation.
    pub conversation_id: String,
    /// Its seq in the conversation.
    pub seq: u64,
    /// Who sent it.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// When the server accepted it (Unix ms).
    pub server_time_ms: i64,
    /// What it says now, in the protocol's `Content` shape; absent once recalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub content: Option<pb::Content>,
    /// Who recalled it, if it was recalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recalled_by: Option<String>,
    /// When it was last edited (Unix ms; 0: never).
    pub edited_ms: i64,
}

impl From<&tern_core::store::StoredMessage> for MessageView {
    fn from(m: &tern_core::store::StoredMessage) -> Self {
        MessageView {
            message_id: m.id.0,
            conversation_id: m.conversation.to_string(),
            seq: m.seq,
            sender: m.sender.to_string(),
            client_msg_id: m.client_msg_id.clone(),
            server_time_ms: m.server_time_ms,
            content: m
                .recalled_by
                .is_none()
                .then(|| tern_core::wire::content(&m.content)),
            recalled_by: m.recalled_by.as_ref().map(UserId::to_string),
            edited_ms: m.edited_ms,
        }
    }
}

/// A page of a conversation as one of its users sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest first, recalls and edits applied.
    pub messages: Vec<MessageView>,
    /// More messages lie beyond the page in its direction.
    pub has_more: bool,
}

/// A page of a conversation's history as `user_id` sees it (a group's from the member's
/// view on), with the same rules as the protocol's HISTORY.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/conversations/{conversation_id}/messages",
    tag = "messages",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "Whose view"),
        ("conversation_id" = String, Path, description = "`p:a:b` or `g:ID`"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "A page", body = HistoryPage),
        (status = 400, description = "A bad id or query", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "The user is not in the conversation", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, conversation_id)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(tern_proto::ErrorCode::InvalidArgument, e.body_text()))?;
    caller.may_act_for(&user_id)?;
    let user = UserId::parse(&user_id)?;
    let (conversation, _) = ConversationId::parse(&conversation_id)?;
    let page = api
        .api
        .services()
        .messages
        .history(
            &user,
            &conversation,
            q.anchor_seq,
            match q.direction {
                HistoryDirection::Backward => Direction::Backward,
                HistoryDirection::Forward => Direction::Forward,
            },
            q.limit,
        )
        .await?;
    Ok(Json(HistoryPage {
        messages: page.messages.iter().map(MessageView::from).collect(),
        has_more: page.has_more,
    }))
}

/// Who recalls.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallAs {
    /// The user who recalls, under the protocol's rules: the sender within
    /// `recall_window_secs`, or a group's owner or admin.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub user_id: String,
}

/// A recall recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recalled {
    /// The message's conversation.
    pub conversation_id: String,
    /// The seq of the recall event (0 when the message was recalled already).
    pub event_seq: u64,
}

/// Recalls a message as one of the app's users: every device sees it withdrawn.
#[utoipa::path(
    post,
    path = "/v1/messages/{message_id}/recall",
    tag = "messages",
    security(("admin_key" = []), ("user_token" = [])),
    params(("message_id" = u64, Path, description = "The message")),
    request_body = RecallAs,
    responses(
        (status = 200, description = "Recalled", body = Recalled),
        (status = 400, description = "A bad id, or the window has passed", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The user may not recall it", body = ErrorBody),
        (status = 404, description = "No such message for this user", body = ErrorBody),
    )
)]
pub(crate) async fn recall(
    caller: Caller,
    State(api): State<HttpApi>,
    message_id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    ApiJson(who): ApiJson<RecallAs>,
) -> Result<Json<Recalled>, ApiError> {
    let Path(message_id) = message_id
        .map_err(|e| ApiError::new(tern_proto::ErrorCode::InvalidArgument, e.body_text()))?;
    caller.may_act_for(&who.user_id)?;
    let user = UserId::parse(&who.user_id)?;
    let done = api
        .api
        .services()
        .conversations
        .recall(&user, message_id)
        .await?;
    Ok(Json(Recalled {
        conversation_id: done.conversation.to_string(),
        event_seq: done.value,
    }))
}
