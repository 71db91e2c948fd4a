//! Domain ⇄ protocol: the one place where content, its events and the domain enums meet their
//! wire form (`tern_proto::pb`). Rules and stores never see protocol types; each front door
//! (the binary gateway and the HTTP API through `tern-api`, the cluster's envelopes, webhook
//! bodies and the before-send hook) maps with these functions.
//!
//! It sits in core, not in a front door's crate, for one reason: a webhook's `message.created`
//! body is the protocol's JSON of the message and is written in the same transaction as the
//! message ([`crate::webhooks`]), so the mapping must be reachable from where that is decided.

use crate::{
    ConversationId, MessageId, Platform, ServiceError, UserId,
    content::{
        BlockChanged, Content, ConversationFlags, Custom, Edit, File, FriendEvent, FriendEventKind,
        GroupEvent, GroupEventKind, Image, ProfileChanged, ReadMark, Recall, Text,
    },
    groups::{HistoryVisibility, Role},
    pb,
    social::{Profile, StrangerPolicy},
};

/// A wire value that has no domain meaning (an id that does not parse, an enum number nobody
/// defined, a field that must be present and is not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// A role on the wire.
pub fn role(r: Role) -> pb::GroupRole {
    match r {
        Role::Member => pb::GroupRole::Member,
        Role::Admin => pb::GroupRole::Admin,
        Role::Owner => pb::GroupRole::Owner,
    }
}

/// The role a wire value names; `None` for unspecified or unknown values.
pub fn role_of(v: i32) -> Option<Role> {
    match pb::GroupRole::try_from(v).ok()? {
        pb::GroupRole::Member => Some(Role::Member),
        pb::GroupRole::Admin => Some(Role::Admin),
        pb::GroupRole::Owner => Some(Role::Owner),
        pb::GroupRole::Unspecified => None,
    }
}

/// A history visibility on the wire.
pub fn history(h: HistoryVisibility) -> pb::HistoryVisibility {
    match h {
        HistoryVisibility::FromJoin => pb::HistoryVisibility::FromJoin,
        HistoryVisibility::Full => pb::HistoryVisibility::Full,
    }
}

/// The history visibility a wire value names; `None` for unknown values.
pub fn history_of(v: i32) -> Option<HistoryVisibility> {
    match pb::HistoryVisibility::try_from(v).ok()? {
        pb::HistoryVisibility::FromJoin => Some(HistoryVisibility::FromJoin),
        pb::HistoryVisibility::Full => Some(HistoryVisibility::Full),
    }
}

/// A stranger policy on the wire.
pub fn policy(p: StrangerPolicy) -> pb::StrangerPolicy {
    match p {
        StrangerPolicy::Anyone => pb::StrangerPolicy::Anyone,
        StrangerPolicy::FriendsOnly => pb::StrangerPolicy::FriendsOnly,
    }
}

/// The stranger policy a wire value names (unknown values read as the default, as they always
/// have: a newer client's policy must not lock an older server's user out).
pub fn policy_of(v: i32) -> StrangerPolicy {
    match pb::StrangerPolicy::try_from(v) {
        Ok(pb::StrangerPolicy::FriendsOnly) => StrangerPolicy::FriendsOnly,
        _ => StrangerPolicy::Anyone,
    }
}

/// A platform on the wire.
pub fn platform(p: Platform) -> i32 {
    let p = match p {
        Platform::Unspecified => pb::Platform::Unspecified,
        Platform::Ios => pb::Platform::Ios,
        Platform::Android => pb::Platform::Android,
        Platform::Web => pb::Platform::Web,
        Platform::Desktop => pb::Platform::Desktop,
        Platform::Cli => pb::Platform::Cli,
    };
    p as i32
}

/// The platform a wire value names; unknown values count as unspecified.
pub fn platform_of(v: i32) -> Platform {
    match pb::Platform::try_from(v) {
        Ok(pb::Platform::Ios) => Platform::Ios,
        Ok(pb::Platform::Android) => Platform::Android,
        Ok(pb::Platform::Web) => Platform::Web,
        Ok(pb::Platform::Desktop) => Platform::Desktop,
        Ok(pb::Platform::Cli) => Platform::Cli,
        _ => Platform::Unspecified,
    }
}

