//! The embedded store: two SQLite files in WAL mode under the data directory (`tern.db`, the
//! append-only history and the keyed state, written by the writer thread; `tern-index.db`, the
//! keyed indexes, written by the indexer thread), the in-memory tail between them, and readers.

mod append;
mod checkpoint;
mod files;
mod push;
use tern_core::codes;
mod groups;
mod indexer;
mod outbox;
mod reader;
mod rows;
mod schema;
mod social;
mod tail;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tern_core::{
    ConversationId, DeviceId, GroupId, Platform, StoreError, UserId,
    groups::Member,
    search::{Candidate, SearchRequest, SearchStore},
    social::{FriendRecord, FriendRequestRecord, Profile, SocialStore, StrangerPolicy},
    store::{
        AccountStore, AdminKeyRecord, AdminKeyStore, AppendOutcome, CommitStore, ConversationStore,
        ConversationSummary, Direction, GroupRecord, GroupStore, HistoryPage, HistoryStore,
        InboxPage, InboxStore, SettingsStore, SummaryQuery, TokenRecord, UserRecord, Write,
    },
};

use self::{
    checkpoint::Checkpointer,
    indexer::{IndexPolicy, Indexer, Progress},
    reader::ReaderPool,
    rows::{MESSAGE_COLUMNS, message_from_row, store_err},
    tail::{Tail, TailEntry},
    writer::{Batch, Command, FnJob, JobError, Writer, WriterParts},
};

/// How hard SQLite works to make a commit survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit syncs the WAL before it returns: an ack survives power loss. The default.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: an ack survives a crash of Tern but the newest
    /// commits may be lost on power loss.
    Normal,
    /// No syncs at all: for benchmarks and throwaway data only.
    Off,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            "off" => Ok(Synchronous::Off),
            other => Err(format!(
                "unknown sync policy {other:?}; expected full, normal or off"
            )),
        }
    }
}

/// Settings of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The sync policy; `Full` makes every ack durable.
    pub synchronous: Synchronous,
    /// Read connections (reads run beside the writer thanks to WAL).
    pub readers: usize,
    /// Entries the writer keeps in memory per kind: sequence heads (users, conversations),
    /// known one-to-one pairs, and senders' dedupe bounds (about 130 bytes each).
    pub head_cache: usize,
    /// Group states (settings and members) the writer keeps in memory.
    pub group_cache: usize,
    /// The most write jobs committed in one transaction.
    pub max_jobs_per_commit: usize,
    /// The database page size in bytes, applied when the database is created.
    pub page_size: u32,
    /// How often committed messages are copied from the in-memory tail into the keyed indexes.
    /// Longer intervals write each hot index page less often; the tail holds what is pending.
    pub index_interval: Duration,
    /// Messages copied per indexer transaction.
    pub index_chunk: usize,
    /// A tail this long wakes the indexer before its interval is up.
    pub max_tail: usize,
    /// SQLite's page cache per connection, in KiB. The store opens the writer's, the indexer's,
    /// the checkpointer's and one per reader, so this times their number bounds the caches.
    pub cache_kib: u32,
}

impl SqliteConfig {
    fn pragmas(&self) -> Pragmas {
        Pragmas {
            synchronous: self.synchronous,
            cache_kib: self.cache_kib,
        }
    }
}

/// What every connection of the store is opened with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pragmas {
    pub(crate) synchronous: Synchronous,
    pub(crate) cache_kib: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            readers: 4,
            head_cache: 100_000,
            group_cache: 1024,
            max_jobs_per_commit: 4096,
            page_size: 4096,
            index_interval: Duration::from_millis(1000),
            index_chunk: 20_000,
            max_tail: 100_000,
            // 2 MiB a connection keeps a server under 100 MiB at 2,000 connections and
            // 10,000 msg/s however long it runs (bench/README.md); 4 MiB cost about 9 MiB
            // more and bought nothing measurable.
            cache_kib: 2048,
        }
    }
}

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// `None` once closed. The lock is held only to clone or take the sender.
    writer: Mutex<Option<mpsc::Sender<Command>>>,
    readers: ReaderPool,
    /// Committed messages not yet in the keyed indexes; shared by the writer, the indexer and
    /// the readers.
    tail: Arc<Mutex<Tail>>,
    /// Builds the keyed indexes; stopped (after indexing everything) at close.
    indexer: Mutex<Indexer>,
    /// The webhooks whose events commits queue in the outbox.
    routes: Arc<tern_core::webhooks::Routes>,
}

/// The main database file's name inside the data directory: accounts and the append-only
/// message tables.
pub const DB_FILE: &str = "tern.db";

