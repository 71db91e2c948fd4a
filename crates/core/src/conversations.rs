//! Conversations as each user sees them: read marks, recall and edit, list flags, and the
//! conversation list with server-side unread counts.
//!
//! Every change here is a write of the message pipeline that records an ordinary timeline entry:
//! a recall or an edit is an event in the message's own conversation, and a read mark or a flag
//! change is a notice in the user's notice timeline (`u:{user}`). Those entries travel the
//! inbox like messages, so every device of the user (and, for a read receipt, the peer) learns
//! them in order, online by push and offline by sync, and cursors, retries and crash recovery
//! need nothing new. The store keeps the resulting state (read marks, flags, amendments) keyed,
//! and unread counts are computed from it when the list is read, so no device can drift.

use std::{sync::Arc, time::Duration};

use crate::{
    Refusal, ServiceError,
    content::{self, Content},
    groups::{GroupState, HistoryVisibility, Role},
    ids::{ConversationId, ConversationKind, GroupId, MessageId, UserId},
    messages::{Applied, MessageService, validate_content},
    store::{
        Amend, Amendment, ConversationStore, ConversationSummary, GroupStore, InboxEvent,
        InboxStore, MarkRead, SetFlags, StoredMessage, SummaryQuery, Write,
    },
};

/// Settings of the conversation service.
#[derive(Debug, Clone)]
pub struct ConversationConfig {
    /// How long after sending a message its sender (or a group admin) may recall it.
    pub recall_window: Duration,
    /// How long after sending a message its sender may edit it.
    pub edit_window: Duration,
    /// The most inbox entries a CONVERSATION_LIST scans for changes; beyond it, the whole list
    /// is sent instead.
    pub max_changes_scanned: u32,
    /// The largest edited content, measured as its protobuf encoding.
    pub max_content_bytes: usize,
    /// Users with the observer role: they may observe any conversation's live messages.
    pub observers: ObserverRoles,
    /// The sensitive-word filter edits pass (the one sends pass).
    pub filter: crate::filter::ContentFilter,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            recall_window: Duration::from_secs(120),
            edit_window: Duration::from_secs(15 * 60),
            max_changes_scanned: 2000,
            max_content_bytes: 32 * 1024,
            observers: ObserverRoles::default(),
            filter: crate::filter::ContentFilter::default(),
        }
    }
}

/// Who has the observer role now: those the configuration names and those granted through the
/// API, shared by every service that asks and replaced whole when a grant changes.
#[derive(Debug, Clone, Default)]
pub struct ObserverRoles(Arc<std::sync::RwLock<Arc<std::collections::HashSet<UserId>>>>);

impl ObserverRoles {
    /// Roles for `users`.
    pub fn new(users: impl IntoIterator<Item = UserId>) -> ObserverRoles {
        let roles = ObserverRoles::default();
        roles.set(users);
        roles
    }

    /// Replaces who has the role.
    pub fn set(&self, users: impl IntoIterator<Item = UserId>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users.into_iter().collect());
    }

    /// Whether `user` has the role.
    pub fn contains(&self, user: &UserId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(user)
    }
}

/// Which conversation a request names, unvalidated.
#[derive(Debug, Clone)]
pub enum ConversationTarget {
    /// The one-to-one conversation with this user.
    Peer(String),
    /// A conversation id.
    Id(String),
    /// A group's timeline.
    Group(u64),
}

/// One user's standing in one conversation, as a read-mark or flag decision needs it; loaded by
/// the backend in the writer's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationStanding {
    /// The user takes part in the conversation (a side of a one-to-one conversation, or a
    /// current member of a group).
    pub participant: bool,
    /// The conversation's newest seq.
    pub head: u64,
    /// The user's read mark.
    pub read_seq: u64,
    /// Pinned by the user.
    pub pinned: bool,
    /// Muted by the user.
    pub muted: bool,
    /// For a one-to-one conversation: the other user, unless either blocks the other (no
    /// receipt crosses a block, either way).
    pub receipt_to: Option<UserId>,
}

