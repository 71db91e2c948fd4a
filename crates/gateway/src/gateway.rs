//! The gateway: shared state of all connections, the TCP accept loop, the WebSocket upgrade,
//! and graceful shutdown.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{extract::Request, response::Response};
use tern_core::{Clock, ConnectionId};
use tern_proto::FrameDecoder;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    observe::Observers,
    presence::Presence,
    registry::{KickPolicy, Registry},
    session,
    transport::{TcpTransport, WsTransport},
    websocket::{self, Limited, MessageLimit, PIECE},
};

/// What sessions call: the transport-neutral handlers, and the per-connection state only a
/// connection has.
#[derive(Debug, Clone)]
pub struct Services {
    /// The request handlers every front door shares (and the services behind them).
    pub api: tern_api::Api,
    /// Who follows whose presence (over the same registry as the gateway).
    pub presence: Arc<Presence>,
    /// Who observes which conversation (the same set fan-out pushes to).
    pub observers: Arc<Observers>,
    /// The bus logins are announced on, so other nodes close the connections they replace.
    pub bus: Arc<dyn tern_core::bus::Bus>,
    /// Where a user coming online or going offline is told to the app's webhooks.
    pub presence_events: Option<tern_core::webhooks::PresenceEvents>,
}

impl Services {
    /// The services behind the handlers, for what a connection does itself (log in, log out).
    pub fn core(&self) -> &tern_api::Services {
        self.api.services()
    }
}

/// Settings of the connection layer.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The largest frame accepted, header included.
    pub max_frame_len: usize,
    /// The largest frame accepted before login: what a connection nobody has authenticated
    /// may make the server buffer.
    pub max_frame_len_before_login: usize,
    /// Connections that have not logged in (yet), at most; more are refused at once. With
    /// `max_frame_len_before_login` this bounds what anonymous connections may hold in all.
    pub max_anonymous_connections: usize,
    /// Connections from one source address, at most (0: no limit). Behind a proxy on the same
    /// machine every client has the proxy's address: raise it or set 0 there.
    pub max_connections_per_address: usize,
    /// Logged-in connections of one user, at most (0: no limit); a login past it is refused
    /// with `RATE_LIMITED` (a login that replaces a connection does not count twice).
    pub max_connections_per_user: usize,
    /// How often clients should send something; silence for twice this closes a connection.
    pub heartbeat_interval: Duration,
    /// How long a new connection may stay without logging in.
    pub login_timeout: Duration,
    /// What a login does to the user's other connections.
    pub kick_policy: KickPolicy,
    /// Requests one connection may have in progress; more are refused with `OVERLOADED`.
    pub max_inflight: usize,
    /// Pushes queued per connection before it is considered lagging and told to sync.
    pub outbox_capacity: usize,
    /// The reconnect delay suggested to clients in the shutdown notice.
    pub reconnect_after: Duration,
    /// This node: every connection id it hands out names it.
    pub node: tern_core::NodeId,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_frame_len: tern_proto::DEFAULT_MAX_FRAME_LEN,
            max_frame_len_before_login: DEFAULT_MAX_FRAME_LEN_BEFORE_LOGIN,
            max_anonymous_connections: 10_000,
            max_connections_per_address: 1_000,
            max_connections_per_user: 32,
            heartbeat_interval: Duration::from_secs(30),
            login_timeout: Duration::from_secs(10),
            kick_policy: KickPolicy::OnePerPlatform,
            max_inflight: 256,
            outbox_capacity: 1024,
            reconnect_after: Duration::from_secs(1),
            node: tern_core::NodeId::random(),
        }
    }
}

/// The default of [`GatewayConfig::max_frame_len_before_login`]: a LOGIN or REGISTER needs
/// a few hundred bytes.
pub const DEFAULT_MAX_FRAME_LEN_BEFORE_LOGIN: usize = 2048;

