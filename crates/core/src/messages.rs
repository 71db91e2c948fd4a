//! Messages: validation, the commit pipeline (group commit, then ack, then fan-out) and history.
//!
//! All sends of the process go through one pipeline task. It takes every send that is waiting,
//! appends them to the store as one batch (one transaction, one sync), and only then answers
//! each sender and publishes the new inbox entries, in commit order. One batch is in flight at
//! a time, so sends that arrive during a commit form the next batch: under load, batches grow
//! and the cost of the sync is shared.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    Clock, ServiceError,
    content::Content,
    groups::{GroupLimits, GroupState},
    ids::{ConnectionId, ConversationId, ConversationKind, GroupId, UserId},
    store::{
        AppendOutcome, Audience, CommitStore, Direction, GroupStore, HistoryPage, HistoryStore,
        InboxEntry, InboxEvent, NewMessage, Stored, StoredMessage, Write,
    },
    sync::{Publication, SyncService},
};

/// The longest client message id, in bytes.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

/// Settings of the message service.
#[derive(Debug, Clone)]
pub struct MessageConfig {
    /// The largest content accepted, measured as its protobuf encoding.
    pub max_content_bytes: usize,
    /// The most sends committed in one batch.
    pub max_batch: usize,
    /// How long the pipeline waits for more sends before committing a batch that is not full.
    /// Zero commits at once; batches still form from sends that arrive during a commit. A
    /// commit has a fixed cost (a WAL sync, the transaction itself), so a short wait shares it
    /// among more messages.
    pub commit_window: Duration,
    /// Sends waiting for the pipeline before new sends wait for room.
    pub queue_capacity: usize,
    /// Messages per HISTORY response when the client asks for 0.
    pub default_history_limit: u32,
    /// The most messages one HISTORY response carries.
    pub max_history_limit: u32,
    /// Group sizes and the write-diffusion threshold.
    pub groups: GroupLimits,
    /// The sensitive-word filter sends pass (shared with edits, swapped on reload).
    pub filter: crate::filter::ContentFilter,
    /// The app's check every send passes after the filter, if one is configured.
    pub before_send: Option<crate::before_send::BeforeSendHook>,
    /// Files of this server that sends refer to, when the server stores files.
    pub files: Option<crate::files::FileService>,
}

impl Default for MessageConfig {
    fn default() -> Self {
        Self {
            max_content_bytes: 32 * 1024,
            max_batch: 1024,
            // Measured with tern-bench pairs (1000 pairs, 10k msg/s): 1 ms cuts server CPU per
            // message by about an eighth at an unchanged median latency.
            commit_window: Duration::from_millis(1),
            queue_capacity: 16 * 1024,
            default_history_limit: 50,
            max_history_limit: 500,
            groups: GroupLimits::default(),
            filter: crate::filter::ContentFilter::default(),
            before_send: None,
            files: None,
        }
    }
}

/// Where a send goes, unvalidated.
#[derive(Debug, Clone)]
pub enum SendTarget {
    /// A one-to-one message to this user id.
    User(String),
    /// A message to this group id.
    Group(u64),
}

/// A send request, as the gateway hands it over.
#[derive(Debug, Clone)]
pub struct SendInput {
    /// Where it goes.
    pub target: SendTarget,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The content, unvalidated.
    pub content: Option<Content>,
}

/// The answer to a stored (or deduplicated) send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendAck {
    /// The stored message.
    pub message: Arc<StoredMessage>,
    /// True when this answers a retry of a message stored before.
    pub duplicate: bool,
}

/// A write accepted by the pipeline; resolves once it is durable (or failed). A pipeline that
/// stopped without answering counts as shutting down.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, ServiceError>>);

/// A send accepted by the pipeline.
pub type PendingSend = Pending<SendAck>;

/// A group write accepted by the pipeline.
pub type PendingGroup = Pending<GroupCommitted>;

