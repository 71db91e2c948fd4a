//! Three nodes over one PostgreSQL database and one Redis: clients on different nodes talk as if
//! on one server, and losing Redis loses nothing.

use std::time::Duration;

use tern_client::{Conversation, Event, pb};
use tern_testkit::{TestServer, WAIT, http_get, text_of};

fn nodes_of(body: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["nodes"].as_array().cloned().unwrap_or_default()
}

/// Waits until node `i`'s `/v1/nodes` lists `n` nodes.
async fn until_nodes_listed(server: &TestServer, i: usize, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(server.http_addr_of(i), "/v1/nodes").await;
        if status == 200 {
            let nodes = nodes_of(&body);
            if nodes.len() == n {
                return nodes;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {i} never listed {n} nodes: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_the_live_nodes_and_a_stopped_node_leaves_the_list() {
    let mut server = TestServer::start_cluster(|_| {}).await;
    let nodes = until_nodes_listed(&server, 1, 3).await;
    let mut tcp: Vec<String> = nodes
        .iter()
        .map(|n| n["tcp"].as_str().unwrap().to_owned())
        .collect();
    tcp.sort();
    let mut expected: Vec<String> = server
        .tcp_nodes()
        .into_iter()
        .map(|e| match e {
            tern_client::Endpoint::Tcp(a) => a,
            other => panic!("{other:?}"),
        })
        .collect();
    expected.sort();
    assert_eq!(
        tcp, expected,
        "each node's TCP address, as clients reach it"
    );
    for n in &nodes {
        assert!(n["ws"].as_str().unwrap().starts_with("ws://127.0.0.1:"));
        assert!(n["epoch"].as_u64().unwrap() > 0);
    }
    let (status, body) = http_get(server.http_addr_of(0), "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""redis":"ok""#), "{body}");

    // Each node's logged-in connections are counted in Redis, for choosing the least loaded.
    server.register(&["alice"]).await;
    let _alice = server.client_on(1, "alice", "phone", |_| {}).await;
    let tern_client::Endpoint::Tcp(second) = server.tcp_nodes()[1].clone() else {
        panic!("TCP endpoints")
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(server.http_addr_of(0), "/v1/nodes").await;
        let counts: Vec<(String, u64)> = nodes_of(&body)
            .iter()
            .map(|n| {
                (
                    n["tcp"].as_str().unwrap().to_owned(),
                    n["connections"].as_u64().unwrap(),
                )
            })
            .collect();
        if counts
            .iter()
            .all(|(tcp, c)| *c == u64::from(*tcp == second))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tern_client::Endpoint::Tcp(stopped) = server.tcp_nodes()[2].clone() else {
        panic!("TCP endpoints")
    };
    server.stop_node(2).await;
    // Gone at once (it withdraws as it drains), not only when its entry expires.
    let left = until_nodes_listed(&server, 0, 2).await;
    assert!(
        left.iter()
            .all(|n| n["tcp"].as_str() != Some(stopped.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_messages_reach_every_device_on_every_node_in_order() {
    let server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob_phone = server
        .client_on(1, "bob", "phone", |c| c.platform = pb::Platform::Ios)
        .await;
    let mut bob_desktop = server
        .client_on(2, "bob", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let mut alice_desktop = server
        .client_on(2, "alice", "desktop", |c| {
            c.platform = pb::Platform::Desktop
        })
        .await;

    let mut acks = Vec::new();
    for i in 0..20 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    let ids = |v: &[(u64, pb::Message)]| v.iter().map(|(_, m)| m.message_id).collect::<Vec<_>>();
    let want: Vec<u64> = acks.iter().map(|a| a.message_id).collect();
    assert_eq!(ids(&bob_phone.messages(20).await), want);
    assert_eq!(ids(&bob_desktop.messages(20).await), want);
    // The sender's other device, on another node, sees what it sent.
    assert_eq!(ids(&alice_desktop.messages(20).await), want);

    let reply = bob_desktop.client.send_text("alice", "back").await.unwrap();
    let got = alice_desktop.messages(1).await;
    assert_eq!(got[0].1.message_id, reply.message_id);
    assert_eq!(text_of(&got[0].1), "back");
    // The sender's other device gets the reply; the sending device has it from its ack.
    assert_eq!(
        bob_phone.messages(1).await[0].1.message_id,
        reply.message_id
    );
    for d in [&mut bob_phone, &mut bob_desktop] {
        d.expect_no_message(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_groups_reach_members_on_every_node() {
    // Groups above two members store each message once (read diffusion).
    let server = TestServer::start_cluster(|c| c.group_write_diffusion_max = 2).await;
    let users = ["owner", "m1", "m2", "m3"];
    server.register(&users).await;
    let owner = server.client_on(0, "owner", "phone", |_| {}).await;
    let mut members = Vec::new();
    for (i, u) in users[1..].iter().enumerate() {
        members.push(server.client_on((i + 1) % 3, u, "phone", |_| {}).await);
    }
    // Written to each inbox: two members.
    let small = owner.client.create_group("small", &["m1"]).await.unwrap();
    let ack = owner
        .client
        .send_group_text(small.group_id, "to few")
        .await
        .unwrap();
    let got = members[0]
        .group_messages_until(|m| m.message_id == ack.message_id)
        .await;
    assert_eq!(text_of(got.last().unwrap()), "to few");

    // Stored once: the three online members spread over three nodes, and enough offline ones
    // that the member list is numbered and carried once, then referred to.
    let offline: Vec<String> = (0..80).map(|i| format!("off{i}")).collect();
    server.register_many(&offline).await;
    let mut invited: Vec<&str> = vec!["m1", "m2", "m3"];
    invited.extend(offline.iter().map(String::as_str));
    let large = owner.client.create_group("large", &invited).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            owner
                .client
                .send_group_text(large.group_id, &format!("g{i}"))
                .await
                .unwrap()
                .message_id,
        );
    }
    let last = *sent.last().unwrap();
    for m in &mut members {
        let got: Vec<u64> = m
            .group_messages_until(|msg| msg.message_id == last)
            .await
            .into_iter()
            .filter(|msg| msg.conversation_id == format!("g:{}", large.group_id))
            .map(|msg| msg.message_id)
            .collect();
        // Each arrives once and in order; one may come from the group's history instead of a
        // push, which the client does not surface twice.
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(got, sorted, "in order, once each");
        assert!(got.contains(&last));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_one_node_sets_the_unread_count_seen_on_another() {
    let server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob_phone = server
        .client_on(1, "bob", "phone", |c| c.platform = pb::Platform::Ios)
        .await;
    let bob_desktop = server
        .client_on(2, "bob", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    for i in 0..5 {
        alice
            .client
            .send_text("bob", &format!("m{i}"))
            .await
            .unwrap();
    }
    let got = bob_phone.messages(5).await;
    let unread = |list: pb::ConversationListResponse| {
        list.conversations
            .iter()
            .find(|c| c.peer == "alice")
            .map(|c| c.unread)
    };
    assert_eq!(
        unread(bob_desktop.client.conversations(0).await.unwrap()),
        Some(5)
    );
    bob_phone
        .client
        .mark_read(&Conversation::Peer("alice".into()), got[2].1.seq)
        .await
        .unwrap();
    assert_eq!(
        unread(bob_desktop.client.conversations(0).await.unwrap()),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_another_node_kicks_the_same_platform_there() {
    let server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice"]).await;
    let mut old_phone = server
        .client_on(0, "alice", "old-phone", |c| c.platform = pb::Platform::Ios)
        .await;
    let mut desktop = server
        .client_on(2, "alice", "desktop", |c| {
            c.platform = pb::Platform::Desktop
        })
        .await;
    assert!(matches!(
        old_phone.next_event().await,
        Event::Connected { .. }
    ));
    assert!(matches!(
        desktop.next_event().await,
        Event::Connected { .. }
    ));
    let _new_phone = server
        .client_on(1, "alice", "new-phone", |c| c.platform = pb::Platform::Ios)
        .await;
    match old_phone.next_event().await {
        Event::Kicked(kick) => assert_eq!(kick.reason, pb::KickReason::Replaced as i32),
        other => panic!("expected a kick, got {other:?}"),
    }
    desktop.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_crosses_nodes() {
    let server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob = server.client_on(1, "bob", "phone", |_| {}).await;
    // Typing goes to friends or to users one already talks with.
    alice.client.send_text("bob", "hi").await.unwrap();
    bob.messages(1).await;
    alice.client.typing("bob").await.unwrap();
    let from = bob
        .next_where(|e| match e {
            Event::Typing { from, .. } => Some(from),
            _ => None,
        })
        .await;
    assert_eq!(from, "alice");
}

/// Redis killed and started again, empty, while messages flow: every acked message reaches the
/// other node's device exactly once and in order, and the nodes register again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_loses_no_message() {
    let mut server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob = server.client_on(1, "bob", "phone", |_| {}).await;
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("before {i}"))
                .await
                .unwrap(),
        );
    }
    bob.messages(10).await;

    server.redis().unwrap().kill().await;
    // The store still takes every send while Redis is away.
    for i in 0..10 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("during {i}"))
                .await
                .unwrap(),
        );
    }
    let (status, body) = http_get(server.http_addr_of(0), "/readyz").await;
    assert_eq!(status, 503, "not ready without Redis: {body}");
    server.redis().unwrap().restart().await;
    for i in 0..10 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("after {i}"))
                .await
                .unwrap(),
        );
    }
    let mut got: Vec<u64> = Vec::new();
    let want: Vec<u64> = acks.iter().skip(10).map(|a| a.message_id).collect();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while got.len() < want.len() {
        let event = tokio::time::timeout_at(deadline, bob.events.recv())
            .await
            .unwrap_or_else(|_| panic!("got {} of {} messages: {got:?}", got.len(), want.len()))
            .unwrap();
        if let Event::Message { message, .. } = event {
            got.push(message.message_id);
        }
    }
    assert_eq!(got, want, "exactly once, in order");
    bob.expect_no_message(Duration::from_millis(200)).await;
    until_nodes_listed(&server, 2, 3).await;
    // The empty Redis gets each node's connections again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(server.http_addr_of(2), "/v1/nodes").await;
        let total: u64 = nodes_of(&body)
            .iter()
            .map(|n| n["connections"].as_u64().unwrap_or(0))
            .sum();
        if total == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(server.http_addr_of(0), "/readyz").await;
    assert_eq!(status, 200, "{body}");
}

/// A node that drains (SIGTERM does this) says goodbye; a client that knows the other nodes
/// moves to one at once and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_to_another_node_when_its_node_drains() {
    let mut server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let others = server.tcp_nodes()[..2].to_vec();
    let mut bob = server
        .client_on(2, "bob", "phone", |c| c.fallbacks = others)
        .await;
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("a{i}"))
                .await
                .unwrap(),
        );
    }
    bob.messages(5).await;
    server.stop_node(2).await;
    for i in 0..5 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("b{i}"))
                .await
                .unwrap(),
        );
    }
    let got: Vec<u64> = bob
        .messages(5)
        .await
        .iter()
        .map(|(_, m)| m.message_id)
        .collect();
    let want: Vec<u64> = acks[5..].iter().map(|a| a.message_id).collect();
    assert_eq!(got, want);
    // Bob's next send goes through the node it moved to.
    bob.client.send_text("alice", "still here").await.unwrap();
}

