//! The indexer: copies the tail into the keyed indexes, on its own thread and its own database
//! file (`tern-index.db`), so that building indexes and checkpointing them never blocks a
//! commit.
//!
//! Order is what keeps every entry visible exactly once: an index transaction commits first,
//! and only then are its entries removed from the tail and its `inbox_log` rows released for
//! deletion. Readers look at the tail before the indexes, so an entry leaving the tail is
//! already in the indexes they read next.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use rusqlite::{Connection, TransactionBehavior, params};
use tern_core::{
    StoreError, UserId,
    search::{IndexChange, index_change},
    store::StoredMessage,
};

use super::{
    Pragmas, open_connection,
    rows::{MESSAGE_COLUMNS, message_from_row, store_err},
    tail::Tail,
};

/// When and how much the indexer copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPolicy {
    /// How long the indexer sleeps between runs (a long tail wakes it earlier).
    pub(crate) interval: Duration,
    /// Messages copied per index transaction.
    pub(crate) chunk: usize,
    /// A tail this long is indexed without waiting for the interval.
    pub(crate) max_tail: usize,
}

/// What the writer and the indexer share.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The largest `inbox_log` row id whose entry is durably indexed in this process: rows up
    /// to it may go. Kept in memory only: row ids grow with message ids within one process,
    /// and at open the rows already indexed are found by message id against the watermark.
    pub(crate) indexed_log: AtomicU64,
    /// Set to stop the indexer after it has indexed the whole tail.
    stop: AtomicBool,
    /// Held by the writer while a batch looks keys up, and by the indexer while it releases
    /// entries from the tail, so that a batch never misses an entry that moves mid-batch.
    pub(crate) release: Mutex<()>,
}

/// The running indexer thread.
#[derive(Debug)]
pub(crate) struct Indexer {
    thread: Option<thread::JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl Indexer {
    /// Starts indexing `tail` into the index database at `path`.
    pub(crate) fn start(
        path: &Path,
        pragmas: Pragmas,
        tail: Arc<Mutex<Tail>>,
        policy: IndexPolicy,
        progress: Arc<Progress>,
    ) -> rusqlite::Result<Self> {
        let conn = open_connection(path, pragmas, false, None)?;
        let shared = progress.clone();
        let thread = thread::Builder::new()
            .name("tern-sqlite-index".into())
            .spawn(move || run(conn, tail, policy, shared))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            thread: Some(thread),
            progress,
        })
    }

    /// A handle that wakes the indexer.
    pub(crate) fn waker(&self) -> Option<thread::Thread> {
        self.thread.as_ref().map(|t| t.thread().clone())
    }

    /// Indexes the whole tail, checkpoints, and stops.
    pub(crate) fn stop(&mut self) {
        self.progress.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|p| p.into_inner())
}

/// The indexer thread's nice value (higher is lower priority).
const INDEXER_NICE: i32 = 10;

fn run(mut conn: Connection, tail: Arc<Mutex<Tail>>, policy: IndexPolicy, progress: Arc<Progress>) {
    // Indexing is background work: when it competes with the writer and the connections for a
    // core, it should yield to them rather than add its bursts to their latency.
    // Nice 10, or the process's own level if that is lower still: never a higher priority
    // than the rest of the process (as root, setting 10 under `nice -n 15` would raise it).
    let nice =
        rustix::process::getpriority_process(None).map_or(INDEXER_NICE, |n| n.max(INDEXER_NICE));
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::debug!(error = %e, "could not lower the indexer thread's priority");
    }
    loop {
        let stopping = progress.stop.load(Ordering::Acquire);
        // One pass indexes what the tail holds now and leaves what arrives meanwhile to the
        // next pass. Each pass rewrites every index page its keys touch, whatever their number,
        // so a pass must gather an interval's worth of entries: chasing the arrivals would
        // shrink the passes to whatever came in during the previous one, and multiply the
        // writes.
        let Some(upto) = lock(&tail).newest_id() else {
            if stopping {
                break;
            }
            thread::park_timeout(policy.interval.max(Duration::from_millis(1)));
            continue;
        };
        let mut failed = false;
        loop {
            match index_chunk(
                &mut conn,
                &tail,
                &progress.release,
                upto,
                policy.chunk.max(1),
            ) {
                Ok(Some(last_log)) => {
                    progress.indexed_log.fetch_max(last_log, Ordering::AcqRel);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "indexing the tail failed; it stays in memory and is retried");
                    failed = true;
                    thread::sleep(Duration::from_millis(100));
                    if stopping {
                        break;
                    }
                }
            }
        }
        if stopping {
            // What is left (after a failure, or committed during this pass) is read back from
            // the append-only tables at the next open.
            if failed || lock(&tail).len() == 0 {
                break;
            }
            continue;
        }
        // A tail past its bound is indexed again at once.
        if lock(&tail).len() < policy.max_tail {
            thread::park_timeout(policy.interval.max(Duration::from_millis(1)));
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "final index checkpoint failed; the WAL will be replayed at next open");
    }
}

/// An inbox entry to index: `(seq, message id, inbox_log row)`.
type PendingEntry = (u64, u64, u64);