/// A read mark, amendment or flag change accepted by the pipeline.
pub type PendingApplied = Pending<Applied>;

/// A read mark, amendment or flag change as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The conversation it concerns.
    pub conversation: ConversationId,
    /// The read mark after a read; the event's seq otherwise (0 when nothing changed).
    pub value: u64,
    /// The server time of the event recorded (0 when none).
    pub event_time_ms: i64,
}

impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, ServiceError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ServiceError::ShuttingDown)))
    }
}

/// A group write as committed.
#[derive(Debug, Clone)]
pub struct GroupCommitted {
    /// The group after the write.
    pub state: GroupState,
    /// Its timeline head after the write.
    pub head_seq: u64,
    /// The seq of the event recorded (0 when the write changed nothing).
    pub event_seq: u64,
}

/// Where a write's outcome goes.
enum Reply {
    Send(oneshot::Sender<Result<SendAck, ServiceError>>),
    Group(oneshot::Sender<Result<GroupCommitted, ServiceError>>),
    Applied(oneshot::Sender<Result<Applied, ServiceError>>),
}

impl Reply {
    fn fail(self, e: ServiceError) {
        match self {
            Reply::Send(r) => {
                let _ = r.send(Err(e));
            }
            Reply::Group(r) => {
                let _ = r.send(Err(e));
            }
            Reply::Applied(r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

/// A write in the batch being committed, waiting for its outcome.
struct Waiting {
    origin: Option<ConnectionId>,
    accepted: Instant,
    reply: Reply,
}

// Sends are nearly every job; boxing them to shrink the rare `Flush` would cost an allocation
// per message.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write {
        write: Write,
        origin: Option<ConnectionId>,
        accepted: Instant,
        reply: Reply,
    },
    /// Answered once every job queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Sending and reading messages.
#[derive(Debug, Clone)]
pub struct MessageService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    history: Arc<dyn HistoryStore>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    config: MessageConfig,
    jobs: mpsc::Sender<Job>,
    closed: AtomicBool,
    /// Keeps each connection's sends in order while the before-send hook checks them.
    turns: Arc<crate::before_send::Turns>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write {
                write: Write::Message(message),
                ..
            } => write!(f, "Send({}/{})", message.sender, message.client_msg_id),
            Job::Write { write, .. } => write!(f, "{write:?}"),
            Job::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl MessageService {
    /// Starts the service and its pipeline task on the current Tokio runtime.
    pub fn start(
        commits: Arc<dyn CommitStore>,
        history: Arc<dyn HistoryStore>,
        groups: Arc<dyn GroupStore>,
        sync: Arc<SyncService>,
        clock: Arc<dyn Clock>,
        config: MessageConfig,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(config.queue_capacity.max(1));
        let pipeline = Pipeline {
            store: commits,
            sync,
            max_batch: config.max_batch.max(1),
            commit_window: config.commit_window,
            metrics: PipelineMetrics::new(),
        };
        tokio::spawn(pipeline.run(rx));
        Self {
            inner: Arc::new(Inner {
                history,
                groups,
                clock,
                config,
                jobs,
                closed: AtomicBool::new(false),
                turns: Arc::default(),
            }),
        }
    }

    /// Validates a send from `sender` and queues it for the next commit. The returned future
    /// resolves with the ack once the message is durable.
    ///
    /// Queueing never waits: when the commit queue is full the send is refused with
    /// `Overloaded` (retryable). Sends queued one after another from one connection are stored
    /// in that order.
    pub fn send(
        &self,
        sender: &UserId,
        origin: Option<ConnectionId>,
        input: SendInput,
    ) -> Result<PendingSend, ServiceError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown);
        }
        if input.client_msg_id.is_empty() || input.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
            return Err(ServiceError::InvalidClientMsgId);
        }
        let mut content = input
            .content
            .ok_or(ServiceError::InvalidContent("content is missing"))?;
        validate_content(&content, self.inner.config.max_content_bytes)?;
        self.inner.config.filter.apply(&mut content)?;
        let (conversation, audience) = match input.target {
            SendTarget::User(to) => {
                let to =
                    UserId::parse(&to).map_err(|_| ServiceError::UnknownUser(unknown_user(&to)))?;
                let mut inboxes = vec![sender.clone()];
                if &to != sender {
                    inboxes.push(to.clone());
                }
                (
                    ConversationId::direct(sender, &to),
                    Audience::Direct(inboxes),
                )
            }
            SendTarget::Group(id) => {
                if id == 0 {
                    return Err(ServiceError::NotAParticipant);
                }
                let group = GroupId(id);
                (
                    ConversationId::group(group),
                    Audience::Group {
                        group,
                        write_diffusion_max: self.inner.config.groups.write_diffusion_max,
                    },
                )
            }
        };
        let mut message = NewMessage {
            conversation,
            sender: sender.clone(),
            client_msg_id: input.client_msg_id,
            server_time_ms: self.inner.clock.now_ms(),
            content,
            audience,
        };
        let (reply, rx) = oneshot::channel();
        let hook = self.inner.config.before_send.clone();
        // A file of this server is checked and its reference recorded before the send is
        // queued: a store read, so it takes the same asynchronous path as the app's check.
        let files = self
            .inner
            .config
            .files
            .as_ref()
            .filter(|_| crate::files::refers_to_upload(&message.content));
        if hook.is_none() && files.is_none() {
            self.queue(Write::Message(message), origin, Reply::Send(reply))?;
            return Ok(Pending(rx));
        }
        // The app's check runs on its own task; the send is queued when the check is done and
        // every earlier send of the connection was queued, so the order stays the one sent in.
        // The turn is taken now, in the order the sends arrive.
        let mut turn = self.inner.turns.take(origin);
        let service = self.clone();
        tokio::spawn(async move {
            let draft = crate::before_send::Draft {
                sender: message.sender.clone(),
                conversation: message.conversation.clone(),
                to_user: match &message.audience {
                    Audience::Direct(inboxes) => inboxes.last().cloned(),
                    Audience::Group { .. } => None,
                },
                group: match &message.audience {
                    Audience::Group { group, .. } => Some(*group),
                    Audience::Direct(_) => None,
                },
                client_msg_id: message.client_msg_id.clone(),
                content: std::mem::take(&mut message.content),
            };
            let max = service.inner.config.max_content_bytes;
            let checked = match &hook {
                Some(hook) => hook
                    .run(&draft, |c| validate_content(c, max))
                    .await
                    // A replacement passes the server's own filter too.
                    .and_then(|mut content| {
                        service.inner.config.filter.apply(&mut content)?;
                        Ok(content)
                    }),
                None => Ok(draft.content),
            };
            // The app's replacement may name a file too: checked whatever the first said.
            let checked = match (checked, &service.inner.config.files) {
                (Ok(mut content), Some(files)) => files
                    .attach(&message.sender, &message.conversation, &mut content)
                    .await
                    .map(|()| content),
                (other, _) => other,
            };
            turn.ready().await;
            match checked {
                Ok(content) => {
                    message.content = content;
                    service.queue_or_answer(Write::Message(message), origin, Reply::Send(reply));
                }
                Err(e) => Reply::Send(reply).fail(e),
            }
            drop(turn);
        });
        Ok(Pending(rx))
    }

    /// Queues a group write for the next commit.
    pub(crate) fn submit_group(
        &self,
        write: Write,
        origin: Option<ConnectionId>,
    ) -> Result<PendingGroup, ServiceError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        self.queue(write, origin, Reply::Group(reply))?;
        Ok(Pending(rx))
    }

    /// Queues a read mark, amendment or flag change for the next commit. Its notice or event
    /// reaches every device, the acting one included: the response does not carry the inbox
    /// seq, so that device learns it like the others.
    pub(crate) fn submit_applied(&self, write: Write) -> Result<PendingApplied, ServiceError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ServiceError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        self.queue(write, None, Reply::Applied(reply))?;
        Ok(Pending(rx))
    }

    /// The group limits in force.
    pub fn group_limits(&self) -> GroupLimits {
        self.inner.config.groups
    }

    /// The server's clock, in Unix ms.
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn queue(
        &self,
        write: Write,
        origin: Option<ConnectionId>,
        reply: Reply,
    ) -> Result<(), ServiceError> {
        self.try_queue(write, origin, reply).map_err(|(_, e)| e)
    }

    /// [`Self::queue`], answering the reply with the refusal when the queue refuses.
    fn queue_or_answer(&self, write: Write, origin: Option<ConnectionId>, reply: Reply) {
        if let Err((reply, e)) = self.try_queue(write, origin, reply) {
            reply.fail(e);
        }
    }

    /// Queues a write without waiting; a full or closed queue gives the reply back.
    fn try_queue(
        &self,
        write: Write,
        origin: Option<ConnectionId>,
        reply: Reply,
    ) -> Result<(), (Reply, ServiceError)> {
        let job = Job::Write {
            write,
            origin,
            accepted: Instant::now(),
            reply,
        };
        let (job, error) = match self.inner.jobs.try_send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(job)) => (job, ServiceError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(job)) => (job, ServiceError::ShuttingDown),
        };
        match job {
            Job::Write { reply, .. } => Err((reply, error)),
            Job::Flush(_) => unreachable!("a write was queued"),
        }
    }

    /// A page of a conversation that `user` is part of.
    pub async fn history(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        anchor_seq: u64,
        direction: Direction,
        limit: u32,
    ) -> Result<HistoryPage, ServiceError> {
        let (conversation, kind) = ConversationId::parse(conversation.as_str())?;
        let limit = if limit == 0 {
            self.inner.config.default_history_limit
        } else {
            limit
        }
        .clamp(1, self.inner.config.max_history_limit.max(1));
        // The part of the conversation the user may read: all of a one-to-one conversation; a
        // group's timeline from the member's view on, and for a member who left, up to its
        // departure (so a device that was away loses nothing stored while it was a member).
        let (visible_from, visible_to) = match kind {
            ConversationKind::Direct(a, b) if &a == user || &b == user => (1, u64::MAX),
            ConversationKind::Direct(..) => return Err(ServiceError::NotAParticipant),
            ConversationKind::Notices(owner) if &owner == user => (1, u64::MAX),
            ConversationKind::Notices(_) => return Err(ServiceError::NotAParticipant),
            ConversationKind::Group(group) => {
                let Some((record, member)) = self.inner.groups.group(group, user).await? else {
                    return Err(ServiceError::NotAParticipant);
                };
                // A member sees up to the head read with its membership: a removal that
                // commits meanwhile cannot expose what followed it.
                let (joined, to) = match member {
                    Some(m) => (m.joined_seq, record.head_seq),
                    None => match self.inner.groups.departure(group, user).await? {
                        Some((joined, left)) => (joined, left),
                        None => return Err(ServiceError::NotAParticipant),
                    },
                };
                (record.settings.history.first_seq(joined), to)
            }
        };
        let anchor_seq = match direction {
            Direction::Forward => anchor_seq.max(visible_from - 1),
            Direction::Backward
                if visible_to < u64::MAX && (anchor_seq == 0 || anchor_seq > visible_to) =>
            {
                visible_to + 1
            }
            Direction::Backward => anchor_seq,
        };
        let mut page = self
            .inner
            .history
            .history(&conversation, anchor_seq, direction, limit)
            .await?;
        let before = page.messages.len();
        page.messages
            .retain(|m| m.seq >= visible_from && m.seq <= visible_to);
        let clipped = page.messages.len() < before;
        let at_edge = match direction {
            Direction::Backward => page.messages.first().is_some_and(|m| m.seq == visible_from),
            Direction::Forward => page.messages.last().is_some_and(|m| m.seq == visible_to),
        };
        if clipped || at_edge {
            page.has_more = false;
        }
        Ok(page)
    }

    /// Refuses new sends and waits until every send queued so far is committed and answered.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.inner.jobs.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn unknown_user(raw: &str) -> UserId {
    // An unparsable id cannot exist; report it under a placeholder rather than echoing bytes
    // that may not be printable.
    UserId::parse(raw).unwrap_or_else(|_| UserId::parse("invalid").expect("valid literal"))
}

