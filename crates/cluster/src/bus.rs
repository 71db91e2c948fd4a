//! The cluster's bus: every node's publications reach every other node over one Redis pub/sub
//! channel, and each node hands what it receives to its own fan-out.
//!
//! Redis is never the source of truth here. A publication is stored before it is published, so
//! whatever the bus loses (Redis restarting, a subscription dropped, a queue that overflowed while
//! Redis was away) is found by a SYNC: a node that re-subscribes tells every connection it holds
//! to sync, and a node that could not publish asks every node to do so once it can again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use tern_core::{
    ConnectionId, ConversationId, Delivery, DeviceId, NodeId, Platform, UserId,
    bus::{Bus, deliver_locally},
    presence::{DevicePresence, RemotePresence},
    sync::Publication,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::envelope::{Envelope, KnownMembers, MemberLists, Received, RegistryChange};

/// The channel every node publishes to and subscribes to.
pub(crate) const CHANNEL: &str = "tern:bus";

/// Envelopes waiting to be published, at most; beyond it they are dropped and every node is
/// asked to resync once publishing works again.
const QUEUE: usize = 16_384;

/// Envelopes sent in one round trip, at most.
const PIPELINE: usize = 256;

/// The sending side of the bus, handed to the services.
#[derive(Debug)]
pub struct RedisBus {
    node: NodeId,
    epoch: u64,
    delivery: Arc<dyn Delivery>,
    presence: Arc<dyn RemotePresence>,
    /// Held while a snapshot of this node's devices is read and queued, and while a login or
    /// close is queued: a snapshot is never queued after a change it does not show.
    announcing: std::sync::Mutex<()>,
    queue: mpsc::Sender<Envelope>,
    /// Something could not be published: the next envelope that goes out asks for a resync.
    lost: Arc<AtomicBool>,
    /// Large groups' member lists as last sent; held while a publication is queued, so lists
    /// and references leave in order.
    lists: Arc<std::sync::Mutex<MemberLists>>,
    metrics: BusMetrics,
}

#[derive(Debug, Clone)]
struct BusMetrics {
    published: metrics::Counter,
    received: metrics::Counter,
    dropped: metrics::Counter,
    failed: metrics::Counter,
    reconnects: metrics::Counter,
    undecodable: metrics::Counter,
    /// 1 while subscribed.
    connected: metrics::Gauge,
}

impl BusMetrics {
    fn new() -> Self {
        Self {
            published: metrics::counter!("tern_bus_envelopes_total", "result" => "published"),
            received: metrics::counter!("tern_bus_envelopes_total", "result" => "received"),
            dropped: metrics::counter!("tern_bus_envelopes_total", "result" => "dropped"),
            failed: metrics::counter!("tern_bus_envelopes_total", "result" => "failed"),
            undecodable: metrics::counter!("tern_bus_envelopes_total", "result" => "undecodable"),
            reconnects: metrics::counter!("tern_redis_reconnects_total"),
            connected: metrics::gauge!("tern_redis_connected"),
        }
    }
}

impl RedisBus {
    fn send(&self, envelope: Envelope) {
        if self.queue.try_send(envelope).is_err() {
            // Redis is away or too slow: the other nodes miss this, and catch up by syncing;
            // a member list may have been in it, so every list goes again.
            self.lost.store(true, Ordering::Release);
            self.metrics.dropped.increment(1);
            lock(&self.lists).forget();
        }
    }

    fn envelope(&self) -> Envelope {
        Envelope::new(self.node, self.epoch)
    }

    fn announcing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.announcing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues this node's whole device list (and, with `hello`, a request for every other
    /// node's): after joining, and after a lost subscription, when others may hold a stale view.
    pub(crate) fn announce(&self, hello: bool) {
        let _guard = self.announcing();
        let mut envelope = self.envelope();
        envelope.snapshot(&self.presence.local_devices());
        if hello {
            envelope.hello();
        }
        self.send(envelope);
    }
}

impl Bus for RedisBus {
    fn publish(&self, published: &[Publication]) {
        deliver_locally(&*self.delivery, published);
        let mut envelope = self.envelope();
        let mut lists = lock(&self.lists);
        envelope.publish(published, &mut lists);
        if !envelope.is_empty() && self.queue.try_send(envelope).is_err() {
            self.lost.store(true, Ordering::Release);
            self.metrics.dropped.increment(1);
            lists.forget();
        }
    }

    fn typing(&self, to: &UserId, from: &UserId, conversation: &ConversationId) {
        self.delivery.typing(to, from, conversation);
        let mut envelope = self.envelope();
        envelope.typing(to, from, conversation);
        self.send(envelope);
    }

