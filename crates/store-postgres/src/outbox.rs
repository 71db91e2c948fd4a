//! The webhook outbox in PostgreSQL: rows inserted by the transaction that caused their
//! events, claimed by every node's dispatcher with leases.
//!
//! A claim takes only the oldest pending row of each `(webhook, key)`, and only when nobody
//! holds its lease, so one conversation's events are delivered one at a time in commit order
//! whichever node delivers them. Two nodes claiming at once both compute the heads, but the
//! update re-checks the lease on the row it locks, so only one of them gets it. A node that
//! dies holding a lease is replaced when the lease runs out.

use async_trait::async_trait;
use tern_core::{
    StoreError,
    webhooks::{Failure, Lane, OutboxRow, OutboxState, QueuedEvent, Routes, WebhookOutbox},
};
use tokio_postgres::Row;

use crate::{
    PgStore,
    rows::{exec, row, rows},
};

/// The columns [`queued_row`] reads, in its order.
const COLUMNS: &str =
    "seq, webhook, event_id, kind, key, body, created_ms, attempts, last_error, state";

fn queued_row(r: &Row) -> QueuedEvent {
    QueuedEvent {
        seq: r.get::<_, i64>(0) as u64,
        webhook: r.get(1),
        event_id: r.get(2),
        kind: r.get(3),
        key: r.get(4),
        body: r.get(5),
        created_ms: r.get(6),
        attempts: r.get::<_, i32>(7) as u32,
        last_error: r.get(8),
        state: if r.get::<_, i16>(9) == 0 {
            OutboxState::Pending
        } else {
            OutboxState::Dead
        },
    }
}

/// Inserts rows in one statement, in their order (seqs follow it).
pub(crate) async fn insert<C: deadpool_postgres::GenericClient>(
    c: &C,
    rows: &[OutboxRow],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let webhooks: Vec<&str> = rows.iter().map(|r| r.webhook.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.event.id.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.event.kind.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.event.key.as_str()).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.event.body.as_str()).collect();
    let times: Vec<i64> = rows.iter().map(|r| r.event.time_ms).collect();
    let due: Vec<i64> = rows.iter().map(|r| r.due_ms).collect();
    exec(
        c,
        "INSERT INTO webhook_outbox (webhook, event_id, kind, key, body, created_ms, next_ms)
         SELECT w, e, k, y, b, t, d
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                     $7::bigint[])
              WITH ORDINALITY AS u(w, e, k, y, b, t, d, n)
         ORDER BY n",
        &[&webhooks, &ids, &kinds, &keys, &bodies, &times, &due],
    )
    .await
}

#[async_trait]
impl WebhookOutbox for PgStore {
    fn routes(&self) -> &std::sync::Arc<Routes> {
        &self.routes
    }

    async fn enqueue(&self, rows: Vec<OutboxRow>) -> Result<(), StoreError> {
        let c = self.client().await?;
        if insert(&c, &rows).await? > 0 {
            self.routes.notify_queued();
        }
        Ok(())
    }

    async fn claim(
        &self,
        lane: Lane,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let c = self.client().await?;
        let mut claimed: Vec<QueuedEvent> = rows(
            &c,
            &format!(
                "WITH heads AS (
                     SELECT DISTINCT ON (webhook, key) seq, next_ms, lease_ms
                     FROM webhook_outbox WHERE state = 0 AND (left(webhook, 1) = '@') = $4
                     ORDER BY webhook, key, seq
                 ), due AS (
                     SELECT seq FROM heads WHERE next_ms <= $1 AND lease_ms <= $1
                     ORDER BY seq LIMIT $3
                 )
                 UPDATE webhook_outbox o SET lease_ms = $2
                 FROM due
                 WHERE o.seq = due.seq AND o.state = 0 AND o.lease_ms <= $1
                 RETURNING {}",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("o.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[
                &now_ms,
                &lease_until_ms,
                &i64::from(limit),
                &lane.internal(),
            ],
        )
        .await?
        .iter()
        .map(queued_row)
        .collect();
        claimed.sort_by_key(|e| e.seq);
        Ok(claimed)
    }

    async fn extend_lease(&self, seq: u64, lease_until_ms: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE webhook_outbox SET lease_ms = $2 WHERE seq = $1 AND state = 0",
            &[&(seq as i64), &lease_until_ms],
        )
        .await?;
        Ok(())
    }

    async fn delivered(&self, seq: u64) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "DELETE FROM webhook_outbox WHERE seq = $1",
            &[&(seq as i64)],
        )
        .await?;
        Ok(())
    }

    async fn failed(&self, seq: u64, f: &Failure) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE webhook_outbox
             SET attempts = $2, next_ms = $3, last_error = $4, state = $5, lease_ms = 0
             WHERE seq = $1",
            &[
                &(seq as i64),
                &(f.attempts as i32),
                &f.next_ms,
                &f.error,
                &i16::from(f.dead),
            ],
        )
        .await?;
        Ok(())
    }

    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<QueuedEvent>, StoreError> {
        let c = self.client().await?;
        Ok(rows(
            &c,
            &format!(
                "SELECT {COLUMNS} FROM webhook_outbox WHERE state = 1 AND seq > $1
                 ORDER BY seq LIMIT $2"
            ),
            &[&(after as i64), &i64::from(limit)],
        )
        .await?
        .iter()
        .map(queued_row)
        .collect())
    }

    async fn replay(&self, seq: u64, now_ms: i64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE webhook_outbox SET state = 0, attempts = 0, next_ms = $2, lease_ms = 0
             WHERE seq = $1 AND state = 1",
            &[&(seq as i64), &now_ms],
        )
        .await?;
        if n == 1 {
            self.routes.notify_queued();
        }
        Ok(n == 1)
    }

    async fn pending_count(&self, lane: Lane) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let r = row(
            &c,
            "SELECT count(*) FROM webhook_outbox WHERE state = 0 AND (left(webhook, 1) = '@') = $1",
            &[&lane.internal()],
        )
        .await?;
        Ok(r.get::<_, i64>(0) as u64)
    }
}
