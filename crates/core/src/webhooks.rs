//! Webhook events: which committed writes an app's backend hears about, the durable outbox
//! they wait in, and the rules of delivering them (signing, backoff, dead letters).
//!
//! Events are decided here, from a write and its outcome, and written by the backend in the
//! same transaction as the write itself ([`OutboxCollector`]): an acked message has its
//! `message.created` rows stored with it, so a crash loses no event. A dispatcher (in
//! `tern-hooks`) claims the head of each webhook's queue per ordering key (a conversation), so
//! events of one conversation reach a receiver in commit order, and retries a failed delivery
//! with exponential backoff until it succeeds or goes to the dead letters, from which an
//! operator replays it.

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    MessageId, StoreError, UserId,
    social::{SocialChange, SocialWrite},
    store::{AppendOutcome, Stored, Write},
};

/// What happened, as a receiver reads it in the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A message was stored (sent over either front door).
    MessageCreated,
    /// A message was recalled.
    MessageRecalled,
    /// A message was edited.
    MessageEdited,
    /// A group was created.
    GroupCreated,
    /// A group's members, roles, settings or state changed.
    GroupChanged,
    /// A friend request, answer, removal or remark.
    FriendChanged,
    /// A user's first device connected.
    UserOnline,
    /// A user's last device disconnected.
    UserOffline,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 8] = [
        EventKind::MessageCreated,
        EventKind::MessageRecalled,
        EventKind::MessageEdited,
        EventKind::GroupCreated,
        EventKind::GroupChanged,
        EventKind::FriendChanged,
        EventKind::UserOnline,
        EventKind::UserOffline,
    ];

    /// The name receivers see and configurations use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessageCreated => "message.created",
            EventKind::MessageRecalled => "message.recalled",
            EventKind::MessageEdited => "message.edited",
            EventKind::GroupCreated => "group.created",
            EventKind::GroupChanged => "group.changed",
            EventKind::FriendChanged => "friend.changed",
            EventKind::UserOnline => "user.online",
            EventKind::UserOffline => "user.offline",
        }
    }

    /// The kind of a name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << EventKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSet(u16);

impl EventSet {
    /// Every kind.
    pub fn all() -> EventSet {
        EventSet(EventKind::ALL.iter().fold(0, |m, k| m | k.bit()))
    }

    /// The set of these names; `*` stands for every kind. Fails on the first unknown name.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<EventSet, String> {
        let mut set = EventSet::default();
        for name in names {
            if name == "*" {
                set = EventSet::all();
            } else {
                let kind = EventKind::parse(name).ok_or_else(|| {
                    format!(
                        "unknown webhook event {name:?}; known: {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    )
                })?;
                set.0 |= kind.bit();
            }
        }
        Ok(set)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The names of the kinds in the set.
    pub fn names(self) -> Vec<&'static str> {
        EventKind::ALL
            .into_iter()
            .filter(|k| self.contains(*k))
            .map(EventKind::as_str)
            .collect()
    }
}

/// One event, before it is queued for each webhook that wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable and unique: a receiver deduplicates by it (the `webhook-id` header).
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// Events with one key are delivered in the order they were stored (a conversation; a user
    /// for presence).
    pub key: String,
    /// When it happened (Unix ms).
    pub time_ms: i64,
    /// What the receiver gets: `{"id", "type", "timestamp_ms", "data"}`.
    pub body: String,
}

impl Event {
    fn new(id: String, kind: EventKind, key: String, time_ms: i64, data: Value) -> Event {
        let body = json!({
            "id": id,
            "type": kind.as_str(),
            "timestamp_ms": time_ms,
            "data": data,
        })
        .to_string();
        Event {
            id,
            kind,
            key,
            time_ms,
            body,
        }
    }