/// Every node restarted in turn while messages flow: clients that know the other nodes move
/// as each one drains, and every acked message reaches every device once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_nothing() {
    const SENDS: usize = 300;
    let mut server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let nodes = server.tcp_nodes();
    let rotated = |first: usize| -> Vec<tern_client::Endpoint> {
        (1..nodes.len())
            .map(|k| nodes[(first + k) % nodes.len()].clone())
            .collect()
    };
    let alice = server
        .client_on(0, "alice", "phone", |c| c.fallbacks = rotated(0))
        .await;
    let mut phone = server
        .client_on(1, "bob", "phone", |c| {
            c.fallbacks = rotated(1);
            c.platform = pb::Platform::Ios;
        })
        .await;
    let mut desk = server
        .client_on(2, "bob", "desk", |c| {
            c.fallbacks = rotated(2);
            c.platform = pb::Platform::Desktop;
        })
        .await;
    let sender = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..SENDS {
            acks.push(
                alice
                    .client
                    .send_text("bob", &format!("m{i}"))
                    .await
                    .unwrap(),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acks
    });
    for i in 0..3 {
        server.restart_node(i).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if i == 0 {
            assert!(
                !sender.is_finished(),
                "the restarts happen while messages flow"
            );
        }
    }
    let acks = tokio::time::timeout(WAIT * 4, sender)
        .await
        .unwrap()
        .unwrap();
    let want: Vec<u64> = acks.iter().map(|a| a.message_id).collect();
    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (1..=SENDS as u64).collect::<Vec<_>>());
    for d in [&mut phone, &mut desk] {
        let got: Vec<u64> = d
            .messages(SENDS)
            .await
            .iter()
            .map(|(_, m)| m.message_id)
            .collect();
        assert_eq!(got, want);
    }
}

