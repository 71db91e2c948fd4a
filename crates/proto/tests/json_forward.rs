//! Forward compatibility of the JSON encoding: every message a peer reads skips keys it does not
//! know, at the top level and inside nested messages, so a newer client adding a field works
//! against an older server, and a newer server against an older client.

use bytes::Bytes;
use tern_proto::{
    Encoding, Flags, Frame, MessageType, PacketId, Request, ServerEvent, decode_payload, pb,
};

/// A JSON request frame of `kind` with `payload`.
fn json_frame(kind: MessageType, payload: &str) -> Frame {
    Frame::with_payload(
        kind,
        Flags::empty(),
        PacketId::from_u128(7),
        Encoding::Json,
        Bytes::copy_from_slice(payload.as_bytes()),
    )
}

const UNKNOWN: &str = r#""someFutureField": 1, "anotherFuture": {"nested": [1, "two", null]}"#;

#[test]
fn every_request_type_skips_unknown_keys() {
    let requests: Vec<MessageType> = MessageType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_request())
        .collect();
    assert!(requests.len() > 30, "the table lists every request");
    for kind in requests {
        let frame = json_frame(kind, &format!("{{{UNKNOWN}}}"));
        let decoded = Request::decode(&frame)
            .unwrap_or_else(|e| panic!("{} refused an unknown key: {e}", kind.name()));
        assert_eq!(decoded.message_type(), kind);
    }
}

#[test]
fn every_server_event_skips_unknown_keys() {
    for kind in MessageType::ALL
        .iter()
        .copied()
        .filter(|t| !t.is_request() && *t != MessageType::ConnectionError)
    {
        let frame = json_frame(kind, &format!("{{{UNKNOWN}}}"));
        let decoded = ServerEvent::decode(&frame)
            .unwrap_or_else(|e| panic!("{} refused an unknown key: {e}", kind.name()));
        assert!(decoded.is_some(), "{} is an event", kind.name());
    }
}

#[test]
fn known_fields_keep_their_values_beside_unknown_ones_at_every_depth() {
    let ping = Request::decode(&json_frame(
        MessageType::Ping,
        r#"{"clientTimeMs": "5", "someFutureField": 1}"#,
    ))
    .unwrap();
    assert_eq!(ping, Request::Ping(pb::Ping { client_time_ms: 5 }));

    let send = Request::decode(&json_frame(
        MessageType::Send,
        r#"{"toUser": "bob", "clientMsgId": "c1", "priority": "high",
            "content": {"text": {"text": "hi", "format": "markdown"}, "mentions": ["carol"]}}"#,
    ))
    .unwrap();
    let Request::Send(send) = send else {
        panic!("a SEND")
    };
    assert_eq!(send.client_msg_id, "c1");
    assert_eq!(
        send.content.and_then(|c| c.body),
        Some(pb::content::Body::Text(pb::Text { text: "hi".into() }))
    );

    // Responses too: an older client reads what a newer server answers.
    let ack: pb::SendAck = decode_payload(
        br#"{"messageId": "9", "seq": "3", "newServerField": {"x": 1}}"#,
        Encoding::Json,
    )
    .unwrap();
    assert_eq!((ack.message_id, ack.seq), (9, 3));
}

#[test]
fn json_that_is_not_an_object_is_still_refused() {
    for bad in [r#"[1, 2]"#, r#""text""#, r#"{"clientTimeMs": {"#] {
        let e = Request::decode(&json_frame(MessageType::Ping, bad)).unwrap_err();
        assert_eq!(e.code(), tern_proto::ErrorCode::MalformedPayload, "{bad}");
    }
    // A known key with a value of the wrong type is an error, not an unknown key.
    let e = Request::decode(&json_frame(
        MessageType::Ping,
        r#"{"clientTimeMs": {"a": 1}}"#,
    ))
    .unwrap_err();
    assert_eq!(e.code(), tern_proto::ErrorCode::MalformedPayload);
}