    /// `user.online` or `user.offline` for `user` at `time_ms`, with a fresh id.
    pub fn presence(user: &UserId, online: bool, time_ms: i64) -> Event {
        let kind = if online {
            EventKind::UserOnline
        } else {
            EventKind::UserOffline
        };
        Event::new(
            format!("evt_p{:016x}", rand::random::<u64>()),
            kind,
            format!("u:{user}"),
            time_ms,
            json!({ "user_id": user.as_str() }),
        )
    }
}

/// What a write is, as far as events go: read from the write before the backend consumes it.
#[derive(Debug, Clone)]
pub enum Hint {
    /// A write no webhook hears about (read marks, flags, profiles, blocks).
    Nothing,
    /// A message.
    Message,
    /// A recall of this message.
    Recall(MessageId),
    /// An edit of this message.
    Edit(MessageId),
    /// A group's creation.
    GroupCreated,
    /// A group's change.
    GroupChanged,
    /// A friendship change with `other`: `change` says which.
    Friend {
        /// The other user.
        other: UserId,
        /// `request`, `accept`, `decline`, `delete` or `remark`.
        change: &'static str,
    },
}

impl Hint {
    /// What `write` is.
    pub fn of(write: &Write) -> Hint {
        match write {
            Write::Message(_) => Hint::Message,
            Write::CreateGroup(_) => Hint::GroupCreated,
            Write::ChangeGroup(_) => Hint::GroupChanged,
            Write::Amend(a) => match a.change {
                crate::store::Amendment::Recall => Hint::Recall(a.message),
                crate::store::Amendment::Edit(_) => Hint::Edit(a.message),
            },
            Write::Social(SocialWrite { change, .. }) => match change {
                SocialChange::FriendRequest { to, .. } => Hint::Friend {
                    other: to.clone(),
                    change: "request",
                },
                SocialChange::FriendRespond { from, accept } => Hint::Friend {
                    other: from.clone(),
                    change: if *accept { "accept" } else { "decline" },
                },
                SocialChange::FriendDelete(other) => Hint::Friend {
                    other: other.clone(),
                    change: "delete",
                },
                SocialChange::FriendRemark { friend, .. } => Hint::Friend {
                    other: friend.clone(),
                    change: "remark",
                },
                _ => Hint::Nothing,
            },
            Write::MarkRead(_) | Write::SetFlags(_) => Hint::Nothing,
        }
    }
}

fn message_data(s: &Stored) -> Value {
    let m = &s.message;
    json!({
        "message_id": m.id.0.to_string(),
        "conversation_id": m.conversation.as_str(),
        "seq": m.seq,
        "sender": m.sender.as_str(),
        "client_msg_id": m.client_msg_id,
        "server_time_ms": m.server_time_ms,
        "content": serde_json::to_value(crate::wire::content(&m.content)).unwrap_or(Value::Null),
    })
}

/// The event a write caused, if any: decided from what the write was and what it did (a
/// duplicate, a refusal or a change that changed nothing causes none).
pub fn event_of(hint: &Hint, outcome: &AppendOutcome) -> Option<Event> {
    let (kind, stored, extra) = match (hint, outcome) {
        (Hint::Message, AppendOutcome::Stored(s)) => (EventKind::MessageCreated, s, Value::Null),
        (Hint::Recall(target), AppendOutcome::Amended { event: Some(s), .. }) => (
            EventKind::MessageRecalled,
            s,
            json!({ "target_message_id": target.0.to_string() }),
        ),
        (Hint::Edit(target), AppendOutcome::Amended { event: Some(s), .. }) => (
            EventKind::MessageEdited,
            s,
            json!({ "target_message_id": target.0.to_string() }),
        ),
        (
            Hint::GroupCreated,
            AppendOutcome::Group {
                state,
                event: Some(s),
                ..
            },
        ) => (
            EventKind::GroupCreated,
            s,
            json!({ "group_id": state.id.0.to_string(), "name": state.settings.name }),
        ),
        (
            Hint::GroupChanged,
            AppendOutcome::Group {
                state,
                event: Some(s),
                ..
            },
        ) => (
            EventKind::GroupChanged,
            s,
            json!({ "group_id": state.id.0.to_string(), "dissolved": state.settings.dissolved }),
        ),
        (
            Hint::Friend { other, change },
            AppendOutcome::Social {
                friends,
                notice: Some(s),
                ..
            },
        ) => (
            EventKind::FriendChanged,
            s,
            json!({ "other_user": other.as_str(), "change": change, "friends": friends }),
        ),
        _ => return None,
    };
    let mut data = message_data(stored);
    if let (Value::Object(d), Value::Object(x)) = (&mut data, extra) {
        d.extend(x);
    }
    let m = &stored.message;
    Some(Event::new(
        format!("evt_m{}", m.id.0),
        kind,
        m.conversation.as_str().to_owned(),
        m.server_time_ms,
        data,
    ))
}