/// Whether a send that repeats the client message id of `earlier` is a retry of it: the same
/// conversation (so the same receiver) and the same content. A client that reuses an id for a
/// different message is told so, rather than being answered with an ack for a message it did
/// not send.
pub fn is_retry_of(
    earlier: &StoredMessage,
    conversation: &ConversationId,
    content: &Content,
) -> bool {
    earlier.conversation == *conversation && earlier.content == *content
}

/// Checks that content is present, well-formed, a body a client may send, and within the size
/// limit (measured as stored).
pub fn validate_content(content: &Content, max_bytes: usize) -> Result<(), ServiceError> {
    const MAX_FIELD: usize = 2048;
    let long = |s: &str| s.len() > MAX_FIELD;
    match content {
        Content::Empty => return Err(ServiceError::InvalidContent("content has no body")),
        Content::Text(t) if t.text.is_empty() => {
            return Err(ServiceError::InvalidContent("text is empty"));
        }
        Content::Image(i) if i.file_id.is_empty() && i.url.is_empty() => {
            return Err(ServiceError::InvalidContent(
                "image needs a file_id or a url",
            ));
        }
        Content::Image(i) if long(&i.file_id) || long(&i.url) || long(&i.mime) => {
            return Err(ServiceError::InvalidContent(
                "image reference field too long",
            ));
        }
        Content::File(f) if f.file_id.is_empty() && f.url.is_empty() => {
            return Err(ServiceError::InvalidContent(
                "file needs a file_id or a url",
            ));
        }
        Content::File(f) if long(&f.file_id) || long(&f.url) || long(&f.name) || long(&f.mime) => {
            return Err(ServiceError::InvalidContent(
                "file reference field too long",
            ));
        }
        Content::Custom(c) if c.kind.is_empty() || c.kind.len() > 64 => {
            return Err(ServiceError::InvalidContent(
                "custom kind must be 1 to 64 bytes",
            ));
        }
        c if !c.is_client_body() => {
            return Err(ServiceError::InvalidContent(
                "events and notices are written by the server",
            ));
        }
        _ => {}
    }
    let len = crate::codes::content::encoded_len(content);
    if len > max_bytes {
        return Err(ServiceError::ContentTooLarge {
            len,
            max: max_bytes,
        });
    }
    Ok(())
}

