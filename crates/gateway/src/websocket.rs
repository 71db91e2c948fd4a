//! WebSocket edges: the upgrade handshake, and a reader beneath the WebSocket layer that holds
//! each message to the connection's current size limit before a byte of it is buffered.
//!
//! The WebSocket layer (tungstenite) reserves a frame's whole announced payload as soon as it
//! reads the frame's header, and its limits are fixed when the socket is made. A connection
//! that has not logged in must hold almost nothing, and one that has must buffer a large frame
//! only as its bytes arrive, so [`Limited`] sits between the socket and that layer:
//!
//! * It reads each client frame header itself. A data message whose announced size passes the
//!   current limit (small before login, `max_frame_bytes` after) never reaches the WebSocket
//!   layer: the read fails with [`Oversize`], naming the Tern frame inside (its first 28 bytes
//!   are read and unmasked for that), so the session can answer `FRAME_TOO_LARGE` like on TCP.
//! * It cuts a large data frame into fragments of at most [`PIECE`] bytes (a fragmented message
//!   is the same message to the WebSocket layer), so what the layer reserves at a time is
//!   bounded, and the message grows only as its bytes arrive. Fragments start at multiples of
//!   four payload bytes, so the client's masking key stays valid for each of them.
//!
//! Everything else (control frames, the write side) passes through untouched.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    http::{HeaderMap, Method, Response, StatusCode, header},
};
use tern_proto::{FrameError, HEADER_LEN, Header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Checks a request for a WebSocket upgrade (RFC 6455 section 4.2.1): the 101 response that
/// accepts it, or the error response that says what is missing (any other status).
pub(crate) fn accept(method: &Method, headers: &HeaderMap) -> Response<Body> {
    match check(method, headers) {
        Ok(r) | Err(r) => r,
    }
}

#[allow(
    clippy::result_large_err,
    reason = "both arms are the response; the split only names which"
)]
fn check(method: &Method, headers: &HeaderMap) -> Result<Response<Body>, Response<Body>> {
    let refuse = |status: StatusCode, why: &'static str| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(why))
            .unwrap_or_default()
    };
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET request\n",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only: send Connection: Upgrade and Upgrade: websocket\n",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Body::from("Sec-WebSocket-Version must be 13\n"))
            .unwrap_or_default());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key is missing\n",
        ));
    };
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .body(Body::empty())
        .unwrap_or_default())
}

/// The largest fragment the WebSocket layer is handed; a multiple of four (see the module doc).
pub(crate) const PIECE: usize = 16 * 1024;

/// The largest WebSocket frame header: 2 bytes, an 8-byte length, a 4-byte masking key.
const MAX_WS_HEADER: usize = 14;

/// The limit a connection's messages are held to now, shared by the reader and the session
/// (which raises it at login).
#[derive(Debug, Clone)]
pub(crate) struct MessageLimit(Arc<AtomicUsize>);

