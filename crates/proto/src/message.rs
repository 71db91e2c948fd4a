//! The message-type table: which payload each frame type carries, and typed decoding of frames.
//!
//! The table is written once, in the `protocol!` invocation below; the request enum, the
//! server-event enum, the type numbers and their names are all generated from it so they
//! cannot drift apart.

use bytes::Bytes;

use crate::{
    ErrorCode,
    frame::{Flags, Frame, PROTOCOL_VERSION, PacketId},
    payload::{Encoding, Payload, PayloadError, decode_payload, encode_payload},
    pb,
};

/// Why a frame from a client is not a request the server can act on. Each maps to an error
/// code; none of them breaks the stream, so the connection stays open.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The frame's version is newer than [`PROTOCOL_VERSION`] (or zero).
    #[error(
        "protocol version {version} is not supported; this server speaks version {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion {
        /// The version the frame carried.
        version: u16,
    },
    /// The frame sets flag bits outside [`Flags::SUPPORTED`].
    #[error("flag bits {flags:#x} are reserved or unsupported")]
    UnsupportedFlags {
        /// The offending bits.
        flags: u32,
    },
    /// The frame is a response or error, or of a type only servers send.
    #[error("frame type {kind:#06x} with flags {flags:#x} is not a request")]
    NotARequest {
        /// The frame's type.
        kind: u16,
        /// The frame's flags.
        flags: u32,
    },
    /// The frame's type is not in the table.
    #[error("unknown frame type {kind:#06x}")]
    UnknownType {
        /// The frame's type.
        kind: u16,
    },
    /// The payload does not decode as the type's message.
    #[error("payload of {kind} does not decode: {source}")]
    Malformed {
        /// The name of the frame's type.
        kind: &'static str,
        /// What the payload decoder said.
        source: PayloadError,
    },
}

impl RequestError {
    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            RequestError::UnsupportedFlags { .. } => ErrorCode::UnsupportedFlags,
            RequestError::NotARequest { .. } => ErrorCode::NotARequest,
            RequestError::UnknownType { .. } => ErrorCode::UnknownType,
            RequestError::Malformed { .. } => ErrorCode::MalformedPayload,
        }
    }
}

/// A request payload type: its frame type and the payload its successful response carries.
pub trait RequestPayload: Payload {
    /// The frame type of the request (and of its response).
    const TYPE: MessageType;
    /// The payload of the successful response.
    type Response: Payload;
}

