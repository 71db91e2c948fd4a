//! How every store encodes [`Content`]: a protobuf message whose schema Tern defines here and
//! never changes incompatibly. It is not the wire protocol's `Content`, though today the two
//! have the same fields and numbers (that is what the stores held before this schema existed,
//! so data directories needed no migration); a future protocol may renumber its own freely.
//!
//! The schema, by field number (all proto3 scalars; absent means the default):
//!
//! | content body | number | fields |
//! |---|---|---|
//! | text | 1 | 1 text |
//! | image | 2 | 1 file_id, 2 url, 3 width, 4 height, 5 size, 6 mime, 7 thumb_width, 8 thumb_height |
//! | file | 3 | 1 file_id, 2 url, 3 name, 4 size, 5 mime |
//! | custom | 4 | 1 kind, 2 data |
//! | group event | 5 | 1 kind ([`group_event_kind`]), 2 members, 3 name, 4 avatar, 5 announcement, 6 role ([`super::role`], 0 none), 7 muted_until_ms, 8 mute_all, 9 history ([`super::history`]) |
//! | recall | 6 | 1 message_id, 2 seq |
//! | edit | 7 | 1 message_id, 2 seq, 3 content (this schema, nested) |
//! | read mark | 8 | 1 conversation_id, 2 read_seq |
//! | conversation flags | 9 | 1 conversation_id, 2 pinned, 3 muted |
//! | friend event | 10 | 1 kind ([`friend_event_kind`]), 2 user_id, 3 message, 4 remark |
//! | profile changed | 11 | 1 profile (1 user_id, 2 nickname, 3 avatar, 4 signature, 5 extra, 6 updated_ms), 2 stranger policy ([`super::policy`]) |
//! | block changed | 12 | 1 user_id, 2 blocked |
//!
//! A body or an event kind this build does not know (written by a newer one) reads as
//! [`Content::Empty`], as an unknown field always has; ids that do not parse are corrupt data.

use prost::Message as _;

use crate::{
    ConversationId, MessageId, UserId,
    content::{
        BlockChanged, Content, ConversationFlags, Custom, Edit, File, FriendEvent, FriendEventKind,
        GroupEvent, GroupEventKind, Image, ProfileChanged, ReadMark, Recall, Text,
    },
    social::Profile,
};

/// The stored number of a group event kind (`group_event.kind`).
pub fn group_event_kind(k: GroupEventKind) -> i32 {
    use GroupEventKind::*;
    match k {
        Created => 1,
        MembersAdded => 2,
        MembersRemoved => 3,
        MemberLeft => 4,
        Renamed => 5,
        AvatarChanged => 6,
        AnnouncementChanged => 7,
        RoleChanged => 8,
        OwnerTransferred => 9,
        MemberMuted => 10,
        MuteAllChanged => 11,
        HistoryVisibilityChanged => 12,
        Dissolved => 13,
    }
}

/// The group event kind stored as `code`; `None` for a number this build does not know.
pub fn group_event_kind_of(code: i32) -> Option<GroupEventKind> {
    use GroupEventKind::*;
    Some(match code {
        1 => Created,
        2 => MembersAdded,
        3 => MembersRemoved,
        4 => MemberLeft,
        5 => Renamed,
        6 => AvatarChanged,
        7 => AnnouncementChanged,
        8 => RoleChanged,
        9 => OwnerTransferred,
        10 => MemberMuted,
        11 => MuteAllChanged,
        12 => HistoryVisibilityChanged,
        13 => Dissolved,
        _ => return None,
    })
}

/// The stored number of a friend event kind (`friend_event.kind`).
pub fn friend_event_kind(k: FriendEventKind) -> i32 {
    match k {
        FriendEventKind::Requested => 1,
        FriendEventKind::Added => 2,
        FriendEventKind::Declined => 3,
        FriendEventKind::Removed => 4,
        FriendEventKind::Remarked => 5,
    }
}

/// The friend event kind stored as `code`; `None` for a number this build does not know.
pub fn friend_event_kind_of(code: i32) -> Option<FriendEventKind> {
    Some(match code {
        1 => FriendEventKind::Requested,
        2 => FriendEventKind::Added,
        3 => FriendEventKind::Declined,
        4 => FriendEventKind::Removed,
        5 => FriendEventKind::Remarked,
        _ => return None,
    })
}

/// Content as stored.
pub fn encode(content: &Content) -> Vec<u8> {
    to_stored(content).encode_to_vec()
}

