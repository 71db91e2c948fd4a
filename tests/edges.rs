//! The edges a careless or hostile client reaches: oversize and text WebSocket messages, errors
//! sent before a payload is read, connections that never log in, and the memory they may hold.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use tern_client::pb;
use tern_proto::{Encoding, ErrorCode, Flags, Frame, MessageType, PacketId, Request};
use tern_testkit::{RawWs, TestServer, WsRead, decode, password};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Tern header announcing a frame of `len` bytes of type `kind`, with `flags`.
fn tern_header(len: u32, kind: MessageType, flags: Flags, id: u128) -> Vec<u8> {
    let mut h = Vec::with_capacity(28);
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&kind.as_u16().to_be_bytes());
    h.extend_from_slice(&1u16.to_be_bytes());
    h.extend_from_slice(&flags.bits().to_be_bytes());
    h.extend_from_slice(&PacketId::from_u128(id).0);
    h
}

fn error_of(read: &WsRead) -> (Frame, pb::Error) {
    match read {
        WsRead::Frame(f) => {
            assert!(f.is_error(), "an error frame, got {f:?}");
            (f.clone(), decode(f))
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
}

fn login_frame(user: &str, device: &str, id: u128) -> Frame {
    Request::Login(pb::LoginRequest {
        user_id: user.into(),
        credential: Some(pb::login_request::Credential::Password(password(user))),
        device_id: device.into(),
        platform: pb::Platform::Web as i32,
    })
    .to_frame(PacketId::from_u128(id), Encoding::Json)
    .unwrap()
}

/// Announces a binary message of `len` bytes and sends only the Tern header inside it.
async fn announce(ws: &mut RawWs, len: u64, kind: MessageType, flags: Flags, id: u128) {
    let mut bytes = RawWs::header(2, true, len);
    bytes.extend(RawWs::masked(
        &tern_header(len.min(u32::MAX as u64) as u32, kind, flags, id),
        0,
    ));
    ws.write(&bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_websocket_message_gets_frame_too_large_then_close_1009() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    // Before login the limit is small: a register announcing 100 kB is refused at its header,
    // in the encoding its flags name, echoing its type and packet id.
    let mut ws = RawWs::connect(server.config().http_addr).await.unwrap();
    announce(&mut ws, 100_000, MessageType::Register, Flags::JSON, 9).await;
    let reads = ws.until_closed().await;
    let (frame, error) = error_of(&reads[0]);
    assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32(), "{error:?}");
    assert_eq!(frame.kind, MessageType::Register.as_u16());
    assert_eq!(frame.packet_id, PacketId::from_u128(9));
    assert!(frame.flags.contains(Flags::JSON), "answered in JSON");
    assert!(
        matches!(&reads[1], WsRead::Close(1009, _)),
        "then close 1009: {reads:?}"
    );

    // Logged in, a frame up to max_frame_bytes passes (in one WebSocket frame, as browsers
    // send it), and one over it is refused the same way.
    let mut ws = RawWs::connect(server.config().http_addr).await.unwrap();
    ws.send(&login_frame("alice", "web", 1)).await;
    let WsRead::Frame(login) = ws.read().await.unwrap() else {
        panic!("a login response")
    };
    assert!(!login.is_error(), "{:?}", decode::<pb::Error>(&login));
    let padded = {
        // A ping padded with an unknown field to 300 kB: a real request, far over the
        // limit before login.
        let mut payload = vec![15 << 3 | 2];
        let mut n = 300_000u64;
        while n >= 0x80 {
            payload.push(n as u8 | 0x80);
            n >>= 7;
        }
        payload.push(n as u8);
        payload.extend(std::iter::repeat_n(b'x', 300_000));
        Frame::with_payload(
            MessageType::Ping,
            Flags::empty(),
            PacketId::from_u128(2),
            Encoding::Protobuf,
            Bytes::from(payload),
        )
    };
    ws.send(&padded).await;
    let WsRead::Frame(pong) = ws.read().await.unwrap() else {
        panic!("a pong")
    };
    assert!(!pong.is_error() && pong.packet_id == PacketId::from_u128(2));
    announce(&mut ws, 2 << 20, MessageType::Ping, Flags::empty(), 3).await;
    let reads = ws.until_closed().await;
    let (frame, error) = error_of(&reads[0]);
    assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32());
    assert_eq!(frame.packet_id, PacketId::from_u128(3));
    assert!(!frame.flags.contains(Flags::JSON), "answered in protobuf");
    assert!(matches!(&reads[1], WsRead::Close(1009, _)), "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_text_messages_get_bad_frame_and_a_close_saying_why() {
    let server = TestServer::start().await;
    for (payload, code) in [(&b"hello"[..], 1003), (&[0xff, 0xfe, 0x41][..], 1007)] {
        let mut ws = RawWs::connect(server.config().http_addr).await.unwrap();
        ws.write_frame(1, payload).await;
        let reads = ws.until_closed().await;
        let (frame, error) = error_of(&reads[0]);
        assert_eq!(error.code, ErrorCode::BadFrame.as_u32(), "{error:?}");
        assert_eq!(frame.kind, 0, "a connection error");
        assert!(
            matches!(&reads[1], WsRead::Close(c, _) if *c == code),
            "{payload:?}: {reads:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_must_hold_exactly_the_frame_its_length_field_says() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(server.config().http_addr).await.unwrap();
    let mut ping = Request::Ping(pb::Ping { client_time_ms: 1 })
        .to_frame(PacketId::from_u128(1), Encoding::Json)
        .unwrap()
        .to_bytes()
        .to_vec();
    ping.extend_from_slice(b"trailing");
    ws.write_frame(2, &ping).await;
    let reads = ws.until_closed().await;
    let (frame, error) = error_of(&reads[0]);
    assert_eq!(error.code, ErrorCode::BadFrame.as_u32());
    assert!(
        frame.flags.contains(Flags::JSON),
        "a connection error before any valid frame is JSON"
    );
    assert!(matches!(&reads[1], WsRead::Close(1002, _)), "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_sent_before_a_payload_is_read_use_the_frames_or_the_connections_encoding() {
    let server = TestServer::start_with(|c| c.login_timeout_ms = 300).await;
    // An oversize frame answers in the encoding its own flags name.
    for flags in [Flags::JSON, Flags::empty()] {
        let mut raw = server.raw().await;
        raw.write(&tern_header(1 << 20, MessageType::Register, flags, 4))
            .await;
        let frames = raw.until_closed().await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].flags.contains(Flags::JSON), flags == Flags::JSON);
        let error: pb::Error = decode(&frames[0]);
        assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32());
    }
    // A connection error uses the encoding of the last frame the client sent.
    let mut raw = server.raw().await;
    raw.send(
        Request::Ping(pb::Ping { client_time_ms: 1 }),
        Encoding::Json,
    )
    .await;
    let frames = raw.until_closed().await;
    let timeout = frames.last().expect("a login timeout");
    assert_eq!(timeout.kind, 0);
    assert!(timeout.flags.contains(Flags::JSON));
    let error: pb::Error = decode(timeout);
    assert_eq!(error.code, ErrorCode::LoginTimeout.as_u32());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_limit_before_login_are_refused_until_login() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let big_ping = |id: u128| {
        let mut payload = vec![15 << 3 | 2, 0x90, 0x4e];
        payload.extend(std::iter::repeat_n(b'x', 10_000));
        Frame::with_payload(
            MessageType::Ping,
            Flags::empty(),
            PacketId::from_u128(id),
            Encoding::Protobuf,
            Bytes::from(payload),
        )
        .to_bytes()
    };
    let mut raw = server.raw().await;
    raw.write(&big_ping(1)).await;
    let frames = raw.until_closed().await;
    let error: pb::Error = decode(&frames[0]);
    assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32());
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    raw.write(&big_ping(2)).await;
    let pong = raw.response(PacketId::from_u128(2)).await;
    assert!(!pong.is_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_login_are_capped_and_a_login_frees_a_place() {
    let server = TestServer::start_with(|c| c.max_anonymous_connections = 3).await;
    server.register(&["alice"]).await;
    // The registering connection is closed, but the server counts its close a moment later.
    wait_for_anonymous(&server, 0).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut raw = server.raw().await;
        let pong = raw.call(pb::Ping { client_time_ms: i }).await;
        assert_eq!(pong.client_time_ms, i);
        held.push(raw);
    }
    assert_eq!(server.server().gateway().anonymous_connections(), 3);
    // The fourth is closed unanswered; a WebSocket upgrade is refused with 503.
    let mut fourth = server.raw().await;
    fourth
        .send(
            Request::Ping(pb::Ping { client_time_ms: 9 }),
            Encoding::Json,
        )
        .await;
    assert_eq!(fourth.read().await, None, "closed without an answer");
    let refused = RawWs::connect(server.config().http_addr).await.unwrap_err();
    assert!(refused.contains("503"), "{refused}");
    // A login moves one out of the count: a new connection is admitted again.
    held[0].login("alice", "phone").await;
    assert_eq!(server.server().gateway().anonymous_connections(), 2);
    let mut fresh = server.raw().await;
    fresh.call(pb::Ping { client_time_ms: 5 }).await;
    // So does a close.
    drop(held.pop());
    wait_for_anonymous(&server, 2).await;
}

/// Waits until the server counts at most `n` connections without a login: closes are
/// counted when the connection's task ends, a moment after the client's close.
async fn wait_for_anonymous(server: &TestServer, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.server().gateway().anonymous_connections() > n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closes were counted within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `tern serve` process on free ports.
struct Process {
    child: Child,
    tcp: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

impl Process {
    fn spawn(dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args([
                "serve",
                "--tcp-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir)
            .env("TERN_ARGON2_MEMORY_KIB", "64")
            .env("TERN_ARGON2_ITERATIONS", "1")
            .env("TERN_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tern serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = |prefix: &str| {
            loop {
                let line = lines
                    .next()
                    .expect("the server prints its addresses")
                    .unwrap();
                if let Some(rest) = line.strip_prefix(prefix) {
                    let addr = rest.split_whitespace().next().unwrap();
                    return addr.parse().unwrap();
                }
            }
        };
        let tcp = addr("tern: tcp listening on ");
        let http = addr("tern: http listening on ");
        std::thread::spawn(move || for _ in lines {});
        Process { child, tcp, http }
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hundreds of connections announce 1 MiB frames and send only their headers: before login
/// they are refused at the header; after login they are buffered only as bytes arrive. Either
/// way the server's memory stays near where it was (before, 1,000 anonymous WebSocket
/// connections took it from 43 to 779 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_but_unsent_megabytes_do_not_grow_the_servers_memory() {
    const EACH: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(
        dir.path(),
        &[
            ("TERN_KICK_POLICY", "unlimited"),
            ("TERN_MAX_CONNECTIONS_PER_USER", "0"),
        ],
    );
    tern_client::register(
        &tern_client::Endpoint::Tcp(server.tcp.to_string()),
        "alice",
        &password("alice"),
    )
    .await
    .unwrap();
    let baseline = server.rss();

    // Anonymous: WebSocket and TCP, each announcing 1 MiB and sending 28 bytes of it.
    let mut held_ws = Vec::new();
    let mut held_tcp = Vec::new();
    for i in 0..EACH {
        let mut ws = RawWs::connect(server.http).await.unwrap();
        announce(
            &mut ws,
            1 << 20,
            MessageType::Register,
            Flags::empty(),
            i as u128,
        )
        .await;
        held_ws.push(ws);
        let mut tcp = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
        tcp.write_all(&tern_header(
            1 << 20,
            MessageType::Register,
            Flags::empty(),
            1,
        ))
        .await
        .unwrap();
        held_tcp.push(tcp);
    }
    for ws in &mut held_ws {
        let reads = ws.until_closed().await;
        let (_, error) = error_of(&reads[0]);
        assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32());
    }
    for tcp in &mut held_tcp {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
        assert!(!rest.is_empty(), "refused with an error frame");
    }
    let anonymous = server.rss().saturating_sub(baseline);

    // Logged in: the same announcements are accepted, and held as they trickle in.
    let mut logged_in = Vec::new();
    for i in 0..EACH {
        let mut ws = RawWs::connect(server.http).await.unwrap();
        ws.send(&login_frame("alice", &format!("web{i}"), 1)).await;
        let WsRead::Frame(login) = ws.read().await.unwrap() else {
            panic!("a login response")
        };
        assert!(!login.is_error(), "{:?}", decode::<pb::Error>(&login));
        announce(&mut ws, 1 << 20, MessageType::Ping, Flags::empty(), 2).await;
        ws.write(&RawWs::masked(&[b'x'; 1000], 28)).await;
        logged_in.push(ws);
    }
    // Give the server the time to read what was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = server.rss().saturating_sub(baseline);
    drop(held_ws);
    drop(held_tcp);
    drop(logged_in);
    eprintln!(
        "RSS growth: {} KiB after the anonymous connections, {} KiB with the logged-in ones",
        anonymous >> 10,
        total >> 10
    );
    // 600 anonymous and 300 logged-in connections: tens of kilobytes each at most, where
    // reserving what they announced would take 900 MiB.
    assert!(
        anonymous < 32 << 20,
        "anonymous connections grew RSS by {} KiB",
        anonymous >> 10
    );
    assert!(
        total < 96 << 20,
        "connections announcing 1 MiB each grew RSS by {} KiB",
        total >> 10
    );
}

fn login_req(user: &str, device: &str, credential: pb::login_request::Credential) -> Request {
    Request::Login(pb::LoginRequest {
        user_id: user.into(),
        credential: Some(credential),
        device_id: device.into(),
        platform: pb::Platform::Cli as i32,
    })
}

/// Sends a LOGIN on a fresh connection; its response (success or error), and how long it took.
async fn try_login(
    server: &TestServer,
    user: &str,
    device: &str,
    credential: pb::login_request::Credential,
) -> (Frame, Duration) {
    let mut raw = server.raw().await;
    let started = std::time::Instant::now();
    let id = raw
        .send(login_req(user, device, credential), Encoding::Protobuf)
        .await;
    let frame = raw.response(id).await;
    (frame, started.elapsed())
}

fn pw(s: &str) -> pb::login_request::Credential {
    pb::login_request::Credential::Password(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slowed_then_refused_while_a_devices_token_keeps_working() {
    let clock = std::sync::Arc::new(tern_server::ManualClock::new(1_700_000_000_000));
    let server = TestServer::start_with_clock(
        |c| {
            c.login_free_failures = 2;
            c.login_failure_delay_ms = 100;
            c.login_max_delay_ms = 250;
            c.login_max_failures = 5;
            c.login_failure_window_secs = 60;
        },
        clock.clone(),
    )
    .await;
    server.register(&["alice"]).await;
    // The phone logged in before the guessing began: it holds a token.
    let mut phone = server.raw().await;
    let token = phone.login("alice", "phone").await.token;
    drop(phone);

    let mut waited = Vec::new();
    for _ in 0..5 {
        let (frame, took) = try_login(&server, "alice", "laptop", pw("wrong-guess")).await;
        let error: pb::Error = decode(&frame);
        assert_eq!(error.code, ErrorCode::AuthFailed.as_u32());
        waited.push(took);
    }
    // Two free failures, then 100, 200 and 250 ms (doubling, capped) before the answer.
    for (i, at_least) in [0, 0, 100, 200, 250].into_iter().enumerate() {
        assert!(
            waited[i] >= Duration::from_millis(at_least),
            "attempt {i} took {:?}, expected at least {at_least} ms",
            waited[i]
        );
    }
    assert!(waited[1] < Duration::from_millis(100), "{waited:?}");
    // The sixth attempt is refused without a check, even with the right password.
    let (frame, _) = try_login(&server, "alice", "laptop", pw(&password("alice"))).await;
    let error: pb::Error = decode(&frame);
    assert_eq!(error.code, ErrorCode::RateLimited.as_u32(), "{error:?}");
    assert!(error.retryable);
    assert!(
        (1..=60_000).contains(&error.retry_after_ms),
        "retry after the window: {error:?}"
    );
    // The phone's token still logs it in.
    let (frame, _) = try_login(
        &server,
        "alice",
        "phone",
        pb::login_request::Credential::Token(token),
    )
    .await;
    assert!(!frame.is_error(), "{:?}", decode::<pb::Error>(&frame));
    // Once the window has passed, the right password works again.
    clock.advance_ms(61_000);
    let (frame, _) = try_login(&server, "alice", "laptop", pw(&password("alice"))).await;
    assert!(!frame.is_error(), "{:?}", decode::<pb::Error>(&frame));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_failing_for_many_users_is_refused_for_every_user() {
    let server = TestServer::start_with(|c| {
        c.login_max_failures_per_address = 4;
        c.login_failure_delay_ms = 1;
    })
    .await;
    server.register(&["alice"]).await;
    for i in 0..4 {
        let (frame, _) = try_login(&server, &format!("guess{i}"), "d", pw("wrong-guess")).await;
        assert_eq!(
            decode::<pb::Error>(&frame).code,
            ErrorCode::AuthFailed.as_u32()
        );
    }
    let (frame, _) = try_login(&server, "alice", "d", pw(&password("alice"))).await;
    let error: pb::Error = decode(&frame);
    assert_eq!(error.code, ErrorCode::RateLimited.as_u32(), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_from_one_address_are_counted() {
    let server = TestServer::start_with(|c| c.registrations_per_address = 3).await;
    let mut raw = server.raw().await;
    for i in 0..3 {
        raw.call(pb::RegisterRequest {
            user_id: format!("user{i}"),
            password: "long enough".into(),
        })
        .await;
    }
    let error = raw
        .call_err(pb::RegisterRequest {
            user_id: "user3".into(),
            password: "long enough".into(),
        })
        .await;
    assert_eq!(error.code, ErrorCode::RateLimited.as_u32());
    assert!(error.retry_after_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_per_user() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_address = 3;
        c.max_connections_per_user = 2;
        c.kick_policy = "unlimited".into();
    })
    .await;
    server.register(&["alice"]).await;
    let mut a = server.raw().await;
    a.login("alice", "one").await;
    let mut b = server.raw().await;
    b.login("alice", "two").await;
    // A third device of alice is refused; the connection stays, anonymous.
    let mut c = server.raw().await;
    let error = c
        .call_err(pb::LoginRequest {
            user_id: "alice".into(),
            credential: Some(pw(&password("alice"))),
            device_id: "three".into(),
            platform: pb::Platform::Cli as i32,
        })
        .await;
    assert_eq!(error.code, ErrorCode::RateLimited.as_u32(), "{error:?}");
    // A fourth connection from this address is closed at once, a WebSocket refused.
    let mut d = server.raw().await;
    d.send(
        Request::Ping(pb::Ping { client_time_ms: 1 }),
        Encoding::Json,
    )
    .await;
    assert_eq!(d.read().await, None);
    let refused = RawWs::connect(server.config().http_addr).await.unwrap_err();
    assert!(refused.contains("503"), "{refused}");
    // A login replacing one of her devices is not a third connection of hers; the one it
    // replaces closes, which frees a place for the address.
    c.login("alice", "two").await;
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut e = server.raw().await;
        e.send(
            Request::Ping(pb::Ping { client_time_ms: 2 }),
            Encoding::Json,
        )
        .await;
        if e.read().await.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a place was freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
