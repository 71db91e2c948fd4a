//! One connection's task: reads frames, runs commands, writes responses and pushes.
//!
//! The task owns its transport. Each loop turn it writes what is ready in one batch, then
//! waits for the first of: shutdown, a finished request, something in its outbox, a frame from
//! the client, or its timer (login timeout before login, heartbeat timeout after). Requests run
//! as futures polled by this task, so one connection may have many in flight while needing no
//! task per request; sends are queued in the order they arrive, so their seqs keep that order.

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::{StreamExt, stream::FuturesUnordered};
use tern_core::{ConnectionId, ServiceError};
use tern_proto::{
    Encoding, ErrorCode, Frame, FrameError, PacketId, Payload, Request, ServerEvent, pb,
};
use tokio::time::{Instant, sleep_until};

use crate::{
    Services,
    command::{self, Caller},
    errors,
    gateway::Gateway,
    outbox::{CloseReason, OutboxReceiver, outbox},
    registry::Entry,
    transport::{Closing, Transport, TransportError},
};

/// Why a connection ended; logged once per connection.
#[derive(Debug)]
enum CloseCause {
    /// The client closed the connection.
    ClientClosed,
    /// The client logged out.
    LoggedOut,
    /// Nothing arrived for two heartbeat periods.
    HeartbeatTimeout,
    /// No login within the login timeout.
    LoginTimeout,
    /// Another login replaced this one.
    Kicked,
    /// The server is shutting down.
    Shutdown,
    /// The client broke the framing.
    ProtocolError(ProtocolError),
    /// Reading or writing failed.
    Io(std::io::Error),
}

impl CloseCause {
    /// What the transport tells the peer as it closes.
    fn closing(&self) -> Closing {
        match self {
            CloseCause::ClientClosed => Closing::PeerClosed,
            CloseCause::LoggedOut => Closing::LoggedOut,
            CloseCause::HeartbeatTimeout => Closing::HeartbeatTimeout,
            CloseCause::LoginTimeout => Closing::LoginTimeout,
            CloseCause::Kicked => Closing::Kicked,
            CloseCause::Shutdown => Closing::Shutdown,
            CloseCause::ProtocolError(ProtocolError::TooLarge(_)) => Closing::FrameTooLarge,
            CloseCause::ProtocolError(ProtocolError::Text) => Closing::TextMessage,
            CloseCause::ProtocolError(ProtocolError::InvalidText) => Closing::InvalidText,
            CloseCause::ProtocolError(ProtocolError::Framing(_)) => Closing::BrokenFraming,
            CloseCause::Io(_) => Closing::Failed,
        }
    }
}

/// How the client broke the protocol.
#[derive(Debug)]
enum ProtocolError {
    /// A frame over the size limit.
    TooLarge(String),
    /// A WebSocket text message.
    Text,
    /// A WebSocket text message that is not even UTF-8.
    InvalidText,
    /// Bytes that do not frame, or broken WebSocket framing.
    Framing(String),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::TooLarge(e) | ProtocolError::Framing(e) => f.write_str(e),
            ProtocolError::Text => f.write_str("text WebSocket message"),
            ProtocolError::InvalidText => f.write_str("text WebSocket message that is not UTF-8"),
        }
    }
}

impl std::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseCause::ClientClosed => f.write_str("client closed the connection"),
            CloseCause::LoggedOut => f.write_str("client logged out"),
            CloseCause::HeartbeatTimeout => f.write_str("server closed it: heartbeat timeout"),
            CloseCause::LoginTimeout => f.write_str("server closed it: login timeout"),
            CloseCause::Kicked => f.write_str("server closed it: replaced by another login"),
            CloseCause::Shutdown => f.write_str("server closed it: shutting down"),
            CloseCause::ProtocolError(e) => write!(f, "server closed it: protocol error: {e}"),
            CloseCause::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// Identifies the request a response answers.
#[derive(Debug, Clone, Copy)]
struct RequestMeta {
    kind: u16,
    packet_id: PacketId,
    encoding: Encoding,
}

impl RequestMeta {
    fn of(frame: &Frame) -> Self {
        Self {
            kind: frame.kind,
            packet_id: frame.packet_id,
            encoding: frame.encoding(),
        }
    }

    fn reply<M: Payload>(&self, msg: &M) -> Bytes {
        match tern_proto::encode_payload(msg, self.encoding) {
            Ok(payload) => {
                Frame::response(self.kind, self.packet_id, self.encoding, payload).to_bytes()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a response");
                self.error(ErrorCode::Internal.to_error("internal error"))
            }
        }
    }

