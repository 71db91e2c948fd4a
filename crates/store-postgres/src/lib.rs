//! The PostgreSQL backend of Tern's storage traits: what several stateless nodes share.
//!
//! Every node commits through [`CommitStore::commit`] with its own group commit (one
//! transaction per batch); the nodes serialize where they must on row locks: each commit locks
//! the head row of every timeline and inbox it touches (and of every user whose social or
//! conversation state it decides on) before it reads the state the rules need, then takes the
//! next seqs, so two commits touching one conversation or one inbox run one after the other on
//! any nodes, a rolled-back commit leaves no gap, and no reader sees seq N+1 before N (both
//! commit, in that order, before either is visible). Commits touching disjoint conversations
//! and inboxes run concurrently. A deadlock or serialization failure between nodes rolls one
//! batch back whole, and the store retries it. The rules are core's pure decisions, the same the
//! SQLite store applies.
//!
//! Acks are durable when PostgreSQL's `synchronous_commit` is on (its default): `commit`
//! returns only after COMMIT did.
#![forbid(unsafe_code)]

mod commit;
mod files;
mod outbox;
mod push;
mod reads;
mod rows;
mod schema;
mod search;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tern_core::{
    ConversationId, DeviceId, GroupId, Platform, StoreError, UserId,
    groups::{Member, Members},
    social::{FriendRecord, FriendRequestRecord, Profile, SocialStore, StrangerPolicy},
    store::{
        AccountStore, AdminKeyRecord, AdminKeyStore, AppendOutcome, CommitStore, ConversationStore,
        ConversationSummary, Direction, GroupRecord, GroupStore, HistoryPage, HistoryStore,
        InboxPage, InboxStore, SettingsStore, SummaryQuery, TokenRecord, UserRecord, Write,
    },
};
use tokio_postgres::{NoTls, error::SqlState};

use rows::{exec, row, row_opt};

/// Settings of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Connections in this node's pool.
    pub pool_size: usize,
    /// How long a request waits for a connection before failing as unavailable.
    pub wait: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            wait: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store: a pool of connections to one database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    wait: Duration,
    groups: Arc<Mutex<GroupCache>>,
    /// The webhooks whose events commits queue in the outbox.
    routes: Arc<tern_core::webhooks::Routes>,
}

/// Members of groups this node committed to, by the group's version when they were read: a
/// large group's members are loaded once, not once per message. Any node's change to a group
/// advances its version, so a stale entry is never used.
#[derive(Debug, Default)]
struct GroupCache {
    groups: HashMap<GroupId, (i64, Arc<Members>)>,
    members: usize,
}

/// How many members the cache holds at most, over all groups.
const MAX_CACHED_MEMBERS: usize = 2_000_000;

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://USER:PASS@HOST:PORT/DB`) and brings its
    /// schema up to date (safe when several nodes start at once).
    pub async fn connect(url: &str, config: PgConfig) -> Result<PgStore, StoreError> {
        let pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("the store URL does not parse: {e}")))?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the pool: {e}")))?;
        let store = PgStore {
            pool,
            wait: config.wait,
            groups: Arc::default(),
            routes: Arc::default(),
        };
        store.migrate().await?;
        search::backfill(&store).await?;
        Ok(store)
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        match tokio::time::timeout(self.wait, self.pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!(
                "no database connection: {e}"
            ))),
            Err(_) => Err(StoreError::Unavailable(
                "no database connection within the wait".into(),
            )),
        }
    }

    /// Whether the database answers now: a connection from the pool runs a trivial query (what
    /// a readiness probe asks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| StoreError::Unavailable(format!("the database does not answer: {e}")))?;
        Ok(())
    }

    /// Publishes the pool's state as gauges (`tern_store_pool_size`, `_in_use`, `_waiting`):
    /// requests waiting for a connection mean the pool, or the database, is the bottleneck.
    pub fn record_pool_metrics(&self) {
        let status = self.pool.status();
        metrics::gauge!("tern_store_pool_size").set(status.max_size as f64);
        metrics::gauge!("tern_store_pool_in_use")
            .set(status.size.saturating_sub(status.available) as f64);
        metrics::gauge!("tern_store_pool_waiting").set(status.waiting as f64);
    }

    /// Closes every connection of this node's pool.
    pub fn close(&self) {
        self.pool.close();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, GroupCache> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached members of a group, if they are those of `version`.
    fn cached_members(&self, id: GroupId, version: i64) -> Option<Arc<Members>> {
        match self.cache().groups.get(&id) {
            Some((v, members)) if *v == version => Some(members.clone()),
            _ => None,
        }
    }

    /// Caches the members of groups a committed transaction read or changed.
    fn remember_groups(&self, groups: impl IntoIterator<Item = (GroupId, i64, Arc<Members>)>) {
        let mut cache = self.cache();
        for (id, version, members) in groups {
            let added = members.len();
            if let Some((_, old)) = cache.groups.insert(id, (version, members)) {
                cache.members -= old.len();
            }
            cache.members += added;
        }
        // Rarely reached: start over rather than track recency on every commit.
        if cache.members > MAX_CACHED_MEMBERS {
            cache.groups.clear();
            cache.members = 0;
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])
            .await
            .map_err(db_err)?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS tern_schema (id INT PRIMARY KEY CHECK (id = 1), version INT NOT NULL);
                     INSERT INTO tern_schema (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(db_err)?;
            let current: i32 = client
                .query_one("SELECT version FROM tern_schema WHERE id = 1", &[])
                .await
                .map_err(db_err)?
                .get(0);
            let known = schema::MIGRATIONS.len() as i32;
            if current > known {
                return Err(StoreError::Corrupt(format!(
                    "database schema version {current} is newer than this build understands ({known})"
                )));
            }
            for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
                let tx = client.transaction().await.map_err(db_err)?;
                tx.batch_execute(sql).await.map_err(db_err)?;
                tx.execute(
                    "UPDATE tern_schema SET version = $1 WHERE id = 1",
                    &[&((i + 1) as i32)],
                )
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                tracing::info!(version = i + 1, "applied schema migration");
            }
            Ok(())
        }
        .await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&schema::MIGRATION_LOCK])
            .await;
        result
    }
}

