//! The checkpointer: copies `tern.db`'s WAL back into the database file on its own thread, so
//! that no commit waits for it.
//!
//! SQLite's default runs a checkpoint inside the commit that pushes the WAL past 1,000 pages:
//! that commit then also writes those pages to the database file and syncs it, and every sender
//! queued behind it waits (measured: commits of 20–100 ms several times a second at 10,000
//! msg/s). The writer's connection instead reports the WAL's size after each commit (a WAL
//! hook, which also replaces the automatic checkpoint), and past the same 1,000 pages wakes this
//! thread. It runs passive checkpoints, which never block the writer: they copy only frames no
//! reader still needs, and the writer restarts the WAL from its beginning once a checkpoint has
//! caught up. Checkpointing no more often than that keeps the extra `fsync`s (two per
//! checkpoint) few, since each one competes with the commits' own on the same disk.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use rusqlite::Connection;

/// WAL pages after a commit that call for a checkpoint (SQLite's own default).
pub(crate) const WAL_PAGES: i32 = 1000;

/// The longest wait between checkpoints, for what a quiet writer left in the WAL.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest time between two checkpoints: a WAL the writer cannot restart yet (a reader
/// still uses it) stays long, and must not wake the thread after every commit.
const MIN_GAP: Duration = Duration::from_millis(20);

/// The running checkpointer thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    thread: Option<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` through its own connection `conn`.
    pub(crate) fn start(conn: Connection, path: &Path) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = path.display().to_string();
        let thread = thread::Builder::new()
            .name("tern-sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    thread::park_timeout(IDLE_INTERVAL);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    // PASSIVE never waits for the writer or readers; a busy result only means
                    // part of the WAL is left for the next round.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, file = %name, "WAL checkpoint failed; retrying");
                    }
                    thread::sleep(MIN_GAP);
                }
            })?;
        Ok(Self {
            thread: Some(thread),
            stop,
        })
    }

    /// A handle that wakes the thread for a checkpoint.
    pub(crate) fn waker(&self) -> Option<thread::Thread> {
        self.thread.as_ref().map(|t| t.thread().clone())
    }

    /// Stops the thread after its current checkpoint.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
