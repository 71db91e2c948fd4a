//! The SQLite backend against the conformance suite (one test per case per configuration),
//! including a real crash: a child process writes, reports what was acknowledged, and aborts
//! without closing the store.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use async_trait::async_trait;
use tern_store::{
    SqliteConfig, SqliteStore,
    conformance::{self, Harness},
};

struct Sqlite {
    root: tempfile::TempDir,
    config: SqliteConfig,
}

#[async_trait]
impl Harness for Sqlite {
    type Location = PathBuf;
    type Store = SqliteStore;

    async fn location(&self) -> PathBuf {
        tempfile::tempdir_in(self.root.path()).unwrap().keep()
    }

    async fn open(&self, location: &PathBuf) -> SqliteStore {
        SqliteStore::open(location, self.config.clone()).unwrap()
    }

    async fn close(&self, store: SqliteStore) {
        store.close().await;
    }
}

fn suite(config: SqliteConfig) -> Sqlite {
    Sqlite {
        root: tempfile::tempdir().unwrap(),
        config,
    }
}

/// The default configuration.
mod default {
    use super::*;
    tern_store::conformance_tests!(suite(SqliteConfig::default()));
}

/// The indexer runs after every commit, so reads constantly straddle the tail and the indexes.
mod indexing_after_every_commit {
    use super::*;
    tern_store::conformance_tests!(suite(SqliteConfig {
        index_interval: Duration::ZERO,
        index_chunk: 7,
        ..SqliteConfig::default()
    }));
}

/// The indexer never runs while the store is open: everything is served from the tail, and
/// reopening after a close (which indexes everything) starts from the indexes alone.
mod serving_everything_from_the_tail {
    use super::*;
    tern_store::conformance_tests!(suite(SqliteConfig {
        index_interval: Duration::from_secs(3600),
        ..SqliteConfig::default()
    }));
}

const CHILD_ENV: &str = "TERN_STORE_CRASH_CHILD_DIR";
const CHILD_INDEXING_ENV: &str = "TERN_STORE_CRASH_CHILD_INDEXING";

/// The child half of the crash tests: the test binary started again by the parent test, with
/// the directory in the environment. It writes, reports each ack, and dies without closing.
async fn crash_child(dir: String) -> ! {
    // Either indexing after every commit, so that the crash finds both indexed and unindexed
    // messages, or never, so that everything acknowledged must come back from the append-only
    // tables alone.
    let config = match std::env::var(CHILD_INDEXING_ENV).as_deref() {
        Ok("never") => SqliteConfig {
            index_interval: Duration::from_secs(3600),
            ..SqliteConfig::default()
        },
        _ => SqliteConfig {
            index_interval: Duration::ZERO,
            index_chunk: 50,
            ..SqliteConfig::default()
        },
    };
    let store = SqliteStore::open(std::path::Path::new(&dir), config).unwrap();
    use tern_core::store::AccountStore;
    let _ = store
        .create_user(&conformance::user("a"), "h", 0)
        .await
        .unwrap();
    let _ = store
        .create_user(&conformance::user("b"), "h", 0)
        .await
        .unwrap();
    // Acknowledged writes are reported one per line as they complete, then the process dies
    // mid-stream: the writer thread may be inside a transaction at that moment.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 1000..2000 {
                use tern_core::store::CommitStore;
                let _ = store
                    .commit(vec![conformance::text("a", "b", &format!("bg{i}"), "x")])
                    .await;
            }
        })
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in 0..200 {
        let acked = conformance::write_acked_one(&store, "a", "b", &format!("w{i}")).await;
        writeln!(out, "\nACK {} {}", acked.0, acked.1).unwrap();
        out.flush().unwrap();
    }
    drop(writer);
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_a_crash() {
    crash_and_verify("acked_writes_survive_a_crash", "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_a_crash_before_any_indexing() {
    crash_and_verify("acked_writes_survive_a_crash_before_any_indexing", "never").await;
}

/// Starts this test again as the child, kills nothing (the child aborts itself mid-stream), and
/// checks every ack it reported. In the child, runs the child's part instead.
async fn crash_and_verify(test: &str, indexing: &str) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child(dir).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env(CHILD_INDEXING_ENV, indexing)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the child must die, not exit cleanly"
    );
    let mut acked = Vec::new();
    for line in BufReader::new(out.stdout.as_slice()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            // Each ack is printed on a line of its own, after the harness's own output.
            let (cmid, seq) = rest.split_once(' ').unwrap();
            acked.push((cmid.to_owned(), seq.parse::<u64>().unwrap()));
        }
    }
    assert_eq!(
        acked.len(),
        200,
        "the child acknowledged every write before dying"
    );
    assert!(
        dir.path().join("tern.db-wal").exists(),
        "the crash left the WAL behind"
    );
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    conformance::verify_acked(&store, "a", "b", &acked).await;
}