/// A profile on the wire.
pub fn profile(p: &Profile) -> pb::Profile {
    pb::Profile {
        user_id: p.user.to_string(),
        nickname: p.nickname.clone(),
        avatar: p.avatar.clone(),
        signature: p.signature.clone(),
        extra: p.extra.clone(),
        updated_ms: p.updated_ms,
    }
}

fn group_event_kind(k: GroupEventKind) -> pb::GroupEventKind {
    use GroupEventKind::*;
    match k {
        Created => pb::GroupEventKind::Created,
        MembersAdded => pb::GroupEventKind::MembersAdded,
        MembersRemoved => pb::GroupEventKind::MembersRemoved,
        MemberLeft => pb::GroupEventKind::MemberLeft,
        Renamed => pb::GroupEventKind::Renamed,
        AvatarChanged => pb::GroupEventKind::AvatarChanged,
        AnnouncementChanged => pb::GroupEventKind::AnnouncementChanged,
        RoleChanged => pb::GroupEventKind::RoleChanged,
        OwnerTransferred => pb::GroupEventKind::OwnerTransferred,
        MemberMuted => pb::GroupEventKind::MemberMuted,
        MuteAllChanged => pb::GroupEventKind::MuteAllChanged,
        HistoryVisibilityChanged => pb::GroupEventKind::HistoryVisibilityChanged,
        Dissolved => pb::GroupEventKind::Dissolved,
    }
}

fn group_event_kind_of(v: i32) -> Option<GroupEventKind> {
    use GroupEventKind::*;
    Some(match pb::GroupEventKind::try_from(v).ok()? {
        pb::GroupEventKind::Unspecified => return None,
        pb::GroupEventKind::Created => Created,
        pb::GroupEventKind::MembersAdded => MembersAdded,
        pb::GroupEventKind::MembersRemoved => MembersRemoved,
        pb::GroupEventKind::MemberLeft => MemberLeft,
        pb::GroupEventKind::Renamed => Renamed,
        pb::GroupEventKind::AvatarChanged => AvatarChanged,
        pb::GroupEventKind::AnnouncementChanged => AnnouncementChanged,
        pb::GroupEventKind::RoleChanged => RoleChanged,
        pb::GroupEventKind::OwnerTransferred => OwnerTransferred,
        pb::GroupEventKind::MemberMuted => MemberMuted,
        pb::GroupEventKind::MuteAllChanged => MuteAllChanged,
        pb::GroupEventKind::HistoryVisibilityChanged => HistoryVisibilityChanged,
        pb::GroupEventKind::Dissolved => Dissolved,
    })
}

fn friend_event_kind(k: FriendEventKind) -> pb::FriendEventKind {
    match k {
        FriendEventKind::Requested => pb::FriendEventKind::Requested,
        FriendEventKind::Added => pb::FriendEventKind::Added,
        FriendEventKind::Declined => pb::FriendEventKind::Declined,
        FriendEventKind::Removed => pb::FriendEventKind::Removed,
        FriendEventKind::Remarked => pb::FriendEventKind::Remarked,
    }
}

fn friend_event_kind_of(v: i32) -> Option<FriendEventKind> {
    Some(match pb::FriendEventKind::try_from(v).ok()? {
        pb::FriendEventKind::Unspecified => return None,
        pb::FriendEventKind::Requested => FriendEventKind::Requested,
        pb::FriendEventKind::Added => FriendEventKind::Added,
        pb::FriendEventKind::Declined => FriendEventKind::Declined,
        pb::FriendEventKind::Removed => FriendEventKind::Removed,
        pb::FriendEventKind::Remarked => FriendEventKind::Remarked,
    })
}

