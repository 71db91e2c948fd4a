//! The storage traits the services own, and the records that cross them.
//!
//! The traits are async and batched, and mention no backend type, so the embedded SQLite
//! backend and a PostgreSQL + Redis backend implement the same contract (and pass the same
//! conformance suite). Writes that must be ordered (message appends) arrive as batches from a
//! single pipeline; a backend commits each batch atomically and durably before it returns.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Refusal, StoreError,
    content::Content,
    groups::{GroupChangeRequest, GroupSettings, GroupState, Member, Members, NewGroup},
    ids::{ConversationId, DeviceId, GroupId, MessageId, Platform, UserId},
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
    /// What it says now: the edited content after an edit, empty after a recall.
    pub content: Content,
    /// Who recalled it, if it was recalled.
    pub recalled_by: Option<UserId>,
    /// When it was last edited (Unix ms), 0 if never.
    pub edited_ms: i64,
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
    pub content: Content,
    /// Who gets it.
    pub audience: Audience,
}

/// Who a new message reaches.
#[derive(Debug, Clone)]
pub enum Audience {
    /// Users whose inbox gets an entry, sender first, each once. All must exist.
    Direct(Vec<UserId>),
    /// A group's members, resolved when the message takes its seq: the store checks the send
    /// with [`crate::groups::check_send`] and spreads it with [`crate::groups::diffusion`].
    Group {
        /// The group (its timeline is the message's conversation).
        group: GroupId,
        /// The write-diffusion threshold.
        write_diffusion_max: usize,
    },
}

/// One write of a batch. Every write of a batch is committed in order, in one transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Append a message.
    Message(NewMessage),
    /// Create a group and record its creation event (seq 1 of its timeline).
    CreateGroup(NewGroup),
    /// Decide a change with [`crate::groups::decide`] against the group's state at this point
    /// of the batch, apply it, and record its event.
    ChangeGroup(GroupChangeRequest),
    /// Raise a read mark and record a `ReadMark` notice.
    MarkRead(MarkRead),
    /// Recall or edit a message and record the event in its conversation.
    Amend(Amend),
    /// Change a conversation's list flags and record a `ConversationFlags` notice.
    SetFlags(SetFlags),
    /// Change a profile, a friendship or a block, decided in the writer, and record notices.
    Social(crate::social::SocialWrite),
}

/// A read mark to raise.
#[derive(Debug, Clone)]
pub struct MarkRead {
    /// The reader.
    pub user: UserId,
    /// A conversation the reader takes part in (a group: as a current member).
    pub conversation: ConversationId,
    /// Read up to here (clamped to the conversation's head); 0 means the head.
    pub seq: u64,
    /// When.
    pub now_ms: i64,
}

/// What an amendment does to a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Amendment {
    /// Withdraw it.
    Recall,
    /// Replace its content with this (validated) content.
    Edit(Content),
}

/// A recall or an edit, decided by [`crate::conversations::decide_amend`] in the writer.
#[derive(Debug, Clone)]
pub struct Amend {
    /// Who asks.
    pub actor: UserId,
    /// The message.
    pub message: MessageId,
    /// What to do.
    pub change: Amendment,
    /// When.
    pub now_ms: i64,
    /// How long after a message was sent it may be recalled or edited.
    pub window_ms: i64,
    /// The write-diffusion threshold, for an event in a group.
    pub write_diffusion_max: usize,
}

/// New list flags for one user's conversation; `None` keeps a flag.
#[derive(Debug, Clone)]
pub struct SetFlags {
    /// Whose list.
    pub user: UserId,
    /// A conversation the user takes part in.
    pub conversation: ConversationId,
    /// Pinned to the top of the list.
    pub pinned: Option<bool>,
    /// Not counted in the total unread.
    pub muted: Option<bool>,
    /// When.
    pub now_ms: i64,
}

/// A message (or group event) stored by a batch.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The stored message.
    pub message: Arc<StoredMessage>,
    /// `(user, inbox seq)` for each inbox that got an entry, sender first when it got one.
    pub inbox_seqs: Vec<(UserId, u64)>,
    /// For a read-diffusion group message: the members at the moment it took its seq, to be
    /// pushed the message (those in `inbox_seqs` get their entry instead).
    pub push_members: Option<Arc<Members>>,
}

