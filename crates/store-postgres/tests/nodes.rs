//! Several nodes over one database: stores that share nothing but PostgreSQL commit at once,
//! and seqs stay gapless and unique, retries stay deduplicated across nodes, and a group change
//! committed by one node is what the next commit on another node applies.

use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tern_core::{
    ConversationId, GroupId, UserId,
    groups::GroupChange,
    store::{
        AccountStore, AppendOutcome, CommitStore, Direction, HistoryStore, InboxEvent, InboxStore,
        Write,
    },
};
use tern_store::conformance::{change_group, create_group, group_text, text, user};
use tern_store_postgres::{PgConfig, PgStore};

mod common;

async fn nodes(n: usize) -> Vec<PgStore> {
    let url = common::fresh_database().await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(PgStore::connect(&url, PgConfig::default()).await.unwrap());
    }
    out
}

async fn register(store: &PgStore, names: &[&str]) {
    for u in names {
        assert!(store.create_user(&user(u), "$argon2id$x", 0).await.unwrap());
    }
}

fn inbox_users(outcome: &AppendOutcome) -> Vec<String> {
    let AppendOutcome::Stored(s) = outcome else {
        panic!("expected a stored message, got {outcome:?}");
    };
    let mut users: Vec<String> = s.inbox_seqs.iter().map(|(u, _)| u.to_string()).collect();
    users.sort();
    users
}

fn group_id(outcome: &AppendOutcome) -> GroupId {
    match outcome {
        AppendOutcome::Group { state, .. } => state.id,
        other => panic!("expected a group outcome, got {other:?}"),
    }
}

/// One node caches a group's members; another changes them; the first one's next commit
/// follows the change, never its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_change_on_one_node_holds_for_the_next_commit_on_another() {
    let stores = nodes(2).await;
    let (a, b) = (&stores[0], &stores[1]);
    register(a, &["u0", "u1", "u2", "u3"]).await;
    let out = a
        .commit(vec![create_group("u0", &["u1", "u2"], 10)])
        .await
        .unwrap();
    let g = group_id(&out[0]);
    let send = |cmid: &str| group_text("u1", g, cmid, 10);
    let out = b.commit(vec![send("m1")]).await.unwrap();
    assert_eq!(inbox_users(&out[0]), ["u0", "u1", "u2"]);

    a.commit(vec![change_group(
        g,
        "u0",
        GroupChange::AddMembers(vec![user("u3")]),
        10,
    )])
    .await
    .unwrap();
    let out = b.commit(vec![send("m2")]).await.unwrap();
    assert_eq!(inbox_users(&out[0]), ["u0", "u1", "u2", "u3"]);

    a.commit(vec![change_group(
        g,
        "u0",
        GroupChange::RemoveMembers(vec![user("u2")]),
        10,
    )])
    .await
    .unwrap();
    let out = b
        .commit(vec![send("m3"), group_text("u2", g, "late", 10)])
        .await
        .unwrap();
    assert_eq!(inbox_users(&out[0]), ["u0", "u1", "u3"]);
    assert!(
        matches!(&out[1], AppendOutcome::Refused(_)),
        "a removed member may not send: {:?}",
        out[1]
    );
    let page = b
        .history(&ConversationId::group(g), 0, Direction::Forward, 100)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}

const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];

/// A message as its ack described it: conversation, seq, message id, inbox seqs.
type StoredAck = (ConversationId, u64, u64, Vec<(UserId, u64)>);

/// What one writer saw acknowledged.
#[derive(Debug, Default)]
struct Acks {
    /// `(conversation, seq, message id, inbox seqs)` of each message stored, in ack order.
    stored: Vec<StoredAck>,
    /// `(sender, client message id) -> message id` of every message acknowledged, stored or
    /// deduplicated.
    keys: Vec<((String, String), u64)>,
}

/// One writer on one node: random batches of one-to-one and group messages, retries of keys
/// other writers use too, and group membership changes.
async fn writer(store: PgStore, seed: u64, groups: [GroupId; 2], rounds: usize) -> Acks {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acks = Acks::default();
    for _ in 0..rounds {
        let n = rng.random_range(1..=3);
        let mut batch: Vec<Write> = Vec::new();
        for _ in 0..n {
            let from = USERS[rng.random_range(0..USERS.len())];
            // Keys from a small space, so that writers on other nodes send the same ones.
            let k = rng.random_range(0..40);
            batch.push(match rng.random_range(0..10) {
                0..=4 => {
                    let to = USERS[rng.random_range(0..USERS.len())];
                    // The key decides the peer and the body, so a repeated key is a retry.
                    let to = if to == from { USERS[(k % 4) + 1] } else { to };
                    let to = if to == from { "u0" } else { to };
                    text(from, to, &format!("{from}-{to}-{k}"), &format!("body {k}"))
                }
                5..=7 => {
                    let g = groups[k % 2];
                    group_text(from, g, &format!("{from}-g{}-{k}", g.0), 3)
                }
                _ => {
                    let change = if rng.random_bool(0.5) {
                        GroupChange::AddMembers(vec![user("u4")])
                    } else {
                        GroupChange::RemoveMembers(vec![user("u4")])
                    };
                    change_group(groups[0], "u0", change, 3)
                }
            });
        }
        let keys: Vec<Option<(String, String)>> = batch
            .iter()
            .map(|w| match w {
                Write::Message(m) => Some((m.sender.to_string(), m.client_msg_id.clone())),
                _ => None,
            })
            .collect();
        let out = store.commit(batch).await.expect("commit");
        for (outcome, key) in out.iter().zip(keys) {
            match outcome {
                AppendOutcome::Stored(s) => {
                    acks.stored.push((
                        s.message.conversation.clone(),
                        s.message.seq,
                        s.message.id.0,
                        s.inbox_seqs.clone(),
                    ));
                    acks.keys.push((key.expect("a message"), s.message.id.0));
                }
                AppendOutcome::Duplicate(m) => acks.keys.push((key.expect("a message"), m.id.0)),
                _ => {}
            }
        }
    }
    acks
}

