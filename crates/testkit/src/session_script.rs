//! Arbitrary bytes read as a script of frames for one connection, played against a real server,
//! with the rules every answer must follow checked as it goes: the session state machine's fuzz
//! target (`fuzz/`) and a seeded test of the normal suite both play scripts through here.
//!
//! A script mixes well-formed requests of every kind (logged in or not, valid or not, in either
//! encoding), frames the server must refuse without breaking the stream (unknown types, bad
//! versions, reserved flags, payloads that do not decode), frames split across writes, and
//! framing errors that end the connection. The rules:
//!
//! * every well-formed request gets exactly one response (same type and packet id), unless the
//!   connection ended for a documented reason first (a LOGOUT answered, a framing error, a
//!   kick);
//! * every error decodes, with a known code and its name;
//! * a framing error is answered with `BAD_FRAME` or `FRAME_TOO_LARGE`, then the connection
//!   closes; nothing else closes it;
//! * once the connection is gone, the registry's two indexes agree and the connection counts
//!   nothing among the anonymous ones.

use std::{collections::HashMap, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use tern_proto::{
    Encoding, ErrorCode, Flags, Frame, MessageType, PacketId, Request, ServerEvent, pb,
};

use crate::{TestServer, password};

/// Users the scripts act as; the server must have them registered (see [`prepare`]).
pub const USERS: [&str; 3] = ["fz0", "fz1", "fz2"];

/// Registers [`USERS`] on `server`.
pub async fn prepare(server: &TestServer) {
    server.register(&USERS).await;
}

/// One step of a script.
#[derive(Debug)]
enum Step {
    /// A well-formed frame: it must be answered, with this type and packet id.
    Request {
        bytes: Bytes,
        kind: u16,
        id: PacketId,
    },
    /// The same, written in two pieces with a pause between.
    Split {
        bytes: Bytes,
        kind: u16,
        id: PacketId,
        at: usize,
    },
    /// Bytes that break the framing: the connection must answer with an error and close.
    Break(Bytes),
    /// The start of a frame that never ends: the server waits for the rest.
    Tail(Bytes),
}

/// Reads bytes one at a time, as a fuzzer's input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn pick<'t, T>(&mut self, options: &'t [T]) -> &'t T {
        let b = self.byte().unwrap_or(0) as usize;
        &options[b % options.len()]
    }

    fn small(&mut self) -> u64 {
        u64::from(self.byte().unwrap_or(0) % 8)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte().unwrap_or(0) as usize)
            .min(max)
            .min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

fn text(s: &str) -> Option<pb::Content> {
    Some(pb::Content {
        body: Some(pb::content::Body::Text(pb::Text { text: s.to_owned() })),
    })
}