/// Commits never checkpoint `tern.db` themselves; a thread beside the writer copies the WAL
/// into the database file. Without it the file would stay at its initial size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_beside_the_writer() {
    use tern_core::store::{AccountStore, CommitStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    let db = dir.path().join(tern_store::sqlite::DB_FILE);
    let initial = std::fs::metadata(&db).unwrap().len();
    store
        .create_user(&conformance::user("a"), "h", 0)
        .await
        .unwrap();
    store
        .create_user(&conformance::user("b"), "h", 0)
        .await
        .unwrap();
    let body = "x".repeat(200);
    for batch in 0..40 {
        let messages = (0..50)
            .map(|i| conformance::text("a", "b", &format!("m{batch}-{i}"), &body))
            .collect();
        store.commit(messages).await.unwrap();
    }
    // 2,000 messages of 200 bytes: about 400 KB of rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&db).unwrap().len();
        if size >= initial + 300_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tern.db is still {size} bytes (initially {initial}): the WAL was never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
}

/// The tail lives in memory until the indexer takes it, so a stalled indexer must stop the
/// writer before memory runs away: once the tail holds four times its bound, commits wait (and
/// their sends with them) until the indexer has caught up, and then every one of them lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_indexer_holds_commits_at_four_times_the_tail_bound() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tern_core::store::{AccountStore, CommitStore};
    const BOUND: usize = 10;
    const BATCHES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        max_tail: BOUND,
        // Passes only when the writer wakes the indexer: the tail's size decides, not a timer.
        index_interval: Duration::from_secs(3600),
        ..SqliteConfig::default()
    };
    let store = Arc::new(SqliteStore::open(dir.path(), config).unwrap());
    for u in ["a", "b"] {
        store
            .create_user(&conformance::user(u), "h", 0)
            .await
            .unwrap();
    }
    // Another connection holds the index file's write lock: the indexer cannot take anything.
    let blocker =
        rusqlite::Connection::open(dir.path().join(tern_store::sqlite::INDEX_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let acked = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let (store, acked) = (store.clone(), acked.clone());
        async move {
            for batch in 0..BATCHES {
                let messages = (0..BOUND)
                    .map(|i| conformance::text("a", "b", &format!("m{batch}-{i}"), "x"))
                    .collect();
                store.commit(messages).await.unwrap();
                acked.fetch_add(BOUND, Ordering::SeqCst);
            }
        }
    });
    // Wait until the acknowledgements stop coming at or past the bound (a slow disk may pause
    // them earlier for a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = acked.load(Ordering::SeqCst);
        if now == last && (now >= 4 * BOUND || std::time::Instant::now() > deadline) {
            break;
        }
        last = now;
    }
    assert!(
        (4 * BOUND..=5 * BOUND).contains(&last),
        "with the indexer stalled, {last} messages were acknowledged; the writer should hold \
         commits once the tail reaches {}",
        4 * BOUND
    );
    assert!(!writer.is_finished());

    // The indexer catches up, and every held send is committed.
    blocker.execute_batch("ROLLBACK").unwrap();
    tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the held commits resumed")
        .unwrap();
    assert_eq!(acked.load(Ordering::SeqCst), BATCHES * BOUND);
    let store = Arc::into_inner(store).expect("the only handle");
    store.close().await;
}

