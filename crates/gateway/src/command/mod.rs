//! Commands: one file per request type, each with the same shape — `run` takes the services,
//! the caller and the decoded request, and returns the response payload or a service error.
//! This module holds what they share: the caller, and domain ⇄ wire conversions.

pub(crate) mod ack_cursor;
pub(crate) mod history;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod ping;
pub(crate) mod register;
pub(crate) mod send;
pub(crate) mod sync;

use tern_core::{
    ConnectionId, DeviceId, UserId,
    store::{InboxEntry, InboxEvent, StoredMessage},
};
use tern_proto::pb;

/// The authenticated identity a command runs for.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) connection: ConnectionId,
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
}

/// A stored message as the wire shows it.
pub(crate) fn message_to_wire(m: &StoredMessage) -> pb::Message {
    pb::Message {
        message_id: m.id.0,
        conversation_id: m.conversation.as_str().to_owned(),
        seq: m.seq,
        sender: m.sender.as_str().to_owned(),
        client_msg_id: m.client_msg_id.clone(),
        server_time_ms: m.server_time_ms,
        content: Some(m.content.clone()),
    }
}

/// An inbox entry as the wire shows it.
pub(crate) fn inbox_entry_to_wire(e: &InboxEntry) -> pb::InboxEntry {
    let event = match &e.event {
        InboxEvent::Message(m) => pb::inbox_entry::Event::Message(message_to_wire(m)),
    };
    pb::InboxEntry {
        seq: e.seq,
        event: Some(event),
    }
}