/// The single task that commits sends in batches and publishes them in commit order.
struct Pipeline {
    store: Arc<dyn CommitStore>,
    sync: Arc<SyncService>,
    max_batch: usize,
    commit_window: Duration,
    metrics: PipelineMetrics,
}

/// Metric handles resolved once, so the per-batch path does no registry lookups.
struct PipelineMetrics {
    stored: metrics::Counter,
    duplicates: metrics::Counter,
    batch_size: metrics::Histogram,
    commit_seconds: metrics::Histogram,
    ack_seconds: metrics::Histogram,
    delivery_seconds: metrics::Histogram,
}

impl PipelineMetrics {
    fn new() -> Self {
        Self {
            stored: metrics::counter!("tern_messages_stored_total"),
            duplicates: metrics::counter!("tern_messages_deduplicated_total"),
            batch_size: metrics::histogram!("tern_store_commit_batch_size"),
            commit_seconds: metrics::histogram!("tern_store_commit_seconds"),
            ack_seconds: metrics::histogram!("tern_send_ack_seconds"),
            delivery_seconds: metrics::histogram!("tern_delivery_seconds"),
        }
    }
}

impl Pipeline {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        loop {
            if rx.recv_many(&mut jobs, self.max_batch).await == 0 {
                return;
            }
            if !self.commit_window.is_zero() && jobs.len() < self.max_batch {
                tokio::time::sleep(self.commit_window).await;
                while jobs.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
            self.commit(&mut jobs).await;
        }
    }