async fn next_presence(c: &mut tern_testkit::TestClient) -> pb::Presence {
    c.next_where(|e| match e {
        Event::Presence(p) => Some(p),
        _ => None,
    })
    .await
}

fn devices_of(p: &pb::Presence) -> Vec<String> {
    let mut d: Vec<String> = p.devices.iter().map(|d| d.device_id.clone()).collect();
    d.sort();
    d
}

/// A follower sees a friend's devices on every node come and go, and a node that joins later
/// learns the devices already online elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes() {
    let mut server = TestServer::start_cluster(|_| {}).await;
    server.register(&["alice", "bob"]).await;
    let mut alice = server.client_on(0, "alice", "phone", |_| {}).await;
    for friend in ["bob"] {
        let other = server.client_on(1, friend, "setup", |_| {}).await;
        other.client.request_friend("alice", "").await.unwrap();
        alice.client.respond_friend(friend, true).await.unwrap();
        other.client.logout().await.unwrap();
    }
    // The setup devices' closes may still be on their way to node 0.
    let deadline = tokio::time::Instant::now() + WAIT;
    while alice.client.follow_presence(&["bob"]).await.unwrap()[0].online {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never went offline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let phone = server
        .client_on(1, "bob", "phone", |c| c.platform = pb::Platform::Ios)
        .await;
    // The setup device's going offline may still be queued for alice, behind what the loop
    // above saw: events before bob's phone arrives say offline, and are skipped.
    let p = loop {
        let p = next_presence(&mut alice).await;
        if p.online {
            break p;
        }
        assert!(devices_of(&p).is_empty(), "{p:?}");
    };
    assert_eq!(devices_of(&p), ["phone"]);
    let _desk = server
        .client_on(2, "bob", "desk", |c| c.platform = pb::Platform::Desktop)
        .await;
    assert_eq!(
        devices_of(&next_presence(&mut alice).await),
        ["desk", "phone"]
    );
    phone.client.logout().await.unwrap();
    assert_eq!(devices_of(&next_presence(&mut alice).await), ["desk"]);

    // Node 0 restarts: it asks the others for their devices and shows bob's desk again.
    server.restart_node(0).await;
    let mut tablet = server.client_on(0, "alice", "tablet", |_| {}).await;
    let now = tablet.client.follow_presence(&["bob"]).await.unwrap();
    if devices_of(&now[0]) != ["desk"] {
        // The other nodes' lists may arrive just after the follow.
        assert_eq!(devices_of(&next_presence(&mut tablet).await), ["desk"]);
    }
}
