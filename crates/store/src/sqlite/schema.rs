//! The SQLite schema and its migrations, applied in order at open.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`. Entries are never edited
/// once released; changes are new entries.
///
/// In WAL mode every page a commit dirties is written whole, so the schema keeps commits away
/// from keyed B-trees: a commit only appends, and keyed indexes are built later in bulk.
/// Sequence heads (a conversation's newest seq, a user's newest inbox seq) are not stored as
/// counters either: they are `max(seq)` over the indexes and the in-memory tail, read once by
/// the writer and cached.
const MAIN: &[&str] = &[
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

    -- Written at every commit, and only appended to: each commit dirties a few shared pages at
    -- the end of these two tables, whatever the keys of its messages.
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
    -- Inbox entries not yet in `inbox`; rows leave once the indexer has copied them.
    CREATE TABLE inbox_log (
        id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id INTEGER NOT NULL
    );

    "#,
    // 2: groups. Written only by group changes, which are rare next to messages, so these are
    // ordinary keyed tables.
    r#"
    CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        avatar TEXT NOT NULL,
        announcement TEXT NOT NULL,
        owner TEXT NOT NULL,
        mute_all INTEGER NOT NULL,
        -- HistoryVisibility as on the wire: 0 from join, 1 full.
        history INTEGER NOT NULL,
        dissolved INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        member_count INTEGER NOT NULL
    );
    CREATE TABLE group_members (
        group_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        -- GroupRole as on the wire: 1 member, 2 admin, 3 owner.
        role INTEGER NOT NULL,
        -- The timeline seq of the event that added the member.
        joined_seq INTEGER NOT NULL,
        muted_until_ms INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_members_by_user ON group_members (user_id, group_id);
    -- The last membership of each user who left or was removed: a departed member may still
    -- read what was stored while it was a member (from joined_seq to left_seq).
    CREATE TABLE group_departures (
        group_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        joined_seq INTEGER NOT NULL,
        left_seq INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    "#,
    // 3: idempotent group creation: a create repeating (creator, request_id) finds the first.
    r#"
    ALTER TABLE groups ADD COLUMN creator TEXT NOT NULL DEFAULT '';
    ALTER TABLE groups ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
    CREATE UNIQUE INDEX groups_by_request ON groups (creator, request_id) WHERE request_id <> '';
    "#,
    // 4: per-user conversation state. Written by reads, recalls, edits and flag changes, which
    // are rare next to messages, and by the first message between two users, so these are
    // ordinary keyed tables.
    r#"
    -- The newest recall and edit event of each amended message (ids into messages).
    CREATE TABLE amendments (
        message_id INTEGER PRIMARY KEY,
        recall_event INTEGER,
        edit_event INTEGER
    );
    -- A user's read mark and list flags in one conversation.
    CREATE TABLE conversation_states (
        user_id TEXT NOT NULL,
        conversation TEXT NOT NULL,
        read_seq INTEGER NOT NULL DEFAULT 0,
        pinned INTEGER NOT NULL DEFAULT 0,
        muted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, conversation)
    ) WITHOUT ROWID;
    -- The one-to-one conversations each user has a message in (groups come from membership).
    CREATE TABLE user_conversations (
        user_id TEXT NOT NULL,
        conversation TEXT NOT NULL,
        PRIMARY KEY (user_id, conversation)
    ) WITHOUT ROWID;
    -- One-to-one ids are "p:{lo}:{hi}", and user ids have no ':'.
    INSERT OR IGNORE INTO user_conversations (user_id, conversation)
        SELECT substr(c, 3, instr(substr(c, 3), ':') - 1), c
        FROM (SELECT DISTINCT conversation AS c FROM messages WHERE conversation LIKE 'p:%');
    INSERT OR IGNORE INTO user_conversations (user_id, conversation)
        SELECT substr(c, 3 + instr(substr(c, 3), ':')), c
        FROM (SELECT DISTINCT conversation AS c FROM messages WHERE conversation LIKE 'p:%');
    "#,
    // 5: people. Written only by profile, friend and block changes.
    r#"
    -- A user's profile and private settings; users without a row have an empty profile.
    CREATE TABLE profiles (
        user_id TEXT PRIMARY KEY,
        nickname TEXT NOT NULL DEFAULT '',
        avatar TEXT NOT NULL DEFAULT '',
        signature TEXT NOT NULL DEFAULT '',
        extra TEXT NOT NULL DEFAULT '',
        updated_ms INTEGER NOT NULL DEFAULT 0,
        -- StrangerPolicy as on the wire: 0 anyone, 1 friends only.
        stranger_policy INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX profiles_by_nickname ON profiles (nickname) WHERE nickname <> '';
    -- One row per direction of a friendship. A removed friendship keeps its rows (deleted = 1)
    -- so that a device asking for changes learns of the removal; `version` is the owner's
    -- inbox seq of the notice that last changed the row.
    CREATE TABLE friends (
        user_id TEXT NOT NULL,
        friend_id TEXT NOT NULL,
        remark TEXT NOT NULL DEFAULT '',
        since_ms INTEGER NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE INDEX friends_by_version ON friends (user_id, version);
    -- Pending requests only: an answer deletes the row.
    CREATE TABLE friend_requests (
        from_id TEXT NOT NULL,
        to_id TEXT NOT NULL,
        message TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (from_id, to_id)
    ) WITHOUT ROWID;
    CREATE INDEX friend_requests_to ON friend_requests (to_id, from_id);
    CREATE TABLE blocks (
        user_id TEXT NOT NULL,
        blocked_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (user_id, blocked_id)
    ) WITHOUT ROWID;
    "#,
    // 6: admin API keys (only their hashes).
    r#"
    CREATE TABLE admin_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    ) WITHOUT ROWID;
    "#,
    // 7: the webhook outbox: one row per event and webhook, inserted by the commit that caused
    // the event; deleted once delivered, kept as a dead letter (state 1) after too many failures.
    r#"
    CREATE TABLE webhook_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL DEFAULT 0,
        lease_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX webhook_outbox_queue ON webhook_outbox (state, webhook, key, seq);
    "#,
    // 8: disabled accounts (they cannot log in; their devices were disconnected).
    r#"
    ALTER TABLE users ADD COLUMN disabled_ms INTEGER;
    "#,
    // 9: settings changed at run time; a removed one stays as a row without a value, so that
    // the version sum every node watches changes on removal too.
    r#"
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 10: uploads (their bytes are in the blob store, by hash) and the conversations whose
    // messages refer to them.
    r#"
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        -- The picture's size and thumbnails as JSON (core's ImageInfo), or NULL.
        image TEXT
    ) WITHOUT ROWID;
    CREATE INDEX files_by_owner ON files (owner) WHERE owner IS NOT NULL;
    CREATE INDEX files_by_sha256 ON files (sha256);
    CREATE INDEX files_by_age ON files (created_ms);
    CREATE TABLE file_refs (
        file_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        PRIMARY KEY (file_id, conversation_id)
    ) WITHOUT ROWID;
    "#,
    // 11: each device's push registration (at most one per device).
    r#"
    CREATE TABLE push_devices (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        token TEXT NOT NULL,
        p256dh TEXT NOT NULL,
        auth TEXT NOT NULL,
        private INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        -- The connection on which the app said it went to the background (0: none).
        background_connection INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID;
    "#,
];

