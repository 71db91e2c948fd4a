//! Message content as the domain knows it: the bodies a client sends (text, image, file,
//! custom) and the events the server writes into timelines (group changes, recalls, edits,
//! read marks, list flags, friend, profile and block notices).
//!
//! These are Tern's own types, not the protocol's: each front door maps its wire form to them
//! (`tern_api::wire`), and each store encodes them with [`crate::codes::content`], whose
//! numbers Tern defines. A protocol change therefore never changes what a stored message means.

use crate::{
    groups::{HistoryVisibility, Role},
    ids::{ConversationId, MessageId, UserId},
    social::{Profile, StrangerPolicy},
};

/// What a message or event says.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Content {
    /// No body: what a recalled message keeps, and what a body this build cannot read becomes.
    #[default]
    Empty,
    /// Plain text.
    Text(Text),
    /// A picture stored out of band.
    Image(Image),
    /// A file stored out of band.
    File(File),
    /// Application-defined content, stored and relayed untouched.
    Custom(Custom),
    /// In a group's timeline: a change to the group.
    GroupEvent(GroupEvent),
    /// In a conversation: a message was recalled.
    Recall(Recall),
    /// In a conversation: a message was edited.
    Edit(Edit),
    /// In a user's notice timeline: the user read a conversation.
    ReadMark(ReadMark),
    /// In a user's notice timeline: the user pinned or muted a conversation.
    ConversationFlags(ConversationFlags),
    /// In a user's notice timeline: a friend request, answer, removal or remark.
    FriendEvent(FriendEvent),
    /// In a user's notice timeline: the user changed its profile or settings.
    ProfileChanged(ProfileChanged),
    /// In a user's notice timeline: the user blocked or unblocked someone.
    BlockChanged(BlockChanged),
}

impl Content {
    /// Text content.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text(Text { text: text.into() })
    }

    /// Whether a client may send this body (the others are written by the server only).
    pub fn is_client_body(&self) -> bool {
        matches!(
            self,
            Content::Text(_) | Content::Image(_) | Content::File(_) | Content::Custom(_)
        )
    }
}

/// Plain text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    /// UTF-8 text.
    pub text: String,
}

/// A picture: a file of this server (`tf_…`) or of the app's own, or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    /// A file id.
    pub file_id: String,
    /// Or a URL.
    pub url: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Bytes.
    pub size: u64,
    /// Media type.
    pub mime: String,
    /// The smallest thumbnail's width.
    pub thumb_width: u32,
    /// The smallest thumbnail's height.
    pub thumb_height: u32,
}

/// A file: by file id or URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct File {
    /// A file id.
    pub file_id: String,
    /// Or a URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Media type.
    pub mime: String,
}

/// Application-defined content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custom {
    /// The application's kind, 1 to 64 bytes.
    pub kind: String,
    /// The application's data.
    pub data: String,
}

/// What changed in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupEventKind {
    /// The group was created.
    Created,
    /// Members joined.
    MembersAdded,
    /// Members were removed.
    MembersRemoved,
    /// A member left.
    MemberLeft,
    /// The name changed.
    Renamed,
    /// The avatar changed.
    AvatarChanged,
    /// The announcement changed.
    AnnouncementChanged,
    /// A member's role changed.
    RoleChanged,
    /// The ownership moved.
    OwnerTransferred,
    /// A member was muted or unmuted.
    MemberMuted,
    /// Everyone was muted or unmuted.
    MuteAllChanged,
    /// Who may read the history changed.
    HistoryVisibilityChanged,
    /// The group was dissolved.
    Dissolved,
}

/// A change to a group, recorded in its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEvent {
    /// What changed.
    pub kind: GroupEventKind,
    /// The members added, removed or left; for a role change, a mute and an ownership
    /// transfer, the member concerned.
    pub members: Vec<UserId>,
    /// Created and renamed.
    pub name: String,
    /// Created and avatar changed.
    pub avatar: String,
    /// Created and announcement changed.
    pub announcement: String,
    /// Role changed: the member's new role.
    pub role: Option<Role>,
    /// Member muted: until then (Unix ms); 0 lifts the mute.
    pub muted_until_ms: i64,
    /// Mute all changed.
    pub mute_all: bool,
    /// Created and history visibility changed.
    pub history_visibility: HistoryVisibility,
}

impl GroupEvent {
    /// An event of `kind` with every other field empty.
    pub fn new(kind: GroupEventKind) -> Self {
        Self {
            kind,
            members: Vec::new(),
            name: String::new(),
            avatar: String::new(),
            announcement: String::new(),
            role: None,
            muted_until_ms: 0,
            mute_all: false,
            history_visibility: HistoryVisibility::default(),
        }
    }
}

/// The message `message_id` (at `seq` of the same conversation) was recalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recall {
    /// The message.
    pub message_id: MessageId,
    /// Its seq.
    pub seq: u64,
}

/// The message `message_id` (at `seq` of the same conversation) now says `content`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The message.
    pub message_id: MessageId,
    /// Its seq.
    pub seq: u64,
    /// The new content; [`Content::Empty`] where a summary leaves it out.
    pub content: Box<Content>,
}

/// The event's sender read `conversation` up to `read_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    /// The conversation read.
    pub conversation: ConversationId,
    /// Up to here.
    pub read_seq: u64,
}

/// The event's sender changed how `conversation` shows in its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationFlags {
    /// The conversation.
    pub conversation: ConversationId,
    /// Pinned to the top.
    pub pinned: bool,
    /// Muted.
    pub muted: bool,
}

/// What happened between two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendEventKind {
    /// The event's sender asked `user` to be friends.
    Requested,
    /// The two are now friends.
    Added,
    /// The event's sender declined the request of `user`.
    Declined,
    /// The two are no longer friends.
    Removed,
    /// The event's sender set its remark for `user`.
    Remarked,
}

/// A friend notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendEvent {
    /// What happened.
    pub kind: FriendEventKind,
    /// The other user.
    pub user: UserId,
    /// Requested: the request's message.
    pub message: String,
    /// Remarked: the new remark.
    pub remark: String,
}

/// The event's sender changed its profile or settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChanged {
    /// The profile now.
    pub profile: Profile,
    /// Who may message the user now.
    pub stranger_policy: StrangerPolicy,
}

/// The event's sender blocked or unblocked `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockChanged {
    /// The other user.
    pub user: UserId,
    /// Blocked now.
    pub blocked: bool,
}