/// The request a command byte chooses.
fn request(input: &mut Input<'_>) -> Request {
    let user = input.pick(&USERS).to_string();
    let device = input.pick(&["d0", "d1", "bad device!"]).to_string();
    match input.byte().unwrap_or(0) % 20 {
        0 => Request::Ping(pb::Ping {
            client_time_ms: input.small() as i64,
        }),
        1 => Request::Register(pb::RegisterRequest {
            user_id: input.pick(&["fz0", "new-user", "", "x:y"]).to_string(),
            password: input.pick(&["long enough", "short"]).to_string(),
        }),
        2 | 3 => Request::Login(pb::LoginRequest {
            credential: Some(match input.byte().unwrap_or(0) % 3 {
                0 => pb::login_request::Credential::Token("not-a-token".into()),
                1 => pb::login_request::Credential::Password("wrong password".into()),
                _ => pb::login_request::Credential::Password(password(&user)),
            }),
            user_id: user,
            device_id: device,
            platform: *input.pick(&[0, 1, 4, 99]),
        }),
        4 | 5 => Request::Send(pb::SendRequest {
            target: Some(if input.byte().unwrap_or(0).is_multiple_of(4) {
                pb::send_request::Target::GroupId(input.small())
            } else {
                pb::send_request::Target::ToUser(input.pick(&USERS).to_string())
            }),
            client_msg_id: input.pick(&["c1", "c2", "", "c3"]).to_string(),
            content: if input.byte().unwrap_or(0).is_multiple_of(5) {
                None
            } else {
                text(input.pick::<&str>(&["hi", "", "hello there"]))
            },
        }),
        6 => Request::Sync(pb::SyncRequest {
            after: input.small() * *input.pick(&[1, 1000]),
            limit: input.small() as u32,
        }),
        7 => Request::AckCursor(pb::AckCursorRequest {
            seq: input.small() * *input.pick(&[1, 1000]),
        }),
        8 => Request::History(pb::HistoryRequest {
            target: Some(pb::history_request::Target::Peer(
                input.pick(&USERS).to_string(),
            )),
            anchor_seq: input.small(),
            direction: *input.pick(&[0, 1, 7]),
            limit: input.small() as u32,
        }),
        9 => Request::GroupCreate(pb::GroupCreateRequest {
            name: input.pick(&["team", ""]).to_string(),
            members: USERS.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }),
        10 => Request::GroupUpdate(pb::GroupUpdateRequest {
            group_id: input.small(),
            ..Default::default()
        }),
        11 => Request::Read(pb::ReadRequest {
            target: Some(pb::read_request::Target::ConversationId(
                input
                    .pick(&["p:fz0:fz1", "g:1", "u:fz0", "nonsense"])
                    .to_string(),
            )),
            seq: input.small(),
        }),
        12 => Request::Recall(pb::RecallRequest {
            message_id: input.small(),
        }),
        13 => Request::Edit(pb::EditRequest {
            message_id: input.small(),
            content: text("edited"),
        }),
        14 => Request::ConversationList(pb::ConversationListRequest::default()),
        15 => Request::FriendRequest(pb::FriendRequestRequest {
            to_user: input.pick(&USERS).to_string(),
            message: String::new(),
        }),
        16 => Request::Block(pb::BlockRequest {
            user_id: input.pick(&USERS).to_string(),
        }),
        17 => Request::Typing(pb::TypingRequest {
            to_user: input.pick(&USERS).to_string(),
        }),
        18 => Request::PresenceSubscribe(pb::PresenceSubscribeRequest {
            user_ids: vec![input.pick(&USERS).to_string()],
        }),
        _ => Request::Logout(pb::LogoutRequest {}),
    }
}

/// A frame with the given header fields around `payload`.
fn frame_bytes(kind: u16, version: u16, flags: u32, id: PacketId, payload: &[u8]) -> Bytes {
    Frame {
        kind,
        version,
        flags: Flags::from_bits_retain(flags),
        packet_id: id,
        payload: Bytes::copy_from_slice(payload),
    }
    .to_bytes()
}

/// The request as a frame; an enum value JSON has no name for goes as protobuf.
fn encode(req: &Request, id: PacketId, encoding: Encoding) -> Bytes {
    req.to_frame(id, encoding)
        .or_else(|_| req.to_frame(id, Encoding::Protobuf))
        .expect("encodable in protobuf")
        .to_bytes()
}