impl MessageLimit {
    pub(crate) fn new(max: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(max)))
    }

    pub(crate) fn set(&self, max: usize) {
        self.0.store(max, Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A message announced larger than the limit. Carried inside the `io::Error` the read fails
/// with, so that it crosses the WebSocket layer intact.
#[derive(Debug)]
pub(crate) struct Oversize(pub(crate) FrameError);

impl std::fmt::Display for Oversize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Oversize {}

/// The frame being passed through.
#[derive(Debug, Clone, Copy)]
struct WsFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes of the frame not yet passed on.
    left: u64,
    /// Payload bytes passed on so far, modulo 4: where the masking key stands.
    offset: u8,
    /// Payload bytes left in the fragment being passed on (at most [`PIECE`]).
    piece_left: u32,
    /// Whether the fragment being passed on is the frame's first.
    first_piece: bool,
}

impl WsFrame {
    fn is_data(&self) -> bool {
        self.opcode < 8
    }
}

/// What the reader is doing.
#[derive(Debug)]
enum State {
    /// Collecting a frame header in `header`.
    Header,
    /// Passing a frame's payload through, fragment by fragment.
    Payload(WsFrame),
    /// Reading the Tern header of an oversize message before refusing it.
    Refusing(WsFrame),
    /// Refused: every later read fails.
    Refused,
}

/// The read side of a WebSocket connection, held to a [`MessageLimit`]; see the module doc.
#[derive(Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    limit: MessageLimit,
    state: State,
    /// A client frame header being collected; once parsed, the header handed to the
    /// WebSocket layer for the next fragment (`out_pos..out_len`). Every WebSocket connection
    /// holds this struct, so it is kept small.
    header: [u8; MAX_WS_HEADER],
    header_len: u8,
    out_pos: u8,
    out_len: u8,
    head_len: u8,
    /// The current message's first payload bytes, unmasked: its Tern header.
    head: [u8; HEADER_LEN],
    /// Bytes of the current data message announced so far, across its fragments.
    message_len: u64,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, limit: MessageLimit) -> Self {
        Self {
            inner,
            limit,
            state: State::Header,
            header: [0; MAX_WS_HEADER],
            header_len: 0,
            out_pos: 0,
            out_len: 0,
            head_len: 0,
            head: [0; HEADER_LEN],
            message_len: 0,
        }
    }

    /// Bytes the header collected so far says it has in all, once that is known.
    fn header_needed(&self) -> usize {
        if (self.header_len as usize) < 2 {
            return 2;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Parses the complete header in `header`.
    fn parse_header(&self) -> WsFrame {
        let h = &self.header;
        let masked = h[1] & 0x80 != 0;
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (
                u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                10,
            ),
            n => (u64::from(n), 2),
        };
        WsFrame {
            fin: h[0] & 0x80 != 0,
            rsv: h[0] & 0x70,
            opcode: h[0] & 0x0f,
            mask: masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]),
            left: len,
            offset: 0,
            piece_left: 0,
            first_piece: true,
        }
    }

    /// Queues the header of the frame's next fragment for the WebSocket layer (in `header`,
    /// whose client bytes are parsed by now).
    fn start_piece(&mut self, frame: &mut WsFrame) {
        let len = frame.left.min(PIECE as u64);
        let last = len == frame.left;
        if frame.first_piece && last {
            // Small enough already: the client's own header, unchanged.
            self.out_len = self.header_len;
        } else {
            let fin = if last && frame.fin { 0x80 } else { 0 };
            let (rsv, opcode) = if frame.first_piece {
                (frame.rsv, frame.opcode)
            } else {
                (0, 0)
            };
            let mut n = 0;
            let mut put = |b: u8| {
                self.header[n] = b;
                n += 1;
            };
            put(fin | rsv | opcode);
            let masked = if frame.mask.is_some() { 0x80 } else { 0 };
            if len <= 125 {
                put(masked | len as u8);
            } else {
                // At most PIECE, so two bytes always hold it.
                put(masked | 126);
                for b in (len as u16).to_be_bytes() {
                    put(b);
                }
            }
            if let Some(mask) = frame.mask {
                for b in mask {
                    put(b);
                }
            }
            self.out_len = n as u8;
        }
        self.out_pos = 0;
        frame.piece_left = len as u32;
        frame.first_piece = false;
    }

    /// Keeps the unmasked first bytes of a message's payload (its Tern header).
    fn capture(&mut self, frame: &WsFrame, bytes: &[u8]) {
        if !frame.is_data() {
            return;
        }
        for (i, b) in bytes.iter().enumerate() {
            let at = self.head_len as usize;
            if at >= HEADER_LEN {
                break;
            }
            let key = frame.mask.map_or(0, |m| m[(frame.offset as usize + i) % 4]);
            self.head[at] = b ^ key;
            self.head_len += 1;
        }
    }

    /// The error that refuses the current message.
    fn refusal(&self) -> io::Error {
        let max = self.limit.get();
        let error = match Header::parse(&self.head[..self.head_len as usize]) {
            Some(header) => FrameError::too_large(
                &Header {
                    len: self.message_len.min(u64::from(u32::MAX)) as u32,
                    ..header
                },
                max,
            ),
            // Fewer than 28 bytes came before the connection ended: nothing to echo.
            None => FrameError::TooLarge {
                len: self.message_len.min(u64::from(u32::MAX)) as u32,
                max,
                kind: 0,
                packet_id: tern_proto::PacketId::ZERO,
                flags: tern_proto::Flags::empty(),
            },
        };
        io::Error::new(io::ErrorKind::InvalidData, Oversize(error))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out_len {
                let (from, to) = (this.out_pos as usize, this.out_len as usize);
                let n = (to - from).min(buf.remaining());
                buf.put_slice(&this.header[from..from + n]);
                this.out_pos += n as u8;
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                State::Refused => return Poll::Ready(Err(this.refusal())),
                State::Header => {
                    let needed = this.header_needed();
                    let have = this.header_len as usize;
                    if have < needed {
                        let mut read = ReadBuf::new(&mut this.header[have..needed]);
                        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                        let n = read.filled().len();
                        if n == 0 {
                            // The peer closed; the WebSocket layer sees the end of the stream.
                            return Poll::Ready(Ok(()));
                        }
                        this.header_len += n as u8;
                        continue;
                    }
                    let mut frame = this.parse_header();
                    if frame.is_data() {
                        if frame.opcode != 0 {
                            // A new message (a stray continuation counts toward the last one;
                            // the WebSocket layer refuses it anyway).
                            this.message_len = 0;
                            this.head_len = 0;
                        }
                        this.message_len = this.message_len.saturating_add(frame.left);
                        if this.message_len > this.limit.get() as u64 {
                            this.state = if this.head_len as usize >= HEADER_LEN {
                                State::Refused
                            } else {
                                State::Refusing(frame)
                            };
                            continue;
                        }
                    }
                    this.start_piece(&mut frame);
                    this.header_len = 0;
                    this.state = State::Payload(frame);
                }
                State::Payload(frame) => {
                    let mut frame = *frame;
                    if frame.piece_left == 0 {
                        if frame.left == 0 {
                            this.state = State::Header;
                            continue;
                        }
                        this.start_piece(&mut frame);
                        this.state = State::Payload(frame);
                        continue;
                    }
                    let room = buf.remaining().min(frame.piece_left as usize);
                    let mut read = ReadBuf::new(buf.initialize_unfilled_to(room));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    let n = read.filled().len();
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    if (this.head_len as usize) < HEADER_LEN {
                        let mut first = [0u8; HEADER_LEN];
                        let k = n.min(HEADER_LEN);
                        first[..k].copy_from_slice(&read.filled()[..k]);
                        this.capture(&frame, &first[..k]);
                    }
                    buf.advance(n);
                    frame.offset = ((frame.offset as usize + n) % 4) as u8;
                    frame.left -= n as u64;
                    frame.piece_left -= n as u32;
                    this.state = State::Payload(frame);
                    return Poll::Ready(Ok(()));
                }
                State::Refusing(frame) => {
                    let mut frame = *frame;
                    if this.head_len as usize >= HEADER_LEN || frame.left == 0 {
                        this.state = State::Refused;
                        continue;
                    }
                    let want = (HEADER_LEN - this.head_len as usize).min(frame.left as usize);
                    let mut scratch = [0u8; HEADER_LEN];
                    let mut read = ReadBuf::new(&mut scratch[..want]);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    let n = read.filled().len();
                    if n == 0 {
                        this.state = State::Refused;
                        continue;
                    }
                    this.capture(&frame, &scratch[..n]);
                    frame.offset = ((frame.offset as usize + n) % 4) as u8;
                    frame.left -= n as u64;
                    this.state = State::Refusing(frame);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tern_proto::{Encoding, Flags, Frame, MessageType, PacketId};
    use tokio_tungstenite::{
        WebSocketStream,
        tungstenite::{self, Message, protocol::Role},
    };

    use super::*;

    type Server = WebSocketStream<Limited<tokio::io::DuplexStream>>;
    type Client = WebSocketStream<tokio::io::DuplexStream>;

    async fn pair(limit: usize) -> (Client, Server, MessageLimit) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let limit = MessageLimit::new(limit);
        let server = WebSocketStream::from_raw_socket(
            Limited::new(b, limit.clone()),
            Role::Server,
            Some(
                tungstenite::protocol::WebSocketConfig::default()
                    // Larger frames than this fail: the reader must have cut them.
                    .max_frame_size(Some(PIECE)),
            ),
        )
        .await;
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        (client, server, limit)
    }

    /// Sends every message from a task of its own, so large ones need not fit the pipe.
    fn send_all(mut client: Client, messages: Vec<Message>) -> tokio::task::JoinHandle<Client> {
        tokio::spawn(async move {
            for m in messages {
                client.send(m).await.unwrap();
            }
            client
        })
    }

    /// The next data message (pings and pongs are the WebSocket layer's business).
    async fn next_data(server: &mut Server) -> Result<Message, tungstenite::Error> {
        loop {
            match server.next().await.expect("a message") {
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                other => return other,
            }
        }
    }

    /// A Tern frame of `len` bytes in all, as one binary message.
    fn tern_frame(len: usize, id: u128, encoding: Encoding) -> Bytes {
        Frame::with_payload(
            MessageType::Register,
            Flags::empty(),
            PacketId::from_u128(id),
            encoding,
            Bytes::from(vec![7u8; len - HEADER_LEN]),
        )
        .to_bytes()
    }

    #[tokio::test]
    async fn small_and_large_messages_arrive_whole_the_large_in_fragments() {
        let (client, mut server, _) = pair(1 << 20).await;
        let sizes = [40, PIECE - 3, PIECE, PIECE + 1, 3 * PIECE + 17, 200_000];
        let frames: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, len)| tern_frame(*len, i as u128, Encoding::Protobuf))
            .collect();
        // A text message cut inside a multi-byte character still arrives as that text.
        let text: String = "é".repeat(PIECE);
        let mut messages = Vec::new();
        for f in &frames {
            messages.push(Message::Binary(f.clone()));
            messages.push(Message::Ping(Bytes::from_static(b"p")));
        }
        messages.push(Message::Text(text.clone().into()));
        let sender = send_all(client, messages);
        for (f, len) in frames.iter().zip(sizes) {
            match next_data(&mut server).await.unwrap() {
                Message::Binary(got) => assert_eq!(&got, f, "message of {len} bytes"),
                other => panic!("expected binary, got {other:?}"),
            }
        }
        match next_data(&mut server).await.unwrap() {
            Message::Text(got) => assert_eq!(got.as_str(), text),
            other => panic!("expected text, got {other:?}"),
        }
        sender.await.unwrap();
    }

    fn oversize(result: Result<Message, tungstenite::Error>) -> FrameError {
        let error = match result {
            Err(tungstenite::Error::Io(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        };
        match error.get_ref().and_then(|e| e.downcast_ref::<Oversize>()) {
            Some(Oversize(e)) => e.clone(),
            None => panic!("expected an oversize error, got {error:?}"),
        }
    }

    #[tokio::test]
    async fn an_oversize_message_is_refused_naming_its_tern_frame() {
        let (client, mut server, _) = pair(2048).await;
        let _sender = send_all(
            client,
            vec![Message::Binary(tern_frame(100_000, 77, Encoding::Json))],
        );
        let FrameError::TooLarge {
            len,
            max,
            kind,
            packet_id,
            flags,
        } = oversize(next_data(&mut server).await)
        else {
            panic!("expected TooLarge");
        };
        assert_eq!((len, max), (100_000, 2048));
        assert_eq!(kind, MessageType::Register.as_u16());
        assert_eq!(packet_id, PacketId::from_u128(77));
        assert!(flags.contains(Flags::JSON));
    }

    #[tokio::test]
    async fn a_message_fragmented_by_the_client_counts_as_a_whole() {
        use tungstenite::protocol::frame::{
            Frame as WsFrame,
            coding::{Data, OpCode},
        };
        // Three fragments of 1,000 bytes: each under the limit, together over it.
        let whole = tern_frame(3000, 5, Encoding::Protobuf);
        let fragments = || {
            whole
                .chunks(1000)
                .enumerate()
                .map(|(i, chunk)| {
                    let opcode = if i == 0 {
                        OpCode::Data(Data::Binary)
                    } else {
                        OpCode::Data(Data::Continue)
                    };
                    Message::Frame(WsFrame::message(
                        Bytes::copy_from_slice(chunk),
                        opcode,
                        i == 2,
                    ))
                })
                .collect::<Vec<_>>()
        };
        let (client, mut server, _) = pair(2048).await;
        let _sender = send_all(client, fragments());
        let FrameError::TooLarge {
            len,
            kind,
            packet_id,
            ..
        } = oversize(next_data(&mut server).await)
        else {
            panic!("expected TooLarge");
        };
        assert_eq!(len, 3000);
        assert_eq!(kind, MessageType::Register.as_u16());
        assert_eq!(packet_id, PacketId::from_u128(5));

        // Under a larger limit the same fragments make one message.
        let (client, mut server, _) = pair(4096).await;
        let _sender = send_all(client, fragments());
        assert_eq!(
            next_data(&mut server).await.unwrap(),
            Message::Binary(whole.clone())
        );
    }

    #[tokio::test]
    async fn a_raised_limit_lets_large_messages_through() {
        let (client, mut server, limit) = pair(2048).await;
        let small = tern_frame(1000, 1, Encoding::Protobuf);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let sender = tokio::spawn(async move {
            let mut client = client;
            while let Some(m) = rx.recv().await {
                client.send(m).await.unwrap();
            }
        });
        tx.send(Message::Binary(small.clone())).unwrap();
        assert_eq!(
            next_data(&mut server).await.unwrap(),
            Message::Binary(small)
        );
        // As the session does at login, before the next message is read.
        limit.set(1 << 20);
        let big = tern_frame(300_000, 2, Encoding::Protobuf);
        tx.send(Message::Binary(big.clone())).unwrap();
        assert_eq!(next_data(&mut server).await.unwrap(), Message::Binary(big));
        drop(tx);
        sender.await.unwrap();
    }
}