/// What raising a read mark does.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkDecision {
    /// The mark is already there or past it: nothing is recorded.
    Unchanged {
        /// The mark as it stays.
        mark: u64,
    },
    /// The mark moves: a `ReadMark` notice in the reader's notice timeline, for the reader's
    /// devices and, as a receipt, the peer of a one-to-one conversation.
    Raise {
        /// The new mark.
        mark: u64,
        /// The notice.
        notice: Content,
        /// Who gets the receipt.
        receipt_to: Option<UserId>,
    },
}

/// Decides a read mark: `seq` 0 means the head, a seq past the head is the head, and a mark
/// never goes back.
pub fn decide_mark_read(
    conversation: &ConversationId,
    seq: u64,
    standing: &ConversationStanding,
) -> Result<MarkDecision, Refusal> {
    if !standing.participant {
        return Err(Refusal::NotAParticipant);
    }
    let target = if seq == 0 {
        standing.head
    } else {
        seq.min(standing.head)
    };
    if target <= standing.read_seq {
        return Ok(MarkDecision::Unchanged {
            mark: standing.read_seq,
        });
    }
    Ok(MarkDecision::Raise {
        mark: target,
        notice: Content::ReadMark(content::ReadMark {
            conversation: conversation.clone(),
            read_seq: target,
        }),
        receipt_to: standing.receipt_to.clone(),
    })
}

/// Flags that change, and the notice that tells the user's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagsChange {
    /// Pinned afterwards.
    pub pinned: bool,
    /// Muted afterwards.
    pub muted: bool,
    /// The `ConversationFlags` notice.
    pub notice: Content,
}

/// What a flag change does: `None` when the flags stay as they are.
pub fn decide_flags(
    conversation: &ConversationId,
    pinned: Option<bool>,
    muted: Option<bool>,
    standing: &ConversationStanding,
) -> Result<Option<FlagsChange>, Refusal> {
    if !standing.participant {
        return Err(Refusal::NotAParticipant);
    }
    let next = (
        pinned.unwrap_or(standing.pinned),
        muted.unwrap_or(standing.muted),
    );
    if next == (standing.pinned, standing.muted) {
        return Ok(None);
    }
    Ok(Some(FlagsChange {
        pinned: next.0,
        muted: next.1,
        notice: Content::ConversationFlags(content::ConversationFlags {
            conversation: conversation.clone(),
            pinned: next.0,
            muted: next.1,
        }),
    }))
}

/// The actor's role for amending a group message at `message_seq`: `None` when the actor is not
/// a member, or when the message is from before the member's view of the history begins (a
/// message it was never shown is not its to amend).
pub fn amend_role(group: &GroupState, actor: &UserId, message_seq: u64) -> Option<Role> {
    group
        .members
        .get(actor)
        .filter(|m| {
            group.settings.history == HistoryVisibility::Full || message_seq >= m.joined_seq
        })
        .map(|m| m.role)
}