/// A webhook as routing sees it: its name and the kinds it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The webhook's unique name (rows in the outbox name it).
    pub webhook: String,
    /// What it wants.
    pub events: EventSet,
}

/// An event queued for one webhook, as a backend inserts it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The webhook.
    pub webhook: String,
    /// The event.
    pub event: Arc<Event>,
    /// Not to be claimed before then (Unix ms; 0: at once), for a row that is itself a retry.
    pub due_ms: i64,
}

/// What each webhook in force (and the push lane, when on) wants, the webhooks themselves,
/// and whether committed messages are queued for push.
type InForce = (Arc<[Route]>, Arc<[Webhook]>, bool);

/// The outbox row name of a committed message waiting to be planned into pushes. Webhook names
/// never begin with `@`, so no webhook can take it.
pub const PUSH_ROUTE: &str = "@push";
/// The outbox row name of one notification waiting for another attempt.
pub const PUSH_RETRY_ROUTE: &str = "@push.retry";

/// The outbox carries two kinds of rows, each claimed by its own dispatcher: events for the
/// app's webhooks, and the push lane (names beginning with `@`: committed messages to plan
/// into notifications, and notifications to retry). Sharing the table gives push the same
/// durability as webhooks: a message's push row commits with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Rows for webhooks.
    Webhooks,
    /// Rows for offline push.
    Push,
}

impl Lane {
    /// Whether rows of this lane have names beginning with `@`.
    pub fn internal(self) -> bool {
        matches!(self, Lane::Push)
    }
}

/// The webhooks in force, shared by the backend (which queues rows for them in its commits)
/// and whoever configures them; changed whole, read once per commit.
#[derive(Debug, Default)]
pub struct Routes {
    table: RwLock<InForce>,
    /// One per lane: a `Notify` wakes a single waiter, and each lane has its own dispatcher.
    queued: tokio::sync::Notify,
    push_queued: tokio::sync::Notify,
}

impl Routes {
    /// Replaces the webhooks in force: commits from now on queue rows for these, and the
    /// dispatcher sends to their addresses.
    pub fn set(&self, hooks: Vec<Webhook>) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let push = table.2;
        *table = (Self::routes_of(&hooks, push), hooks.into(), push);
    }

    /// Turns queuing committed messages for offline push on or off.
    pub fn set_push(&self, on: bool) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.0 = Self::routes_of(&table.1, on);
        table.2 = on;
    }

    fn routes_of(hooks: &[Webhook], push: bool) -> Arc<[Route]> {
        let mut routes: Vec<Route> = hooks.iter().map(Webhook::route).collect();
        if push {
            routes.push(Route {
                webhook: PUSH_ROUTE.to_owned(),
                events: EventSet::parse(["message.created"]).expect("a known event"),
            });
        }
        routes.into()
    }

    /// The webhooks in force.
    pub fn hooks(&self) -> Arc<[Webhook]> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The webhook in force named `name`.
    pub fn hook(&self, name: &str) -> Option<Webhook> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .iter()
            .find(|h| h.name == name)
            .cloned()
    }

    /// What the webhooks in force want.
    pub fn get(&self) -> Arc<[Route]> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// A collector for one commit, or `None` when no webhook is configured (then a commit
    /// spends nothing on events).
    pub fn collector(&self) -> Option<OutboxCollector> {
        let routes = self.get();
        (!routes.is_empty()).then(|| OutboxCollector {
            routes,
            rows: Vec::new(),
        })
    }

    /// The rows queuing `event` for every webhook that wants it.
    pub fn rows_for(&self, event: Event) -> Vec<OutboxRow> {
        let mut c = OutboxCollector {
            routes: self.get(),
            rows: Vec::new(),
        };
        c.push(event);
        c.rows
    }

    /// Called by a backend after it committed rows: wakes the dispatcher.
    pub fn notify_queued(&self) {
        self.queued.notify_one();
        self.push_queued.notify_one();
    }

    /// Resolves when rows were queued since the last call (or at once if they were before).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// [`Routes::queued`] for the push lane's dispatcher.
    pub async fn push_queued(&self) {
        self.push_queued.notified().await;
    }
}

