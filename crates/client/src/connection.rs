//! One framed connection to a server, over TCP or WebSocket, with requests paired to their
//! responses by packet id and server events delivered on a channel.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tern_proto::{
    Decoded, Encoding, Flags, Frame, FrameDecoder, MessageType, PacketId, Payload, Request,
    RequestPayload, ServerEvent, pb,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::ClientError;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Binary frames over TCP, e.g. `127.0.0.1:7700`.
    Tcp(String),
    /// Binary frames over TLS over TCP, e.g. `chat.example.com:7700` (written `tls://…`).
    Tls(String),
    /// Binary frames over WebSocket, e.g. `ws://127.0.0.1:7701/ws` or `wss://…`.
    WebSocket(String),
}

impl Endpoint {
    /// `ws://…` or `wss://…` is a WebSocket URL; `tls://host:port` is TCP with TLS;
    /// `tcp://host:port` or `host:port` is TCP.
    pub fn parse(s: &str) -> Endpoint {
        if s.starts_with("ws://") || s.starts_with("wss://") {
            Endpoint::WebSocket(s.to_owned())
        } else if let Some(addr) = s.strip_prefix("tls://") {
            Endpoint::Tls(addr.to_owned())
        } else {
            Endpoint::Tcp(s.strip_prefix("tcp://").unwrap_or(s).to_owned())
        }
    }

    /// Whether connecting needs TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            Endpoint::Tls(_) => true,
            Endpoint::WebSocket(u) => u.starts_with("wss://"),
            Endpoint::Tcp(_) => false,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Tls(a) => write!(f, "tls://{a}"),
            Endpoint::WebSocket(u) => f.write_str(u),
        }
    }
}

/// How to connect: the payload encoding, the time allowed, and optionally a local address and
/// the TLS trust (the system's roots when `None`).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Payload encoding for requests.
    pub encoding: Encoding,
    /// How long connecting (and each request) may take.
    pub timeout: Duration,
    /// The local address to connect from (TCP only), so that one machine can open more
    /// connections to one server than a single source address has ports.
    pub local_ip: Option<std::net::IpAddr>,
    /// Which certificate authorities to trust for `tls://` and `wss://`.
    pub tls: Option<crate::TlsTrust>,
}

impl ConnectOptions {
    /// Options with no local address and the system's roots.
    pub fn new(encoding: Encoding, timeout: Duration) -> Self {
        Self {
            encoding,
            timeout,
            local_ip: None,
            tls: None,
        }
    }
}

/// A byte stream frames travel on, plain or TLS.
trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for T {}

type PendingMap = Arc<Mutex<HashMap<PacketId, oneshot::Sender<Frame>>>>;

/// The response to a request already on the wire (see [`Connection::start`]).
#[derive(Debug)]
pub struct PendingResponse<M> {
    rx: oneshot::Receiver<Frame>,
    packet_id: PacketId,
    pending: PendingMap,
    deadline: tokio::time::Instant,
    kind: MessageType,
    _response: std::marker::PhantomData<fn() -> M>,
}

impl<M: Payload> PendingResponse<M> {
    async fn wait(self) -> Result<M, ClientError> {
        let frame = match tokio::time::timeout_at(self.deadline, self.rx).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => {
                return Err(ClientError::Disconnected(
                    "connection closed before the response".into(),
                ));
            }
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&self.packet_id);
                return Err(ClientError::Timeout);
            }
        };
        if frame.is_error() {
            let error: pb::Error = frame
                .decode()
                .map_err(|e| ClientError::Protocol(format!("undecodable error response: {e}")))?;
            return Err(ClientError::from_wire(error));
        }
        frame.decode::<M>().map_err(|e| {
            ClientError::Protocol(format!("undecodable {} response: {e}", self.kind.name()))
        })
    }
}

impl<M: Payload + Send + 'static> std::future::IntoFuture for PendingResponse<M> {
    type Output = Result<M, ClientError>;
    type IntoFuture = std::pin::Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

async fn tcp_connect(addr: &str, local_ip: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = local_ip else {
        return TcpStream::connect(addr).await;
    };
    let target = tokio::net::lookup_host(addr)
        .await?
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{addr} has no address of the local address's family"
            ))
        })?;
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(ip, 0))?;
    socket.connect(target).await
}