/// The index database file's name inside the data directory: the keyed indexes. Both files
/// together are the store; back them up together.
pub const INDEX_FILE: &str = "tern-index.db";

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, applies migrations, and starts the writer
    /// thread. A database left by a crash is recovered from its WAL here.
    pub fn open(dir: &Path, config: SqliteConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let index_path = dir.join(INDEX_FILE);
        let open_rw = |p: &Path, file| -> Result<Connection, StoreError> {
            let fresh = !p.exists();
            let mut conn = open_connection(
                p,
                config.pragmas(),
                false,
                fresh.then_some(config.page_size),
            )
            .map_err(store_err)?;
            schema::migrate(&mut conn, file)?;
            Ok(conn)
        };
        let mut conn = open_rw(&path, schema::File::Main)?;
        outbox::clear_leases(&conn).map_err(store_err)?;
        // Checkpoints of tern.db run on their own thread (see checkpoint.rs), never in a commit:
        // the writer's commits only report the WAL's size to it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(store_err)?;
        let checkpointer = Checkpointer::start(
            open_connection(&path, config.pragmas(), false, None).map_err(store_err)?,
            &path,
        )
        .map_err(|e| StoreError::Unavailable(format!("starting the checkpoint thread: {e}")))?;
        if let Some(checkpoints) = checkpointer.waker() {
            conn.wal_hook(Some(
                move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                    if pages >= checkpoint::WAL_PAGES {
                        checkpoints.unpark();
                    }
                    Ok(())
                },
            ))
            .map_err(store_err)?;
        }
        // A WAL that grew under load is cut back when the writer restarts it.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(store_err)?;
        let mut index_conn = open_rw(&index_path, schema::File::Index)?;
        indexer::backfill_search(&conn, &mut index_conn)?;
        // Whatever was committed but not indexed before the last shutdown (or crash) is read
        // back into the tail. An inbox_log row is indexed exactly when its message is at or
        // below the watermark: the indexer writes a message's entries in the same transaction
        // that moves the watermark past it. Row ids say nothing across processes (a file
        // written by an older build may have reused them), so rows go by message id here.
        let watermark: i64 = index_conn
            .query_row(
                "SELECT indexed_upto FROM index_state WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(store_err)?;
        conn.execute("DELETE FROM inbox_log WHERE message_id <= ?1", [watermark])
            .map_err(store_err)?;
        let next_log: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM inbox_log", [], |r| {
                r.get(0)
            })
            .map_err(store_err)?;
        let tail = Arc::new(Mutex::new(
            load_tail(&conn, watermark as u64).map_err(StoreError::from)?,
        ));
        drop(index_conn);
        let progress = Arc::new(Progress::default());
        let indexer = Indexer::start(
            &index_path,
            config.pragmas(),
            tail.clone(),
            IndexPolicy {
                interval: config.index_interval,
                chunk: config.index_chunk,
                max_tail: config.max_tail,
            },
            progress.clone(),
        )
        .map_err(store_err)?;
        let readers = ReaderPool::open(&path, &index_path, config.readers.max(1), config.pragmas())
            .map_err(store_err)?;
        let writer = Writer::new(
            conn,
            WriterParts {
                index: open_connection(&index_path, config.pragmas(), true, None)
                    .map_err(store_err)?,
                tail: tail.clone(),
                head_cache: config.head_cache,
                group_cache: config.group_cache,
                max_jobs: config.max_jobs_per_commit,
                progress,
                indexer: indexer.waker(),
                wake_at: config.max_tail,
                checkpointer,
                next_log: next_log as u64,
            },
        );
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("tern-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                readers,
                tail,
                indexer: Mutex::new(indexer),
                routes: Arc::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits every queued write, checkpoints the WAL and stops the writer. Later writes fail
    /// with `Unavailable`; reads keep working.
    pub async fn close(&self) {
        let sender = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(sender) = sender {
            let (done, wait) = tokio::sync::oneshot::channel();
            if sender.send(Command::Close(done)).is_ok() {
                let _ = wait.await;
            }
        }
        // Commits are over; the indexer now indexes the whole tail, checkpoints and stops, so
        // the next open has nothing to replay.
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner
                .indexer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stop();
        })
        .await;
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> Result<T, JobError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(FnJob::new(f, reply));
        {
            let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let sender = writer
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
            sender
                .send(Command::Job(job))
                .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }
}

