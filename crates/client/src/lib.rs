//! The Tern Rust SDK.
//!
//! [`Connection`] is one framed connection with request/response pairing by packet id.
//! [`Client`] builds on it: it logs in, catches up from the device's cursor, merges pushes into
//! one ordered stream of [`Event`]s, retries sends with the same client message id, and
//! reconnects (resuming from the cursor) until it is closed or kicked.
#![forbid(unsafe_code)]

mod client;
mod connection;
mod conversations;
mod cursor;
mod error;
mod groups;
mod tls;

pub use client::{
    Client, ClientConfig, Conversation, Event, HistoryQuery, ReconnectPolicy, register,
    register_with,
};
pub use connection::{ConnectOptions, Connection, Endpoint, PendingResponse};
pub use conversations::ConversationList;
pub use cursor::{CursorStore, MemoryCursorStore};
pub use error::ClientError;
pub use tern_proto::{Encoding, ErrorCode, RequestPayload, pb};
pub use tls::TlsTrust;

/// A fresh client message id: 48 bits of milliseconds since the Unix epoch, then 80 random
/// bits, as 32 hex characters.
///
/// Any unique id works; ids that increase over time (like this one, or a UUIDv7) are cheapest
/// for the server to deduplicate, because each sender's new ids land next to each other in its
/// index instead of at random places.
pub fn new_client_msg_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        & 0xffff_ffff_ffff;
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    format!("{ms:012x}{random:020x}")
}
