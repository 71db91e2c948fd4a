//! Observers: connections that follow a conversation's live messages without taking part in it.
//!
//! The permission (the observer role) is the conversation service's to check when an observation
//! starts; this is who observes what, per connection, so fan-out can push each message of an
//! observed conversation once to each observing connection. A role taken away (through the
//! API) ends that user's observations at their next message. With no observer anywhere,
//! fan-out skips it with one atomic load.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use tern_core::{ConnectionId, ConversationId, UserId, conversations::ObserverRoles};
use tern_proto::Encoding;

use crate::outbox::Outbox;

/// The most conversations one connection may observe.
pub const MAX_OBSERVED_PER_CONNECTION: usize = 1000;

/// An observing connection.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    pub(crate) outbox: Outbox,
    pub(crate) encoding: Encoding,
    /// Whose connection: its role is checked again for every message.
    user: UserId,
}

#[derive(Debug, Default)]
struct Inner {
    by_conversation: HashMap<ConversationId, HashMap<ConnectionId, Observer>>,
    by_connection: HashMap<ConnectionId, HashSet<ConversationId>>,
}

/// Who observes which conversation, in this process.
#[derive(Debug)]
pub struct Observers {
    inner: Mutex<Inner>,
    /// Observed conversations, for the fast path.
    observed: AtomicUsize,
    /// Who has the observer role now.
    roles: ObserverRoles,
}

impl Observers {
    /// Nobody observes anything yet; observations last while their user is in `roles`.
    pub fn new(roles: ObserverRoles) -> Self {
        Self {
            inner: Mutex::default(),
            observed: AtomicUsize::new(0),
            roles,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts connection `id` observing `conversation`; `Err(max)` beyond the limit.
    pub fn start(
        &self,
        id: ConnectionId,
        conversation: ConversationId,
        user: UserId,
        outbox: Outbox,
        encoding: Encoding,
    ) -> Result<(), usize> {
        let mut inner = self.lock();
        let mine = inner.by_connection.entry(id).or_default();
        if !mine.contains(&conversation) && mine.len() >= MAX_OBSERVED_PER_CONNECTION {
            return Err(MAX_OBSERVED_PER_CONNECTION);
        }
        mine.insert(conversation.clone());
        inner
            .by_conversation
            .entry(conversation)
            .or_default()
            .insert(
                id,
                Observer {
                    outbox,
                    encoding,
                    user,
                },
            );
        self.observed
            .store(inner.by_conversation.len(), Ordering::Release);
        Ok(())
    }

    /// Stops connection `id` observing `conversation`.
    pub fn stop(&self, id: ConnectionId, conversation: &ConversationId) {
        let mut inner = self.lock();
        if let Some(mine) = inner.by_connection.get_mut(&id) {
            mine.remove(conversation);
            if mine.is_empty() {
                inner.by_connection.remove(&id);
            }
        }
        drop_observer(&mut inner, conversation, id);
        self.observed
            .store(inner.by_conversation.len(), Ordering::Release);
    }

    /// Forgets everything connection `id` observes (at close).
    pub fn forget(&self, id: ConnectionId) {
        let mut inner = self.lock();
        if let Some(mine) = inner.by_connection.remove(&id) {
            for c in mine {
                drop_observer(&mut inner, &c, id);
            }
        }
        self.observed
            .store(inner.by_conversation.len(), Ordering::Release);
    }

    /// Whether anything is observed at all.
    pub fn any(&self) -> bool {
        self.observed.load(Ordering::Acquire) > 0
    }

    /// The connections observing `conversation`; those whose user lost the role stop.
    pub(crate) fn of(&self, conversation: &ConversationId) -> Vec<Observer> {
        let mut inner = self.lock();
        let Some(m) = inner.by_conversation.get(conversation) else {
            return Vec::new();
        };
        let (kept, revoked): (Vec<_>, Vec<_>) = m
            .iter()
            .map(|(id, o)| (*id, o.clone()))
            .partition(|(_, o)| self.roles.contains(&o.user));
        for (id, _) in &revoked {
            if let Some(mine) = inner.by_connection.get_mut(id) {
                mine.remove(conversation);
                if mine.is_empty() {
                    inner.by_connection.remove(id);
                }
            }
            drop_observer(&mut inner, conversation, *id);
        }
        if !revoked.is_empty() {
            self.observed
                .store(inner.by_conversation.len(), Ordering::Release);
        }
        kept.into_iter().map(|(_, o)| o).collect()
    }
}

fn drop_observer(inner: &mut Inner, conversation: &ConversationId, id: ConnectionId) {
    if let Some(m) = inner.by_conversation.get_mut(conversation) {
        m.remove(&id);
        if m.is_empty() {
            inner.by_conversation.remove(conversation);
        }
    }
}

#[cfg(test)]
mod tests {
    use tern_core::{GroupId, UserId};

    use super::*;

    fn test_conn(n: u64) -> tern_core::ConnectionId {
        tern_core::ConnectionId::new(tern_core::NodeId::new(0).unwrap(), n)
    }
    use crate::outbox::outbox;

    #[test]
    fn observations_start_stop_and_end_with_the_connection() {
        let a = UserId::parse("a").unwrap();
        let roles = ObserverRoles::new([a.clone()]);
        let o = Observers::new(roles.clone());
        assert!(!o.any());
        let c1 = ConversationId::direct(&a, &a);
        let c2 = ConversationId::group(GroupId(3));
        o.start(
            test_conn(1),
            c1.clone(),
            a.clone(),
            outbox(4).0,
            Encoding::Protobuf,
        )
        .unwrap();
        o.start(
            test_conn(1),
            c2.clone(),
            a.clone(),
            outbox(4).0,
            Encoding::Json,
        )
        .unwrap();
        o.start(
            test_conn(2),
            c2.clone(),
            a.clone(),
            outbox(4).0,
            Encoding::Json,
        )
        .unwrap();
        assert!(o.any());
        assert_eq!(o.of(&c2).len(), 2);
        o.stop(test_conn(1), &c2);
        assert_eq!(o.of(&c2).len(), 1);
        o.forget(test_conn(2));
        assert!(o.of(&c2).is_empty());
        o.forget(test_conn(1));
        assert!(!o.any());
    }

    #[test]
    fn a_role_taken_away_ends_the_users_observations() {
        let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
        let roles = ObserverRoles::new([a.clone(), b.clone()]);
        let o = Observers::new(roles.clone());
        let c = ConversationId::group(GroupId(3));
        o.start(
            test_conn(1),
            c.clone(),
            a.clone(),
            outbox(4).0,
            Encoding::Json,
        )
        .unwrap();
        o.start(
            test_conn(2),
            c.clone(),
            b.clone(),
            outbox(4).0,
            Encoding::Json,
        )
        .unwrap();
        roles.set([b]);
        assert_eq!(o.of(&c).len(), 1, "a lost the role");
        roles.set([a]);
        assert_eq!(o.of(&c).len(), 0, "gone for good, and b lost it too");
        assert!(!o.any());
    }
}
