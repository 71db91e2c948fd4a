//! Sync: each user's inbox, served from a bounded in-memory ring when the cursor is recent and
//! from the store when it is not, and the hand-off of new entries to online devices.
//!
//! Every entry reaches the ring and the devices through [`SyncService::record`] and [`SyncService::deliver`], which the
//! message pipeline calls once per committed batch, in commit order. So a ring is always a
//! contiguous, gapless tail of its user's inbox, and pushes leave in seq order.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use lru::LruCache;

use crate::{
    ServiceError,
    groups::Members,
    ids::{ConnectionId, ConversationId, DeviceId, UserId},
    store::{InboxEntry, InboxEvent, InboxPage, InboxStore, StoredMessage},
};

/// The fan-out stage: hands new inbox entries to a user's online connections.
///
/// Implementations must not block or await: they queue the entry on each connection and
/// return. A connection that cannot keep up is told to sync instead (nothing is lost, since
/// the entry is already stored).
pub trait Delivery: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `entry` for every online connection of `user` except `skip`.
    fn deliver(&self, user: &UserId, entry: &Arc<InboxEntry>, skip: Option<ConnectionId>);

    /// Queues a read-diffusion group message for every online connection of every user in
    /// `members`, except the users in `except` (sorted; they got an inbox entry for it) and the
    /// connection `skip`.
    fn deliver_group(
        &self,
        message: &Arc<StoredMessage>,
        members: &Members,
        except: &[UserId],
        skip: Option<ConnectionId>,
    );

    /// Tells every online connection of `to` that `from` is typing in `conversation`. Never
    /// stored: a connection that cannot take it now simply misses it.
    fn typing(&self, to: &UserId, from: &UserId, conversation: &ConversationId);

    /// Whether any connection observes any conversation (when not, `observe` is skipped).
    fn observing(&self) -> bool;

    /// Queues a newly stored message for the connections observing its conversation.
    fn observe(&self, message: &Arc<StoredMessage>);

    /// Tells every connection of this process to sync: pushes meant for them may have been
    /// lost (a cluster's bus was interrupted).
    fn resync(&self);

    /// `user`'s `device` logged in on another node as `connection`: closes the connections
    /// here that the login replaces, as a login here would.
    fn replaced_elsewhere(
        &self,
        user: &UserId,
        device: &DeviceId,
        platform: crate::ids::Platform,
        connection: ConnectionId,
    );

    /// Closes every connection here of `user`'s `device` (every device: `None`), telling it
    /// why with a kick.
    fn kick(&self, user: &UserId, device: Option<&DeviceId>, cause: KickCause);
}

/// Why an administrator's action disconnects a user's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickCause {
    /// The device's tokens were revoked: it must log in again.
    LoggedOut,
    /// The account was disabled.
    Disabled,
}

/// Something a committed batch makes visible, in commit order.
#[derive(Debug, Clone)]
pub enum Publication {
    /// An inbox entry of `user`; `skip` is the connection it came from, which has it already.
    Entry {
        /// Whose inbox.
        user: UserId,
        /// The entry.
        entry: Arc<InboxEntry>,
        /// The connection not to push it to.
        skip: Option<ConnectionId>,
    },
    /// A read-diffusion group message, pushed to the members online.
    Group {
        /// The message.
        message: Arc<StoredMessage>,
        /// The members when it took its seq.
        members: Arc<Members>,
        /// Members that got an inbox entry for it instead, sorted.
        except: Vec<UserId>,
        /// The connection not to push it to.
        skip: Option<ConnectionId>,
    },
}

/// Settings of the sync service.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Entries kept in memory per user.
    pub ring_capacity: usize,
    /// Users whose rings are kept; the least recently written ring is dropped beyond this.
    pub max_rings: usize,
    /// Entries kept across all rings: the least recently written rings are dropped beyond
    /// this, so the memory the rings hold is bounded by traffic, not by how many users are
    /// active.
    pub ring_entries: usize,
    /// Entries per SYNC response when the client asks for 0.
    pub default_limit: u32,
    /// The most entries one SYNC response carries.
    pub max_limit: u32,
    /// Other processes commit to the same store (a cluster): a ring holds only this process's
    /// commits, so it answers only when the store's head says it is complete.
    pub shared_store: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 256,
            max_rings: 100_000,
            ring_entries: 65_536,
            default_limit: 200,
            max_limit: 1000,
            shared_store: false,
        }
    }
}

