//! Where a client keeps its sync cursor and group positions between runs.

use std::{collections::HashMap, sync::Mutex};

/// Persists a device's cursor so that a restarted app resumes exactly where it stopped.
///
/// Without a persistent store the client resumes from the cursor the server holds (the last one
/// it acknowledged), so entries processed after that acknowledgement are delivered again.
pub trait CursorStore: Send + Sync + std::fmt::Debug + 'static {
    /// The saved cursor of this user's device, if one was ever saved.
    fn load(&self, user: &str, device: &str) -> Option<u64>;
    /// Saves the cursor; called after each batch of events is handed to the app.
    fn save(&self, user: &str, device: &str, cursor: u64);
    /// The saved position of this device in a group's timeline (by conversation id).
    fn load_group(&self, user: &str, device: &str, conversation: &str) -> Option<u64>;
    /// Saves a group position; called after group messages are handed to the app.
    fn save_group(&self, user: &str, device: &str, conversation: &str, seq: u64);
}

/// Keeps cursors in memory: they survive reconnects but not the process.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    inbox: Mutex<HashMap<(String, String), u64>>,
    groups: Mutex<HashMap<(String, String, String), u64>>,
}

impl CursorStore for MemoryCursorStore {
    fn load(&self, user: &str, device: &str) -> Option<u64> {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user.to_owned(), device.to_owned()))
            .copied()
    }

    fn save(&self, user: &str, device: &str, cursor: u64) {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((user.to_owned(), device.to_owned()), cursor);
    }

    fn load_group(&self, user: &str, device: &str, conversation: &str) -> Option<u64> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user.to_owned(), device.to_owned(), conversation.to_owned()))
            .copied()
    }

    fn save_group(&self, user: &str, device: &str, conversation: &str, seq: u64) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (user.to_owned(), device.to_owned(), conversation.to_owned()),
                seq,
            );
    }
}
