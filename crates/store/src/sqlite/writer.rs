//! The writer thread: the only connection that writes, committing every queued job per sync.
//!
//! Jobs queue on a channel. The thread takes all that are waiting, runs them in one
//! `BEGIN IMMEDIATE` transaction, commits (one WAL sync under `synchronous=FULL`), and only then
//! reports each job's result. If the transaction fails, every job in it fails and nothing of it
//! is visible. Sequence heads (each conversation's newest seq, each user's newest inbox seq) are
//! cached here, the only place that advances them; a batch's changes to the cache apply only
//! after its commit, so a failed batch leaves no gap.

use std::{num::NonZeroUsize, sync::mpsc, time::Instant};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use rustc_hash::{FxBuildHasher, FxHashMap};
use tern_core::{ConversationId, StoreError, UserId};

use super::rows::store_err;

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
    /// Finish the queued jobs, checkpoint the WAL into the database file, and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// Committed sequence heads, bounded so memory does not grow with the number of users. Keys
/// are looked up several times per message, so a fast non-cryptographic hash is used: they are
/// validated ids, and the caches are bounded, so flooding them costs only hit rate.
struct Heads {
    users: LruCache<UserId, u64, FxBuildHasher>,
    conversations: LruCache<ConversationId, u64, FxBuildHasher>,
}

/// The open transaction as jobs see it: the connection plus the sequence heads, with this
/// batch's advances kept apart until the commit.
pub(crate) struct Batch<'a> {
    /// The connection, inside the batch's transaction.
    pub(crate) conn: &'a Connection,
    heads: &'a mut Heads,
    users: FxHashMap<UserId, u64>,
    conversations: FxHashMap<ConversationId, u64>,
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
        let seq: Option<i64> = self
            .conn
            .prepare_cached(super::reader::INBOX_HEAD_OF_EXISTING_USER)?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?;
        if let Some(seq) = seq {
            // Cached right away: the value is committed state, independent of this batch.
            self.heads.users.put(user.clone(), seq as u64);
        }
        Ok(seq.map(|s| s as u64))
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
        let seq: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM messages WHERE conversation = ?1")?
            .query_row([conversation.as_str()], |r| r.get(0))?;
        self.heads
            .conversations
            .put(conversation.clone(), seq as u64);
        Ok(seq as u64)
    }

    /// Advances `conversation`'s head within this batch.
    pub(crate) fn set_conversation_head(&mut self, conversation: &ConversationId, seq: u64) {
        self.conversations.insert(conversation.clone(), seq);
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    heads: Heads,
    max_jobs: usize,
}

impl Writer {
    pub(crate) fn new(conn: Connection, head_cache: usize, max_jobs: usize) -> Self {
        let cap = NonZeroUsize::new(head_cache.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            conn,
            heads: Heads {
                users: LruCache::with_hasher(cap, FxBuildHasher),
                conversations: LruCache::with_hasher(cap, FxBuildHasher),
            },
            max_jobs: max_jobs.max(1),
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
                }
                for job in jobs.drain(..) {
                    job.finish(result.clone());
                }
            }
        }
        // Jobs that raced with the close are refused rather than left waiting forever.
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Job(job) = cmd {
                job.finish(Err(StoreError::Unavailable("store is closed".into())));
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
            users: FxHashMap::default(),
            conversations: FxHashMap::default(),
        };
        for job in jobs.iter_mut() {
            job.run(&mut batch)?;
        }
        let Batch {
            users,
            conversations,
            ..
        } = batch;
        tx.commit().map_err(store_err)?;
        for (user, seq) in users {
            self.heads.users.put(user, seq);
        }
        for (conv, seq) in conversations {
            self.heads.conversations.put(conv, seq);
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
