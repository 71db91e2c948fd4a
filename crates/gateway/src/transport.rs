//! Transports: TCP byte streams and WebSocket messages, both carrying the same frames.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tern_proto::{Decoded, Frame, FrameDecoder, FrameError};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use crate::websocket::{Limited, MessageLimit, Oversize};

/// Why a transport cannot deliver the next frame.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The bytes do not frame; the stream cannot be trusted further.
    Frame(FrameError),
    /// A WebSocket text message: frames travel in binary messages only.
    TextMessage,
    /// A WebSocket text message that is not even UTF-8.
    InvalidText,
    /// The WebSocket framing itself is broken (unmasked, reserved bits, a bad continuation).
    WebSocketProtocol(String),
    /// The connection failed.
    Io(io::Error),
}

/// How a connection ends, as the transport tells the peer (a WebSocket close frame; TCP has
/// nothing to say beyond closing). One byte: every connection's task holds it while closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The peer closed first: nothing more to send.
    PeerClosed,
    LoggedOut,
    HeartbeatTimeout,
    LoginTimeout,
    Kicked,
    Shutdown,
    FrameTooLarge,
    TextMessage,
    InvalidText,
    BrokenFraming,
    Failed,
}

impl Closing {
    /// The WebSocket close code (RFC 6455 section 7.4.1) and a reason for humans.
    pub(crate) fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Closing::PeerClosed => (1000, ""),
            Closing::LoggedOut => (1000, "logged out"),
            Closing::HeartbeatTimeout => (1008, "heartbeat timeout"),
            Closing::LoginTimeout => (1008, "login timeout"),
            Closing::Kicked => (1008, "replaced by another login"),
            Closing::Shutdown => (1001, "server shutting down"),
            // Message Too Big.
            Closing::FrameTooLarge => (1009, "frame too large"),
            // Unsupported Data: frames travel in binary messages.
            Closing::TextMessage => (1003, "frames travel in binary messages only"),
            // Invalid Frame Payload Data.
            Closing::InvalidText => (1007, "text message is not UTF-8"),
            Closing::BrokenFraming => (1002, "broken framing"),
            Closing::Failed => (1011, "connection failed"),
        }
    }
}

/// A connection that carries frames.
pub(crate) trait Transport: Send + 'static {
    /// The next frame, or `None` when the peer closed the connection.
    ///
    /// Cancel safety: cancel-safe; bytes read before cancellation stay buffered.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send;

    /// Writes the frames, in order, in as few writes as the transport allows.
    fn send(&mut self, frames: &[Bytes]) -> impl Future<Output = io::Result<()>> + Send;

    /// Changes the largest frame the peer may send from now on (raised at login).
    fn set_max_frame_len(&mut self, max: usize);

    /// Closes the connection so that the frames written last reach the peer: the server's side
    /// is shut first, then, unless the peer closed first (`peer_closed`), whatever it still
    /// sends is read and dropped until it closes too or [`LINGER`] passes. Closing a socket with
    /// unread bytes in it would reset the connection instead, and a reset can destroy the last
    /// response (a LOGOUT's, a KICK) before the client reads it.
    fn finish(self, closing: Closing) -> impl Future<Output = ()> + Send;
}

/// How long a closing connection waits for its peer to close too.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// The most a closing connection reads (and drops) while it waits.
const LINGER_BYTES: usize = 64 * 1024;

/// Bytes reserved per read when no partial frame says how many more are needed.
const READ_CHUNK: usize = 4096;

/// The most reserved at once for a partial frame: a large frame is buffered as its bytes
/// arrive, not when its header announces it.
const MAX_RESERVE: usize = 16 * 1024;

/// A byte stream frames travel on: plain TCP, or TLS over TCP.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once a read would find bytes, without a buffer to read into, so that an idle
    /// connection holds none. A stream that cannot tell (TLS keeps buffers of its own) is
    /// ready at once and the read itself waits.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ByteStream for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ByteStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Frames over a TCP stream (plain or TLS).
#[derive(Debug)]
pub(crate) struct TcpTransport<S = TcpStream> {
    stream: S,
    decoder: FrameDecoder,
    /// Holds a partial frame between reads; empty (and unallocated) while the connection idles.
    buf: BytesMut,
}

impl<S: ByteStream> TcpTransport<S> {
    pub(crate) fn new(stream: S, decoder: FrameDecoder) -> Self {
        Self {
            stream,
            decoder,
            buf: BytesMut::new(),
        }
    }

