//! Fan-out: the core's `Delivery` over the registry, encoding each push once per encoding.

use std::sync::Arc;

use bytes::Bytes;
use tern_core::{ConnectionId, Delivery, UserId, store::InboxEntry};
use tern_proto::{Encoding, PacketId, ServerEvent, pb};

use crate::{command::inbox_entry_to_wire, registry::Registry};

/// Hands new inbox entries to the online connections of their users.
#[derive(Debug)]
pub struct Fanout {
    registry: Arc<Registry>,
    delivered: metrics::Counter,
    dropped: metrics::Counter,
}

impl Fanout {
    /// Fan-out over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            delivered: metrics::counter!("tern_pushes_total", "result" => "queued"),
            dropped: metrics::counter!("tern_pushes_total", "result" => "lagged"),
        }
    }
}

/// Encodes a push frame. Pushes carry a fresh random packet id: they answer no request.
pub(crate) fn push_frame(entry: &InboxEntry, encoding: Encoding) -> Option<Bytes> {
    let event = ServerEvent::Push(pb::Push {
        entry: Some(inbox_entry_to_wire(entry)),
    });
    match event.to_frame(PacketId(rand::random()), encoding) {
        Ok(frame) => Some(frame.to_bytes()),
        Err(e) => {
            tracing::error!(error = %e, seq = entry.seq, "cannot encode a push");
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
}
