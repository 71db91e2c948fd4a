//! Offline push: a dispatcher that takes committed messages from the push lane of the durable
//! outbox, asks core which devices to notify and what to say (`tern_core::push`), and sends
//! each notification through its device's provider (`providers.rs`).
//!
//! Delivery is at least once. A message's row commits with the message and leaves the outbox
//! only after every notification it caused was sent, refused for good, or queued again on its
//! own row (`@push.retry`, keyed by device) for a provider that asked to be tried later; so a
//! crash at any point sends a notification again rather than never. Notifications of one
//! conversation share a collapse key, so a phone shows a repeat as one. Each claim takes at
//! most one row per conversation, so a conversation's notifications go out in commit order.

pub mod address;
pub mod providers;

use std::{sync::Arc, time::Duration};

use providers::{Apns, Fcm, Gateway, SendError, WebPush};
use tern_core::{
    Clock, UserId,
    push::{Notification, Outgoing, Provider, PushRegistration, PushService, Pushed},
    webhooks::{
        Event, EventKind, Failure, Lane, OutboxRow, PUSH_RETRY_ROUTE, PUSH_ROUTE, QueuedEvent,
        WebhookOutbox, backoff_ms,
    },
};
use tokio_util::sync::CancellationToken;

/// The providers this node sends through.
#[derive(Debug, Default)]
pub struct Providers {
    /// APNs, when configured.
    pub apns: Option<Apns>,
    /// FCM, when configured.
    pub fcm: Option<Fcm>,
    /// Web Push, when configured.
    pub webpush: Option<WebPush>,
    /// The app's own gateway, when configured.
    pub webhook: Option<Gateway>,
}

impl Providers {
    /// Which are configured.
    pub fn configured(&self) -> Vec<Provider> {
        let mut out = Vec::new();
        if self.apns.is_some() {
            out.push(Provider::Apns);
        }
        if self.fcm.is_some() {
            out.push(Provider::Fcm);
        }
        if self.webpush.is_some() {
            out.push(Provider::Webpush);
        }
        if self.webhook.is_some() {
            out.push(Provider::Webhook);
        }
        out
    }

    async fn send(&self, out: &Outgoing, now_s: i64) -> Result<(), SendError> {
        // Another node of the cluster may be configured for it (nodes configured apart while
        // a change rolls out): tried again, not dropped.
        let missing = || {
            SendError::Retry(format!(
                "{} is not configured on this node",
                out.registration.provider
            ))
        };
        match out.registration.provider {
            Provider::Apns => self.apns.as_ref().ok_or_else(missing)?.send(out).await,
            Provider::Fcm => self.fcm.as_ref().ok_or_else(missing)?.send(out).await,
            Provider::Webpush => self.webpush.as_ref().ok_or_else(missing)?.send(out).await,
            Provider::Webhook => {
                self.webhook
                    .as_ref()
                    .ok_or_else(missing)?
                    .send(out, now_s)
                    .await
            }
        }
    }
}

/// How the dispatcher retries: the webhook dispatcher's settings, with push's own defaults
/// ([`defaults`]).
pub use tern_hooks::DispatchConfig;

/// Push's defaults: a shorter retry horizon than a webhook's, because a notification hours late
/// is worse than none (1 s doubling to 5 min, 12 attempts: about half an hour of tries).
pub fn defaults() -> DispatchConfig {
    DispatchConfig {
        retry_max: Duration::from_secs(300),
        max_attempts: 12,
        ..DispatchConfig::default()
    }
}

/// A running dispatcher; [`Dispatcher::stop`] ends it.
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    /// Starts sending what `outbox`'s push lane holds.
    pub fn start(
        outbox: Arc<dyn WebhookOutbox>,
        service: PushService,
        providers: Providers,
        config: DispatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Dispatcher {
        let stop = CancellationToken::new();
        let run = Run {
            outbox,
            service,
            providers,
            config,
            clock,
        };
        let task = tokio::spawn(run.run(stop.clone()));
        Dispatcher { stop, task }
    }

    /// Stops claiming; rows in flight get one request's timeout to settle, then are abandoned
    /// and sent again when their leases end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Run {
    outbox: Arc<dyn WebhookOutbox>,
    service: PushService,
    providers: Providers,
    config: DispatchConfig,
    clock: Arc<dyn Clock>,
}

/// What became of one notification, for the counters.
fn count(provider: Provider, result: &Result<(), SendError>) {
    let provider = provider.as_str();
    match result {
        Ok(()) => metrics::counter!("tern_push_sent_total", "provider" => provider).increment(1),
        Err(e) => {
            let reason = match e {
                SendError::Retry(_) => "retry",
                SendError::DeadToken(_) => "dead_token",
                SendError::Refused(_) => "refused",
            };
            metrics::counter!("tern_push_failed_total", "provider" => provider, "reason" => reason)
                .increment(1);
        }
    }
}

