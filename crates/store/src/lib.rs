//! Storage backends for Tern's services, and the conformance suite they all pass.
//!
//! The services own the traits ([`tern_core::store`]) and the rules ([`tern_core::groups`],
//! [`tern_core::social`], [`tern_core::conversations`]); this crate loads the state a rule needs,
//! persists what it decided, and serves reads. The embedded default is [`sqlite::SqliteStore`]:
//! two files in WAL mode (`tern.db`, appended to by one writer thread that commits every waiting
//! write in one transaction and one sync, and `tern-index.db`, the keyed indexes an indexer
//! thread builds from an in-memory tail), a checkpointer thread, and a pool of readers.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod sqlite;

pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};
