//! The frame: a fixed 28-byte header and an opaque payload, and how it is written to bytes.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes in the header: length (4) + type (2) + version (2) + flags (4) + packet id (16).
pub const HEADER_LEN: usize = 28;

/// The protocol version this crate speaks. A peer rejects frames with a higher version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default cap on a whole frame, header included: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

bitflags::bitflags! {
    /// The header's flag bits. Bits not named here are reserved and must be zero.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Flags: u32 {
        /// The payload is proto3 JSON (UTF-8) instead of protobuf binary.
        const JSON = 1 << 0;
        /// The frame answers the request with the same packet id.
        const RESPONSE = 1 << 1;
        /// The frame is a response whose payload is an `Error`.
        const ERROR = 1 << 2;
        /// Reserved for compressed payloads; not supported in version 1.
        const COMPRESSED = 1 << 3;
    }
}

impl Flags {
    /// The flags a version-1 peer understands; any other bit makes a frame unsupported.
    pub const SUPPORTED: Flags = Flags::JSON.union(Flags::RESPONSE).union(Flags::ERROR);
}

/// The 16-byte id of a frame. Clients pick a fresh one per request (a UUID is a good choice);
/// the response to a request carries the same id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PacketId(pub [u8; 16]);

impl PacketId {
    /// The all-zero id, used by frames that answer nothing identifiable (a broken header).
    pub const ZERO: PacketId = PacketId([0; 16]);

    /// Builds an id from a counter, for peers that prefer sequential ids to random ones.
    pub fn from_u128(v: u128) -> Self {
        PacketId(v.to_be_bytes())
    }

    /// The id as one big-endian integer.
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl std::fmt::Debug for PacketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacketId({:032x})", self.as_u128())
    }
}

impl std::fmt::Display for PacketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

/// One protocol frame. The type is kept raw so that frames of unknown types can still be
/// answered with an error that echoes them.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type (see [`crate::MessageType`]); raw so unknown types survive decoding.
    pub kind: u16,
    /// The protocol version the sender used for this frame.
    pub version: u16,
    /// Encoding and request/response/error bits.
    pub flags: Flags,
    /// Pairs a response with its request.
    pub packet_id: PacketId,
    /// The encoded message; its schema is chosen by `kind` and `flags`.
    pub payload: Bytes,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &format_args!("{:#06x}", self.kind))
            .field("version", &self.version)
            .field("flags", &self.flags)
            .field("packet_id", &self.packet_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Frame {
    /// The length of the encoded frame, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// # Panics
    /// If the payload is longer than `u32::MAX - 28` bytes, which no frame limit allows.
    pub fn encode(&self, dst: &mut BytesMut) {
        let len = u32::try_from(self.encoded_len()).expect("frame length fits in u32");
        dst.reserve(self.encoded_len());
        dst.put_u32(len);
        dst.put_u16(self.kind);
        dst.put_u16(self.version);
        dst.put_u32(self.flags.bits());
        dst.put_slice(&self.packet_id.0);
        dst.put_slice(&self.payload);
    }

    /// The encoded frame as one buffer, ready to be written or shared between connections.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// The payload encoding this frame's flags select.
    pub fn encoding(&self) -> crate::Encoding {
        if self.flags.contains(Flags::JSON) {
            crate::Encoding::Json
        } else {
            crate::Encoding::Protobuf
        }
    }

    /// Whether this frame answers a request.
    pub fn is_response(&self) -> bool {
        self.flags.contains(Flags::RESPONSE)
    }

    /// Whether this frame is an error response.
    pub fn is_error(&self) -> bool {
        self.flags.contains(Flags::ERROR)
    }
}
