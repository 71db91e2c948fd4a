//! Fan-out: the core's `Delivery` over the registry, encoding each push once per encoding.

use std::sync::Arc;

use bytes::Bytes;
use tern_core::{
    ConnectionId, ConversationId, Delivery, DeviceId, Platform, UserId,
    groups::Members,
    store::{InboxEntry, StoredMessage},
};
use tern_proto::{Encoding, PacketId, ServerEvent, pb};

use tern_api::wire::{inbox_entry_to_wire, message_to_wire};

use crate::{
    observe::Observers,
    outbox::CloseReason,
    registry::{KickPolicy, Registry},
};

/// Hands new inbox entries to the online connections of their users.
#[derive(Debug)]
pub struct Fanout {
    registry: Arc<Registry>,
    observers: Arc<Observers>,
    /// What a login on another node does to this node's connections of the same user.
    policy: KickPolicy,
    delivered: metrics::Counter,
    dropped: metrics::Counter,
}

impl Fanout {
    /// Fan-out over `registry`, and to the connections in `observers`; logins elsewhere replace
    /// connections here under `policy` (the gateway's).
    pub fn new(registry: Arc<Registry>, observers: Arc<Observers>, policy: KickPolicy) -> Self {
        Self {
            registry,
            observers,
            policy,
            delivered: metrics::counter!("tern_pushes_total", "result" => "queued"),
            dropped: metrics::counter!("tern_pushes_total", "result" => "lagged"),
        }
    }
}

/// A server event encoded at most once per encoding, on first need: fan-out to many
/// connections builds each frame once, and only for the encodings some connection uses.
pub(crate) struct Encoded<'a> {
    event: &'a ServerEvent,
    frames: [Option<Option<Bytes>>; 2],
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(event: &'a ServerEvent) -> Self {
        Self {
            event,
            frames: [None, None],
        }
    }

    /// The event's frame in `encoding` (`None` if it cannot be encoded, which is logged once).
    pub(crate) fn frame(&mut self, encoding: Encoding) -> Option<&Bytes> {
        let event = self.event;
        self.frames[matches!(encoding, Encoding::Json) as usize]
            .get_or_insert_with(|| match event.to_frame(PacketId(rand::random()), encoding) {
                Ok(f) => Some(f.to_bytes()),
                Err(e) => {
                    tracing::error!(error = %e, kind = event.message_type().name(), "cannot encode an event");
                    None
                }
            })
            .as_ref()
    }
}

/// Encodes a push frame. Pushes carry a fresh random packet id: they answer no request.
pub(crate) fn push_frame(entry: &InboxEntry, encoding: Encoding) -> Option<Bytes> {
    let event = ServerEvent::Push(pb::Push {
        entry: Some(inbox_entry_to_wire(entry)),
        ..Default::default()
    });
    match event.to_frame(PacketId(rand::random()), encoding) {
        Ok(frame) => Some(frame.to_bytes()),
        Err(e) => {
            tracing::error!(error = %e, seq = entry.seq, "cannot encode a push");
            None
        }
    }
}

/// Encodes the push of a read-diffusion group message.
fn group_push_frame(message: &StoredMessage, encoding: Encoding) -> Option<Bytes> {
    let event = ServerEvent::Push(pb::Push {
        group_message: Some(message_to_wire(message)),
        ..Default::default()
    });
    match event.to_frame(PacketId(rand::random()), encoding) {
        Ok(frame) => Some(frame.to_bytes()),
        Err(e) => {
            tracing::error!(error = %e, id = message.id.0, "cannot encode a group push");
            None
        }
    }
}

impl Delivery for Fanout {
    fn deliver(&self, user: &UserId, entry: &Arc<InboxEntry>, skip: Option<ConnectionId>) {
        // Each encoding is built at most once per entry, and only if some connection uses it.
        let mut protobuf: Option<Option<Bytes>> = None;
        let mut json: Option<Option<Bytes>> = None;
        self.registry.for_each_connection(user, |id, conn| {
            if Some(id) == skip {
                return;
            }
            let slot = match conn.encoding {
                Encoding::Protobuf => &mut protobuf,
                Encoding::Json => &mut json,
            };
            let Some(frame) = slot.get_or_insert_with(|| push_frame(entry, conn.encoding)) else {
                return;
            };
            if conn.outbox.push(frame.clone(), entry.seq) {
                self.delivered.increment(1);
            } else {
                self.dropped.increment(1);
            }
        });
    }

