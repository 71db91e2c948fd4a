//! Message search: a user finds, newest first, the messages of the conversations they may read
//! (their one-to-one conversations, and their groups from where their view of the history
//! starts) by any part of the text the message says now: an edited message by its new text, a
//! recalled one never. Text is matched folded (NFKC, case, zero-width characters), so a
//! Chinese word of one or two characters is found like a Latin one.
//!
//! What a store indexes is decided here ([`index_change`]), from each committed message in
//! commit order; a store answers candidates ([`SearchStore`]) and this service checks each
//! against the message as it is now, so an index that lags an edit or a recall can say too
//! much but never shows it.

use std::{collections::HashMap, sync::Arc};

use crate::{
    ConversationId, MessageId, ServiceError, UserId,
    content::Content,
    ids::ConversationKind,
    store::{ConversationStore, Direction, GroupStore, HistoryStore, StoredMessage},
};

/// The longest query, in characters after folding.
pub const MAX_QUERY_CHARS: usize = 100;
/// Results per page when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 20;
/// The most results one page carries.
pub const MAX_PAGE: u32 = 100;

/// The form text is indexed and matched in.
pub fn fold(text: &str) -> String {
    crate::filter::folded(text)
}

/// The text a content can be found by, folded: a text message's text, a file's name.
pub fn text_of(content: &Content) -> Option<String> {
    match content {
        Content::Text(t) if !t.text.is_empty() => Some(fold(&t.text)),
        Content::File(f) if !f.name.is_empty() => Some(fold(&f.name)),
        _ => None,
    }
}

/// What one committed message changes in a search index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Message `id` (at `seq` of `conversation`, sent by `sender`) says `text` now.
    Put {
        /// The message found.
        id: MessageId,
        /// Its conversation.
        conversation: ConversationId,
        /// Its seq there.
        seq: u64,
        /// Its sender.
        sender: UserId,
        /// What it says, folded.
        text: String,
    },
    /// Message `id` can no longer be found (recalled, or edited into something without text).
    Remove(MessageId),
}

/// What `message`, just committed, changes in a search index: a text or a file adds itself, an
/// edit replaces its target's text, a recall removes its target. Applied in commit order.
pub fn index_change(message: &StoredMessage) -> Option<IndexChange> {
    match &message.content {
        Content::Edit(e) => {
            let target = e.message_id;
            Some(match text_of(&e.content) {
                // Only a message's sender edits it: the edit's sender is the target's.
                Some(text) => IndexChange::Put {
                    id: target,
                    conversation: message.conversation.clone(),
                    seq: e.seq,
                    sender: message.sender.clone(),
                    text,
                },
                None => IndexChange::Remove(target),
            })
        }
        Content::Recall(r) => Some(IndexChange::Remove(r.message_id)),
        _ => text_of(&message.content).map(|text| IndexChange::Put {
            id: message.id,
            conversation: message.conversation.clone(),
            seq: message.seq,
            sender: message.sender.clone(),
            text,
        }),
    }
}

/// A conversation a search looks in, and the first seq the searcher may read there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchScope {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its first readable seq.
    pub from_seq: u64,
}

/// A message a store's index says contains the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The message.
    pub id: MessageId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its seq there.
    pub seq: u64,
}

/// What a search asks a store.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Where to look; `None`: every conversation (an administrator's search).
    pub scope: Option<Vec<SearchScope>>,
    /// The folded query.
    pub query: String,
    /// Only messages of this sender.
    pub sender: Option<UserId>,
    /// Only messages with smaller ids (0: any).
    pub before: u64,
    /// At most this many.
    pub limit: u32,
}

/// A store's search index.
#[async_trait::async_trait]
pub trait SearchStore: Send + Sync + std::fmt::Debug + 'static {
    /// Messages in the request's scope whose indexed text contains its query, newest (greatest
    /// id) first. The index may still hold a text a message no longer says; it never lacks one
    /// a committed message says.
    async fn search(&self, request: SearchRequest) -> Result<Vec<Candidate>, crate::StoreError>;
}

