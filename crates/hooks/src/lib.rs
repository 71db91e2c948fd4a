//! Tern's calls to an app's backend: the webhook dispatcher, which takes due events from the
//! durable outbox (`tern_core::webhooks`) and POSTs them to each webhook's URL, signed the
//! Standard Webhooks way, and the before-send hook over HTTP (`before_send.rs`).
//!
//! Delivery is at least once: a row leaves the outbox only after its receiver answered 2xx, so
//! a crash between the answer and the delete sends it again (receivers deduplicate by the
//! `webhook-id` header, the event's stable id). Each claim takes at most one row per webhook
//! and conversation, so a receiver sees a conversation's events in commit order; each row is
//! sent on its own task, so a failing or hanging receiver holds back only its own queue. Every
//! node of a cluster runs a dispatcher; leases keep them from sending one row twice at once.

mod before_send;
pub mod lane;

use std::{sync::Arc, time::Duration};

pub use before_send::HttpBeforeSend;

use tern_core::{
    Clock,
    webhooks::{Failure, Lane, QueuedEvent, Webhook, WebhookOutbox, backoff_ms, sign},
};
use tokio_util::sync::CancellationToken;

/// How the dispatcher delivers and retries.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long one request may take before it counts as failed.
    pub timeout: Duration,
    /// The wait after the first failure; doubled after each further one.
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// Attempts before an event becomes a dead letter.
    pub max_attempts: u32,
    /// Deliveries in flight at once, at most (each on its own task).
    pub batch: u32,
    /// How often the outbox is polled when nothing wakes the dispatcher (another node's
    /// commits, a retry coming due).
    pub poll: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            // 1 s doubling to 10 min, then every 10 min: about two hours in all, so a
            // receiver down for an hour loses nothing.
            max_attempts: 20,
            batch: 64,
            poll: Duration::from_millis(500),
        }
    }
}

/// A running dispatcher; [`Dispatcher::stop`] ends it.
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    /// Starts delivering `outbox`'s events to the webhooks in force for it (read for each
    /// delivery, so webhooks added or removed while it runs are honoured).
    pub fn start(
        outbox: Arc<dyn WebhookOutbox>,
        config: DispatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("tern-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let stop = CancellationToken::new();
        let run = Run {
            outbox,
            config,
            clock,
            client,
        };
        let task = tokio::spawn(run.run(stop.clone()));
        Ok(Dispatcher { stop, task })
    }

    /// Stops claiming; deliveries in flight finish or are abandoned (their leases run out and
    /// they are sent again).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Run {
    outbox: Arc<dyn WebhookOutbox>,
    config: DispatchConfig,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl Run {
    /// A claimed row is leased for long enough to send it and settle it. On a shared store a
    /// node that dies holding leases delays those rows' keys by at most this much.
    fn lease_ms(&self) -> i64 {
        (self.config.timeout + Duration::from_secs(2)).as_millis() as i64
    }

    /// Claims as many rows as there is room for and sends each on its own task, so a receiver
    /// that hangs until the timeout holds back only its own queue; a settled delivery wakes
    /// the loop at once, since the next row of its key may be claimed now.
    async fn run(self, stop: CancellationToken) {
        let run = Arc::new(self);
        let config = lane::LaneConfig {
            lane: Lane::Webhooks,
            batch: run.config.batch,
            poll: run.config.poll,
            lease_ms: run.lease_ms(),
            drain: run.config.timeout,
            backlog_gauge: "tern_webhook_backlog",
        };
        let handler = run.clone();
        lane::run(
            run.outbox.clone(),
            run.clock.clone(),
            config,
            stop,
            move |event| {
                let run = handler.clone();
                async move { run.deliver(event).await }
            },
        )
        .await;
    }

    /// Sends one row and settles it in the outbox.
    async fn deliver(&self, event: QueuedEvent) {
        let started = std::time::Instant::now();
        // A webhook this node does not know may be one another node has just added and this
        // one has not read yet, so it is retried like a failed delivery (and becomes a dead
        // letter after as many attempts, if it was removed).
        let result = match self.outbox.routes().hook(&event.webhook) {
            Some(hook) => self.send(&hook, &event).await,
            None => Err(format!(
                "no webhook named {:?} is configured",
                event.webhook
            )),
        };
        metrics::histogram!("tern_webhook_delivery_seconds").record(started.elapsed());
        let settled = match result {
            Ok(()) => {
                metrics::counter!("tern_webhook_deliveries_total", "result" => "delivered")
                    .increment(1);
                self.outbox.delivered(event.seq).await
            }
            Err(error) => {
                let attempts = event.attempts + 1;
                let dead = attempts >= self.config.max_attempts;
                let wait = backoff_ms(
                    attempts,
                    self.config.retry_base.as_millis() as u64,
                    self.config.retry_max.as_millis() as u64,
                );
                let result = if dead { "dead" } else { "failed" };
                metrics::counter!("tern_webhook_deliveries_total", "result" => result).increment(1);
                tracing::info!(
                    webhook = %event.webhook,
                    event = %event.event_id,
                    attempts,
                    dead,
                    %error,
                    "webhook delivery failed"
                );
                let failure = Failure {
                    attempts,
                    next_ms: self.clock.now_ms() + wait as i64,
                    error,
                    dead,
                };
                self.outbox.failed(event.seq, &failure).await
            }
        };
        if let Err(e) = settled {
            // The lease runs out and the row is sent again: at least once, never lost.
            tracing::warn!(error = %e, seq = event.seq, "cannot settle a webhook delivery");
        }
    }

    async fn send(&self, hook: &Webhook, event: &QueuedEvent) -> Result<(), String> {
        let timestamp = self.clock.now_ms() / 1000;
        let signature = sign(&hook.key, &event.event_id, timestamp, &event.body);
        let response = self
            .client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", self.config.timeout.as_millis())
                } else {
                    format!("request failed: {e}")
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}
