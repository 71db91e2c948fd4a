//! The conformance suite every storage backend passes: the same test bodies, run against each
//! backend through a [`Harness`].
//!
//! Each case states one guarantee of the storage traits. A backend's test file implements the
//! harness and calls every case; the crash case needs a process to kill and lives in the
//! backend's test file, built from [`write_acked`] and [`verify_acked`].

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use tern_core::{
    ConversationId, DeviceId, GroupId, Platform, ServiceError, UserId,
    groups::{GroupChange, GroupChangeRequest, GroupLimits, HistoryVisibility, NewGroup, Role},
    pb,
    social::{ProfilePatch, SocialChange, SocialStore, SocialWrite, StrangerPolicy},
    store::{
        AccountStore, Amend, Amendment, AppendOutcome, Audience, ConversationStore,
        ConversationSummary, Direction, GroupStore, InboxEvent, MarkRead, MessageStore, NewMessage,
        SetFlags, Stored, SummaryQuery, TokenRecord, Write,
    },
};

/// Every storage trait, as one backend implements them.
pub trait Backend:
    MessageStore + AccountStore + GroupStore + ConversationStore + SocialStore
{
}
impl<T: MessageStore + AccountStore + GroupStore + ConversationStore + SocialStore> Backend for T {}

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
    a_reused_client_id_for_another_message_is_refused(&fresh(h).await).await;
    unknown_users_store_nothing(&fresh(h).await).await;
    history_pages_both_ways(&fresh(h).await).await;
    inbox_reads_are_contiguous_from_the_cursor(&fresh(h).await).await;
    cursors_never_move_backwards(&fresh(h).await).await;
    accounts_and_tokens(&fresh(h).await).await;
    readers_never_see_a_gap(Arc::new(fresh(h).await)).await;
    small_groups_write_every_inbox(&fresh(h).await).await;
    large_groups_write_the_timeline_only(&fresh(h).await).await;
    group_rules_apply_in_batch_order(&fresh(h).await).await;
    group_reads(&fresh(h).await).await;
    read_marks_and_unread_counts(&fresh(h).await).await;
    recall_and_edit_amend_what_readers_see(&fresh(h).await).await;
    group_admins_recall_and_flags_change_once(&fresh(h).await).await;
    people_blocks_and_friends_apply_in_commit_order(&fresh(h).await).await;
    unread_counts_stop_at_the_cap(&fresh(h).await).await;
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

fn text_content(body: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: body.to_owned(),
        })),
    }
}

/// A text message from `from` to `to` with client message id `cmid`.
pub fn text(from: &str, to: &str, cmid: &str, body: &str) -> Write {
    let (f, t) = (user(from), user(to));
    let mut inboxes = vec![f.clone()];
    if f != t {
        inboxes.push(t.clone());
    }
    Write::Message(NewMessage {
        conversation: ConversationId::direct(&f, &t),
        sender: f,
        client_msg_id: cmid.to_owned(),
        server_time_ms: 1_700_000_000_000,
        content: text_content(body),
        audience: Audience::Direct(inboxes),
    })
}

/// A text message from `from` to group `group`, with write diffusion up to `write_max`.
pub fn group_text(from: &str, group: GroupId, cmid: &str, write_max: usize) -> Write {
    Write::Message(NewMessage {
        conversation: ConversationId::group(group),
        sender: user(from),
        client_msg_id: cmid.to_owned(),
        server_time_ms: 1_700_000_000_000,
        content: text_content(cmid),
        audience: Audience::Group {
            group,
            write_diffusion_max: write_max,
        },
    })
}

fn limits(write_max: usize) -> GroupLimits {
    GroupLimits {
        write_diffusion_max: write_max,
        ..GroupLimits::default()
    }
}

/// Creating a group owned by `owner` with `members`.
pub fn create_group(owner: &str, members: &[&str], write_max: usize) -> Write {
    Write::CreateGroup(NewGroup {
        owner: user(owner),
        name: "team".into(),
        avatar: String::new(),
        announcement: String::new(),
        history: HistoryVisibility::FromJoin,
        members: members.iter().map(|m| user(m)).collect(),
        request_id: String::new(),
        created_ms: 1_700_000_000_000,
        limits: limits(write_max),
    })
}