/// A search as a front door asks for it.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// What to find.
    pub text: String,
    /// Only in this conversation.
    pub conversation: Option<String>,
    /// Only from this sender.
    pub sender: Option<String>,
    /// Only messages older than this id (the previous page's `next_before`; 0: from the newest).
    pub before: u64,
    /// At most this many (0: [`DEFAULT_PAGE`]).
    pub limit: u32,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// The messages found, newest first, as they are now.
    pub messages: Vec<StoredMessage>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next_before: Option<u64>,
}

/// Finds messages.
#[derive(Debug, Clone)]
pub struct SearchService {
    store: Arc<dyn SearchStore>,
    history: Arc<dyn HistoryStore>,
    groups: Arc<dyn GroupStore>,
    conversations: Arc<dyn ConversationStore>,
}

impl SearchService {
    /// The service over a store's index and reads.
    pub fn new(
        store: Arc<dyn SearchStore>,
        history: Arc<dyn HistoryStore>,
        groups: Arc<dyn GroupStore>,
        conversations: Arc<dyn ConversationStore>,
    ) -> Self {
        Self {
            store,
            history,
            groups,
            conversations,
        }
    }

    /// Where `user` may look: one conversation, or every one they read.
    async fn scope_of(
        &self,
        user: &UserId,
        conversation: Option<&ConversationId>,
        kind: Option<&ConversationKind>,
    ) -> Result<Vec<SearchScope>, ServiceError> {
        match (conversation, kind) {
            (Some(c), Some(ConversationKind::Direct(a, b))) => {
                if a == user || b == user {
                    Ok(vec![SearchScope {
                        conversation: c.clone(),
                        from_seq: 1,
                    }])
                } else {
                    Err(ServiceError::NotAParticipant)
                }
            }
            (Some(c), Some(ConversationKind::Group(g))) => match self.groups.group(*g, user).await?
            {
                Some((record, Some(me))) => Ok(vec![SearchScope {
                    conversation: c.clone(),
                    from_seq: record.settings.history.first_seq(me.joined_seq),
                }]),
                _ => Err(ServiceError::NotAParticipant),
            },
            (Some(_), _) => Err(ServiceError::NotAParticipant),
            (None, _) => {
                let mut scope: Vec<SearchScope> = self
                    .conversations
                    .direct_conversations(user)
                    .await?
                    .into_iter()
                    .map(|c| SearchScope {
                        conversation: c,
                        from_seq: 1,
                    })
                    .collect();
                for (record, me) in self.groups.groups_of(user).await? {
                    scope.push(SearchScope {
                        conversation: ConversationId::group(record.id),
                        from_seq: record.settings.history.first_seq(me.joined_seq),
                    });
                }
                Ok(scope)
            }
        }
    }

