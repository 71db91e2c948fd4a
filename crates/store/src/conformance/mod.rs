//! The conformance suite every storage backend passes: the same test bodies, run against each
//! backend through a [`Harness`], one test per case per backend.
//!
//! Each case states one guarantee of the storage traits; the cases are split by domain
//! (`messages`, `accounts`, `groups`, `conversations`, `people`, `reopen`). A backend's test
//! file implements the harness and invokes [`conformance_tests!`](crate::conformance_tests),
//! which makes one `#[tokio::test]` per case, so a failure names its case and its backend. The
//! crash case needs a process to kill and lives in the backend's test file, built from
//! [`write_acked`] and [`verify_acked`].

pub mod accounts;
pub mod conversations;
pub mod crash_model;
pub mod files;
pub mod groups;
pub mod messages;
pub mod people;
pub mod push;
pub mod reopen;
pub mod search;
pub mod settings;
pub mod webhooks;

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use tern_core::{
    ConversationId, DeviceId, GroupId, Platform, Refusal, UserId,
    content::{self, Content},
    groups::{GroupChange, GroupChangeRequest, GroupLimits, HistoryVisibility, NewGroup, Role},
    social::{ProfilePatch, SocialChange, SocialStore, SocialWrite, StrangerPolicy},
    store::{
        AccountStore, AdminKeyRecord, AdminKeyStore, Amend, Amendment, AppendOutcome, Audience,
        CommitStore, ConversationStore, ConversationSummary, Direction, GroupStore, HistoryStore,
        InboxEvent, InboxStore, MarkRead, NewMessage, SetFlags, SettingsStore, Stored,
        SummaryQuery, TokenRecord, Write,
    },
};

/// Every storage trait, as one backend implements them.
pub trait Backend:
    CommitStore
    + HistoryStore
    + InboxStore
    + AccountStore
    + AdminKeyStore
    + GroupStore
    + ConversationStore
    + SocialStore
    + tern_core::webhooks::WebhookOutbox
    + SettingsStore
    + tern_core::search::SearchStore
    + tern_core::files::FileStore
    + tern_core::push::PushStore
{
}
impl<
    T: CommitStore
        + HistoryStore
        + InboxStore
        + AccountStore
        + AdminKeyStore
        + GroupStore
        + ConversationStore
        + SocialStore
        + tern_core::webhooks::WebhookOutbox
        + SettingsStore
        + tern_core::search::SearchStore
        + tern_core::files::FileStore
        + tern_core::push::PushStore,
> Backend for T
{
}

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

/// One `#[tokio::test]` per conformance case, each on a fresh location of the harness that
/// `$harness` (evaluated in every test) builds. Invoke it once per backend configuration,
/// inside a module named after it.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@store $harness;
            messages::appends_assign_gapless_seqs,
            messages::retries_are_deduplicated,
            messages::retries_are_found_whatever_the_order_of_client_ids,
            messages::a_reused_client_id_for_another_message_is_refused,
            messages::unknown_users_store_nothing,
            messages::history_pages_both_ways,
            messages::inbox_reads_are_contiguous_from_the_cursor,
            messages::cursors_never_move_backwards,
            accounts::accounts_and_tokens,
            accounts::accounts_are_disabled_and_their_tokens_revoked,
            accounts::admin_keys_are_kept_by_hash_and_revoked_once,
            groups::small_groups_write_every_inbox,
            groups::large_groups_write_the_timeline_only,
            groups::group_rules_apply_in_batch_order,
            groups::group_reads,
            conversations::read_marks_and_unread_counts,
            conversations::recall_and_edit_amend_what_readers_see,
            conversations::group_admins_recall_and_flags_change_once,
            conversations::unread_counts_stop_at_the_cap,
            people::people_blocks_and_friends_apply_in_commit_order,
            webhooks::commits_queue_events_and_claims_take_heads_in_order,
            settings::settings_are_set_listed_and_removed,
            search::search_finds_substrings_within_scope_newest_first,
            files::files_are_kept_referenced_and_collected,
            push::push_registrations_are_kept_replaced_and_forgotten,
            push::messages_are_queued_on_the_push_lane,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn files_survive_a_reopen() {
            let h = $harness;
            $crate::conformance::files::files_survive_a_reopen(&h).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn push_registrations_survive_a_reopen() {
            let h = $harness;
            $crate::conformance::push::push_registrations_survive_a_reopen(&h).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn search_survives_a_reopen() {
            let h = $harness;
            $crate::conformance::search::search_survives_a_reopen(&h).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn settings_survive_a_reopen() {
            let h = $harness;
            $crate::conformance::settings::settings_survive_a_reopen(&h).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn queued_webhook_events_survive_a_reopen() {
            let h = $harness;
            $crate::conformance::webhooks::queued_events_survive_a_reopen(&h).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn readers_never_see_a_gap() {
            let h = $harness;
            let store = ::std::sync::Arc::new($crate::conformance::fresh(&h).await);
            $crate::conformance::messages::readers_never_see_a_gap(store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reopen_keeps_everything() {
            let h = $harness;
            $crate::conformance::reopen::reopen_keeps_everything(&h).await;
        }
    };
    (@store $harness:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let h = $harness;
                let store = $crate::conformance::fresh(&h).await;
                $crate::conformance::$module::$case(&store).await;
            }
        )*
    };
}

/// A fresh store at a fresh location of `h`.
pub async fn fresh<H: Harness>(h: &H) -> H::Store {
    let loc = h.location().await;
    h.open(&loc).await
}

/// A user id for tests.
pub fn user(s: &str) -> UserId {
    UserId::parse(s).expect("valid test user id")
}

/// A text content.
pub fn text_content(body: &str) -> Content {
    Content::text(body)
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

/// Makes accounts for `users`.
pub async fn register(store: &dyn Backend, users: &[&str]) {
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
        .commit(vec![text(from, to, cmid, &format!("body of {cmid}"))])
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
        .commit(vec![text(from, to, "after-reopen", "x")])
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
        let out = store.commit(vec![retry]).await.unwrap();
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

/// A read mark, amendment, flag or social outcome as one number and its notice or event: the
/// read mark; whether now friends; else the seq of the event recorded (0 when none).
fn applied(o: &AppendOutcome) -> (u64, Option<&Stored>) {
    let seq = |e: &Option<Stored>| e.as_ref().map_or(0, |s| s.message.seq);
    match o {
        AppendOutcome::ReadMark { mark, notice, .. } => (*mark, notice.as_ref()),
        AppendOutcome::Amended { event, .. } => (seq(event), event.as_ref()),
        AppendOutcome::Flags { notice, .. } => (seq(notice), notice.as_ref()),
        AppendOutcome::Social {
            friends, notice, ..
        } => (u64::from(*friends), notice.as_ref()),
        other => panic!("expected an applied outcome, got {other:?}"),
    }
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