/// Who may amend a message, and how: decided in the writer, against the message as stored and
/// the actor's standing at that point of the commit order.
///
/// `actor_role` is the actor's role for a group message (`None` when not a member, or when the
/// message is from before the member's view of the history begins) and is ignored for a
/// one-to-one message. Returns the event to record, or `None` when the amendment
/// changes nothing (a second recall, an edit to the same content).
pub fn decide_amend(
    message: &StoredMessage,
    actor: &UserId,
    actor_role: Option<Role>,
    change: &Amendment,
    now_ms: i64,
    window_ms: i64,
) -> Result<Option<Content>, Refusal> {
    // Someone who cannot see the message learns nothing about it.
    let participant = match message.conversation.kind() {
        Ok(ConversationKind::Direct(a, b)) => &a == actor || &b == actor,
        Ok(ConversationKind::Group(_)) => actor_role.is_some(),
        Ok(ConversationKind::Notices(owner)) => &owner == actor,
        Err(_) => false,
    };
    if !participant {
        return Err(Refusal::MessageNotFound);
    }
    if message.client_msg_id.is_empty() {
        return Err(Refusal::NotEditable(
            "events and notices cannot be recalled or edited",
        ));
    }
    let is_sender = &message.sender == actor;
    // Who may comes first, so nobody else learns anything from the answer; then whether the
    // amendment is a repeat (a retry succeeds even once the window has passed); then the window.
    let what = match change {
        Amendment::Recall => {
            let admin = matches!(actor_role, Some(Role::Admin | Role::Owner))
                && matches!(message.conversation.kind(), Ok(ConversationKind::Group(_)));
            if !is_sender && !admin {
                return Err(Refusal::PermissionDenied(
                    "only the sender or a group admin can recall a message",
                ));
            }
            if message.recalled_by.is_some() {
                return Ok(None);
            }
            "recall"
        }
        Amendment::Edit(content) => {
            if !is_sender {
                return Err(Refusal::PermissionDenied(
                    "only the sender can edit a message",
                ));
            }
            if message.recalled_by.is_some() {
                return Err(Refusal::NotEditable("the message was recalled"));
            }
            if &message.content == content {
                return Ok(None);
            }
            "edit"
        }
    };
    if now_ms.saturating_sub(message.server_time_ms) > window_ms {
        return Err(Refusal::WindowPassed {
            what,
            minutes: (window_ms / 60_000).max(0) as u64,
        });
    }
    Ok(Some(match change {
        Amendment::Recall => Content::Recall(content::Recall {
            message_id: message.id,
            seq: message.seq,
        }),
        Amendment::Edit(new) => Content::Edit(content::Edit {
            message_id: message.id,
            seq: message.seq,
            content: Box::new(new.clone()),
        }),
    }))
}

/// The message an amendment event (a recall or an edit) is about, if `event` is one.
pub fn amendment_target(event: &StoredMessage) -> Option<MessageId> {
    match &event.content {
        Content::Recall(r) => Some(r.message_id),
        Content::Edit(e) => Some(e.message_id),
        _ => None,
    }
}

/// Drops the text an edit event carries, once the message it edited was recalled: the recall
/// withdraws every version of the message, not only the original.
pub fn withdraw_edit(event: &mut StoredMessage) {
    if let Content::Edit(e) = &mut event.content {
        *e.content = Content::Empty;
    }
}

/// Applies an amendment event's effect to the message it names, as readers show it.
pub fn apply_amendment(message: &mut StoredMessage, event: &StoredMessage) {
    match &event.content {
        Content::Recall(_) => {
            message.recalled_by = Some(event.sender.clone());
            message.content = Content::Empty;
        }
        Content::Edit(e) if message.recalled_by.is_none() => {
            message.content = (*e.content).clone();
            message.edited_ms = event.server_time_ms;
        }
        _ => {}
    }
}

/// One conversation of a user's list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationView {
    /// Counts, marks, flags and the newest entry.
    pub summary: ConversationSummary,
    /// The peer of a one-to-one conversation.
    pub peer: Option<UserId>,
    /// The group of a group conversation.
    pub group: Option<GroupId>,
}

/// A user's conversation list, whole or the changes since a version.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationList {
    /// Pinned first, then newest entry first.
    pub conversations: Vec<ConversationView>,
    /// The version to ask for changes from next time.
    pub version: u64,
    /// Whether this is the whole list.
    pub full: bool,
}

/// Read marks, recall, edit, flags and the conversation list.
#[derive(Debug, Clone)]
pub struct ConversationService {
    messages: MessageService,
    store: Arc<dyn ConversationStore>,
    inbox: Arc<dyn InboxStore>,
    groups: Arc<dyn GroupStore>,
    config: ConversationConfig,
}

impl ConversationService {
    /// The service over the message pipeline (which commits every change) and the stores.
    pub fn new(
        messages: MessageService,
        store: Arc<dyn ConversationStore>,
        inbox: Arc<dyn InboxStore>,
        groups: Arc<dyn GroupStore>,
        config: ConversationConfig,
    ) -> Self {
        Self {
            messages,
            store,
            inbox,
            groups,
            config,
        }
    }

