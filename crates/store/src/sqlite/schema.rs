//! The SQLite schema and its migrations, applied in order at open.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`. Entries are never edited
/// once released; changes are new entries.
///
/// Sequence heads (a conversation's newest seq, a user's newest inbox seq) are not stored as
/// counters: they are `max(seq)` over the indexes below, read once by the writer and cached.
/// Storing them would dirty two more pages at random per message, and in WAL mode every dirty
/// page is written whole at each commit.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, devices, tokens, conversations, messages, inboxes.
    r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE devices (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID;

    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        issued_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- One token per device: a new password login of the device replaces its old token.
    CREATE UNIQUE INDEX tokens_by_device ON tokens (user_id, device_id);

    -- The full history ("roaming" store). The rowid is the message id.
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        server_time_ms INTEGER NOT NULL,
        sender_inbox_seq INTEGER NOT NULL,
        content BLOB NOT NULL
    );
    CREATE UNIQUE INDEX messages_by_seq ON messages (conversation, seq);
    CREATE UNIQUE INDEX messages_by_client_id ON messages (sender, client_msg_id);

    -- Each user's inbox ("sync" store): references into messages, in the user's own seq order.
    CREATE TABLE inbox (
        user_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, seq)
    ) WITHOUT ROWID;
    "#,
];

/// Brings the schema to the newest version, one transaction per migration.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}