/// Maps a database error to the store's error class.
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::UNIQUE_VIOLATION =>
        {
            StoreError::Conflict(describe(&e))
        }
        Some(code) if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => {
            StoreError::Corrupt(describe(&e))
        }
        _ => StoreError::Unavailable(describe(&e)),
    }
}

/// A database error with the server's own message, which `Display` leaves out.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[async_trait]
impl CommitStore for PgStore {
    async fn commit(&self, batch: Vec<Write>) -> Result<Vec<AppendOutcome>, StoreError> {
        commit::commit(self, batch).await
    }
}

#[async_trait]
impl HistoryStore for PgStore {
    async fn history(
        &self,
        conversation: &ConversationId,
        anchor_seq: u64,
        direction: Direction,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        let c = self.client().await?;
        reads::history(&c, conversation, anchor_seq, direction, limit).await
    }
}

#[async_trait]
impl InboxStore for PgStore {
    async fn read_inbox(
        &self,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        let c = self.client().await?;
        reads::inbox(&c, user, after, limit).await
    }

    async fn inbox_head(&self, user: &UserId) -> Result<u64, StoreError> {
        let c = self.client().await?;
        reads::inbox_head(&c, user).await
    }

    async fn save_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        seq: u64,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let cursor: i64 = row(
            &c,
            "INSERT INTO devices (user_id, device_id, cursor) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, device_id) DO UPDATE SET cursor = greatest(devices.cursor, excluded.cursor)
             RETURNING cursor",
            &[&user.as_str(), &device.as_str(), &(seq.min(i64::MAX as u64) as i64)],
        )
        .await?
        .get(0);
        Ok(cursor as u64)
    }

    async fn load_cursor(&self, user: &UserId, device: &DeviceId) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(row_opt(
            &c,
            "SELECT cursor FROM devices WHERE user_id = $1 AND device_id = $2",
            &[&user.as_str(), &device.as_str()],
        )
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
    }
}

/// An `admin_keys` row.
fn admin_key_row(r: &tokio_postgres::Row) -> AdminKeyRecord {
    AdminKeyRecord {
        id: r.get(0),
        name: r.get(1),
        hash: r.get(2),
        created_ms: r.get(3),
        revoked_ms: r.get(4),
    }
}

#[async_trait]
impl AdminKeyStore for PgStore {
    async fn create_admin_key(&self, key: &AdminKeyRecord) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "INSERT INTO admin_keys (id, name, hash, created_ms, revoked_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &key.id,
                &key.name,
                &key.hash,
                &key.created_ms,
                &key.revoked_ms,
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn admin_keys(&self) -> Result<Vec<AdminKeyRecord>, StoreError> {
        let c = self.client().await?;
        Ok(rows::rows(
            &c,
            "SELECT id, name, hash, created_ms, revoked_ms FROM admin_keys ORDER BY created_ms, id",
            &[],
        )
        .await?
        .iter()
        .map(admin_key_row)
        .collect())
    }