    /// The conversation a target names, checked to be one `user` may take part in now. A group
    /// is checked by the writer, in commit order.
    fn resolve(
        &self,
        user: &UserId,
        target: ConversationTarget,
    ) -> Result<ConversationId, ServiceError> {
        let conversation = match target {
            ConversationTarget::Peer(peer) => {
                let peer = UserId::parse(&peer).map_err(|_| ServiceError::NotAParticipant)?;
                ConversationId::direct(user, &peer)
            }
            ConversationTarget::Group(0) => return Err(ServiceError::NotAParticipant),
            ConversationTarget::Group(id) => ConversationId::group(GroupId(id)),
            ConversationTarget::Id(raw) => ConversationId::parse(&raw)?.0,
        };
        match conversation.kind()? {
            ConversationKind::Direct(a, b) if &a == user || &b == user => Ok(conversation),
            ConversationKind::Group(_) => Ok(conversation),
            _ => Err(ServiceError::NotAParticipant),
        }
    }

    /// Raises `user`'s read mark in a conversation to `seq` (0: its newest seq). Answers with
    /// the mark after the request and the unread count it leaves.
    pub async fn mark_read(
        &self,
        user: &UserId,
        target: ConversationTarget,
        seq: u64,
    ) -> Result<(ConversationId, u64, u64), ServiceError> {
        let conversation = self.resolve(user, target)?;
        let done = self
            .messages
            .submit_applied(Write::MarkRead(MarkRead {
                user: user.clone(),
                conversation: conversation.clone(),
                seq,
                now_ms: self.messages.now_ms(),
            }))?
            .await?;
        let unread = self.summary(user, &conversation, None).await?.unread;
        Ok((conversation, done.value, unread))
    }

    /// Recalls a message; answers with its conversation and the event's seq (0 when it was
    /// already recalled).
    pub async fn recall(&self, actor: &UserId, message: u64) -> Result<Applied, ServiceError> {
        self.amend(actor, message, Amendment::Recall, self.config.recall_window)
            .await
    }

    /// Replaces a message's content; answers with its conversation and the event's seq (0 when
    /// the content was the same).
    pub async fn edit(
        &self,
        actor: &UserId,
        message: u64,
        content: Option<Content>,
    ) -> Result<Applied, ServiceError> {
        let mut content = content.ok_or(ServiceError::InvalidContent("content is missing"))?;
        validate_content(&content, self.config.max_content_bytes)?;
        // Sending a file records who may read it; an edit cannot, so it cannot bring one in.
        if crate::files::refers_to_upload(&content) {
            return Err(ServiceError::InvalidContent(
                "an edit cannot attach a file of this server; send a new message",
            ));
        }
        self.config.filter.apply(&mut content)?;
        self.amend(
            actor,
            message,
            Amendment::Edit(content),
            self.config.edit_window,
        )
        .await
    }

    async fn amend(
        &self,
        actor: &UserId,
        message: u64,
        change: Amendment,
        window: Duration,
    ) -> Result<Applied, ServiceError> {
        if message == 0 {
            return Err(ServiceError::MessageNotFound);
        }
        self.messages
            .submit_applied(Write::Amend(Amend {
                actor: actor.clone(),
                message: MessageId(message),
                change,
                now_ms: self.messages.now_ms(),
                window_ms: window.as_millis().min(i64::MAX as u128) as i64,
                write_diffusion_max: self.messages.group_limits().write_diffusion_max,
            }))?
            .await
    }

    /// Pins or mutes a conversation in `user`'s list; answers with it as the list shows it.
    pub async fn set_flags(
        &self,
        user: &UserId,
        conversation: &str,
        pinned: Option<bool>,
        muted: Option<bool>,
    ) -> Result<ConversationView, ServiceError> {
        let conversation = self.resolve(user, ConversationTarget::Id(conversation.to_owned()))?;
        if pinned.is_none() && muted.is_none() {
            return Err(ServiceError::InvalidArgument(
                "set pinned, muted or both".into(),
            ));
        }
        self.messages
            .submit_applied(Write::SetFlags(SetFlags {
                user: user.clone(),
                conversation: conversation.clone(),
                pinned,
                muted,
                now_ms: self.messages.now_ms(),
            }))?
            .await?;
        let peer = conversation.peer_of(user);
        let summary = self.summary(user, &conversation, peer.clone()).await?;
        Ok(view(summary, peer))
    }