/// Content on the wire.
pub fn content(c: &Content) -> pb::Content {
    use pb::content::Body;
    let body = match c {
        Content::Empty => None,
        Content::Text(t) => Some(Body::Text(pb::Text {
            text: t.text.clone(),
        })),
        Content::Image(i) => Some(Body::Image(pb::Image {
            file_id: i.file_id.clone(),
            url: i.url.clone(),
            width: i.width,
            height: i.height,
            size: i.size,
            mime: i.mime.clone(),
            thumb_width: i.thumb_width,
            thumb_height: i.thumb_height,
        })),
        Content::File(f) => Some(Body::File(pb::File {
            file_id: f.file_id.clone(),
            url: f.url.clone(),
            name: f.name.clone(),
            size: f.size,
            mime: f.mime.clone(),
        })),
        Content::Custom(x) => Some(Body::Custom(pb::Custom {
            kind: x.kind.clone(),
            data: x.data.clone(),
        })),
        Content::GroupEvent(e) => Some(Body::GroupEvent(pb::GroupEvent {
            kind: group_event_kind(e.kind) as i32,
            members: e.members.iter().map(|m| m.as_str().to_owned()).collect(),
            name: e.name.clone(),
            avatar: e.avatar.clone(),
            announcement: e.announcement.clone(),
            role: e.role.map_or(pb::GroupRole::Unspecified, role) as i32,
            muted_until_ms: e.muted_until_ms,
            mute_all: e.mute_all,
            history_visibility: history(e.history_visibility) as i32,
        })),
        Content::Recall(r) => Some(Body::Recall(pb::Recall {
            message_id: r.message_id.0,
            seq: r.seq,
        })),
        Content::Edit(e) => Some(Body::Edit(Box::new(pb::Edit {
            message_id: e.message_id.0,
            seq: e.seq,
            content: match &*e.content {
                Content::Empty => None,
                inner => Some(Box::new(content(inner))),
            },
        }))),
        Content::ReadMark(r) => Some(Body::ReadMark(pb::ReadMark {
            conversation_id: r.conversation.as_str().to_owned(),
            read_seq: r.read_seq,
        })),
        Content::ConversationFlags(f) => Some(Body::ConversationFlags(pb::ConversationFlags {
            conversation_id: f.conversation.as_str().to_owned(),
            pinned: f.pinned,
            muted: f.muted,
        })),
        Content::FriendEvent(f) => Some(Body::FriendEvent(pb::FriendEvent {
            kind: friend_event_kind(f.kind) as i32,
            user_id: f.user.as_str().to_owned(),
            message: f.message.clone(),
            remark: f.remark.clone(),
        })),
        Content::ProfileChanged(p) => Some(Body::ProfileChanged(pb::ProfileChanged {
            profile: Some(profile(&p.profile)),
            stranger_policy: policy(p.stranger_policy) as i32,
        })),
        Content::BlockChanged(b) => Some(Body::BlockChanged(pb::BlockChanged {
            user_id: b.user.as_str().to_owned(),
            blocked: b.blocked,
        })),
    };
    pb::Content { body }
}

/// Content a client sent (SEND, EDIT, a before-send hook's answer): only the bodies a client
/// may send; the events and notices the server writes are refused, as the protocol says.
pub fn sent_content(w: pb::Content) -> Result<Content, ServiceError> {
    use pb::content::Body;
    match w.body {
        None | Some(Body::Text(_) | Body::Image(_) | Body::File(_) | Body::Custom(_)) => {
            content_of(w).map_err(|_| ServiceError::InvalidContent("content does not parse"))
        }
        Some(_) => Err(ServiceError::InvalidContent(
            "events and notices are written by the server",
        )),
    }
}

fn user(s: String) -> Result<UserId, WireError> {
    UserId::parse(&s).map_err(|_| WireError(format!("user id {s:?} does not parse")))
}

fn conversation(s: String) -> Result<ConversationId, WireError> {
    ConversationId::parse(&s)
        .map(|(c, _)| c)
        .map_err(|_| WireError(format!("conversation id {s:?} does not parse")))
}