macro_rules! protocol {
    (
        requests { $( $rname:ident = $rid:literal, $rstr:literal, $req:ident => $resp:ident; )* }
        events { $( $ename:ident = $eid:literal, $estr:literal, $ev:ident; )* }
    ) => {
        /// Every frame type of protocol version 1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum MessageType {
            /// An error about the connection itself (a broken frame, a login timeout), sent by
            /// the server with the ERROR flag right before it closes the connection.
            ConnectionError = 0,
            $( #[doc = concat!("`", $rstr, "`: request `", stringify!($req), "`, response `", stringify!($resp), "`.")] $rname = $rid, )*
            $( #[doc = concat!("`", $estr, "`: sent by the server, payload `", stringify!($ev), "`.")] $ename = $eid, )*
        }

        impl MessageType {
            /// Every type, in table order.
            pub const ALL: &'static [MessageType] = &[
                MessageType::ConnectionError, $( MessageType::$rname, )* $( MessageType::$ename, )*
            ];

            /// The type for a number, if it is in the table.
            pub fn from_u16(v: u16) -> Option<MessageType> {
                match v {
                    0 => Some(MessageType::ConnectionError),
                    $( $rid => Some(MessageType::$rname), )*
                    $( $eid => Some(MessageType::$ename), )*
                    _ => None,
                }
            }

            /// The number on the wire.
            pub fn as_u16(self) -> u16 {
                self as u16
            }

            /// The name used in docs and logs, e.g. `SEND`.
            pub fn name(self) -> &'static str {
                match self {
                    MessageType::ConnectionError => "CONNECTION_ERROR",
                    $( MessageType::$rname => $rstr, )*
                    $( MessageType::$ename => $estr, )*
                }
            }

            /// Whether clients send this type as a request.
            pub fn is_request(self) -> bool {
                matches!(self, $( MessageType::$rname )|*)
            }
        }

        $(
            impl RequestPayload for pb::$req {
                const TYPE: MessageType = MessageType::$rname;
                type Response = pb::$resp;
            }

            impl From<pb::$req> for Request {
                fn from(m: pb::$req) -> Request {
                    Request::$rname(m)
                }
            }
        )*

        /// A decoded client request.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $( #[doc = concat!("A `", $rstr, "` request.")] $rname(pb::$req), )*
        }

        impl Request {
            /// The request's frame type.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Request::$rname(_) => MessageType::$rname, )*
                }
            }

            /// Decodes a frame received by the server, checking version, flags and type.
            pub fn decode(frame: &Frame) -> Result<Request, RequestError> {
                check_version(frame)?;
                check_flags(frame)?;
                if frame.flags.intersects(Flags::RESPONSE | Flags::ERROR) {
                    return Err(RequestError::NotARequest { kind: frame.kind, flags: frame.flags.bits() });
                }
                let encoding = frame.encoding();
                match frame.kind {
                    $( $rid => decode_payload(&frame.payload, encoding)
                        .map(Request::$rname)
                        .map_err(|source| RequestError::Malformed { kind: $rstr, source }), )*
                    kind if MessageType::from_u16(kind).is_some() => {
                        Err(RequestError::NotARequest { kind, flags: frame.flags.bits() })
                    }
                    kind => Err(RequestError::UnknownType { kind }),
                }
            }

            /// Encodes the request as a frame.
            pub fn to_frame(&self, packet_id: PacketId, encoding: Encoding) -> Result<Frame, PayloadError> {
                let payload = match self {
                    $( Request::$rname(m) => encode_payload(m, encoding)?, )*
                };
                Ok(Frame::with_payload(self.message_type(), Flags::empty(), packet_id, encoding, payload))
            }
        }

        /// The successful response to a request, of the request's type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $( #[doc = concat!("The response to a `", $rstr, "` request.")] $rname(pb::$resp), )*
        }

        impl Response {
            /// The response's frame type (its request's).
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Response::$rname(_) => MessageType::$rname, )*
                }
            }

            /// The payload, in `encoding`.
            pub fn encode(&self, encoding: Encoding) -> Result<Bytes, PayloadError> {
                match self {
                    $( Response::$rname(m) => encode_payload(m, encoding), )*
                }
            }
        }

        /// A frame the server sends on its own initiative (not a response).
        // `Push` dwarfs the other events, and nearly every event is a push: boxing it would add
        // an allocation per push to save stack space on rare kicks and notices.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum ServerEvent {
            $( #[doc = concat!("A `", $estr, "` event.")] $ename(pb::$ev), )*
        }

        impl ServerEvent {
            /// The event's frame type.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( ServerEvent::$ename(_) => MessageType::$ename, )*
                }
            }

            /// Decodes a non-response frame received by a client. `Ok(None)` means the type is
            /// not a server event (a client should ignore it, for forward compatibility).
            pub fn decode(frame: &Frame) -> Result<Option<ServerEvent>, RequestError> {
                check_version(frame)?;
                let encoding = frame.encoding();
                match frame.kind {
                    $( $eid => decode_payload(&frame.payload, encoding)
                        .map(|m| Some(ServerEvent::$ename(m)))
                        .map_err(|source| RequestError::Malformed { kind: $estr, source }), )*
                    _ => Ok(None),
                }
            }

            /// Encodes the event as a frame.
            pub fn to_frame(&self, packet_id: PacketId, encoding: Encoding) -> Result<Frame, PayloadError> {
                let payload = match self {
                    $( ServerEvent::$ename(m) => encode_payload(m, encoding)?, )*
                };
                Ok(Frame::with_payload(self.message_type(), Flags::empty(), packet_id, encoding, payload))
            }
        }
    };
}