/// What happened to one write of an appended batch.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// Stored; the inbox entries were written in the order the audience gave.
    Stored(Stored),
    /// `(sender, client_msg_id)` was stored before; nothing new was written.
    Duplicate(Arc<StoredMessage>),
    /// One of the inbox users does not exist; nothing was written for this message.
    UnknownUser(UserId),
    /// A rule refused the write; nothing was written for it.
    Refused(Refusal),
    /// A [`Write::MarkRead`]: the reader's mark afterwards (never lower than before), and the
    /// `ReadMark` notice when the mark moved.
    ReadMark {
        /// The conversation.
        conversation: ConversationId,
        /// The read mark after the write.
        mark: u64,
        /// The notice recorded (`None`: the mark was already there).
        notice: Option<Stored>,
    },
    /// A [`Write::Amend`]: the recall or edit event recorded in the message's conversation.
    Amended {
        /// The message's conversation.
        conversation: ConversationId,
        /// The event (`None`: the amendment changed nothing, a second recall say).
        event: Option<Stored>,
    },
    /// A [`Write::SetFlags`]: the `ConversationFlags` notice when the flags changed.
    Flags {
        /// The conversation.
        conversation: ConversationId,
        /// The notice recorded (`None`: the flags already were so).
        notice: Option<Stored>,
    },
    /// A [`Write::Social`]: whether the actor and the other user are friends afterwards, and
    /// the notice recorded.
    Social {
        /// The actor's notice timeline, where the notice goes.
        conversation: ConversationId,
        /// Friends after the write.
        friends: bool,
        /// The notice recorded (`None`: the change changed nothing).
        notice: Option<Stored>,
    },
    /// A group was created or changed (or the change changed nothing: `event` is `None`).
    Group {
        /// The group after the write.
        state: GroupState,
        /// Its timeline head after the write.
        head_seq: u64,
        /// The event recorded.
        event: Option<Stored>,
    },
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

/// The commit contract: the one way anything enters a conversation's timeline or a user's
/// inbox (messages, group changes and their events, read marks, amendments, flags, people
/// changes).
///
/// `commit` takes an ordered batch and commits it atomically and durably: when it returns `Ok`,
/// every write of the batch is stored and will survive a crash (per the backend's durability
/// setting), and no reader has seen any of it before all of it was. Writes of a batch apply in
/// order, each seeing the effects of the ones before it. Each write is decided against the state
/// at its point of the commit order (deduplication by `(sender, client_msg_id)`, the group
/// rules, blocks and policies, read marks), then gets the next id, the next seq of its
/// conversation, and the next seq of every inbox it enters.
///
/// Isolation. Seqs are gapless and never reused, per conversation and per inbox, across
/// crashes. Everything that reads or changes one conversation's timeline, one group's state, or
/// one user's inbox, social state or conversation state is serialized: two commits touching the
/// same conversation, group or inbox appear to run one after the other, and seqs follow that
/// order. Commits touching disjoint conversations, groups and inboxes may run concurrently (a
/// backend with several writers, or several nodes over one database), provided each sees the
/// heads and state its serialization order implies. A batch that fails stores nothing: the
/// caller may retry it whole (see [`StoreError::is_retryable`]); deduplication makes a retried
/// message a duplicate of itself, never a second copy.
#[async_trait]
pub trait CommitStore: Send + Sync + std::fmt::Debug + 'static {
    /// Commits `batch` as described on the trait; one outcome per write, in order.
    async fn commit(&self, batch: Vec<Write>) -> Result<Vec<AppendOutcome>, StoreError>;
}

/// Conversation timelines, as history reads them.
#[async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug + 'static {
    /// A page of a conversation, `limit` messages at most, amended (recalls and edits applied).
    async fn history(
        &self,
        conversation: &ConversationId,
        anchor_seq: u64,
        direction: Direction,
        limit: u32,
    ) -> Result<HistoryPage, StoreError>;
}

/// Inboxes and device cursors, as sync reads them.
#[async_trait]
pub trait InboxStore: Send + Sync + std::fmt::Debug + 'static {
    /// The entries of `user`'s inbox after `after`, `limit` at most, and the inbox head. Every
    /// committed entry up to the head is included (no reader sees seq N+1 before N).
    async fn read_inbox(
        &self,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError>;

    /// The newest seq of `user`'s inbox (0 when empty); never lower than an earlier answer.
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

/// An admin API key as stored: its public id and the hash of the key, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKeyRecord {
    /// The key's public id (part of the key, shown in lists and used to revoke it).
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// SHA-256 of the whole key, hex.
    pub hash: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_ms: Option<i64>,
}

/// Where admin API keys are kept.
#[async_trait]
pub trait AdminKeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new key; `false` (nothing stored) when its id or hash is taken.
    async fn create_admin_key(&self, key: &AdminKeyRecord) -> Result<bool, StoreError>;
    /// Every key, revoked ones included, oldest first.
    async fn admin_keys(&self) -> Result<Vec<AdminKeyRecord>, StoreError>;
    /// The key whose hash is `hash`, revoked or not.
    async fn admin_key_by_hash(&self, hash: &str) -> Result<Option<AdminKeyRecord>, StoreError>;
    /// Revokes key `id` at `at_ms`; `false` when there is no such key or it was revoked.
    async fn revoke_admin_key(&self, id: &str, at_ms: i64) -> Result<bool, StoreError>;
}