/// A live connection. Cloning shares it; it closes when every clone is dropped or on
/// [`Connection::close`].
#[derive(Debug, Clone)]
pub struct Connection {
    outgoing: mpsc::UnboundedSender<Bytes>,
    pending: PendingMap,
    encoding: Encoding,
    timeout: Duration,
}

impl Connection {
    /// Connects and starts the connection's I/O task. Server events (pushes, kicks, goodbyes)
    /// arrive on the returned receiver, which ends when the connection does.
    pub async fn connect(
        endpoint: &Endpoint,
        encoding: Encoding,
        timeout: Duration,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<ServerEvent>), ClientError> {
        Self::connect_with(endpoint, &ConnectOptions::new(encoding, timeout)).await
    }

    /// Connects to the first of `endpoints` that answers, trying them in order from `start`
    /// (the nodes of one deployment); returns the connection and the index of its endpoint. An
    /// error that another node would not change (a TLS certificate refused) ends the search.
    pub async fn connect_any(
        endpoints: &[Endpoint],
        start: usize,
        options: &ConnectOptions,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<ServerEvent>, usize), ClientError> {
        let mut last = ClientError::Protocol("no server address given".into());
        for k in 0..endpoints.len() {
            let i = (start + k) % endpoints.len();
            match Self::connect_with(&endpoints[i], options).await {
                Ok((conn, events)) => return Ok((conn, events, i)),
                Err(e) if e.is_retryable() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// [`Connection::connect`] with every option.
    pub async fn connect_with(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<ServerEvent>), ClientError> {
        let (encoding, timeout) = (options.encoding, options.timeout);
        let err = |reason: String| ClientError::Connect {
            endpoint: endpoint.to_string(),
            reason,
        };
        let trust = || match &options.tls {
            Some(t) => Ok(t.clone()),
            None => crate::TlsTrust::system(),
        };
        let connecting = async {
            Ok::<_, ClientError>(match endpoint {
                Endpoint::Tcp(addr) => {
                    let stream = tcp_connect(addr, options.local_ip)
                        .await
                        .map_err(|e| err(e.to_string()))?;
                    let _ = stream.set_nodelay(true);
                    Transport::Tcp(Box::new(stream), BytesMut::new())
                }
                Endpoint::Tls(addr) => {
                    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                        .map_err(|e| err(format!("{host} is not a server name: {e}")))?;
                    let stream = tcp_connect(addr, options.local_ip)
                        .await
                        .map_err(|e| err(e.to_string()))?;
                    let _ = stream.set_nodelay(true);
                    let tls = tokio_rustls::TlsConnector::from(trust()?.config())
                        .connect(name, stream)
                        .await
                        .map_err(|e| err(format!("TLS handshake: {e}")))?;
                    Transport::Tcp(Box::new(tls), BytesMut::new())
                }
                Endpoint::WebSocket(url) => {
                    let connector = if endpoint.is_tls() {
                        Some(tokio_tungstenite::Connector::Rustls(trust()?.config()))
                    } else {
                        None
                    };
                    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                        url.as_str(),
                        None,
                        false,
                        connector,
                    )
                    .await
                    .map_err(|e| err(e.to_string()))?;
                    Transport::Ws(Box::new(ws))
                }
            })
        };
        let transport = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| err("timed out".into()))??;
        let (outgoing, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let pending: PendingMap = Arc::default();
        tokio::spawn(io_loop(transport, rx, pending.clone(), events_tx));
        Ok((
            Connection {
                outgoing,
                pending,
                encoding,
                timeout,
            },
            events,
        ))
    }

    /// The payload encoding this connection's requests use.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Sends a request and waits for its response.
    pub async fn request<R: RequestPayload>(&self, req: R) -> Result<R::Response, ClientError> {
        self.start(req)?.wait().await
    }

    /// Puts a request on the wire now and returns a future for its response. Requests started
    /// one after another from one task reach the server in that order, however their futures
    /// are later awaited or spawned.
    pub fn start<R: RequestPayload>(
        &self,
        req: R,
    ) -> Result<PendingResponse<R::Response>, ClientError> {
        let packet_id = PacketId(rand::random());
        let payload = tern_proto::encode_payload(&req, self.encoding)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        let frame = Frame::with_payload(R::TYPE, Flags::empty(), packet_id, self.encoding, payload);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(packet_id, tx);
        if self.outgoing.send(frame.to_bytes()).is_err() {
            self.forget(packet_id);
            return Err(ClientError::Disconnected("connection closed".into()));
        }
        Ok(PendingResponse {
            rx,
            packet_id,
            pending: self.pending.clone(),
            deadline: tokio::time::Instant::now() + self.timeout,
            kind: R::TYPE,
            _response: std::marker::PhantomData,
        })
    }

    /// Sends a request without waiting for (or keeping) its response.
    pub fn send_only(&self, req: &Request) -> Result<(), ClientError> {
        let frame = req
            .to_frame(PacketId(rand::random()), self.encoding)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        self.outgoing
            .send(frame.to_bytes())
            .map_err(|_| ClientError::Disconnected("connection closed".into()))
    }

    /// Writes raw bytes as they are (for tests of malformed input).
    pub fn send_raw(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.outgoing
            .send(bytes)
            .map_err(|_| ClientError::Disconnected("connection closed".into()))
    }

    /// Whether the I/O task has ended.
    pub fn is_closed(&self) -> bool {
        self.outgoing.is_closed()
    }

    /// Closes the connection; requests in flight fail with `Disconnected`.
    pub fn close(&self) {
        // An empty write is the I/O task's signal to shut the socket down.
        let _ = self.outgoing.send(Bytes::new());
    }

    fn forget(&self, packet_id: PacketId) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&packet_id);
    }
}