    /// One conversation as `user`'s list shows it.
    async fn summary(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        peer: Option<UserId>,
    ) -> Result<ConversationSummary, ServiceError> {
        let floor = self.floor(user, conversation).await?;
        self.store
            .summaries(
                user,
                vec![SummaryQuery {
                    conversation: conversation.clone(),
                    peer,
                    floor,
                }],
            )
            .await?
            .pop()
            .ok_or_else(|| ServiceError::Internal("no summary for a conversation".into()))
    }

    /// The seqs of a group conversation that do not count as unread for `user`.
    async fn floor(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<u64, ServiceError> {
        let Ok(ConversationKind::Group(group)) = conversation.kind() else {
            return Ok(0);
        };
        Ok(match self.groups.group(group, user).await? {
            Some((_, Some(me))) => unread_floor(&me),
            _ => 0,
        })
    }

    /// `user`'s conversation list: the whole of it when `since` is 0 (or too much changed
    /// since), otherwise the one-to-one conversations that changed after version `since` and
    /// every group (a large group's messages bypass the inbox, so its changes are not seen
    /// there).
    pub async fn list(&self, user: &UserId, since: u64) -> Result<ConversationList, ServiceError> {
        let head = self.inbox.inbox_head(user).await?;
        let mut changed: Option<Vec<ConversationId>> = None;
        if since > 0 && since <= head {
            let limit = self.config.max_changes_scanned.max(1);
            let page = self.inbox.read_inbox(user, since, limit).await?;
            let complete = page.entries.last().is_none_or(|e| e.seq >= page.head);
            if complete {
                let mut touched = Vec::new();
                for entry in &page.entries {
                    let InboxEvent::Message(m) = &entry.event;
                    if let Some(c) = touched_direct(m) {
                        touched.push(c);
                    }
                }
                touched.sort_unstable();
                touched.dedup();
                changed = Some(touched);
            }
        }
        let full = changed.is_none();
        let directs = match changed {
            Some(list) => list,
            None => self.store.direct_conversations(user).await?,
        };
        let mut wanted: Vec<SummaryQuery> = directs
            .into_iter()
            .filter_map(|c| {
                let peer = c.peer_of(user)?;
                Some(SummaryQuery {
                    conversation: c,
                    peer: Some(peer),
                    floor: 0,
                })
            })
            .collect();
        for (record, me) in self.groups.groups_of(user).await? {
            wanted.push(SummaryQuery {
                conversation: ConversationId::group(record.id),
                peer: None,
                floor: unread_floor(&me),
            });
        }
        let peers: Vec<Option<UserId>> = wanted.iter().map(|q| q.peer.clone()).collect();
        let summaries = self.store.summaries(user, wanted).await?;
        let mut conversations: Vec<ConversationView> = summaries
            .into_iter()
            .zip(peers)
            // A conversation whose only entries were notices has nothing to show yet.
            .filter(|(s, _)| s.max_seq > 0)
            .map(|(s, peer)| view(s, peer))
            .collect();
        conversations.sort_by(|a, b| {
            let time =
                |v: &ConversationView| v.summary.last.as_ref().map_or(0, |m| m.server_time_ms);
            b.summary
                .pinned
                .cmp(&a.summary.pinned)
                .then_with(|| time(b).cmp(&time(a)))
                .then_with(|| a.summary.conversation.cmp(&b.summary.conversation))
        });
        Ok(ConversationList {
            conversations,
            version: head,
            full,
        })
    }

    /// The conversation `user` asks to observe, if `user` has the observer role. Notice
    /// timelines are private and cannot be observed.
    pub fn may_observe(
        &self,
        user: &UserId,
        conversation: &str,
    ) -> Result<ConversationId, ServiceError> {
        if !self.config.observers.contains(user) {
            return Err(ServiceError::PermissionDenied(
                "only users with the observer role may observe",
            ));
        }
        let (conversation, kind) = ConversationId::parse(conversation)?;
        match kind {
            ConversationKind::Direct(..) | ConversationKind::Group(_) => Ok(conversation),
            ConversationKind::Notices(_) => Err(ServiceError::NotAParticipant),
        }
    }

    /// The read marks of `users` in a conversation.
    pub async fn read_marks(
        &self,
        conversation: &ConversationId,
        users: Vec<UserId>,
    ) -> Result<Vec<u64>, ServiceError> {
        Ok(self.store.read_marks(conversation, users).await?)
    }
}

/// Up to where a member's group timeline never counts as unread: what was said before it
/// joined, even when it may read that history.
fn unread_floor(me: &crate::groups::Member) -> u64 {
    me.joined_seq.saturating_sub(1)
}

/// The one-to-one conversation an inbox message changes in its user's list, if any: its own,
/// or the one a notice (a read mark, a flag change, a peer's receipt) is about.
fn touched_direct(m: &StoredMessage) -> Option<ConversationId> {
    let target = match m.conversation.kind().ok()? {
        ConversationKind::Direct(..) => return Some(m.conversation.clone()),
        ConversationKind::Group(_) => return None,
        ConversationKind::Notices(_) => match &m.content {
            Content::ReadMark(r) => &r.conversation,
            Content::ConversationFlags(f) => &f.conversation,
            _ => return None,
        },
    };
    match target.kind().ok()? {
        ConversationKind::Direct(..) => Some(target.clone()),
        _ => None,
    }
}

/// The longest text (or custom data) a list's last message carries, in bytes.
pub const SUMMARY_TEXT_BYTES: usize = 256;
/// The most members a group event in a list's last message names.
pub const SUMMARY_MEMBERS: usize = 10;

/// Shortens content for a conversation list, so that a list of thousands of conversations stays
/// small whatever their last messages say: text and custom data are cut at
/// [`SUMMARY_TEXT_BYTES`] (on a character boundary), group events name at most
/// [`SUMMARY_MEMBERS`] members. History keeps the whole message.
pub fn summarize(content: &mut Content) {
    fn cut(s: &mut String) {
        if s.len() > SUMMARY_TEXT_BYTES {
            let mut end = SUMMARY_TEXT_BYTES;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
    }
    match content {
        Content::Text(t) => cut(&mut t.text),
        Content::Custom(c) => cut(&mut c.data),
        Content::GroupEvent(e) => {
            e.members.truncate(SUMMARY_MEMBERS);
            cut(&mut e.announcement);
        }
        Content::Edit(e) => summarize(&mut e.content),
        _ => {}
    }
}

fn view(mut summary: ConversationSummary, peer: Option<UserId>) -> ConversationView {
    if let Some(last) = summary.last.as_mut() {
        summarize(&mut last.content);
    }
    let group = match summary.conversation.kind() {
        Ok(ConversationKind::Group(g)) => Some(g),
        _ => None,
    };
    ConversationView {
        summary,
        peer,
        group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn message(sender: &str, conversation: ConversationId, sent_ms: i64) -> StoredMessage {
        StoredMessage {
            id: MessageId(7),
            conversation,
            seq: 3,
            sender: user(sender),
            client_msg_id: "c1".into(),
            server_time_ms: sent_ms,
            sender_inbox_seq: 1,
            content: Content::text("hi"),
            recalled_by: None,
            edited_ms: 0,
        }
    }

    fn text(t: &str) -> Content {
        Content::text(t)
    }

    #[test]
    fn only_the_sender_recalls_a_direct_message_within_the_window() {
        let c = ConversationId::direct(&user("a"), &user("b"));
        let m = message("a", c, 1_000);
        let ok = decide_amend(&m, &user("a"), None, &Amendment::Recall, 2_000, 120_000).unwrap();
        assert_eq!(
            ok,
            Some(Content::Recall(content::Recall {
                message_id: MessageId(7),
                seq: 3
            }))
        );
        assert!(matches!(
            decide_amend(&m, &user("b"), None, &Amendment::Recall, 2_000, 120_000),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            decide_amend(&m, &user("z"), None, &Amendment::Recall, 2_000, 120_000),
            Err(Refusal::MessageNotFound)
        ));
        assert!(matches!(
            decide_amend(&m, &user("a"), None, &Amendment::Recall, 122_001, 120_000),
            Err(Refusal::WindowPassed {
                what: "recall",
                minutes: 2
            })
        ));
    }

    #[test]
    fn a_group_admin_recalls_others_messages_but_cannot_edit_them() {
        let c = ConversationId::group(GroupId(4));
        let m = message("a", c, 0);
        assert!(
            decide_amend(
                &m,
                &user("adm"),
                Some(Role::Admin),
                &Amendment::Recall,
                1,
                120_000
            )
            .unwrap()
            .is_some()
        );
        assert!(matches!(
            decide_amend(
                &m,
                &user("mem"),
                Some(Role::Member),
                &Amendment::Recall,
                1,
                120_000
            ),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            decide_amend(
                &m,
                &user("adm"),
                Some(Role::Owner),
                &Amendment::Edit(text("x")),
                1,
                1
            ),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            decide_amend(&m, &user("gone"), None, &Amendment::Recall, 1, 120_000),
            Err(Refusal::MessageNotFound)
        ));
    }

    #[test]
    fn repeated_amendments_record_nothing_and_a_recalled_message_cannot_be_edited() {
        let c = ConversationId::direct(&user("a"), &user("b"));
        let mut m = message("a", c, 0);
        assert_eq!(
            decide_amend(&m, &user("a"), None, &Amendment::Edit(text("hi")), 1, 10).unwrap(),
            None
        );
        let edit = decide_amend(&m, &user("a"), None, &Amendment::Edit(text("yo")), 1, 10)
            .unwrap()
            .unwrap();
        let event = StoredMessage {
            content: edit,
            server_time_ms: 5,
            ..message("a", m.conversation.clone(), 5)
        };
        apply_amendment(&mut m, &event);
        assert_eq!((m.content.clone(), m.edited_ms), (text("yo"), 5));
        m.recalled_by = Some(user("a"));
        assert_eq!(
            decide_amend(&m, &user("a"), None, &Amendment::Recall, 1, 10).unwrap(),
            None
        );
        assert!(matches!(
            decide_amend(&m, &user("a"), None, &Amendment::Edit(text("z")), 1, 10),
            Err(Refusal::NotEditable(_))
        ));
    }

    #[test]
    fn summaries_cut_long_text_on_a_character_boundary_and_long_member_lists() {
        // One ASCII byte first, so that byte 256 falls inside a two-byte character.
        let mut c = text(&format!("a{}", "é".repeat(200)));
        summarize(&mut c);
        let Content::Text(t) = &c else {
            panic!("text stays text")
        };
        assert_eq!(t.text.len(), SUMMARY_TEXT_BYTES - 1);
        let mut c = text("short");
        summarize(&mut c);
        assert_eq!(c, text("short"));
        let mut g = content::GroupEvent::new(content::GroupEventKind::MembersAdded);
        g.members = (0..50).map(|i| user(&format!("u{i}"))).collect();
        let mut e = Content::GroupEvent(g);
        summarize(&mut e);
        let Content::GroupEvent(g) = &e else {
            panic!("event stays an event")
        };
        assert_eq!(g.members.len(), SUMMARY_MEMBERS);
    }

    #[test]
    fn events_cannot_be_amended() {
        let c = ConversationId::direct(&user("a"), &user("b"));
        let mut m = message("a", c, 0);
        m.client_msg_id.clear();
        assert!(matches!(
            decide_amend(&m, &user("a"), None, &Amendment::Recall, 1, 10),
            Err(Refusal::NotEditable(_))
        ));
    }

    #[test]
    fn notices_touch_the_conversation_they_are_about() {
        let (a, b) = (user("a"), user("b"));
        let direct = ConversationId::direct(&a, &b);
        let mut notice = message("b", ConversationId::notices(&b), 0);
        notice.content = Content::ReadMark(content::ReadMark {
            conversation: direct.clone(),
            read_seq: 4,
        });
        assert_eq!(touched_direct(&notice), Some(direct.clone()));
        assert_eq!(
            touched_direct(&message("a", direct.clone(), 0)),
            Some(direct)
        );
        assert_eq!(
            touched_direct(&message("a", ConversationId::group(GroupId(1)), 0)),
            None
        );
    }
}

#[cfg(test)]
mod standing_tests {
    //! Read marks, flags and who may amend, as tables.

    use super::*;
    use crate::groups::{GroupSettings, Member, Members};

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn ab() -> ConversationId {
        ConversationId::direct(&u("ann"), &u("bob"))
    }

    fn standing(read_seq: u64, head: u64) -> ConversationStanding {
        ConversationStanding {
            participant: true,
            head,
            read_seq,
            pinned: false,
            muted: false,
            receipt_to: Some(u("bob")),
        }
    }

    #[test]
    fn read_marks_only_go_forward_and_stop_at_the_head() {
        // (asked, read mark, head) → the mark after, and whether a notice is recorded.
        let rows = [
            ("0 means the head", 0, 3, 10, Some(10)),
            ("a seq within the history", 7, 3, 10, Some(7)),
            ("past the head is the head", 99, 3, 10, Some(10)),
            ("behind the mark changes nothing", 2, 3, 10, None),
            ("at the mark changes nothing", 3, 3, 10, None),
            ("an empty conversation has nothing to read", 0, 0, 0, None),
        ];
        for (why, asked, read, head, raised) in rows {
            let got = decide_mark_read(&ab(), asked, &standing(read, head)).unwrap();
            match (got, raised) {
                (MarkDecision::Unchanged { mark }, None) => assert_eq!(mark, read, "{why}"),
                (
                    MarkDecision::Raise {
                        mark, receipt_to, ..
                    },
                    Some(want),
                ) => {
                    assert_eq!(mark, want, "{why}");
                    assert_eq!(receipt_to, Some(u("bob")), "{why}: the peer gets a receipt");
                }
                (got, want) => panic!("{why}: got {got:?}, want a raise to {want:?}"),
            }
        }
        let blocked = ConversationStanding {
            receipt_to: None,
            ..standing(0, 5)
        };
        assert!(
            matches!(
                decide_mark_read(&ab(), 0, &blocked),
                Ok(MarkDecision::Raise {
                    receipt_to: None,
                    ..
                })
            ),
            "no receipt crosses a block: the backend leaves the peer out"
        );
        assert!(matches!(
            decide_mark_read(&ab(), 0, &ConversationStanding::default()),
            Err(Refusal::NotAParticipant)
        ));
    }

    #[test]
    fn flags_change_only_what_is_asked_and_only_when_it_changes() {
        let pinned = ConversationStanding {
            pinned: true,
            ..standing(0, 0)
        };
        let rows = [
            (
                "pin",
                Some(true),
                None,
                &standing(0, 0),
                Some((true, false)),
            ),
            ("pin a pinned one", Some(true), None, &pinned, None),
            (
                "mute keeps the pin",
                None,
                Some(true),
                &pinned,
                Some((true, true)),
            ),
            ("nothing asked", None, None, &pinned, None),
            ("unpin", Some(false), None, &pinned, Some((false, false))),
        ];
        for (why, pin, mute, standing, want) in rows {
            let got = decide_flags(&ab(), pin, mute, standing)
                .unwrap()
                .map(|c| (c.pinned, c.muted));
            assert_eq!(got, want, "{why}");
        }
        assert!(decide_flags(&ab(), Some(true), None, &ConversationStanding::default()).is_err());
    }

    #[test]
    fn a_member_amends_only_what_its_view_of_the_history_shows() {
        let mut members = Members::default();
        members.insert(
            u("ann"),
            Member {
                role: Role::Admin,
                joined_seq: 10,
                muted_until_ms: 0,
            },
        );
        let mut group = GroupState {
            id: GroupId(1),
            settings: GroupSettings {
                name: "g".into(),
                avatar: String::new(),
                announcement: String::new(),
                owner: u("own"),
                mute_all: false,
                history: HistoryVisibility::FromJoin,
                dissolved: false,
                created_ms: 0,
            },
            members: Arc::new(members),
        };
        assert_eq!(amend_role(&group, &u("ann"), 12), Some(Role::Admin));
        assert_eq!(amend_role(&group, &u("ann"), 9), None, "before the join");
        assert_eq!(amend_role(&group, &u("bob"), 12), None, "not a member");
        group.settings.history = HistoryVisibility::Full;
        assert_eq!(
            amend_role(&group, &u("ann"), 9),
            Some(Role::Admin),
            "full history"
        );
    }
}
