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
use rustc_hash::FxHashMap;
use tern_core::{
    ConversationId, MessageId, StoreError, UserId,
    content::Content,
    search::{Candidate, IndexChange, SearchRequest, index_change},
    store::{
        ConversationSummary, Direction, HistoryPage, InboxEntry, InboxEvent, InboxPage,
        MAX_UNREAD_COUNTED, StoredMessage, SummaryQuery,
    },
};

use super::{
    Pragmas, open_connection,
    rows::{MESSAGE_COLUMNS, message_from_row, store_err},
    tail::{Tail, TailEntry},
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
    /// `n` read-only connections to the main file, each with the index file attached as `ix`.
    pub(crate) fn open(
        path: &Path,
        index_path: &Path,
        n: usize,
        pragmas: Pragmas,
    ) -> rusqlite::Result<Self> {
        let conns = (0..n)
            .map(|_| {
                let conn = open_connection(path, pragmas, true, None)?;
                conn.execute("ATTACH DATABASE ?1 AS ix", [index_path.to_string_lossy()])?;
                Ok(Mutex::new(conn))
            })
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

/// A conversation's unindexed messages and the watermark, taken together under the tail's lock.
fn tail_of(tail: &Mutex<Tail>, conversation: &ConversationId) -> (Vec<Arc<StoredMessage>>, u64) {
    let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    (
        tail.conversations
            .get(conversation)
            .cloned()
            .unwrap_or_default(),
        tail.watermark,
    )
}

pub(crate) fn history(
    conn: &Connection,
    tail: &Mutex<Tail>,
    conversation: &ConversationId,
    anchor_seq: u64,
    direction: Direction,
    limit: u32,
) -> Result<HistoryPage, StoreError> {
    let want = limit as usize + 1;
    // The tail's part and the watermark are taken together; the indexed part is then read only up
    // to that watermark, so each message is seen once however the indexer moves meanwhile. A
    // conversation's unindexed messages are its newest, so the two parts simply concatenate.
    let (newest, watermark) = tail_of(tail, conversation);
    let mut messages: Vec<StoredMessage>;
    match direction {
        Direction::Backward => {
            let anchor = if anchor_seq == 0 {
                u64::MAX
            } else {
                anchor_seq
            };
            // Newest first.
            let mut picked: Vec<StoredMessage> = newest
                .iter()
                .rev()
                .filter(|m| m.seq < anchor)
                .take(want)
                .map(|m| (**m).clone())
                .collect();
            if picked.len() < want {
                let below = picked.last().map_or(anchor, |m| m.seq).min(anchor);
                picked.extend(indexed_history(
                    conn,
                    conversation,
                    watermark,
                    below,
                    Direction::Backward,
                    want - picked.len(),
                )?);
            }
            messages = picked;
        }
        Direction::Forward => {
            messages = indexed_history(
                conn,
                conversation,
                watermark,
                anchor_seq,
                Direction::Forward,
                want,
            )?;
            let after = messages
                .last()
                .map_or(anchor_seq, |m| m.seq)
                .max(anchor_seq);
            let room = want - messages.len();
            messages.extend(
                newest
                    .iter()
                    .filter(|m| m.seq > after)
                    .take(room)
                    .map(|m| (**m).clone()),
            );
        }
    }
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    if direction == Direction::Backward {
        messages.reverse();
    }
    amend(conn, &mut messages)?;
    Ok(HistoryPage { messages, has_more })
}

/// Shows each message as it is now: applies the newest edit and the recall, if any, from the
/// events recorded in `amendments`. Amendments are rare, so one range query finds those of a
/// whole page.
pub(crate) fn amend(conn: &Connection, messages: &mut [StoredMessage]) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) = (
        messages.iter().map(|m| m.id.0).min(),
        messages.iter().map(|m| m.id.0).max(),
    ) else {
        return Ok(());
    };
    let rows: Vec<(u64, Option<i64>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT message_id, recall_event, edit_event FROM amendments WHERE message_id BETWEEN ?1 AND ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![lo as i64, hi as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(store_err)?;
    for (id, recall, edit) in rows {
        let Some(message) = messages.iter_mut().find(|m| m.id.0 == id) else {
            continue;
        };
        for event in [edit, recall].into_iter().flatten() {
            let event = conn
                .prepare_cached(MESSAGE_BY_ID)
                .and_then(|mut s| s.query_row([event], |row| Ok(message_from_row(row, 0))))
                .map_err(store_err)??;
            tern_core::conversations::apply_amendment(message, &event);
        }
    }
    // An edit event of a message recalled since carries no text either.
    let mut recalled = conn
        .prepare_cached(
            "SELECT 1 FROM amendments WHERE message_id = ?1 AND recall_event IS NOT NULL",
        )
        .map_err(store_err)?;
    for m in messages.iter_mut() {
        if let Content::Edit(e) = &m.content
            && recalled
                .exists([e.message_id.0.min(i64::MAX as u64) as i64])
                .map_err(store_err)?
        {
            tern_core::conversations::withdraw_edit(m);
        }
    }
    Ok(())
}

/// One message by id, laid out for `message_from_row`.
pub(crate) const MESSAGE_BY_ID: &str = "SELECT m.id, m.conversation, m.seq, m.sender, m.client_msg_id, m.server_time_ms, m.sender_inbox_seq, m.content FROM messages m WHERE m.id = ?1";

/// Indexed messages of a conversation beyond `anchor` in `direction`, up to the watermark.
fn indexed_history(
    conn: &Connection,
    conversation: &ConversationId,
    watermark: u64,
    anchor: u64,
    direction: Direction,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let sql = match direction {
        Direction::Backward => format!(
            "SELECT {MESSAGE_COLUMNS} FROM ix.conversation_index c JOIN messages m ON m.id = c.message_id
             WHERE c.conversation = ?1 AND c.seq < ?2 AND c.message_id <= ?3
             ORDER BY c.seq DESC LIMIT ?4"
        ),
        Direction::Forward => format!(
            "SELECT {MESSAGE_COLUMNS} FROM ix.conversation_index c JOIN messages m ON m.id = c.message_id
             WHERE c.conversation = ?1 AND c.seq > ?2 AND c.message_id <= ?3
             ORDER BY c.seq ASC LIMIT ?4"
        ),
    };
    let anchor = anchor.min(i64::MAX as u64) as i64;
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    let mut rows = stmt
        .query(params![
            conversation.as_str(),
            anchor,
            watermark as i64,
            limit as i64
        ])
        .map_err(store_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(store_err)? {
        out.push(message_from_row(row, 0)?);
    }
    Ok(out)
}

/// The newest inbox seq of a user in the keyed index, as one row, or no row if the user does
/// not exist.
pub(crate) const INBOX_HEAD_OF_EXISTING_USER: &str = "SELECT (SELECT coalesce(max(seq), 0) FROM ix.inbox WHERE user_id = ?1) FROM users WHERE id = ?1";

/// The newest indexed inbox seq of a user (the caller consults the tail first).
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
    tail: &Mutex<Tail>,
    user: &UserId,
    after: u64,
    limit: u32,
) -> Result<InboxPage, StoreError> {
    let (newest, watermark): (Vec<TailEntry>, u64) = {
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        (
            tail.inboxes.get(user).cloned().unwrap_or_default(),
            tail.watermark,
        )
    };
    let mut entries = Vec::new();
    // Entries in the index come before the tail's: read them only if the page starts there.
    if newest.first().is_none_or(|first| after + 1 < first.seq) {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT i.seq, {MESSAGE_COLUMNS} FROM ix.inbox i JOIN messages m ON m.id = i.message_id
                 WHERE i.user_id = ?1 AND i.seq > ?2 AND i.message_id <= ?3 ORDER BY i.seq LIMIT ?4"
            ))
            .map_err(store_err)?;
        let mut rows = stmt
            .query(params![
                user.as_str(),
                after as i64,
                watermark as i64,
                i64::from(limit)
            ])
            .map_err(store_err)?;
        while let Some(row) = rows.next().map_err(store_err)? {
            let seq = row.get::<_, i64>(0).map_err(store_err)? as u64;
            entries.push(InboxEntry {
                seq,
                event: InboxEvent::Message(Arc::new(message_from_row(row, 1)?)),
            });
        }
    }
    let last = entries.last().map_or(after, |e| e.seq).max(after);
    for e in newest.iter().filter(|e| e.seq > last) {
        if entries.len() >= limit as usize {
            break;
        }
        entries.push(InboxEntry {
            seq: e.seq,
            event: InboxEvent::Message(e.message.clone()),
        });
    }
    amend_entries(conn, &mut entries)?;
    let head = match newest.last() {
        Some(e) => e.seq,
        // Up to the watermark, like the entries: the indexer may have moved newer ones since.
        None => conn
            .prepare_cached("SELECT seq FROM ix.inbox WHERE user_id = ?1 AND message_id <= ?2 ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row(params![user.as_str(), watermark as i64], |r| r.get::<_, i64>(0)).optional())
            .map(|h| h.unwrap_or(0) as u64)
            .map_err(store_err)?,
    };
    Ok(InboxPage { entries, head })
}

/// The newest seq of a conversation: from the tail if it has unindexed messages (its newest),
/// else from the index, which then holds every one of them.
pub(crate) fn conversation_head(
    conn: &Connection,
    tail: &Mutex<Tail>,
    conversation: &ConversationId,
) -> Result<u64, StoreError> {
    let in_tail = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .conversation_head(conversation);
    if let Some(head) = in_tail {
        return Ok(head);
    }
    conn.prepare_cached(
        "SELECT coalesce(max(seq), 0) FROM ix.conversation_index WHERE conversation = ?1",
    )
    .and_then(|mut s| s.query_row([conversation.as_str()], |r| r.get::<_, i64>(0)))
    .map(|h| h as u64)
    .map_err(store_err)
}

/// [`amend`] for inbox entries, whose messages are shared: only amended ones are copied, and a
/// page with nothing to amend (nearly every page) costs one indexed probe and no copy.
fn amend_entries(conn: &Connection, entries: &mut [InboxEntry]) -> Result<(), StoreError> {
    let ids = entries.iter().map(|e| {
        let InboxEvent::Message(m) = &e.event;
        m.id.0
    });
    let (Some(lo), Some(hi)) = (ids.clone().min(), ids.max()) else {
        return Ok(());
    };
    let has_edit = entries.iter().any(|e| {
        let InboxEvent::Message(m) = &e.event;
        matches!(m.content, Content::Edit(_))
    });
    let amended = conn
        .prepare_cached("SELECT 1 FROM amendments WHERE message_id BETWEEN ?1 AND ?2 LIMIT 1")
        .and_then(|mut s| s.exists(params![lo as i64, hi as i64]))
        .map_err(store_err)?;
    if !amended && !has_edit {
        return Ok(());
    }
    let mut messages: Vec<StoredMessage> = entries
        .iter()
        .map(|e| {
            let InboxEvent::Message(m) = &e.event;
            (**m).clone()
        })
        .collect();
    amend(conn, &mut messages)?;
    for (entry, amended) in entries.iter_mut().zip(messages) {
        let InboxEvent::Message(m) = &mut entry.event;
        if **m != amended {
            *m = Arc::new(amended);
        }
    }
    Ok(())
}

/// The one-to-one conversations of `user`.
pub(crate) fn direct_conversations(
    conn: &Connection,
    user: &UserId,
) -> Result<Vec<ConversationId>, StoreError> {
    conn.prepare_cached("SELECT conversation FROM user_conversations WHERE user_id = ?1")
        .and_then(|mut s| {
            s.query_map([user.as_str()], |r| {
                Ok(ConversationId::from_stored(&r.get::<_, String>(0)?))
            })?
            .collect()
        })
        .map_err(store_err)
}

/// `(read_seq, pinned, muted)` of `user` in `conversation`.
pub(crate) fn state(
    conn: &Connection,
    user: &UserId,
    conversation: &ConversationId,
) -> Result<(u64, bool, bool), StoreError> {
    conn.prepare_cached(
        "SELECT read_seq, pinned, muted FROM conversation_states WHERE user_id = ?1 AND conversation = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![user.as_str(), conversation.as_str()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })
        .optional()
    })
    .map(|r| r.unwrap_or((0, false, false)))
    .map_err(store_err)
}

