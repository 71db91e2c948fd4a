//! The errors of the service layer and of the storage traits beneath it.

use crate::ids::UserId;

/// Why a storage call failed, classed by what a caller can do about it. Backends map their own
/// errors into these cases; the services never see a backend's types.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed what this write depended on (a serialization failure, a lost
    /// race on a unique key): nothing was written; the same write, retried from the start,
    /// may succeed.
    #[error("store conflict: {0}")]
    Conflict(String),
    /// The store cannot serve the call now (I/O error, closed, busy, a connection lost).
    /// Nothing is known to be written; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Something the call needs does not exist, where absence is an error rather than an
    /// answer. Retrying will not help.
    #[error("not found in the store: {0}")]
    NotFound(String),
    /// The store holds data the backend cannot read back, or was written by a newer build.
    /// Retrying will not help.
    #[error("store data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same call may succeed if made again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Unavailable(_))
    }
}

/// Why a rule refused a write. Rules are pure decisions in core, run where the write is
/// committed; a refused write stores nothing. Each becomes the [`ServiceError`] of the same name
/// at the service, so a backend's outcome never speaks in service terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A user the write names does not exist.
    #[error("user {0} does not exist")]
    UnknownUser(UserId),
    /// The caller is not in the conversation or group.
    #[error("no such conversation for this user")]
    NotAParticipant,
    /// The recipient does not accept this from the caller.
    #[error("the recipient does not accept this")]
    NotAccepted,
    /// No pending friend request to answer.
    #[error("there is no pending friend request from that user")]
    RequestNotFound,
    /// A field out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller's role does not allow it.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The sender is muted.
    #[error("you are muted in this group")]
    Muted,
    /// The group was dissolved.
    #[error("the group was dissolved")]
    GroupDissolved,
    /// The group would grow past its limit.
    #[error("a group has at most {max} members")]
    GroupFull {
        /// The limit.
        max: usize,
    },
    /// The owner asked to leave.
    #[error("the owner cannot leave; transfer ownership or dissolve the group first")]
    OwnerCannotLeave,
    /// The message does not exist or is not the caller's to see.
    #[error("no such message")]
    MessageNotFound,
    /// Too late to recall or edit.
    #[error("the {what} window of {minutes} minutes has passed")]
    WindowPassed {
        /// "recall" or "edit".
        what: &'static str,
        /// The window's length.
        minutes: u64,
    },
    /// The message cannot be edited.
    #[error("this message cannot be edited: {0}")]
    NotEditable(&'static str),
    /// A client message id reused for a different message.
    #[error("this client message id was already used for a different message")]
    ClientMsgIdReused,
}

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::UnknownUser(u) => ServiceError::UnknownUser(u),
            Refusal::NotAParticipant => ServiceError::NotAParticipant,
            Refusal::NotAccepted => ServiceError::NotAccepted,
            Refusal::RequestNotFound => ServiceError::RequestNotFound,
            Refusal::InvalidArgument(m) => ServiceError::InvalidArgument(m),
            Refusal::PermissionDenied(m) => ServiceError::PermissionDenied(m),
            Refusal::Muted => ServiceError::Muted,
            Refusal::GroupDissolved => ServiceError::GroupDissolved,
            Refusal::GroupFull { max } => ServiceError::GroupFull { max },
            Refusal::OwnerCannotLeave => ServiceError::OwnerCannotLeave,
            Refusal::MessageNotFound => ServiceError::MessageNotFound,
            Refusal::WindowPassed { what, minutes } => ServiceError::WindowPassed { what, minutes },
            Refusal::NotEditable(m) => ServiceError::NotEditable(m),
            Refusal::ClientMsgIdReused => ServiceError::ClientMsgIdReused,
        }
    }
}