/// Reads `data` as a script.
fn script(data: &[u8]) -> Vec<Step> {
    let mut input = Input(data);
    let mut steps = Vec::new();
    let mut next_id = 1u128;
    // Every request of a script has a packet id of its own, garbage frames included: answers
    // are told apart by it.
    let mut used = std::collections::HashSet::new();
    while let Some(op) = input.byte() {
        let id = loop {
            let id = PacketId::from_u128(next_id);
            next_id += 1;
            if used.insert(id) {
                break id;
            }
        };
        let encoding = if op & 0x80 != 0 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        match op % 16 {
            0..=9 => {
                let req = request(&mut input);
                let kind = req.message_type().as_u16();
                let bytes = encode(&req, id, encoding);
                steps.push(Step::Request { bytes, kind, id });
            }
            10 => {
                let req = request(&mut input);
                let kind = req.message_type().as_u16();
                let bytes = encode(&req, id, encoding);
                let at = (input.byte().unwrap_or(1) as usize).clamp(1, bytes.len() - 1);
                steps.push(Step::Split {
                    bytes,
                    kind,
                    id,
                    at,
                });
            }
            11 => {
                // A request type with a payload of arbitrary bytes: it may decode, or not.
                let kinds: Vec<u16> = MessageType::ALL
                    .iter()
                    .filter(|t| t.is_request())
                    .map(|t| t.as_u16())
                    .collect();
                let kind = *input.pick(&kinds);
                let flags = if encoding == Encoding::Json { 1 } else { 0 };
                let payload = input.bytes(64);
                steps.push(Step::Request {
                    bytes: frame_bytes(kind, 1, flags, id, &payload),
                    kind,
                    id,
                });
            }
            12 => {
                // Well framed but unacceptable: an unknown type, a version, reserved flags, a
                // response flag.
                let (kind, version, flags) = *input.pick(&[
                    (0x7777, 1, 0),
                    (0x0001, 0, 0),
                    (0x0001, 9, 0),
                    (0x0001, 1, 0x100),
                    (0x0001, 1, 0x8),
                    (0x0001, 1, 0x2),
                    (0x0005, 1, 0),
                ]);
                steps.push(Step::Request {
                    bytes: frame_bytes(kind, version, flags, id, &[]),
                    kind,
                    id,
                });
            }
            13 => {
                // A length field shorter than the header.
                let mut b = BytesMut::new();
                b.put_u32(u32::from(input.byte().unwrap_or(0) % 28));
                b.put_slice(&[0u8; 28]);
                steps.push(Step::Break(b.freeze()));
                break;
            }
            14 => {
                // A length field far over the limit.
                let mut b = BytesMut::from(&frame_bytes(0x0001, 1, 0, id, &[])[..]);
                b[..4].copy_from_slice(&(64u32 << 20).to_be_bytes());
                steps.push(Step::Break(b.freeze()));
                break;
            }
            _ => {
                // Garbage behind a length field of one of four kinds: under the header's (the
                // stream breaks), a whole frame (answered, whatever its header says), a partial
                // frame within every limit (the server waits for the rest, so the script ends
                // there), or far over every limit (refused, and the stream ends).
                let mut raw = input.bytes(40);
                if raw.len() < 28 {
                    continue;
                }
                let class = input.byte().unwrap_or(0) % 4;
                let len: u32 = match class {
                    0 => u32::from(raw[0] % 28),
                    1 => raw.len() as u32,
                    2 => 1000,
                    _ => 64 << 20,
                };
                raw[..4].copy_from_slice(&len.to_be_bytes());
                match class {
                    1 => {
                        let id = PacketId(raw[12..28].try_into().unwrap_or([0; 16]));
                        if !used.insert(id) {
                            continue;
                        }
                        steps.push(Step::Request {
                            kind: u16::from_be_bytes([raw[4], raw[5]]),
                            id,
                            bytes: Bytes::from(raw),
                        });
                    }
                    2 => {
                        steps.push(Step::Tail(Bytes::from(raw)));
                        break;
                    }
                    _ => {
                        steps.push(Step::Break(Bytes::from(raw)));
                        break;
                    }
                }
            }
        }
    }
    steps
}

fn check_error(frame: &Frame) -> pb::Error {
    let error: pb::Error = frame
        .decode()
        .unwrap_or_else(|e| panic!("an error that does not decode: {e} in {frame:?}"));
    let code = ErrorCode::from_u32(error.code)
        .unwrap_or_else(|| panic!("an unknown error code: {error:?}"));
    assert_eq!(error.name, code.name(), "the name goes with the code");
    assert_eq!(error.retryable, code.retryable());
    error
}

