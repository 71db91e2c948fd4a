//! The three systems the load tool drives: Tern through the SDK, Mosquitto (MQTT 3.1.1, QoS 1,
//! persistent sessions) through rumqttc, and ejabberd (XMPP with stream management) through
//! [`crate::xmpp`]. All deliver message bodies to a shared [`Recorder`], which accounts for
//! every message exactly.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, future::BoxFuture, stream};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tern_client::{Client, ClientConfig, Connection, Encoding, Endpoint, pb};
use tokio::sync::oneshot;

use crate::{payload, stats, target::Target, xmpp};

/// Which system to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// A Tern server.
    Tern,
    /// An MQTT broker (Mosquitto).
    Mqtt,
    /// An XMPP server (ejabberd).
    Xmpp,
}

impl System {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            System::Tern => "tern",
            System::Mqtt => "mosquitto",
            System::Xmpp => "ejabberd",
        }
    }
}

/// Per-pair receiving state.
#[derive(Debug)]
pub struct PairRecord {
    /// Exact accounting of this pair's sequence.
    pub tracker: stats::Tracker,
    /// send→deliver latency, µs.
    pub deliver: Histogram<u64>,
    /// When the last message of the step arrived.
    pub last_ns: u64,
}

impl Default for PairRecord {
    fn default() -> Self {
        Self {
            tracker: stats::Tracker::default(),
            deliver: stats::histogram(),
            last_ns: 0,
        }
    }
}

/// Where receivers report what arrived.
#[derive(Debug, Default)]
pub struct Recorder {
    step: AtomicU32,
    /// Messages that arrived in the current step.
    pub delivered: AtomicU64,
    /// Messages of earlier steps that arrived late.
    pub stale: AtomicU64,
    /// Bodies that did not parse.
    pub garbled: AtomicU64,
    pairs: Mutex<Vec<Arc<Mutex<PairRecord>>>>,
}

impl Recorder {
    /// Starts step `step` with fresh records for `n` pairs.
    pub fn reset(&self, step: u32, n: usize) {
        *self.pairs.lock().unwrap() = (0..n).map(|_| Arc::default()).collect();
        self.delivered.store(0, Ordering::Relaxed);
        self.step.store(step, Ordering::Release);
    }

    /// The record of pair `k`.
    pub fn pair(&self, k: usize) -> Arc<Mutex<PairRecord>> {
        self.pairs.lock().unwrap()[k].clone()
    }

    /// Accounts for one arrived body.
    pub fn on_message(&self, body: &str) {
        let now = payload::now_ns();
        let Some((step, pair, seq, due_ns)) = payload::decode(body) else {
            self.garbled.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if step != self.step.load(Ordering::Acquire) {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(record) = self.pairs.lock().unwrap().get(pair as usize).cloned() else {
            self.garbled.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut r = record.lock().unwrap();
        let before = r.tracker.delivered;
        r.tracker.record(seq);
        if r.tracker.delivered > before {
            let _ = r.deliver.record((now.saturating_sub(due_ns) / 1000).max(1));
            r.last_ns = now;
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The sending side of one pair.
pub enum Sender {
    /// A logged-in Tern connection and where its messages go.
    Tern(TernSender),
    /// An MQTT client and the receiver's topic.
    Mqtt(MqttSender),
    /// An XMPP stream and where its messages go.
    Xmpp(XmppSender),
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sender::Tern(..) => "Sender::Tern",
            Sender::Mqtt(_) => "Sender::Mqtt",
            Sender::Xmpp(_) => "Sender::Xmpp",
        })
    }
}

impl Sender {
    /// Sends one body now (before returning, so bodies fired in order leave in order); the
    /// future says whether it was acknowledged.
    pub fn fire(&self, body: String) -> BoxFuture<'static, bool> {
        match self {
            Sender::Tern(sender) => {
                let conn = sender.connection();
                let req = pb::SendRequest {
                    target: Some(sender.to.clone()),
                    client_msg_id: tern_client::new_client_msg_id(),
                    content: Some(pb::Content {
                        body: Some(pb::content::Body::Text(pb::Text { text: body })),
                    }),
                };
                // On the wire now, in firing order: the future only waits for the ack. A send
                // through a lost node fails (and is counted so) while the sender moves on.
                match conn.start(req) {
                    Ok(pending) => {
                        let sender = sender.clone();
                        Box::pin(async move {
                            match pending.await {
                                Ok(_) => true,
                                Err(e) => {
                                    // Only a lost connection moves the sender; a refusal
                                    // is the server's answer, from a node that is up.
                                    if matches!(
                                        e,
                                        tern_client::ClientError::Disconnected(_)
                                            | tern_client::ClientError::Closed
                                    ) {
                                        sender.fail_over();
                                    }
                                    false
                                }
                            }
                        })
                    }
                    Err(_) => {
                        sender.fail_over();
                        Box::pin(async { false })
                    }
                }
            }
            Sender::Mqtt(m) => m.fire(body),
            Sender::Xmpp(x) => x.fire(body),
        }
    }
}

/// An XMPP sender: a logged-in stream, and the bare JID of the receiver (a chat message) or
/// of the room (a groupchat message).
#[derive(Debug)]
pub struct XmppSender {
    /// The sender's stream.
    pub session: xmpp::Session,
    /// The receiver's or the room's bare JID.
    pub to: String,
    /// A room: messages go to every occupant.
    pub groupchat: bool,
}

impl XmppSender {
    fn fire(&self, body: String) -> BoxFuture<'static, bool> {
        let stanza = if self.groupchat {
            xmpp::groupchat(&self.to, &body)
        } else {
            xmpp::chat(&self.to, &body)
        };
        self.session.send_acked(stanza)
    }
}

/// A Tern sender: its connection (replaced when its node is lost), where its messages go,
/// and the nodes it may move to.
#[derive(Debug, Clone)]
pub struct TernSender {
    inner: Arc<TernSenderInner>,
    to: pb::send_request::Target,
}

#[derive(Debug)]
struct TernSenderInner {
    conn: std::sync::RwLock<Connection>,
    user: String,
    device: String,
    addrs: Vec<String>,
    at: std::sync::atomic::AtomicUsize,
    moving: std::sync::atomic::AtomicBool,
}

impl TernSender {
    /// A sender over `conn` (logged in as `user` on `device` at `addrs[at]`).
    pub fn new(
        conn: Connection,
        to: pb::send_request::Target,
        (user, device): (&str, &str),
        addrs: &[String],
        at: usize,
    ) -> Self {
        Self {
            inner: Arc::new(TernSenderInner {
                conn: std::sync::RwLock::new(conn),
                user: user.to_owned(),
                device: device.to_owned(),
                addrs: addrs.to_vec(),
                at: std::sync::atomic::AtomicUsize::new(at),
                moving: std::sync::atomic::AtomicBool::new(false),
            }),
            to,
        }
    }