    fn error(&self, error: pb::Error) -> Bytes {
        Frame::error(self.kind, self.packet_id, self.encoding, &error).to_bytes()
    }

    /// The frame for a handler's answer.
    fn response(&self, result: Result<tern_proto::Response, ServiceError>) -> Bytes {
        let payload = match result {
            Ok(response) => response.encode(self.encoding),
            Err(e) => return self.error(errors::to_wire(&e)),
        };
        match payload {
            Ok(payload) => {
                Frame::response(self.kind, self.packet_id, self.encoding, payload).to_bytes()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a response");
                self.error(ErrorCode::Internal.to_error("internal error"))
            }
        }
    }

    fn result<M: Payload>(&self, result: Result<M, ServiceError>) -> Bytes {
        match result {
            Ok(msg) => self.reply(&msg),
            Err(e) => self.error(errors::to_wire(&e)),
        }
    }
}

/// A request that finished running.
enum Completion {
    /// A response ready to write.
    Reply(Bytes),
    /// A login finished; the session attaches before answering.
    LoggedIn(RequestMeta, Result<command::login::LoggedIn, ServiceError>),
    /// A logout finished; the session answers, then closes.
    LoggedOut(RequestMeta, Result<pb::LogoutResponse, ServiceError>),
}

type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// What a session knows about its client.
enum Phase {
    /// Not logged in yet; `logging_in` while a LOGIN runs.
    Anonymous { logging_in: bool },
    /// Logged in and attached to the registry.
    Active(Box<Active>),
}

struct Active {
    caller: Caller,
    /// The same caller, as the transport-neutral handlers take it.
    api_caller: tern_api::Caller,
    /// SHA-256 of the login token, for LOGOUT; the token itself is not kept.
    token_hash: Box<str>,
    outbox: OutboxReceiver,
    /// The encoding pushes use: the one the client logged in with.
    encoding: Encoding,
}

/// What woke the session.
enum Wake {
    Shutdown,
    Completed(Completion),
    Outbox,
    Received(Result<Option<Frame>, TransportError>),
    Timer,
}

/// Runs a connection to its end.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` moves its
/// arguments into locals and keeps both copies in every state, and this future is held by
/// every idle connection.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
pub(crate) fn run<T: Transport>(
    gateway: Arc<Gateway>,
    id: ConnectionId,
    mut transport: T,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    async move {
        gateway.metrics.connections.increment(1.0);
        let mut session = Session {
            gateway: &gateway,
            id,
            peer: peer.ip(),
            phase: Phase::Anonymous { logging_in: false },
            encoding: Encoding::Json,
            out: Vec::new(),
            last_seen: Instant::now(),
            pending: None,
        };
        let cause = session.run(&mut transport).await;
        let user = match &session.phase {
            Phase::Active(a) => Some(a.caller.user.to_string()),
            Phase::Anonymous { .. } => None,
        };
        // Out of the registry (and offline) at once; the socket then closes gracefully.
        drop(session);
        transport.finish(cause.closing()).await;
        // Every connection logs who closed it and why.
        match &cause {
            CloseCause::Io(_) | CloseCause::ProtocolError(_) => {
                tracing::info!(conn = %id, %peer, user, %cause, "connection closed")
            }
            _ => tracing::debug!(conn = %id, %peer, user, %cause, "connection closed"),
        }
    }
}

struct Session<'g> {
    gateway: &'g Gateway,
    id: ConnectionId,
    /// The client's address: limits count per address.
    peer: std::net::IpAddr,
    phase: Phase,
    /// The encoding of errors about the connection itself: the one the client logged in with,
    /// else the one of the last frame it sent, else JSON (readable without a schema).
    encoding: Encoding,
    /// Frames ready to write at the top of the next turn.
    out: Vec<Bytes>,
    /// When the client last sent anything.
    last_seen: Instant,
    /// Requests in progress. Created on demand and dropped when empty, so an idle connection
    /// holds no allocation for it.
    pending: Option<FuturesUnordered<Pending>>,
}

/// Removes the connection from the registry however the task ends: after `run` returns, or
/// when the task is dropped mid-way.
impl Drop for Session<'_> {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Anonymous { .. }) {
            self.gateway.release_anonymous();
        }
        self.gateway.release_address(self.peer);
        self.gateway.detach(self.id);
        self.gateway.metrics.connections.decrement(1.0);
    }
}

