//! Golden vectors: the complete frames printed in docs/protocol.md decode to exactly these
//! messages, and these messages encode to exactly those bytes. The document also carries the
//! whole schema and every error code; this test keeps all three in step with the code.

use tern_proto::{
    Decoded, Encoding, ErrorCode, Frame, FrameDecoder, MessageType, PacketId, Request, ServerEvent,
    pb,
};

const DOC: &str = include_str!("../../../docs/protocol.md");
const SCHEMA: &str = include_str!("../proto/tern.proto");

fn packet_id() -> PacketId {
    PacketId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
}

fn message() -> pb::Message {
    pb::Message {
        message_id: 42,
        conversation_id: "p:alice:bob".into(),
        seq: 7,
        sender: "alice".into(),
        client_msg_id: "c-1".into(),
        server_time_ms: 1_700_000_000_123,
        content: Some(pb::Content {
            body: Some(pb::content::Body::Text(pb::Text { text: "hi".into() })),
        }),
        ..Default::default()
    }
}

/// Every vector of the document, by name.
fn vectors() -> Vec<(&'static str, Frame)> {
    let id = packet_id();
    let req = |r: Request, e| r.to_frame(id, e).unwrap();
    vec![
        (
            "ping-protobuf",
            req(
                Request::Ping(pb::Ping {
                    client_time_ms: 1_700_000_000_000,
                }),
                Encoding::Protobuf,
            ),
        ),
        (
            "login-json",
            req(
                Request::Login(pb::LoginRequest {
                    user_id: "alice".into(),
                    credential: Some(pb::login_request::Credential::Password(
                        "correct horse".into(),
                    )),
                    device_id: "phone-1".into(),
                    platform: pb::Platform::Ios as i32,
                }),
                Encoding::Json,
            ),
        ),
        (
            "send-protobuf",
            req(
                Request::Send(pb::SendRequest {
                    target: Some(pb::send_request::Target::ToUser("bob".into())),
                    client_msg_id: "c-1".into(),
                    content: message().content,
                }),
                Encoding::Protobuf,
            ),
        ),
        (
            "send-ack-protobuf",
            Frame::response(
                MessageType::Send.as_u16(),
                id,
                Encoding::Protobuf,
                tern_proto::encode_payload(
                    &pb::SendAck {
                        message_id: 42,
                        conversation_id: "p:alice:bob".into(),
                        seq: 7,
                        server_time_ms: 1_700_000_000_123,
                        inbox_seq: 9,
                        duplicate: false,
                    },
                    Encoding::Protobuf,
                )
                .unwrap(),
            ),
        ),
        (
            "error-json",
            Frame::error(
                MessageType::Send.as_u16(),
                id,
                Encoding::Json,
                &ErrorCode::UnknownUser.to_error("user nobody does not exist"),
            ),
        ),
        (
            "push-protobuf",
            ServerEvent::Push(pb::Push {
                entry: Some(pb::InboxEntry {
                    seq: 9,
                    event: Some(pb::inbox_entry::Event::Message(message())),
                }),
                ..Default::default()
            })
            .to_frame(id, Encoding::Protobuf)
            .unwrap(),
        ),
        (
            "sync-json",
            req(
                Request::Sync(pb::SyncRequest {
                    after: 5,
                    limit: 100,
                }),
                Encoding::Json,
            ),
        ),
    ]
}

/// The hex under `<!-- golden:NAME -->` in the document, whitespace removed.
fn doc_hex(name: &str) -> Option<String> {
    let marker = format!("<!-- golden:{name} -->");
    let start = DOC.find(&marker)? + marker.len();
    let rest = &DOC[start..];
    let open = rest.find("```hex")? + "```hex".len();
    let close = rest[open..].find("```")?;
    Some(
        rest[open..open + close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

#[test]
fn the_documented_frames_are_exactly_what_the_codec_produces() {
    for (name, frame) in vectors() {
        let expected = hex::encode(frame.to_bytes());
        let documented = doc_hex(name)
            .unwrap_or_else(|| panic!("docs/protocol.md has no vector {name}; it is:\n{expected}"));
        assert_eq!(
            documented, expected,
            "vector {name} in docs/protocol.md is stale; it is:\n{expected}"
        );
        let mut bytes = bytes::BytesMut::from(hex::decode(&documented).unwrap().as_slice());
        match FrameDecoder::default().decode(&mut bytes).unwrap() {
            Decoded::Frame(decoded) => assert_eq!(decoded, frame, "vector {name} decodes"),
            Decoded::Incomplete { .. } => panic!("vector {name} is incomplete"),
        }
    }
}

#[test]
fn every_vector_in_the_document_is_checked() {
    let known: Vec<&str> = vectors().iter().map(|(n, _)| *n).collect();
    for (i, _) in DOC.match_indices("<!-- golden:") {
        let name = &DOC[i + "<!-- golden:".len()..];
        let name = &name[..name.find(" -->").unwrap()];
        assert!(
            known.contains(&name),
            "docs/protocol.md has an unchecked vector {name}"
        );
    }
}

#[test]
fn the_document_carries_the_whole_schema() {
    assert!(
        DOC.contains(SCHEMA.trim()),
        "the schema appendix of docs/protocol.md differs from proto/tern.proto"
    );
}

#[test]
fn the_document_lists_every_error_code_and_type() {
    for code in ErrorCode::ALL {
        let row = format!("| {} | `{}` |", code.as_u32(), code.name());
        assert!(
            DOC.contains(&row),
            "docs/protocol.md lacks the error row {row}"
        );
    }
    for ty in MessageType::ALL {
        let row = format!("| `{:#06x}` | `{}` |", ty.as_u16(), ty.name());
        assert!(
            DOC.contains(&row),
            "docs/protocol.md lacks the type row {row}"
        );
    }
}