protocol! {
    requests {
        Ping = 0x0001, "PING", Ping => Pong;
        Register = 0x0002, "REGISTER", RegisterRequest => RegisterResponse;
        Login = 0x0003, "LOGIN", LoginRequest => LoginResponse;
        Logout = 0x0004, "LOGOUT", LogoutRequest => LogoutResponse;
        Send = 0x0101, "SEND", SendRequest => SendAck;
        Sync = 0x0103, "SYNC", SyncRequest => SyncResponse;
        AckCursor = 0x0104, "ACK_CURSOR", AckCursorRequest => AckCursorResponse;
        History = 0x0105, "HISTORY", HistoryRequest => HistoryResponse;
        MessageSearch = 0x0107, "MESSAGE_SEARCH", MessageSearchRequest => MessageSearchResponse;
        GroupCreate = 0x0201, "GROUP_CREATE", GroupCreateRequest => GroupInfoResponse;
        GroupUpdate = 0x0202, "GROUP_UPDATE", GroupUpdateRequest => GroupUpdateResponse;
        GroupInfo = 0x0203, "GROUP_INFO", GroupInfoRequest => GroupInfoResponse;
        GroupMembers = 0x0204, "GROUP_MEMBERS", GroupMembersRequest => GroupMembersResponse;
        GroupList = 0x0205, "GROUP_LIST", GroupListRequest => GroupListResponse;
        Typing = 0x0301, "TYPING", TypingRequest => TypingResponse;
        Read = 0x0401, "READ", ReadRequest => ReadResponse;
        Recall = 0x0402, "RECALL", RecallRequest => RecallResponse;
        Edit = 0x0403, "EDIT", EditRequest => EditResponse;
        ConversationList = 0x0404, "CONVERSATION_LIST", ConversationListRequest => ConversationListResponse;
        ConversationUpdate = 0x0405, "CONVERSATION_UPDATE", ConversationUpdateRequest => ConversationUpdateResponse;
        ProfileGet = 0x0501, "PROFILE_GET", ProfileGetRequest => ProfileGetResponse;
        ProfileUpdate = 0x0502, "PROFILE_UPDATE", ProfileUpdateRequest => ProfileUpdateResponse;
        UserSearch = 0x0503, "USER_SEARCH", UserSearchRequest => UserSearchResponse;
        FriendRequest = 0x0511, "FRIEND_REQUEST", FriendRequestRequest => FriendRequestResponse;
        FriendRespond = 0x0512, "FRIEND_RESPOND", FriendRespondRequest => FriendRespondResponse;
        FriendDelete = 0x0513, "FRIEND_DELETE", FriendDeleteRequest => FriendDeleteResponse;
        FriendRemark = 0x0514, "FRIEND_REMARK", FriendRemarkRequest => FriendRemarkResponse;
        FriendList = 0x0515, "FRIEND_LIST", FriendListRequest => FriendListResponse;
        Block = 0x0521, "BLOCK", BlockRequest => BlockResponse;
        Unblock = 0x0522, "UNBLOCK", UnblockRequest => UnblockResponse;
        BlockList = 0x0523, "BLOCK_LIST", BlockListRequest => BlockListResponse;
        PresenceSubscribe = 0x0601, "PRESENCE_SUBSCRIBE", PresenceSubscribeRequest => PresenceSubscribeResponse;
        PresenceUnsubscribe = 0x0602, "PRESENCE_UNSUBSCRIBE", PresenceUnsubscribeRequest => PresenceUnsubscribeResponse;
        Observe = 0x0701, "OBSERVE", ObserveRequest => ObserveResponse;
        PushRegister = 0x0801, "PUSH_REGISTER", PushRegisterRequest => PushRegisterResponse;
        PushUnregister = 0x0802, "PUSH_UNREGISTER", PushUnregisterRequest => PushUnregisterResponse;
        PushAppState = 0x0803, "PUSH_APP_STATE", PushAppStateRequest => PushAppStateResponse;
    }
    events {
        Kick = 0x0005, "KICK", Kick;
        Goodbye = 0x0006, "GOODBYE", Goodbye;
        Push = 0x0102, "PUSH", Push;
        SyncNotify = 0x0106, "SYNC_NOTIFY", SyncNotify;
        TypingNotice = 0x0302, "TYPING_NOTICE", TypingNotice;
        Presence = 0x0603, "PRESENCE", Presence;
    }
}

fn check_version(frame: &Frame) -> Result<(), RequestError> {
    if frame.version == 0 || frame.version > PROTOCOL_VERSION {
        return Err(RequestError::UnsupportedVersion {
            version: frame.version,
        });
    }
    Ok(())
}

fn check_flags(frame: &Frame) -> Result<(), RequestError> {
    let unsupported = frame.flags.difference(Flags::SUPPORTED);
    if !unsupported.is_empty() {
        return Err(RequestError::UnsupportedFlags {
            flags: unsupported.bits(),
        });
    }
    Ok(())
}

impl Frame {
    /// A version-1 frame around an already encoded payload.
    pub fn with_payload(
        kind: MessageType,
        flags: Flags,
        packet_id: PacketId,
        encoding: Encoding,
        payload: Bytes,
    ) -> Frame {
        let flags = match encoding {
            Encoding::Json => flags | Flags::JSON,
            Encoding::Protobuf => flags - Flags::JSON,
        };
        Frame {
            kind: kind.as_u16(),
            version: PROTOCOL_VERSION,
            flags,
            packet_id,
            payload,
        }
    }

    /// The success response to `request`: same type, packet id and encoding.
    pub fn response_to<M: Payload>(request: &Frame, msg: &M) -> Result<Frame, PayloadError> {
        let encoding = request.encoding();
        Ok(Frame::response(
            request.kind,
            request.packet_id,
            encoding,
            encode_payload(msg, encoding)?,
        ))
    }

    /// A success response of type `kind` to the request with `packet_id`, around an already
    /// encoded payload.
    pub fn response(kind: u16, packet_id: PacketId, encoding: Encoding, payload: Bytes) -> Frame {
        Frame {
            kind,
            version: PROTOCOL_VERSION,
            flags: response_flags(encoding, false),
            packet_id,
            payload,
        }
    }

    /// An error response of type `kind` to the request with `packet_id`.
    pub fn error(kind: u16, packet_id: PacketId, encoding: Encoding, error: &pb::Error) -> Frame {
        // `Error` has no enum field, so neither encoding can fail.
        let payload = encode_payload(error, encoding).unwrap_or_default();
        Frame {
            kind,
            version: PROTOCOL_VERSION,
            flags: response_flags(encoding, true),
            packet_id,
            payload,
        }
    }

    /// Decodes the payload as `M`, in the frame's encoding.
    pub fn decode<M: Payload>(&self) -> Result<M, PayloadError> {
        decode_payload(&self.payload, self.encoding())
    }
}

fn response_flags(encoding: Encoding, error: bool) -> Flags {
    let mut flags = Flags::RESPONSE;
    if error {
        flags |= Flags::ERROR;
    }
    if encoding == Encoding::Json {
        flags |= Flags::JSON;
    }
    flags
}