impl Session<'_> {
    async fn run<T: Transport>(&mut self, transport: &mut T) -> CloseCause {
        let config = &self.gateway.config;
        let heartbeat_timeout = config.heartbeat_interval * 2;
        let timer = sleep_until(Instant::now() + config.login_timeout);
        tokio::pin!(timer);
        let mut draining = false;
        loop {
            if !self.out.is_empty() {
                let frames = std::mem::take(&mut self.out);
                self.gateway
                    .metrics
                    .frames_out
                    .increment(frames.len() as u64);
                if let Err(e) = transport.send(&frames).await {
                    return CloseCause::Io(e);
                }
            }
            if self
                .pending
                .as_ref()
                .is_some_and(FuturesUnordered::is_empty)
            {
                self.pending = None;
            }
            if draining && self.pending.is_none() {
                // Boxed: it runs once per connection, and unboxed it would be the largest state
                // of the future every idle connection holds.
                Box::pin(self.say_goodbye(transport)).await;
                return CloseCause::Shutdown;
            }
            let outbox = match &self.phase {
                Phase::Active(a) => Some(&a.outbox),
                Phase::Anonymous { .. } => None,
            };
            let wake = tokio::select! {
                biased;
                _ = self.gateway.shutdown.cancelled(), if !draining => Wake::Shutdown,
                Some(done) = next_completion(&mut self.pending) => Wake::Completed(done),
                _ = async { match outbox { Some(o) => o.changed().await, None => std::future::pending().await } } => Wake::Outbox,
                r = transport.recv(), if !draining => Wake::Received(r),
                _ = &mut timer => Wake::Timer,
            };
            match wake {
                Wake::Shutdown => draining = true,
                Wake::Completed(done) => {
                    if let Some(cause) = self.complete(done) {
                        self.flush_then(transport).await;
                        return cause;
                    }
                    if matches!(self.phase, Phase::Active(_)) {
                        timer.as_mut().reset(self.last_seen + heartbeat_timeout);
                        // Logged in: frames up to the full limit from now on.
                        transport.set_max_frame_len(config.max_frame_len);
                    }
                }
                Wake::Outbox => {
                    if let Some(cause) = self.drain_outbox() {
                        self.flush_then(transport).await;
                        return cause;
                    }
                }
                Wake::Received(Ok(Some(frame))) => {
                    self.last_seen = Instant::now();
                    if matches!(self.phase, Phase::Anonymous { .. }) {
                        self.encoding = frame.encoding();
                    }
                    self.gateway.metrics.frames_in.increment(1);
                    self.handle(frame);
                }
                Wake::Received(Ok(None)) => return CloseCause::ClientClosed,
                Wake::Received(Err(TransportError::Io(e))) => return CloseCause::Io(e),
                Wake::Received(Err(TransportError::TextMessage)) => {
                    // Boxed, like the goodbye: states an idle connection never reaches must not
                    // grow the future every connection holds.
                    return Box::pin(self.refuse(
                        transport,
                        "frames travel in binary WebSocket messages only".into(),
                        ProtocolError::Text,
                    ))
                    .await;
                }
                Wake::Received(Err(TransportError::InvalidText)) => {
                    return Box::pin(self.refuse(
                        transport,
                        "frames travel in binary WebSocket messages only, and this text message is not even UTF-8".into(),
                        ProtocolError::InvalidText,
                    ))
                    .await;
                }
                Wake::Received(Err(TransportError::WebSocketProtocol(e))) => {
                    let message = format!("broken WebSocket framing: {e}");
                    return Box::pin(self.refuse(
                        transport,
                        message.clone(),
                        ProtocolError::Framing(message),
                    ))
                    .await;
                }
                Wake::Received(Err(TransportError::Frame(e))) => {
                    self.out.push(framing_error(&e, self.encoding));
                    self.flush_then(transport).await;
                    return CloseCause::ProtocolError(match e {
                        FrameError::TooLarge { .. } => ProtocolError::TooLarge(e.to_string()),
                        _ => ProtocolError::Framing(e.to_string()),
                    });
                }
                Wake::Timer => match self.phase {
                    Phase::Anonymous { .. } => {
                        let error =
                            ErrorCode::LoginTimeout.to_error("no login within the login timeout");
                        self.out.push(
                            Frame::error(0, PacketId::ZERO, self.encoding, &error).to_bytes(),
                        );
                        self.flush_then(transport).await;
                        return CloseCause::LoginTimeout;
                    }
                    Phase::Active(_) => {
                        // The timer is re-armed lazily: frames only move `last_seen`.
                        let deadline = self.last_seen + heartbeat_timeout;
                        if deadline <= Instant::now() {
                            return CloseCause::HeartbeatTimeout;
                        }
                        timer.as_mut().reset(deadline);
                    }
                },
            }
        }
    }

    /// Answers a broken stream with `BAD_FRAME` as a connection error, then closes.
    async fn refuse<T: Transport>(
        &mut self,
        transport: &mut T,
        message: String,
        why: ProtocolError,
    ) -> CloseCause {
        let error = ErrorCode::BadFrame.to_error(message);
        self.out
            .push(Frame::error(0, PacketId::ZERO, self.encoding, &error).to_bytes());
        self.flush_then(transport).await;
        CloseCause::ProtocolError(why)
    }

    /// Writes whatever is ready, ignoring failure: the connection is closing anyway.
    async fn flush_then<T: Transport>(&mut self, transport: &mut T) {
        if !self.out.is_empty() {
            let frames = std::mem::take(&mut self.out);
            self.gateway
                .metrics
                .frames_out
                .increment(frames.len() as u64);
            let _ = transport.send(&frames).await;
        }
    }

    async fn say_goodbye<T: Transport>(&mut self, transport: &mut T) {
        let encoding = self.encoding;
        let goodbye = ServerEvent::Goodbye(pb::Goodbye {
            reason: "server is shutting down".into(),
            reconnect_after_ms: self.gateway.config.reconnect_after.as_millis() as u32,
        });
        if let Ok(frame) = goodbye.to_frame(PacketId(rand::random()), encoding) {
            self.out.push(frame.to_bytes());
        }
        self.flush_then(transport).await;
    }

    fn server_event(&self, event: ServerEvent, encoding: Encoding) -> Option<Bytes> {
        match event.to_frame(PacketId(rand::random()), encoding) {
            Ok(frame) => Some(frame.to_bytes()),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a server event");
                None
            }
        }
    }

    /// Moves queued pushes to the write batch; returns a cause if the connection must close.
    fn drain_outbox(&mut self) -> Option<CloseCause> {
        let Phase::Active(active) = &self.phase else {
            return None;
        };
        let drained = active.outbox.drain();
        let encoding = active.encoding;
        self.out.extend(drained.frames);
        if let Some(head) = drained.lagged {
            // Some pushes were dropped: the client recovers them with SYNC from its cursor.
            if let Some(f) =
                self.server_event(ServerEvent::SyncNotify(pb::SyncNotify { head }), encoding)
            {
                self.out.push(f);
            }
        }
        match drained.close {
            Some(CloseReason::Kick(kick)) => {
                if let Some(f) = self.server_event(ServerEvent::Kick(kick), encoding) {
                    self.out.push(f);
                }
                Some(CloseCause::Kicked)
            }
            None => None,
        }
    }

    /// Applies a finished request; returns a cause if the connection must close.
    fn complete(&mut self, done: Completion) -> Option<CloseCause> {
        match done {
            Completion::Reply(frame) => {
                self.out.push(frame);
                None
            }
            Completion::LoggedIn(meta, Err(e)) => {
                self.phase = Phase::Anonymous { logging_in: false };
                self.out.push(meta.error(errors::to_wire(&e)));
                None
            }
            Completion::LoggedIn(meta, Ok(done)) => {
                if self.gateway.is_shutting_down() {
                    self.phase = Phase::Anonymous { logging_in: false };
                    self.out
                        .push(meta.error(errors::to_wire(&ServiceError::ShuttingDown)));
                    return None;
                }
                let (tx, rx) = outbox(self.gateway.config.outbox_capacity);
                let login = &done.login;
                let entry = Entry {
                    user: login.user.clone(),
                    device: login.device.clone(),
                    platform: login.platform,
                    encoding: meta.encoding,
                    outbox: tx,
                };
                // Attach before answering: whatever is stored after the client sees the
                // response is pushed to it or found by its next SYNC.
                // Whether the user was online anywhere before this device (presence events).
                let was_online = self.gateway.services.presence_events.is_some()
                    && self.gateway.services.presence.of(&login.user).online;
                let attached = self.gateway.registry.attach_within(
                    self.id,
                    entry,
                    self.gateway.config.kick_policy,
                    self.gateway.config.max_connections_per_user,
                );
                let Ok(kicked) = attached else {
                    self.phase = Phase::Anonymous { logging_in: false };
                    self.out
                        .push(meta.error(errors::to_wire(&ServiceError::RateLimited {
                            what: "connections for this user; close one first",
                            retry_after: std::time::Duration::from_secs(1),
                        })));
                    return None;
                };
                // One notice covers the new device and the ones it replaced.
                self.gateway.services.presence.changed(&login.user);
                if let Some(events) = &self.gateway.services.presence_events
                    && !was_online
                {
                    events.changed(&login.user, true);
                }
                self.gateway.services.bus.logged_in(
                    &login.user,
                    &login.device,
                    login.platform,
                    self.id,
                );
                for (conn, old) in kicked {
                    // Removed from the registry here, so its close will not say so.
                    self.gateway.services.bus.logged_out(&old.user, conn);
                    tracing::debug!(conn = %conn, by = %self.id, user = %old.user, "kicking a replaced connection");
                    old.outbox.close(CloseReason::Kick(pb::Kick {
                        reason: pb::KickReason::Replaced as i32,
                        message: "another login on the same platform replaced this connection"
                            .into(),
                    }));
                }
                let response = command::login::response(
                    &done,
                    self.gateway.config.heartbeat_interval.as_millis() as u32,
                    self.gateway.clock.now_ms(),
                );
                // Counted among anonymous connections no more.
                self.gateway.release_anonymous();
                self.encoding = meta.encoding;
                let caller = Caller {
                    connection: self.id,
                    user: login.user.clone(),
                    device: login.device.clone(),
                };
                self.phase = Phase::Active(Box::new(Active {
                    api_caller: caller.api(),
                    caller,
                    token_hash: login.token_hash.as_str().into(),
                    outbox: rx,
                    encoding: meta.encoding,
                }));
                self.out.push(meta.reply(&response));
                None
            }
            Completion::LoggedOut(meta, result) => {
                let ok = result.is_ok();
                self.out.push(meta.result(result));
                if ok {
                    self.gateway.detach(self.id);
                    Some(CloseCause::LoggedOut)
                } else {
                    None
                }
            }
        }
    }

    /// Decodes and dispatches one frame from the client. Never waits: whatever takes time runs
    /// as a pending request, so the connection's task stays small.
    fn handle(&mut self, frame: Frame) {
        let meta = RequestMeta::of(&frame);
        let request = match Request::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.out.push(meta.error(e.code().to_error(e.to_string())));
                return;
            }
        };
        if self.pending.as_ref().map_or(0, FuturesUnordered::len)
            >= self.gateway.config.max_inflight
        {
            self.out
                .push(meta.error(ErrorCode::Overloaded.to_error(format!(
                    "at most {} requests may be in progress per connection",
                    self.gateway.config.max_inflight
                ))));
            return;
        }
        let services = self.gateway.services.clone();
        match request {
            Request::Ping(ping) => {
                let pong = command::ping::run(ping, self.gateway.clock.now_ms());
                self.out.push(meta.reply(&pong));
            }
            Request::Register(req) => {
                let peer = self.peer;
                self.spawn(async move {
                    Completion::Reply(
                        meta.result(command::register::run(&services, req, peer).await),
                    )
                })
            }
            Request::Login(req) => match &mut self.phase {
                Phase::Active(_) | Phase::Anonymous { logging_in: true } => {
                    self.out.push(
                        meta.error(
                            ErrorCode::AlreadyLoggedIn
                                .to_error("this connection is logged in or logging in"),
                        ),
                    );
                }
                Phase::Anonymous { logging_in } => {
                    *logging_in = true;
                    let peer = self.peer;
                    self.spawn(async move {
                        Completion::LoggedIn(meta, command::login::run(&services, req, peer).await)
                    });
                }
            },
            _ if !matches!(self.phase, Phase::Active(_)) => {
                self.out
                    .push(meta.error(ErrorCode::NotLoggedIn.to_error("log in first")));
            }
            Request::Logout(_) => {
                let Phase::Active(active) = &self.phase else {
                    return;
                };
                let token_hash = active.token_hash.clone();
                let caller = active.api_caller.clone();
                self.spawn(async move {
                    Completion::LoggedOut(
                        meta,
                        command::logout::run(&services, &caller, &token_hash).await,
                    )
                });
            }
            Request::Send(req) => {
                let Phase::Active(active) = &self.phase else {
                    return;
                };
                // Queued here, inline, so that this connection's sends keep their order.
                match services.api.submit_send(&active.api_caller, req) {
                    Ok(pending) => self.spawn(async move {
                        Completion::Reply(meta.result(pending.await.map(tern_api::send_ack)))
                    }),
                    Err(e) => self.out.push(meta.error(errors::to_wire(&e))),
                }
            }
            Request::PresenceSubscribe(req) => {
                self.spawn_as_caller(meta, move |services, caller| async move {
                    command::presence_subscribe::run(&services, &caller, req).await
                })
            }
            Request::PresenceUnsubscribe(req) => {
                self.spawn_as_caller(meta, move |services, caller| async move {
                    command::presence_unsubscribe::run(&services, &caller, req).await
                })
            }
            Request::Observe(req) => {
                self.spawn_as_caller(meta, move |services, caller| async move {
                    command::observe::run(&services, &caller, req).await
                })
            }
            // Everything else is the transport-neutral handlers' (one table in `tern_api`).
            other => {
                let Phase::Active(active) = &self.phase else {
                    return;
                };
                match services.api.dispatch(active.api_caller.clone(), other) {
                    Ok(answer) => {
                        self.spawn(async move { Completion::Reply(meta.response(answer.await)) })
                    }
                    Err(unhandled) => {
                        // Cannot happen while the two tables cover the protocol (a test checks).
                        tracing::error!(
                            kind = unhandled.message_type().name(),
                            "no handler for a request type"
                        );
                        self.out
                            .push(meta.error(ErrorCode::Internal.to_error("internal error")));
                    }
                }
            }
        }
    }

    /// Runs a command for the logged-in caller as a pending request answering `meta`.
    fn spawn_as_caller<M, F, Fut>(&mut self, meta: RequestMeta, command: F)
    where
        M: Payload,
        F: FnOnce(Arc<Services>, Caller) -> Fut,
        Fut: Future<Output = Result<M, ServiceError>> + Send + 'static,
    {
        let Phase::Active(active) = &self.phase else {
            return;
        };
        let run = command(self.gateway.services.clone(), active.caller.clone());
        self.spawn(async move { Completion::Reply(meta.result(run.await)) });
    }

    fn spawn(&mut self, fut: impl Future<Output = Completion> + Send + 'static) {
        self.pending
            .get_or_insert_with(FuturesUnordered::new)
            .push(Box::pin(fut));
    }
}