/// A page of sync results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncPage {
    /// Contiguous entries from `after + 1`, in seq order.
    pub entries: Vec<Arc<InboxEntry>>,
    /// Entries after the last one returned exist.
    pub has_more: bool,
    /// The user's newest inbox seq when the page was built.
    pub head: u64,
}

/// The newest entries of one user's inbox, contiguous.
#[derive(Debug)]
struct Ring {
    entries: std::collections::VecDeque<Arc<InboxEntry>>,
}

impl Ring {
    /// Shows the ring's copies of message `target` (and, after a recall, of its edits) as
    /// `event` leaves them, so that a sync served from memory shows what one served from the
    /// store shows. Entries are shared, so the changed ones are replaced, not mutated.
    fn amend(&mut self, target: crate::ids::MessageId, event: &StoredMessage) {
        let recall = matches!(event.content, crate::content::Content::Recall(_));
        for slot in self.entries.iter_mut() {
            let InboxEvent::Message(m) = &slot.event;
            let mut changed = (**m).clone();
            if m.id == target {
                crate::conversations::apply_amendment(&mut changed, event);
            } else if recall && crate::conversations::amendment_target(m) == Some(target) {
                crate::conversations::withdraw_edit(&mut changed);
            } else {
                continue;
            }
            *slot = Arc::new(InboxEntry {
                seq: slot.seq,
                event: InboxEvent::Message(Arc::new(changed)),
            });
        }
    }

    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    fn last(&self) -> Option<u64> {
        self.entries.back().map(|e| e.seq)
    }

    /// The entries after `after`, if the ring alone can answer (it holds `after + 1`, or
    /// `after` is at or past its end).
    fn read(&self, after: u64, limit: usize) -> Option<SyncPage> {
        let (first, last) = (self.first()?, self.last()?);
        if after + 1 < first {
            return None;
        }
        let skip = (after + 1 - first) as usize;
        let entries: Vec<_> = self
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let has_more = entries.last().is_some_and(|e| e.seq < last);
        Some(SyncPage {
            entries,
            has_more,
            head: last,
        })
    }
}

/// Serves inboxes and publishes new entries.
#[derive(Debug)]
pub struct SyncService {
    store: Arc<dyn InboxStore>,
    bus: Arc<dyn crate::bus::Bus>,
    config: SyncConfig,
    /// Lock held only for in-memory work, never across `.await`.
    rings: Mutex<Rings>,
}

/// Every user's ring, least recently written first, and how many entries they hold together.
#[derive(Debug)]
struct Rings {
    by_user: LruCache<UserId, Ring>,
    entries: usize,
}

impl Rings {
    fn new(max_rings: usize) -> Self {
        let max_rings = NonZeroUsize::new(max_rings.max(1)).unwrap_or(NonZeroUsize::MIN);
        Rings {
            by_user: LruCache::new(max_rings),
            entries: 0,
        }
    }

    /// Appends a committed entry to `user`'s ring.
    fn push(&mut self, user: &UserId, entry: &Arc<InboxEntry>, config: &SyncConfig) {
        if !self.by_user.contains(user) {
            let empty = Ring {
                entries: std::collections::VecDeque::new(),
            };
            // Beyond `max_rings` the least recently written ring makes room.
            if let Some((_, dropped)) = self.by_user.push(user.clone(), empty) {
                self.entries -= dropped.entries.len();
            }
        }
        let Some(ring) = self.by_user.get_mut(user) else {
            return;
        };
        match ring.last() {
            Some(last) if entry.seq != last + 1 => {
                // With one writer this cannot happen; in a cluster it does whenever another
                // node wrote to the inbox in between. Either way the ring restarts at this
                // entry and older cursors fall back to the store.
                if config.shared_store {
                    tracing::debug!(user = %user, last, seq = entry.seq, "inbox ring restarts after other nodes' entries");
                } else {
                    tracing::warn!(user = %user, last, seq = entry.seq, "inbox ring out of sequence; resetting it");
                }
                self.entries -= ring.entries.len();
                ring.entries.clear();
            }
            _ => {}
        }
        let InboxEvent::Message(m) = &entry.event;
        if let Some(target) = crate::conversations::amendment_target(m) {
            ring.amend(target, m);
        }
        if ring.entries.len() == config.ring_capacity.max(1) {
            ring.entries.pop_front();
            self.entries -= 1;
        }
        ring.entries.push_back(entry.clone());
        self.entries += 1;
    }

