//! A database written before message search existed: its messages (edits and recalls applied
//! in order) are added to the search table when a store connects, and an edit committed after
//! the upgrade is never undone by that backfill.

use tern_core::{
    search::{SearchRequest, SearchStore},
    store::{Amendment, AppendOutcome, CommitStore},
};
use tern_store::conformance::{self, amend, text};
use tern_store_postgres::{PgConfig, PgStore};

mod common;
use common::fresh_database;

fn id_of(out: &AppendOutcome) -> u64 {
    match out {
        AppendOutcome::Stored(s) => s.message.id.0,
        other => panic!("stored: {other:?}"),
    }
}

async fn find(store: &PgStore, query: &str) -> Vec<u64> {
    store
        .search(SearchRequest {
            scope: None,
            query: query.into(),
            sender: None,
            before: 0,
            limit: 50,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_before_search_are_found_after_the_upgrade() {
    let url = fresh_database().await;
    let store = PgStore::connect(&url, PgConfig::default()).await.unwrap();
    conformance::register(&store, &["a", "b"]).await;
    let out = store
        .commit(vec![
            text("a", "b", "o1", "an old kite"),
            text("a", "b", "o2", "an old secret"),
            text("a", "b", "o3", "an old draft"),
        ])
        .await
        .unwrap();
    let (kite, secret, draft) = (id_of(&out[0]), id_of(&out[1]), id_of(&out[2]));
    store
        .commit(vec![
            amend("a", secret, Amendment::Recall, 0),
            amend(
                "a",
                draft,
                Amendment::Edit(conformance::text_content("a final version")),
                0,
            ),
        ])
        .await
        .unwrap();
    store.close();

    // What a database of the build before search looks like: no search rows, and every message
    // below the bound still to be added.
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute(
        "DELETE FROM message_search;
         UPDATE search_backfill SET done_upto = 0,
             backfill_below = (SELECT MAX(id) + 1 FROM messages);",
    )
    .await
    .unwrap();

    let store = PgStore::connect(&url, PgConfig::default()).await.unwrap();
    assert_eq!(find(&store, "kite").await, [kite]);
    assert!(
        find(&store, "secret").await.is_empty(),
        "recalled before the upgrade"
    );
    assert_eq!(
        find(&store, "final").await,
        [draft],
        "edited before the upgrade"
    );
    assert!(find(&store, "draft").await.is_empty());
    let state = db
        .query_one("SELECT done_upto, backfill_below FROM search_backfill", &[])
        .await
        .unwrap();
    assert_eq!(state.get::<_, i64>(0) + 1, state.get::<_, i64>(1));
    store.close();

    // A backfill that reaches a message after an edit of it was committed keeps the edit's text.
    db.batch_execute(
        "DELETE FROM message_search;
         UPDATE search_backfill SET done_upto = 0,
             backfill_below = (SELECT MAX(id) + 1 FROM messages);",
    )
    .await
    .unwrap();
    let store = PgStore::connect(&url, PgConfig::default()).await.unwrap();
    store
        .commit(vec![amend(
            "a",
            kite,
            Amendment::Edit(conformance::text_content("a new kite story")),
            0,
        )])
        .await
        .unwrap();
    db.batch_execute("UPDATE search_backfill SET done_upto = 0")
        .await
        .unwrap();
    store.close();
    let store = PgStore::connect(&url, PgConfig::default()).await.unwrap();
    assert_eq!(find(&store, "story").await, [kite]);
    assert!(find(&store, "old kite").await.is_empty());
    store.close();
}
