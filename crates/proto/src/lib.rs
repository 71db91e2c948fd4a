//! The Tern wire protocol: bytes ⇄ [`Frame`] ⇄ typed messages.
//!
//! This crate is pure: no sockets, no clock, no runtime. The server, the SDK, the CLI and the
//! load tool all use this one codec, so a frame means the same thing everywhere.
//!
//! A frame is `u32 length | u16 type | u16 version | u32 flags | 16-byte packet id | payload`
//! (big-endian, `length` counts the whole frame). The payload is one message of the schema in
//! `proto/tern.proto`, encoded as protobuf or as proto3 JSON as the JSON flag says.
//! `docs/protocol.md` at the repository root is the full contract.
#![forbid(unsafe_code)]

mod codec;
mod error_code;
mod frame;
mod message;
mod payload;

pub use codec::{Decoded, FrameDecoder, FrameError, Header};
pub use error_code::ErrorCode;
pub use frame::{DEFAULT_MAX_FRAME_LEN, Flags, Frame, HEADER_LEN, PROTOCOL_VERSION, PacketId};
pub use message::{MessageType, Request, RequestError, RequestPayload, Response, ServerEvent};
pub use payload::{Encoding, Payload, PayloadError, decode_payload, encode_payload};

/// The generated payload types of `proto/tern.proto` (package `tern.v1`).
#[allow(
    missing_docs,
    clippy::all,
    missing_debug_implementations,
    unreachable_pub
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/tern.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/tern.v1.serde.rs"));
}