    fn logged_in(
        &self,
        user: &UserId,
        device: &DeviceId,
        platform: Platform,
        connection: ConnectionId,
    ) {
        // This node's own connections were replaced when the login attached.
        let mut envelope = self.envelope();
        envelope.login(user, device, platform, connection);
        let _guard = self.announcing();
        self.send(envelope);
    }

    fn logged_out(&self, user: &UserId, connection: ConnectionId) {
        let mut envelope = self.envelope();
        envelope.logout(user, connection);
        let _guard = self.announcing();
        self.send(envelope);
    }

    fn kick(&self, user: &UserId, device: Option<&DeviceId>, cause: tern_core::sync::KickCause) {
        self.delivery.kick(user, device, cause);
        let mut envelope = self.envelope();
        envelope.kick(user, device, cause);
        self.send(envelope);
    }
}

/// The bus and the two tasks behind it.
pub(crate) struct Running {
    pub(crate) bus: Arc<RedisBus>,
    pub(crate) publisher: tokio::task::JoinHandle<()>,
    pub(crate) subscriber: tokio::task::JoinHandle<()>,
}

/// This node, and where what other nodes say goes.
pub(crate) struct Here {
    pub(crate) node: NodeId,
    pub(crate) epoch: u64,
    pub(crate) delivery: Arc<dyn Delivery>,
    pub(crate) presence: Arc<dyn RemotePresence>,
}

/// Subscribes (so that nothing published after this returns is missed), then starts the
/// publisher and the subscriber.
pub(crate) async fn start(
    client: redis::Client,
    publisher: redis::aio::ConnectionManager,
    here: Here,
    heartbeat: Duration,
    stop: CancellationToken,
) -> redis::RedisResult<Running> {
    let Here {
        node,
        epoch,
        delivery,
        presence,
    } = here;
    let metrics = BusMetrics::new();
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    metrics.connected.set(1.0);
    let (queue, rx) = mpsc::channel(QUEUE);
    let lost = Arc::new(AtomicBool::new(false));
    let lists = Arc::new(std::sync::Mutex::new(MemberLists::default()));
    let bus = Arc::new(RedisBus {
        node,
        epoch,
        delivery: delivery.clone(),
        presence,
        announcing: std::sync::Mutex::new(()),
        queue,
        lost: lost.clone(),
        lists: lists.clone(),
        metrics: metrics.clone(),
    });
    let publisher = tokio::spawn(publish_loop(
        publisher,
        rx,
        lost,
        lists,
        Envelope::new(node, epoch),
        metrics.clone(),
        stop.clone(),
    ));
    // Subscribed: whatever other nodes say from now on reaches this one, so their lists,
    // asked for now, leave nothing out.
    bus.announce(true);
    let subscriber = tokio::spawn(subscribe_loop(
        client,
        pubsub,
        bus.clone(),
        heartbeat,
        metrics,
        stop,
    ));
    Ok(Running {
        bus,
        publisher,
        subscriber,
    })
}

/// Publishes queued envelopes in order, several per round trip. At `stop` it publishes what
/// is still queued, so a node that shuts down after its last commit leaves nothing unsent.
async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    mut rx: mpsc::Receiver<Envelope>,
    lost: Arc<AtomicBool>,
    lists: Arc<std::sync::Mutex<MemberLists>>,
    resync: Envelope,
    metrics: BusMetrics,
    stop: CancellationToken,
) {
    let failed = || lock(&lists).forget();
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, PIPELINE) => n,
            _ = stop.cancelled() => {
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                    if batch.len() == PIPELINE {
                        flush(&mut conn, &mut batch, &lost, &resync, &metrics, &failed).await;
                    }
                }
                flush(&mut conn, &mut batch, &lost, &resync, &metrics, &failed).await;
                return;
            }
        };
        if received == 0 {
            return;
        }
        flush(&mut conn, &mut batch, &lost, &resync, &metrics, &failed).await;
    }
}

/// Publishes `batch` in one round trip (after a resync request if something was lost before).
async fn flush(
    conn: &mut redis::aio::ConnectionManager,
    batch: &mut Vec<Envelope>,
    lost: &AtomicBool,
    resync: &Envelope,
    metrics: &BusMetrics,
    failed: &(dyn Fn() + Sync),
) {
    if batch.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    // Asked first: whatever this node failed to publish is older than what follows.
    if lost.swap(false, Ordering::AcqRel) {
        let mut r = resync.clone();
        r.resync();
        pipe.publish(CHANNEL, r.encode()).ignore();
    }
    for envelope in batch.iter() {
        pipe.publish(CHANNEL, envelope.encode()).ignore();
        // The node's connections, kept in Redis beside its node entry (and expiring with it)
        // for load balancers and operators; presence itself travels in the envelopes.
        for change in envelope.registry_changes() {
            let key = crate::nodes::connections_key(envelope.node);
            match change {
                RegistryChange::Set(c, v) => {
                    pipe.hset(&key, c, v).ignore();
                }
                RegistryChange::Remove(c) => {
                    pipe.hdel(&key, c).ignore();
                }
                RegistryChange::Replace(all) => {
                    pipe.del(&key).ignore();
                    for chunk in all.chunks(1000) {
                        pipe.hset_multiple(&key, chunk).ignore();
                    }
                }
            }
        }
    }
    match pipe.query_async::<()>(conn).await {
        Ok(()) => metrics.published.increment(batch.len() as u64),
        Err(e) => {
            // The connection manager reconnects on its own; until then the other nodes miss
            // these and are told to sync once publishing works again.
            tracing::warn!(error = %e, envelopes = batch.len(), "cannot publish to Redis");
            lost.store(true, Ordering::Release);
            metrics.failed.increment(batch.len() as u64);
            // A member list may have been lost with them.
            failed();
        }
    }
    batch.clear();
}

