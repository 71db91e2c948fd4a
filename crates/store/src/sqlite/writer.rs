//! The writer thread: the only connection that writes. It commits every queued job per sync
//! and, between commits, moves the tail into the keyed indexes.
//!
//! Jobs queue on a channel. The thread takes all that are waiting, runs them in one
//! `BEGIN IMMEDIATE` transaction, commits (one WAL sync under `synchronous=FULL`), and only then
//! reports each job's result. If the transaction fails, every job in it fails and nothing of it
//! is visible. Message appends only append rows (see `tail.rs`); after the commit they join the
//! in-memory tail, and every `index_interval` the indexer copies the oldest part of the tail into
//! the keyed indexes in one transaction, sorted by key.
//!
//! Sequence heads (each conversation's newest seq, each user's newest inbox seq) are cached
//! here, the only place that advances them; a batch's changes to the cache apply only after its
//! commit, so a failed batch leaves no gap.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rustc_hash::{FxBuildHasher, FxHashMap};
use tern_core::{ConversationId, StoreError, UserId, store::StoredMessage};

use super::{
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
    /// Finish the queued jobs, index the whole tail, checkpoint the WAL, and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// When the indexer runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPolicy {
    /// At most this long between indexer runs while the tail is not empty.
    pub(crate) interval: Duration,
    /// Messages copied per indexer transaction, so one run never stalls commits for long.
    pub(crate) chunk: usize,
    /// A tail this long is indexed at once, whatever the interval, to bound its memory.
    pub(crate) max_tail: usize,
}

/// Committed sequence heads, bounded so memory does not grow with the number of users. Keys
/// are looked up several times per message, so a fast non-cryptographic hash is used: they are
/// validated ids, and the caches are bounded, so flooding them costs only hit rate.
struct Heads {
    users: LruCache<UserId, u64, FxBuildHasher>,
    conversations: LruCache<ConversationId, u64, FxBuildHasher>,
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
    heads: &'a mut Heads,
    tail: &'a Mutex<Tail>,
    users: FxHashMap<UserId, u64>,
    conversations: FxHashMap<ConversationId, u64>,
    dedupe: FxHashMap<(UserId, String), Arc<StoredMessage>>,
    appended: Vec<Appended>,
}

/// One message by id, laid out for `message_from_row`.
const MESSAGE_BY_ID: &str = "SELECT m.id, m.conversation, m.seq, m.sender, m.client_msg_id, m.server_time_ms, m.sender_inbox_seq, m.content FROM messages m WHERE m.id = ?1";

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|p| p.into_inner())
}