/// Indexing is background work: its thread runs at nice 10 so that, sharing a core, it yields
/// to the writer and the connections. Only that thread: the writer keeps the process's priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_indexer_thread_runs_at_a_lower_priority() {
    /// (name, nice) from a `/proc/…/stat` line: "tid (name) state ppid …". The name may hold
    /// spaces, so the fields are counted after its ')'; nice is field 19, and the rest starts at
    /// field 3.
    fn name_and_nice(stat: &str) -> Option<(String, i64)> {
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
        Some((name, nice))
    }
    /// (thread name, nice) of every thread of this process.
    fn threads() -> Vec<(String, i64)> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| {
                name_and_nice(&std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?)
            })
            .collect()
    }
    // The priority the process runs at (0 unless the test itself was started under `nice`).
    let (_, base) = name_and_nice(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
    let lowered = base.max(10);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (indexers, writers) = loop {
        let all = threads();
        let of = |prefix: &str| -> Vec<i64> {
            all.iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, nice)| *nice)
                .collect()
        };
        let (indexers, writers) = (of("tern-sqlite-ind"), of("tern-sqlite-wri"));
        // The threads start beside the test, and the indexer lowers its priority as its first
        // step: give them the moment to.
        let started = !indexers.is_empty() && !writers.is_empty();
        if started && indexers.iter().all(|n| *n == lowered) || std::time::Instant::now() > deadline
        {
            break (indexers, writers);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!indexers.is_empty(), "no indexer thread: {:?}", threads());
    assert!(
        indexers.iter().all(|n| *n == lowered),
        "indexer nice {indexers:?}, expected {lowered}"
    );
    assert!(!writers.is_empty(), "no writer thread: {:?}", threads());
    assert!(
        writers.iter().all(|n| *n == base),
        "writer nice {writers:?}, expected {base}"
    );
    store.close().await;
}

/// A data directory left by a build that let `inbox_log` hand out row ids again from 1 once the
/// table was empty, and stored a largest released row id beside the watermark: rows of
/// unindexed messages sit below that stored bound. Opening it must keep every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_whose_inbox_log_reused_row_ids_keeps_every_entry() {
    use tern_core::store::{AccountStore, CommitStore, InboxStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    for u in ["a", "b"] {
        store
            .create_user(&conformance::user(u), "h", 0)
            .await
            .unwrap();
    }
    let five = (0..5)
        .map(|i| conformance::text("a", "b", &format!("m{i}"), "x"))
        .collect();
    store.commit(five).await.unwrap();
    // A clean close indexes all five: the watermark is 5.
    store.close().await;
    drop(store);

    // What the old build left after the table emptied: five more messages, unindexed, whose
    // entries took row ids 1..=10 again, under a stored release bound of 10.
    let main = rusqlite::Connection::open(dir.path().join(tern_store::sqlite::DB_FILE)).unwrap();
    main.execute_batch(
        "DELETE FROM inbox_log;
         INSERT INTO messages (conversation, seq, sender, client_msg_id, server_time_ms, sender_inbox_seq, content)
             SELECT conversation, seq + 5, sender, client_msg_id || '-again', server_time_ms, sender_inbox_seq + 5, content
             FROM messages ORDER BY id;
         INSERT INTO inbox_log (id, user_id, seq, message_id)
             SELECT 2 * (id - 5) - 1, 'a', id, id FROM messages WHERE id > 5;
         INSERT INTO inbox_log (id, user_id, seq, message_id)
             SELECT 2 * (id - 5), 'b', id, id FROM messages WHERE id > 5;",
    )
    .unwrap();
    drop(main);
    let index =
        rusqlite::Connection::open(dir.path().join(tern_store::sqlite::INDEX_FILE)).unwrap();
    index
        .execute_batch(
            "ALTER TABLE index_state ADD COLUMN indexed_log INTEGER NOT NULL DEFAULT 10;
             DROP TABLE search;
             ALTER TABLE index_state DROP COLUMN search_upto;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(index);

    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    for u in ["a", "b"] {
        let page = store
            .read_inbox(&conformance::user(u), 0, 100)
            .await
            .unwrap();
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "{u}'s inbox");
        assert_eq!(page.head, 10);
    }
    // The next message continues both inboxes; nothing is handed out twice.
    let next = store
        .commit(vec![conformance::text("a", "b", "after", "x")])
        .await
        .unwrap();
    match &next[0] {
        tern_core::store::AppendOutcome::Stored(s) => {
            assert_eq!(
                s.inbox_seqs,
                vec![(conformance::user("a"), 11), (conformance::user("b"), 11)]
            );
        }
        other => panic!("expected a stored message, got {other:?}"),
    }
    store.close().await;
}