    async fn admin_key_by_hash(&self, hash: &str) -> Result<Option<AdminKeyRecord>, StoreError> {
        let c = self.client().await?;
        Ok(row_opt(
            &c,
            "SELECT id, name, hash, created_ms, revoked_ms FROM admin_keys WHERE hash = $1",
            &[&hash],
        )
        .await?
        .as_ref()
        .map(admin_key_row))
    }

    async fn revoke_admin_key(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE admin_keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
            &[&id, &at_ms],
        )
        .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let n: i64 = rows::row(
            &tx,
            "UPDATE settings_changes SET n = n + 1 WHERE id = 1 RETURNING n",
            &[],
        )
        .await?
        .get(0);
        exec(
            &tx,
            "INSERT INTO settings (name, value, version) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, version = excluded.version",
            &[&name, &value, &n],
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.client().await?;
        Ok(rows::rows(
            &c,
            "SELECT name, value FROM settings
             WHERE value IS NOT NULL AND left(name, length($1)) = $1 ORDER BY name",
            &[&prefix],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    async fn settings_fingerprint(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        Ok(
            rows::row(&c, "SELECT n FROM settings_changes WHERE id = 1", &[])
                .await?
                .get(0),
        )
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // The counter's row lock orders concurrent calls: the second sees the first's value.
        let n: i64 = rows::row(
            &tx,
            "UPDATE settings_changes SET n = n + 1 WHERE id = 1 RETURNING n",
            &[],
        )
        .await?
        .get(0);
        exec(
            &tx,
            "INSERT INTO settings (name, value, version) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, version = excluded.version
             WHERE settings.value IS NULL",
            &[&name, &value, &n],
        )
        .await?;
        let value: String = rows::row(&tx, "SELECT value FROM settings WHERE name = $1", &[&name])
            .await?
            .get(0);
        tx.commit().await.map_err(db_err)?;
        Ok(value)
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(
        &self,
        user: &UserId,
        password_hash: &str,
        created_ms: i64,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        // The user and its inbox head row come into being together.
        let created = row_opt(
            &c,
            "WITH u AS (
                 INSERT INTO users (id, password_hash, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING RETURNING id
             )
             INSERT INTO inbox_heads (user_id, seq) SELECT id, 0 FROM u RETURNING user_id",
            &[&user.as_str(), &password_hash, &created_ms],
        )
        .await?;
        Ok(created.is_some())
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        Ok(row_opt(
            &c,
            "SELECT password_hash FROM users WHERE id = $1",
            &[&user.as_str()],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        // One token per device: the device's previous token goes in the same transaction.
        let tx = c.transaction().await.map_err(db_err)?;
        exec(
            &tx,
            "DELETE FROM tokens WHERE (user_id = $1 AND device_id = $2) OR hash = $3",
            &[&t.user.as_str(), &t.device.as_str(), &t.hash],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO tokens (hash, user_id, device_id, platform, issued_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &t.hash,
                &t.user.as_str(),
                &t.device.as_str(),
                &t.platform.as_str(),
                &t.issued_ms,
                &t.expires_ms,
            ],
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let c = self.client().await?;
        let Some(r) = row_opt(
            &c,
            "SELECT user_id, device_id, platform, issued_ms, expires_ms FROM tokens WHERE hash = $1",
            &[&hash],
        )
        .await?
        else {
            return Ok(None);
        };
        let device: &str = r.get(1);
        Ok(Some(TokenRecord {
            hash: hash.to_owned(),
            user: rows::user_of(r.get(0))?,
            device: DeviceId::parse(device).map_err(|_| {
                StoreError::Corrupt(format!("token row has an invalid device id {device:?}"))
            })?,
            platform: Platform::from_name(r.get(2)),
            issued_ms: r.get(3),
            expires_ms: r.get(4),
        }))
    }

    async fn revoke_token(&self, hash: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(&c, "DELETE FROM tokens WHERE hash = $1", &[&hash]).await?;
        Ok(())
    }

    async fn user_record(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let c = self.client().await?;
        Ok(row_opt(
            &c,
            "SELECT created_ms, password_hash, disabled_ms FROM users WHERE id = $1",
            &[&user.as_str()],
        )
        .await?
        .map(|r| UserRecord {
            user: user.clone(),
            created_ms: r.get(0),
            has_password: r.get::<_, &str>(1) != tern_core::accounts::NO_PASSWORD,
            disabled_ms: r.get(2),
        }))
    }

    async fn set_disabled(&self, user: &UserId, at_ms: Option<i64>) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE users SET disabled_ms = $2 WHERE id = $1",
            &[&user.as_str(), &at_ms],
        )
        .await?;
        Ok(n == 1)
    }

    async fn revoke_device_tokens(
        &self,
        user: &UserId,
        device: Option<&DeviceId>,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        match device {
            Some(d) => {
                exec(
                    &c,
                    "DELETE FROM tokens WHERE user_id = $1 AND device_id = $2",
                    &[&user.as_str(), &d.as_str()],
                )
                .await
            }
            None => {
                exec(
                    &c,
                    "DELETE FROM tokens WHERE user_id = $1",
                    &[&user.as_str()],
                )
                .await
            }
        }
    }
}

#[async_trait]
impl GroupStore for PgStore {
    async fn group(
        &self,
        id: GroupId,
        user: &UserId,
    ) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError> {
        let c = self.client().await?;
        reads::group(&c, id, user).await
    }

    async fn group_members(
        &self,
        id: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, Member)>, StoreError> {
        let c = self.client().await?;
        reads::members(&c, id, after.as_ref(), limit).await
    }

    async fn departure(
        &self,
        id: GroupId,
        user: &UserId,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let c = self.client().await?;
        reads::departure(&c, id, user).await
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<(GroupRecord, Member)>, StoreError> {
        let c = self.client().await?;
        reads::groups_of(&c, user).await
    }
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn direct_conversations(&self, user: &UserId) -> Result<Vec<ConversationId>, StoreError> {
        let c = self.client().await?;
        reads::direct_conversations(&c, user).await
    }

    async fn summaries(
        &self,
        user: &UserId,
        wanted: Vec<SummaryQuery>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let mut c = self.client().await?;
        // One snapshot for the whole list: heads, marks and counts agree with each other.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_err)?;
        let out = reads::summaries(&tx, user, wanted).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn read_marks(
        &self,
        conversation: &ConversationId,
        users: Vec<UserId>,
    ) -> Result<Vec<u64>, StoreError> {
        let c = self.client().await?;
        reads::read_marks(&c, conversation, &users).await
    }
}

#[async_trait]
impl SocialStore for PgStore {
    async fn profiles(&self, users: Vec<UserId>) -> Result<Vec<Profile>, StoreError> {
        let c = self.client().await?;
        reads::profiles(&c, &users).await
    }

    async fn stranger_policy(&self, user: &UserId) -> Result<StrangerPolicy, StoreError> {
        let c = self.client().await?;
        Ok(row_opt(
            &c,
            "SELECT stranger_policy FROM profiles WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await?
        .map_or(StrangerPolicy::Anyone, |r| rows::codes::policy_of(r.get(0))))
    }

    async fn search_nicknames(&self, prefix: &str, limit: u32) -> Result<Vec<Profile>, StoreError> {
        let c = self.client().await?;
        reads::search_nicknames(&c, prefix, limit).await
    }

    async fn friends(&self, user: &UserId, since: u64) -> Result<Vec<FriendRecord>, StoreError> {
        let c = self.client().await?;
        reads::friends(&c, user, since).await
    }

    async fn friend_requests(
        &self,
        user: &UserId,
        limit: u32,
    ) -> Result<Vec<FriendRequestRecord>, StoreError> {
        let c = self.client().await?;
        reads::friend_requests(&c, user, limit).await
    }

    async fn are_friends(
        &self,
        user: &UserId,
        others: Vec<UserId>,
    ) -> Result<Vec<bool>, StoreError> {
        let c = self.client().await?;
        reads::are_friends(&c, user, &others).await
    }

    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let c = self.client().await?;
        reads::blocked(&c, user).await
    }

    async fn refuses(&self, recipient: &UserId, sender: &UserId) -> Result<bool, StoreError> {
        if recipient == sender {
            return Ok(false);
        }
        let c = self.client().await?;
        Ok(
            row(&c, rows::REFUSES, &[&recipient.as_str(), &sender.as_str()])
                .await?
                .get(0),
        )
    }
}