/// The length of `content` as stored, which is the measure of the content size limit.
pub fn encoded_len(content: &Content) -> usize {
    to_stored(content).encoded_len()
}

/// Content read back from `bytes`; the error says what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Content, String> {
    let stored = StoredContent::decode(bytes).map_err(|e| e.to_string())?;
    from_stored(stored)
}

fn to_stored(content: &Content) -> StoredContent {
    let body = match content {
        Content::Empty => None,
        Content::Text(t) => Some(Body::Text(SText {
            text: t.text.clone(),
        })),
        Content::Image(i) => Some(Body::Image(SImage {
            file_id: i.file_id.clone(),
            url: i.url.clone(),
            width: i.width,
            height: i.height,
            size: i.size,
            mime: i.mime.clone(),
            thumb_width: i.thumb_width,
            thumb_height: i.thumb_height,
        })),
        Content::File(f) => Some(Body::File(SFile {
            file_id: f.file_id.clone(),
            url: f.url.clone(),
            name: f.name.clone(),
            size: f.size,
            mime: f.mime.clone(),
        })),
        Content::Custom(c) => Some(Body::Custom(SCustom {
            kind: c.kind.clone(),
            data: c.data.clone(),
        })),
        Content::GroupEvent(e) => Some(Body::GroupEvent(SGroupEvent {
            kind: group_event_kind(e.kind),
            members: e.members.iter().map(|m| m.as_str().to_owned()).collect(),
            name: e.name.clone(),
            avatar: e.avatar.clone(),
            announcement: e.announcement.clone(),
            role: e.role.map_or(0, |r| super::role(r) as i32),
            muted_until_ms: e.muted_until_ms,
            mute_all: e.mute_all,
            history_visibility: super::history(e.history_visibility) as i32,
        })),
        Content::Recall(r) => Some(Body::Recall(SRecall {
            message_id: r.message_id.0,
            seq: r.seq,
        })),
        Content::Edit(e) => Some(Body::Edit(Box::new(SEdit {
            message_id: e.message_id.0,
            seq: e.seq,
            content: match &*e.content {
                Content::Empty => None,
                c => Some(Box::new(to_stored(c))),
            },
        }))),
        Content::ReadMark(r) => Some(Body::ReadMark(SReadMark {
            conversation_id: r.conversation.as_str().to_owned(),
            read_seq: r.read_seq,
        })),
        Content::ConversationFlags(f) => Some(Body::ConversationFlags(SConversationFlags {
            conversation_id: f.conversation.as_str().to_owned(),
            pinned: f.pinned,
            muted: f.muted,
        })),
        Content::FriendEvent(f) => Some(Body::FriendEvent(SFriendEvent {
            kind: friend_event_kind(f.kind),
            user_id: f.user.as_str().to_owned(),
            message: f.message.clone(),
            remark: f.remark.clone(),
        })),
        Content::ProfileChanged(p) => Some(Body::ProfileChanged(SProfileChanged {
            profile: Some(SProfile {
                user_id: p.profile.user.as_str().to_owned(),
                nickname: p.profile.nickname.clone(),
                avatar: p.profile.avatar.clone(),
                signature: p.profile.signature.clone(),
                extra: p.profile.extra.clone(),
                updated_ms: p.profile.updated_ms,
            }),
            stranger_policy: super::policy(p.stranger_policy) as i32,
        })),
        Content::BlockChanged(b) => Some(Body::BlockChanged(SBlockChanged {
            user_id: b.user.as_str().to_owned(),
            blocked: b.blocked,
        })),
    };
    StoredContent { body }
}

fn user(s: String) -> Result<UserId, String> {
    UserId::parse(&s).map_err(|_| format!("user id {s:?} does not parse"))
}

fn conversation(s: String) -> Result<ConversationId, String> {
    ConversationId::parse(&s)
        .map(|(c, _)| c)
        .map_err(|_| format!("conversation id {s:?} does not parse"))
}

fn from_stored(stored: StoredContent) -> Result<Content, String> {
    let Some(body) = stored.body else {
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
        Body::Custom(c) => Content::Custom(Custom {
            kind: c.kind,
            data: c.data,
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
                role: super::role_of(i64::from(e.role)),
                muted_until_ms: e.muted_until_ms,
                mute_all: e.mute_all,
                history_visibility: super::history_of(i64::from(e.history_visibility))
                    .unwrap_or_default(),
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
                Some(c) => from_stored(*c)?,
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
            let profile = p
                .profile
                .ok_or_else(|| "a profile change without its profile".to_owned())?;
            Content::ProfileChanged(ProfileChanged {
                profile: Profile {
                    user: user(profile.user_id)?,
                    nickname: profile.nickname,
                    avatar: profile.avatar,
                    signature: profile.signature,
                    extra: profile.extra,
                    updated_ms: profile.updated_ms,
                },
                stranger_policy: super::policy_of(i64::from(p.stranger_policy)),
            })
        }
        Body::BlockChanged(b) => Content::BlockChanged(BlockChanged {
            user: user(b.user_id)?,
            blocked: b.blocked,
        }),
    })
}