/// Messages of `conversation` after `after` that count as unread for `user`: sent by someone
/// else, not events (which have no client message id), not recalled; at most
/// [`MAX_UNREAD_COUNTED`].
fn unread(
    conn: &Connection,
    tail: &Mutex<Tail>,
    user: &UserId,
    conversation: &ConversationId,
    after: u64,
) -> Result<u64, StoreError> {
    let (newest, watermark) = tail_of(tail, conversation);
    let mut count = 0;
    let mut recalled = conn
        .prepare_cached(
            "SELECT 1 FROM amendments WHERE message_id = ?1 AND recall_event IS NOT NULL",
        )
        .map_err(store_err)?;
    for m in newest
        .iter()
        .filter(|m| m.seq > after && &m.sender != user && !m.client_msg_id.is_empty())
    {
        if !recalled.exists([m.id.0 as i64]).map_err(store_err)? {
            count += 1;
        }
    }
    if count >= MAX_UNREAD_COUNTED {
        return Ok(MAX_UNREAD_COUNTED);
    }
    // Counting stops at the cap, so a huge unread backlog costs a bounded scan.
    let indexed: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (
               SELECT 1 FROM ix.conversation_index c JOIN messages m ON m.id = c.message_id
               WHERE c.conversation = ?1 AND c.seq > ?2 AND c.message_id <= ?3
                 AND m.sender <> ?4 AND m.client_msg_id <> ''
                 AND NOT EXISTS (SELECT 1 FROM amendments a WHERE a.message_id = m.id AND a.recall_event IS NOT NULL)
               LIMIT ?5)",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    conversation.as_str(),
                    after.min(i64::MAX as u64) as i64,
                    watermark as i64,
                    user.as_str(),
                    (MAX_UNREAD_COUNTED - count) as i64
                ],
                |r| r.get(0),
            )
        })
        .map_err(store_err)?;
    Ok(count + indexed as u64)
}

