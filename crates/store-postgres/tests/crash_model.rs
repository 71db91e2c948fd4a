//! The crash model (`tern_store::conformance::crash_model`) on PostgreSQL: a node process
//! committing random writes into a real database, killed with SIGKILL at random moments many
//! times in a row (transactions in flight roll back with its connections), and checked against
//! a model of everything acknowledged after every restart.

use std::sync::Arc;

use tern_store::conformance::{Backend, crash_model};
use tern_store_postgres::{PgConfig, PgStore};

mod common;

/// In the child: connects to the database and serves the parent until killed.
fn child_if_asked() {
    if crash_model::child_location().is_some() {
        crash_model::child_main(|url, pool| async move {
            let config = PgConfig {
                pool_size: pool.parse().expect("a pool size"),
                ..PgConfig::default()
            };
            let store = PgStore::connect(&url, config).await.expect("store opens");
            Arc::new(store) as Arc<dyn Backend>
        });
    }
}

fn database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::fresh_database())
}

/// Every acknowledged write survives repeated kills of the node at random moments, exactly
/// once and where its ack said, whether the node commits over one connection or many.
#[test]
fn acked_writes_survive_repeated_kills_at_random_moments() {
    const TEST: &str = "acked_writes_survive_repeated_kills_at_random_moments";
    child_if_asked();
    if let Some(secs) = crash_model::soak_secs() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut seeds = 0;
        while std::time::Instant::now() < deadline {
            let seed = rand::random::<u64>();
            if let Err(e) = crash_model::run_seed(TEST, &database(), "8", seed, 12) {
                panic!("{e}");
            }
            seeds += 1;
        }
        println!("soak: {seeds} seeds passed");
        return;
    }
    for (seed, pool) in [(1, "1"), (2, "8"), (3, "1"), (4, "8")] {
        if let Err(e) = crash_model::run_seed(TEST, &database(), pool, seed, 8) {
            panic!("{e}");
        }
    }
}

/// Sends across restarts: 300 killed right after the last ack, a cursor and 300 more, another
/// kill, 300 more; nothing acknowledged is lost and no seq is handed out twice.
#[test]
fn inbox_entries_written_after_a_recovery_survive_the_next_crash() {
    const TEST: &str = "inbox_entries_written_after_a_recovery_survive_the_next_crash";
    child_if_asked();
    if let Err(e) =
        crash_model::run_script(TEST, &database(), "8", crash_model::sends_across_restarts())
    {
        panic!("{e}");
    }
}