/// Collects a commit's outbox rows as its writes are applied.
#[derive(Debug)]
pub struct OutboxCollector {
    routes: Arc<[Route]>,
    rows: Vec<OutboxRow>,
}

impl OutboxCollector {
    /// Queues the event of a write (if it caused one) for every webhook that wants it.
    pub fn add(&mut self, hint: &Hint, outcome: &AppendOutcome) {
        if let Some(event) = event_of(hint, outcome) {
            self.push(event);
        }
    }

    fn push(&mut self, event: Event) {
        let event = Arc::new(event);
        for r in self.routes.iter().filter(|r| r.events.contains(event.kind)) {
            self.rows.push(OutboxRow {
                webhook: r.webhook.clone(),
                event: event.clone(),
                due_ms: 0,
            });
        }
    }

    /// The rows to insert in the commit's transaction.
    pub fn into_rows(self) -> Vec<OutboxRow> {
        self.rows
    }
}

/// Where a queued event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for (another) attempt.
    Pending,
    /// Given up after too many failures; replayed only by an operator.
    Dead,
}

/// A queued event as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// The row's id: increasing in commit order per key.
    pub seq: u64,
    /// The webhook it is for.
    pub webhook: String,
    /// The event's id.
    pub event_id: String,
    /// The event's kind name.
    pub kind: String,
    /// Its ordering key.
    pub key: String,
    /// The body to send.
    pub body: String,
    /// When the event happened (Unix ms).
    pub created_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: String,
    /// Pending or dead.
    pub state: OutboxState,
}

/// The failure of one attempt, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Attempts made, this one included.
    pub attempts: u32,
    /// When to try again (ignored when `dead`).
    pub next_ms: i64,
    /// What went wrong.
    pub error: String,
    /// Give up: move the event to the dead letters.
    pub dead: bool,
}

/// The webhook outbox. Rows enter with commits (through the backend's [`Routes`]) or with
/// [`WebhookOutbox::enqueue`]; one dispatcher or several (one per node) claim and settle them.
#[async_trait]
pub trait WebhookOutbox: Send + Sync + std::fmt::Debug + 'static {
    /// The webhooks the backend queues rows for in its commits.
    fn routes(&self) -> &Arc<Routes>;

    /// Queues rows outside a commit (presence events).
    async fn enqueue(&self, rows: Vec<OutboxRow>) -> Result<(), StoreError>;

    /// Claims up to `limit` pending rows of `lane` due at `now_ms` that are each the oldest pending row
    /// of their `(webhook, key)` and not claimed by anyone until `now_ms`; each is claimed
    /// until `lease_until_ms`. So one key has at most one row in flight, in order.
    async fn claim(
        &self,
        lane: Lane,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, StoreError>;

    /// Holds a claimed row until `lease_until_ms`: its claimant is still working on it (a large
    /// group's pushes), and no other claim may take it meanwhile.
    async fn extend_lease(&self, seq: u64, lease_until_ms: i64) -> Result<(), StoreError>;

    /// The row was delivered: it leaves the outbox.
    async fn delivered(&self, seq: u64) -> Result<(), StoreError>;

    /// An attempt failed: record it, and either schedule the next or give up.
    async fn failed(&self, seq: u64, failure: &Failure) -> Result<(), StoreError>;

    /// Dead rows after `after` (by seq), `limit` at most, oldest first.
    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<QueuedEvent>, StoreError>;

    /// Makes a dead row pending again, due at `now_ms`, its attempts reset; `false` when there
    /// is no such dead row.
    async fn replay(&self, seq: u64, now_ms: i64) -> Result<bool, StoreError>;

    /// Pending rows of `lane` (a gauge of the backlog).
    async fn pending_count(&self, lane: Lane) -> Result<u64, StoreError>;
}