/// Metric handles resolved once, so per-frame work does no registry lookups.
#[derive(Debug)]
pub(crate) struct GatewayMetrics {
    pub(crate) connections: metrics::Gauge,
    pub(crate) frames_in: metrics::Counter,
    pub(crate) frames_out: metrics::Counter,
    pub(crate) accepted: metrics::Counter,
    /// Connections refused because too many had not logged in.
    pub(crate) refused_anonymous: metrics::Counter,
    /// Connections refused because their address had too many.
    pub(crate) refused_address: metrics::Counter,
}

/// All connections of this process.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) services: Arc<Services>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: GatewayConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: GatewayMetrics,
    next_id: AtomicU64,
    /// Connections that have not logged in.
    pub(crate) anonymous: AtomicUsize,
    /// Open connections per source address (only addresses with at least one).
    per_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// The size of the last connection task's future, in bytes.
    task_bytes: AtomicUsize,
    tracker: TaskTracker,
}

impl Gateway {
    /// Removes a connection from the registry and from presence, and tells the followers of
    /// its user (a connection kicked earlier was removed then, and tells nobody twice).
    pub(crate) fn detach(&self, id: ConnectionId) {
        if let Some(entry) = self.registry.detach(id) {
            self.services.presence.changed(&entry.user);
            self.services.bus.logged_out(&entry.user, id);
            if let Some(events) = &self.services.presence_events
                && !self.services.presence.of(&entry.user).online
            {
                events.changed(&entry.user, false);
            }
        }
        self.services.presence.forget(id);
        self.services.observers.forget(id);
    }