/// Content from the wire, any body (the cluster's envelopes carry events too). An event kind
/// this build does not know reads as [`Content::Empty`], as an unknown body does.
pub fn content_of(w: pb::Content) -> Result<Content, WireError> {
    use pb::content::Body;
    let Some(body) = w.body else {
        return Ok(Content::Empty);
    };
    Ok(match body {
        Body::Text(t) => Content::Text(Text { text: t.text }),
        Body::Image(i) => Content::Image(Image {
            file_id: i.file_id,
            url: i.url,
            width: i.width,
            height: i.height,
            size: i.size,
            mime: i.mime,
            thumb_width: i.thumb_width,
            thumb_height: i.thumb_height,
        }),
        Body::File(f) => Content::File(File {
            file_id: f.file_id,
            url: f.url,
            name: f.name,
            size: f.size,
            mime: f.mime,
        }),
        Body::Custom(x) => Content::Custom(Custom {
            kind: x.kind,
            data: x.data,
        }),
        Body::GroupEvent(e) => {
            let Some(kind) = group_event_kind_of(e.kind) else {
                return Ok(Content::Empty);
            };
            Content::GroupEvent(GroupEvent {
                kind,
                members: e.members.into_iter().map(user).collect::<Result<_, _>>()?,
                name: e.name,
                avatar: e.avatar,
                announcement: e.announcement,
                role: role_of(e.role),
                muted_until_ms: e.muted_until_ms,
                mute_all: e.mute_all,
                history_visibility: history_of(e.history_visibility).unwrap_or_default(),
            })
        }
        Body::Recall(r) => Content::Recall(Recall {
            message_id: MessageId(r.message_id),
            seq: r.seq,
        }),
        Body::Edit(e) => Content::Edit(Edit {
            message_id: MessageId(e.message_id),
            seq: e.seq,
            content: Box::new(match e.content {
                Some(c) => content_of(*c)?,
                None => Content::Empty,
            }),
        }),
        Body::ReadMark(r) => Content::ReadMark(ReadMark {
            conversation: conversation(r.conversation_id)?,
            read_seq: r.read_seq,
        }),
        Body::ConversationFlags(f) => Content::ConversationFlags(ConversationFlags {
            conversation: conversation(f.conversation_id)?,
            pinned: f.pinned,
            muted: f.muted,
        }),
        Body::FriendEvent(f) => {
            let Some(kind) = friend_event_kind_of(f.kind) else {
                return Ok(Content::Empty);
            };
            Content::FriendEvent(FriendEvent {
                kind,
                user: user(f.user_id)?,
                message: f.message,
                remark: f.remark,
            })
        }
        Body::ProfileChanged(p) => {
            let w = p
                .profile
                .ok_or_else(|| WireError("a profile change without its profile".into()))?;
            Content::ProfileChanged(ProfileChanged {
                profile: Profile {
                    user: user(w.user_id)?,
                    nickname: w.nickname,
                    avatar: w.avatar,
                    signature: w.signature,
                    extra: w.extra,
                    updated_ms: w.updated_ms,
                },
                stranger_policy: policy_of(p.stranger_policy),
            })
        }
        Body::BlockChanged(b) => Content::BlockChanged(BlockChanged {
            user: user(b.user_id)?,
            blocked: b.blocked,
        }),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::codes;

    #[test]
    fn every_body_survives_the_wire() {
        for c in codes::content::samples() {
            assert_eq!(content_of(content(&c)).unwrap(), c);
        }
    }

    /// The stored schema and the protocol are separate, but today they encode alike: this is
    /// what let data directories keep their bytes. If the protocol changes, this test changes
    /// and the stored schema does not.
    #[test]
    fn stored_and_wire_bytes_agree_today() {
        for c in codes::content::samples() {
            assert_eq!(
                content(&c).encode_to_vec(),
                codes::content::encode(&c),
                "{c:?}"
            );
        }
    }

    #[test]
    fn clients_send_only_client_bodies() {
        let event = pb::Content {
            body: Some(pb::content::Body::Recall(pb::Recall::default())),
        };
        assert!(matches!(
            sent_content(event),
            Err(ServiceError::InvalidContent(
                "events and notices are written by the server"
            ))
        ));
        let text = pb::Content {
            body: Some(pb::content::Body::Text(pb::Text { text: "hi".into() })),
        };
        assert_eq!(sent_content(text).ok(), Some(Content::text("hi")));
    }

    #[test]
    fn enums_map_both_ways() {
        for r in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(role_of(role(r) as i32), Some(r));
        }
        assert_eq!(role_of(0), None);
        for h in [HistoryVisibility::FromJoin, HistoryVisibility::Full] {
            assert_eq!(history_of(history(h) as i32), Some(h));
        }
        for p in [StrangerPolicy::Anyone, StrangerPolicy::FriendsOnly] {
            assert_eq!(policy_of(policy(p) as i32), p);
        }
        for p in [
            Platform::Unspecified,
            Platform::Ios,
            Platform::Android,
            Platform::Web,
            Platform::Desktop,
            Platform::Cli,
        ] {
            assert_eq!(platform_of(platform(p)), p);
        }
    }
}
