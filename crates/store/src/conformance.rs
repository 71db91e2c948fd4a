//! The conformance suite every storage backend passes: the same test bodies, run against each
//! backend through a [`Harness`].
//!
//! Each case states one guarantee of the storage traits. A backend's test file implements the
//! harness and calls every case; the crash case needs a process to kill and lives in the
//! backend's test file, built from [`write_acked`] and [`verify_acked`].

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use tern_core::{
    ConversationId, DeviceId, Platform, UserId, pb,
    store::{
        AccountStore, AppendOutcome, Direction, InboxEvent, MessageStore, NewMessage, TokenRecord,
    },
};

/// Both storage traits, as one backend implements them.
pub trait Backend: MessageStore + AccountStore {}
impl<T: MessageStore + AccountStore> Backend for T {}

/// How the suite opens, closes and reopens a backend.
#[async_trait]
pub trait Harness: Send + Sync {
    /// An opaque name for a storage location (a directory, a database name).
    type Location: Clone + Send + Sync;
    /// The backend's store type.
    type Store: Backend + Clone;
    /// A fresh, empty location.
    async fn location(&self) -> Self::Location;
    /// Opens the backend at `location`.
    async fn open(&self, location: &Self::Location) -> Self::Store;
    /// Closes the backend cleanly.
    async fn close(&self, store: Self::Store);
}

/// Runs every case of the suite, each on a fresh location.
pub async fn run_all<H: Harness>(h: &H) {
    appends_assign_gapless_seqs(&fresh(h).await).await;
    retries_are_deduplicated(&fresh(h).await).await;
    unknown_users_store_nothing(&fresh(h).await).await;
    history_pages_both_ways(&fresh(h).await).await;
    inbox_reads_are_contiguous_from_the_cursor(&fresh(h).await).await;
    cursors_never_move_backwards(&fresh(h).await).await;
    accounts_and_tokens(&fresh(h).await).await;
    readers_never_see_a_gap(Arc::new(fresh(h).await)).await;
    reopen_keeps_everything(h).await;
}

async fn fresh<H: Harness>(h: &H) -> H::Store {
    let loc = h.location().await;
    h.open(&loc).await
}

/// A user id for tests.
pub fn user(s: &str) -> UserId {
    UserId::parse(s).expect("valid test user id")
}

/// A text message from `from` to `to` with client message id `cmid`.
pub fn text(from: &str, to: &str, cmid: &str, body: &str) -> NewMessage {
    let (f, t) = (user(from), user(to));
    let mut inboxes = vec![f.clone()];
    if f != t {
        inboxes.push(t.clone());
    }
    NewMessage {
        conversation: ConversationId::direct(&f, &t),
        sender: f,
        client_msg_id: cmid.to_owned(),
        server_time_ms: 1_700_000_000_000,
        content: pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: body.to_owned(),
            })),
        },
        inboxes,
    }
}

async fn register(store: &dyn Backend, users: &[&str]) {
    for u in users {
        assert!(
            store
                .create_user(&user(u), "$argon2id$stub", 0)
                .await
                .unwrap()
        );
    }
}