/// Plays the script `data` reads as on a new connection to `server`, checking the rules of the
/// module doc; panics on the first broken one.
pub async fn play(server: &TestServer, data: &[u8]) {
    let steps = script(data);
    let mut raw = server.raw().await;
    let mut expected: HashMap<PacketId, u16> = HashMap::new();
    let mut broke = false;
    for step in &steps {
        match step {
            Step::Request { bytes, kind, id } => {
                expected.insert(*id, *kind);
                raw.write(bytes).await;
            }
            Step::Split {
                bytes,
                kind,
                id,
                at,
            } => {
                expected.insert(*id, *kind);
                raw.write(&bytes[..*at]).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                raw.write(&bytes[*at..]).await;
            }
            Step::Break(bytes) => {
                raw.write(bytes).await;
                broke = true;
            }
            Step::Tail(bytes) => raw.write(bytes).await,
        }
    }
    // Read until every request is answered (and, after a break, until the close).
    let mut answered: HashMap<PacketId, usize> = HashMap::new();
    let mut logged_out = false;
    let mut kicked = false;
    let mut connection_error = None;
    let closed = loop {
        if !broke && !logged_out && answered.len() == expected.len() {
            break false;
        }
        let Some(frame) = raw.read().await else {
            break true;
        };
        if frame.kind == 0
            && frame.packet_id != PacketId::ZERO
            && frame.is_error()
            && !expected.contains_key(&frame.packet_id)
        {
            // The answer to a frame of type 0 written as raw bytes: the server answers it with
            // its own type and packet id, like any other request. A well-formed error is all
            // there is to check.
            check_error(&frame);
        } else if frame.kind == 0 && !expected.contains_key(&frame.packet_id) {
            // A connection error (type 0, packet id zero), sent right before the close.
            assert!(frame.is_error(), "a connection error has the ERROR flag");
            assert_eq!(frame.packet_id, PacketId::ZERO);
            connection_error = Some(check_error(&frame));
        } else if frame.is_response()
            && broke
            && frame.is_error()
            && !expected.contains_key(&frame.packet_id)
        {
            // FRAME_TOO_LARGE answers the oversize frame that broke the stream, echoing it.
            let error = check_error(&frame);
            assert_eq!(error.code, ErrorCode::FrameTooLarge.as_u32(), "{error:?}");
            connection_error = Some(error);
        } else if frame.is_response() {
            let kind = expected.get(&frame.packet_id).unwrap_or_else(|| {
                panic!("a response to a request never sent: {frame:?}; script {steps:?}")
            });
            assert_eq!(frame.kind, *kind, "a response has its request's type");
            let n = answered.entry(frame.packet_id).or_insert(0);
            *n += 1;
            assert_eq!(*n, 1, "one response per request: {frame:?}");
            if frame.is_error() {
                let error = check_error(&frame);
                if error.code == ErrorCode::FrameTooLarge.as_u32() {
                    connection_error = Some(error);
                }
            } else if frame.kind == MessageType::Logout.as_u16() {
                logged_out = true;
            }
        } else {
            match ServerEvent::decode(&frame) {
                Ok(Some(ServerEvent::Kick(_))) => kicked = true,
                Ok(_) => {}
                Err(e) => panic!("a server event that does not decode: {e}"),
            }
        }
    };
    if broke && !logged_out && !kicked {
        assert!(closed, "a framing error closes the connection");
        let error = connection_error.unwrap_or_else(|| {
            panic!("a framing error is answered before the close; script {steps:?}")
        });
        assert!(
            [
                ErrorCode::BadFrame.as_u32(),
                ErrorCode::FrameTooLarge.as_u32()
            ]
            .contains(&error.code),
            "{error:?}"
        );
    } else if closed {
        assert!(
            logged_out || kicked,
            "the connection closed with no reason: {} of {} requests answered",
            answered.len(),
            expected.len()
        );
    } else {
        assert_eq!(answered.len(), expected.len());
    }
    drop(raw);
    // The session ends; the registry and the anonymous count settle.
    let gateway = server.server().gateway();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        gateway.registry().check_invariants();
        if gateway.anonymous_connections() == 0 && gateway.registry().connection_count() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed connection is still counted: {} anonymous",
            gateway.anonymous_connections()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
