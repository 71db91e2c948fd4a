//! Storage backends for Tern's services, and the conformance suite they all pass.
//!
//! The services own the traits ([`tern_core::store`]); this crate implements them. The embedded
//! default is [`sqlite::SqliteStore`]: one file in WAL mode, one writer thread that commits every
//! waiting write in one transaction and one sync (group commit), and a small pool of readers.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod sqlite;

pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};
