//! Property test: every message of the table survives encode → frame → bytes → decode in both
//! encodings, and the decoder yields the same frames however the bytes are split.

use bytes::BytesMut;
use proptest::prelude::*;
use tern_proto::{
    Decoded, Encoding, Frame, FrameDecoder, MessageType, PacketId, Request, ServerEvent,
    decode_payload, encode_payload, pb,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), ".{0,40}", "[a-z0-9_.@-]{1,16}"]
}

fn content() -> BoxedStrategy<pb::Content> {
    let body = prop_oneof![
        text().prop_map(|text| pb::content::Body::Text(pb::Text { text })),
        (
            text(),
            text(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            text(),
            any::<(u32, u32)>()
        )
            .prop_map(
                |(file_id, url, width, height, size, mime, (thumb_width, thumb_height))| {
                    pb::content::Body::Image(pb::Image {
                        file_id,
                        url,
                        width,
                        height,
                        size,
                        mime,
                        thumb_width,
                        thumb_height,
                    })
                }
            ),
        (text(), text(), text(), any::<u64>(), text()).prop_map(
            |(file_id, url, name, size, mime)| {
                pb::content::Body::File(pb::File {
                    file_id,
                    url,
                    name,
                    size,
                    mime,
                })
            }
        ),
        (text(), text())
            .prop_map(|(kind, data)| pb::content::Body::Custom(pb::Custom { kind, data })),
        (any::<u64>(), any::<u64>()).prop_map(|(message_id, seq)| pb::content::Body::Recall(
            pb::Recall { message_id, seq }
        )),
        (any::<u64>(), any::<u64>(), text()).prop_map(|(message_id, seq, t)| {
            pb::content::Body::Edit(Box::new(pb::Edit {
                message_id,
                seq,
                content: Some(Box::new(pb::Content {
                    body: Some(pb::content::Body::Text(pb::Text { text: t })),
                })),
            }))
        }),
        (text(), any::<u64>()).prop_map(|(conversation_id, read_seq)| {
            pb::content::Body::ReadMark(pb::ReadMark {
                conversation_id,
                read_seq,
            })
        }),
        (text(), any::<bool>(), any::<bool>()).prop_map(|(conversation_id, pinned, muted)| {
            pb::content::Body::ConversationFlags(pb::ConversationFlags {
                conversation_id,
                pinned,
                muted,
            })
        }),
    ];
    proptest::option::of(body)
        .prop_map(|body| pb::Content { body })
        .boxed()
}

fn message() -> BoxedStrategy<pb::Message> {
    (
        any::<u64>(),
        text(),
        any::<u64>(),
        text(),
        text(),
        any::<i64>(),
        proptest::option::of(content()),
        (any::<bool>(), text(), any::<i64>()),
    )
        .prop_map(
            |(
                message_id,
                conversation_id,
                seq,
                sender,
                client_msg_id,
                server_time_ms,
                content,
                (recalled, recalled_by, edited_at_ms),
            )| {
                pb::Message {
                    message_id,
                    conversation_id,
                    seq,
                    sender,
                    client_msg_id,
                    server_time_ms,
                    content,
                    recalled,
                    recalled_by,
                    edited_at_ms,
                }
            },
        )
        .boxed()
}

fn inbox_entry() -> BoxedStrategy<pb::InboxEntry> {
    (any::<u64>(), proptest::option::of(message()))
        .prop_map(|(seq, m)| pb::InboxEntry {
            seq,
            event: m.map(pb::inbox_entry::Event::Message),
        })
        .boxed()
}

fn platform() -> impl Strategy<Value = i32> {
    (0i32..=5).boxed()
}

fn request() -> BoxedStrategy<Request> {
    prop_oneof![
        any::<i64>().prop_map(|t| Request::Ping(pb::Ping { client_time_ms: t })),
        (text(), text()).prop_map(
            |(user_id, password)| Request::Register(pb::RegisterRequest { user_id, password })
        ),
        (
            text(),
            proptest::option::of(prop_oneof![
                text().prop_map(pb::login_request::Credential::Password),
                text().prop_map(pb::login_request::Credential::Token),
            ]),
            text(),
            platform()
        )
            .prop_map(|(user_id, credential, device_id, platform)| Request::Login(
                pb::LoginRequest {
                    user_id,
                    credential,
                    device_id,
                    platform
                }
            )),
        Just(Request::Logout(pb::LogoutRequest {})),
        (
            proptest::option::of(text()),
            text(),
            proptest::option::of(content())
        )
            .prop_map(
                |(to, client_msg_id, content)| Request::Send(pb::SendRequest {
                    target: to.map(pb::send_request::Target::ToUser),
                    client_msg_id,
                    content
                })
            ),
        (any::<u64>(), any::<u32>())
            .prop_map(|(after, limit)| Request::Sync(pb::SyncRequest { after, limit })),
        any::<u64>().prop_map(|seq| Request::AckCursor(pb::AckCursorRequest { seq })),
        (
            proptest::option::of(prop_oneof![
                text().prop_map(pb::history_request::Target::Peer),
                text().prop_map(pb::history_request::Target::ConversationId),
            ]),
            any::<u64>(),
            0i32..=1,
            any::<u32>()
        )
            .prop_map(|(target, anchor_seq, direction, limit)| Request::History(
                pb::HistoryRequest {
                    target,
                    anchor_seq,
                    direction,
                    limit
                }
            )),
        (text(), proptest::collection::vec(text(), 0..4), 0i32..=1).prop_map(
            |(name, members, history_visibility)| Request::GroupCreate(pb::GroupCreateRequest {
                name,
                members,
                history_visibility,
                ..Default::default()
            })
        ),
        (
            any::<u64>(),
            prop_oneof![
                proptest::collection::vec(text(), 0..4).prop_map(|values| {
                    pb::group_update_request::Change::AddMembers(pb::StringList { values })
                }),
                text().prop_map(pb::group_update_request::Change::Rename),
                (text(), 0i32..=3).prop_map(|(user_id, role)| {
                    pb::group_update_request::Change::SetRole(pb::GroupMemberRole { user_id, role })
                }),
                (text(), any::<i64>()).prop_map(|(user_id, until_ms)| {
                    pb::group_update_request::Change::MuteMember(pb::GroupMute {
                        user_id,
                        until_ms,
                    })
                }),
                any::<bool>().prop_map(pb::group_update_request::Change::MuteAll),
            ]
        )
            .prop_map(
                |(group_id, change)| Request::GroupUpdate(pb::GroupUpdateRequest {
                    group_id,
                    change: Some(change)
                })
            ),
        (any::<u64>(), text(), any::<u32>()).prop_map(|(group_id, after, limit)| {
            Request::GroupMembers(pb::GroupMembersRequest {
                group_id,
                after,
                limit,
            })
        }),
        Just(Request::GroupList(pb::GroupListRequest {})),
        text().prop_map(|to_user| Request::Typing(pb::TypingRequest { to_user })),
    ]
    .boxed()
}

fn event() -> BoxedStrategy<ServerEvent> {
    prop_oneof![
        (0i32..=3, text())
            .prop_map(|(reason, message)| ServerEvent::Kick(pb::Kick { reason, message })),
        (text(), any::<u32>()).prop_map(|(reason, reconnect_after_ms)| ServerEvent::Goodbye(
            pb::Goodbye {
                reason,
                reconnect_after_ms
            }
        )),
        proptest::option::of(inbox_entry()).prop_map(|entry| ServerEvent::Push(pb::Push {
            entry,
            ..Default::default()
        })),
        message().prop_map(|m| ServerEvent::Push(pb::Push {
            group_message: Some(m),
            ..Default::default()
        })),
        message().prop_map(|m| ServerEvent::Push(pb::Push {
            observed: Some(m),
            ..Default::default()
        })),
        (text(), any::<bool>()).prop_map(|(user_id, online)| ServerEvent::Presence(pb::Presence {
            user_id,
            online,
            devices: vec![pb::DevicePresence {
                device_id: "d".into(),
                platform: 2,
            }],
        })),
        any::<u64>().prop_map(|head| ServerEvent::SyncNotify(pb::SyncNotify { head })),
        (text(), text()).prop_map(|(from_user, conversation_id)| ServerEvent::TypingNotice(
            pb::TypingNotice {
                from_user,
                conversation_id
            }
        )),
    ]
    .boxed()
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Protobuf), Just(Encoding::Json)]
}