/// Hands every other node's envelopes to this node's fan-out; re-subscribes after losing the
/// subscription, and then tells every connection here to sync.
async fn subscribe_loop(
    client: redis::Client,
    pubsub: redis::aio::PubSub,
    bus: Arc<RedisBus>,
    heartbeat: Duration,
    metrics: BusMetrics,
    stop: CancellationToken,
) {
    let mut pubsub = Some(pubsub);
    let mut backoff = Duration::from_millis(50);
    let mut known = KnownMembers::default();
    loop {
        let current = match pubsub.take() {
            Some(p) => p,
            None => {
                let subscribed = async {
                    let mut p = client.get_async_pubsub().await?;
                    p.subscribe(CHANNEL).await?;
                    redis::RedisResult::Ok(p)
                };
                let attempt = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(heartbeat, subscribed) => r,
                };
                match attempt {
                    Ok(Ok(p)) => {
                        metrics.reconnects.increment(1);
                        metrics.connected.set(1.0);
                        tracing::info!("subscribed to Redis again; every connection here syncs");
                        // Subscribed first, then the sync: whatever was published while this
                        // node was away is in the store, and everything after reaches it here.
                        bus.delivery.resync();
                        // The others' views of this node, and this node's of them, may have
                        // missed changes while it was away.
                        bus.announce(true);
                        backoff = Duration::from_millis(50);
                        p
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot subscribe to Redis yet");
                        wait(&stop, &mut backoff).await;
                        continue;
                    }
                    Err(_) => {
                        wait(&stop, &mut backoff).await;
                        continue;
                    }
                }
            }
        };
        let (mut sink, mut stream) = current.split();
        let mut ping = tokio::time::interval(heartbeat);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = stream.next() => match msg {
                    Some(msg) => receive(&bus, msg.get_payload_bytes(), &mut known, &metrics),
                    None => break,
                },
                _ = ping.tick() => {
                    // A subscription over a connection that died silently would never end by
                    // itself: a ping unanswered within the heartbeat ends it.
                    match tokio::time::timeout(heartbeat, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        }
        metrics.connected.set(0.0);
        tracing::warn!("lost the Redis subscription; re-subscribing");
    }
}

async fn wait(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(1));
}

/// Hands one envelope to this node's fan-out and presence.
fn receive(bus: &RedisBus, bytes: &[u8], known: &mut KnownMembers, metrics: &BusMetrics) {
    let delivery = &*bus.delivery;
    let received = match Envelope::decode(bytes) {
        Ok(e) if e.node == bus.node.get() => return,
        Ok(e) => e.into_received(known),
        Err(e) => Err(e),
    };
    let received = match received {
        Ok(r) => r,
        Err(e) => {
            metrics.undecodable.increment(1);
            tracing::error!(error = %e, "an envelope from another node cannot be read");
            return;
        }
    };
    metrics.received.increment(1);
    for r in received {
        match r {
            Received::Published(p) => deliver_locally(delivery, &p),
            Received::Typing {
                to,
                from,
                conversation,
            } => delivery.typing(&to, &from, &conversation),
            Received::Kick {
                user,
                device,
                cause,
            } => delivery.kick(&user, device.as_ref(), cause),
            Received::Login {
                user,
                device,
                platform,
                connection,
            } => {
                delivery.replaced_elsewhere(&user, &device, platform, connection);
                bus.presence.remote_online(DevicePresence {
                    user,
                    connection,
                    device,
                    platform,
                });
            }
            Received::Resync => delivery.resync(),
            Received::Logout { user, connection } => {
                bus.presence.remote_offline(&user, connection);
            }
            Received::Snapshot { node, devices } => bus.presence.replace_node(node, devices),
            Received::Hello => {
                // The node that says hello knows none of this node's member lists.
                lock(&bus.lists).forget();
                bus.announce(false);
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