fn stored(outcome: &AppendOutcome) -> &tern_core::store::StoredMessage {
    match outcome {
        AppendOutcome::Stored { message, .. } => message,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

/// Conversation seqs and inbox seqs start at 1 and have no gaps; ids are unique.
pub async fn appends_assign_gapless_seqs(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(text("a", "b", &format!("ab{i}"), "hi"));
        batch.push(text("c", "b", &format!("cb{i}"), "yo"));
    }
    let mut outcomes = store.append(batch).await.unwrap();
    outcomes.extend(
        store
            .append(vec![text("b", "a", "ba0", "back")])
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
            AppendOutcome::Stored { inbox_seqs, .. } => inbox_seqs.clone(),
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
        .append(vec![text("a", "b", "m1", "one")])
        .await
        .unwrap();
    let original = stored(&first[0]).clone();
    let again = store
        .append(vec![
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
        .append(vec![text("b", "a", "m1", "mine")])
        .await
        .unwrap();
    assert_eq!(stored(&other[0]).seq, 3);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), 3);
}

/// A message to an unknown user is refused; the rest of its batch is unaffected.
pub async fn unknown_users_store_nothing(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    let out = store
        .append(vec![
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
        .append(vec![text("a", "b", "g1", "reuse")])
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
    store.append(batch).await.unwrap();
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
    match &p.messages[0].content.body {
        Some(pb::content::Body::Text(t)) => assert_eq!(t.text, "n21"),
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
        store.append(batch).await.unwrap();
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

/// Users are unique; a device has one token; revoked tokens are gone.
pub async fn accounts_and_tokens(store: &dyn Backend) {
    let a = user("alice");
    assert!(store.create_user(&a, "hash1", 1).await.unwrap());
    assert!(!store.create_user(&a, "hash2", 2).await.unwrap());
    assert_eq!(
        store.password_hash(&a).await.unwrap().as_deref(),
        Some("hash1")
    );
    assert_eq!(store.password_hash(&user("bob")).await.unwrap(), None);
    let token = |hash: &str, device: &str| TokenRecord {
        hash: hash.into(),
        user: a.clone(),
        device: DeviceId::parse(device).unwrap(),
        platform: Platform::Ios,
        issued_ms: 10,
        expires_ms: 20,
    };
    store.put_token(&token("t1", "phone")).await.unwrap();
    store.put_token(&token("t2", "laptop")).await.unwrap();
    assert_eq!(
        store.find_token("t1").await.unwrap(),
        Some(token("t1", "phone"))
    );
    store.put_token(&token("t3", "phone")).await.unwrap();
    assert_eq!(
        store.find_token("t1").await.unwrap(),
        None,
        "replaced by the device's new token"
    );
    assert_eq!(
        store.find_token("t3").await.unwrap(),
        Some(token("t3", "phone"))
    );
    store.revoke_token("t3").await.unwrap();
    store.revoke_token("never-existed").await.unwrap();
    assert_eq!(store.find_token("t3").await.unwrap(), None);
    assert!(store.find_token("t2").await.unwrap().is_some());
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
                store.append(batch).await.unwrap();
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

/// Closing and reopening keeps messages, heads, cursors, tokens and deduplication.
pub async fn reopen_keeps_everything<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    register(&store, &["a", "b"]).await;
    let acked = write_acked(&store, "a", "b", 30).await;
    let d = DeviceId::parse("phone").unwrap();
    store.save_cursor(&user("b"), &d, 12).await.unwrap();
    store
        .put_token(&TokenRecord {
            hash: "tok".into(),
            user: user("b"),
            device: d.clone(),
            platform: Platform::Android,
            issued_ms: 1,
            expires_ms: 2,
        })
        .await
        .unwrap();
    h.close(store).await;

    let store = h.open(&loc).await;
    verify_acked(&store, "a", "b", &acked).await;
    assert_eq!(store.load_cursor(&user("b"), &d).await.unwrap(), 12);
    assert!(store.find_token("tok").await.unwrap().is_some());
    h.close(store).await;
}

/// Appends `n` messages from `from` to `to` one by one (as separate commits) and returns the
/// client message ids and conversation seqs that were acknowledged.
pub async fn write_acked(
    store: &dyn Backend,
    from: &str,
    to: &str,
    n: usize,
) -> Vec<(String, u64)> {
    let mut acked = Vec::with_capacity(n);
    for i in 0..n {
        acked.push(write_acked_one(store, from, to, &format!("w{i}")).await);
    }
    acked
}

/// Appends one message and returns its client message id and conversation seq once acknowledged.
pub async fn write_acked_one(
    store: &dyn Backend,
    from: &str,
    to: &str,
    cmid: &str,
) -> (String, u64) {
    let out = store
        .append(vec![text(from, to, cmid, &format!("body of {cmid}"))])
        .await
        .unwrap();
    (cmid.to_owned(), stored(&out[0]).seq)
}

/// Checks that every acknowledged message is present exactly once with its seq, that the
/// conversation and inbox have no gaps, and that appending continues after the last seq and
/// still deduplicates.
pub async fn verify_acked(store: &dyn Backend, from: &str, to: &str, acked: &[(String, u64)]) {
    let conv = ConversationId::direct(&user(from), &user(to));
    let page = store
        .history(&conv, 0, Direction::Forward, 100_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "history has a gap"
    );
    for (cmid, seq) in acked {
        let found: Vec<_> = page
            .messages
            .iter()
            .filter(|m| &m.client_msg_id == cmid)
            .collect();
        assert_eq!(found.len(), 1, "acked message {cmid} present exactly once");
        assert_eq!(found[0].seq, *seq, "acked message {cmid} kept its seq");
    }
    let inbox = store.read_inbox(&user(to), 0, 100_000).await.unwrap();
    let iseqs: Vec<u64> = inbox.entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        iseqs,
        (1..=inbox.head).collect::<Vec<_>>(),
        "inbox has a gap"
    );
    assert_eq!(inbox.entries.len(), page.messages.len());
    let next = seqs.len() as u64 + 1;
    let out = store
        .append(vec![text(from, to, "after-reopen", "x")])
        .await
        .unwrap();
    assert_eq!(stored(&out[0]).seq, next, "seqs continue after reopen");
    if let Some((cmid, seq)) = acked.first() {
        let out = store
            .append(vec![text(from, to, cmid, "retry")])
            .await
            .unwrap();
        match &out[0] {
            AppendOutcome::Duplicate(m) => assert_eq!(m.seq, *seq),
            other => panic!("a retry after reopen was not deduplicated: {other:?}"),
        }
    }
}
