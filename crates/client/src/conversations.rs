//! The conversation list as a device keeps it: the whole list once, then only changes.

use std::collections::HashMap;

use tern_proto::pb;

/// A user's conversation list, merged from CONVERSATION_LIST responses.
///
/// Pass [`ConversationList::version`] to [`crate::Client::conversations`] and the answer to
/// [`ConversationList::apply`]: a full answer replaces the list, a partial one updates the
/// conversations it names. Counts and marks are the server's, so every device shows the same.
#[derive(Debug, Clone, Default)]
pub struct ConversationList {
    by_id: HashMap<String, pb::Conversation>,
    version: u64,
}

impl ConversationList {
    /// An empty list (its first request fetches everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The version to ask for changes from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Merges a response. A partial answer names every group the user is in now, so a group it
    /// does not name is one the user left.
    pub fn apply(&mut self, response: pb::ConversationListResponse) {
        if response.full {
            self.by_id.clear();
        } else {
            self.by_id.retain(|id, _| !id.starts_with("g:"));
        }
        for c in response.conversations {
            self.by_id.insert(c.conversation_id.clone(), c);
        }
        self.version = response.version;
    }

    /// One conversation.
    pub fn get(&self, conversation_id: &str) -> Option<&pb::Conversation> {
        self.by_id.get(conversation_id)
    }

    /// Every conversation: pinned first, then newest last message first.
    pub fn sorted(&self) -> Vec<&pb::Conversation> {
        let mut all: Vec<&pb::Conversation> = self.by_id.values().collect();
        let time = |c: &pb::Conversation| c.last_message.as_ref().map_or(0, |m| m.server_time_ms);
        all.sort_by(|a, b| {
            b.pinned
                .cmp(&a.pinned)
                .then_with(|| time(b).cmp(&time(a)))
                .then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        all
    }

    /// How many conversations the list holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Unread messages over every conversation that is not muted.
    pub fn total_unread(&self) -> u64 {
        self.by_id
            .values()
            .filter(|c| !c.muted)
            .map(|c| u64::from(c.unread))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(id: &str, unread: u32, muted: bool) -> pb::Conversation {
        pb::Conversation {
            conversation_id: id.into(),
            unread,
            muted,
            ..Default::default()
        }
    }

    #[test]
    fn changes_update_and_a_full_answer_replaces() {
        let mut list = ConversationList::new();
        list.apply(pb::ConversationListResponse {
            conversations: vec![conv("p:a:b", 3, false), conv("p:a:c", 2, true)],
            version: 5,
            full: true,
        });
        assert_eq!((list.len(), list.total_unread(), list.version()), (2, 3, 5));
        list.apply(pb::ConversationListResponse {
            conversations: vec![conv("p:a:b", 0, false), conv("g:2", 1, false)],
            version: 7,
            full: false,
        });
        assert_eq!((list.len(), list.total_unread(), list.version()), (3, 1, 7));
        // A partial answer without g:2: the user left it.
        list.apply(pb::ConversationListResponse {
            conversations: vec![],
            version: 8,
            full: false,
        });
        assert_eq!((list.len(), list.total_unread()), (2, 0));
        list.apply(pb::ConversationListResponse {
            conversations: vec![conv("g:1", 4, false)],
            version: 9,
            full: true,
        });
        assert_eq!((list.len(), list.total_unread()), (1, 4));
        assert!(list.get("p:a:b").is_none());
    }
}
