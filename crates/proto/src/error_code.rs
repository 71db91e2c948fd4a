//! The stable error codes every error response carries. Codes never change meaning.

/// An error code of the wire protocol, grouped by thousands: 1xxx framing and protocol,
/// 2xxx accounts and sessions, 3xxx messages and sync, 4xxx groups, 5xxx server-side conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// The frame's length field is shorter than the header; the connection is closed.
    BadFrame = 1000,
    /// The frame exceeds the server's maximum frame length; the connection is closed.
    FrameTooLarge = 1001,
    /// The frame's version is newer than the server speaks.
    UnsupportedVersion = 1002,
    /// The frame's type is not a known message type.
    UnknownType = 1003,
    /// The payload does not decode as the message the type announces.
    MalformedPayload = 1004,
    /// The frame sets a reserved or unsupported flag bit.
    UnsupportedFlags = 1005,
    /// The frame is a response, or of a type only the server sends.
    NotARequest = 1006,
    /// The request needs a logged-in connection.
    NotLoggedIn = 2000,
    /// Wrong user id or password. Deliberately does not say which.
    AuthFailed = 2001,
    /// The token is unknown, revoked or expired.
    TokenInvalid = 2002,
    /// REGISTER with a user id that is taken.
    UserExists = 2003,
    /// The user id is empty, too long or has characters outside `[A-Za-z0-9_.@-]`.
    InvalidUserId = 2004,
    /// The password is shorter than 8 or longer than 256 bytes.
    InvalidPassword = 2005,
    /// LOGIN on a connection that is already logged in.
    AlreadyLoggedIn = 2006,
    /// The device id is empty, too long or has characters outside `[A-Za-z0-9_.:-]`.
    InvalidDevice = 2007,
    /// The connection did not log in within the login timeout; it is closed.
    LoginTimeout = 2008,
    /// The account was disabled by an administrator: it cannot log in (and was disconnected).
    UserDisabled = 2009,
    /// The receiving user does not exist.
    UnknownUser = 3000,
    /// The content exceeds the server's size limit.
    ContentTooLarge = 3001,
    /// The content is missing, empty, or of a kind the server does not accept.
    InvalidContent = 3002,
    /// The client message id is empty or longer than 64 bytes.
    InvalidClientMsgId = 3003,
    /// The conversation does not exist or the user is not part of it.
    NotAParticipant = 3004,
    /// A request field is out of range or missing.
    InvalidArgument = 3005,
    /// RECALL or EDIT of a message that does not exist or that the caller cannot see.
    MessageNotFound = 3006,
    /// RECALL or EDIT after the window for it has passed.
    WindowPassed = 3007,
    /// EDIT of a recalled message, or of a message that cannot be edited (an event).
    NotEditable = 3008,
    /// The recipient does not accept this from the caller (a block or a friends-only policy;
    /// deliberately not saying which).
    NotAccepted = 3009,
    /// FRIEND_RESPOND without a pending request from that user.
    RequestNotFound = 3010,
    /// SEND reusing a client message id of an earlier message with a different conversation
    /// or content: it is not a retry, and nothing is stored.
    ClientMsgIdReused = 3011,
    /// The text contains a word of the server's content filter, set to refuse.
    ContentRejected = 3012,
    /// The app's before-send hook refused the message. A hook may choose its own code in
    /// 9000–9999 instead; such codes carry this code's name.
    RejectedByApp = 3013,
    /// No such file, or not one the caller may read (the two are not told apart).
    FileNotFound = 3014,
    /// The upload is larger than the server accepts.
    FileTooLarge = 3015,
    /// The upload would take the user's files past their quota.
    QuotaExceeded = 3016,
    /// The caller's role in the group does not allow the change.
    PermissionDenied = 4000,
    /// The sender is muted in the group, or the group is muted for members.
    Muted = 4001,
    /// The group was dissolved: its history can be read, nothing can be sent or changed.
    GroupDissolved = 4002,
    /// The change would take the group past its maximum number of members.
    GroupFull = 4003,
    /// The owner cannot leave; transfer ownership or dissolve the group first.
    OwnerCannotLeave = 4004,
    /// An unexpected server error; details are in the server's log, never in the response.
    Internal = 5000,
    /// The server cannot serve the request right now (for example the store failed); retry.
    Unavailable = 5001,
    /// The server is shutting down; reconnect and retry.
    ShuttingDown = 5002,
    /// Too many requests in flight on this connection; retry after a pause.
    Overloaded = 5003,
    /// The user sent a rate-limited request (such as TYPING) too often; retry after a pause.
    RateLimited = 5004,
}