/// A change to `group` by `actor`.
pub fn change_group(group: GroupId, actor: &str, change: GroupChange, write_max: usize) -> Write {
    Write::ChangeGroup(GroupChangeRequest {
        group,
        actor: user(actor),
        change,
        now_ms: 1_700_000_000_000,
        limits: limits(write_max),
    })
}

/// The group a create or change outcome is about, and its event.
fn group_outcome(o: &AppendOutcome) -> (GroupId, Option<&Stored>) {
    match o {
        AppendOutcome::Group { state, event, .. } => (state.id, event.as_ref()),
        other => panic!("expected a group outcome, got {other:?}"),
    }
}

fn inbox_users(s: &Stored) -> Vec<UserId> {
    let mut users: Vec<UserId> = s.inbox_seqs.iter().map(|(u, _)| u.clone()).collect();
    users.sort();
    users
}

fn users(names: &[&str]) -> Vec<UserId> {
    let mut v: Vec<UserId> = names.iter().map(|n| user(n)).collect();
    v.sort();
    v
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
        AppendOutcome::Stored(s) => &s.message,
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

/// A client message id reused for a different message (other content, or another receiver) is
/// not a retry: it is refused and nothing is stored, whether the first is in this batch, in the
/// tail, or indexed.
pub async fn a_reused_client_id_for_another_message_is_refused(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    let first = store
        .append(vec![text("a", "b", "m1", "one")])
        .await
        .unwrap();
    let original = stored(&first[0]).clone();
    let out = store
        .append(vec![
            text("a", "b", "m1", "other words"),
            text("a", "c", "m1", "one"),
            text("a", "b", "m1", "one"),
            text("a", "b", "m2", "two"),
            text("a", "b", "m2", "changed"),
        ])
        .await
        .unwrap();
    for (i, o) in out.iter().enumerate() {
        let refused = matches!(o, AppendOutcome::Refused(ServiceError::ClientMsgIdReused));
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

/// A group within the write-diffusion threshold: every member's inbox gets each message and
/// event, the sender's first; the creation event is seq 1.
pub async fn small_groups_write_every_inbox(store: &dyn Backend) {
    register(store, &["a", "b", "c", "x"]).await;
    let out = store
        .append(vec![create_group("a", &["b", "c"], 500)])
        .await
        .unwrap();
    let (g, event) = group_outcome(&out[0]);
    let event = event.expect("creation records an event");
    assert_eq!(event.message.seq, 1);
    assert_eq!(
        event.message.client_msg_id, "",
        "events take no client message id"
    );
    assert!(event.push_members.is_none());
    assert_eq!(inbox_users(event), users(&["a", "b", "c"]));
    assert!(matches!(
        &event.message.content.body,
        Some(pb::content::Body::GroupEvent(e)) if e.kind == pb::GroupEventKind::Created as i32
    ));
    let out = store
        .append(vec![group_text("b", g, "hello", 500)])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[0] else {
        panic!("a member's send was not stored: {:?}", out[0]);
    };
    assert_eq!(s.message.seq, 2);
    assert_eq!(
        s.inbox_seqs[0].0,
        user("b"),
        "the sender's entry comes first"
    );
    assert_eq!(s.message.sender_inbox_seq, s.inbox_seqs[0].1);
    assert_eq!(inbox_users(s), users(&["a", "b", "c"]));
    let c_inbox = store.read_inbox(&user("c"), 0, 10).await.unwrap();
    assert_eq!(c_inbox.entries.len(), 2);
    // Retries are deduplicated like one-to-one messages.
    let out = store
        .append(vec![group_text("b", g, "hello", 500)])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Duplicate(m) if m.seq == 2));
    // A non-member is refused and nothing is written.
    let out = store
        .append(vec![group_text("x", g, "intrude", 500)])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(ServiceError::NotAParticipant)
    ));
    let out = store
        .append(vec![group_text("a", GroupId(999), "nowhere", 500)])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(ServiceError::NotAParticipant)
    ));
    let head = store
        .history(&ConversationId::group(g), 0, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(head.messages.last().unwrap().seq, 2);
}