impl Run {
    /// Long enough to plan a large group's message and send its notifications.
    fn lease_ms(&self) -> i64 {
        (self.config.timeout * 3 + Duration::from_secs(5)).as_millis() as i64
    }

    /// Claims the push lane's rows and handles each on its own task (the loop the webhook
    /// dispatcher runs too).
    async fn run(self, stop: CancellationToken) {
        let run = Arc::new(self);
        let config = tern_hooks::lane::LaneConfig {
            lane: Lane::Push,
            batch: run.config.batch,
            poll: run.config.poll,
            lease_ms: run.lease_ms(),
            drain: run.config.timeout,
            backlog_gauge: "tern_push_backlog",
        };
        let handler = run.clone();
        tern_hooks::lane::run(
            run.outbox.clone(),
            run.clock.clone(),
            config,
            stop,
            move |row| {
                let run = handler.clone();
                async move { run.holding(row).await }
            },
        )
        .await;
    }

    /// Handles one row, renewing its lease while it takes longer than a third of one: a large
    /// group's message may take longer to plan and send than any fixed lease, and another
    /// claim of it meanwhile would notify the whole group twice.
    async fn holding(&self, row: QueuedEvent) {
        let seq = row.seq;
        let lease = self.lease_ms();
        let work = async {
            if row.webhook == PUSH_ROUTE {
                self.message(row).await;
            } else {
                self.retry(row).await;
            }
        };
        tokio::pin!(work);
        let every = Duration::from_millis((lease / 3).max(1) as u64);
        loop {
            tokio::select! {
                _ = &mut work => return,
                _ = tokio::time::sleep(every) => {
                    let until = self.clock.now_ms() + lease;
                    if let Err(e) = self.outbox.extend_lease(seq, until).await {
                        tracing::warn!(error = %e, seq, "cannot renew a push row's lease");
                    }
                }
            }
        }
    }

    fn failure(&self, attempts: u32, error: String) -> Failure {
        let dead = attempts >= self.config.max_attempts;
        let wait = backoff_ms(
            attempts,
            self.config.retry_base.as_millis() as u64,
            self.config.retry_max.as_millis() as u64,
        );
        Failure {
            attempts,
            next_ms: self.clock.now_ms() + wait as i64,
            error,
            dead,
        }
    }