/// The next finished request. Pending forever while none is in progress.
///
/// Cancel safety: cancel-safe, as `FuturesUnordered::next` is.
async fn next_completion(pending: &mut Option<FuturesUnordered<Pending>>) -> Option<Completion> {
    match pending {
        Some(p) if !p.is_empty() => p.next().await,
        _ => std::future::pending().await,
    }
}

/// The error frame for a framing failure. Where the header was readable it answers that
/// request, in that frame's encoding; otherwise it is a connection error with packet id zero,
/// in the connection's encoding.
fn framing_error(e: &FrameError, connection: Encoding) -> Bytes {
    match e {
        FrameError::TooLarge {
            kind,
            packet_id,
            flags,
            ..
        } => {
            let encoding = if flags.contains(tern_proto::Flags::JSON) {
                Encoding::Json
            } else if *kind == 0 {
                connection
            } else {
                Encoding::Protobuf
            };
            Frame::error(
                *kind,
                *packet_id,
                encoding,
                &ErrorCode::FrameTooLarge.to_error(e.to_string()),
            )
            .to_bytes()
        }
        FrameError::TooShort { .. } | FrameError::LengthMismatch { .. } => Frame::error(
            0,
            PacketId::ZERO,
            connection,
            &ErrorCode::BadFrame.to_error(e.to_string()),
        )
        .to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use tern_proto::MessageType;

    /// The request types a session handles itself rather than through `tern_api`: those only a
    /// connection can make, and SEND, which it queues inline to keep a connection's sends in order.
    const OWN_REQUESTS: &[MessageType] = &[
        MessageType::Ping,
        MessageType::Register,
        MessageType::Login,
        MessageType::Logout,
        MessageType::Send,
        MessageType::PresenceSubscribe,
        MessageType::PresenceUnsubscribe,
        MessageType::Observe,
    ];

    #[test]
    fn every_request_type_has_a_handler() {
        for kind in MessageType::ALL.iter().copied().filter(|k| k.is_request()) {
            assert!(
                OWN_REQUESTS.contains(&kind) || tern_api::Api::handles(kind),
                "{} has no handler: add it to tern_api's table (or to OWN_REQUESTS)",
                kind.name()
            );
        }
        for kind in OWN_REQUESTS {
            assert!(kind.is_request(), "{} is not a request", kind.name());
        }
    }
}