/// Opens one connection with Tern's pragmas.
fn open_connection(
    path: &Path,
    pragmas: Pragmas,
    read_only: bool,
    new_page_size: Option<u32>,
) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Query plans must not depend on bound values: otherwise SQLite re-prepares (re-parses) a
    // cached statement each time a parameter it planned with changes, which measured at half
    // the writer's CPU per message.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    if let Some(size) = new_page_size {
        // Only effective before the first table exists (and before WAL mode is entered).
        conn.pragma_update(None, "page_size", size)?;
    }
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", pragmas.synchronous.pragma())?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -i64::from(pragmas.cache_kib.max(64)))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Rebuilds the tail from the rows above the index watermark.
fn load_tail(conn: &Connection, watermark: u64) -> Result<Tail, JobError> {
    let watermark = watermark as i64;
    let mut tail = Tail {
        watermark: watermark as u64,
        ..Tail::default()
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id > ?1 ORDER BY m.id"
    ))?;
    let mut rows = stmt.query([watermark])?;
    while let Some(row) = rows.next()? {
        tail.push_message(Arc::new(message_from_row(row, 0)?));
    }
    let mut stmt = conn.prepare(
        "SELECT id, user_id, seq, message_id FROM inbox_log WHERE message_id > ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([watermark])?;
    while let Some(row) = rows.next()? {
        let (log_id, user, seq, message_id): (i64, String, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let user = UserId::parse(&user).map_err(|_| {
            StoreError::Corrupt(format!("inbox_log row {log_id} has an invalid user"))
        })?;
        let message = tail
            .messages
            .get(&(message_id as u64))
            .cloned()
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "inbox_log row {log_id} points at missing message {message_id}"
                ))
            })?;
        tail.push_entry(
            &user,
            TailEntry {
                seq: seq as u64,
                message,
                log_id: log_id as u64,
            },
        );
    }
    if tail.len() > 0 {
        tracing::info!(messages = tail.len(), "recovered the unindexed tail");
    }
    Ok(tail)
}

#[async_trait]
impl CommitStore for SqliteStore {
    async fn commit(&self, batch: Vec<Write>) -> Result<Vec<AppendOutcome>, StoreError> {
        let routes = self.inner.routes.clone();
        let mut events = routes.collector();
        let (outcomes, queued) = self
            .write(move |b| {
                let outcomes = append::append_batch(b, batch, events.as_mut())?;
                let queued = match events {
                    Some(e) => outbox::insert(b.conn, &e.into_rows())?,
                    None => 0,
                };
                Ok((outcomes, queued))
            })
            .await?;
        if queued > 0 {
            routes.notify_queued();
        }
        Ok(outcomes)
    }
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn history(
        &self,
        conversation: &ConversationId,
        anchor_seq: u64,
        direction: Direction,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        let conversation = conversation.clone();
        let tail = self.inner.tail.clone();
        self.read(move |conn| {
            reader::history(conn, &tail, &conversation, anchor_seq, direction, limit)
        })
        .await
    }
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search(&self, request: SearchRequest) -> Result<Vec<Candidate>, StoreError> {
        let tail = self.inner.tail.clone();
        self.read(move |conn| reader::search(conn, &tail, &request))
            .await
    }
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn read_inbox(
        &self,
        user: &UserId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        let user = user.clone();
        let tail = self.inner.tail.clone();
        self.read(move |conn| reader::inbox(conn, &tail, &user, after, limit))
            .await
    }

    async fn inbox_head(&self, user: &UserId) -> Result<u64, StoreError> {
        let in_tail = self
            .inner
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inbox_head(user);
        if let Some(head) = in_tail {
            return Ok(head);
        }
        let user = user.clone();
        self.read(move |conn| reader::inbox_head(conn, &user)).await
    }

    async fn save_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        seq: u64,
    ) -> Result<u64, StoreError> {
        let (user, device) = (user.clone(), device.clone());
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "INSERT INTO devices (user_id, device_id, cursor) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET cursor = max(cursor, excluded.cursor)
                     RETURNING cursor",
                )?
                .query_row(params![user.as_str(), device.as_str(), seq as i64], |r| r.get::<_, i64>(0))
                .map(|c| c as u64)
                .map_err(JobError::from)
        })
        .await
    }

    async fn load_cursor(&self, user: &UserId, device: &DeviceId) -> Result<u64, StoreError> {
        let (user, device) = (user.clone(), device.clone());
        self.read(move |conn| {
            conn.prepare_cached("SELECT cursor FROM devices WHERE user_id = ?1 AND device_id = ?2")
                .and_then(|mut s| {
                    s.query_row(params![user.as_str(), device.as_str()], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                })
                .map(|c| c.unwrap_or(0) as u64)
                .map_err(store_err)
        })
        .await
    }
}

/// An `admin_keys` row.
fn admin_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminKeyRecord> {
    Ok(AdminKeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        created_ms: r.get(3)?,
        revoked_ms: r.get(4)?,
    })
}