fn through_bytes(frame: &Frame) -> Frame {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    match FrameDecoder::default().decode(&mut buf).unwrap() {
        Decoded::Frame(f) => {
            assert!(buf.is_empty());
            f
        }
        Decoded::Incomplete { needed } => {
            panic!("a whole frame decoded as incomplete ({needed} more)")
        }
    }
}

fn roundtrip_payload<M: tern_proto::Payload + PartialEq + std::fmt::Debug>(m: &M, enc: Encoding) {
    let bytes = encode_payload(m, enc).unwrap();
    let back: M = decode_payload(&bytes, enc).unwrap();
    assert_eq!(&back, m);
}

proptest! {
    #[test]
    fn every_request_round_trips(req in request(), enc in encoding(), id in any::<u128>()) {
        let frame = req.to_frame(PacketId::from_u128(id), enc).unwrap();
        let back = through_bytes(&frame);
        prop_assert_eq!(&back, &frame);
        prop_assert_eq!(Request::decode(&back).unwrap(), req);
    }

    #[test]
    fn every_server_event_round_trips(ev in event(), enc in encoding(), id in any::<u128>()) {
        let frame = ev.to_frame(PacketId::from_u128(id), enc).unwrap();
        let back = through_bytes(&frame);
        prop_assert_eq!(ServerEvent::decode(&back).unwrap(), Some(ev));
    }

    #[test]
    fn every_response_round_trips(
        enc in encoding(),
        t in any::<i64>(),
        user in text(),
        token in text(),
        seqs in any::<(u64, u64, u32)>(),
        entries in proptest::collection::vec(inbox_entry(), 0..4),
        messages in proptest::collection::vec(message(), 0..4),
        more in any::<bool>(),
        code in any::<u32>(),
    ) {
        roundtrip_payload(&pb::Pong { client_time_ms: t, server_time_ms: t / 2 }, enc);
        roundtrip_payload(&pb::RegisterResponse { user_id: user.clone() }, enc);
        roundtrip_payload(&pb::LoginResponse {
            token: token.clone(),
            token_expires_at_ms: t,
            inbox_head: seqs.0,
            cursor: seqs.1,
            heartbeat_interval_ms: seqs.2,
            server_time_ms: t,
        }, enc);
        roundtrip_payload(&pb::LogoutResponse {}, enc);
        roundtrip_payload(&pb::SendAck {
            message_id: seqs.0,
            conversation_id: user.clone(),
            seq: seqs.1,
            server_time_ms: t,
            inbox_seq: seqs.0 ^ seqs.1,
            duplicate: more,
        }, enc);
        roundtrip_payload(&pb::SyncResponse { entries, has_more: more, head: seqs.0 }, enc);
        roundtrip_payload(&pb::AckCursorResponse { cursor: seqs.1 }, enc);
        roundtrip_payload(&pb::HistoryResponse { messages, has_more: more }, enc);
        roundtrip_payload(&pb::Error { code, name: user, message: token, retryable: more, retry_after_ms: u64::from(code) }, enc);
    }

    #[test]
    fn decoding_in_arbitrary_chunks_yields_the_same_frames(
        reqs in proptest::collection::vec((request(), encoding()), 1..6),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let frames: Vec<Frame> = reqs
            .iter()
            .enumerate()
            .map(|(i, (r, e))| r.to_frame(PacketId::from_u128(i as u128), *e).unwrap())
            .collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < wire.len() {
            let n = (*cut.next().unwrap()).min(wire.len() - pos);
            buf.extend_from_slice(&wire[pos..pos + n]);
            pos += n;
            while let Decoded::Frame(f) = decoder.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
    }
}

#[test]
fn every_type_number_maps_back_to_its_type() {
    for ty in MessageType::ALL {
        assert_eq!(MessageType::from_u16(ty.as_u16()), Some(*ty));
    }
    let mut numbers: Vec<u16> = MessageType::ALL.iter().map(|t| t.as_u16()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        MessageType::ALL.len(),
        "type numbers are unique"
    );
}