enum Transport {
    Tcp(Box<dyn ByteStream>, BytesMut),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl Transport {
    /// The next frame. Cancel-safe: partial reads stay in the buffer.
    async fn recv(&mut self, decoder: &FrameDecoder) -> Result<Option<Frame>, String> {
        match self {
            Transport::Tcp(stream, buf) => loop {
                if let Decoded::Frame(f) = decoder.decode(buf).map_err(|e| e.to_string())? {
                    return Ok(Some(f));
                }
                buf.reserve(4096);
                if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Ok(None);
                }
            },
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(Message::Binary(b))) => {
                        return decoder.decode_exact(b).map(Some).map_err(|e| e.to_string());
                    }
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    async fn send(&mut self, frames: &[Bytes]) -> Result<(), String> {
        match self {
            Transport::Tcp(stream, _) => {
                let mut joined = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
                for f in frames {
                    joined.extend_from_slice(f);
                }
                stream.write_all(&joined).await.map_err(|e| e.to_string())
            }
            Transport::Ws(ws) => {
                for f in frames {
                    ws.feed(Message::Binary(f.clone()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                ws.flush().await.map_err(|e| e.to_string())
            }
        }
    }

    async fn shutdown(&mut self) {
        match self {
            Transport::Tcp(stream, _) => {
                let _ = stream.shutdown().await;
            }
            Transport::Ws(ws) => {
                let _ = SinkExt::close(ws).await;
            }
        }
    }
}

async fn io_loop(
    mut transport: Transport,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    pending: PendingMap,
    events: mpsc::UnboundedSender<ServerEvent>,
) {
    // The client accepts frames up to 16 MiB: large sync pages must not break it.
    let decoder = FrameDecoder::new(16 << 20);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            n = outgoing.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                let close = batch.iter().any(Bytes::is_empty);
                batch.retain(|b| !b.is_empty());
                if !batch.is_empty() && transport.send(&batch).await.is_err() {
                    break;
                }
                batch.clear();
                if close {
                    transport.shutdown().await;
                    break;
                }
            }
            frame = transport.recv(&decoder) => match frame {
                Ok(Some(frame)) if frame.is_response() => {
                    let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&frame.packet_id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(frame);
                    }
                }
                Ok(Some(frame)) if frame.kind == 0 => {
                    // A connection-level error: the server closes right after it.
                    if let Ok(e) = frame.decode::<pb::Error>() {
                        tracing::debug!(code = e.code, name = %e.name, message = %e.message, "connection error from server");
                    }
                }
                Ok(Some(frame)) => match ServerEvent::decode(&frame) {
                    Ok(Some(event)) => {
                        let _ = events.send(event);
                    }
                    Ok(None) => tracing::debug!(kind = frame.kind, "ignoring an unknown server frame"),
                    Err(e) => tracing::warn!(error = %e, "undecodable server event"),
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "connection failed");
                    break;
                }
            },
        }
    }
    // Requests still waiting learn that the connection is gone.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}