/// A group above the threshold: a message is one timeline row with no inbox entries, pushed
/// to the members it had when it took its seq; membership events still reach the inboxes of
/// the users they concern.
pub async fn large_groups_write_the_timeline_only(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .append(vec![create_group("a", &["b", "c"], 2)])
        .await
        .unwrap();
    let (g, event) = group_outcome(&out[0]);
    let event = event.unwrap();
    assert!(event.inbox_seqs.is_empty());
    assert_eq!(event.push_members.as_ref().unwrap().len(), 3);
    let heads_before = store.inbox_head(&user("b")).await.unwrap();
    let out = store
        .append(vec![group_text("b", g, "big", 2)])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[0] else {
        panic!("not stored: {:?}", out[0]);
    };
    assert!(
        s.inbox_seqs.is_empty(),
        "read diffusion writes no inbox entry"
    );
    assert_eq!(s.message.sender_inbox_seq, 0);
    assert_eq!(s.push_members.as_ref().unwrap().len(), 3);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), heads_before);
    let out = store
        .append(vec![change_group(
            g,
            "a",
            GroupChange::AddMembers(vec![user("d")]),
            2,
        )])
        .await
        .unwrap();
    let (_, event) = group_outcome(&out[0]);
    let event = event.unwrap();
    assert_eq!(
        inbox_users(event),
        users(&["d"]),
        "the added user learns through its inbox"
    );
    assert_eq!(event.push_members.as_ref().unwrap().len(), 4);
    // Shrinking back under the threshold returns to write diffusion.
    let out = store
        .append(vec![
            change_group(
                g,
                "a",
                GroupChange::RemoveMembers(vec![user("c"), user("d")]),
                2,
            ),
            group_text("b", g, "small again", 2),
        ])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[1] else {
        panic!("not stored: {:?}", out[1]);
    };
    assert_eq!(inbox_users(s), users(&["a", "b"]));
    assert_eq!(s.message.seq, 5);
}