    fn connection(&self) -> Connection {
        self.inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Logs in at the next node in the background (once at a time), and sends through it from
    /// then on. With one address it reconnects there.
    fn fail_over(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.moving.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            for attempt in 0.. {
                let at = (inner.at.load(Ordering::Acquire) + 1) % inner.addrs.len();
                inner.at.store(at, Ordering::Release);
                if let Ok((conn, _, _)) =
                    login(&inner.addrs[at], &inner.user, &inner.device, None).await
                {
                    *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * (attempt % 10 + 1))).await;
            }
            inner.moving.store(false, Ordering::Release);
        });
    }
}

/// An MQTT publisher whose QoS 1 acknowledgements are matched to publishes.
pub struct MqttSender {
    client: AsyncClient,
    topic: String,
    /// Waiters in publish order, until the event loop assigns their packet ids.
    queued: Arc<Mutex<VecDeque<oneshot::Sender<()>>>>,
}

impl MqttSender {
    fn fire(&self, body: String) -> BoxFuture<'static, bool> {
        let (tx, rx) = oneshot::channel();
        {
            // Publishes reach the event loop in call order, so the queue order is the packet-id
            // assignment order.
            let mut q = self.queued.lock().unwrap();
            if self
                .client
                .try_publish(&self.topic, QoS::AtLeastOnce, false, body.into_bytes())
                .is_err()
            {
                return Box::pin(async { false });
            }
            q.push_back(tx);
        }
        Box::pin(async move { rx.await.is_ok() })
    }
}

/// Connected pairs, ready to send.
pub struct Pairs {
    /// Sender `k` sends to receiver `k`.
    pub senders: Vec<Arc<Sender>>,
    /// Where receivers report.
    pub recorder: Arc<Recorder>,
    /// Keeps SDK receivers alive.
    _clients: Vec<Client>,
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairs({})", self.senders.len())
    }
}

/// How many setup requests run at once.
const SETUP_CONCURRENCY: usize = 64;

/// A short random tag so repeated runs against one server use fresh users and topics.
pub fn run_tag() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The password of benchmark users.
pub fn bench_password(user: &str) -> String {
    format!("bench-{user}")
}