    async fn commit(&self, jobs: &mut Vec<Job>) {
        let mut sends = Vec::with_capacity(jobs.len());
        let mut batch = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Write {
                    write,
                    origin,
                    accepted,
                    reply,
                } => {
                    batch.push(write);
                    sends.push(Waiting {
                        origin,
                        accepted,
                        reply,
                    });
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            self.metrics.batch_size.record(batch.len() as f64);
            let result = self.store.commit(batch).await;
            self.metrics
                .commit_seconds
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(outcomes) if outcomes.len() == sends.len() => self.finish(sends, outcomes),
                Ok(outcomes) => {
                    tracing::error!(
                        sent = sends.len(),
                        got = outcomes.len(),
                        "store answered a batch with the wrong number of outcomes"
                    );
                    for w in sends {
                        w.reply.fail(ServiceError::Internal(
                            "store outcome count mismatch".into(),
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch commit failed; no write of it was stored");
                    for w in sends {
                        w.reply.fail(ServiceError::Store(e.clone()));
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    /// Records the new entries (so reads see them), answers every writer, then delivers the
    /// entries and group pushes to online devices, in commit order.
    fn finish(&self, sends: Vec<Waiting>, outcomes: Vec<AppendOutcome>) {
        let mut published = Vec::with_capacity(outcomes.len() * 2);
        let mut delivered = Vec::with_capacity(outcomes.len());
        let mut answers = Vec::with_capacity(outcomes.len());
        for (
            Waiting {
                origin,
                accepted,
                reply,
            },
            outcome,
        ) in sends.into_iter().zip(outcomes)
        {
            let answer = match (reply, outcome) {
                (Reply::Send(reply), AppendOutcome::Stored(stored)) => {
                    self.metrics.stored.increment(1);
                    let message = stored.message.clone();
                    publish(&mut published, stored, origin);
                    delivered.push(accepted);
                    Answer::Send(
                        reply,
                        Ok(SendAck {
                            message,
                            duplicate: false,
                        }),
                    )
                }
                (Reply::Send(reply), AppendOutcome::Duplicate(message)) => {
                    self.metrics.duplicates.increment(1);
                    Answer::Send(
                        reply,
                        Ok(SendAck {
                            message,
                            duplicate: true,
                        }),
                    )
                }
                (Reply::Send(reply), AppendOutcome::UnknownUser(user)) => {
                    Answer::Send(reply, Err(ServiceError::UnknownUser(user)))
                }
                (
                    Reply::Group(reply),
                    AppendOutcome::Group {
                        state,
                        head_seq,
                        event,
                    },
                ) => {
                    let event_seq = event.as_ref().map_or(0, |e| e.message.seq);
                    if let Some(stored) = event {
                        publish(&mut published, stored, origin);
                    }
                    Answer::Group(
                        reply,
                        Ok(GroupCommitted {
                            state,
                            head_seq,
                            event_seq,
                        }),
                    )
                }
                (
                    Reply::Applied(reply),
                    outcome @ (AppendOutcome::ReadMark { .. }
                    | AppendOutcome::Amended { .. }
                    | AppendOutcome::Flags { .. }
                    | AppendOutcome::Social { .. }),
                ) => {
                    let (conversation, value, event) = applied(outcome);
                    let event_time_ms = event.as_ref().map_or(0, |e| e.message.server_time_ms);
                    if let Some(stored) = event {
                        publish(&mut published, stored, origin);
                    }
                    Answer::Applied(
                        reply,
                        Ok(Applied {
                            conversation,
                            value,
                            event_time_ms,
                        }),
                    )
                }
                (reply, AppendOutcome::Refused(e)) => reply.answer_err(e.into()),
                (reply, outcome) => {
                    tracing::error!(
                        ?outcome,
                        "store answered a write with an outcome of another kind"
                    );
                    reply.answer_err(ServiceError::Internal("store outcome kind mismatch".into()))
                }
            };
            answers.push((accepted, answer));
        }
        // Readers see an entry before its sender learns it is stored.
        self.sync.record(&published);
        for (accepted, answer) in answers {
            self.metrics
                .ack_seconds
                .record(accepted.elapsed().as_secs_f64());
            // A sender that went away still had its message stored; it learns the outcome by
            // retrying with the same client message id.
            match answer {
                Answer::Send(r, a) => {
                    let _ = r.send(a);
                }
                Answer::Group(r, a) => {
                    let _ = r.send(a);
                }
                Answer::Applied(r, a) => {
                    let _ = r.send(a);
                }
            }
        }
        self.sync.deliver(&published);
        // From the send's arrival to its pushes sitting in the receivers' connection queues.
        for accepted in delivered {
            self.metrics
                .delivery_seconds
                .record(accepted.elapsed().as_secs_f64());
        }
    }
}

/// A writer's answer, ready to send.
enum Answer {
    Send(
        oneshot::Sender<Result<SendAck, ServiceError>>,
        Result<SendAck, ServiceError>,
    ),
    Group(
        oneshot::Sender<Result<GroupCommitted, ServiceError>>,
        Result<GroupCommitted, ServiceError>,
    ),
    Applied(
        oneshot::Sender<Result<Applied, ServiceError>>,
        Result<Applied, ServiceError>,
    ),
}

impl Reply {
    /// The answer that refuses the write with `e`.
    fn answer_err(self, e: ServiceError) -> Answer {
        match self {
            Reply::Send(r) => Answer::Send(r, Err(e)),
            Reply::Group(r) => Answer::Group(r, Err(e)),
            Reply::Applied(r) => Answer::Applied(r, Err(e)),
        }
    }
}

/// Adds what a stored message publishes: its inbox entries, then (read diffusion) its push to
/// the group's other members.
/// What the services learn of a read mark, amendment, flag or social write: the conversation
/// it concerns, its value (the read mark; whether now friends; else the seq of the event
/// recorded, 0 when none), and the event.
fn applied(outcome: AppendOutcome) -> (ConversationId, u64, Option<Stored>) {
    let seq = |e: &Option<Stored>| e.as_ref().map_or(0, |s| s.message.seq);
    match outcome {
        AppendOutcome::ReadMark {
            conversation,
            mark,
            notice,
        } => (conversation, mark, notice),
        AppendOutcome::Amended {
            conversation,
            event,
        } => (conversation, seq(&event), event),
        AppendOutcome::Flags {
            conversation,
            notice,
        } => (conversation, seq(&notice), notice),
        AppendOutcome::Social {
            conversation,
            friends,
            notice,
        } => (conversation, u64::from(friends), notice),
        other => unreachable!("not an applied outcome: {other:?}"),
    }
}

fn publish(published: &mut Vec<Publication>, stored: Stored, origin: Option<ConnectionId>) {
    let Stored {
        message,
        inbox_seqs,
        push_members,
    } = stored;
    let mut with_entry = Vec::new();
    for (user, seq) in inbox_seqs {
        let entry = Arc::new(InboxEntry {
            seq,
            event: InboxEvent::Message(message.clone()),
        });
        if push_members.is_some() {
            with_entry.push(user.clone());
        }
        published.push(Publication::Entry {
            user,
            entry,
            skip: origin,
        });
    }
    if let Some(members) = push_members {
        // Sorted, so fan-out tests each member against it by binary search.
        with_entry.sort_unstable();
        published.push(Publication::Group {
            message,
            members,
            except: with_entry,
            skip: origin,
        });
    }
}