/// The summary of each wanted conversation for `user`.
pub(crate) fn summaries(
    conn: &Connection,
    tail: &Mutex<Tail>,
    user: &UserId,
    wanted: Vec<SummaryQuery>,
) -> Result<Vec<ConversationSummary>, StoreError> {
    let mut out = Vec::with_capacity(wanted.len());
    for q in wanted {
        let max_seq = conversation_head(conn, tail, &q.conversation)?;
        let (read_seq, pinned, muted) = state(conn, user, &q.conversation)?;
        let last = history(conn, tail, &q.conversation, 0, Direction::Backward, 1)?
            .messages
            .pop();
        let unread = unread(conn, tail, user, &q.conversation, read_seq.max(q.floor))?;
        // A peer's read mark is its receipt: none crosses a block, either way.
        let peer_read_seq = match &q.peer {
            Some(peer) if !super::social::blocks_either(conn, user, peer).map_err(store_err)? => {
                state(conn, peer, &q.conversation)?.0
            }
            _ => 0,
        };
        out.push(ConversationSummary {
            conversation: q.conversation,
            max_seq,
            read_seq,
            unread,
            last,
            pinned,
            muted,
            peer_read_seq,
        });
    }
    Ok(out)
}

/// The read mark of each of `users` in `conversation`.
pub(crate) fn read_marks(
    conn: &Connection,
    conversation: &ConversationId,
    users: &[UserId],
) -> Result<Vec<u64>, StoreError> {
    users
        .iter()
        .map(|u| state(conn, u, conversation).map(|s| s.0))
        .collect()
}