/// Registers users, `SETUP_CONCURRENCY` at a time.
pub async fn register_all(addr: &str, users: Vec<String>) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(addr);
    let options = tern_client::ConnectOptions {
        tls: crate::target::tls_trust()?,
        ..tern_client::ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(60))
    };
    let (conn, _events) = Connection::connect_with(&endpoint, &options).await?;
    let results: Vec<_> = stream::iter(users)
        .map(|u| {
            let conn = conn.clone();
            async move {
                conn.request(pb::RegisterRequest {
                    password: bench_password(&u),
                    user_id: u,
                })
                .await
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    conn.close();
    for r in results {
        r.context("registering a benchmark user")?;
    }
    Ok(())
}

/// A logged-in low-level connection.
pub async fn login(
    addr: &str,
    user: &str,
    device: &str,
    local_ip: Option<std::net::IpAddr>,
) -> anyhow::Result<(
    Connection,
    tokio::sync::mpsc::UnboundedReceiver<tern_proto::ServerEvent>,
    pb::LoginResponse,
)> {
    let endpoint = Endpoint::parse(addr);
    let options = tern_client::ConnectOptions {
        local_ip,
        tls: crate::target::tls_trust()?,
        ..tern_client::ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(60))
    };
    let (conn, events) = Connection::connect_with(&endpoint, &options).await?;
    let resp = conn
        .request(pb::LoginRequest {
            user_id: user.to_owned(),
            credential: Some(pb::login_request::Credential::Password(bench_password(
                user,
            ))),
            device_id: device.to_owned(),
            platform: pb::Platform::Unspecified as i32,
        })
        .await
        .with_context(|| format!("logging in {user}"))?;
    Ok((conn, events, resp))
}

/// An SDK client that reports every message body to `recorder`; with `fallbacks` (a cluster's
/// other nodes) it moves to one of them when its node is lost or drains.
pub async fn receiving_client(
    addr: &str,
    fallbacks: &[String],
    user: &str,
    recorder: Arc<Recorder>,
) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(Endpoint::parse(addr), user, &bench_password(user), "bench");
    config.fallbacks = fallbacks.iter().map(|a| Endpoint::parse(a)).collect();
    config.request_timeout = Duration::from_secs(60);
    config.tls = crate::target::tls_trust()?;
    let (client, mut events) = Client::connect(config)
        .await
        .with_context(|| format!("logging in {user}"))?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let tern_client::Event::Message { message, .. } = event
                && let Some(pb::content::Body::Text(t)) = message.content.and_then(|c| c.body)
            {
                recorder.on_message(&t.text);
            }
        }
    });
    Ok(client)
}

