//! The PostgreSQL schema and its migrations. Several nodes may start at once: migrations run
//! under an advisory lock, so exactly one applies each and the others find it applied.
//!
//! The same data as the SQLite store, shaped for concurrent writers: every timeline and every
//! inbox has a head row (`conversation_heads`, `inbox_heads`) that a commit locks before it
//! reads the state a decision needs and takes the next seq, so two commits touching one
//! conversation or one inbox serialize on that row, and a rolled-back commit leaves no gap.
//! Stored enum numbers are the store's own (see `codes` in rows.rs), equal to the SQLite store's.
//! Every text column sorts bytewise (`COLLATE "C"`), as SQLite's do, so pages ordered by id are
//! the same on both backends whatever the database's locale.

/// Each entry moves the schema from version `index` to `index + 1`; released entries never
/// change.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL
);
-- One per user, created with it: the user's newest inbox seq. Locked by every commit that
-- gives the user an inbox entry or reads state the user's writes change.
CREATE TABLE inbox_heads (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT NOT NULL
);
CREATE TABLE devices (
    user_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    cursor BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE tokens (
    hash TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    platform TEXT COLLATE "C" NOT NULL,
    issued_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    UNIQUE (user_id, device_id)
);
-- A conversation's newest seq, locked by every commit that appends to it.
CREATE TABLE conversation_heads (
    conversation TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT NOT NULL
);
CREATE TABLE messages (
    -- Unique, not gapless: a rolled-back insert leaves a hole, which nothing orders by.
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    client_msg_id TEXT COLLATE "C" NOT NULL,
    server_time_ms BIGINT NOT NULL,
    sender_inbox_seq BIGINT NOT NULL,
    content BYTEA NOT NULL,
    UNIQUE (conversation, seq)
);
CREATE UNIQUE INDEX messages_dedupe ON messages (sender, client_msg_id) WHERE client_msg_id <> '';
CREATE TABLE inbox (
    user_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, seq)
);
CREATE TABLE groups (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    avatar TEXT COLLATE "C" NOT NULL,
    announcement TEXT COLLATE "C" NOT NULL,
    owner TEXT COLLATE "C" NOT NULL,
    mute_all BOOLEAN NOT NULL,
    -- 0 from join, 1 full.
    history SMALLINT NOT NULL,
    dissolved BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL,
    member_count BIGINT NOT NULL,
    creator TEXT COLLATE "C" NOT NULL,
    request_id TEXT COLLATE "C" NOT NULL,
    -- The timeline seq of the event that last changed the group's state: a node's cached
    -- members are current while this is unchanged.
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_by_request ON groups (creator, request_id) WHERE request_id <> '';
CREATE TABLE group_members (
    group_id BIGINT NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    -- 1 member, 2 admin, 3 owner.
    role SMALLINT NOT NULL,
    joined_seq BIGINT NOT NULL,
    muted_until_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);
CREATE TABLE group_departures (
    group_id BIGINT NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    joined_seq BIGINT NOT NULL,
    left_seq BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE amendments (
    message_id BIGINT PRIMARY KEY,
    recall_event BIGINT,
    edit_event BIGINT
);
CREATE TABLE conversation_states (
    user_id TEXT COLLATE "C" NOT NULL,
    conversation TEXT COLLATE "C" NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    pinned BOOLEAN NOT NULL DEFAULT false,
    muted BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, conversation)
);
CREATE TABLE user_conversations (
    user_id TEXT COLLATE "C" NOT NULL,
    conversation TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, conversation)
);
CREATE TABLE profiles (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    nickname TEXT COLLATE "C" NOT NULL DEFAULT '',
    avatar TEXT COLLATE "C" NOT NULL DEFAULT '',
    signature TEXT COLLATE "C" NOT NULL DEFAULT '',
    extra TEXT COLLATE "C" NOT NULL DEFAULT '',
    updated_ms BIGINT NOT NULL DEFAULT 0,
    -- 0 anyone, 1 friends only.
    stranger_policy SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX profiles_by_nickname ON profiles (nickname) WHERE nickname <> '';
CREATE TABLE friends (
    user_id TEXT COLLATE "C" NOT NULL,
    friend_id TEXT COLLATE "C" NOT NULL,
    remark TEXT COLLATE "C" NOT NULL DEFAULT '',
    since_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX friends_by_version ON friends (user_id, version);
CREATE TABLE friend_requests (
    from_id TEXT COLLATE "C" NOT NULL,
    to_id TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
);
CREATE INDEX friend_requests_to ON friend_requests (to_id, from_id);
CREATE TABLE blocks (
    user_id TEXT COLLATE "C" NOT NULL,
    blocked_id TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
"#,
    // 2: admin API keys (only their hashes).
    r#"
CREATE TABLE admin_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
"#,
    // 3: the webhook outbox: one row per event and webhook, inserted by the transaction that
    // caused the event; deleted once delivered, kept as a dead letter (state 1).
    r#"
CREATE TABLE webhook_outbox (
    seq BIGSERIAL PRIMARY KEY,
    webhook TEXT COLLATE "C" NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state SMALLINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL DEFAULT 0,
    lease_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_outbox_queue ON webhook_outbox (webhook, key, seq) WHERE state = 0;
CREATE INDEX webhook_outbox_dead ON webhook_outbox (seq) WHERE state = 1;
"#,
    // 4: disabled accounts (they cannot log in; their devices were disconnected).
    r#"
ALTER TABLE users ADD COLUMN disabled_ms BIGINT;
"#,
    // 5: settings changed at run time; a removed one stays as a row without a value. Every
    // change takes the next number of the one-row counter in its own transaction (the row lock
    // orders concurrent changes), and the counter is what every node watches.
    r#"
CREATE TABLE settings (
    name TEXT COLLATE "C" PRIMARY KEY,
    value TEXT,
    version BIGINT NOT NULL
);
CREATE TABLE settings_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO settings_changes (id, n) VALUES (1, 0);
"#,
    // 6: message search. Each findable message's folded text (see tern_core::search), written
    // in the transaction that stores the message (or the edit or recall that changes it);
    // `source` is the id of the message whose text it is, so an older text never replaces a
    // newer one. Messages stored before this table existed (ids below `backfill_below`) are
    // added after the migration by the store itself.
    r#"
CREATE TABLE message_search (
    message_id BIGINT PRIMARY KEY,
    conversation TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    text TEXT NOT NULL,
    source BIGINT NOT NULL
);
CREATE INDEX message_search_conversation ON message_search (conversation, message_id);
CREATE TABLE search_backfill (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    done_upto BIGINT NOT NULL,
    backfill_below BIGINT NOT NULL
);
INSERT INTO search_backfill (id, done_upto, backfill_below)
    SELECT 1, 0, COALESCE(MAX(id), 0) + 1 FROM messages;
"#,
    // 7: uploads (their bytes are in the blob store, by hash) and the conversations whose
    // messages refer to them.
    r#"
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    owner TEXT,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mime TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- The picture's size and thumbnails as JSON (core's ImageInfo), or NULL.
    image TEXT
);
CREATE INDEX files_by_owner ON files (owner) WHERE owner IS NOT NULL;
CREATE INDEX files_by_sha256 ON files (sha256);
CREATE INDEX files_by_age ON files (created_ms);
CREATE TABLE file_refs (
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (file_id, conversation_id)
);
"#,
    // 8: each device's push registration (at most one per device).
    r#"
CREATE TABLE push_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    token TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    private BOOLEAN NOT NULL,
    updated_ms BIGINT NOT NULL,
    -- The connection on which the app said it went to the background (0: none).
    background_connection BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id)
);
"#,
];

/// The advisory lock that migrations run under (any constant unique to Tern).
pub(crate) const MIGRATION_LOCK: i64 = 0x0074_6572_6e6d_6967; // "ternmig"
