//! A cluster losing a node the hard way: three `tern serve` processes over one PostgreSQL
//! database and one Redis, one of them killed with SIGKILL while messages flow. Its clients move
//! to the other nodes; every acked message is stored exactly once with gapless seqs, and every
//! device ends with all of them in order.

use std::time::Duration;

use tern_client::{Client, ClientConfig, Connection, Encoding, Endpoint, Event, pb};
use tern_testkit::{
    WAIT, password, postgres_database,
    process::{Serve, ServeProcess},
    redis::TestRedis,
};

/// A `tern serve` process of the cluster.
type Node = ServeProcess;

fn spawn_node(store: &str, redis: &str) -> Node {
    Serve::new(env!("CARGO_BIN_EXE_tern"), &std::env::temp_dir())
        .args(["--store", store, "--redis", redis])
        .env("TERN_MAX_CONNECTIONS_PER_ADDRESS", "0")
        .spawn()
}

/// An SDK client that starts on node `first` and knows the others.
async fn client(
    nodes: &[Node],
    first: usize,
    user: &str,
    device: &str,
    platform: pb::Platform,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let endpoints: Vec<Endpoint> = (0..nodes.len())
        .map(|k| Endpoint::Tcp(nodes[(first + k) % nodes.len()].tcp.clone()))
        .collect();
    let mut config = ClientConfig::new(endpoints[0].clone(), user, &password(user), device);
    config.fallbacks = endpoints[1..].to_vec();
    config.platform = platform;
    config.reconnect.initial_backoff = Duration::from_millis(50);
    config.reconnect.max_backoff = Duration::from_millis(500);
    Client::connect(config).await.expect("login")
}