/// The keyed indexes, in their own file (`tern-index.db`) with their own writer thread, so that
/// building them never blocks a commit. Same rules as [`MAIN`].
const INDEX: &[&str] = &[
    // 1: conversation, dedupe and inbox indexes, and the watermark.
    r#"
    -- Written by the indexer thread in large batches (see sqlite/tail.rs and indexer.rs): every
    -- message with an id up to index_state.indexed_upto is in all three.
    -- Each conversation's messages by seq.
    CREATE TABLE conversation_index (
        conversation TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        PRIMARY KEY (conversation, seq)
    ) WITHOUT ROWID;
    -- Each sender's client message ids, for deduplication of retries.
    CREATE TABLE dedupe_index (
        sender TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        PRIMARY KEY (sender, client_msg_id)
    ) WITHOUT ROWID;
    -- Each user's inbox ("sync" store): references into messages, in the user's own seq order.
    CREATE TABLE inbox (
        user_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, seq)
    ) WITHOUT ROWID;
    -- indexed_log: the largest inbox_log row (in tern.db) whose entry is here (dropped by 2).
    CREATE TABLE index_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        indexed_upto INTEGER NOT NULL,
        indexed_log INTEGER NOT NULL
    );
    INSERT INTO index_state (id, indexed_upto, indexed_log) VALUES (1, 0, 0);
    "#,
    // 2: the watermark alone says which inbox_log rows are indexed (those of messages at or
    // below it). A persisted largest row id could not: tern.db handed out row ids again from 1
    // once the table was empty, and a restart then deleted new, unindexed rows under the old
    // bound.
    r#"
    ALTER TABLE index_state DROP COLUMN indexed_log;
    "#,
    // 3: message search. Each findable message's folded text (see tern_core::search), keyed by
    // the message id, matched by any substring (trigram). search_upto: every message up to it
    // is reflected here; messages indexed before this table existed are added at the next open.
    r#"
    CREATE VIRTUAL TABLE search USING fts5(
        text, conversation UNINDEXED, seq UNINDEXED, sender UNINDEXED,
        tokenize = 'trigram case_sensitive 1'
    );
    ALTER TABLE index_state ADD COLUMN search_upto INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// Which of the two database files.
