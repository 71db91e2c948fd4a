//! The storage traits the services own, and the records that cross them.
//!
//! The traits are async and batched, and mention no backend type, so the embedded SQLite
//! backend and a PostgreSQL + Redis backend implement the same contract (and pass the same
//! conformance suite). Writes that must be ordered (message appends) arrive as batches from a
//! single pipeline; a backend commits each batch atomically and durably before it returns.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    StoreError,
    ids::{ConversationId, DeviceId, MessageId, Platform, UserId},
    pb,
};

/// A message as stored in its conversation's history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Server-assigned, unique across all conversations.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Its position in the conversation: strictly increasing from 1, gapless.
    pub seq: u64,
    /// Who sent it.
    pub sender: UserId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// When the server accepted it.
    pub server_time_ms: i64,
    /// The sender's inbox seq for this message (reported again when a retry is deduplicated).
    pub sender_inbox_seq: u64,
    /// What it says.
    pub content: pb::Content,
}

/// One entry of a user's inbox: the ordered stream each device follows with its cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// Strictly increasing from 1, gapless, per user.
    pub seq: u64,
    /// What happened.
    pub event: InboxEvent,
}

/// The events an inbox carries.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxEvent {
    /// A message the user sent or received; shared between the inboxes it appears in.
    Message(Arc<StoredMessage>),
}

/// A message to append: everything but what the store assigns (id and seqs).
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The conversation whose next seq the message takes.
    pub conversation: ConversationId,
    /// The sender; `(sender, client_msg_id)` is unique.
    pub sender: UserId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The server's acceptance time.
    pub server_time_ms: i64,
    /// The validated content.
    pub content: pb::Content,
    /// Users whose inbox gets an entry, sender first, each once. All must exist.
    pub inboxes: Vec<UserId>,
}

/// What happened to one message of an appended batch.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// Stored; the inbox entries were written in the order of [`NewMessage::inboxes`].
    Stored {
        /// The stored message.
        message: Arc<StoredMessage>,
        /// `(user, inbox seq)` for each inbox that got an entry.
        inbox_seqs: Vec<(UserId, u64)>,
    },
    /// `(sender, client_msg_id)` was stored before; nothing new was written.
    Duplicate(Arc<StoredMessage>),
    /// One of the inbox users does not exist; nothing was written for this message.
    UnknownUser(UserId),
}

/// Which way a history page goes from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Older messages: seq < anchor (the newest when the anchor is 0).
    Backward,
    /// Newer messages: seq > anchor.
    Forward,
}

/// A page of one conversation's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryPage {
    /// Oldest first, whatever the direction.
    pub messages: Vec<StoredMessage>,
    /// More messages exist beyond the page in the requested direction.
    pub has_more: bool,
}

/// A range of one user's inbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboxPage {
    /// In seq order, contiguous from `after + 1`.
    pub entries: Vec<InboxEntry>,
    /// The user's newest inbox seq when the page was read.
    pub head: u64,
}

/// Message history and inboxes: written by the message pipeline, read by sync and history.
#[async_trait]
pub trait MessageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends a batch atomically and durably, in order: for each message, deduplicate by
    /// `(sender, client_msg_id)`, assign the next id and conversation seq, and append an entry to
    /// each inbox. No reader sees any of the batch before all of it is durable.
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<AppendOutcome>, StoreError>;

    /// A page of a conversation, `limit` messages at most.
    async fn history(
        &self,
        conversation: &ConversationId,
        anchor_seq: u64,
        direction: Direction,
        limit: u32,
    ) -> Result<HistoryPage, StoreError>;

    /// The entries of `user`'s inbox after `after`, `limit` at most, and the inbox head.
    async fn read_inbox(
        &self,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError>;

    /// The newest seq of `user`'s inbox (0 when empty).
    async fn inbox_head(&self, user: &UserId) -> Result<u64, StoreError>;

    /// Raises a device's cursor to `seq` (never lowers it) and returns the stored cursor.
    async fn save_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        seq: u64,
    ) -> Result<u64, StoreError>;

    /// The device's cursor (0 when it never acknowledged anything).
    async fn load_cursor(&self, user: &UserId, device: &DeviceId) -> Result<u64, StoreError>;
}

/// A login token as stored: only its hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// The user it authenticates.
    pub user: UserId,
    /// The device it was issued to; it is valid for that device only.
    pub device: DeviceId,
    /// The platform of that device.
    pub platform: Platform,
    /// When it was issued.
    pub issued_ms: i64,
    /// When it stops being valid.
    pub expires_ms: i64,
}

/// Users, password hashes, devices and tokens.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a user; `false` when the id is taken.
    async fn create_user(
        &self,
        user: &UserId,
        password_hash: &str,
        created_ms: i64,
    ) -> Result<bool, StoreError>;

    /// The user's password hash (PHC string), if the user exists.
    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError>;

    /// Stores a token, replacing any earlier token of the same user and device (one token per
    /// device keeps the table bounded by the number of devices).
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// The token with this hash, if it exists and was not revoked.
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes the token with this hash; revoking an unknown token is not an error.
    async fn revoke_token(&self, hash: &str) -> Result<(), StoreError>;
}
