//! The writer thread: the only connection that writes `tern.db`. It commits every queued job
//! per sync; the indexer thread (see `indexer.rs`) builds the keyed indexes beside it.
//!
//! Jobs queue on a channel. The thread takes all that are waiting, runs them in one
//! `BEGIN IMMEDIATE` transaction, commits (one WAL sync under `synchronous=FULL`), and only then
//! reports each job's result. If the transaction fails, every job in it fails and nothing of it
//! is visible. Message appends only append rows (see `tail.rs`); after the commit they join the
//! in-memory tail, from which the indexer copies them into `tern-index.db`. Lookups consult the
//! tail before the index file: the indexer removes an entry from the tail only after indexing it.
//!
//! Sequence heads (each conversation's newest seq, each user's newest inbox seq) are cached
//! here, the only place that advances them; a batch's changes to the cache apply only after its
//! commit, so a failed batch leaves no gap.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, atomic::Ordering, mpsc},
    thread,
    time::Instant,
};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use tern_core::{
    ConversationId, GroupId, StoreError, UserId, groups::GroupState, store::StoredMessage,
};

use super::{
    checkpoint::Checkpointer,
    indexer::Progress,
    rows::{message_from_row, store_err},
    tail::{Tail, TailEntry},
};

/// Why a write job failed: SQLite itself, or data the store cannot read back.
#[derive(Debug)]
pub(crate) enum JobError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> Self {
        JobError::Sql(e)
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Store(e)
    }
}

impl From<JobError> for StoreError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Sql(e) => store_err(e),
            JobError::Store(e) => e,
        }
    }
}

/// A unit of work for the writer thread.
pub(crate) trait WriteJob: Send + 'static {
    /// Does the job's writes inside the open transaction. An error aborts the whole batch.
    fn run(&mut self, batch: &mut Batch<'_>) -> Result<(), JobError>;
    /// Reports the outcome once the batch committed (`Ok`) or rolled back (`Err`).
    fn finish(self: Box<Self>, result: Result<(), StoreError>);
}

/// What the writer thread receives.
pub(crate) enum Command {
    /// Run a job in the next batch.
    Job(Box<dyn WriteJob>),
    /// Finish the queued jobs, checkpoint the WAL, and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// Committed sequence heads, bounded so memory does not grow with the number of users. Keys
/// are looked up several times per message, so a fast non-cryptographic hash is used: they are
/// validated ids, and the caches are bounded, so flooding them costs only hit rate.
struct Heads {
    users: LruCache<UserId, u64, FxBuildHasher>,
    conversations: LruCache<ConversationId, u64, FxBuildHasher>,
    /// `(user, one-to-one conversation)` pairs known to be in `user_conversations`, so that a
    /// message between known pairs writes nothing there.
    pairs: LruCache<(UserId, ConversationId), (), FxBuildHasher>,
    /// Per sender, a client message id at least as great as every one it has stored ("" when
    /// it has stored none): a new id above it cannot be a retry, so its send skips the probe of
    /// `dedupe_index`. Clients that make ids increasing over time (the SDKs do; any UUIDv7 or
    /// ULID does) therefore pay for that probe once per sender, not once per message, which
    /// was a fifth of the writer's time (a page read per probe once many senders are active).
    /// Only an upper bound is needed, so it is raised as soon as a batch appends a message;
    /// a batch that rolls back leaves it too high, which costs only probes.
    dedupe: LruCache<UserId, String, FxBuildHasher>,
}

/// A message appended by the batch, with its inbox entries `(user, seq, inbox_log row)`.
pub(crate) struct Appended {
    pub(crate) message: Arc<StoredMessage>,
    pub(crate) entries: Vec<(UserId, u64, u64)>,
}

/// The open transaction as jobs see it: the connection, the sequence heads and the tail, with
/// this batch's own changes kept apart until the commit.
pub(crate) struct Batch<'a> {
    /// The connection, inside the batch's transaction.
    pub(crate) conn: &'a Connection,
    /// A read-only connection to the index file.
    index: &'a Connection,
    heads: &'a mut Heads,
    /// Group states, changed in place by the batch; cleared if the batch rolls back.
    groups: &'a mut LruCache<GroupId, GroupState, FxBuildHasher>,
    tail: &'a Mutex<Tail>,
    users: FxHashMap<UserId, u64>,
    conversations: FxHashMap<ConversationId, u64>,
    dedupe: FxHashMap<(UserId, String), Arc<StoredMessage>>,
    /// Per sender, this batch's message with the greatest client message id.
    greatest: FxHashMap<UserId, Arc<StoredMessage>>,
    appended: Vec<Appended>,
    pairs: Vec<(UserId, ConversationId)>,
    /// Users who block someone or take messages from friends only (loaded on first use).
    restrictive: &'a mut Option<FxHashSet<UserId>>,
    /// The next `inbox_log` row id.
    next_log: &'a mut u64,
}

