//! The wire contract at the frame level: every bad input gets its documented error code, nothing
//! is stored for it, and the connection stays open wherever the stream can continue.

use std::{sync::Arc, time::Duration};

use bytes::{BufMut, BytesMut};
use tern_client::{Client, ClientConfig, pb};
use tern_proto::{Encoding, ErrorCode, Flags, Frame, MessageType, PacketId, Request, ServerEvent};
use tern_testkit::{RawClient, TestServer, decode, password, text, text_of};

fn send_req(to: &str, cmid: &str, body: &str) -> pb::SendRequest {
    pb::SendRequest {
        target: Some(pb::send_request::Target::ToUser(to.into())),
        client_msg_id: cmid.into(),
        content: Some(text(body)),
    }
}

async fn expect_error(raw: &mut RawClient, frame: Frame, code: ErrorCode) -> pb::Error {
    raw.write(&frame.to_bytes()).await;
    let resp = raw.response(frame.packet_id).await;
    assert!(resp.is_error(), "expected {code}, got a success");
    assert_eq!(resp.kind, frame.kind, "the error echoes the request's type");
    let error: pb::Error = decode(&resp);
    assert_eq!(error.code, code.as_u32(), "{error:?}");
    assert_eq!(error.name, code.name());
    assert!(!error.message.is_empty());
    error
}

/// The connection still answers after an error.
async fn still_open(raw: &mut RawClient) {
    let pong = raw.call(pb::Ping { client_time_ms: 42 }).await;
    assert_eq!(pong.client_time_ms, 42);
}

