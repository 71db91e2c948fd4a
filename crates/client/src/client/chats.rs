//! Requests about conversations: groups, typing, read marks, recall and edit, the list, history.

use super::*;

impl Client {
    /// Creates a group owned by this user with `members`; returns it (its id is `group_id`).
    /// Retried like sends, with one request id, so a retry after a lost answer finds the group
    /// the first attempt created instead of creating another.
    pub async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<pb::GroupInfo, ClientError> {
        let resp = self
            .request(pb::GroupCreateRequest {
                name: name.to_owned(),
                members: members.iter().map(|m| m.to_string()).collect(),
                client_request_id: new_client_msg_id(),
                ..Default::default()
            })
            .await?;
        resp.group
            .ok_or_else(|| ClientError::Protocol("GROUP_CREATE answered without a group".into()))
    }

    /// Applies one change to a group. Not retried: a change that was applied before the
    /// connection dropped would be refused (or do nothing) the second time.
    pub async fn update_group(
        &self,
        group: u64,
        change: pb::group_update_request::Change,
    ) -> Result<pb::GroupUpdateResponse, ClientError> {
        self.connection()
            .await?
            .request(pb::GroupUpdateRequest {
                group_id: group,
                change: Some(change),
            })
            .await
    }

    /// Every group of this user, with each timeline's head.
    pub async fn groups(&self) -> Result<Vec<pb::GroupInfo>, ClientError> {
        Ok(self.request(pb::GroupListRequest {}).await?.groups)
    }

    /// Tells `to`'s online devices that this user is typing to them (rate-limited by the
    /// server: `RATE_LIMITED` when sent too often; not retried).
    pub async fn typing(&self, to: &str) -> Result<(), ClientError> {
        let conn = self.connection().await?;
        conn.request(pb::TypingRequest {
            to_user: to.to_owned(),
        })
        .await
        .map(|_| ())
    }

    /// Marks a conversation read up to `seq` (0: everything) on every device of this user.
    /// Retried like sends: a read mark only moves forward, so repeating it is harmless.
    pub async fn mark_read(
        &self,
        conversation: &Conversation,
        seq: u64,
    ) -> Result<pb::ReadResponse, ClientError> {
        let target = match conversation {
            Conversation::Peer(p) => pb::read_request::Target::Peer(p.clone()),
            Conversation::Group(g) => pb::read_request::Target::GroupId(*g),
        };
        self.request(pb::ReadRequest {
            target: Some(target),
            seq,
        })
        .await
    }

    /// Recalls a message. Retried like sends: recalling a recalled message records nothing.
    pub async fn recall(&self, message_id: u64) -> Result<pb::RecallResponse, ClientError> {
        self.request(pb::RecallRequest { message_id }).await
    }

    /// Replaces a message's text. Retried like sends: an edit to the same content records
    /// nothing.
    pub async fn edit_text(
        &self,
        message_id: u64,
        text: &str,
    ) -> Result<pb::EditResponse, ClientError> {
        self.request(pb::EditRequest {
            message_id,
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: text.to_owned(),
                })),
            }),
        })
        .await
    }

    /// The conversation list: all of it with `since_version` 0, else the changes since an
    /// earlier response's version (see [`crate::ConversationList`], which merges them).
    pub async fn conversations(
        &self,
        since_version: u64,
    ) -> Result<pb::ConversationListResponse, ClientError> {
        self.request(pb::ConversationListRequest { since_version })
            .await
    }

    /// Pins or mutes a conversation (`None` keeps a flag) on every device of this user.
    pub async fn set_conversation_flags(
        &self,
        conversation_id: &str,
        pinned: Option<bool>,
        muted: Option<bool>,
    ) -> Result<pb::Conversation, ClientError> {
        self.request(pb::ConversationUpdateRequest {
            conversation_id: conversation_id.to_owned(),
            pinned,
            muted,
        })
        .await?
        .conversation
        .ok_or_else(|| ClientError::Protocol("CONVERSATION_UPDATE answered without one".into()))
    }

    /// A page of a conversation.
    pub async fn history(&self, query: &HistoryQuery) -> Result<pb::HistoryResponse, ClientError> {
        let req = pb::HistoryRequest {
            target: Some(query.conversation.history_target()),
            anchor_seq: query.anchor_seq,
            direction: query.direction as i32,
            limit: query.limit,
        };
        self.with_retry(|conn| {
            let req = req.clone();
            async move { conn.request(req).await }
        })
        .await
    }

    /// Messages this user may read whose text contains `req.query`, newest first: a page of
    /// them, and the `before` of the next (see MESSAGE_SEARCH in the protocol).
    pub async fn search_messages(
        &self,
        req: pb::MessageSearchRequest,
    ) -> Result<pb::MessageSearchResponse, ClientError> {
        self.with_retry(|conn| {
            let req = req.clone();
            async move { conn.request(req).await }
        })
        .await
    }

    /// The whole conversation with `peer`, oldest first, fetched page by page.
    pub async fn full_history(&self, peer: &str) -> Result<Vec<pb::Message>, ClientError> {
        self.whole(Conversation::Peer(peer.to_owned())).await
    }

    /// A whole conversation (what this user may read of it), oldest first, page by page.
    pub async fn whole(&self, conversation: Conversation) -> Result<Vec<pb::Message>, ClientError> {
        let mut out = Vec::new();
        let mut anchor = 0;
        loop {
            let page = self
                .history(&HistoryQuery {
                    conversation: conversation.clone(),
                    anchor_seq: anchor,
                    direction: pb::Direction::Forward,
                    limit: 500,
                })
                .await?;
            anchor = page.messages.last().map_or(anchor, |m| m.seq);
            out.extend(page.messages);
            if !page.has_more {
                return Ok(out);
            }
        }
    }
}