// The stored schema. Field numbers are forever: add fields, never renumber or reuse one.

#[derive(Clone, PartialEq, prost::Message)]
struct StoredContent {
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Body {
    #[prost(message, tag = "1")]
    Text(SText),
    #[prost(message, tag = "2")]
    Image(SImage),
    #[prost(message, tag = "3")]
    File(SFile),
    #[prost(message, tag = "4")]
    Custom(SCustom),
    #[prost(message, tag = "5")]
    GroupEvent(SGroupEvent),
    #[prost(message, tag = "6")]
    Recall(SRecall),
    #[prost(message, tag = "7")]
    Edit(Box<SEdit>),
    #[prost(message, tag = "8")]
    ReadMark(SReadMark),
    #[prost(message, tag = "9")]
    ConversationFlags(SConversationFlags),
    #[prost(message, tag = "10")]
    FriendEvent(SFriendEvent),
    #[prost(message, tag = "11")]
    ProfileChanged(SProfileChanged),
    #[prost(message, tag = "12")]
    BlockChanged(SBlockChanged),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SText {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SImage {
    #[prost(string, tag = "1")]
    file_id: String,
    #[prost(string, tag = "2")]
    url: String,
    #[prost(uint32, tag = "3")]
    width: u32,
    #[prost(uint32, tag = "4")]
    height: u32,
    #[prost(uint64, tag = "5")]
    size: u64,
    #[prost(string, tag = "6")]
    mime: String,
    #[prost(uint32, tag = "7")]
    thumb_width: u32,
    #[prost(uint32, tag = "8")]
    thumb_height: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SFile {
    #[prost(string, tag = "1")]
    file_id: String,
    #[prost(string, tag = "2")]
    url: String,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint64, tag = "4")]
    size: u64,
    #[prost(string, tag = "5")]
    mime: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SCustom {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    data: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SGroupEvent {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(string, repeated, tag = "2")]
    members: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    avatar: String,
    #[prost(string, tag = "5")]
    announcement: String,
    #[prost(int32, tag = "6")]
    role: i32,
    #[prost(int64, tag = "7")]
    muted_until_ms: i64,
    #[prost(bool, tag = "8")]
    mute_all: bool,
    #[prost(int32, tag = "9")]
    history_visibility: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SRecall {
    #[prost(uint64, tag = "1")]
    message_id: u64,
    #[prost(uint64, tag = "2")]
    seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SEdit {
    #[prost(uint64, tag = "1")]
    message_id: u64,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(message, optional, boxed, tag = "3")]
    content: Option<Box<StoredContent>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SReadMark {
    #[prost(string, tag = "1")]
    conversation_id: String,
    #[prost(uint64, tag = "2")]
    read_seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SConversationFlags {
    #[prost(string, tag = "1")]
    conversation_id: String,
    #[prost(bool, tag = "2")]
    pinned: bool,
    #[prost(bool, tag = "3")]
    muted: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SFriendEvent {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(string, tag = "2")]
    user_id: String,
    #[prost(string, tag = "3")]
    message: String,
    #[prost(string, tag = "4")]
    remark: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SProfile {
    #[prost(string, tag = "1")]
    user_id: String,
    #[prost(string, tag = "2")]
    nickname: String,
    #[prost(string, tag = "3")]
    avatar: String,
    #[prost(string, tag = "4")]
    signature: String,
    #[prost(string, tag = "5")]
    extra: String,
    #[prost(int64, tag = "6")]
    updated_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SProfileChanged {
    #[prost(message, optional, tag = "1")]
    profile: Option<SProfile>,
    #[prost(int32, tag = "2")]
    stranger_policy: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SBlockChanged {
    #[prost(string, tag = "1")]
    user_id: String,
    #[prost(bool, tag = "2")]
    blocked: bool,
}

/// One sample of every body, for the round trips of both encodings (here and in `wire`).
#[cfg(test)]
pub(crate) fn samples() -> Vec<Content> {
    let u = |s: &str| UserId::parse(s).expect("a valid user id");
    let (a, b) = (u("alice"), u("bob"));
    let direct = ConversationId::direct(&a, &b);
    let mut group = GroupEvent::new(GroupEventKind::Created);
    group.members = vec![a.clone(), b.clone()];
    group.name = "team".into();
    group.avatar = "tf_1".into();
    group.announcement = "hello".into();
    group.history_visibility = crate::groups::HistoryVisibility::Full;
    let mut role = GroupEvent::new(GroupEventKind::RoleChanged);
    role.members = vec![b.clone()];
    role.role = Some(crate::groups::Role::Admin);
    let mut muted = GroupEvent::new(GroupEventKind::MemberMuted);
    muted.muted_until_ms = 1_700_000_000_000;
    muted.mute_all = true;
    vec![
        Content::Empty,
        Content::text("héllo"),
        Content::Image(Image {
            file_id: "tf_2".into(),
            url: "https://example.com/a.png".into(),
            width: 640,
            height: 480,
            size: 12_345,
            mime: "image/png".into(),
            thumb_width: 64,
            thumb_height: 48,
        }),
        Content::File(File {
            file_id: "tf_3".into(),
            url: String::new(),
            name: "report.pdf".into(),
            size: 99,
            mime: "application/pdf".into(),
        }),
        Content::Custom(Custom {
            kind: "poll".into(),
            data: "{\"q\":1}".into(),
        }),
        Content::GroupEvent(group),
        Content::GroupEvent(role),
        Content::GroupEvent(muted),
        Content::Recall(Recall {
            message_id: MessageId(7),
            seq: 3,
        }),
        Content::Edit(Edit {
            message_id: MessageId(8),
            seq: 4,
            content: Box::new(Content::text("fixed")),
        }),
        Content::Edit(Edit {
            message_id: MessageId(9),
            seq: 5,
            content: Box::new(Content::Empty),
        }),
        Content::ReadMark(ReadMark {
            conversation: direct.clone(),
            read_seq: 12,
        }),
        Content::ConversationFlags(ConversationFlags {
            conversation: direct,
            pinned: true,
            muted: false,
        }),
        Content::FriendEvent(FriendEvent {
            kind: FriendEventKind::Requested,
            user: b.clone(),
            message: "hi".into(),
            remark: String::new(),
        }),
        Content::ProfileChanged(ProfileChanged {
            profile: Profile {
                user: a,
                nickname: "Al".into(),
                avatar: String::new(),
                signature: "sig".into(),
                extra: "{}".into(),
                updated_ms: 5,
            },
            stranger_policy: crate::social::StrangerPolicy::FriendsOnly,
        }),
        Content::BlockChanged(BlockChanged {
            user: b,
            blocked: true,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_survives_the_store() {
        for c in samples() {
            assert_eq!(decode(&encode(&c)).unwrap(), c);
        }
    }

    /// Stored bytes are forever: these are the bytes today's stores hold.
    #[test]
    fn stored_bytes_do_not_change() {
        assert_eq!(
            encode(&Content::text("hi")),
            [0x0a, 0x04, 0x0a, 0x02, b'h', b'i']
        );
        let mut e = GroupEvent::new(GroupEventKind::RoleChanged);
        e.role = Some(crate::groups::Role::Owner);
        assert_eq!(
            encode(&Content::GroupEvent(e)),
            [0x2a, 0x04, 0x08, 8, 0x30, 3]
        );
        assert_eq!(
            encode(&Content::Recall(Recall {
                message_id: MessageId(5),
                seq: 2
            })),
            [0x32, 0x04, 0x08, 5, 0x10, 2]
        );
        assert_eq!(
            [1, 13].map(|c| group_event_kind_of(c).map(group_event_kind)),
            [Some(1), Some(13)]
        );
        assert_eq!(friend_event_kind(FriendEventKind::Remarked), 5);
    }

    #[test]
    fn what_a_newer_build_wrote_reads_as_empty() {
        // A group event of kind 99, and a body numbered 40.
        assert_eq!(decode(&[0x2a, 0x02, 0x08, 99]).unwrap(), Content::Empty);
        assert_eq!(decode(&[0xc2, 0x02, 0x00]).unwrap(), Content::Empty);
    }

    #[test]
    fn ids_that_do_not_parse_are_corrupt() {
        // A block notice naming the user "" .
        assert!(decode(&[0x62, 0x02, 0x10, 0x01]).is_err());
        assert!(decode(&[0xff]).is_err());
    }
}
