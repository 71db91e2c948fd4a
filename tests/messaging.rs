//! One-to-one messaging end to end: store first, then sync, over real servers and clients.

use std::collections::{HashMap, HashSet};

use tern_client::{Conversation, HistoryQuery, pb};
use tern_testkit::{TestServer, text_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_receiver_gets_the_message_when_it_comes_online() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let ack = alice.client.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(ack.seq, 1);
    assert_eq!(ack.conversation_id, "p:alice:bob");

    let mut bob = server.client("bob", "phone").await;
    let got = bob.messages(1).await;
    assert_eq!(text_of(&got[0].1), "hello bob");
    assert_eq!(got[0].1.sender, "alice");
    assert_eq!(got[0].1.message_id, ack.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_of_one_user_end_with_the_same_messages_in_the_same_order() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut phone = server
        .client_with("bob", "phone", |c| c.platform = pb::Platform::Ios)
        .await;
    let mut desktop = server
        .client_with("bob", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;

    let mut acks = Vec::new();
    for i in 0..30 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    let on_phone = phone.messages(30).await;
    let on_desktop = desktop.messages(30).await;
    // The tablet was offline for all of it and catches up from its cursor.
    let mut tablet = server
        .client_with("bob", "tablet", |c| c.platform = pb::Platform::Android)
        .await;
    let on_tablet = tablet.messages(30).await;

    let ids = |v: &[(u64, pb::Message)]| {
        v.iter()
            .map(|(s, m)| (*s, m.message_id, m.seq))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&on_phone), ids(&on_desktop));
    assert_eq!(ids(&on_phone), ids(&on_tablet));
    let texts: Vec<&str> = on_tablet.iter().map(|(_, m)| text_of(m)).collect();
    assert_eq!(texts, (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(
        on_phone
            .iter()
            .map(|(_, m)| m.message_id)
            .collect::<Vec<_>>(),
        acks.iter().map(|a| a.message_id).collect::<Vec<_>>()
    );
    for d in [&mut phone, &mut desktop, &mut tablet] {
        d.expect_no_message(std::time::Duration::from_millis(200))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_senders_are_each_acked_once_and_received_in_seq_order() {
    const SENDERS: usize = 20;
    const EACH: usize = 200;
    let server = TestServer::start().await;
    let names: Vec<String> = (0..SENDERS).map(|i| format!("s{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("receiver");
    server.register(&all).await;
    let mut receiver = server.client("receiver", "phone").await;

    let mut tasks = Vec::new();
    for name in &names {
        let sender = server.client(name, "phone").await;
        tasks.push(tokio::spawn(async move {
            // Several sends in flight per sender, so commits batch across and within senders.
            let mut acks = Vec::with_capacity(EACH);
            for chunk in (0..EACH).collect::<Vec<_>>().chunks(10) {
                let sends = chunk.iter().map(|i| {
                    let c = sender.client.clone();
                    async move { c.send_text("receiver", &format!("{i}")).await.unwrap() }
                });
                acks.extend(futures_join_all(sends).await);
            }
            acks
        }));
    }
    let mut acks_by_conversation: HashMap<String, Vec<u64>> = HashMap::new();
    let mut message_ids = HashSet::new();
    for t in tasks {
        for ack in t.await.unwrap() {
            assert!(!ack.duplicate);
            assert!(
                message_ids.insert(ack.message_id),
                "message id {} acked twice",
                ack.message_id
            );
            acks_by_conversation
                .entry(ack.conversation_id)
                .or_default()
                .push(ack.seq);
        }
    }
    assert_eq!(message_ids.len(), SENDERS * EACH);
    for (conv, mut seqs) in acks_by_conversation {
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=EACH as u64).collect::<Vec<_>>(),
            "conversation {conv} is gapless"
        );
    }

    let got = receiver.messages(SENDERS * EACH).await;
    let inbox: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        inbox,
        (1..=(SENDERS * EACH) as u64).collect::<Vec<_>>(),
        "inbox order, no gap, no duplicate"
    );
    let received: HashSet<u64> = got.iter().map(|(_, m)| m.message_id).collect();
    assert_eq!(
        received, message_ids,
        "every acked message was received exactly once"
    );
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for (_, m) in &got {
        let last = last_seq.entry(m.conversation_id.as_str()).or_default();
        assert_eq!(
            m.seq,
            *last + 1,
            "conversation {} arrives in seq order",
            m.conversation_id
        );
        *last = m.seq;
    }
    receiver
        .expect_no_message(std::time::Duration::from_millis(200))
        .await;
}

async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_for_more_than_the_hot_inbox_holds_still_receives_everything_in_order() {
    let server = TestServer::start_with(|c| c.ring_capacity = 8).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    // The app persists its cursor, so a restarted phone resumes exactly where it stopped.
    let cursors = std::sync::Arc::new(tern_client::MemoryCursorStore::default());
    let store = cursors.clone();
    let mut phone = server
        .client_with("bob", "phone", |c| c.cursor_store = store)
        .await;
    alice.client.send_text("bob", "before").await.unwrap();
    assert_eq!(phone.messages(1).await[0].0, 1);
    phone.client.close();
    // Bob's phone is offline while far more arrive than the hot inbox holds.
    for i in 0..300 {
        alice
            .client
            .send_text("bob", &format!("while offline {i}"))
            .await
            .unwrap();
    }
    let store = cursors.clone();
    let mut phone = server
        .client_with("bob", "phone", |c| c.cursor_store = store)
        .await;
    let got = phone.messages(300).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (2..=301).collect::<Vec<_>>()
    );
    assert_eq!(text_of(&got[0].1), "while offline 0");
    assert_eq!(text_of(&got[299].1), "while offline 299");
    phone
        .expect_no_message(std::time::Duration::from_millis(200))
        .await;
    // A brand-new device of the same user gets the whole inbox, from the store.
    let mut laptop = server.client("bob", "laptop").await;
    let got = laptop.messages(301).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=301).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_whose_rings_the_memory_budget_dropped_sync_everything_from_the_store() {
    // Room for three entries across all rings: every send drops the rings written before it.
    let server = TestServer::start_with(|c| c.ring_entries = 3).await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    for i in 0..40 {
        let to = if i % 2 == 0 { "bob" } else { "carol" };
        alice
            .client
            .send_text(to, &format!("message {i}"))
            .await
            .unwrap();
    }
    // Bob was online throughout; carol connects afterwards and syncs from her cursor 0.
    let live = bob.messages(20).await;
    let mut carol = server.client("carol", "phone").await;
    let synced = carol.messages(20).await;
    for (got, first) in [(&live, 0), (&synced, 1)] {
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        let texts: Vec<_> = got.iter().map(|(_, m)| text_of(m)).collect();
        let want: Vec<_> = (0..20)
            .map(|k| format!("message {}", 2 * k + first))
            .collect();
        assert_eq!(texts, want);
    }
    // Alice's second device, new, reads all forty of her own from the store.
    let mut laptop = server.client("alice", "laptop").await;
    let got = laptop.messages(40).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_falls_behind_is_told_to_sync_and_loses_nothing() {
    // A tiny outbox: pushes overflow it, the server tells the client to sync instead.
    let server = TestServer::start_with(|c| c.outbox_capacity = 2).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    let sends = (0..400).map(|i| {
        let c = alice.client.clone();
        tokio::spawn(async move { c.send_text("bob", &format!("{i}")).await.unwrap() })
    });
    for s in sends.collect::<Vec<_>>() {
        s.await.unwrap();
    }
    let got = bob.messages(400).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    bob.expect_no_message(std::time::Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backward_and_forward() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let bob = server.client("bob", "phone").await;
    for i in 1..=25 {
        let from = if i % 2 == 0 { &bob } else { &alice };
        let to = if i % 2 == 0 { "alice" } else { "bob" };
        from.client.send_text(to, &format!("n{i}")).await.unwrap();
    }
    let page = alice
        .client
        .history(&HistoryQuery {
            conversation: Conversation::Peer("bob".into()),
            anchor_seq: 0,
            direction: pb::Direction::Backward,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<_>>()
    );
    assert!(page.has_more);
    let page = bob
        .client
        .history(&HistoryQuery {
            conversation: Conversation::Peer("alice".into()),
            anchor_seq: 20,
            direction: pb::Direction::Forward,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (21..=25).collect::<Vec<_>>()
    );
    assert!(!page.has_more);
    let all = alice.client.full_history("bob").await.unwrap();
    assert_eq!(all.len(), 25);
    assert_eq!(text_of(&all[0]), "n1");
    assert_eq!(all[1].sender, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_other_devices_get_the_message_but_the_sending_connection_does_not() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut phone = server.raw().await;
    phone.login("alice", "phone").await;
    let mut desktop = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let ack = phone
        .call(pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: "from-phone".into(),
            content: Some(tern_testkit::text("sent from the phone")),
        })
        .await;
    assert_eq!(ack.inbox_seq, 1);
    let on_desktop = desktop.messages(1).await;
    assert_eq!(
        on_desktop[0].0, 1,
        "the same inbox entry as the ack's inbox_seq"
    );
    assert_eq!(on_desktop[0].1.message_id, ack.message_id);
    assert_eq!(on_desktop[0].1.sender, "alice");
    // The sending connection got its ack and no push of its own message.
    let ping = phone
        .send(
            tern_proto::Request::Ping(pb::Ping { client_time_ms: 1 }),
            tern_proto::Encoding::Protobuf,
        )
        .await;
    let next = phone.read().await.unwrap();
    assert!(
        next.is_response() && next.packet_id == ping,
        "got {next:?} before the pong"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_started_in_order_are_stored_in_order_however_they_are_awaited() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let endpoint = server.tcp();
    let (conn, _events) = tern_client::Connection::connect(
        &endpoint,
        tern_client::Encoding::Protobuf,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    conn.request(pb::LoginRequest {
        user_id: "alice".into(),
        credential: Some(pb::login_request::Credential::Password(
            tern_testkit::password("alice"),
        )),
        device_id: "d".into(),
        platform: 0,
    })
    .await
    .unwrap();
    let pending: Vec<_> = (0..50)
        .map(|i| {
            conn.start(pb::SendRequest {
                target: Some(pb::send_request::Target::ToUser("bob".into())),
                client_msg_id: format!("ordered-{i}"),
                content: Some(tern_testkit::text(&i.to_string())),
            })
            .unwrap()
        })
        .collect();
    // Awaited last-first, and on separate tasks: the order on the wire was fixed at start.
    let tasks: Vec<_> = pending
        .into_iter()
        .rev()
        .map(|p| tokio::spawn(async move { p.await.unwrap() }))
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.reverse();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
}