    fn deliver_group(
        &self,
        message: &Arc<StoredMessage>,
        members: &Members,
        except: &[UserId],
        skip: Option<ConnectionId>,
    ) {
        let mut protobuf: Option<Option<Bytes>> = None;
        let mut json: Option<Option<Bytes>> = None;
        let (mut queued, mut lagged) = (0u64, 0u64);
        self.registry
            .for_each_member_connection(members, except, |id, conn| {
                if Some(id) == skip {
                    return;
                }
                let slot = match conn.encoding {
                    Encoding::Protobuf => &mut protobuf,
                    Encoding::Json => &mut json,
                };
                let Some(frame) =
                    slot.get_or_insert_with(|| group_push_frame(message, conn.encoding))
                else {
                    return;
                };
                // A dropped group push carries no inbox seq: the notice that follows makes the
                // client sync and then compare its groups' heads (GROUP_LIST).
                if conn.outbox.push(frame.clone(), 0) {
                    queued += 1;
                } else {
                    lagged += 1;
                }
            });
        // Counted once per message, not per connection, to keep the loop free of atomics.
        self.delivered.increment(queued);
        self.dropped.increment(lagged);
    }

    fn observing(&self) -> bool {
        self.observers.any()
    }

    fn observe(&self, message: &Arc<StoredMessage>) {
        let observers = self.observers.of(&message.conversation);
        if observers.is_empty() {
            return;
        }
        let event = ServerEvent::Push(pb::Push {
            observed: Some(message_to_wire(message)),
            ..Default::default()
        });
        let mut encoded = Encoded::new(&event);
        for o in observers {
            // Live only: an observer that falls behind misses messages rather than making its
            // connection sync an inbox it has no part in.
            if let Some(frame) = encoded.frame(o.encoding) {
                o.outbox.push_ephemeral(frame.clone());
            }
        }
    }

    fn typing(&self, to: &UserId, from: &UserId, conversation: &ConversationId) {
        let notice = ServerEvent::TypingNotice(pb::TypingNotice {
            from_user: from.to_string(),
            conversation_id: conversation.as_str().to_owned(),
        });
        let mut encoded = Encoded::new(&notice);
        self.registry.for_each_connection(to, |_, conn| {
            if let Some(frame) = encoded.frame(conn.encoding) {
                conn.outbox.push_ephemeral(frame.clone());
            }
        });
    }

    fn resync(&self) {
        let outboxes = self.registry.all_outboxes();
        tracing::debug!(
            connections = outboxes.len(),
            "telling every connection to sync"
        );
        for outbox in outboxes {
            outbox.resync();
        }
    }

    fn replaced_elsewhere(
        &self,
        user: &UserId,
        device: &DeviceId,
        platform: Platform,
        connection: ConnectionId,
    ) {
        for outbox in self
            .registry
            .replaced_by(user, device, platform, self.policy, connection)
        {
            tracing::debug!(user = %user, by = %connection, "kicking a connection replaced on another node");
            // Its session detaches it on the way out, which tells its followers.
            outbox.close(CloseReason::Kick(pb::Kick {
                reason: pb::KickReason::Replaced as i32,
                message: "another login on the same platform replaced this connection".into(),
            }));
        }
    }

    fn kick(&self, user: &UserId, device: Option<&DeviceId>, cause: tern_core::sync::KickCause) {
        let (reason, message) = match cause {
            tern_core::sync::KickCause::LoggedOut => (
                pb::KickReason::LoggedOut,
                "this device's login was revoked; log in again",
            ),
            tern_core::sync::KickCause::Disabled => {
                (pb::KickReason::Admin, "this account was disabled")
            }
        };
        let mut outboxes = Vec::new();
        self.registry.for_each_connection(user, |_, entry| {
            if device.is_none_or(|d| *d == entry.device) {
                outboxes.push(entry.outbox.clone());
            }
        });
        for outbox in outboxes {
            // Its session detaches it on the way out, which tells its followers.
            outbox.close(CloseReason::Kick(pb::Kick {
                reason: reason as i32,
                message: message.into(),
            }));
        }
    }
}
