//! The Tern Rust SDK.
//!
//! [`Connection`] is one framed connection with request/response pairing by packet id.
//! [`Client`] builds on it: it logs in, catches up from the device's cursor, merges pushes into
//! one ordered stream of [`Event`]s, retries sends with the same client message id, and
//! reconnects (resuming from the cursor) until it is closed or kicked.
#![forbid(unsafe_code)]

mod client;
mod connection;
mod cursor;
mod error;

pub use client::{Client, ClientConfig, Event, HistoryQuery, ReconnectPolicy, register};
pub use connection::{Connection, Endpoint, PendingResponse};
pub use cursor::{CursorStore, MemoryCursorStore};
pub use error::ClientError;
pub use tern_proto::{Encoding, ErrorCode, pb};

/// A fresh client message id: 128 random bits as hex.
pub fn new_client_msg_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