#[derive(Debug, Clone, Copy)]
pub(crate) enum File {
    /// `tern.db`: accounts and the append-only message tables.
    Main,
    /// `tern-index.db`: the keyed indexes.
    Index,
}

impl File {
    fn migrations(self) -> &'static [&'static str] {
        match self {
            File::Main => MAIN,
            File::Index => INDEX,
        }
    }
}

/// Why a file's schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    /// SQLite failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The file was written by a newer build.
    #[error(
        "{file:?} database schema version {found} is newer than this build understands ({known})"
    )]
    Newer {
        file: File,
        found: i64,
        known: usize,
    },
}

impl From<MigrateError> for tern_core::StoreError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Sql(e) => super::rows::store_err(e),
            newer @ MigrateError::Newer { .. } => tern_core::StoreError::Corrupt(newer.to_string()),
        }
    }
}

/// Brings a file's schema to the newest version, one transaction per migration, and refuses a
/// file written by a newer build.
pub(crate) fn migrate(conn: &mut Connection, file: File) -> Result<(), MigrateError> {
    migrate_to(conn, file, file.migrations().len())
}

/// [`migrate`], stopping at version `target` (tests build older databases with it).
fn migrate_to(conn: &mut Connection, file: File, target: usize) -> Result<(), MigrateError> {
    let migrations = &file.migrations()[..target.min(file.migrations().len())];
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > migrations.len() as i64 {
        return Err(MigrateError::Newer {
            file,
            found: current,
            known: migrations.len(),
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(?file, version = i + 1, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrading_lists_the_one_to_one_conversations_stored_before() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, File::Main, 3).unwrap();
        for (conversation, seq) in [
            ("p:alice:bob", 1),
            ("p:alice:bob", 2),
            ("p:b.o-b@x:carol", 1),
            ("p:dave:dave", 1),
            ("g:7", 1),
        ] {
            conn.execute(
                "INSERT INTO messages (conversation, seq, sender, client_msg_id, server_time_ms, sender_inbox_seq, content)
                 VALUES (?1, ?2, 'x', 'c', 0, 0, x'')",
                rusqlite::params![conversation, seq],
            )
            .unwrap();
        }
        migrate(&mut conn, File::Main).unwrap();
        let mut rows: Vec<(String, String)> = conn
            .prepare("SELECT user_id, conversation FROM user_conversations")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        let expected = [
            ("alice", "p:alice:bob"),
            ("b.o-b@x", "p:b.o-b@x:carol"),
            ("bob", "p:alice:bob"),
            ("carol", "p:b.o-b@x:carol"),
            ("dave", "p:dave:dave"),
        ];
        assert_eq!(
            rows,
            expected
                .iter()
                .map(|(u, c)| (u.to_string(), c.to_string()))
                .collect::<Vec<_>>()
        );
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MAIN.len());
    }
}
