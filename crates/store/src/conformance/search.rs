//! Message search: every committed text is a candidate for any substring of it (three
//! characters or fewer included), an edit makes the new text one, only the searcher's scope is
//! answered, newest first, and what was stored before a reopen is still found.

use tern_core::search::{Candidate, SearchRequest, SearchScope};

use super::*;

fn scope(pairs: &[(&str, &str, u64)]) -> Option<Vec<SearchScope>> {
    Some(
        pairs
            .iter()
            .map(|(a, b, from)| SearchScope {
                conversation: ConversationId::direct(&user(a), &user(b)),
                from_seq: *from,
            })
            .collect(),
    )
}

async fn find(
    store: &dyn Backend,
    scope: Option<Vec<SearchScope>>,
    query: &str,
    before: u64,
) -> Vec<Candidate> {
    store
        .search(SearchRequest {
            scope,
            query: tern_core::search::fold(query),
            sender: None,
            before,
            limit: 50,
        })
        .await
        .unwrap()
}

fn ids(found: &[Candidate]) -> Vec<u64> {
    found.iter().map(|c| c.id.0).collect()
}

/// Substrings of every length, folded; scope, floors, sender, paging and edits.
pub async fn search_finds_substrings_within_scope_newest_first(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    let out = store
        .commit(vec![
            text("a", "b", "s1", "Hello 世界, the weather is fine"),
            text("b", "a", "s2", "你好吗? WEATHER again"),
            text("a", "c", "s3", "weather for c only"),
            text("a", "b", "s4", "nothing to see"),
        ])
        .await
        .unwrap();
    let id = |i: usize| stored(&out[i]).id.0;
    let ab = scope(&[("a", "b", 1)]);
    assert_eq!(
        ids(&find(store, ab.clone(), "weather", 0).await),
        [id(1), id(0)]
    );
    assert_eq!(
        ids(&find(store, ab.clone(), "世界", 0).await),
        [id(0)],
        "two characters"
    );
    assert_eq!(
        ids(&find(store, ab.clone(), "好", 0).await),
        [id(1)],
        "one character"
    );
    assert_eq!(
        ids(&find(store, ab.clone(), "ＷＥＡＴＨ", 0).await),
        [id(1), id(0)]
    );
    assert!(find(store, ab.clone(), "absent", 0).await.is_empty());
    assert_eq!(
        ids(&find(store, ab.clone(), "weather", id(1)).await),
        [id(0)],
        "paged"
    );
    assert_eq!(
        ids(&find(store, scope(&[("a", "b", 2)]), "weather", 0).await),
        [id(1)],
        "seqs below the floor are out of scope"
    );
    assert_eq!(
        ids(&find(store, None, "weather", 0).await),
        [id(2), id(1), id(0)]
    );
    let from_b = store
        .search(SearchRequest {
            scope: None,
            query: "weather".into(),
            sender: Some(user("b")),
            before: 0,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(ids(&from_b), [id(1)]);
    let hit = &find(store, scope(&[("a", "c", 1)]), "for c", 0).await[0];
    assert_eq!(
        (hit.conversation.clone(), hit.seq),
        (ConversationId::direct(&user("a"), &user("c")), 1)
    );

    // An edit makes its new text findable (its old text may still be a candidate).
    let edited = store
        .commit(vec![amend(
            "a",
            id(3),
            Amendment::Edit(Content::text("now about kites")),
            0,
        )])
        .await
        .unwrap();
    assert!(applied(&edited[0]).1.is_some(), "{:?}", edited[0]);
    assert_eq!(ids(&find(store, ab.clone(), "kites", 0).await), [id(3)]);
}

/// What was findable stays findable after a clean close and a reopen.
pub async fn search_survives_a_reopen<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    register(&store, &["a", "b"]).await;
    let out = store
        .commit(vec![text("a", "b", "r1", "remember the 长城")])
        .await
        .unwrap();
    let id = stored(&out[0]).id.0;
    h.close(store).await;
    let store = h.open(&loc).await;
    assert_eq!(
        ids(&find(&store, scope(&[("a", "b", 1)]), "长城", 0).await),
        [id]
    );
    assert_eq!(ids(&find(&store, None, "remember", 0).await), [id]);
    h.close(store).await;
}