    /// Polls for the next frame: decodes what is buffered, else reads what the socket has.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, TransportError>> {
        loop {
            let mut needed = 0;
            if !self.buf.is_empty() {
                match self
                    .decoder
                    .decode(&mut self.buf)
                    .map_err(TransportError::Frame)?
                {
                    Decoded::Frame(frame) => return Poll::Ready(Ok(Some(frame))),
                    Decoded::Incomplete { needed: n } => needed = n,
                }
            } else if self.buf.capacity() > 0 {
                // An idle connection keeps no read buffer: memory per connection stays small.
                self.buf = BytesMut::new();
            }
            // Readiness first, so that an idle connection reserves no buffer while it waits.
            ready!(ByteStream::poll_read_ready(&mut self.stream, cx))
                .map_err(TransportError::Io)?;
            // Before login the decoder's limit is small, and so is what may be reserved.
            let floor = READ_CHUNK.min(self.decoder.max_frame_len());
            self.buf.reserve(needed.min(MAX_RESERVE).max(floor));
            // `AsyncRead` rather than `try_read`: a read that leaves room in the buffer tells it
            // the socket is drained, which saves the read that would only return `WouldBlock`.
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(TransportError::Io(e))),
                Poll::Pending => {
                    // The readiness was stale; wait without holding an empty buffer.
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: ByteStream> Transport for TcpTransport<S> {
    fn recv(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send {
        // A poll function rather than an `async fn` awaiting `readable()`: it holds no waiter
        // of its own, so the future an idle connection waits on is one reference.
        std::future::poll_fn(move |cx| self.poll_recv(cx))
    }

    fn set_max_frame_len(&mut self, max: usize) {
        self.decoder.set_max_frame_len(max);
    }

    async fn finish(mut self, closing: Closing) {
        if self.stream.shutdown().await.is_err() || closing == Closing::PeerClosed {
            return;
        }
        let drain = async {
            // Small, and only once the peer sends something: when many connections close at
            // once (a network blip, a shutdown), their lingering must not add up.
            let mut scratch = Vec::new();
            let mut dropped = 0;
            while dropped < LINGER_BYTES {
                if std::future::poll_fn(|cx| self.stream.poll_read_ready(cx))
                    .await
                    .is_err()
                {
                    return;
                }
                if scratch.is_empty() {
                    scratch = vec![0u8; 512];
                }
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => dropped += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    async fn send(&mut self, frames: &[Bytes]) -> io::Result<()> {
        match frames {
            [] => Ok(()),
            [one] => self.stream.write_all(one).await,
            many => {
                // One write for the whole batch: the syscall, not the copy, is the cost.
                let total = many.iter().map(Bytes::len).sum();
                let mut joined = BytesMut::with_capacity(total);
                for f in many {
                    joined.extend_from_slice(f);
                }
                self.stream.write_all(&joined).await
            }
        }
    }
}

/// The WebSocket stream a session reads: a hyper upgrade, held to a size limit beneath the
/// WebSocket layer (see `websocket.rs`).
pub(crate) type WsStream = WebSocketStream<Limited<TokioIo<hyper::upgrade::Upgraded>>>;

/// Frames over a WebSocket: one frame per binary message.
#[derive(Debug)]
pub(crate) struct WsTransport {
    socket: WsStream,
    decoder: FrameDecoder,
    /// Shared with the reader beneath the WebSocket layer.
    limit: MessageLimit,
}

impl WsTransport {
    pub(crate) fn new(socket: WsStream, decoder: FrameDecoder, limit: MessageLimit) -> Self {
        Self {
            socket,
            decoder,
            limit,
        }
    }
}

impl Transport for WsTransport {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            match self.socket.next().await {
                None
                | Some(Ok(Message::Close(_)))
                | Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => return Ok(None),
                Some(Err(e)) => return Err(ws_error(e)),
                Some(Ok(Message::Binary(bytes))) => {
                    return self
                        .decoder
                        .decode_exact(bytes)
                        .map(Some)
                        .map_err(TransportError::Frame);
                }
                Some(Ok(Message::Text(_))) => return Err(TransportError::TextMessage),
                // Control frames are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }

    fn set_max_frame_len(&mut self, max: usize) {
        self.decoder.set_max_frame_len(max);
        self.limit.set(max);
    }

    async fn finish(mut self, closing: Closing) {
        if closing == Closing::PeerClosed {
            return;
        }
        // The WebSocket close handshake: our Close frame, then theirs (or the linger runs out).
        let _ = tokio::time::timeout(LINGER, async {
            let (code, reason) = closing.code_and_reason();
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            if self.socket.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(m)) = self.socket.next().await {
                if matches!(m, Message::Close(_)) {
                    return;
                }
            }
        })
        .await;
    }

    async fn send(&mut self, frames: &[Bytes]) -> io::Result<()> {
        for f in frames {
            self.socket
                .feed(Message::Binary(f.clone()))
                .await
                .map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)
    }
}

/// What a WebSocket read error means for the session.
fn ws_error(e: tungstenite::Error) -> TransportError {
    match e {
        tungstenite::Error::Io(e) => {
            if let Some(Oversize(frame_error)) = e.get_ref().and_then(|r| r.downcast_ref()) {
                return TransportError::Frame(frame_error.clone());
            }
            TransportError::Io(e)
        }
        tungstenite::Error::Utf8(_) => TransportError::InvalidText,
        tungstenite::Error::Protocol(p) => TransportError::WebSocketProtocol(p.to_string()),
        tungstenite::Error::Capacity(c) => TransportError::WebSocketProtocol(c.to_string()),
        other => TransportError::Io(io::Error::other(other)),
    }
}