impl ErrorCode {
    /// Every code, in numeric order (for documentation tests).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::MalformedPayload,
        ErrorCode::UnsupportedFlags,
        ErrorCode::NotARequest,
        ErrorCode::NotLoggedIn,
        ErrorCode::AuthFailed,
        ErrorCode::TokenInvalid,
        ErrorCode::UserExists,
        ErrorCode::InvalidUserId,
        ErrorCode::InvalidPassword,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::InvalidDevice,
        ErrorCode::LoginTimeout,
        ErrorCode::UserDisabled,
        ErrorCode::UnknownUser,
        ErrorCode::ContentTooLarge,
        ErrorCode::InvalidContent,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::NotAParticipant,
        ErrorCode::InvalidArgument,
        ErrorCode::MessageNotFound,
        ErrorCode::WindowPassed,
        ErrorCode::NotEditable,
        ErrorCode::NotAccepted,
        ErrorCode::RequestNotFound,
        ErrorCode::ClientMsgIdReused,
        ErrorCode::ContentRejected,
        ErrorCode::RejectedByApp,
        ErrorCode::FileNotFound,
        ErrorCode::FileTooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::PermissionDenied,
        ErrorCode::Muted,
        ErrorCode::GroupDissolved,
        ErrorCode::GroupFull,
        ErrorCode::OwnerCannotLeave,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::Overloaded,
        ErrorCode::RateLimited,
    ];

    /// The numeric code on the wire.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code for a number, if it is one this crate knows.
    pub fn from_u32(code: u32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_u32() == code)
    }

    /// The stable symbolic name on the wire, e.g. `NOT_LOGGED_IN`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::MalformedPayload => "MALFORMED_PAYLOAD",
            ErrorCode::UnsupportedFlags => "UNSUPPORTED_FLAGS",
            ErrorCode::NotARequest => "NOT_A_REQUEST",
            ErrorCode::NotLoggedIn => "NOT_LOGGED_IN",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::TokenInvalid => "TOKEN_INVALID",
            ErrorCode::UserExists => "USER_EXISTS",
            ErrorCode::InvalidUserId => "INVALID_USER_ID",
            ErrorCode::InvalidPassword => "INVALID_PASSWORD",
            ErrorCode::AlreadyLoggedIn => "ALREADY_LOGGED_IN",
            ErrorCode::InvalidDevice => "INVALID_DEVICE",
            ErrorCode::LoginTimeout => "LOGIN_TIMEOUT",
            ErrorCode::UserDisabled => "USER_DISABLED",
            ErrorCode::UnknownUser => "UNKNOWN_USER",
            ErrorCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ErrorCode::InvalidContent => "INVALID_CONTENT",
            ErrorCode::InvalidClientMsgId => "INVALID_CLIENT_MSG_ID",
            ErrorCode::NotAParticipant => "NOT_A_PARTICIPANT",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::MessageNotFound => "MESSAGE_NOT_FOUND",
            ErrorCode::WindowPassed => "WINDOW_PASSED",
            ErrorCode::NotEditable => "NOT_EDITABLE",
            ErrorCode::NotAccepted => "NOT_ACCEPTED",
            ErrorCode::RequestNotFound => "REQUEST_NOT_FOUND",
            ErrorCode::ClientMsgIdReused => "CLIENT_MSG_ID_REUSED",
            ErrorCode::ContentRejected => "CONTENT_REJECTED",
            ErrorCode::RejectedByApp => "REJECTED_BY_APP",
            ErrorCode::FileNotFound => "FILE_NOT_FOUND",
            ErrorCode::FileTooLarge => "FILE_TOO_LARGE",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Muted => "MUTED",
            ErrorCode::GroupDissolved => "GROUP_DISSOLVED",
            ErrorCode::GroupFull => "GROUP_FULL",
            ErrorCode::OwnerCannotLeave => "OWNER_CANNOT_LEAVE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::RateLimited => "RATE_LIMITED",
        }
    }

    /// Whether the same request may succeed later unchanged.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::ShuttingDown
                | ErrorCode::Overloaded
                | ErrorCode::RateLimited
        )
    }

    /// Whether the server closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame | ErrorCode::FrameTooLarge | ErrorCode::LoginTimeout
        )
    }

    /// The wire payload for this code with a human-readable message.
    pub fn to_error(self, message: impl Into<String>) -> crate::pb::Error {
        crate::pb::Error {
            code: self.as_u32(),
            name: self.name().to_owned(),
            message: message.into(),
            retryable: self.retryable(),
            retry_after_ms: 0,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u32())
    }
}