/// Settings operators change while Tern runs (the content filter's words, webhooks, observer
/// grants): kept in the store so that a restart keeps them and every node of a cluster reads
/// the same ones. Values are opaque text to the store; each setting's owner in core parses it.
#[async_trait]
pub trait SettingsStore: Send + Sync + std::fmt::Debug + 'static {
    /// Sets `name` to `value`, or removes it (`None`).
    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<(), StoreError>;
    /// Every setting whose name starts with `prefix`, ordered by name.
    async fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// A number that changes with every [`SettingsStore::put_setting`] (whatever order
    /// concurrent ones commit in), so that a node can tell cheaply whether to read them again.
    async fn settings_fingerprint(&self) -> Result<i64, StoreError>;
    /// Sets `name` to `value` unless it has a value already, in one step; answers the value
    /// in force, so that nodes starting together agree on one (a generated key, say).
    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
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

    /// The account of `user`, if it exists.
    async fn user_record(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError>;

    /// Disables `user` from `at_ms` on (`Some`), or enables it (`None`); `false` when there is
    /// no such user.
    async fn set_disabled(&self, user: &UserId, at_ms: Option<i64>) -> Result<bool, StoreError>;

    /// Revokes the tokens of `user`'s `device`, or of every device; how many.
    async fn revoke_device_tokens(
        &self,
        user: &UserId,
        device: Option<&DeviceId>,
    ) -> Result<u64, StoreError>;
}

/// An account as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Whose.
    pub user: UserId,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// Whether it can log in with a password (users made without one log in with tokens).
    pub has_password: bool,
    /// Since when it is disabled (Unix ms), if it is.
    pub disabled_ms: Option<i64>,
}

/// A group as stored, without its members.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    /// The group.
    pub id: GroupId,
    /// Its settings.
    pub settings: GroupSettings,
    /// How many members it has.
    pub member_count: usize,
    /// The newest seq of its timeline.
    pub head_seq: u64,
}

/// Groups as readers see them (groups are written through [`CommitStore::commit`], in the
/// same serialization as their messages).
#[async_trait]
pub trait GroupStore: Send + Sync + std::fmt::Debug + 'static {
    /// The group and `user`'s membership in it, if the group exists. The head is read before
    /// the membership, so a member was a member for every seq up to the head.
    async fn group(
        &self,
        id: GroupId,
        user: &UserId,
    ) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError>;

    /// Up to `limit` members with ids greater than `after`, ordered by id.
    async fn group_members(
        &self,
        id: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, Member)>, StoreError>;

    /// The last membership of `user` in the group if `user` left it or was removed (and is not
    /// a member again): `(joined_seq, left_seq)`, the seq of the event that added it and of the
    /// one that removed it.
    async fn departure(&self, id: GroupId, user: &UserId)
    -> Result<Option<(u64, u64)>, StoreError>;

    /// Every group `user` is a member of, with the membership, ordered by group id.
    async fn groups_of(&self, user: &UserId) -> Result<Vec<(GroupRecord, Member)>, StoreError>;
}

/// Where an unread count stops: beyond it a client shows "10000+" anyway, and counting a
/// backlog of millions would cost a scan per conversation listed.
pub const MAX_UNREAD_COUNTED: u64 = 10_000;

/// One conversation of a user's list, as asked of [`ConversationStore::summaries`].
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryQuery {
    /// The conversation.
    pub conversation: ConversationId,
    /// The other user of a one-to-one conversation, whose read mark is reported too.
    pub peer: Option<UserId>,
    /// Seqs up to here are never unread (a group member's history before it joined).
    pub floor: u64,
}

/// A conversation as one user's list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its newest seq.
    pub max_seq: u64,
    /// The user's read mark.
    pub read_seq: u64,
    /// Messages from others after `max(read_seq, floor)`: neither events nor recalled; at most
    /// [`MAX_UNREAD_COUNTED`].
    pub unread: u64,
    /// The newest entry, amended.
    pub last: Option<StoredMessage>,
    /// Pinned by the user.
    pub pinned: bool,
    /// Muted by the user.
    pub muted: bool,
    /// The peer's read mark (one-to-one only).
    pub peer_read_seq: u64,
}

/// Per-user conversation state as readers see it (written through [`CommitStore::commit`]).
#[async_trait]
pub trait ConversationStore: Send + Sync + std::fmt::Debug + 'static {
    /// Every one-to-one conversation with a message that `user` sent or received.
    async fn direct_conversations(&self, user: &UserId) -> Result<Vec<ConversationId>, StoreError>;

    /// The summary of each wanted conversation for `user`, in the same order.
    async fn summaries(
        &self,
        user: &UserId,
        wanted: Vec<SummaryQuery>,
    ) -> Result<Vec<ConversationSummary>, StoreError>;

    /// The read mark of each of `users` in `conversation`, in the same order (0 when none).
    async fn read_marks(
        &self,
        conversation: &ConversationId,
        users: Vec<UserId>,
    ) -> Result<Vec<u64>, StoreError>;
}
