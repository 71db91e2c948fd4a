//! Messages and inboxes: gapless seqs, deduplication, history and inbox reads, cursors.

use super::*;

/// Conversation seqs and inbox seqs start at 1 and have no gaps; ids are unique.
pub async fn appends_assign_gapless_seqs(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(text("a", "b", &format!("ab{i}"), "hi"));
        batch.push(text("c", "b", &format!("cb{i}"), "yo"));
    }
    let mut outcomes = store.commit(batch).await.unwrap();
    outcomes.extend(
        store
            .commit(vec![text("b", "a", "ba0", "back")])
            .await
            .unwrap(),
    );
    let ab = ConversationId::direct(&user("a"), &user("b"));
    let ab_seqs: Vec<u64> = outcomes
        .iter()
        .map(stored)
        .filter(|m| m.conversation == ab)
        .map(|m| m.seq)
        .collect();
    assert_eq!(ab_seqs, (1..=11).collect::<Vec<_>>());
    let ids: HashSet<u64> = outcomes.iter().map(|o| stored(o).id.0).collect();
    assert_eq!(ids.len(), outcomes.len(), "message ids are unique");
    let b_inbox: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| match o {
            AppendOutcome::Stored(s) => s.inbox_seqs.clone(),
            _ => vec![],
        })
        .filter(|(u, _)| u == &user("b"))
        .map(|(_, s)| s)
        .collect();
    assert_eq!(b_inbox, (1..=21).collect::<Vec<_>>());
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), 21);
    assert_eq!(store.inbox_head(&user("a")).await.unwrap(), 11);
    assert_eq!(store.inbox_head(&user("nobody")).await.unwrap(), 0);
    // The sender's own inbox seq is recorded on the message.
    let last = stored(outcomes.last().unwrap());
    assert_eq!(last.sender_inbox_seq, 21);
}

/// A retry with the same `(sender, client_msg_id)` returns the original and writes nothing.
pub async fn retries_are_deduplicated(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    let first = store
        .commit(vec![text("a", "b", "m1", "one")])
        .await
        .unwrap();
    let original = stored(&first[0]).clone();
    let again = store
        .commit(vec![
            text("a", "b", "m1", "one"),
            text("a", "b", "m2", "two"),
            text("a", "b", "m2", "two"),
        ])
        .await
        .unwrap();
    match &again[0] {
        AppendOutcome::Duplicate(m) => assert_eq!(**m, original),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let second = stored(&again[1]).clone();
    assert_eq!(second.seq, 2);
    match &again[2] {
        AppendOutcome::Duplicate(m) => assert_eq!(**m, second, "a duplicate within one batch"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // The same client id from another sender is a different message.
    let other = store
        .commit(vec![text("b", "a", "m1", "mine")])
        .await
        .unwrap();
    assert_eq!(stored(&other[0]).seq, 3);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), 3);
}

/// Retries are recognised whatever order a sender's client ids come in: ids below, between
/// and above those stored before, retried one by one and all together, and a new id below all
/// of them is still new.
pub async fn retries_are_found_whatever_the_order_of_client_ids(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    let ids = ["m5", "m3", "m9", "m1", "m7", "x", "a"];
    let mut originals = Vec::new();
    for id in ids {
        let out = store.commit(vec![text("a", "b", id, id)]).await.unwrap();
        originals.push(stored(&out[0]).clone());
    }
    for (id, original) in ids.iter().zip(&originals).rev() {
        let out = store.commit(vec![text("a", "b", id, id)]).await.unwrap();
        match &out[0] {
            AppendOutcome::Duplicate(m) => assert_eq!(**m, *original, "retry of {id}"),
            other => panic!("expected the retry of {id} to be a duplicate, got {other:?}"),
        }
    }
    let out = store
        .commit(ids.iter().map(|id| text("a", "b", id, id)).collect())
        .await
        .unwrap();
    for ((id, original), o) in ids.iter().zip(&originals).zip(&out) {
        match o {
            AppendOutcome::Duplicate(m) => assert_eq!(**m, *original, "retry of {id}"),
            other => panic!("expected the retry of {id} to be a duplicate, got {other:?}"),
        }
    }
    let out = store
        .commit(vec![text("a", "b", "0", "below all")])
        .await
        .unwrap();
    assert_eq!(stored(&out[0]).seq, ids.len() as u64 + 1);
    assert_eq!(
        store.inbox_head(&user("b")).await.unwrap(),
        ids.len() as u64 + 1
    );
}

/// A client message id reused for a different message (other content, or another receiver) is
/// not a retry: it is refused and nothing is stored, whether the first is in this batch, in the
/// tail, or indexed.
pub async fn a_reused_client_id_for_another_message_is_refused(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    let first = store
        .commit(vec![text("a", "b", "m1", "one")])
        .await
        .unwrap();
    let original = stored(&first[0]).clone();
    let out = store
        .commit(vec![
            text("a", "b", "m1", "other words"),
            text("a", "c", "m1", "one"),
            text("a", "b", "m1", "one"),
            text("a", "b", "m2", "two"),
            text("a", "b", "m2", "changed"),
        ])
        .await
        .unwrap();
    for (i, o) in out.iter().enumerate() {
        let refused = matches!(o, AppendOutcome::Refused(Refusal::ClientMsgIdReused));
        let want = matches!(i, 0 | 1 | 4);
        assert_eq!(refused, want, "write {i}: {o:?}");
    }
    match &out[2] {
        AppendOutcome::Duplicate(m) => assert_eq!(**m, original, "the exact retry"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(stored(&out[3]).seq, 2);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), 2);
    assert_eq!(
        store.inbox_head(&user("c")).await.unwrap(),
        0,
        "nothing for c"
    );
}

/// A message to an unknown user is refused; the rest of its batch is unaffected.
pub async fn unknown_users_store_nothing(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    let out = store
        .commit(vec![
            text("a", "ghost", "g1", "boo"),
            text("a", "b", "ok1", "hi"),
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::UnknownUser(u) if u == &user("ghost")));
    assert_eq!(stored(&out[1]).seq, 1);
    assert_eq!(
        store.inbox_head(&user("a")).await.unwrap(),
        1,
        "no entry for the refused message"
    );
    let ghost = ConversationId::direct(&user("a"), &user("ghost"));
    let page = store
        .history(&ghost, 0, Direction::Backward, 10)
        .await
        .unwrap();
    assert!(page.messages.is_empty());
    // The same client id is free to use again: nothing was stored under it.
    let out = store
        .commit(vec![text("a", "b", "g1", "reuse")])
        .await
        .unwrap();
    assert_eq!(stored(&out[0]).seq, 2);
}

/// History pages go backward and forward from an anchor, oldest first, with `has_more`.
pub async fn history_pages_both_ways(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    let batch = (1..=25)
        .map(|i| text("a", "b", &format!("h{i}"), &format!("n{i}")))
        .collect();
    store.commit(batch).await.unwrap();
    let conv = ConversationId::direct(&user("a"), &user("b"));
    let seqs =
        |p: &tern_core::store::HistoryPage| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let p = store
        .history(&conv, 0, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (16..=25).collect::<Vec<_>>());
    assert!(p.has_more);
    let p = store
        .history(&conv, 16, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (6..=15).collect::<Vec<_>>());
    let p = store
        .history(&conv, 6, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (1..=5).collect::<Vec<_>>());
    assert!(!p.has_more);
    let p = store
        .history(&conv, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (1..=10).collect::<Vec<_>>());
    assert!(p.has_more);
    let p = store
        .history(&conv, 20, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (21..=25).collect::<Vec<_>>());
    assert!(!p.has_more);
    match &p.messages[0].content {
        Content::Text(t) => assert_eq!(t.text, "n21"),
        other => panic!("content lost: {other:?}"),
    }
}

/// Inbox reads return contiguous entries after the cursor, with the head.
pub async fn inbox_reads_are_contiguous_from_the_cursor(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    for i in 0..3 {
        let batch = (0..10)
            .map(|j| {
                text(
                    if j % 2 == 0 { "a" } else { "c" },
                    "b",
                    &format!("i{i}-{j}"),
                    "x",
                )
            })
            .collect();
        store.commit(batch).await.unwrap();
    }
    let page = store.read_inbox(&user("b"), 0, 1000).await.unwrap();
    assert_eq!(page.head, 30);
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    let page = store.read_inbox(&user("b"), 17, 5).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![18, 19, 20, 21, 22]
    );
    let InboxEvent::Message(m) = &page.entries[0].event;
    assert_eq!(m.client_msg_id, "i1-7");
    let page = store.read_inbox(&user("b"), 30, 5).await.unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.head, 30);
}