/// Copies the oldest `chunk` messages of the tail with ids up to `limit` (and their inbox
/// entries) into the indexes in one transaction, sorted by key, then drops them from the tail.
/// Returns the largest `inbox_log` row id copied, or `None` when there was nothing to copy.
fn index_chunk(
    conn: &mut Connection,
    tail: &Mutex<Tail>,
    release: &Mutex<()>,
    limit: u64,
    chunk: usize,
) -> Result<Option<u64>, StoreError> {
    // Collected under the tail lock, which the writer takes for every message: one key clone
    // per user, not per entry.
    let (upto, mut messages, inboxes) = {
        let tail = lock(tail);
        let messages: Vec<Arc<StoredMessage>> = tail
            .messages
            .range(..=limit)
            .take(chunk)
            .map(|(_, m)| m.clone())
            .collect();
        let Some(upto) = messages.last().map(|m| m.id.0) else {
            return Ok(None);
        };
        let inboxes: Vec<(UserId, Vec<PendingEntry>)> = tail
            .inboxes
            .iter()
            .filter(|(_, v)| v.first().is_some_and(|e| e.message.id.0 <= upto))
            .map(|(user, v)| {
                let entries = v
                    .iter()
                    .take_while(|e| e.message.id.0 <= upto)
                    .map(|e| (e.seq, e.message.id.0, e.log_id))
                    .collect();
                (user.clone(), entries)
            })
            .collect();
        (upto, messages, inboxes)
    };
    let mut entries: Vec<(&UserId, u64, u64, u64)> = inboxes
        .iter()
        .flat_map(|(user, v)| v.iter().map(move |&(seq, id, log)| (user, seq, id, log)))
        .collect();
    let last_log = entries.iter().map(|e| e.3).max().unwrap_or(0);
    let tx = conn
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
        messages.sort_by(|a, b| (&a.sender, &a.client_msg_id).cmp(&(&b.sender, &b.client_msg_id)));
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO dedupe_index (sender, client_msg_id, message_id) VALUES (?1, ?2, ?3)",
            )
            .map_err(store_err)?;
        // Group events carry no client message id: there is no retry to recognise.
        for m in messages.iter().filter(|m| !m.client_msg_id.is_empty()) {
            ins.execute(params![m.sender.as_str(), m.client_msg_id, m.id.0 as i64])
                .map_err(store_err)?;
        }
        entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut ins = tx
            .prepare_cached("INSERT INTO inbox (user_id, seq, message_id) VALUES (?1, ?2, ?3)")
            .map_err(store_err)?;
        for (user, seq, message_id, _) in &entries {
            ins.execute(params![user.as_str(), *seq as i64, *message_id as i64])
                .map_err(store_err)?;
        }
        // Search changes in commit order: an edit or a recall follows what it amends.
        messages.sort_by_key(|m| m.id.0);
        apply_search(&tx, messages.iter().map(|m| &**m))?;
        tx.prepare_cached(
            "UPDATE index_state SET indexed_upto = ?1, search_upto = ?1 WHERE id = 1",
        )
        .and_then(|mut s| s.execute([upto as i64]))
        .map_err(store_err)?;
    }
    tx.commit().map_err(store_err)?;
    let gone = {
        let _gate = release.lock().unwrap_or_else(|p| p.into_inner());
        lock(tail).indexed_upto(upto)
    };
    drop(gone);
    tracing::trace!(
        messages = messages.len(),
        entries = entries.len(),
        "indexed"
    );
    Ok(Some(last_log))
}

/// Applies what `messages` (in commit order) change in the search index.
pub(crate) fn apply_search<'a>(
    tx: &rusqlite::Transaction<'_>,
    messages: impl Iterator<Item = &'a StoredMessage>,
) -> Result<(), StoreError> {
    let mut remove = tx
        .prepare_cached("DELETE FROM search WHERE rowid = ?1")
        .map_err(store_err)?;
    let mut put = tx
        .prepare_cached(
            "INSERT INTO search (rowid, text, conversation, seq, sender) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(store_err)?;
    for m in messages {
        match index_change(m) {
            Some(IndexChange::Put {
                id,
                conversation,
                seq,
                sender,
                text,
            }) => {
                // An edit replaces its target's row. A message's own text needs no delete: each
                // message is applied once, in the transaction that moves the watermark past it.
                if id != m.id {
                    remove.execute([id.0 as i64]).map_err(store_err)?;
                }
                put.execute(params![
                    id.0 as i64,
                    text,
                    conversation.as_str(),
                    seq as i64,
                    sender.as_str()
                ])
                .map_err(store_err)?;
            }
            Some(IndexChange::Remove(id)) => {
                remove.execute([id.0 as i64]).map_err(store_err)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Adds to the search index the messages indexed before it existed (up to the watermark), from
/// the message table of `main`: once, at the first open by a build that searches.
pub(crate) fn backfill_search(main: &Connection, index: &mut Connection) -> Result<(), StoreError> {
    let (mut done, upto): (i64, i64) = index
        .query_row(
            "SELECT search_upto, indexed_upto FROM index_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(store_err)?;
    if done >= upto {
        return Ok(());
    }
    tracing::info!(
        from = done,
        to = upto,
        "adding stored messages to the search index"
    );
    let mut read = main
        .prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id > ?1 AND m.id <= ?2 ORDER BY m.id LIMIT 5000"
        ))
        .map_err(store_err)?;
    while done < upto {
        let chunk: Vec<StoredMessage> = read
            .query_map([done, upto], |r| Ok(message_from_row(r, 0)))
            .map_err(store_err)?
            .collect::<Result<Result<Vec<_>, _>, _>>()
            .map_err(store_err)??;
        let last = chunk.last().map_or(upto, |m| m.id.0 as i64);
        let tx = index
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_err)?;
        apply_search(&tx, chunk.iter())?;
        tx.execute(
            "UPDATE index_state SET search_upto = ?1 WHERE id = 1",
            [last],
        )
        .map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        done = last;
    }
    Ok(())
}
