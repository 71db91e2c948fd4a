//! The webhook outbox in `tern.db`: rows inserted by the commit that caused their events (so
//! they are exactly as durable as the write), claimed and settled by the dispatcher through the
//! writer thread.
//!
//! One process owns the file, so leases of an earlier process mean nothing: they are cleared
//! at open, and whatever was in flight at a crash is due again at once.

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tern_core::{
    StoreError,
    webhooks::{Failure, Lane, OutboxRow, OutboxState, QueuedEvent, Routes, WebhookOutbox},
};

use super::{SqliteStore, rows::store_err, writer::JobError};

/// The columns [`queued_row`] reads, in its order.
const COLUMNS: &str =
    "seq, webhook, event_id, kind, key, body, created_ms, attempts, last_error, state";

fn queued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedEvent> {
    Ok(QueuedEvent {
        seq: r.get::<_, i64>(0)? as u64,
        webhook: r.get(1)?,
        event_id: r.get(2)?,
        kind: r.get(3)?,
        key: r.get(4)?,
        body: r.get(5)?,
        created_ms: r.get(6)?,
        attempts: r.get::<_, i64>(7)? as u32,
        last_error: r.get(8)?,
        state: if r.get::<_, i64>(9)? == 0 {
            OutboxState::Pending
        } else {
            OutboxState::Dead
        },
    })
}

/// Inserts rows inside the open transaction; how many.
pub(crate) fn insert(conn: &Connection, rows: &[OutboxRow]) -> Result<usize, JobError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO webhook_outbox (webhook, event_id, kind, key, body, created_ms, next_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in rows {
        let e = &r.event;
        stmt.execute(params![
            r.webhook,
            e.id,
            e.kind.as_str(),
            e.key,
            e.body,
            e.time_ms,
            r.due_ms
        ])?;
    }
    Ok(rows.len())
}

/// Clears the leases of an earlier process (see the module's note).
pub(crate) fn clear_leases(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE webhook_outbox SET lease_ms = 0 WHERE lease_ms <> 0",
        [],
    )?;
    Ok(())
}

#[async_trait]
impl WebhookOutbox for SqliteStore {
    fn routes(&self) -> &std::sync::Arc<Routes> {
        &self.inner.routes
    }

    async fn enqueue(&self, rows: Vec<OutboxRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |b| insert(b.conn, &rows)).await?;
        self.inner.routes.notify_queued();
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        self.write(move |b| {
            let claimed: Vec<QueuedEvent> = b
                .conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM webhook_outbox
                     WHERE seq IN (SELECT min(seq) FROM webhook_outbox
                                   WHERE state = 0 AND (substr(webhook, 1, 1) = '@') = ?3
                                   GROUP BY webhook, key)
                       AND next_ms <= ?1 AND lease_ms <= ?1
                     ORDER BY seq LIMIT ?2"
                ))?
                .query_map(params![now_ms, limit, lane.internal()], queued_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut lease = b
                .conn
                .prepare_cached("UPDATE webhook_outbox SET lease_ms = ?2 WHERE seq = ?1")?;
            for e in &claimed {
                lease.execute(params![e.seq as i64, lease_until_ms])?;
            }
            Ok(claimed)
        })
        .await
    }

    async fn extend_lease(&self, seq: u64, lease_until_ms: i64) -> Result<(), StoreError> {
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "UPDATE webhook_outbox SET lease_ms = ?2 WHERE seq = ?1 AND state = 0",
                )?
                .execute(params![seq as i64, lease_until_ms])?;
            Ok(())
        })
        .await
    }

    async fn delivered(&self, seq: u64) -> Result<(), StoreError> {
        self.write(move |b| {
            b.conn
                .prepare_cached("DELETE FROM webhook_outbox WHERE seq = ?1")?
                .execute([seq as i64])?;
            Ok(())
        })
        .await
    }

    async fn failed(&self, seq: u64, failure: &Failure) -> Result<(), StoreError> {
        let f = failure.clone();
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "UPDATE webhook_outbox
                     SET attempts = ?2, next_ms = ?3, last_error = ?4, state = ?5, lease_ms = 0
                     WHERE seq = ?1",
                )?
                .execute(params![
                    seq as i64,
                    f.attempts,
                    f.next_ms,
                    f.error,
                    i64::from(f.dead)
                ])?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<QueuedEvent>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_outbox WHERE state = 1 AND seq > ?1
                 ORDER BY seq LIMIT ?2"
            ))
            .and_then(|mut s| {
                s.query_map(params![after as i64, limit], queued_row)?
                    .collect()
            })
            .map_err(store_err)
        })
        .await
    }

    async fn replay(&self, seq: u64, now_ms: i64) -> Result<bool, StoreError> {
        let replayed = self
            .write(move |b| {
                let n = b
                    .conn
                    .prepare_cached(
                        "UPDATE webhook_outbox
                         SET state = 0, attempts = 0, next_ms = ?2, lease_ms = 0
                         WHERE seq = ?1 AND state = 1",
                    )?
                    .execute(params![seq as i64, now_ms])?;
                Ok(n == 1)
            })
            .await?;
        if replayed {
            self.inner.routes.notify_queued();
        }
        Ok(replayed)
    }

    async fn pending_count(&self, lane: Lane) -> Result<u64, StoreError> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM webhook_outbox
                 WHERE state = 0 AND (substr(webhook, 1, 1) = '@') = ?1",
                [lane.internal()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(store_err)
        })
        .await
    }
}