/// Three nodes, two writers each, committing at once into the same conversations and inboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_committing_at_once_keep_seqs_gapless_and_retries_deduplicated() {
    let stores = nodes(3).await;
    register(&stores[0], &USERS).await;
    let small = group_id(
        &stores[0]
            .commit(vec![create_group("u0", &["u1", "u2", "u3"], 3)])
            .await
            .unwrap()[0],
    );
    let large = group_id(
        &stores[1]
            .commit(vec![create_group("u0", &["u1", "u2", "u3", "u4"], 3)])
            .await
            .unwrap()[0],
    );
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().cycle().take(6).enumerate() {
        tasks.push(tokio::spawn(writer(
            store.clone(),
            0x7e57 + i as u64,
            [small, large],
            60,
        )));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    let reader = &stores[2];

    // Every conversation's history is 1..=head with no gap and no repeat.
    let mut conversations: HashSet<ConversationId> = HashSet::new();
    for acks in &all {
        conversations.extend(acks.stored.iter().map(|s| s.0.clone()));
    }
    let mut by_seq: HashMap<(ConversationId, u64), (u64, String, String)> = HashMap::new();
    for c in &conversations {
        let page = reader
            .history(c, 0, Direction::Forward, 10_000)
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{c:?}");
        for m in page.messages {
            by_seq.insert(
                (c.clone(), m.seq),
                (m.id.0, m.sender.to_string(), m.client_msg_id),
            );
        }
    }
    // Every inbox is 1..=head, each message once.
    let mut inboxes: HashMap<(UserId, u64), u64> = HashMap::new();
    for u in USERS {
        let page = reader.read_inbox(&user(u), 0, 100_000).await.unwrap();
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=page.head).collect::<Vec<_>>(), "inbox of {u}");
        let mut seen = HashSet::new();
        for e in page.entries {
            let InboxEvent::Message(m) = e.event;
            assert!(
                seen.insert(m.id.0),
                "message {} twice in {u}'s inbox",
                m.id.0
            );
            inboxes.insert((user(u), e.seq), m.id.0);
        }
    }
    // Every acknowledged message is where its ack said, and each writer's acks in one
    // conversation follow each other.
    for acks in &all {
        let mut last: HashMap<&ConversationId, u64> = HashMap::new();
        for (c, seq, id, inbox_seqs) in &acks.stored {
            assert_eq!(by_seq.get(&(c.clone(), *seq)).map(|m| m.0), Some(*id));
            for (u, s) in inbox_seqs {
                assert_eq!(inboxes.get(&(u.clone(), *s)), Some(id), "{u} at {s}");
            }
            let before = last.insert(c, *seq).unwrap_or(0);
            assert!(before < *seq, "acks out of order in {c:?}");
        }
    }
    // One message per key, whichever node and writer sent it, and every ack names it.
    let mut stored_keys: HashMap<(String, String), u64> = HashMap::new();
    for (id, sender, cmid) in by_seq.values() {
        if !cmid.is_empty() {
            let before = stored_keys.insert((sender.clone(), cmid.clone()), *id);
            assert!(before.is_none(), "key {sender}/{cmid} stored twice");
        }
    }
    let mut retries = 0;
    for acks in &all {
        for (key, id) in &acks.keys {
            assert_eq!(stored_keys.get(key), Some(id), "ack of {key:?}");
            retries += 1;
        }
    }
    assert!(
        retries > stored_keys.len(),
        "the workload must repeat keys across writers ({retries} acks, {} keys)",
        stored_keys.len()
    );
}

/// Nodes that start together on an empty database migrate it once, under the advisory lock:
/// every one starts, all see the same schema version, and each can write at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_migrate_the_schema_once() {
    let url = common::fresh_database().await;
    let starting: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, PgConfig::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starting {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let versions = client
        .query("SELECT version FROM tern_schema", &[])
        .await
        .unwrap();
    assert_eq!(versions.len(), 1, "one schema row");
    assert!(versions[0].get::<_, i32>(0) > 0, "migrated");
    // A node started after them finds nothing to do.
    let late = PgStore::connect(&url, PgConfig::default()).await.unwrap();
    let again: i32 = client
        .query_one("SELECT version FROM tern_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, versions[0].get::<_, i32>(0));
    stores.push(late);
    for (i, s) in stores.iter().enumerate() {
        assert!(
            s.create_user(&user(&format!("node{i}")), "$argon2id$x", 0)
                .await
                .unwrap()
        );
    }
}