/// A device cursor only moves forward.
pub async fn cursors_never_move_backwards(store: &dyn Backend) {
    let (u, d) = (user("a"), DeviceId::parse("phone").unwrap());
    assert_eq!(store.load_cursor(&u, &d).await.unwrap(), 0);
    assert_eq!(store.save_cursor(&u, &d, 5).await.unwrap(), 5);
    assert_eq!(store.save_cursor(&u, &d, 3).await.unwrap(), 5);
    assert_eq!(store.save_cursor(&u, &d, 9).await.unwrap(), 9);
    assert_eq!(store.load_cursor(&u, &d).await.unwrap(), 9);
    let other = DeviceId::parse("desktop").unwrap();
    assert_eq!(store.load_cursor(&u, &other).await.unwrap(), 0);
}

/// While appends commit, every read sees a contiguous prefix: never seq N+1 without N.
pub async fn readers_never_see_a_gap<S: Backend>(store: Arc<S>) {
    register(&*store, &["a", "b"]).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let batch = (0..25)
                    .map(|j| text("a", "b", &format!("r{i}-{j}"), "x"))
                    .collect();
                store.commit(batch).await.unwrap();
            }
        })
    };
    let conv = ConversationId::direct(&user("a"), &user("b"));
    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        let page = store.read_inbox(&user("b"), 0, 2000).await.unwrap();
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=page.head).collect::<Vec<_>>(),
            "inbox read with a gap"
        );
        let hist = store
            .history(&conv, 0, Direction::Forward, 2000)
            .await
            .unwrap();
        let hseqs: Vec<u64> = hist.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            hseqs,
            (1..=hseqs.len() as u64).collect::<Vec<_>>(),
            "history read with a gap"
        );
        reads += 1;
        if done {
            break;
        }
    }
    writer.await.unwrap();
    assert!(reads >= 1);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), 1000);
}
