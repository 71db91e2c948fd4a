//! The PostgreSQL backend against the conformance suite, one test per case, each on a database
//! of its own in the server that `TERN_TEST_POSTGRES` names (`scripts/test` starts one).

use async_trait::async_trait;
use tern_store::conformance::Harness;
use tern_store_postgres::{PgConfig, PgStore};

mod common;
use common::fresh_database;

struct Postgres {
    config: PgConfig,
}

#[async_trait]
impl Harness for Postgres {
    type Location = String;
    type Store = PgStore;

    async fn location(&self) -> String {
        fresh_database().await
    }

    async fn open(&self, url: &String) -> PgStore {
        PgStore::connect(url, self.config.clone()).await.unwrap()
    }

    async fn close(&self, store: PgStore) {
        store.close();
    }
}

/// The default configuration.
mod default {
    use super::*;
    tern_store::conformance_tests!(Postgres {
        config: PgConfig::default()
    });
}

/// One connection: every read waits for the commit in flight, and commits queue for the pool.
mod one_connection {
    use super::*;
    tern_store::conformance_tests!(Postgres {
        config: PgConfig {
            pool_size: 1,
            ..PgConfig::default()
        }
    });
}