/// Why a service refused or failed a request. The gateway maps each case to one wire error
/// code at its boundary; the messages here are safe to show to the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A user id is empty, too long, or uses characters outside `[A-Za-z0-9_.@-]`.
    #[error("user id must be 1 to 64 characters from [A-Za-z0-9_.@-]")]
    InvalidUserId,
    /// A device id is empty, too long, or uses characters outside `[A-Za-z0-9_.:-]`.
    #[error("device id must be 1 to 64 characters from [A-Za-z0-9_.:-]")]
    InvalidDevice,
    /// A password is outside 8..=256 bytes.
    #[error("password must be 8 to 256 bytes")]
    InvalidPassword,
    /// Registration of a user id that exists.
    #[error("user id is already registered")]
    UserExists,
    /// Unknown user or wrong password; deliberately not saying which.
    #[error("wrong user id or password")]
    AuthFailed,
    /// The token is unknown, revoked, expired, or belongs to another user or device.
    #[error("token is invalid, revoked or expired")]
    TokenInvalid,
    /// The account is disabled.
    #[error("this account is disabled")]
    UserDisabled,
    /// A message addressed to a user that does not exist.
    #[error("user {0} does not exist")]
    UnknownUser(UserId),
    /// Content whose encoding exceeds the configured limit.
    #[error("content is {len} bytes; the limit is {max}")]
    ContentTooLarge {
        /// The encoded size of the content.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Content that is missing, empty or malformed.
    #[error("invalid content: {0}")]
    InvalidContent(&'static str),
    /// Text with a word of the content filter's list, which refuses it.
    #[error("the text contains a word this server does not accept")]
    ContentRejected,
    /// A client message id outside 1..=64 bytes.
    #[error("client message id must be 1 to 64 bytes")]
    InvalidClientMsgId,
    /// A conversation that does not exist or that the user is not part of.
    #[error("no such conversation for this user")]
    NotAParticipant,
    /// Any other field out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A message that does not exist, or that the caller is not a participant of.
    #[error("no such message")]
    MessageNotFound,
    /// A recall or edit after its window.
    #[error("the {what} window of {minutes} minutes has passed")]
    WindowPassed {
        /// "recall" or "edit".
        what: &'static str,
        /// The window's length.
        minutes: u64,
    },
    /// An edit of a recalled message or of an event.
    #[error("this message cannot be edited: {0}")]
    NotEditable(&'static str),
    /// The recipient refuses this from the caller (blocked, or friends only). Says no more.
    #[error("the recipient does not accept this")]
    NotAccepted,
    /// A send whose client message id the sender already used for another message (another
    /// conversation, or other content): a retry must repeat the request unchanged.
    #[error(
        "this client message id was already used for a different message; a retry must repeat the same target and content, a new message needs a new id"
    )]
    ClientMsgIdReused,
    /// A friend response without a pending request.
    #[error("there is no pending friend request from that user")]
    RequestNotFound,
    /// The caller's role in the group does not allow the change.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The sender is muted in the group, or the group is muted for plain members.
    #[error("you are muted in this group")]
    Muted,
    /// The group was dissolved.
    #[error("the group was dissolved")]
    GroupDissolved,
    /// The group would exceed its member limit.
    #[error("a group has at most {max} members")]
    GroupFull {
        /// The limit.
        max: usize,
    },
    /// The owner asked to leave.
    #[error("the owner cannot leave; transfer ownership or dissolve the group first")]
    OwnerCannotLeave,
    /// The app's before-send hook refused the message: `code` is the app's own (within
    /// `before_send::APP_CODES`), or none for `REJECTED_BY_APP`.
    #[error("{message}")]
    RejectedByApp {
        /// The app's code.
        code: Option<u32>,
        /// What the app tells the sender.
        message: String,
    },
    /// No such file, or not one the caller may read.
    #[error("no such file")]
    FileNotFound,
    /// The upload is over the size limit.
    #[error("the file is {size} bytes; the limit is {max}")]
    FileTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The upload would take its owner past the quota.
    #[error("your files would take more than your quota of {max} bytes")]
    QuotaExceeded {
        /// The quota.
        max: u64,
    },
    /// The app's before-send hook did not answer, and the server is set to refuse unchecked
    /// messages. Retryable.
    #[error("the app's check of messages is not answering; retry later")]
    HookUnavailable,
    /// The server is shutting down and takes no new work.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The commit queue is full: the store is not keeping up. Retry after a pause.
    #[error("the server is overloaded; retry after a pause")]
    Overloaded,
    /// Too many requests of a limited kind (typing signals, failed logins, registrations from
    /// one address, connections).
    #[error("too many {what}; retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// What was limited, for the message.
        what: &'static str,
        /// When the same request may succeed.
        retry_after: std::time::Duration,
    },
    /// Storage failed; see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an impossible state; the details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}