#[async_trait]
impl AdminKeyStore for SqliteStore {
    async fn create_admin_key(&self, key: &AdminKeyRecord) -> Result<bool, StoreError> {
        let k = key.clone();
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached(
                    "INSERT INTO admin_keys (id, name, hash, created_ms, revoked_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![k.id, k.name, k.hash, k.created_ms, k.revoked_ms])?;
            Ok(n == 1)
        })
        .await
    }

    async fn admin_keys(&self) -> Result<Vec<AdminKeyRecord>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, name, hash, created_ms, revoked_ms FROM admin_keys
                 ORDER BY created_ms, id",
            )
            .and_then(|mut s| s.query_map([], admin_key_row)?.collect())
            .map_err(store_err)
        })
        .await
    }

    async fn admin_key_by_hash(&self, hash: &str) -> Result<Option<AdminKeyRecord>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, name, hash, created_ms, revoked_ms FROM admin_keys WHERE hash = ?1",
            )
            .and_then(|mut s| s.query_row([hash.as_str()], admin_key_row).optional())
            .map_err(store_err)
        })
        .await
    }

    async fn revoke_admin_key(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached(
                    "UPDATE admin_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                )?
                .execute(params![id, at_ms])?;
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.write(move |b| {
            // One writer: the next version is the largest so far plus one.
            b.conn
                .prepare_cached(
                    "INSERT INTO settings (name, value, version)
                     VALUES (?1, ?2, (SELECT COALESCE(MAX(version), 0) + 1 FROM settings))
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                         version = excluded.version",
                )?
                .execute(params![name, value])?;
            Ok(())
        })
        .await
    }

    async fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT name, value FROM settings
                 WHERE value IS NOT NULL AND substr(name, 1, length(?1)) = ?1 ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([prefix.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(store_err)
        })
        .await
    }

    async fn settings_fingerprint(&self) -> Result<i64, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT COALESCE(SUM(version), 0) FROM settings")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(store_err)
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "INSERT INTO settings (name, value, version)
                     VALUES (?1, ?2, (SELECT COALESCE(MAX(version), 0) + 1 FROM settings))
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                         version = excluded.version
                     WHERE settings.value IS NULL",
                )?
                .execute(params![name, value])?;
            Ok(b.conn
                .prepare_cached("SELECT value FROM settings WHERE name = ?1")?
                .query_row([name.as_str()], |r| r.get(0))?)
        })
        .await
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(
        &self,
        user: &UserId,
        password_hash: &str,
        created_ms: i64,
    ) -> Result<bool, StoreError> {
        let (user, hash) = (user.clone(), password_hash.to_owned());
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached(
                    "INSERT INTO users (id, password_hash, created_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![user.as_str(), hash, created_ms])?;
            Ok(n == 1)
        })
        .await
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT password_hash FROM users WHERE id = ?1")
                .and_then(|mut s| s.query_row([user.as_str()], |r| r.get(0)).optional())
                .map_err(store_err)
        })
        .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let t = token.clone();
        self.write(move |b| {
            // REPLACE drops the device's previous token (unique on user and device) with it.
            b.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO tokens (hash, user_id, device_id, platform, issued_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.hash,
                    t.user.as_str(),
                    t.device.as_str(),
                    t.platform.as_str(),
                    t.issued_ms,
                    t.expires_ms
                ])?;
            Ok(())
        })
        .await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT user_id, device_id, platform, issued_ms, expires_ms FROM tokens WHERE hash = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([hash.as_str()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()
                })
                .map_err(store_err)?;
            let Some((user, device, platform, issued_ms, expires_ms)) = row else {
                return Ok(None);
            };
            let corrupt = |what: &str| StoreError::Corrupt(format!("token row has an invalid {what}"));
            Ok(Some(TokenRecord {
                hash,
                user: UserId::parse(&user).map_err(|_| corrupt("user id"))?,
                device: DeviceId::parse(&device).map_err(|_| corrupt("device id"))?,
                platform: Platform::from_name(&platform),
                issued_ms,
                expires_ms,
            }))
        })
        .await
    }

    async fn revoke_token(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.write(move |b| {
            b.conn
                .prepare_cached("DELETE FROM tokens WHERE hash = ?1")?
                .execute([hash.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn user_record(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT created_ms, password_hash, disabled_ms FROM users WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([user.as_str()], |r| {
                    Ok(UserRecord {
                        user: user.clone(),
                        created_ms: r.get(0)?,
                        has_password: r.get::<_, String>(1)? != tern_core::accounts::NO_PASSWORD,
                        disabled_ms: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(store_err)
        })
        .await
    }

    async fn set_disabled(&self, user: &UserId, at_ms: Option<i64>) -> Result<bool, StoreError> {
        let user = user.clone();
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached("UPDATE users SET disabled_ms = ?2 WHERE id = ?1")?
                .execute(params![user.as_str(), at_ms])?;
            Ok(n == 1)
        })
        .await
    }

    async fn revoke_device_tokens(
        &self,
        user: &UserId,
        device: Option<&DeviceId>,
    ) -> Result<u64, StoreError> {
        let (user, device) = (user.clone(), device.cloned());
        self.write(move |b| {
            let n = match &device {
                Some(d) => b
                    .conn
                    .prepare_cached("DELETE FROM tokens WHERE user_id = ?1 AND device_id = ?2")?
                    .execute([user.as_str(), d.as_str()])?,
                None => b
                    .conn
                    .prepare_cached("DELETE FROM tokens WHERE user_id = ?1")?
                    .execute([user.as_str()])?,
            };
            Ok(n as u64)
        })
        .await
    }
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn group(
        &self,
        id: GroupId,
        user: &UserId,
    ) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError> {
        let user = user.clone();
        let tail = self.inner.tail.clone();
        self.read(move |conn| {
            groups::group(conn, id, &user, |g| {
                reader::conversation_head(conn, &tail, &ConversationId::group(g))
            })
        })
        .await
    }

    async fn group_members(
        &self,
        id: GroupId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<(UserId, Member)>, StoreError> {
        self.read(move |conn| groups::members(conn, id, after.as_ref(), limit))
            .await
    }

    async fn departure(
        &self,
        id: GroupId,
        user: &UserId,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let user = user.clone();
        self.read(move |conn| groups::departure(conn, id, &user))
            .await
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<(GroupRecord, Member)>, StoreError> {
        let user = user.clone();
        let tail = self.inner.tail.clone();
        self.read(move |conn| {
            groups::groups_of(conn, &user, |g| {
                reader::conversation_head(conn, &tail, &ConversationId::group(g))
            })
        })
        .await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn direct_conversations(&self, user: &UserId) -> Result<Vec<ConversationId>, StoreError> {
        let user = user.clone();
        self.read(move |conn| reader::direct_conversations(conn, &user))
            .await
    }

    async fn summaries(
        &self,
        user: &UserId,
        wanted: Vec<SummaryQuery>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let user = user.clone();
        let tail = self.inner.tail.clone();
        self.read(move |conn| reader::summaries(conn, &tail, &user, wanted))
            .await
    }

    async fn read_marks(
        &self,
        conversation: &ConversationId,
        users: Vec<UserId>,
    ) -> Result<Vec<u64>, StoreError> {
        let conversation = conversation.clone();
        self.read(move |conn| reader::read_marks(conn, &conversation, &users))
            .await
    }
}

#[async_trait]
impl SocialStore for SqliteStore {
    async fn profiles(&self, users: Vec<UserId>) -> Result<Vec<Profile>, StoreError> {
        self.read(move |conn| social::profiles(conn, &users)).await
    }

    async fn stranger_policy(&self, user: &UserId) -> Result<StrangerPolicy, StoreError> {
        let user = user.clone();
        self.read(move |conn| social::stranger_policy(conn, &user))
            .await
    }

    async fn search_nicknames(&self, prefix: &str, limit: u32) -> Result<Vec<Profile>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn| social::search_nicknames(conn, &prefix, limit))
            .await
    }

    async fn friends(&self, user: &UserId, since: u64) -> Result<Vec<FriendRecord>, StoreError> {
        let user = user.clone();
        self.read(move |conn| social::friend_rows(conn, &user, since))
            .await
    }

    async fn friend_requests(
        &self,
        user: &UserId,
        limit: u32,
    ) -> Result<Vec<FriendRequestRecord>, StoreError> {
        let user = user.clone();
        self.read(move |conn| social::friend_requests(conn, &user, limit))
            .await
    }

    async fn are_friends(
        &self,
        user: &UserId,
        others: Vec<UserId>,
    ) -> Result<Vec<bool>, StoreError> {
        let user = user.clone();
        self.read(move |conn| social::are_friends(conn, &user, &others))
            .await
    }

    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let user = user.clone();
        self.read(move |conn| social::blocked(conn, &user)).await
    }

    async fn refuses(&self, recipient: &UserId, sender: &UserId) -> Result<bool, StoreError> {
        let (recipient, sender) = (recipient.clone(), sender.clone());
        self.read(move |conn| social::refuses(conn, &recipient, &sender).map_err(rows::store_err))
            .await
    }
}