/// A send skips the dedupe index when its client message id is above the sender's bound. That
/// bound must cover the messages that were in the tail, or earlier in the same batch, when it
/// was computed: here the writer's caches hold one sender, so `a`'s bound is computed again
/// after `b` evicted it, while `a`'s last message is in the tail (then in the batch); the
/// indexer then moves that message into the index, and its retry (now in neither the batch
/// nor the tail) must still be found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_above_a_recomputed_bound_is_still_found() {
    use tern_core::store::{AppendOutcome, CommitStore};
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        head_cache: 1,
        // A third message in the tail wakes the indexer; no timer does.
        max_tail: 3,
        index_interval: Duration::from_secs(3600),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(dir.path(), config).unwrap();
    conformance::register(&store, &["a", "b"]).await;
    let index =
        rusqlite::Connection::open(dir.path().join(tern_store::sqlite::INDEX_FILE)).unwrap();
    // Waits for the indexer's pass to take `id`, and for the tail to let it go (the pass
    // commits the index first and releases the tail right after).
    let indexed = |id: &'static str| {
        let index = &index;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let n: i64 = index
                    .query_row(
                        "SELECT count(*) FROM dedupe_index WHERE client_msg_id = ?1",
                        [id],
                        |r| r.get(0),
                    )
                    .unwrap();
                if n == 1 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{id} was never indexed"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let write = |from: &str, to: &str, id: &str| conformance::text(from, to, id, id);

    // The bound recomputed while "z" is in the tail.
    let mut out = Vec::new();
    for w in [
        write("a", "b", "z"),
        write("b", "a", "b1"),
        write("a", "b", "c"),
    ] {
        out.extend(store.commit(vec![w]).await.unwrap());
    }
    let AppendOutcome::Stored(z) = &out[0] else {
        panic!("z is new: {:?}", out[0])
    };
    indexed("z").await;
    match &store.commit(vec![write("a", "b", "z")]).await.unwrap()[0] {
        AppendOutcome::Duplicate(m) => assert_eq!(**m, *z.message),
        other => panic!("the retry of z was not recognised: {other:?}"),
    }

    // The bound recomputed while "zz" is earlier in the same batch.
    let out = store
        .commit(vec![
            write("a", "b", "zz"),
            write("b", "a", "b2"),
            write("a", "b", "d"),
        ])
        .await
        .unwrap();
    let AppendOutcome::Stored(zz) = &out[0] else {
        panic!("zz is new: {:?}", out[0])
    };
    indexed("zz").await;
    match &store.commit(vec![write("a", "b", "zz")]).await.unwrap()[0] {
        AppendOutcome::Duplicate(m) => assert_eq!(**m, *zz.message),
        other => panic!("the retry of zz was not recognised: {other:?}"),
    }
    store.close().await;
}