/// Group rules see the writes before them in the same batch: a removal then a send leaves the
/// removed member out; an addition then a send includes the new member.
pub async fn group_rules_apply_in_batch_order(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .append(vec![create_group("a", &["b", "c"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    let out = store
        .append(vec![
            group_text("c", g, "before", 500),
            change_group(g, "a", GroupChange::RemoveMembers(vec![user("c")]), 500),
            group_text("b", g, "after", 500),
            group_text("c", g, "too late", 500),
            change_group(g, "a", GroupChange::AddMembers(vec![user("d")]), 500),
            group_text("b", g, "welcome", 500),
            change_group(g, "b", GroupChange::RemoveMembers(vec![user("a")]), 500),
            change_group(g, "a", GroupChange::Mute(user("b"), i64::MAX), 500),
            group_text("b", g, "muted", 500),
            change_group(g, "a", GroupChange::AddMembers(vec![user("ghost")]), 500),
        ])
        .await
        .unwrap();
    let AppendOutcome::Stored(before) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(inbox_users(before), users(&["a", "b", "c"]));
    let (_, removal) = group_outcome(&out[1]);
    assert_eq!(
        inbox_users(removal.unwrap()),
        users(&["a", "b", "c"]),
        "the removed member sees its removal"
    );
    let AppendOutcome::Stored(after) = &out[2] else {
        panic!("{:?}", out[2])
    };
    assert_eq!(inbox_users(after), users(&["a", "b"]));
    assert!(matches!(
        &out[3],
        AppendOutcome::Refused(ServiceError::NotAParticipant)
    ));
    let (_, added) = group_outcome(&out[4]);
    let join_seq = added.unwrap().message.seq;
    let AppendOutcome::Stored(welcome) = &out[5] else {
        panic!("{:?}", out[5])
    };
    assert_eq!(inbox_users(welcome), users(&["a", "b", "d"]));
    assert!(matches!(
        &out[6],
        AppendOutcome::Refused(ServiceError::PermissionDenied(_))
    ));
    assert!(matches!(
        &out[8],
        AppendOutcome::Refused(ServiceError::Muted)
    ));
    assert!(
        matches!(&out[9], AppendOutcome::Refused(ServiceError::UnknownUser(u)) if u == &user("ghost"))
    );
    let (record, me) = store.group(g, &user("d")).await.unwrap().unwrap();
    assert_eq!(me.unwrap().joined_seq, join_seq);
    assert_eq!(record.member_count, 3);
    assert!(
        store
            .group(g, &user("c"))
            .await
            .unwrap()
            .unwrap()
            .1
            .is_none()
    );
    let (_, removal) = group_outcome(&out[1]);
    assert_eq!(
        store.departure(g, &user("c")).await.unwrap(),
        Some((1, removal.unwrap().message.seq)),
        "a removed member keeps its last membership's range"
    );
    assert_eq!(store.departure(g, &user("b")).await.unwrap(), None);
}

/// Group reads: the record with its timeline head, paged members, and a user's groups.
pub async fn group_reads(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .append(vec![
            create_group("a", &["b", "c", "d"], 500),
            create_group("b", &["a"], 500),
        ])
        .await
        .unwrap();
    let (g1, _) = group_outcome(&out[0]);
    let (g2, _) = group_outcome(&out[1]);
    store
        .append(vec![
            group_text("a", g1, "one", 500),
            change_group(g1, "a", GroupChange::SetRole(user("b"), Role::Admin), 500),
            change_group(g1, "a", GroupChange::Rename("renamed".into()), 500),
        ])
        .await
        .unwrap();
    let (record, me) = store.group(g1, &user("b")).await.unwrap().unwrap();
    assert_eq!(record.head_seq, 4);
    assert_eq!(record.settings.name, "renamed");
    assert_eq!(record.settings.owner, user("a"));
    assert_eq!(record.member_count, 4);
    assert_eq!(me.unwrap().role, Role::Admin);
    assert!(
        store
            .group(GroupId(999), &user("a"))
            .await
            .unwrap()
            .is_none()
    );
    let page = store.group_members(g1, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        users(&["a", "b"])
    );
    let page = store.group_members(g1, Some(user("b")), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        users(&["c", "d"])
    );
    let mine = store.groups_of(&user("a")).await.unwrap();
    assert_eq!(
        mine.iter().map(|(r, _)| r.id).collect::<Vec<_>>(),
        vec![g1, g2]
    );
    assert_eq!(mine[0].0.head_seq, 4);
    assert_eq!(mine[1].1.role, Role::Member);
    assert!(store.groups_of(&user("x")).await.unwrap().is_empty());

    // A create repeating its request id, in a later batch or the same one, finds the first.
    let keyed = || {
        let Write::CreateGroup(mut new) = create_group("c", &["d"], 500) else {
            unreachable!("create_group builds a create")
        };
        new.request_id = "req-1".into();
        Write::CreateGroup(new)
    };
    let out = store.append(vec![keyed(), keyed()]).await.unwrap();
    let (first, event) = group_outcome(&out[0]);
    assert!(event.is_some());
    let (again, event) = group_outcome(&out[1]);
    assert_eq!(again, first);
    assert!(event.is_none(), "a retry records nothing");
    let out = store.append(vec![keyed()]).await.unwrap();
    assert_eq!(group_outcome(&out[0]).0, first);
    let owned = store
        .groups_of(&user("c"))
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.settings.owner == user("c"))
        .count();
    assert_eq!(owned, 1, "one group for three requests");
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
    // Read marks, flags and amendments too.
    let out = store
        .append(vec![
            mark_read("b", "a", 10),
            set_flags("b", "a", Some(true), None),
            amend(
                "a",
                stored_id(&store, "a", "b", 30).await,
                Amendment::Recall,
                0,
            ),
        ])
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, AppendOutcome::Applied { event: Some(_), .. }))
    );
    let before = summary(&store, "b", "a").await;
    h.close(store).await;
    let store = h.open(&loc).await;
    let after = summary(&store, "b", "a").await;
    assert_eq!(before, after, "conversation state survives a reopen");
    assert_eq!((after.read_seq, after.pinned), (10, true));
    // 31 of a's messages (30 acked, one written after reopen), 10 read, one recalled.
    assert_eq!(after.unread, 20);
    // A block made before the reopen still refuses messages after it.
    store
        .append(vec![social("b", SocialChange::Block(user("a")))])
        .await
        .unwrap();
    h.close(store).await;
    let store = h.open(&loc).await;
    let out = store
        .append(vec![text("a", "b", "blocked", "x")])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(ServiceError::NotAccepted)
    ));
    h.close(store).await;

    // Groups too: membership, settings and the timeline's seqs survive a reopen.
    let store = h.open(&loc).await;
    let out = store
        .append(vec![create_group("a", &["b"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    store
        .append(vec![
            group_text("b", g, "g1", 500),
            change_group(g, "a", GroupChange::MuteAll(true), 500),
        ])
        .await
        .unwrap();
    h.close(store).await;
    let store = h.open(&loc).await;
    let out = store
        .append(vec![
            group_text("b", g, "g2", 500),
            group_text("a", g, "g3", 500),
        ])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(ServiceError::Muted)
    ));
    assert_eq!(
        stored(&out[1]).seq,
        4,
        "the timeline continues after reopen"
    );
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
        // A retry repeats the request: same receiver, same content.
        let mut retry = text(from, to, cmid, "");
        if let Write::Message(m) = &mut retry {
            m.content = page
                .messages
                .iter()
                .find(|m| &m.client_msg_id == cmid)
                .map(|m| m.content.clone())
                .unwrap_or_default();
        }
        let out = store.append(vec![retry]).await.unwrap();
        match &out[0] {
            AppendOutcome::Duplicate(m) => assert_eq!(m.seq, *seq),
            other => panic!("a retry after reopen was not deduplicated: {other:?}"),
        }
    }
}