/// How long to wait after `attempts` failures: `base_ms` doubled per failure, at most `max_ms`.
pub fn backoff_ms(attempts: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(40))
        .min(max_ms)
}

/// A webhook secret's key bytes: a `whsec_` secret is base64 after the prefix (the Standard
/// Webhooks form); any other secret is used as its bytes.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a whsec_ secret must be base64 after the prefix: {e}")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The `webhook-signature` header value: `v1,` and the base64 HMAC-SHA256 of
/// `"{id}.{timestamp}.{body}"` under `key`.
pub fn sign(key: &[u8], id: &str, timestamp_s: i64, body: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A configured webhook: where events go, how they are signed, which it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique name; the outbox's rows name it, so renaming a webhook orphans its backlog.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The signing key's bytes (see [`secret_key`]).
    pub key: Vec<u8>,
    /// What it wants.
    pub events: EventSet,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events.names())
            .finish()
    }
}

/// The longest webhook name.
pub const MAX_WEBHOOK_NAME_LEN: usize = 64;

impl Webhook {
    /// A webhook from what an operator wrote (in the configuration file or through the API):
    /// a name of letters, digits, `_`, `.` and `-`; an `http://` or `https://` URL; a secret
    /// (`whsec_` and base64, or any other text taken as bytes); at least one event, or `*`.
    pub fn new<'a>(
        name: &str,
        url: &str,
        secret: &str,
        events: impl IntoIterator<Item = &'a str>,
    ) -> Result<Webhook, String> {
        let at = |what: String| format!("webhook {name:?}: {what}");
        if name.is_empty()
            || name.len() > MAX_WEBHOOK_NAME_LEN
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(at(format!(
                "a name is 1 to {MAX_WEBHOOK_NAME_LEN} letters, digits, '_', '.' or '-'"
            )));
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/'))
            || url.len() > 2048
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(at(format!(
                "url must be an http:// or https:// address, not {url:?}"
            )));
        }
        if secret.is_empty() {
            return Err(at("a secret is required to sign the requests".into()));
        }
        let key = secret_key(secret).map_err(at)?;
        if key.is_empty() {
            return Err(at("the secret is empty".into()));
        }
        let events: Vec<&str> = events.into_iter().collect();
        if events.is_empty() {
            return Err(at("events must name at least one event, or \"*\"".into()));
        }
        Ok(Webhook {
            name: name.to_owned(),
            url: url.to_owned(),
            key,
            events: EventSet::parse(events).map_err(at)?,
        })
    }

    /// A new secret, 32 random bytes in the `whsec_` form.
    pub fn new_secret() -> String {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        )
    }

    /// Its route.
    pub fn route(&self) -> Route {
        Route {
            webhook: self.name.clone(),
            events: self.events,
        }
    }
}

/// What operators do with webhooks: see them, see what was given up on, and replay it.
#[derive(Debug, Clone)]
pub struct WebhookAdmin {
    outbox: Arc<dyn WebhookOutbox>,
    clock: Arc<dyn crate::Clock>,
}

