//! The claim loop both outbox dispatchers run, the webhooks' and offline push's: claim as many
//! due rows of one lane as there is room for, handle each on its own task (so one slow receiver
//! holds back only its own key), and wake at once when a commit queues rows or a handled row
//! frees its key's next one.

use std::{future::Future, sync::Arc, time::Duration};

use tern_core::{
    Clock,
    webhooks::{Lane, QueuedEvent, WebhookOutbox},
};
use tokio_util::sync::CancellationToken;

/// How one lane is claimed.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    /// Which rows.
    pub lane: Lane,
    /// Rows in flight at once, at most.
    pub batch: u32,
    /// How often the outbox is polled when nothing wakes the loop (another node's commits, a
    /// retry coming due).
    pub poll: Duration,
    /// How long a claim holds a row.
    pub lease_ms: i64,
    /// At stop, how long rows in flight may take to settle before they are abandoned (their
    /// leases run out and they are handled again).
    pub drain: Duration,
    /// The gauge the lane's backlog is published under.
    pub backlog_gauge: &'static str,
}

/// Claims `config.lane`'s rows and hands each to `handle` until `stop` is cancelled.
pub async fn run<H, F>(
    outbox: Arc<dyn WebhookOutbox>,
    clock: Arc<dyn Clock>,
    config: LaneConfig,
    stop: CancellationToken,
    handle: H,
) where
    H: Fn(QueuedEvent) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let routes = outbox.routes().clone();
    let settled = Arc::new(tokio::sync::Notify::new());
    let limit = config.batch.max(1) as usize;
    let mut working = tokio::task::JoinSet::new();
    metrics::gauge!(config.backlog_gauge).set(0.0);
    let mut last_backlog = tokio::time::Instant::now();
    loop {
        while working.try_join_next().is_some() {}
        if stop.is_cancelled() {
            let drained = async { while working.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(config.drain, drained).await;
            working.abort_all();
            return;
        }
        if last_backlog.elapsed() >= Duration::from_secs(5) {
            last_backlog = tokio::time::Instant::now();
            if let Ok(n) = outbox.pending_count(config.lane).await {
                metrics::gauge!(config.backlog_gauge).set(n as f64);
            }
        }
        let room = limit.saturating_sub(working.len());
        let claimed = if room == 0 {
            Vec::new()
        } else {
            let now = clock.now_ms();
            match outbox
                .claim(config.lane, now, now + config.lease_ms, room as u32)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, lane = ?config.lane, "cannot claim outbox rows; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => continue,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        };
        if claimed.is_empty() {
            let queued = async {
                match config.lane {
                    Lane::Webhooks => routes.queued().await,
                    Lane::Push => routes.push_queued().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = queued => {}
                _ = settled.notified() => {}
                _ = tokio::time::sleep(config.poll) => {}
            }
            continue;
        }
        for row in claimed {
            let (work, settled) = (handle(row), settled.clone());
            working.spawn(async move {
                work.await;
                settled.notify_one();
            });
        }
    }
}
