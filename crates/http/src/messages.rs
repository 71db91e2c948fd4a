//! Messages from an app's backend: sent as one of its users, stored, acked and delivered
//! exactly as a send from that user's device would be (the same rules, the same content
//! filter, the same deduplication by client message id).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tern_core::{
    UserId,
    messages::{SendInput, SendTarget},
    pb,
};
use utoipa::ToSchema;

use crate::{Admin, ApiError, ApiJson, ErrorBody, HttpApi};

/// A message to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewMessage {
    /// The user it is sent as.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub sender: String,
    /// A one-to-one message to this user (give this or `group_id`).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub to_user: Option<String>,
    /// A message to this group (give this or `to_user`).
    #[serde(default)]
    pub group_id: Option<u64>,
    /// The sender's idempotency key (1 to 64 bytes): a retry with the same key and message is
    /// answered with the original and stores nothing.
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

/// Sends a message as one of the app's users; answers once it is durable.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    security(("admin_key" = [])),
    request_body = NewMessage,
    responses(
        (status = 201, description = "Stored (or a retry of a message stored before)", body = SentMessage),
        (status = 400, description = "No or two targets, a bad client message id, invalid content", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "The sender or the receiver does not exist, or the sender is not in the group", body = ErrorBody),
        (status = 409, description = "The client message id was used for another message", body = ErrorBody),
        (status = 413, description = "The content is larger than the server takes", body = ErrorBody),
        (status = 422, description = "Refused: the content filter, the receiver's blacklist or stranger policy, or the app's before-send hook", body = ErrorBody),
    )
)]
pub(crate) async fn send(
    _: Admin,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewMessage>,
) -> Result<Response, ApiError> {
    let sender = UserId::parse(&new.sender)?;
    let target = match (new.to_user, new.group_id) {
        (Some(to), None) => SendTarget::User(to),
        (None, Some(g)) => SendTarget::Group(g),
        _ => {
            return Err(ApiError::new(
                tern_proto::ErrorCode::InvalidArgument,
                "give exactly one of to_user and group_id",
            ));
        }
    };
    let pending = api.api.services().messages.send(
        &sender,
        None,
        SendInput {
            target,
            client_msg_id: new.client_msg_id,
            content: Some(new.content),
        },
    )?;
    let ack = pending.await?;
    let m = &ack.message;
    Ok((
        StatusCode::CREATED,
        Json(SentMessage {
            message_id: m.id.0,
            conversation_id: m.conversation.to_string(),
            seq: m.seq,
            server_time_ms: m.server_time_ms,
            duplicate: ack.duplicate,
        }),
    )
        .into_response())
}