    /// Searches as `user` (`None`: an administrator, in every conversation).
    pub async fn search(
        &self,
        user: Option<&UserId>,
        query: SearchQuery,
    ) -> Result<SearchPage, ServiceError> {
        let text = fold(query.text.trim());
        if text.is_empty() || text.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::InvalidArgument(format!(
                "a search is 1 to {MAX_QUERY_CHARS} characters"
            )));
        }
        let parsed = query
            .conversation
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(ConversationId::parse)
            .transpose()?;
        let sender = query
            .sender
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(UserId::parse)
            .transpose()?;
        let scope = match user {
            Some(u) => Some(
                self.scope_of(
                    u,
                    parsed.as_ref().map(|p| &p.0),
                    parsed.as_ref().map(|p| &p.1),
                )
                .await?,
            ),
            None => match parsed {
                Some((c, ConversationKind::Notices(_))) => {
                    return Err(ServiceError::InvalidArgument(format!(
                        "{c} is a notice timeline, which holds no messages"
                    )));
                }
                Some((c, _)) => Some(vec![SearchScope {
                    conversation: c,
                    from_seq: 1,
                }]),
                None => None,
            },
        };
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let floors: Option<HashMap<ConversationId, u64>> = scope.as_ref().map(|s| {
            s.iter()
                .map(|s| (s.conversation.clone(), s.from_seq))
                .collect()
        });
        if scope.as_ref().is_some_and(Vec::is_empty) {
            return Ok(SearchPage {
                messages: Vec::new(),
                next_before: None,
            });
        }
        // Ids are stored as signed 64-bit numbers: anything above is "from the newest".
        let mut before = if query.before > i64::MAX as u64 {
            0
        } else {
            query.before
        };
        let mut found = Vec::new();
        // The index can hold texts messages no longer say: ask for more than a page, check each
        // against the message as it is now, and ask again until the page is full.
        let batch = (limit * 2).max(50);
        loop {
            let candidates = self
                .store
                .search(SearchRequest {
                    scope: scope.clone(),
                    query: text.clone(),
                    sender: sender.clone(),
                    before,
                    limit: batch,
                })
                .await?;
            let exhausted = candidates.len() < batch as usize;
            let last = candidates.len().saturating_sub(1);
            for (i, c) in candidates.into_iter().enumerate() {
                before = c.id.0;
                let floor = floors
                    .as_ref()
                    .map_or(Some(1), |f| f.get(&c.conversation).copied());
                if floor.is_none_or(|f| c.seq < f) {
                    continue;
                }
                if let Some(m) = self.current(&c).await?
                    && m.recalled_by.is_none()
                    && sender.as_ref().is_none_or(|s| *s == m.sender)
                    && text_of(&m.content).is_some_and(|t| t.contains(&text))
                {
                    found.push(m);
                    if found.len() == limit as usize {
                        // The last candidate of the last batch leaves nothing to page to.
                        let more = !(exhausted && i == last);
                        return Ok(SearchPage {
                            messages: found,
                            next_before: more.then_some(before),
                        });
                    }
                }
            }
            if exhausted || before <= 1 {
                return Ok(SearchPage {
                    messages: found,
                    next_before: None,
                });
            }
        }
    }

    /// The message a candidate names, as it is now (recalls and edits applied).
    async fn current(&self, c: &Candidate) -> Result<Option<StoredMessage>, ServiceError> {
        let page = self
            .history
            .history(&c.conversation, c.seq + 1, Direction::Backward, 1)
            .await?;
        Ok(page.messages.into_iter().find(|m| m.id == c.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::content;

    fn message(id: u64, body: Content) -> StoredMessage {
        StoredMessage {
            id: MessageId(id),
            conversation: ConversationId::parse("p:a:b").unwrap().0,
            seq: id,
            sender: UserId::parse("a").unwrap(),
            client_msg_id: format!("c{id}"),
            server_time_ms: 0,
            sender_inbox_seq: id,
            content: body,
            recalled_by: None,
            edited_ms: 0,
        }
    }

    fn text(t: &str) -> Content {
        Content::text(t)
    }

    #[test]
    fn texts_and_file_names_are_indexed_folded() {
        let Some(IndexChange::Put { text, id, .. }) =
            index_change(&message(1, text("Ｈｅｌｌｏ 世界")))
        else {
            panic!("a text is indexed")
        };
        assert_eq!((text.as_str(), id), ("hello 世界", MessageId(1)));
        let file = Content::File(content::File {
            name: "Report.PDF".into(),
            ..Default::default()
        });
        assert!(matches!(
            index_change(&message(2, file)),
            Some(IndexChange::Put { text, .. }) if text == "report.pdf"
        ));
        let custom = Content::Custom(content::Custom::default());
        assert_eq!(index_change(&message(3, custom)), None);
    }

    #[test]
    fn an_edit_replaces_its_targets_text_and_a_recall_removes_it() {
        let edit = Content::Edit(content::Edit {
            message_id: MessageId(1),
            seq: 1,
            content: Box::new(text("NEW words")),
        });
        assert!(matches!(
            index_change(&message(5, edit)),
            Some(IndexChange::Put { id: MessageId(1), seq: 1, text, .. }) if text == "new words"
        ));
        let recall = Content::Recall(content::Recall {
            message_id: MessageId(1),
            seq: 1,
        });
        assert_eq!(
            index_change(&message(6, recall)),
            Some(IndexChange::Remove(MessageId(1)))
        );
    }
}