/// Raising `reader`'s read mark in the conversation with `peer`.
pub fn mark_read(reader: &str, peer: &str, seq: u64) -> Write {
    Write::MarkRead(MarkRead {
        user: user(reader),
        conversation: ConversationId::direct(&user(reader), &user(peer)),
        seq,
        now_ms: 1_700_000_000_000,
    })
}

/// Setting flags of `owner`'s conversation with `peer`.
pub fn set_flags(owner: &str, peer: &str, pinned: Option<bool>, muted: Option<bool>) -> Write {
    Write::SetFlags(SetFlags {
        user: user(owner),
        conversation: ConversationId::direct(&user(owner), &user(peer)),
        pinned,
        muted,
        now_ms: 1_700_000_000_000,
    })
}

/// An amendment by `actor`, `late_ms` after the test messages were sent, with a 2-minute window.
pub fn amend(actor: &str, message: u64, change: Amendment, late_ms: i64) -> Write {
    Write::Amend(Amend {
        actor: user(actor),
        message: tern_core::MessageId(message),
        change,
        now_ms: 1_700_000_000_000 + late_ms,
        window_ms: 120_000,
        write_diffusion_max: 500,
    })
}

/// The id of the message at `seq` of the conversation of `a` and `b`.
async fn stored_id(store: &dyn Backend, a: &str, b: &str, seq: u64) -> u64 {
    let conv = ConversationId::direct(&user(a), &user(b));
    let page = store
        .history(&conv, seq - 1, Direction::Forward, 1)
        .await
        .unwrap();
    page.messages[0].id.0
}

/// `owner`'s summary of its conversation with `peer`.
async fn summary(store: &dyn Backend, owner: &str, peer: &str) -> ConversationSummary {
    store
        .summaries(
            &user(owner),
            vec![SummaryQuery {
                conversation: ConversationId::direct(&user(owner), &user(peer)),
                peer: Some(user(peer)),
                floor: 0,
            }],
        )
        .await
        .unwrap()
        .remove(0)
}

/// The value of an applied outcome and whether it recorded an event.
fn plain(o: &AppendOutcome) -> (u64, bool) {
    let (value, event) = applied(o);
    (value, event.is_some())
}

fn applied(o: &AppendOutcome) -> (u64, Option<&Stored>) {
    match o {
        AppendOutcome::Applied { value, event, .. } => (*value, event.as_ref()),
        other => panic!("expected an applied outcome, got {other:?}"),
    }
}

