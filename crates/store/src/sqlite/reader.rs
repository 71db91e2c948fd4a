//! Read connections and the read queries. Reads run on Tokio's blocking pool, beside the
//! writer: WAL lets them see the last committed state without waiting for it.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use rusqlite::{Connection, OptionalExtension, params};
use tern_core::{
    ConversationId, StoreError, UserId,
    store::{Direction, HistoryPage, InboxEntry, InboxEvent, InboxPage},
};

use super::{
    Synchronous, open_connection,
    rows::{MESSAGE_COLUMNS, message_from_row, store_err},
};

/// A fixed set of read-only connections.
#[derive(Debug)]
pub(crate) struct ReaderPool {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: AtomicUsize,
    /// One permit per connection: reads beyond that wait here, not as blocked threads.
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReaderPool {
    pub(crate) fn open(path: &Path, n: usize, synchronous: Synchronous) -> rusqlite::Result<Self> {
        let conns = (0..n)
            .map(|_| open_connection(path, synchronous, true, None).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            permits: Arc::new(tokio::sync::Semaphore::new(conns.len())),
            conns: Arc::new(conns),
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection (or waits for one) on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        let conns = self.conns.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let n = conns.len();
            // Prefer an idle connection; otherwise queue on the round-robin choice.
            for i in 0..n {
                if let Ok(conn) = conns[(start + i) % n].try_lock() {
                    return f(&conn);
                }
            }
            let conn = conns[start % n].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

pub(crate) fn history(
    conn: &Connection,
    conversation: &ConversationId,
    anchor_seq: u64,
    direction: Direction,
    limit: u32,
) -> Result<HistoryPage, StoreError> {
    let fetch = i64::from(limit) + 1;
    let (sql, anchor) = match direction {
        Direction::Backward => (
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = ?1 AND m.seq < ?2
                 ORDER BY m.seq DESC LIMIT ?3"
            ),
            if anchor_seq == 0 {
                i64::MAX
            } else {
                anchor_seq as i64
            },
        ),
        Direction::Forward => (
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = ?1 AND m.seq > ?2
                 ORDER BY m.seq ASC LIMIT ?3"
            ),
            anchor_seq as i64,
        ),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    let mut rows = stmt
        .query(params![conversation.as_str(), anchor, fetch])
        .map_err(store_err)?;
    let mut messages = Vec::new();
    while let Some(row) = rows.next().map_err(store_err)? {
        messages.push(message_from_row(row, 0)?);
    }
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    if direction == Direction::Backward {
        messages.reverse();
    }
    Ok(HistoryPage { messages, has_more })
}

/// The newest inbox seq of a user, as one row, or no row if the user does not exist.
pub(crate) const INBOX_HEAD_OF_EXISTING_USER: &str =
    "SELECT (SELECT coalesce(max(seq), 0) FROM inbox WHERE user_id = ?1) FROM users WHERE id = ?1";

pub(crate) fn inbox_head(conn: &Connection, user: &UserId) -> Result<u64, StoreError> {
    conn.prepare_cached(INBOX_HEAD_OF_EXISTING_USER)
        .and_then(|mut s| {
            s.query_row([user.as_str()], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|h| h.unwrap_or(0) as u64)
        .map_err(store_err)
}

pub(crate) fn inbox(
    conn: &Connection,
    user: &UserId,
    after: u64,
    limit: u32,
) -> Result<InboxPage, StoreError> {
    // One read transaction so that the head and the entries come from the same snapshot.
    conn.execute_batch("BEGIN DEFERRED").map_err(store_err)?;
    let result = (|| {
        let head = inbox_head(conn, user)?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT i.seq, {MESSAGE_COLUMNS} FROM inbox i JOIN messages m ON m.id = i.message_id
                 WHERE i.user_id = ?1 AND i.seq > ?2 ORDER BY i.seq LIMIT ?3"
            ))
            .map_err(store_err)?;
        let mut rows = stmt
            .query(params![user.as_str(), after as i64, i64::from(limit)])
            .map_err(store_err)?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next().map_err(store_err)? {
            let seq = row.get::<_, i64>(0).map_err(store_err)? as u64;
            let message = message_from_row(row, 1)?;
            entries.push(InboxEntry {
                seq,
                event: InboxEvent::Message(Arc::new(message)),
            });
        }
        Ok(InboxPage { entries, head })
    })();
    conn.execute_batch("COMMIT").map_err(store_err)?;
    result
}
