//! What a client reports to the app: events, and the conversations history is read from.

use super::*;

/// What the app receives, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An inbox entry: a message this user received, or sent from another device.
    Message {
        /// The entry's seq in this user's inbox.
        inbox_seq: u64,
        /// The message.
        message: pb::Message,
    },
    /// A message (or event) of a group's timeline, each seq once and in seq order per group,
    /// whether it came through the inbox, a push or a pull. Own sends are not repeated.
    GroupMessage {
        /// The message; its `conversation_id` is `g:` and the group id.
        message: pb::Message,
    },
    /// Another user is typing to this one (ephemeral: only while online, never replayed).
    Typing {
        /// Who is typing.
        from: String,
        /// The one-to-one conversation.
        conversation_id: String,
    },
    /// A message was recalled (by its sender, or in a group by an admin): show a tombstone in
    /// its place. Arrives in order with the conversation's other entries (at `event_seq`).
    Recalled {
        /// The conversation.
        conversation_id: String,
        /// The recalled message.
        message_id: u64,
        /// Its seq.
        seq: u64,
        /// Who recalled it.
        by: String,
        /// The recall event's own seq in the conversation.
        event_seq: u64,
    },
    /// A message was edited: it now says `content`.
    Edited {
        /// The conversation.
        conversation_id: String,
        /// The edited message.
        message_id: u64,
        /// Its seq.
        seq: u64,
        /// The new content.
        content: Option<pb::Content>,
        /// When it was edited.
        edited_at_ms: i64,
        /// The edit event's own seq in the conversation.
        event_seq: u64,
    },
    /// This user read a conversation up to `read_seq`, on this device or another: its unread
    /// count changed (ask CONVERSATION_LIST for the new count).
    Read {
        /// The conversation.
        conversation_id: String,
        /// The new read mark.
        read_seq: u64,
    },
    /// The peer of a one-to-one conversation read it up to `read_seq` (a read receipt).
    PeerRead {
        /// The peer.
        user: String,
        /// The conversation.
        conversation_id: String,
        /// The peer's new read mark.
        read_seq: u64,
    },
    /// This user pinned or muted a conversation, on this device or another.
    ConversationFlags {
        /// The conversation.
        conversation_id: String,
        /// Pinned now.
        pinned: bool,
        /// Muted now.
        muted: bool,
    },
    /// A friend request, answer, removal or remark that concerns this user, from whichever
    /// side made it (ask FRIEND_LIST for the list after it).
    Friend {
        /// What happened.
        kind: pb::FriendEventKind,
        /// The other user.
        other: String,
        /// True when this user made the change (on this device or another).
        by_me: bool,
        /// A request's message.
        message: String,
        /// A remark's new text.
        remark: String,
    },
    /// This user's profile or settings changed (on this device or another).
    ProfileChanged {
        /// The profile now.
        profile: pb::Profile,
        /// The stranger policy now.
        stranger_policy: pb::StrangerPolicy,
    },
    /// This user blocked or unblocked someone (on this device or another).
    BlockChanged {
        /// Who.
        user: String,
        /// Blocked now.
        blocked: bool,
    },
    /// A followed user's devices changed (or, after a reconnect, its presence now).
    Presence(pb::Presence),
    /// A message of a conversation this client observes (live only).
    Observed(pb::Message),
    /// The client (re)connected and logged in; `inbox_head` is the server's head at login.
    Connected {
        /// The inbox head at login.
        inbox_head: u64,
    },
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Another login replaced this device; the client stops.
    Kicked(pb::Kick),
    /// The client stopped because it cannot continue (for example its token was revoked).
    Stopped(ClientError),
}

/// A conversation, as the app names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// The one-to-one conversation with this user.
    Peer(String),
    /// This group's timeline.
    Group(u64),
}

impl Conversation {
    pub(super) fn history_target(&self) -> pb::history_request::Target {
        match self {
            Conversation::Peer(p) => pb::history_request::Target::Peer(p.clone()),
            Conversation::Group(g) => pb::history_request::Target::GroupId(*g),
        }
    }
}

/// Which page of a conversation to fetch.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The conversation.
    pub conversation: Conversation,
    /// Page from this seq (exclusive); 0 with `Backward` means from the newest.
    pub anchor_seq: u64,
    /// Which way.
    pub direction: pb::Direction,
    /// At most this many.
    pub limit: u32,
}

impl HistoryQuery {
    /// The newest `limit` messages of a conversation.
    pub fn newest(conversation: Conversation, limit: u32) -> Self {
        Self {
            conversation,
            anchor_seq: 0,
            direction: pb::Direction::Backward,
            limit,
        }
    }
}

/// The typed event for a recall, an edit or a notice; `None` for anything else.
pub(super) fn typed_event(message: &pb::Message, me: &str) -> Option<Event> {
    use pb::content::Body;
    let body = message.content.as_ref().and_then(|c| c.body.as_ref())?;
    Some(match body {
        Body::Recall(r) => Event::Recalled {
            conversation_id: message.conversation_id.clone(),
            message_id: r.message_id,
            seq: r.seq,
            by: message.sender.clone(),
            event_seq: message.seq,
        },
        Body::Edit(e) => Event::Edited {
            conversation_id: message.conversation_id.clone(),
            message_id: e.message_id,
            seq: e.seq,
            content: e.content.as_deref().cloned(),
            edited_at_ms: message.server_time_ms,
            event_seq: message.seq,
        },
        Body::ReadMark(r) if message.sender == me => Event::Read {
            conversation_id: r.conversation_id.clone(),
            read_seq: r.read_seq,
        },
        Body::ReadMark(r) => Event::PeerRead {
            user: message.sender.clone(),
            conversation_id: r.conversation_id.clone(),
            read_seq: r.read_seq,
        },
        Body::ConversationFlags(f) => Event::ConversationFlags {
            conversation_id: f.conversation_id.clone(),
            pinned: f.pinned,
            muted: f.muted,
        },
        Body::FriendEvent(f) => {
            let by_me = message.sender == me;
            Event::Friend {
                kind: pb::FriendEventKind::try_from(f.kind)
                    .unwrap_or(pb::FriendEventKind::Unspecified),
                other: if by_me {
                    f.user_id.clone()
                } else {
                    message.sender.clone()
                },
                by_me,
                message: f.message.clone(),
                remark: f.remark.clone(),
            }
        }
        Body::ProfileChanged(p) => Event::ProfileChanged {
            profile: p.profile.clone().unwrap_or_default(),
            stranger_policy: pb::StrangerPolicy::try_from(p.stranger_policy)
                .unwrap_or(pb::StrangerPolicy::Anyone),
        },
        Body::BlockChanged(b) => Event::BlockChanged {
            user: b.user_id.clone(),
            blocked: b.blocked,
        },
        _ => return None,
    })
}