/// A tail this many times its bound holds commits until the indexer catches up.
const HARD_TAIL_FACTOR: usize = 4;

/// Members held by the writer's group cache across all cached groups (about 100 MB); the
/// least recently used groups are dropped beyond it (the one just used is always kept).
const MAX_CACHED_MEMBERS: usize = 1_000_000;

use super::reader::MESSAGE_BY_ID;

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|p| p.into_inner())
}

impl Batch<'_> {
    /// A fresh `inbox_log` row id, greater than every id handed out before, in this process or
    /// an earlier one. Releases delete rows by id range, so an id must never be handed out
    /// twice: SQLite's own choice (one more than the largest id present) starts again at 1 once
    /// the table is empty, and would put new, unindexed rows under a release bound.
    pub(crate) fn next_log_id(&mut self) -> u64 {
        let id = *self.next_log;
        *self.next_log += 1;
        id
    }

    /// The newest inbox seq of `user`, or `None` if the user does not exist.
    pub(crate) fn inbox_head(&mut self, user: &UserId) -> rusqlite::Result<Option<u64>> {
        if let Some(seq) = self.users.get(user) {
            return Ok(Some(*seq));
        }
        if let Some(seq) = self.heads.users.get(user) {
            return Ok(Some(*seq));
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        // The tail first: its entries are the newest, and an entry leaves it only once indexed.
        let in_tail = lock(self.tail).inbox_head(user);
        let head = match in_tail {
            Some(head) => head,
            None => self
                .index
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM inbox WHERE user_id = ?1")?
                .query_row([user.as_str()], |r| r.get::<_, i64>(0))? as u64,
        };
        // Cached right away: the value is committed state, independent of this batch.
        self.heads.users.put(user.clone(), head);
        Ok(Some(head))
    }

    /// Advances `user`'s inbox head within this batch.
    pub(crate) fn set_inbox_head(&mut self, user: &UserId, seq: u64) {
        self.users.insert(user.clone(), seq);
    }

    /// The newest seq of `conversation` (0 when it has no message yet).
    pub(crate) fn conversation_head(
        &mut self,
        conversation: &ConversationId,
    ) -> rusqlite::Result<u64> {
        if let Some(seq) = self.conversations.get(conversation) {
            return Ok(*seq);
        }
        if let Some(seq) = self.heads.conversations.get(conversation) {
            return Ok(*seq);
        }
        let in_tail = lock(self.tail).conversation_head(conversation);
        let head = match in_tail {
            Some(head) => head,
            None => self
                .index
                .prepare_cached(
                    "SELECT coalesce(max(seq), 0) FROM conversation_index WHERE conversation = ?1",
                )?
                .query_row([conversation.as_str()], |r| r.get::<_, i64>(0))?
                as u64,
        };
        self.heads.conversations.put(conversation.clone(), head);
        Ok(head)
    }

    /// Advances `conversation`'s head within this batch.
    pub(crate) fn set_conversation_head(&mut self, conversation: &ConversationId, seq: u64) {
        self.conversations.insert(conversation.clone(), seq);
    }

    /// The message stored earlier under `(sender, client_msg_id)`: in this batch, in the tail,
    /// or in the index.
    pub(crate) fn find_duplicate(
        &mut self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Arc<StoredMessage>>, JobError> {
        let key = (sender.clone(), client_msg_id.to_owned());
        if let Some(m) = self.dedupe.get(&key) {
            return Ok(Some(m.clone()));
        }
        let in_tail = {
            let tail = lock(self.tail);
            if let Some(m) = tail.dedupe.get(&key) {
                return Ok(Some(m.clone()));
            }
            match self.heads.dedupe.get(sender) {
                Some(bound) if client_msg_id > bound.as_str() => return Ok(None),
                Some(_) => None,
                None => Some(tail.client_msg_id_bound(sender).map(str::to_owned)),
            }
        };
        if let Some(in_tail) = in_tail {
            // The bound covers the index (this batch's snapshot), the tail and this batch: the
            // gate held for the batch keeps any of them from moving to the index unseen, and
            // every later append raises it.
            let in_index: Option<String> = self
                .index
                .prepare_cached("SELECT max(client_msg_id) FROM dedupe_index WHERE sender = ?1")?
                .query_row([sender.as_str()], |row| row.get(0))?;
            let in_batch = self.greatest.get(sender).map(|m| m.client_msg_id.as_str());
            let bound = [in_index.as_deref(), in_tail.as_deref(), in_batch]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or("")
                .to_owned();
            let new = client_msg_id > bound.as_str();
            self.heads.dedupe.put(sender.clone(), bound);
            if new {
                return Ok(None);
            }
        }
        let id: Option<i64> = self
            .index
            .prepare_cached(
                "SELECT message_id FROM dedupe_index WHERE sender = ?1 AND client_msg_id = ?2",
            )?
            .query_row(params![sender.as_str(), client_msg_id], |row| row.get(0))
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        let message = self
            .conn
            .prepare_cached(MESSAGE_BY_ID)?
            .query_row([id], |row| Ok(message_from_row(row, 0)))??;
        Ok(Some(Arc::new(message)))
    }

    /// Makes sure `user`'s conversation list includes `conversation` (a one-to-one conversation).
    pub(crate) fn note_conversation(
        &mut self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> rusqlite::Result<()> {
        let key = (user.clone(), conversation.clone());
        if self.heads.pairs.get(&key).is_some() || self.pairs.contains(&key) {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO user_conversations (user_id, conversation) VALUES (?1, ?2)",
            )?
            .execute(params![user.as_str(), conversation.as_str()])?;
        self.pairs.push(key);
        Ok(())
    }

    /// Whether `recipient` refuses a one-to-one message from `sender` (a block, or a
    /// friends-only policy and no friendship). Most users restrict nobody, and the writer knows
    /// which do, so the common case costs one hash lookup.
    pub(crate) fn refuses(
        &mut self,
        recipient: &UserId,
        sender: &UserId,
    ) -> Result<bool, JobError> {
        if recipient == sender || !self.restrictive()?.contains(recipient) {
            return Ok(false);
        }
        Ok(super::social::refuses(self.conn, recipient, sender)?)
    }

    /// Notes that `user` now blocks someone or takes messages from friends only.
    pub(crate) fn mark_restrictive(&mut self, user: &UserId) -> Result<(), JobError> {
        self.restrictive()?.insert(user.clone());
        Ok(())
    }

    fn restrictive(&mut self) -> Result<&mut FxHashSet<UserId>, JobError> {
        if self.restrictive.is_none() {
            *self.restrictive = Some(super::social::restrictive_users(self.conn)?);
        }
        Ok(self.restrictive.get_or_insert_with(FxHashSet::default))
    }

    /// A message by id as readers see it now (amended), if it exists.
    pub(crate) fn message(&self, id: u64) -> Result<Option<StoredMessage>, JobError> {
        let message = self
            .conn
            .prepare_cached(MESSAGE_BY_ID)?
            .query_row([id as i64], |row| Ok(message_from_row(row, 0)))
            .optional()?
            .transpose()?;
        let Some(mut message) = message else {
            return Ok(None);
        };
        super::reader::amend(self.conn, std::slice::from_mut(&mut message))?;
        Ok(Some(message))
    }

    /// Records a message this batch appended, to join the tail after the commit.
    pub(crate) fn appended(&mut self, appended: Appended) {
        let m = &appended.message;
        if !m.client_msg_id.is_empty() {
            if let Some(bound) = self.heads.dedupe.get_mut(&m.sender)
                && m.client_msg_id > *bound
            {
                bound.clear();
                bound.push_str(&m.client_msg_id);
            }
            match self.greatest.get_mut(&m.sender) {
                Some(g) if g.client_msg_id >= m.client_msg_id => {}
                Some(g) => *g = m.clone(),
                None => {
                    self.greatest.insert(m.sender.clone(), m.clone());
                }
            }
            self.dedupe
                .insert((m.sender.clone(), m.client_msg_id.clone()), m.clone());
        }
        self.appended.push(appended);
    }

    /// The group's current state (with this batch's changes), loaded on first use; `None` if
    /// it does not exist.
    pub(crate) fn group(&mut self, id: GroupId) -> Result<Option<&mut GroupState>, JobError> {
        if !self.groups.contains(&id) {
            match super::groups::load_group(self.conn, id)? {
                Some(state) => self.put_group(state),
                None => return Ok(None),
            }
        }
        Ok(self.groups.get_mut(&id))
    }

    /// Takes the group's state out of the cache (loading it if needed), to be changed and put
    /// back with [`Batch::put_group`]; `None` if it does not exist.
    pub(crate) fn take_group(&mut self, id: GroupId) -> Result<Option<GroupState>, JobError> {
        if let Some(state) = self.groups.pop(&id) {
            return Ok(Some(state));
        }
        super::groups::load_group(self.conn, id)
    }

    /// Caches a group's state.
    pub(crate) fn put_group(&mut self, state: GroupState) {
        self.groups.put(state.id, state);
        // Bounded by members as well as by groups: a cache of large groups is mostly members.
        let mut total: usize = self.groups.iter().map(|(_, g)| g.members.len()).sum();
        while total > MAX_CACHED_MEMBERS && self.groups.len() > 1 {
            match self.groups.pop_lru() {
                Some((_, evicted)) => total -= evicted.members.len(),
                None => break,
            }
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    /// Read-only, for lookups in the keyed indexes.
    index: Connection,
    heads: Heads,
    groups: LruCache<GroupId, GroupState, FxBuildHasher>,
    /// Users who restrict who may message them; never shrinks (a stale member only costs a
    /// lookup), so a rolled-back batch leaves nothing wrong in it.
    restrictive: Option<FxHashSet<UserId>>,
    tail: Arc<Mutex<Tail>>,
    max_jobs: usize,
    progress: Arc<Progress>,
    /// `inbox_log` rows up to here are deleted.
    deleted_log: u64,
    /// The next `inbox_log` row id; ids only grow, even across a rolled-back batch.
    next_log: u64,
    /// Wakes the indexer when the tail grows past `wake_at` messages.
    indexer: Option<thread::Thread>,
    wake_at: usize,
    /// Checkpoints the WAL beside the writer; stopped before the final checkpoint.
    checkpointer: Checkpointer,
}

/// What the writer needs besides its connection.
pub(crate) struct WriterParts {
    pub(crate) index: Connection,
    pub(crate) tail: Arc<Mutex<Tail>>,
    pub(crate) head_cache: usize,
    pub(crate) group_cache: usize,
    pub(crate) max_jobs: usize,
    pub(crate) progress: Arc<Progress>,
    pub(crate) indexer: Option<thread::Thread>,
    pub(crate) wake_at: usize,
    pub(crate) checkpointer: Checkpointer,
    /// The first `inbox_log` row id to hand out: above every row in the table at open.
    pub(crate) next_log: u64,
}

impl Writer {
    pub(crate) fn new(conn: Connection, parts: WriterParts) -> Self {
        let cap = NonZeroUsize::new(parts.head_cache.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            conn,
            index: parts.index,
            heads: Heads {
                users: LruCache::with_hasher(cap, FxBuildHasher),
                conversations: LruCache::with_hasher(cap, FxBuildHasher),
                pairs: LruCache::with_hasher(cap, FxBuildHasher),
                dedupe: LruCache::with_hasher(cap, FxBuildHasher),
            },
            groups: LruCache::with_hasher(
                NonZeroUsize::new(parts.group_cache.max(1)).unwrap_or(NonZeroUsize::MIN),
                FxBuildHasher,
            ),
            restrictive: None,
            tail: parts.tail,
            max_jobs: parts.max_jobs.max(1),
            deleted_log: 0,
            next_log: parts.next_log,
            progress: parts.progress,
            indexer: parts.indexer,
            wake_at: parts.wake_at.max(1),
            checkpointer: parts.checkpointer,
        }
    }

    /// Holds further commits until the indexer has shrunk the tail back to twice its bound. The
    /// tail lives in memory, so a writer outrunning the indexer for long must wait for it; the
    /// commit queue then fills and new requests are refused as overloaded instead.
    fn wait_for_indexer(&self) {
        let started = Instant::now();
        let mut warned = false;
        while lock(&self.tail).len() >= self.wake_at.saturating_mul(2) {
            if let Some(indexer) = &self.indexer {
                indexer.unpark();
            }
            thread::sleep(std::time::Duration::from_millis(2));
            if !warned && started.elapsed() > std::time::Duration::from_secs(5) {
                tracing::warn!("commits are waiting for the indexer to catch up");
                warned = true;
            }
        }
    }

    /// Runs until a `Close` arrives or every sender is gone.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut jobs: Vec<Box<dyn WriteJob>> = Vec::new();
        let mut close = None;
        while close.is_none() {
            match rx.recv() {
                Ok(Command::Job(job)) => jobs.push(job),
                Ok(Command::Close(done)) => close = Some(done),
                Err(_) => break,
            }
            while close.is_none() && jobs.len() < self.max_jobs {
                match rx.try_recv() {
                    Ok(Command::Job(job)) => jobs.push(job),
                    Ok(Command::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                let result = self.commit(&mut jobs);
                if result.is_err() {
                    // The cache may hold heads read inside the rolled-back transaction (a user it
                    // created, say); start over from committed state.
                    self.heads.users.clear();
                    self.heads.conversations.clear();
                    self.heads.pairs.clear();
                    self.heads.dedupe.clear();
                    self.groups.clear();
                }
                for job in jobs.drain(..) {
                    job.finish(result.clone());
                }
                let pending = lock(&self.tail).len();
                if pending >= self.wake_at
                    && let Some(indexer) = &self.indexer
                {
                    indexer.unpark();
                }
                if pending >= self.wake_at.saturating_mul(HARD_TAIL_FACTOR) {
                    self.wait_for_indexer();
                }
            }
        }
        // Jobs that raced with the close are refused rather than left waiting forever.
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Job(job) = cmd {
                job.finish(Err(StoreError::Unavailable("store is closed".into())));
            }
        }
        self.checkpointer.stop();
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "final WAL checkpoint failed; the WAL will be replayed at next open");
        }
        drop(self.conn);
        if let Some(done) = close {
            let _ = done.send(());
        }
    }

    fn commit(&mut self, jobs: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
        let started = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_err)?;
        // One snapshot of the index file serves every lookup of the batch: one read lock per
        // batch instead of one per message. It stays exact because the indexer, which may
        // commit meanwhile, releases entries from the tail only through the gate held here:
        // every key is either still in the tail or was released before this snapshot began.
        let gate = self
            .progress
            .release
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let index = self.index.unchecked_transaction().map_err(store_err)?;
        let mut batch = Batch {
            conn: &tx,
            index: &index,
            heads: &mut self.heads,
            groups: &mut self.groups,
            tail: &self.tail,
            users: FxHashMap::default(),
            conversations: FxHashMap::default(),
            dedupe: FxHashMap::default(),
            greatest: FxHashMap::default(),
            appended: Vec::new(),
            pairs: Vec::new(),
            restrictive: &mut self.restrictive,
            next_log: &mut self.next_log,
        };
        for job in jobs.iter_mut() {
            job.run(&mut batch)?;
        }
        let Batch {
            users,
            conversations,
            appended,
            pairs,
            ..
        } = batch;
        // Reads only: ending the snapshot rolls nothing back.
        drop(index);
        drop(gate);
        // Inbox entries the indexer has made durable need no second copy here.
        let indexed_log = self.progress.indexed_log.load(Ordering::Acquire);
        if indexed_log > self.deleted_log {
            tx.prepare_cached("DELETE FROM inbox_log WHERE id <= ?1")
                .and_then(|mut s| s.execute([indexed_log as i64]))
                .map_err(store_err)?;
        }
        tx.commit().map_err(store_err)?;
        self.deleted_log = self.deleted_log.max(indexed_log);
        for (user, seq) in users {
            self.heads.users.put(user, seq);
        }
        for (conv, seq) in conversations {
            self.heads.conversations.put(conv, seq);
        }
        for pair in pairs {
            self.heads.pairs.put(pair, ());
        }
        if !appended.is_empty() {
            let mut tail = lock(&self.tail);
            for a in appended {
                for (user, seq, log_id) in a.entries {
                    tail.push_entry(
                        &user,
                        TailEntry {
                            seq,
                            message: a.message.clone(),
                            log_id,
                        },
                    );
                }
                tail.push_message(a.message);
            }
        }
        tracing::trace!(
            jobs = jobs.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "committed"
        );
        Ok(())
    }
}

/// A job built from a closure over the batch, answering on a oneshot channel.
pub(crate) struct FnJob<T, F> {
    f: Option<F>,
    out: Option<T>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> FnJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Batch<'_>) -> Result<T, JobError> + Send + 'static,
{
    pub(crate) fn new(f: F, reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> Self {
        Self {
            f: Some(f),
            out: None,
            reply,
        }
    }
}

impl<T, F> WriteJob for FnJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Batch<'_>) -> Result<T, JobError> + Send + 'static,
{
    fn run(&mut self, batch: &mut Batch<'_>) -> Result<(), JobError> {
        if let Some(f) = self.f.take() {
            self.out = Some(f(batch)?);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, result: Result<(), StoreError>) {
        let answer = match (result, self.out) {
            (Ok(()), Some(out)) => Ok(out),
            (Ok(()), None) => Err(StoreError::Unavailable("write job did not run".into())),
            (Err(e), _) => Err(e),
        };
        let _ = self.reply.send(answer);
    }
}
