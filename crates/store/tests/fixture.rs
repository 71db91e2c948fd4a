//! A data directory written by an earlier build opens, migrates, and reads back as it was
//! written: the stored encodings (message content, enum numbers, timelines, the index file) are
//! a contract with every data directory in the field.
//!
//! `fixtures/data-2026-11-30` was written by the `tern` binary of 2026-11-30 (commit
//! `ff24319`), through its CLI: alice, bob and carol; four messages between alice and bob (the
//! third recalled, the fourth edited); a group "team" created by alice with bob and carol and a
//! message from bob in it; bob and carol friends; carol blocking alice; bob's read mark at the
//! head of his conversation with alice; then a clean shutdown. That build had no message
//! search: its messages are found after the upgrade too.

use std::path::Path;

use tern_core::{
    ConversationId, GroupId,
    content::Content,
    groups::Role,
    search::{SearchRequest, SearchStore},
    social::{SocialStore, StrangerPolicy},
    store::{CommitStore, ConversationStore, Direction, GroupStore, HistoryStore, InboxStore},
};
use tern_store::{SqliteConfig, SqliteStore, conformance};

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-2026-11-30");
    for file in ["tern.db", "tern-index.db"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

fn text_of(m: &tern_core::store::StoredMessage) -> Option<&str> {
    match &m.content {
        Content::Text(t) => Some(&t.text),
        _ => None,
    }
}

/// Checks everything the fixture holds; `upgraded`: with the one message written after the
/// upgrade.
async fn check(store: &SqliteStore, upgraded: bool) {
    let (alice, bob, carol) = (
        conformance::user("alice"),
        conformance::user("bob"),
        conformance::user("carol"),
    );
    let ab = ConversationId::direct(&alice, &bob);
    let page = store
        .history(&ab, 0, Direction::Forward, 100)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    let head = if upgraded { 7 } else { 6 };
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "four messages and two events, then the new one"
    );
    assert_eq!(text_of(&page.messages[0]), Some("hello bob"));
    assert_eq!(page.messages[0].sender, alice);
    assert_eq!(text_of(&page.messages[1]), Some("hi alice"));
    assert_eq!(
        page.messages[2].recalled_by,
        Some(alice.clone()),
        "recalled"
    );
    assert_eq!(text_of(&page.messages[3]), Some("edited text"));
    assert!(page.messages[3].edited_ms > 0);

    let (group, me) = store.group(GroupId(1), &alice).await.unwrap().unwrap();
    assert_eq!(group.settings.name, "team");
    assert_eq!(group.member_count, 3);
    assert_eq!(group.head_seq, 2, "the creation event and bob's message");
    assert_eq!(me.map(|m| m.role), Some(Role::Owner));
    let members = store.group_members(GroupId(1), None, 10).await.unwrap();
    let roles: Vec<(String, Role)> = members
        .iter()
        .map(|(u, m)| (u.to_string(), m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("alice".to_string(), Role::Owner),
            ("bob".to_string(), Role::Member),
            ("carol".to_string(), Role::Member)
        ]
    );

    assert_eq!(
        store
            .are_friends(&bob, vec![carol.clone(), alice.clone()])
            .await
            .unwrap(),
        [true, false]
    );
    assert_eq!(
        store.blocked(&carol).await.unwrap(),
        std::slice::from_ref(&alice)
    );
    assert_eq!(
        store.stranger_policy(&alice).await.unwrap(),
        StrangerPolicy::Anyone
    );
    assert_eq!(store.read_marks(&ab, vec![bob.clone()]).await.unwrap(), [6]);

    // Messages stored before search existed are found: the first open adds them.
    for (query, at) in [("hello bob", 0), ("edited", 3)] {
        let found = store
            .search(SearchRequest {
                scope: None,
                query: query.into(),
                sender: None,
                before: 0,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(
            found.iter().any(|c| c.id == page.messages[at].id),
            "{query:?}: {found:?}"
        );
    }

    // Every inbox is whole and gapless.
    for user in [&alice, &bob, &carol] {
        let inbox = store.read_inbox(user, 0, 1000).await.unwrap();
        let seqs: Vec<u64> = inbox.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=inbox.head).collect::<Vec<_>>(), "{user}'s inbox");
        assert!(inbox.head > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_written_by_an_earlier_build_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    check(&store, false).await;
    // New writes continue every sequence where the old build left it.
    let out = store
        .commit(vec![conformance::text(
            "alice",
            "bob",
            "after-upgrade",
            "x",
        )])
        .await
        .unwrap();
    let tern_core::store::AppendOutcome::Stored(stored) = &out[0] else {
        panic!("stored: {out:?}")
    };
    assert_eq!(stored.message.seq, 7);
    store.close().await;
    // And the upgraded directory opens again.
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    check(&store, true).await;
    store.close().await;
}