    /// Plans a committed message's notifications and sends them all; what asks to be tried
    /// later is queued on its own row before the message's row is settled.
    async fn message(&self, row: QueuedEvent) {
        if self.expired(&row).await {
            return;
        }
        let pushed = match Pushed::from_event(&row.body) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(seq = row.seq, error = %e, "an unreadable push row is dropped");
                self.settle(row.seq, self.outbox.delivered(row.seq).await);
                return;
            }
        };
        let planned = match self.service.plan(&pushed).await {
            Ok(p) => p,
            Err(e) => {
                let failure = self.failure(row.attempts + 1, format!("cannot plan: {e}"));
                self.settle(row.seq, self.outbox.failed(row.seq, &failure).await);
                return;
            }
        };
        let now_s = self.clock.now_ms() / 1000;
        // A message's notifications go out concurrently, a bounded number at a time (a large
        // group's would otherwise open thousands of requests at once).
        let mut results: Vec<Result<(), SendError>> = Vec::with_capacity(planned.len());
        for chunk in planned.chunks(SENDS_IN_FLIGHT) {
            results.extend(
                futures_util::future::join_all(
                    chunk.iter().map(|out| self.providers.send(out, now_s)),
                )
                .await,
            );
        }
        let mut again = Vec::new();
        for (out, result) in planned.into_iter().zip(results) {
            count(out.registration.provider, &result);
            match result {
                Ok(()) => {}
                Err(SendError::Retry(why)) => {
                    tracing::info!(user = %out.registration.user, device = %out.registration.device, %why, "push deferred");
                    again.push(self.retry_row(&out));
                }
                Err(SendError::DeadToken(why)) => self.forget(&out, &why).await,
                Err(SendError::Refused(why)) => {
                    tracing::warn!(user = %out.registration.user, device = %out.registration.device, %why, "push refused");
                }
            }
        }
        if !again.is_empty()
            && let Err(e) = self.outbox.enqueue(again).await
        {
            // The message's row stays: its lease runs out and it is planned again.
            tracing::warn!(error = %e, "cannot queue pushes to retry");
            return;
        }
        self.settle(row.seq, self.outbox.delivered(row.seq).await);
    }

    /// Drops a row queued too long ago (push was off, or the server down): what it would say
    /// is old news. Whether it was dropped.
    async fn expired(&self, row: &QueuedEvent) -> bool {
        if !self.service.is_stale(row.created_ms) {
            return false;
        }
        tracing::info!(
            seq = row.seq,
            queued_ms = row.created_ms,
            "a push row too old to send is dropped"
        );
        metrics::counter!("tern_push_expired_total").increment(1);
        self.settle(row.seq, self.outbox.delivered(row.seq).await);
        true
    }

    /// The row that tries `out` again after the first wait, keyed by its device so that one
    /// device's retries go in order. It names the device and a digest of its token, not the
    /// token: outbox rows are listed to operators as dead letters.
    fn retry_row(&self, out: &Outgoing) -> OutboxRow {
        let now = self.clock.now_ms();
        let r = &out.registration;
        let body = RetryBody {
            user: r.user.clone(),
            device: r.device.clone(),
            token_digest: token_digest(&r.token),
            notification: out.notification.clone(),
        };
        OutboxRow {
            webhook: PUSH_RETRY_ROUTE.to_owned(),
            event: Arc::new(Event {
                id: format!("push_{}_{}", out.notification.message_id, r.device),
                kind: EventKind::MessageCreated,
                key: format!("d:{}/{}", r.user, r.device),
                time_ms: now,
                body: serde_json::to_string(&body).expect("a notification serializes"),
            }),
            due_ms: self.failure(1, String::new()).next_ms,
        }
    }

    /// Another attempt at one notification, unless its device came online (it syncs) or
    /// registered another token since.
    async fn retry(&self, row: QueuedEvent) {
        if self.expired(&row).await {
            return;
        }
        let body: RetryBody = match serde_json::from_str(&row.body) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(seq = row.seq, error = %e, "an unreadable push row is dropped");
                self.settle(row.seq, self.outbox.delivered(row.seq).await);
                return;
            }
        };
        let registration = match self.current(&body).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.settle(row.seq, self.outbox.delivered(row.seq).await);
                return;
            }
            Err(e) => {
                let failure = self.failure(row.attempts + 1, e.to_string());
                self.settle(row.seq, self.outbox.failed(row.seq, &failure).await);
                return;
            }
        };
        let out = Outgoing {
            registration,
            notification: body.notification,
        };
        let result = self.providers.send(&out, self.clock.now_ms() / 1000).await;
        count(out.registration.provider, &result);
        let settled = match result {
            Ok(()) => self.outbox.delivered(row.seq).await,
            Err(SendError::Retry(why)) => {
                // The first attempt was the message's own: this row's attempts follow it.
                let failure = self.failure(row.attempts + 2, why);
                if failure.dead {
                    metrics::counter!("tern_push_failed_total", "provider" => out.registration.provider.as_str(), "reason" => "gave_up").increment(1);
                }
                self.outbox.failed(row.seq, &failure).await
            }
            Err(SendError::DeadToken(why)) => {
                self.forget(&out, &why).await;
                self.outbox.delivered(row.seq).await
            }
            Err(SendError::Refused(why)) => {
                let mut failure = self.failure(row.attempts + 2, why);
                failure.dead = true;
                self.outbox.failed(row.seq, &failure).await
            }
        };
        self.settle(row.seq, settled);
    }

    /// The registration a retry is for, if the device still holds the same token and is not
    /// reached over a connection now.
    async fn current(
        &self,
        body: &RetryBody,
    ) -> Result<Option<PushRegistration>, tern_core::ServiceError> {
        let user = UserId::parse(&body.user)?;
        Ok(self.service.devices(&user).await?.into_iter().find(|d| {
            d.device == body.device
                && token_digest(&d.token) == body.token_digest
                && !self.service.reached_live(d)
        }))
    }

    async fn forget(&self, out: &Outgoing, why: &str) {
        tracing::info!(user = %out.registration.user, device = %out.registration.device, %why, "a dead push token is removed");
        if let Err(e) = self.service.forget(&out.registration).await {
            tracing::warn!(error = %e, "cannot remove a dead push token");
        }
    }

    fn settle(&self, seq: u64, result: Result<(), tern_core::StoreError>) {
        if let Err(e) = result {
            // The lease runs out and the row is handled again: at least once, never lost.
            tracing::warn!(error = %e, seq, "cannot settle a push row");
        }
    }
}

/// How many of one message's notifications are in flight at once.
const SENDS_IN_FLIGHT: usize = 32;

/// A notification waiting for another attempt, as its outbox row holds it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RetryBody {
    user: String,
    device: String,
    /// SHA-256 of the token, hex: enough to tell whether the device registered another since.
    token_digest: String,
    notification: Notification,
}

fn token_digest(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