/// Connects `n` pairs to the system at `target` (one server, or a cluster's nodes: pair `k`'s
/// sender on node `k`, its receiver on the next node, so every message crosses nodes).
pub async fn connect_pairs(system: System, target: &Target, n: usize) -> anyhow::Result<Pairs> {
    let addrs = &target.addrs()[..];
    let addr = addrs[0].as_str();
    let node = |k: usize| addrs[k % addrs.len()].as_str();
    let tag = run_tag();
    let recorder = Arc::new(Recorder::default());
    recorder.reset(0, n);
    match system {
        System::Tern => {
            let senders: Vec<String> = (0..n).map(|k| format!("b{tag}s{k}")).collect();
            let receivers: Vec<String> = (0..n).map(|k| format!("b{tag}r{k}")).collect();
            register_all(addr, senders.iter().chain(&receivers).cloned().collect()).await?;
            let clients: Vec<Client> = stream::iter(receivers.clone().into_iter().enumerate())
                .map(|(k, u)| {
                    let recorder = recorder.clone();
                    let at = node(k + 1);
                    let others: Vec<String> =
                        addrs.iter().filter(|a| a.as_str() != at).cloned().collect();
                    async move { receiving_client(at, &others, &u, recorder).await }
                })
                .buffered(SETUP_CONCURRENCY)
                .try_collect()
                .await?;
            let senders: Vec<Arc<Sender>> =
                stream::iter(senders.into_iter().zip(receivers).enumerate())
                    .map(|(k, (s, r))| async move {
                        login(node(k), &s, "bench", None).await.map(|(c, _, _)| {
                            Arc::new(Sender::Tern(TernSender::new(
                                c,
                                pb::send_request::Target::ToUser(r),
                                (&s, "bench"),
                                addrs,
                                k % addrs.len(),
                            )))
                        })
                    })
                    .buffered(SETUP_CONCURRENCY)
                    .try_collect()
                    .await?;
            Ok(Pairs {
                senders,
                recorder,
                _clients: clients,
            })
        }
        System::Mqtt => {
            let (host, port) = addr
                .rsplit_once(':')
                .context("an MQTT address is HOST:PORT")?;
            let port: u16 = port.parse()?;
            let mut senders = Vec::with_capacity(n);
            for k in 0..n {
                let topic = format!("bench/{tag}/{k}");
                mqtt_subscriber(host, port, &format!("b{tag}r{k}"), &topic, recorder.clone())
                    .await?;
                senders.push(Arc::new(Sender::Mqtt(
                    mqtt_publisher(host, port, &format!("b{tag}s{k}"), &topic, PAIR_INFLIGHT)
                        .await?,
                )));
            }
            Ok(Pairs {
                senders,
                recorder,
                _clients: Vec::new(),
            })
        }
        System::Xmpp => {
            let senders: Vec<String> = (0..n).map(|k| format!("b{tag}s{k}")).collect();
            let receivers: Vec<String> = (0..n).map(|k| format!("b{tag}r{k}")).collect();
            let all: Vec<String> = senders.iter().chain(&receivers).cloned().collect();
            target.create_xmpp_users(&all)?;
            // Receivers first, each announcing itself available: ejabberd delivers a message
            // to a bare JID only to available resources (otherwise it goes to offline storage).
            stream::iter(receivers.iter().cloned())
                .map(|u| {
                    let recorder = recorder.clone();
                    async move {
                        let (session, mut events) =
                            xmpp::connect(addr, &u, &bench_password(&u), "bench").await?;
                        session.send("<presence/>".to_owned())?;
                        tokio::spawn(async move {
                            let _session = session;
                            while let Some(el) = events.recv().await {
                                if el.name == "message"
                                    && let Some(body) = el.body()
                                {
                                    recorder.on_message(body);
                                }
                            }
                        });
                        anyhow::Ok(())
                    }
                })
                .buffered(SETUP_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()?;
            let senders: Vec<Arc<Sender>> = stream::iter(senders.into_iter().zip(receivers))
                .map(|(s, r)| async move {
                    // The sender's incoming stanzas (its own presence) are not read.
                    let (session, _events) =
                        xmpp::connect(addr, &s, &bench_password(&s), "bench").await?;
                    anyhow::Ok(Arc::new(Sender::Xmpp(XmppSender {
                        session,
                        to: format!("{r}@{}", xmpp::DOMAIN),
                        groupchat: false,
                    })))
                })
                .buffered(SETUP_CONCURRENCY)
                .try_collect()
                .await?;
            Ok(Pairs {
                senders,
                recorder,
                _clients: Vec::new(),
            })
        }
    }
}

/// Unacknowledged publishes one pair's sender may have: far more than a pair sends during any
/// stall seen here (tens per second), and a thousand such windows fit in a few hundred MiB.
const PAIR_INFLIGHT: u16 = 4096;

/// MQTT options for the benchmark: persistent sessions, no inflight cap.
pub fn mqtt_options(id: &str, host: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    // Persistent sessions: the broker keeps subscriptions and queued messages across reconnects.
    o.set_clean_session(false);
    o.set_inflight(u16::MAX);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

async fn mqtt_subscriber(
    host: &str,
    port: u16,
    id: &str,
    topic: &str,
    recorder: Arc<Recorder>,
) -> anyhow::Result<()> {
    // A subscriber publishes nothing, and the client preallocates its outgoing window: the
    // full window for a thousand subscribers took gigabytes of the tool's memory.
    let mut options = mqtt_options(id, host, port);
    options.set_inflight(16);
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    let (ready_tx, ready) = oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(body) = std::str::from_utf8(&p.payload) {
                        recorder.on_message(body);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .context("waiting for SUBACK")?
        .context("subscriber stopped")?;
    Ok(())
}

/// A QoS 1 publisher to `topic` whose acks resolve [`Sender::fire`] futures, with at most
/// `inflight` unacknowledged publishes (the client preallocates that window; a fuller window
/// holds further publishes in the tool, where open-loop latency still counts them).
pub async fn mqtt_publisher(
    host: &str,
    port: u16,
    id: &str,
    topic: &str,
    inflight: u16,
) -> anyhow::Result<MqttSender> {
    let mut options = mqtt_options(id, host, port);
    options.set_inflight(inflight);
    let (client, mut eventloop) = AsyncClient::new(options, 65536);
    let queued: Arc<Mutex<VecDeque<oneshot::Sender<()>>>> = Arc::default();
    let (ready_tx, ready) = oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let q = queued.clone();
    tokio::spawn(async move {
        let mut by_pkid: HashMap<u16, oneshot::Sender<()>> = HashMap::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(w) = q.lock().unwrap().pop_front() {
                        by_pkid.insert(pkid, w);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(w) = by_pkid.remove(&ack.pkid) {
                        let _ = w.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // Unacknowledged publishes count as failed.
                    by_pkid.clear();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .context("waiting for CONNACK")?
        .context("publisher stopped")?;
    Ok(MqttSender {
        client,
        topic: topic.to_owned(),
        queued,
    })
}
