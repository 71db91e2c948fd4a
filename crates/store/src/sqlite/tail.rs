//! The unindexed tail: messages committed to the append-only tables but not yet copied into
//! the keyed indexes, held in memory so that reads and deduplication see them.
//!
//! Commits only append (`messages`, `inbox_log`), which writes a handful of shared pages per
//! batch. The keyed indexes (`conversation_index`, `dedupe_index`, `inbox`) are written by the
//! indexer in large batches, so each hot index page is rewritten once per indexing batch instead
//! of once per message. Between the two, this tail answers for the newest messages.
//!
//! The watermark splits the two worlds: every message with `id <= watermark` is in the indexes,
//! every message above it is here. A reader takes its slice of the tail and the watermark under
//! the lock, then reads the indexes filtered to `id <= watermark`, so it sees every entry exactly
//! once whether or not the indexer runs in between.

use std::{collections::BTreeMap, sync::Arc};

use rustc_hash::FxHashMap;
use tern_core::{ConversationId, UserId, store::StoredMessage};

/// One inbox entry of the tail.
#[derive(Debug, Clone)]
pub(crate) struct TailEntry {
    pub(crate) seq: u64,
    pub(crate) message: Arc<StoredMessage>,
    /// Its row in `inbox_log`, deleted once the entry is indexed.
    pub(crate) log_id: u64,
}

/// The unindexed messages and the inbox entries that point at them.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Every message with a greater id is in this tail; every other one is indexed.
    pub(crate) watermark: u64,
    /// Unindexed messages by id.
    pub(crate) messages: BTreeMap<u64, Arc<StoredMessage>>,
    /// Per conversation, its unindexed messages in seq order.
    pub(crate) conversations: FxHashMap<ConversationId, Vec<Arc<StoredMessage>>>,
    /// Per user, the unindexed inbox entries in seq order.
    pub(crate) inboxes: FxHashMap<UserId, Vec<TailEntry>>,
    /// `(sender, client_msg_id)` of unindexed messages.
    pub(crate) dedupe: FxHashMap<(UserId, String), Arc<StoredMessage>>,
    /// Per sender with messages in `dedupe`, the greatest client message id pushed.
    pub(crate) senders: FxHashMap<UserId, SenderIds>,
}

/// A sender's client message ids in the tail, as the writer's dedupe bound needs them.
#[derive(Debug)]
pub(crate) struct SenderIds {
    /// The message with the greatest client message id pushed while the sender had messages
    /// here. It may have left the tail since: an upper bound is all the writer needs.
    greatest: Arc<StoredMessage>,
    /// How many of the sender's messages are in `dedupe`; the entry goes at zero.
    count: usize,
}

impl Tail {
    /// Adds a committed message (messages arrive in id order).
    pub(crate) fn push_message(&mut self, message: Arc<StoredMessage>) {
        self.conversations
            .entry(message.conversation.clone())
            .or_default()
            .push(message.clone());
        if !message.client_msg_id.is_empty() {
            let replaced = self.dedupe.insert(
                (message.sender.clone(), message.client_msg_id.clone()),
                message.clone(),
            );
            match self.senders.get_mut(&message.sender) {
                Some(ids) => {
                    if replaced.is_none() {
                        ids.count += 1;
                    }
                    if message.client_msg_id > ids.greatest.client_msg_id {
                        ids.greatest = message.clone();
                    }
                }
                None => {
                    self.senders.insert(
                        message.sender.clone(),
                        SenderIds {
                            greatest: message.clone(),
                            count: 1,
                        },
                    );
                }
            }
        }
        self.messages.insert(message.id.0, message);
    }

    /// Adds a committed inbox entry (entries of one user arrive in seq order).
    pub(crate) fn push_entry(&mut self, user: &UserId, entry: TailEntry) {
        self.inboxes.entry(user.clone()).or_default().push(entry);
    }

    /// Number of unindexed messages.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The id of the newest message in the tail.
    pub(crate) fn newest_id(&self) -> Option<u64> {
        self.messages.last_key_value().map(|(id, _)| *id)
    }

    /// Forgets everything up to `upto`, which the indexes now hold, and moves the watermark.
    /// Returns the forgotten messages, for the caller to drop once it has released the lock.
    ///
    /// Writers wait on this lock for every message, so this allocates nothing and visits each
    /// pending entry once.
    pub(crate) fn indexed_upto(&mut self, upto: u64) -> BTreeMap<u64, Arc<StoredMessage>> {
        let keep = self.messages.split_off(&(upto + 1));
        let gone = std::mem::replace(&mut self.messages, keep);
        let senders = &mut self.senders;
        self.dedupe.retain(|(sender, _), m| {
            let keep = m.id.0 > upto;
            if !keep {
                let last = senders.get_mut(sender).is_some_and(|ids| {
                    ids.count -= 1;
                    ids.count == 0
                });
                if last {
                    senders.remove(sender);
                }
            }
            keep
        });
        // Within each list the oldest come first, so the indexed ones are a prefix.
        self.conversations.retain(|_, v| {
            let n = v.partition_point(|x| x.id.0 <= upto);
            v.drain(..n);
            !v.is_empty()
        });
        self.inboxes.retain(|_, entries| {
            let n = entries.partition_point(|e| e.message.id.0 <= upto);
            entries.drain(..n);
            !entries.is_empty()
        });
        self.watermark = self.watermark.max(upto);
        gone
    }

    /// An upper bound of the client message ids of `sender`'s messages in the tail: at least
    /// the greatest of them (`None` when it has none here).
    pub(crate) fn client_msg_id_bound(&self, sender: &UserId) -> Option<&str> {
        self.senders
            .get(sender)
            .map(|ids| ids.greatest.client_msg_id.as_str())
    }

    /// The newest inbox seq of `user` in the tail.
    pub(crate) fn inbox_head(&self, user: &UserId) -> Option<u64> {
        self.inboxes.get(user).and_then(|v| v.last()).map(|e| e.seq)
    }

    /// The newest seq of `conversation` in the tail.
    pub(crate) fn conversation_head(&self, conversation: &ConversationId) -> Option<u64> {
        self.conversations
            .get(conversation)
            .and_then(|v| v.last())
            .map(|m| m.seq)
    }
}