/// Message ids of 1:1 messages as they arrive, until `n` arrived.
async fn receive(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    while got.len() < n {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} messages arrived", got.len()))
            .expect("the client runs");
        if let Event::Message { message, .. } = event {
            got.push(message.message_id);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_load_loses_nothing() {
    const SENDS: usize = 200;
    let store = postgres_database().await;
    let redis = TestRedis::start().await;
    let mut nodes: Vec<Node> = (0..3).map(|_| spawn_node(&store, &redis.url())).collect();
    for u in ["alice", "bob"] {
        tern_client::register(&Endpoint::Tcp(nodes[0].tcp.clone()), u, &password(u))
            .await
            .unwrap();
    }
    // Alice follows bob's devices from node 0; bob's tablet sits on the node that dies and
    // never comes back.
    let (watcher, _watcher_events) = client(&nodes, 0, "alice", "watcher", pb::Platform::Web).await;
    let (bob_setup, _) = client(&nodes, 0, "bob", "setup", pb::Platform::Web).await;
    bob_setup.request_friend("alice", "").await.unwrap();
    watcher.respond_friend("bob", true).await.unwrap();
    let tablet = raw_login(&Endpoint::Tcp(nodes[2].tcp.clone()), "bob", "tablet").await;
    let online = |p: &[pb::Presence]| -> Vec<String> {
        let mut d: Vec<String> = p[0].devices.iter().map(|d| d.device_id.clone()).collect();
        d.sort();
        d
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !online(&watcher.follow_presence(&["bob"]).await.unwrap()).contains(&"tablet".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tablet never showed up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sender and one of bob's devices start on the node that dies.
    let (alice, _alice_events) = client(&nodes, 2, "alice", "phone", pb::Platform::Ios).await;
    let (_phone, mut phone_events) = client(&nodes, 2, "bob", "phone", pb::Platform::Ios).await;
    let (_desk, mut desk_events) = client(&nodes, 1, "bob", "desk", pb::Platform::Desktop).await;

    let sender = tokio::spawn(async move {
        let mut acks = Vec::with_capacity(SENDS);
        for i in 0..SENDS {
            // The SDK retries through a lost node with the same client message id.
            acks.push(
                alice
                    .send_text("bob", &format!("m{i}"))
                    .await
                    .expect("acked"),
            );
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        acks
    });
    // Somewhere in the middle of the stream.
    tokio::time::sleep(Duration::from_millis(150 + rand::random::<u64>() % 150)).await;
    assert!(!sender.is_finished(), "the node dies while messages flow");
    let victim = &mut nodes[2];
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let acks = tokio::time::timeout(WAIT * 4, sender)
        .await
        .expect("every send is acked")
        .unwrap();

    let ids: Vec<u64> = acks.iter().map(|a| a.message_id).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), SENDS, "each send stored once");
    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(
        seqs,
        (1..=SENDS as u64).collect::<Vec<_>>(),
        "gapless, in send order"
    );
    assert_eq!(
        receive(&mut phone_events, SENDS).await,
        ids,
        "the moved device has all, in order"
    );
    assert_eq!(
        receive(&mut desk_events, SENDS).await,
        ids,
        "the other device too"
    );

    // The survivors find the node gone from the node list and show its devices offline.
    drop(tablet);
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while online(&watcher.follow_presence(&["bob"]).await.unwrap()).contains(&"tablet".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's tablet stayed online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The history a survivor serves agrees.
    let (conn, _) = Connection::connect(
        &Endpoint::Tcp(nodes[0].tcp.clone()),
        Encoding::Protobuf,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    conn.request(pb::LoginRequest {
        user_id: "bob".into(),
        credential: Some(pb::login_request::Credential::Password(password("bob"))),
        device_id: "check".into(),
        platform: pb::Platform::Unspecified as i32,
    })
    .await
    .unwrap();
    let page = conn
        .request(pb::SyncRequest {
            after: 0,
            limit: 1000,
        })
        .await
        .unwrap();
    let synced: Vec<u64> = page
        .entries
        .iter()
        .filter_map(|e| {
            e.event
                .as_ref()
                .map(|pb::inbox_entry::Event::Message(m)| m.message_id)
        })
        .collect();
    // Bob's inbox also holds the friendship's notices; the messages are all there, once each,
    // in order.
    let sent: std::collections::HashSet<u64> = ids.iter().copied().collect();
    let messages: Vec<u64> = synced.into_iter().filter(|id| sent.contains(id)).collect();
    assert_eq!(messages, ids);
}

/// A logged-in raw connection to `endpoint` as `user`.
async fn raw_login(endpoint: &Endpoint, user: &str, device: &str) -> Connection {
    let (conn, _) = Connection::connect(endpoint, Encoding::Protobuf, Duration::from_secs(10))
        .await
        .unwrap();
    conn.request(pb::LoginRequest {
        user_id: user.into(),
        credential: Some(pb::login_request::Credential::Password(password(user))),
        device_id: device.into(),
        platform: pb::Platform::Unspecified as i32,
    })
    .await
    .unwrap();
    conn
}

fn text_send(to: &str, text: &str, client_msg_id: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: client_msg_id.into(),
        content: Some(tern_testkit::text(text)),
        target: Some(pb::send_request::Target::ToUser(to.into())),
    }
}

/// PostgreSQL crashes (`pg_ctl stop -m immediate`) under a running cluster: sends are refused
/// with a retryable code while it is down, the same request succeeds once it is back (nobody
/// restarts the nodes), and nothing acked before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_refuses_sends_retryably_and_loses_nothing() {
    let pg = tern_testkit::postgres::TestPostgres::start();
    let url = pg.url();
    let server = tern_testkit::TestServer::start_cluster(|c| c.store = Some(url)).await;
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
    let raw = raw_login(&server.tcp_nodes()[2], "alice", "raw").await;

    pg.crash();
    let request = text_send("bob", "during", "during-the-outage");
    let refused = raw.request(request.clone()).await.unwrap_err();
    assert!(refused.is_retryable(), "a retryable refusal: {refused}");
    assert_eq!(
        refused.code(),
        Some(tern_proto::ErrorCode::Unavailable),
        "{refused}"
    );
    let (status, body) = tern_testkit::http_get(server.http_addr_of(2), "/readyz").await;
    assert_eq!(status, 503, "{body}");

    pg.restart();
    // The same request, retried as a client would, lands once the database is back.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ack = loop {
        match raw.request(request.clone()).await {
            Ok(ack) => break ack,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not come back: {e}"),
        }
    };
    acks.push(ack);
    for i in 0..10 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("after {i}"))
                .await
                .unwrap(),
        );
    }
    let got: Vec<u64> = bob
        .messages(11)
        .await
        .iter()
        .map(|(_, m)| m.message_id)
        .collect();
    let want: Vec<u64> = acks[10..].iter().map(|a| a.message_id).collect();
    assert_eq!(got, want, "exactly once, in order");
    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "no seq lost or reused");
}
