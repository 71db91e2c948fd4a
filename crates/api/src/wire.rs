//! Domain ⇄ wire: how stored messages, conversations, inbox entries and groups look in the
//! protocol's payloads. Every front door answers with these shapes.

use tern_core::{
    ConversationId,
    conversations::ConversationView,
    group_service::GroupView,
    store::{InboxEntry, InboxEvent, StoredMessage},
    wire,
};
use tern_proto::pb;

/// A stored message as the wire shows it.
pub fn message_to_wire(m: &StoredMessage) -> pb::Message {
    pb::Message {
        message_id: m.id.0,
        conversation_id: m.conversation.as_str().to_owned(),
        seq: m.seq,
        sender: m.sender.as_str().to_owned(),
        client_msg_id: m.client_msg_id.clone(),
        server_time_ms: m.server_time_ms,
        content: m.recalled_by.is_none().then(|| wire::content(&m.content)),
        recalled: m.recalled_by.is_some(),
        recalled_by: m
            .recalled_by
            .as_ref()
            .map_or_else(String::new, |u| u.to_string()),
        edited_at_ms: m.edited_ms,
    }
}

/// A conversation of the caller's list as the wire shows it.
pub fn conversation_to_wire(v: &ConversationView) -> pb::Conversation {
    let s = &v.summary;
    pb::Conversation {
        conversation_id: s.conversation.to_string(),
        peer: v.peer.as_ref().map_or_else(String::new, |p| p.to_string()),
        group_id: v.group.map_or(0, |g| g.0),
        max_seq: s.max_seq,
        read_seq: s.read_seq,
        unread: s.unread.min(u64::from(u32::MAX)) as u32,
        last_message: s.last.as_ref().map(message_to_wire),
        pinned: s.pinned,
        muted: s.muted,
        peer_read_seq: s.peer_read_seq,
    }
}

/// An inbox entry as the wire shows it.
pub fn inbox_entry_to_wire(e: &InboxEntry) -> pb::InboxEntry {
    let event = match &e.event {
        InboxEvent::Message(m) => pb::inbox_entry::Event::Message(message_to_wire(m)),
    };
    pb::InboxEntry {
        seq: e.seq,
        event: Some(event),
    }
}

/// A group as the wire shows it to one member.
pub fn group_to_wire(g: &GroupView) -> pb::GroupInfo {
    pb::GroupInfo {
        group_id: g.id.0,
        conversation_id: ConversationId::group(g.id).as_str().to_owned(),
        name: g.settings.name.clone(),
        avatar: g.settings.avatar.clone(),
        announcement: g.settings.announcement.clone(),
        owner: g.settings.owner.to_string(),
        member_count: g.member_count as u32,
        mute_all: g.settings.mute_all,
        history_visibility: wire::history(g.settings.history) as i32,
        dissolved: g.settings.dissolved,
        created_ms: g.settings.created_ms,
        head_seq: g.head_seq,
        my_role: g
            .me
            .map_or(pb::GroupRole::Unspecified, |m| wire::role(m.role)) as i32,
        visible_from_seq: g.visible_from(),
        read_diffusion: g.read_diffusion,
    }
}