impl WebhookAdmin {
    /// Over `outbox` and the webhooks in force for it.
    pub fn new(outbox: Arc<dyn WebhookOutbox>, clock: Arc<dyn crate::Clock>) -> Self {
        Self { outbox, clock }
    }

    /// The webhooks in force.
    pub fn hooks(&self) -> Arc<[Webhook]> {
        self.outbox.routes().hooks()
    }

    /// Dead letters after `after`, at most `limit` (1 to 1000).
    pub async fn dead_letters(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, crate::ServiceError> {
        Ok(self
            .outbox
            .dead_letters(after, limit.clamp(1, 1000))
            .await?)
    }

    /// Queues dead letter `seq` again, due now; refused when `seq` is not a dead letter.
    pub async fn replay(&self, seq: u64) -> Result<(), crate::ServiceError> {
        if self.outbox.replay(seq, self.clock.now_ms()).await? {
            Ok(())
        } else {
            Err(crate::ServiceError::InvalidArgument(format!(
                "no dead letter has seq {seq}"
            )))
        }
    }

    /// Pending deliveries in all.
    pub async fn backlog(&self) -> Result<u64, crate::ServiceError> {
        Ok(self.outbox.pending_count(Lane::Webhooks).await?)
    }
}

/// Queues `user.online` and `user.offline` events, in the order they happen, for the
/// webhooks that want them. Presence is not stored, so these events are queued after the fact
/// (by one task, in order), not in a commit: a crash in between loses the newest of them.
#[derive(Debug, Clone)]
pub struct PresenceEvents {
    queue: tokio::sync::mpsc::UnboundedSender<Event>,
    routes: Arc<Routes>,
    clock: Arc<dyn crate::Clock>,
}

impl PresenceEvents {
    /// Starts the task that queues presence events in `outbox`.
    pub fn start(outbox: Arc<dyn WebhookOutbox>, clock: Arc<dyn crate::Clock>) -> PresenceEvents {
        let (queue, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let routes = outbox.routes().clone();
        tokio::spawn(async move {
            while let Some(first) = events.recv().await {
                let mut rows = outbox.routes().rows_for(first);
                while let Ok(next) = events.try_recv() {
                    rows.extend(outbox.routes().rows_for(next));
                }
                if let Err(e) = outbox.enqueue(rows).await {
                    tracing::warn!(error = %e, "presence webhook events were not queued");
                }
            }
        });
        PresenceEvents {
            queue,
            routes,
            clock,
        }
    }

    /// `user` came online (its first device anywhere connected), or went offline (its last
    /// device left). Costs nothing when no webhook wants presence.
    pub fn changed(&self, user: &UserId, online: bool) {
        let kind = if online {
            EventKind::UserOnline
        } else {
            EventKind::UserOffline
        };
        if self.routes.get().iter().any(|r| r.events.contains(kind)) {
            let _ = self
                .queue
                .send(Event::presence(user, online, self.clock.now_ms()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_sets_parse_names_and_the_wildcard() {
        let s = EventSet::parse(["message.created", "user.online"]).unwrap();
        assert!(s.contains(EventKind::MessageCreated));
        assert!(s.contains(EventKind::UserOnline));
        assert!(!s.contains(EventKind::GroupChanged));
        assert_eq!(EventSet::parse(["*"]).unwrap(), EventSet::all());
        assert!(
            EventSet::parse(["message.sent"])
                .unwrap_err()
                .contains("message.created")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_ms(1, 1000, 60_000), 1000);
        assert_eq!(backoff_ms(2, 1000, 60_000), 2000);
        assert_eq!(backoff_ms(4, 1000, 60_000), 8000);
        assert_eq!(backoff_ms(30, 1000, 60_000), 60_000);
        assert_eq!(backoff_ms(u32::MAX, 1000, 60_000), 60_000);
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(secret_key("whsec_!!").is_err());
        assert_eq!(secret_key("plain").unwrap(), b"plain");
    }
}