/// Read marks only move forward, reach the reader's and the peer's inboxes as a notice, and set
/// the unread count: messages from others after the mark.
pub async fn read_marks_and_unread_counts(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    store
        .append(vec![
            text("a", "b", "1", "one"),
            text("a", "b", "2", "two"),
            text("a", "b", "3", "three"),
            text("b", "a", "4", "four"),
            text("c", "c", "5", "note to self"),
        ])
        .await
        .unwrap();
    let b = summary(store, "b", "a").await;
    assert_eq!((b.max_seq, b.read_seq, b.unread), (4, 0, 3));
    assert_eq!(b.last.as_ref().map(|m| m.client_msg_id.as_str()), Some("4"));
    assert_eq!(summary(store, "a", "b").await.unread, 1);
    assert_eq!(
        store.direct_conversations(&user("a")).await.unwrap(),
        vec![ConversationId::direct(&user("a"), &user("b"))]
    );
    assert_eq!(
        store.direct_conversations(&user("c")).await.unwrap(),
        vec![ConversationId::direct(&user("c"), &user("c"))]
    );

    let out = store
        .append(vec![
            mark_read("b", "a", 2),
            mark_read("b", "a", 1),
            mark_read("b", "a", 99),
            Write::MarkRead(MarkRead {
                user: user("c"),
                conversation: ConversationId::direct(&user("a"), &user("b")),
                seq: 0,
                now_ms: 0,
            }),
        ])
        .await
        .unwrap();
    let (value, event) = applied(&out[0]);
    assert_eq!(value, 2);
    let event = event.expect("a raised mark records a notice");
    assert_eq!(
        event.message.conversation,
        ConversationId::notices(&user("b"))
    );
    assert_eq!(
        inbox_users(event),
        users(&["a", "b"]),
        "reader and peer get it"
    );
    assert_eq!(plain(&out[1]), (2, false), "marks never move back");
    assert_eq!(
        applied(&out[2]).0,
        4,
        "a mark past the head stops at the head"
    );
    assert!(matches!(
        &out[3],
        AppendOutcome::Refused(ServiceError::NotAParticipant)
    ));
    let b = summary(store, "b", "a").await;
    assert_eq!((b.read_seq, b.unread), (4, 0));
    assert_eq!(summary(store, "a", "b").await.peer_read_seq, 4);
    let inbox = store.read_inbox(&user("b"), 0, 100).await.unwrap();
    let InboxEvent::Message(last) = &inbox.entries.last().unwrap().event;
    assert!(matches!(
        &last.content.body,
        Some(pb::content::Body::ReadMark(pb::ReadMark {
            read_seq: 4,
            ..
        }))
    ));
    // Notices are not messages of the conversation: its head and unread count ignore them.
    assert_eq!(summary(store, "a", "b").await.max_seq, 4);
}

/// A recall or an edit changes what history and sync show, records one event, and takes a
/// recalled message out of the unread count.
pub async fn recall_and_edit_amend_what_readers_see(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    store
        .append(vec![text("a", "b", "1", "one"), text("a", "b", "2", "two")])
        .await
        .unwrap();
    let (one, two) = (
        stored_id(store, "a", "b", 1).await,
        stored_id(store, "a", "b", 2).await,
    );
    let out = store
        .append(vec![
            amend("a", one, Amendment::Edit(text_content("one!")), 1_000),
            amend("a", one, Amendment::Edit(text_content("one!")), 1_000),
            amend("b", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Edit(text_content("x")), 1_000),
            amend("a", one, Amendment::Recall, 121_000),
            amend("a", 999_999, Amendment::Recall, 0),
        ])
        .await
        .unwrap();
    let (seq, event) = applied(&out[0]);
    assert_eq!(seq, 3, "the edit event takes the conversation's next seq");
    assert_eq!(inbox_users(event.unwrap()), users(&["a", "b"]));
    assert_eq!(
        plain(&out[1]),
        (0, false),
        "the same edit again records nothing"
    );
    assert!(matches!(
        &out[2],
        AppendOutcome::Refused(ServiceError::PermissionDenied(_))
    ));
    assert_eq!(applied(&out[3]).0, 4);
    assert_eq!(
        plain(&out[4]),
        (0, false),
        "a second recall records nothing"
    );
    assert!(matches!(
        &out[5],
        AppendOutcome::Refused(ServiceError::NotEditable(_))
    ));
    assert!(matches!(
        &out[6],
        AppendOutcome::Refused(ServiceError::WindowPassed { .. })
    ));
    assert!(matches!(
        &out[7],
        AppendOutcome::Refused(ServiceError::MessageNotFound)
    ));

    let conv = ConversationId::direct(&user("a"), &user("b"));
    let page = store
        .history(&conv, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 4);
    assert_eq!(page.messages[0].content, text_content("one!"));
    assert_eq!(page.messages[0].edited_ms, 1_700_000_001_000);
    assert_eq!(page.messages[1].recalled_by, Some(user("a")));
    assert_eq!(page.messages[1].content, pb::Content::default());
    let inbox = store.read_inbox(&user("b"), 0, 10).await.unwrap();
    let InboxEvent::Message(synced) = &inbox.entries[1].event;
    assert_eq!(
        synced.recalled_by,
        Some(user("a")),
        "sync shows the tombstone too"
    );
    assert_eq!(inbox.entries.len(), 4, "and the events, in order");
    assert_eq!(
        summary(store, "b", "a").await.unread,
        1,
        "the recalled one is not unread"
    );
}

