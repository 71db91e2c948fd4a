//! How messages print.

use tern_client::pb;

/// Text content.
pub(crate) fn text_content(text: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: text.to_owned(),
        })),
    }
}

/// `SEQ SENDER: TEXT`, with non-text content in brackets, a recalled message as a tombstone
/// and an edited one marked.
pub(crate) fn message_line(m: &pb::Message) -> String {
    if m.recalled {
        return format!("{} {}: [recalled by {}]", m.seq, m.sender, m.recalled_by);
    }
    let edited = if m.edited_at_ms > 0 { " (edited)" } else { "" };
    format!(
        "{} {}: {}{edited}",
        m.seq,
        m.sender,
        content(m.content.as_ref())
    )
}

/// What a message's content says, in one line.
pub(crate) fn content(c: Option<&pb::Content>) -> String {
    match c.and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => t.text.clone(),
        Some(pb::content::Body::Image(i)) => {
            let what = if i.url.is_empty() { &i.file_id } else { &i.url };
            match (i.width, i.height) {
                (0, _) | (_, 0) => format!("[image {what}]"),
                (w, h) => format!("[image {what} {w}x{h}]"),
            }
        }
        Some(pb::content::Body::File(f)) => match (f.name.as_str(), f.file_id.as_str()) {
            ("", id) => format!("[file {id}]"),
            (name, "") => format!("[file {name}]"),
            (name, id) => format!("[file {name} {id}]"),
        },
        Some(pb::content::Body::Custom(c)) => format!("[{}] {}", c.kind, c.data),
        Some(pb::content::Body::GroupEvent(e)) => format!("[{}]", group_event(e)),
        Some(pb::content::Body::Recall(r)) => format!("[recalled message {}]", r.seq),
        Some(pb::content::Body::Edit(e)) => format!(
            "[edited message {}: {}]",
            e.seq,
            content(e.content.as_deref())
        ),
        Some(pb::content::Body::ReadMark(r)) => {
            format!("[read {} up to {}]", r.conversation_id, r.read_seq)
        }
        Some(pb::content::Body::ConversationFlags(f)) => format!(
            "[{} is now {}, {}]",
            f.conversation_id,
            if f.pinned { "pinned" } else { "not pinned" },
            if f.muted { "muted" } else { "not muted" }
        ),
        Some(pb::content::Body::FriendEvent(f)) => format!("[{}]", friend_event(f)),
        Some(pb::content::Body::ProfileChanged(p)) => format!(
            "[profile is now {:?}]",
            p.profile.as_ref().map_or("", |p| p.nickname.as_str())
        ),
        Some(pb::content::Body::BlockChanged(b)) => format!(
            "[{} {}]",
            if b.blocked { "blocked" } else { "unblocked" },
            b.user_id
        ),
        None => "[empty]".into(),
    }
}

/// A friend event in words, as its sender did it.
pub(crate) fn friend_event(e: &pb::FriendEvent) -> String {
    use pb::FriendEventKind as K;
    match K::try_from(e.kind).unwrap_or(K::Unspecified) {
        K::Requested if e.message.is_empty() => format!("asked {} to be friends", e.user_id),
        K::Requested => format!("asked {} to be friends: {}", e.user_id, e.message),
        K::Added => format!("became friends with {}", e.user_id),
        K::Declined => format!("declined the request of {}", e.user_id),
        K::Removed => format!("is no longer friends with {}", e.user_id),
        K::Remarked => format!("named {} {:?}", e.user_id, e.remark),
        K::Unspecified => format!("friend event {}", e.kind),
    }
}

/// A group event in words, as its sender did it.
fn group_event(e: &pb::GroupEvent) -> String {
    use pb::GroupEventKind as K;
    let members = e.members.join(", ");
    match K::try_from(e.kind).unwrap_or(K::Unspecified) {
        K::Created if members.is_empty() => format!("created the group {:?}", e.name),
        K::Created => format!("created the group {:?} with {members}", e.name),
        K::MembersAdded => format!("added {members}"),
        K::MembersRemoved => format!("removed {members}"),
        K::MemberLeft => "left the group".into(),
        K::Renamed => format!("renamed the group to {:?}", e.name),
        K::AvatarChanged => "changed the avatar".into(),
        K::AnnouncementChanged => format!("set the announcement: {}", e.announcement),
        K::RoleChanged => {
            let role = pb::GroupRole::try_from(e.role).unwrap_or(pb::GroupRole::Unspecified);
            format!(
                "made {members} {}",
                role.as_str_name()
                    .trim_start_matches("GROUP_ROLE_")
                    .to_lowercase()
            )
        }
        K::OwnerTransferred => format!("handed ownership to {members}"),
        K::MemberMuted if e.muted_until_ms == 0 => format!("unmuted {members}"),
        K::MemberMuted => format!("muted {members} until {} ms", e.muted_until_ms),
        K::MuteAllChanged if e.mute_all => "muted the group".into(),
        K::MuteAllChanged => "unmuted the group".into(),
        K::HistoryVisibilityChanged => {
            let v = pb::HistoryVisibility::try_from(e.history_visibility)
                .unwrap_or(pb::HistoryVisibility::FromJoin);
            format!(
                "let new members see {}",
                match v {
                    pb::HistoryVisibility::Full => "the whole history",
                    pb::HistoryVisibility::FromJoin => "history from their join",
                }
            )
        }
        K::Dissolved => "dissolved the group".into(),
        K::Unspecified => format!("group event {}", e.kind),
    }
}
