//! Tern's domain: ids, the rules as pure decisions (groups, people, conversations, limits), the
//! services (accounts, messages, sync, groups, conversations, people, typing), and the storage
//! and delivery traits they own.
//!
//! This is the "service" stage of the pipeline (bytes → frame → command → **service** → store →
//! fan-out → connection). Services validate, decide and order; they reach storage only through
//! the traits in [`store`] and connections only through [`Delivery`]. Nothing here opens a
//! socket or a file, so the same services run over SQLite or PostgreSQL and under any gateway.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod before_send;
pub mod bus;
pub mod clock;
pub mod codes;
pub mod content;
pub mod conversations;
mod error;
pub mod files;
pub mod filter;
pub mod group_service;
pub mod groups;
pub mod ids;
pub mod messages;
pub mod presence;
pub mod push;
pub mod search;
pub mod settings;
pub mod social;
pub mod store;
pub mod sync;
pub mod throttle;
pub mod typing;
pub mod webhooks;
pub mod wire;

pub use clock::{Clock, SystemClock};
pub use error::{Refusal, ServiceError, StoreError};
pub use ids::{
    ConnectionId, ConversationId, ConversationKind, DeviceId, GroupId, MessageId, NodeId, Platform,
    UserId,
};
pub use sync::Delivery;

/// The protocol's types, for the front doors; [`wire`] maps them to and from the domain.
pub use tern_proto::pb;