fn raw_frame(kind: u16, version: u16, flags: u32, id: u128, payload: &[u8]) -> Frame {
    Frame {
        kind,
        version,
        flags: Flags::from_bits_retain(flags),
        packet_id: PacketId::from_u128(id),
        payload: bytes::Bytes::copy_from_slice(payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_login_are_refused_but_ping_and_register_work() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    still_open(&mut raw).await;
    let send = Request::Send(send_req("bob", "c1", "hi"))
        .to_frame(PacketId::from_u128(9), Encoding::Protobuf)
        .unwrap();
    expect_error(&mut raw, send, ErrorCode::NotLoggedIn).await;
    let sync = Request::Sync(pb::SyncRequest::default())
        .to_frame(PacketId::from_u128(10), Encoding::Json)
        .unwrap();
    let e = expect_error(&mut raw, sync, ErrorCode::NotLoggedIn).await;
    assert!(!e.retryable);
    raw.call(pb::RegisterRequest {
        user_id: "alice".into(),
        password: password("alice"),
    })
    .await;
    still_open(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_unsupported_frames_get_their_codes_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;

    let send = MessageType::Send.as_u16();
    expect_error(
        &mut raw,
        raw_frame(send, 1, 0, 1, &[0xff, 0xff, 0xff]),
        ErrorCode::MalformedPayload,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 1, Flags::JSON.bits(), 2, b"{not json"),
        ErrorCode::MalformedPayload,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 1, Flags::JSON.bits(), 3, br#"{"clientMsgId": 5}"#),
        ErrorCode::MalformedPayload,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(0x7777, 1, 0, 4, b""),
        ErrorCode::UnknownType,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 2, 0, 5, b""),
        ErrorCode::UnsupportedVersion,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 0, 0, 6, b""),
        ErrorCode::UnsupportedVersion,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 1, Flags::COMPRESSED.bits(), 7, b""),
        ErrorCode::UnsupportedFlags,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(send, 1, 1 << 20, 8, b""),
        ErrorCode::UnsupportedFlags,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(MessageType::Push.as_u16(), 1, 0, 9, b""),
        ErrorCode::NotARequest,
    )
    .await;
    expect_error(
        &mut raw,
        raw_frame(
            MessageType::Ping.as_u16(),
            1,
            Flags::RESPONSE.bits(),
            10,
            b"",
        ),
        ErrorCode::NotARequest,
    )
    .await;
    still_open(&mut raw).await;
    // Nothing was stored by any of it.
    assert_eq!(raw.call(pb::SyncRequest::default()).await.head, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_nothing_is_stored() {
    let server = TestServer::start_with(|c| c.max_content_bytes = 256).await;
    server.register(&["alice", "bob"]).await;
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    let id = |n| PacketId::from_u128(n);
    let frame = |req: pb::SendRequest, n| {
        Request::Send(req)
            .to_frame(id(n), Encoding::Protobuf)
            .unwrap()
    };

    expect_error(
        &mut raw,
        frame(send_req("nobody", "c1", "hi"), 1),
        ErrorCode::UnknownUser,
    )
    .await;
    expect_error(
        &mut raw,
        frame(send_req("not a user!", "c2", "hi"), 2),
        ErrorCode::UnknownUser,
    )
    .await;
    expect_error(
        &mut raw,
        frame(send_req("bob", "c3", &"x".repeat(300)), 3),
        ErrorCode::ContentTooLarge,
    )
    .await;
    expect_error(
        &mut raw,
        frame(send_req("bob", "c4", ""), 4),
        ErrorCode::InvalidContent,
    )
    .await;
    expect_error(
        &mut raw,
        frame(send_req("bob", "", "hi"), 5),
        ErrorCode::InvalidClientMsgId,
    )
    .await;
    expect_error(
        &mut raw,
        frame(send_req("bob", &"c".repeat(65), "hi"), 6),
        ErrorCode::InvalidClientMsgId,
    )
    .await;
    let mut no_content = send_req("bob", "c7", "hi");
    no_content.content = None;
    expect_error(&mut raw, frame(no_content, 7), ErrorCode::InvalidContent).await;
    let mut no_target = send_req("bob", "c8", "hi");
    no_target.target = None;
    expect_error(&mut raw, frame(no_target, 8), ErrorCode::InvalidArgument).await;
    let image = pb::SendRequest {
        content: Some(pb::Content {
            body: Some(pb::content::Body::Image(pb::Image::default())),
        }),
        ..send_req("bob", "c9", "")
    };
    expect_error(&mut raw, frame(image, 9), ErrorCode::InvalidContent).await;
    still_open(&mut raw).await;
    assert_eq!(
        raw.call(pb::SyncRequest::default()).await.head,
        0,
        "nothing reached alice's inbox"
    );

    // The same client message ids are still free: nothing was stored under them.
    let ack = raw.call(send_req("bob", "c1", "now valid")).await;
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    let image = pb::SendRequest {
        content: Some(pb::Content {
            body: Some(pb::content::Body::Image(pb::Image {
                url: "https://example.com/cat.png".into(),
                width: 10,
                height: 10,
                ..Default::default()
            })),
        }),
        ..send_req("bob", "c9", "")
    };
    assert_eq!(raw.call(image).await.seq, 2);

    // Reading a conversation one is not part of, or pushing a cursor past the head.
    let err = raw
        .call_err(pb::HistoryRequest {
            target: Some(pb::history_request::Target::ConversationId(
                "p:bob:carol".into(),
            )),
            ..Default::default()
        })
        .await;
    assert_eq!(err.code, ErrorCode::NotAParticipant.as_u32());
    let err = raw.call_err(pb::AckCursorRequest { seq: 99 }).await;
    assert_eq!(err.code, ErrorCode::InvalidArgument.as_u32());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_writes_or_sharing_one_are_all_answered_in_order() {
    // TCP keeps no message boundaries: the server must cut frames out of whatever arrives.
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    // Logged in: frames past the small limit before login are allowed.
    raw.login("alice", "phone").await;
    let ping = |id: u128, time: i64, padding: usize| {
        let mut frame = Request::Ping(pb::Ping {
            client_time_ms: time,
        })
        .to_frame(PacketId::from_u128(id), Encoding::Protobuf)
        .expect("encodable");
        if padding > 0 {
            // An unknown length-delimited field (number 15): decoders skip it, so the ping stays
            // a ping while its frame outgrows a single read.
            let mut payload = BytesMut::from(&frame.payload[..]);
            payload.put_u8(15 << 3 | 2);
            let mut len = padding as u64;
            while len >= 0x80 {
                payload.put_u8(len as u8 | 0x80);
                len >>= 7;
            }
            payload.put_u8(len as u8);
            payload.put_bytes(b'x', padding);
            frame.payload = payload.freeze();
        }
        frame.to_bytes()
    };
    // One byte per write.
    for b in ping(1, 11, 0).iter() {
        raw.write(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Two frames in one write, the second cut in the middle of its header and finished later.
    let mut two = ping(2, 22, 0).to_vec();
    let third = ping(3, 33, 0);
    two.extend_from_slice(&third[..7]);
    raw.write(&two).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    raw.write(&third[7..]).await;
    // A frame several times larger than one read, in uneven pieces.
    let big = ping(4, 44, 20_000);
    for piece in big.chunks(1_500) {
        raw.write(piece).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for (id, time) in [(1, 11), (2, 22), (3, 33), (4, 44)] {
        let frame = raw.read().await.expect("a response");
        assert_eq!(frame.packet_id, PacketId::from_u128(id));
        let pong: pb::Pong = decode(&frame);
        assert_eq!(pong.client_time_ms, time);
    }
    still_open(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_is_answered_then_the_connection_closes() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 1024).await;
    let mut raw = server.raw().await;
    let big = raw_frame(MessageType::Register.as_u16(), 1, 0, 77, &vec![0u8; 2000]);
    raw.write(&big.to_bytes()[..100]).await;
    let frames = raw.until_closed().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].packet_id, PacketId::from_u128(77));
    assert_eq!(frames[0].kind, MessageType::Register.as_u16());
    let error: pb::Error = decode(&frames[0]);
    assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_shorter_than_the_header_is_a_bad_frame_and_closes() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    let mut bytes = BytesMut::new();
    bytes.put_u32(10);
    bytes.put_slice(&[0; 10]);
    raw.write(&bytes).await;
    let frames = raw.until_closed().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, MessageType::ConnectionError.as_u16());
    assert_eq!(frames[0].packet_id, PacketId::ZERO);
    let error: pb::Error = decode(&frames[0]);
    assert_eq!(error.code, ErrorCode::BadFrame.as_u32());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_errors_have_their_codes() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    let reg = |u: &str, p: &str| pb::RegisterRequest {
        user_id: u.into(),
        password: p.into(),
    };
    assert_eq!(
        raw.call_err(reg("alice", "long enough")).await.code,
        ErrorCode::UserExists.as_u32()
    );
    assert_eq!(
        raw.call_err(reg("bad id", "long enough")).await.code,
        ErrorCode::InvalidUserId.as_u32()
    );
    assert_eq!(
        raw.call_err(reg("carol", "short")).await.code,
        ErrorCode::InvalidPassword.as_u32()
    );
    let login = |u: &str, cred: pb::login_request::Credential, device: &str| pb::LoginRequest {
        user_id: u.into(),
        credential: Some(cred),
        device_id: device.into(),
        platform: 0,
    };
    use pb::login_request::Credential::{Password, Token};
    let wrong = raw
        .call_err(login("alice", Password("wrong password".into()), "d"))
        .await;
    let unknown = raw
        .call_err(login("nobody", Password("wrong password".into()), "d"))
        .await;
    assert_eq!(wrong.code, ErrorCode::AuthFailed.as_u32());
    assert_eq!(
        wrong.message, unknown.message,
        "the answer does not reveal whether the user exists"
    );
    assert_eq!(
        raw.call_err(login("alice", Token("made-up".into()), "d"))
            .await
            .code,
        ErrorCode::TokenInvalid.as_u32()
    );
    assert_eq!(
        raw.call_err(login("alice", Password(password("alice")), "bad device!"))
            .await
            .code,
        ErrorCode::InvalidDevice.as_u32()
    );
    let ok = raw
        .call(login("alice", Password(password("alice")), "d"))
        .await;
    assert_eq!(
        raw.call_err(login("alice", Token(ok.token.clone()), "d"))
            .await
            .code,
        ErrorCode::AlreadyLoggedIn.as_u32()
    );
    // A token is bound to its device.
    let mut other = server.raw().await;
    assert_eq!(
        other
            .call_err(login("alice", Token(ok.token.clone()), "other"))
            .await
            .code,
        ErrorCode::TokenInvalid.as_u32()
    );
    // Logout revokes the token and closes the connection.
    raw.call(pb::LogoutRequest {}).await;
    assert!(raw.until_closed().await.is_empty());
    assert_eq!(
        other
            .call_err(login("alice", Token(ok.token), "d"))
            .await
            .code,
        ErrorCode::TokenInvalid.as_u32()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire() {
    let clock = Arc::new(tern_server::ManualClock::new(1_800_000_000_000));
    let server = TestServer::start_with_clock(|c| c.token_ttl_secs = 60, clock.clone()).await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    let token = raw.login("alice", "d").await.token;
    let login = |t: &str| pb::LoginRequest {
        user_id: "alice".into(),
        credential: Some(pb::login_request::Credential::Token(t.into())),
        device_id: "d".into(),
        platform: 0,
    };
    clock.advance_ms(59_000);
    server.raw().await.call(login(&token)).await;
    clock.advance_ms(2_000);
    assert_eq!(
        server.raw().await.call_err(login(&token)).await.code,
        ErrorCode::TokenInvalid.as_u32()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_original_ack_also_after_a_dropped_connection() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    let first = raw.call(send_req("bob", "retry-1", "once")).await;
    let again = raw.call(send_req("bob", "retry-1", "once")).await;
    assert!(again.duplicate);
    assert_eq!(
        (again.message_id, again.seq, again.inbox_seq),
        (first.message_id, first.seq, first.inbox_seq)
    );
    drop(raw);

    // The connection drops before the ack is read; the client retries on a new connection.
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    raw.send(
        Request::Send(send_req("bob", "retry-2", "twice?")),
        Encoding::Protobuf,
    )
    .await;
    drop(raw);
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    let second = raw.call(send_req("bob", "retry-2", "twice?")).await;
    assert_eq!(
        second.seq, 2,
        "stored once, whether the first attempt landed or not"
    );
    let third = raw.call(send_req("bob", "retry-1", "once")).await;
    assert_eq!(
        (third.message_id, third.duplicate),
        (first.message_id, true),
        "after reconnecting too"
    );
    // The same id for a different message is not a retry: refused, nothing stored.
    server.register(&["carol"]).await;
    for reused in [
        send_req("bob", "retry-1", "not the same words"),
        send_req("carol", "retry-1", "once"),
    ] {
        let e = raw.call_err(reused).await;
        assert_eq!(e.code, ErrorCode::ClientMsgIdReused.as_u32(), "{e:?}");
        assert!(!e.retryable);
    }

    let mut bob = server.client("bob", "phone").await;
    let got = bob.messages(2).await;
    assert_eq!(
        got.iter()
            .map(|(_, m)| m.client_msg_id.as_str())
            .collect::<Vec<_>>(),
        vec!["retry-1", "retry-2"]
    );
    bob.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_clients_get_json_responses_and_pushes() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut bob = server.raw().await;
    let id = bob
        .send(
            Request::Login(pb::LoginRequest {
                user_id: "bob".into(),
                credential: Some(pb::login_request::Credential::Password(password("bob"))),
                device_id: "browser".into(),
                platform: pb::Platform::Web as i32,
            }),
            Encoding::Json,
        )
        .await;
    let resp = bob.response(id).await;
    assert!(resp.flags.contains(Flags::JSON | Flags::RESPONSE));
    let json: serde_json::Value = serde_json::from_slice(&resp.payload).unwrap();
    assert!(json["token"].is_string());

    let alice = server.client("alice", "phone").await;
    alice.client.send_text("bob", "hello json").await.unwrap();
    let push = bob.read().await.unwrap();
    assert_eq!(push.kind, MessageType::Push.as_u16());
    assert!(push.flags.contains(Flags::JSON));
    let json: serde_json::Value = serde_json::from_slice(&push.payload).unwrap();
    assert_eq!(
        json["entry"]["seq"], "1",
        "64-bit integers are JSON strings"
    );
    assert_eq!(
        json["entry"]["message"]["content"]["text"]["text"],
        "hello json"
    );
    match ServerEvent::decode(&push).unwrap() {
        Some(ServerEvent::Push(p)) => assert_eq!(p.entry.unwrap().seq, 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_send_and_receive_like_tcp_clients() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut config = ClientConfig::new(server.ws(), "bob", &password("bob"), "browser");
    config.encoding = Encoding::Json;
    config.platform = pb::Platform::Web;
    let (client, events) = Client::connect(config).await.unwrap();
    let mut bob = tern_testkit::TestClient { client, events };
    let alice = server.client("alice", "phone").await;
    alice
        .client
        .send_text("bob", "over websocket")
        .await
        .unwrap();
    let got = bob.messages(1).await;
    assert_eq!(text_of(&got[0].1), "over websocket");
    let ack = bob
        .client
        .send_text("alice", "back over websocket")
        .await
        .unwrap();
    assert_eq!(ack.seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer_over_http() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    alice.client.send_text("bob", "counted").await.unwrap();
    let body = http_get(&server, "/healthz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let body = http_get(&server, "/metrics").await;
    for name in [
        "tern_connections",
        "tern_frames_in_total",
        "tern_frames_out_total",
        "tern_messages_stored_total",
        "tern_store_commit_batch_size_bucket",
        "tern_store_commit_seconds_bucket",
        "tern_delivery_seconds_bucket",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}");
    }
}

async fn http_get(server: &TestServer, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.config().http_addr)
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A newer client may add keys to a JSON payload: an older server skips them and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_with_unknown_keys_are_answered() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    let ping = raw_frame(
        0x0001,
        1,
        Flags::JSON.bits(),
        5,
        br#"{"clientTimeMs":"5","someFutureField":1}"#,
    );
    raw.write(&ping.to_bytes()).await;
    let resp = raw.response(ping.packet_id).await;
    assert!(!resp.is_error(), "{:?}", resp.payload);
    let pong: pb::Pong = decode(&resp);
    assert_eq!(pong.client_time_ms, 5);
    let register = raw_frame(
        0x0002,
        1,
        Flags::JSON.bits(),
        6,
        br#"{"userId":"fresh","password":"fresh-secret","inviteCode":{"v":2}}"#,
    );
    raw.write(&register.to_bytes()).await;
    let resp = raw.response(register.packet_id).await;
    assert!(!resp.is_error(), "{:?}", resp.payload);
}