    /// Drops the least recently written rings until at most `budget` entries remain. The ring
    /// written last stays whatever the budget; a dropped ring's readers go to the store.
    fn trim(&mut self, budget: usize) {
        while self.entries > budget && self.by_user.len() > 1 {
            match self.by_user.pop_lru() {
                Some((_, dropped)) => self.entries -= dropped.entries.len(),
                None => break,
            }
        }
    }
}

impl SyncService {
    /// A service over `store`, publishing new entries on `bus`.
    pub fn new(
        store: Arc<dyn InboxStore>,
        bus: Arc<dyn crate::bus::Bus>,
        config: SyncConfig,
    ) -> Self {
        Self {
            store,
            bus,
            rings: Mutex::new(Rings::new(config.max_rings)),
            config,
        }
    }

    /// Appends committed entries to their users' rings, so that every read from now on sees
    /// them. Called by the message pipeline only, once per committed batch, in commit order,
    /// before the senders are acked.
    pub fn record(&self, published: &[Publication]) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        for p in published {
            if let Publication::Entry { user, entry, .. } = p {
                rings.push(user, entry, &self.config);
            }
        }
        rings.trim(self.config.ring_entries);
    }

    /// Publishes recorded entries on the bus, for the online devices of their users wherever
    /// they are connected. Called after the acks, in commit order.
    pub fn deliver(&self, published: &[Publication]) {
        self.bus.publish(published);
    }

    /// The entries of `user`'s inbox after `after`, at most `limit` (0: the default).
    pub async fn sync(
        &self,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<SyncPage, ServiceError> {
        let limit = self.clamp_limit(limit);
        // In a cluster the ring may lack what other nodes committed; the store's head, read
        // first, says whether it does (every ring entry is committed, so a ring at or past that
        // head is complete up to it).
        let complete_to = if self.config.shared_store {
            Some(self.store.inbox_head(user).await?)
        } else {
            None
        };
        let from_ring = {
            let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
            rings
                .by_user
                .peek(user)
                .filter(|r| complete_to.is_none_or(|head| r.last().is_some_and(|l| l >= head)))
                .and_then(|r| r.read(after, limit as usize))
        };
        if let Some(page) = from_ring {
            metrics::counter!("tern_sync_reads_total", "source" => "ring").increment(1);
            return Ok(page);
        }
        metrics::counter!("tern_sync_reads_total", "source" => "store").increment(1);
        // One extra row tells whether more remain without a second query.
        let InboxPage { mut entries, head } = self.store.read_inbox(user, after, limit + 1).await?;
        let has_more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        Ok(SyncPage {
            entries: entries.into_iter().map(Arc::new).collect(),
            has_more,
            head,
        })
    }

    /// The newest seq of `user`'s inbox.
    pub async fn head(&self, user: &UserId) -> Result<u64, ServiceError> {
        if self.config.shared_store {
            return Ok(self.store.inbox_head(user).await?);
        }
        let cached = {
            let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
            rings.by_user.peek(user).and_then(Ring::last)
        };
        match cached {
            Some(head) => Ok(head),
            None => Ok(self.store.inbox_head(user).await?),
        }
    }

    /// Records that `device` has every entry up to `seq`; returns the stored cursor, which never
    /// moves backwards.
    pub async fn ack_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        seq: u64,
    ) -> Result<u64, ServiceError> {
        let head = self.head(user).await?;
        if seq > head {
            return Err(ServiceError::InvalidArgument(format!(
                "cursor {seq} is past the inbox head {head}"
            )));
        }
        Ok(self.store.save_cursor(user, device, seq).await?)
    }

    /// The device's stored cursor.
    pub async fn cursor(&self, user: &UserId, device: &DeviceId) -> Result<u64, ServiceError> {
        Ok(self.store.load_cursor(user, device).await?)
    }

    fn clamp_limit(&self, limit: u32) -> u32 {
        let limit = if limit == 0 {
            self.config.default_limit
        } else {
            limit
        };
        limit.clamp(1, self.config.max_limit.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        content::{self, Content},
        ids::{ConversationId, MessageId},
        store::{InboxEvent, StoredMessage},
    };

    fn entry(seq: u64) -> Arc<InboxEntry> {
        let a = UserId::parse("a").unwrap();
        Arc::new(InboxEntry {
            seq,
            event: InboxEvent::Message(Arc::new(StoredMessage {
                id: MessageId(seq),
                conversation: ConversationId::direct(&a, &a),
                seq,
                sender: a,
                client_msg_id: seq.to_string(),
                server_time_ms: 0,
                sender_inbox_seq: seq,
                content: Content::Empty,
                recalled_by: None,
                edited_ms: 0,
            })),
        })
    }

    fn ring(seqs: std::ops::RangeInclusive<u64>) -> Ring {
        Ring {
            entries: seqs.map(entry).collect(),
        }
    }

    #[test]
    fn rings_hold_at_most_their_entry_budget_dropping_the_least_recently_written() {
        let config = SyncConfig {
            ring_capacity: 4,
            max_rings: 3,
            ring_entries: 6,
            ..SyncConfig::default()
        };
        let user = |n: &str| UserId::parse(n).unwrap();
        let mut rings = Rings::new(config.max_rings);
        let count = |r: &Rings| {
            r.by_user
                .iter()
                .map(|(_, r)| r.entries.len())
                .sum::<usize>()
        };
        // Six entries for a (the per-user capacity keeps four), then three for b.
        for seq in 1..=6 {
            rings.push(&user("a"), &entry(seq), &config);
        }
        for seq in 1..=3 {
            rings.push(&user("b"), &entry(seq), &config);
        }
        assert_eq!((rings.entries, count(&rings)), (7, 7));
        rings.trim(config.ring_entries);
        assert!(
            rings.by_user.peek(&user("a")).is_none(),
            "a was written least recently"
        );
        assert_eq!((rings.entries, count(&rings)), (3, 3));
        // A fourth user beyond `max_rings` pushes out the oldest ring, and the count follows.
        for name in ["c", "d", "e"] {
            rings.push(&user(name), &entry(1), &config);
        }
        assert!(rings.by_user.peek(&user("b")).is_none());
        assert_eq!((rings.entries, count(&rings)), (3, 3));
        // An out-of-sequence entry restarts its ring; a budget below one ring keeps the newest.
        rings.push(&user("e"), &entry(9), &config);
        assert_eq!((rings.entries, count(&rings)), (3, 3));
        rings.trim(0);
        assert_eq!(rings.by_user.len(), 1);
        assert_eq!(rings.by_user.peek(&user("e")).and_then(Ring::last), Some(9));
        assert_eq!((rings.entries, count(&rings)), (1, 1));
    }

    #[test]
    fn a_ring_answers_only_cursors_it_covers() {
        let r = ring(10..=20);
        assert!(r.read(8, 100).is_none(), "seq 9 is not in the ring");
        let page = r.read(9, 100).unwrap();
        assert_eq!(page.entries.len(), 11);
        assert_eq!(page.head, 20);
        assert!(!page.has_more);
        let page = r.read(12, 3).unwrap();
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![13, 14, 15]
        );
        assert!(page.has_more);
        let page = r.read(20, 3).unwrap();
        assert!(page.entries.is_empty() && !page.has_more && page.head == 20);
    }

    #[test]
    fn a_recall_in_the_ring_withdraws_the_message_and_its_edits() {
        let mut r = ring(1..=3);
        let a = UserId::parse("a").unwrap();
        let event = |seq: u64, body| StoredMessage {
            id: MessageId(100 + seq),
            conversation: ConversationId::direct(&a, &a),
            seq,
            sender: a.clone(),
            client_msg_id: String::new(),
            server_time_ms: 5,
            sender_inbox_seq: 0,
            content: body,
            recalled_by: None,
            edited_ms: 0,
        };
        let edit = event(
            4,
            Content::Edit(content::Edit {
                message_id: MessageId(2),
                seq: 2,
                content: Box::new(Content::text("new")),
            }),
        );
        r.amend(MessageId(2), &edit);
        r.entries.push_back(Arc::new(InboxEntry {
            seq: 4,
            event: InboxEvent::Message(Arc::new(edit)),
        }));
        let InboxEvent::Message(m) = &r.entries[1].event;
        assert_eq!(m.edited_ms, 5);
        let recall = event(
            5,
            Content::Recall(content::Recall {
                message_id: MessageId(2),
                seq: 2,
            }),
        );
        r.amend(MessageId(2), &recall);
        let InboxEvent::Message(m) = &r.entries[1].event;
        assert_eq!(m.recalled_by, Some(a.clone()));
        let InboxEvent::Message(e) = &r.entries[3].event;
        assert!(matches!(&e.content, Content::Edit(e) if *e.content == Content::Empty));
        let InboxEvent::Message(other) = &r.entries[0].event;
        assert!(other.recalled_by.is_none(), "other messages are untouched");
    }
}
