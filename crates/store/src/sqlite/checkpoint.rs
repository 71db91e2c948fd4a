//! The checkpointer: copies `tern.db`'s WAL back into the database file on its own thread, so
//! that no commit waits for it.
//!
//! SQLite's default runs a checkpoint inside the commit that pushes the WAL past 1,000 pages:
//! that commit then also writes those pages to the database file and syncs it, and every sender
//! queued behind it waits (measured: commits of 20–100 ms several times a second at 10,000
//! msg/s). The writer's connection therefore turns automatic checkpoints off, and this thread
//! runs passive checkpoints often, which never block the writer: they copy only frames no reader
//! still needs, and the writer restarts the WAL from its beginning once a checkpoint has caught
//! up.

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

/// How often the WAL is checkpointed. Short, so each checkpoint is small and often catches up
/// with the writer, which lets the WAL restart.
const INTERVAL: Duration = Duration::from_millis(50);

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
                    thread::park_timeout(INTERVAL);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    // PASSIVE never waits for the writer or readers; a busy result only means
                    // part of the WAL is left for the next round.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, file = %name, "WAL checkpoint failed; retrying");
                    }
                }
            })?;
        Ok(Self {
            thread: Some(thread),
            stop,
        })
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
