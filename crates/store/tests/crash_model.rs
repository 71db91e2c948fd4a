//! The crash model (`tern_store::conformance::crash_model`) on the SQLite store: a child
//! process over a real data directory, killed at random moments many times in a row, checked
//! against a model of everything acknowledged after every restart.
//!
//! A soak runs fresh seeds until time is up:
//! `TERN_CRASH_SOAK_SECS=600 cargo test -p tern-store --test crash_model`.

use std::{sync::Arc, time::Duration};

use rand::{SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde::{Deserialize, Serialize};
use tern_store::{
    SqliteConfig, SqliteStore, Synchronous,
    conformance::{Backend, crash_model},
};

/// Store settings the child opens with.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoreSettings {
    full_sync: bool,
    index_interval_ms: u64,
    index_chunk: usize,
    max_tail: usize,
}

impl StoreSettings {
    fn config(self) -> SqliteConfig {
        SqliteConfig {
            synchronous: if self.full_sync {
                Synchronous::Full
            } else {
                Synchronous::Normal
            },
            index_interval: Duration::from_millis(self.index_interval_ms),
            index_chunk: self.index_chunk,
            max_tail: self.max_tail,
            ..SqliteConfig::default()
        }
    }
}

/// In the child: opens the store and serves the parent until killed.
fn child_if_asked() {
    if crash_model::child_location().is_some() {
        crash_model::child_main(|dir, settings| async move {
            let settings: StoreSettings = serde_json::from_str(&settings).unwrap();
            let store = SqliteStore::open(std::path::Path::new(&dir), settings.config())
                .expect("store opens");
            Arc::new(store) as Arc<dyn Backend>
        });
    }
}

/// Odd seeds run with `store_sync = normal`, even ones with `full`; the rest is random.
fn random_settings(seed: u64) -> String {
    let rng = &mut StdRng::seed_from_u64(seed ^ 0x5eed);
    serde_json::to_string(&StoreSettings {
        full_sync: seed.is_multiple_of(2),
        index_interval_ms: *[0, 5, 30, 200, 1000].choose(rng).unwrap(),
        index_chunk: *[7, 64, 20_000].choose(rng).unwrap(),
        max_tail: *[40, 100_000].choose(rng).unwrap(),
    })
    .unwrap()
}

fn run_seed(test: &str, seed: u64, rounds: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    crash_model::run_seed(test, location, &random_settings(seed), seed, rounds)
}

/// Every acknowledged write survives repeated kills at random moments, exactly once and where
/// its ack said, and nothing a restart rebuilds (the tail, the heads, the index watermark, the
/// group and block caches) goes back.
#[test]
fn acked_writes_survive_repeated_kills_at_random_moments() {
    const TEST: &str = "acked_writes_survive_repeated_kills_at_random_moments";
    child_if_asked();
    if let Some(secs) = crash_model::soak_secs() {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut seeds = 0;
        while std::time::Instant::now() < deadline {
            if let Err(e) = run_seed(TEST, rand::random::<u64>(), 12) {
                panic!("{e}");
            }
            seeds += 1;
        }
        println!("soak: {seeds} seeds passed");
        return;
    }
    for seed in [1, 2, 3, 4, 5, 6] {
        if let Err(e) = run_seed(TEST, seed, 8) {
            panic!("{e}");
        }
    }
}

/// Regression: inbox entries written after a recovery survive the next crash (see
/// `crash_model::sends_across_restarts`), with the indexer never running while the store is
/// open, so everything comes back from the append-only tables.
#[test]
fn inbox_entries_written_after_a_recovery_survive_the_next_crash() {
    const TEST: &str = "inbox_entries_written_after_a_recovery_survive_the_next_crash";
    child_if_asked();
    let settings = serde_json::to_string(&StoreSettings {
        full_sync: true,
        index_interval_ms: 3_600_000,
        index_chunk: 20_000,
        max_tail: 100_000,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    if let Err(e) = crash_model::run_script(
        TEST,
        location,
        &settings,
        crash_model::sends_across_restarts(),
    ) {
        panic!("{e}");
    }
}
