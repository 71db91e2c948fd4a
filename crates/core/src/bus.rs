//! The bus: carries what commits made visible, and ephemeral signals, to every process that may
//! hold a recipient's connection.
//!
//! The commit pipeline publishes each committed batch once, in commit order; the bus hands it
//! to the fan-out ([`Delivery`]) of each process that holds connections. A single server's bus
//! is [`LocalBus`]: its one process's fan-out. A cluster's bus also publishes to the other nodes,
//! each of which hands what it receives to its own fan-out with [`deliver_locally`]. Nothing the
//! bus carries is needed for correctness: every entry is stored before it is published, and a
//! device that misses a push catches up from its cursor.

use std::sync::Arc;

use crate::{
    Delivery,
    ids::{ConnectionId, ConversationId, DeviceId, Platform, UserId},
    store::InboxEvent,
    sync::Publication,
};

/// Carries publications and signals to the processes that hold connections.
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes a committed batch's publications, in commit order. Must not block or await.
    fn publish(&self, published: &[Publication]);

    /// Tells `to`'s devices, wherever they are connected, that `from` is typing in
    /// `conversation`. Never stored; a device that misses it misses it.
    fn typing(&self, to: &UserId, from: &UserId, conversation: &ConversationId);

    /// Tells the other processes that `user`'s `device` logged in as `connection`, so that
    /// they close the connections the login replaces (this process closed its own already) and
    /// show the device online.
    fn logged_in(
        &self,
        user: &UserId,
        device: &DeviceId,
        platform: Platform,
        connection: ConnectionId,
    );

    /// Tells the other processes that `user`'s `connection` (of this process) ended.
    fn logged_out(&self, user: &UserId, connection: ConnectionId);

    /// Disconnects `user`'s `device` (every device: `None`) wherever it is connected.
    fn kick(&self, user: &UserId, device: Option<&DeviceId>, cause: crate::sync::KickCause);
}

/// The bus of a single process: everything goes to this process's fan-out.
#[derive(Debug)]
pub struct LocalBus {
    delivery: Arc<dyn Delivery>,
}

impl LocalBus {
    /// A bus over this process's fan-out.
    pub fn new(delivery: Arc<dyn Delivery>) -> Self {
        Self { delivery }
    }
}

impl Bus for LocalBus {
    fn publish(&self, published: &[Publication]) {
        deliver_locally(&*self.delivery, published);
    }

    fn typing(&self, to: &UserId, from: &UserId, conversation: &ConversationId) {
        self.delivery.typing(to, from, conversation);
    }

    fn logged_in(&self, _: &UserId, _: &DeviceId, _: Platform, _: ConnectionId) {
        // There is no other process.
    }

    fn logged_out(&self, _: &UserId, _: ConnectionId) {}

    fn kick(&self, user: &UserId, device: Option<&DeviceId>, cause: crate::sync::KickCause) {
        self.delivery.kick(user, device, cause);
    }
}

/// Hands publications to one process's connections: each inbox entry to its user's online
/// devices (except the connection it came from, which has it through its ack), each
/// read-diffusion group message to the members online, and each stored message once to the
/// connections observing its conversation.
pub fn deliver_locally(delivery: &dyn Delivery, published: &[Publication]) {
    for p in published {
        match p {
            Publication::Entry { user, entry, skip } => delivery.deliver(user, entry, *skip),
            Publication::Group {
                message,
                members,
                except,
                skip,
            } => delivery.deliver_group(message, members, except, *skip),
        }
    }
    if delivery.observing() {
        // A message appears once per inbox it reaches; observers get it once.
        let mut last = None;
        for p in published {
            let message = match p {
                Publication::Entry { entry, .. } => {
                    let InboxEvent::Message(m) = &entry.event;
                    m
                }
                Publication::Group { message, .. } => message,
            };
            if last != Some(message.id) {
                last = Some(message.id);
                delivery.observe(message);
            }
        }
    }
}