    /// A gateway over `services`, registering connections in `registry` (the same registry the
    /// fan-out delivers through).
    pub fn new(
        services: Services,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        config: GatewayConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            services: Arc::new(services),
            registry,
            config,
            clock,
            shutdown: CancellationToken::new(),
            metrics: GatewayMetrics {
                connections: metrics::gauge!("tern_connections"),
                frames_in: metrics::counter!("tern_frames_in_total"),
                frames_out: metrics::counter!("tern_frames_out_total"),
                accepted: metrics::counter!("tern_connections_accepted_total"),
                refused_anonymous: metrics::counter!(
                    "tern_connections_refused_total",
                    "reason" => "anonymous"
                ),
                refused_address: metrics::counter!(
                    "tern_connections_refused_total",
                    "reason" => "address"
                ),
            },
            next_id: AtomicU64::new(1),
            anonymous: AtomicUsize::new(0),
            per_address: std::sync::Mutex::new(std::collections::HashMap::new()),
            task_bytes: AtomicUsize::new(0),
            tracker: TaskTracker::new(),
        })
    }

    /// The services sessions call, for tests that look at what this node sees.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The connection registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The bytes a connection's task holds for its whole life, not counting what it allocates
    /// (0 before the first connection). Every idle connection costs this much and more, so it is
    /// kept small: tests hold it to a budget.
    pub fn connection_task_bytes(&self) -> usize {
        self.task_bytes.load(Ordering::Relaxed)
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    fn next_connection_id(&self) -> ConnectionId {
        ConnectionId::new(
            self.config.node,
            self.next_id.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// The decoder of a new connection: it has not logged in.
    fn decoder(&self) -> FrameDecoder {
        FrameDecoder::new(self.config.max_frame_len_before_login)
    }

    /// Counts a new connection from `peer` (as anonymous, and against its address), or
    /// refuses it when too many are.
    fn admit(&self, peer: std::net::IpAddr) -> bool {
        let before = self.anonymous.fetch_add(1, Ordering::AcqRel);
        if before >= self.config.max_anonymous_connections {
            self.anonymous.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused_anonymous.increment(1);
            return false;
        }
        let cap = self.config.max_connections_per_address;
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_address.entry(peer).or_insert(0);
        if cap > 0 && *count >= cap {
            if *count == 0 {
                per_address.remove(&peer);
            }
            drop(per_address);
            self.anonymous.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused_address.increment(1);
            return false;
        }
        *count += 1;
        true
    }

    /// A connection from `peer` ended (after [`Gateway::admit`]).
    pub(crate) fn release_address(&self, peer: std::net::IpAddr) {
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_address.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&peer);
            }
        }
    }

    /// A connection logged in or ended before it did.
    pub(crate) fn release_anonymous(&self) {
        self.anonymous.fetch_sub(1, Ordering::AcqRel);
    }

    /// Connections that have not logged in, now.
    pub fn anonymous_connections(&self) -> usize {
        self.anonymous.load(Ordering::Acquire)
    }

    /// Accepts TCP connections until shutdown begins; with `tls`, each completes a TLS
    /// handshake first (on a task of its own, within the login timeout).
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if !self.admit(peer.ip()) {
                        // Closed unread: a flood of connections must not cost more than the
                        // budget it was refused for.
                        tracing::debug!(%peer, "refused: too many connections without a login, or from this address");
                        drop(stream);
                        continue;
                    }
                    // Small frames must leave at once; batching happens in the session.
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => self.spawn_session(TcpTransport::new(stream, self.decoder()), peer),
                        Some(acceptor) => self.spawn_tls_session(acceptor.clone(), stream, peer),
                    }
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Upgrades an HTTP request to a WebSocket session, or answers why not.
    pub fn upgrade_websocket(self: Arc<Self>, mut request: Request, peer: SocketAddr) -> Response {
        let unavailable = |why: &'static str| {
            axum::http::Response::builder()
                .status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                .header(axum::http::header::RETRY_AFTER, "1")
                .body(axum::body::Body::from(why))
                .unwrap_or_default()
        };
        if self.is_shutting_down() {
            return unavailable("shutting down\n");
        }
        let response = websocket::accept(request.method(), request.headers());
        if response.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS {
            return response;
        }
        if !self.admit(peer.ip()) {
            tracing::debug!(%peer, "refused: too many connections without a login, or from this address");
            return unavailable("too many connections; retry later\n");
        }
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    self.release_anonymous();
                    self.release_address(peer.ip());
                    tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let limit = MessageLimit::new(self.config.max_frame_len_before_login);
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                // The reader beneath cuts frames to PIECE and holds messages to the limit;
                // these are backstops.
                .max_frame_size(Some(PIECE))
                .max_message_size(Some(self.config.max_frame_len))
                // Small buffers keep an idle WebSocket near the size of an idle TCP connection.
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                Limited::new(hyper_util::rt::TokioIo::new(upgraded), limit.clone()),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                Some(config),
            )
            .await;
            let transport = WsTransport::new(socket, self.decoder(), limit);
            self.spawn_session(transport, peer);
        });
        response
    }

    /// Completes a TLS handshake, then runs the session; a connection that does not finish its
    /// handshake within the login timeout is dropped.
    fn spawn_tls_session(
        self: &Arc<Self>,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let gateway = self.clone();
        self.tracker.spawn(async move {
            let handshake =
                tokio::time::timeout(gateway.config.login_timeout, acceptor.accept(stream));
            let shutdown = gateway.shutdown.clone();
            let result = tokio::select! {
                r = handshake => r,
                _ = shutdown.cancelled() => {
                    gateway.release_anonymous();
                    gateway.release_address(peer.ip());
                    return;
                }
            };
            match result {
                Ok(Ok(tls)) => {
                    let transport = TcpTransport::new(tls, gateway.decoder());
                    gateway.spawn_session(transport, peer);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    gateway.release_anonymous();
                    gateway.release_address(peer.ip());
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    gateway.release_anonymous();
                    gateway.release_address(peer.ip());
                }
            }
        });
    }

    fn spawn_session<T: crate::transport::Transport>(
        self: &Arc<Self>,
        transport: T,
        peer: SocketAddr,
    ) {
        let id = self.next_connection_id();
        self.metrics.accepted.increment(1);
        let task = session::run(self.clone(), id, transport, peer);
        self.task_bytes
            .store(std::mem::size_of_val(&task), Ordering::Relaxed);
        self.tracker.spawn(task);
    }

    /// Stops accepting, lets every session finish its in-flight requests and say goodbye, and
    /// waits up to `drain` for them. Returns whether every session ended in time.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_ok()
    }
}