/// In a group, an admin may recall a member's message; flags change once and reach only the
/// owner's inbox.
pub async fn group_admins_recall_and_flags_change_once(store: &dyn Backend) {
    register(store, &["o", "m", "x"]).await;
    let out = store
        .append(vec![create_group("o", &["m"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    let out = store
        .append(vec![group_text("m", g, "hello", 500)])
        .await
        .unwrap();
    let id = stored(&out[0]).id.0;
    let out = store
        .append(vec![
            amend("x", id, Amendment::Recall, 0),
            amend("o", id, Amendment::Recall, 0),
        ])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(ServiceError::MessageNotFound)
    ));
    let (_, event) = applied(&out[1]);
    assert_eq!(inbox_users(event.unwrap()), users(&["m", "o"]));
    let conv = ConversationId::group(g);
    let page = store
        .history(&conv, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(page.messages[1].recalled_by, Some(user("o")));

    let group_flags = |pinned| {
        Write::SetFlags(SetFlags {
            user: user("m"),
            conversation: conv.clone(),
            pinned: Some(pinned),
            muted: None,
            now_ms: 0,
        })
    };
    let out = store
        .append(vec![
            group_flags(true),
            group_flags(true),
            group_flags(false),
        ])
        .await
        .unwrap();
    assert_eq!(inbox_users(applied(&out[0]).1.unwrap()), users(&["m"]));
    assert_eq!(applied(&out[1]).1.map(|_| ()), None);
    assert!(applied(&out[2]).1.is_some());
    let read = Write::MarkRead(MarkRead {
        user: user("m"),
        conversation: conv.clone(),
        seq: 0,
        now_ms: 0,
    });
    let out = store.append(vec![read]).await.unwrap();
    assert_eq!(applied(&out[0]).0, 3);
    assert_eq!(
        store
            .read_marks(&conv, vec![user("m"), user("o")])
            .await
            .unwrap(),
        vec![3, 0]
    );
}

/// A social change by `actor`.
pub fn social(actor: &str, change: SocialChange) -> Write {
    Write::Social(SocialWrite {
        actor: user(actor),
        change,
        now_ms: 1_700_000_000_000,
    })
}

fn refused_with(o: &AppendOutcome) -> String {
    match o {
        AppendOutcome::Refused(e) => format!("{e:?}"),
        other => format!("not refused: {other:?}"),
    }
}

/// Profiles, friend requests, blocks and the friends-only policy, each applied at its place in
/// the commit order: a message committed after a block is refused, one before it is not.
pub async fn people_blocks_and_friends_apply_in_commit_order(store: &dyn Backend) {
    register(store, &["ann", "bob", "cat"]).await;
    let friends_only = ProfilePatch {
        nickname: Some("Annie".into()),
        stranger_policy: Some(StrangerPolicy::FriendsOnly),
        ..Default::default()
    };
    let out = store
        .append(vec![
            text("bob", "ann", "before", "still anyone"),
            social("ann", SocialChange::UpdateProfile(friends_only.clone())),
            text("bob", "ann", "after", "friends only now"),
            social("ann", SocialChange::UpdateProfile(friends_only)),
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Stored(_)));
    assert_eq!(inbox_users(applied(&out[1]).1.unwrap()), users(&["ann"]));
    assert_eq!(refused_with(&out[2]), "NotAccepted");
    assert_eq!(
        plain(&out[3]),
        (0, false),
        "the same profile again records nothing"
    );
    let p = store
        .profiles(vec![user("ann"), user("nobody")])
        .await
        .unwrap();
    assert_eq!((p.len(), p[0].nickname.as_str()), (1, "Annie"));
    assert_eq!(
        store.stranger_policy(&user("ann")).await.unwrap(),
        StrangerPolicy::FriendsOnly
    );
    let found = store.search_nicknames("Ann", 10).await.unwrap();
    assert_eq!(
        found.iter().map(|p| p.user.as_str()).collect::<Vec<_>>(),
        ["ann"]
    );
    assert!(store.search_nicknames("Bo", 10).await.unwrap().is_empty());

    // A request, an answer, then messages flow.
    let request = SocialChange::FriendRequest {
        to: user("ann"),
        message: "it's bob".into(),
    };
    let out = store
        .append(vec![
            social("bob", request),
            social(
                "ann",
                SocialChange::FriendRespond {
                    from: user("cat"),
                    accept: true,
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        inbox_users(applied(&out[0]).1.unwrap()),
        users(&["ann", "bob"])
    );
    assert_eq!(refused_with(&out[1]), "RequestNotFound");
    let pending = store.friend_requests(&user("ann"), 10).await.unwrap();
    assert_eq!(
        (pending.len(), pending[0].message.as_str()),
        (1, "it's bob")
    );
    let version = store.inbox_head(&user("ann")).await.unwrap();
    let out = store
        .append(vec![
            social(
                "ann",
                SocialChange::FriendRespond {
                    from: user("bob"),
                    accept: true,
                },
            ),
            text("bob", "ann", "friends", "hello friend"),
            social(
                "ann",
                SocialChange::FriendRemark {
                    friend: user("bob"),
                    remark: "Bobby".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(applied(&out[0]).0, 1);
    assert!(matches!(&out[1], AppendOutcome::Stored(_)));
    assert!(
        store
            .friend_requests(&user("ann"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let changed = store.friends(&user("ann"), version).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].user.as_str(), changed[0].remark.as_str()),
        ("bob", "Bobby")
    );
    assert_eq!(
        store
            .are_friends(&user("bob"), vec![user("ann"), user("cat")])
            .await
            .unwrap(),
        vec![true, false]
    );

    // Blocks refuse messages and requests; the blocked user is told nothing more.
    let out = store
        .append(vec![
            social("ann", SocialChange::Block(user("cat"))),
            social("ann", SocialChange::Block(user("cat"))),
            social(
                "cat",
                SocialChange::FriendRequest {
                    to: user("ann"),
                    message: String::new(),
                },
            ),
            social("bob", SocialChange::Block(user("cat"))),
            text("cat", "bob", "c1", "blocked"),
            social("bob", SocialChange::Unblock(user("cat"))),
            text("cat", "bob", "c2", "unblocked"),
        ])
        .await
        .unwrap();
    assert_eq!(inbox_users(applied(&out[0]).1.unwrap()), users(&["ann"]));
    assert_eq!(plain(&out[1]), (0, false));
    assert_eq!(refused_with(&out[2]), "NotAccepted");
    assert_eq!(refused_with(&out[4]), "NotAccepted");
    assert!(matches!(&out[6], AppendOutcome::Stored(_)));
    assert_eq!(
        store.blocked(&user("ann")).await.unwrap(),
        vec![user("cat")]
    );
    assert!(store.blocked(&user("bob")).await.unwrap().is_empty());

    // Ending the friendship shows as a removal among the changes, and friends-only bites again.
    let version = store.inbox_head(&user("ann")).await.unwrap();
    let out = store
        .append(vec![
            social("bob", SocialChange::FriendDelete(user("ann"))),
            text("bob", "ann", "gone", "hello?"),
        ])
        .await
        .unwrap();
    assert_eq!(
        inbox_users(applied(&out[0]).1.unwrap()),
        users(&["ann", "bob"])
    );
    assert_eq!(refused_with(&out[1]), "NotAccepted");
    let changed = store.friends(&user("ann"), version).await.unwrap();
    assert!(changed.len() == 1 && changed[0].removed);
    assert!(store.friends(&user("ann"), 0).await.unwrap().is_empty());
}

/// A backlog larger than the cap counts as the cap, wherever its messages are held.
pub async fn unread_counts_stop_at_the_cap(store: &dyn Backend) {
    use tern_core::store::MAX_UNREAD_COUNTED;
    register(store, &["a", "b"]).await;
    let n = MAX_UNREAD_COUNTED as usize + 50;
    let batch: Vec<Write> = (0..n)
        .map(|i| text("a", "b", &format!("m{i}"), "x"))
        .collect();
    store.append(batch).await.unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, MAX_UNREAD_COUNTED);
    store.append(vec![mark_read("b", "a", 40)]).await.unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, MAX_UNREAD_COUNTED);
    store
        .append(vec![mark_read("b", "a", n as u64 - 7)])
        .await
        .unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, 7);
}