/// Search candidates: the unindexed tail's (scanned in memory) and the search index's, newest
/// first. The tail is taken with its watermark and the index read only up to it, so a message
/// moving from the tail to the index meanwhile is seen once.
pub(crate) fn search(
    conn: &Connection,
    tail: &Mutex<Tail>,
    request: &SearchRequest,
) -> Result<Vec<Candidate>, StoreError> {
    let (unindexed, watermark): (Vec<Arc<StoredMessage>>, u64) = {
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        (tail.messages.values().cloned().collect(), tail.watermark)
    };
    let floors: Option<FxHashMap<&str, u64>> = request.scope.as_ref().map(|s| {
        s.iter()
            .map(|s| (s.conversation.as_str(), s.from_seq))
            .collect()
    });
    let wanted = |conversation: &str, seq: u64, sender: &str, id: u64| {
        (request.before == 0 || id < request.before)
            && request.sender.as_ref().is_none_or(|s| s.as_str() == sender)
            && floors
                .as_ref()
                .is_none_or(|f| f.get(conversation).is_some_and(|from| seq >= *from))
    };
    let limit = request.limit as usize;
    let mut found: Vec<Candidate> = Vec::new();
    for m in unindexed.iter().rev() {
        if let Some(IndexChange::Put {
            id,
            conversation,
            seq,
            sender,
            text,
        }) = index_change(m)
            && text.contains(&request.query)
            && wanted(conversation.as_str(), seq, sender.as_str(), id.0)
        {
            found.push(Candidate {
                id,
                conversation,
                seq,
            });
        }
    }
    // One conversation is filtered in SQL; a wider scope row by row as the index streams its
    // matches newest first, stopping once enough are found.
    let one = match &request.scope {
        Some(s) if s.len() == 1 => Some(s[0].conversation.as_str().to_owned()),
        _ => None,
    };
    let (matcher, pattern) = if request.query.chars().count() >= 3 {
        // A phrase of the trigram tokenizer matches any substring of three characters or more.
        (
            "search MATCH ?1",
            format!("\"{}\"", request.query.replace('"', "\"\"")),
        )
    } else {
        // Shorter queries have no trigram: LIKE scans the index's texts.
        let escaped = request
            .query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        ("text LIKE ?1 ESCAPE '\\'", format!("%{escaped}%"))
    };
    let sql = format!(
        "SELECT rowid, conversation, seq, sender FROM ix.search
         WHERE {matcher} AND rowid <= ?2 AND (?3 = 0 OR rowid < ?3) AND (?4 IS NULL OR conversation = ?4)
         ORDER BY rowid DESC"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    let mut rows = stmt
        .query(params![
            pattern,
            watermark as i64,
            request.before as i64,
            one
        ])
        .map_err(store_err)?;
    let mut from_index = 0;
    while from_index < limit {
        let Some(row) = rows.next().map_err(store_err)? else {
            break;
        };
        let id = row.get::<_, i64>(0).map_err(store_err)? as u64;
        let conversation: String = row.get(1).map_err(store_err)?;
        let seq = row.get::<_, i64>(2).map_err(store_err)? as u64;
        let sender: String = row.get(3).map_err(store_err)?;
        if !wanted(&conversation, seq, &sender, id) {
            continue;
        }
        let (conversation, _) = ConversationId::parse(&conversation).map_err(|_| {
            StoreError::Corrupt(format!(
                "search row {id} names conversation {conversation:?}"
            ))
        })?;
        found.push(Candidate {
            id: MessageId(id),
            conversation,
            seq,
        });
        from_index += 1;
    }
    found.sort_by_key(|c| std::cmp::Reverse(c.id));
    found.dedup_by(|a, b| a.id == b.id);
    found.truncate(limit);
    Ok(found)
}