impl Batch<'_> {
    /// The newest inbox seq of `user`, or `None` if the user does not exist.
    pub(crate) fn inbox_head(&mut self, user: &UserId) -> rusqlite::Result<Option<u64>> {
        if let Some(seq) = self.users.get(user) {
            return Ok(Some(*seq));
        }
        if let Some(seq) = self.heads.users.get(user) {
            return Ok(Some(*seq));
        }
        let indexed: Option<i64> = self
            .conn
            .prepare_cached(super::reader::INBOX_HEAD_OF_EXISTING_USER)?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?;
        let Some(indexed) = indexed else {
            return Ok(None);
        };
        let head = (indexed as u64).max(lock(self.tail).inbox_head(user).unwrap_or(0));
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
        let indexed: i64 = self
            .conn
            .prepare_cached(
                "SELECT coalesce(max(seq), 0) FROM conversation_index WHERE conversation = ?1",
            )?
            .query_row([conversation.as_str()], |r| r.get(0))?;
        let head =
            (indexed as u64).max(lock(self.tail).conversation_head(conversation).unwrap_or(0));
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
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Arc<StoredMessage>>, JobError> {
        let key = (sender.clone(), client_msg_id.to_owned());
        if let Some(m) = self.dedupe.get(&key) {
            return Ok(Some(m.clone()));
        }
        if let Some(m) = lock(self.tail).dedupe.get(&key) {
            return Ok(Some(m.clone()));
        }
        let id: Option<i64> = self
            .conn
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

    /// Records a message this batch appended, to join the tail after the commit.
    pub(crate) fn appended(&mut self, appended: Appended) {
        let m = &appended.message;
        self.dedupe
            .insert((m.sender.clone(), m.client_msg_id.clone()), m.clone());
        self.appended.push(appended);
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    heads: Heads,
    tail: Arc<Mutex<Tail>>,
    max_jobs: usize,
    policy: IndexPolicy,
    last_index: Instant,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        tail: Arc<Mutex<Tail>>,
        head_cache: usize,
        max_jobs: usize,
        policy: IndexPolicy,
    ) -> Self {
        let cap = NonZeroUsize::new(head_cache.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            conn,
            heads: Heads {
                users: LruCache::with_hasher(cap, FxBuildHasher),
                conversations: LruCache::with_hasher(cap, FxBuildHasher),
            },
            tail,
            max_jobs: max_jobs.max(1),
            policy,
            last_index: Instant::now(),
        }
    }

    /// Runs until a `Close` arrives or every sender is gone.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut jobs: Vec<Box<dyn WriteJob>> = Vec::new();
        let mut close = None;
        while close.is_none() {
            let first = if lock(&self.tail).len() == 0 {
                rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            } else {
                // With a tail to index, wait only until the next indexer run is due.
                rx.recv_timeout(
                    self.policy
                        .interval
                        .saturating_sub(self.last_index.elapsed()),
                )
            };
            match first {
                Ok(Command::Job(job)) => jobs.push(job),
                Ok(Command::Close(done)) => close = Some(done),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
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
                }
                for job in jobs.drain(..) {
                    job.finish(result.clone());
                }
            }
            let tail_len = lock(&self.tail).len();
            if tail_len > 0
                && (tail_len >= self.policy.max_tail
                    || self.last_index.elapsed() >= self.policy.interval)
            {
                self.index_logged();
            }
        }
        // Jobs that raced with the close are refused rather than left waiting forever.
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Job(job) = cmd {
                job.finish(Err(StoreError::Unavailable("store is closed".into())));
            }
        }
        // Leave nothing for the next open to replay.
        while lock(&self.tail).len() > 0 {
            if !self.index_logged() {
                break;
            }
        }
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
        let mut batch = Batch {
            conn: &tx,
            heads: &mut self.heads,
            tail: &self.tail,
            users: FxHashMap::default(),
            conversations: FxHashMap::default(),
            dedupe: FxHashMap::default(),
            appended: Vec::new(),
        };
        for job in jobs.iter_mut() {
            job.run(&mut batch)?;
        }
        let Batch {
            users,
            conversations,
            appended,
            ..
        } = batch;
        tx.commit().map_err(store_err)?;
        for (user, seq) in users {
            self.heads.users.put(user, seq);
        }
        for (conv, seq) in conversations {
            self.heads.conversations.put(conv, seq);
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

    /// Runs the indexer, logging a failure (the tail stays and is retried next time). Returns
    /// whether it succeeded.
    fn index_logged(&mut self) -> bool {
        self.last_index = Instant::now();
        match self.index() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "indexing the tail failed; it stays in memory and is retried");
                false
            }
        }
    }

    /// Copies the oldest part of the tail into the keyed indexes, in one transaction.
    fn index(&mut self) -> Result<(), StoreError> {
        let (upto, mut messages, mut entries) = {
            let tail = lock(&self.tail);
            let messages: Vec<Arc<StoredMessage>> = tail
                .messages
                .values()
                .take(self.policy.chunk.max(1))
                .cloned()
                .collect();
            let Some(upto) = messages.last().map(|m| m.id.0) else {
                return Ok(());
            };
            let entries: Vec<(UserId, u64, u64, u64)> = tail
                .inboxes
                .iter()
                .flat_map(|(user, v)| {
                    v.iter()
                        .take_while(|e| e.message.id.0 <= upto)
                        .map(|e| (user.clone(), e.seq, e.message.id.0, e.log_id))
                })
                .collect();
            (upto, messages, entries)
        };
        let last_log = entries.iter().map(|e| e.3).max().unwrap_or(0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_err)?;
        {
            // Inserting in key order keeps the B-tree cursor on one page while it can.
            messages.sort_by(|a, b| (&a.conversation, a.seq).cmp(&(&b.conversation, b.seq)));
            let mut ins = tx
                .prepare_cached("INSERT INTO conversation_index (conversation, seq, message_id) VALUES (?1, ?2, ?3)")
                .map_err(store_err)?;
            for m in &messages {
                ins.execute(params![
                    m.conversation.as_str(),
                    m.seq as i64,
                    m.id.0 as i64
                ])
                .map_err(store_err)?;
            }
            messages
                .sort_by(|a, b| (&a.sender, &a.client_msg_id).cmp(&(&b.sender, &b.client_msg_id)));
            let mut ins = tx
                .prepare_cached("INSERT INTO dedupe_index (sender, client_msg_id, message_id) VALUES (?1, ?2, ?3)")
                .map_err(store_err)?;
            for m in &messages {
                ins.execute(params![m.sender.as_str(), m.client_msg_id, m.id.0 as i64])
                    .map_err(store_err)?;
            }
            entries.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let mut ins = tx
                .prepare_cached("INSERT INTO inbox (user_id, seq, message_id) VALUES (?1, ?2, ?3)")
                .map_err(store_err)?;
            for (user, seq, message_id, _) in &entries {
                ins.execute(params![user.as_str(), *seq as i64, *message_id as i64])
                    .map_err(store_err)?;
            }
            tx.prepare_cached("DELETE FROM inbox_log WHERE id <= ?1")
                .and_then(|mut s| s.execute([last_log as i64]))
                .map_err(store_err)?;
            tx.prepare_cached("UPDATE index_state SET indexed_upto = ?1 WHERE id = 1")
                .and_then(|mut s| s.execute([upto as i64]))
                .map_err(store_err)?;
        }
        tx.commit().map_err(store_err)?;
        lock(&self.tail).indexed_upto(upto);
        tracing::trace!(
            messages = messages.len(),
            entries = entries.len(),
            "indexed"
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
