//! Connection and server lifecycle: heartbeats, login timeout, kicks, graceful restart.
//! Timeouts run on paused time: after login the clock is frozen and jumps to the next timer,
//! so a 2-second silence takes no wall-clock time.

use std::time::Duration;

use tern_client::{Event, pb};
use tern_proto::ErrorCode;
use tern_testkit::{TestServer, decode, text_of};

/// Waits until the registries of all nodes (one, or a cluster's) hold `n` connections in all.
async fn until_registry_holds(server: &TestServer, n: usize) {
    let count = || {
        server
            .nodes()
            .map(|s| s.gateway().registry().connection_count())
            .sum::<usize>()
    };
    for _ in 0..1000 {
        if count() == n {
            for s in server.nodes() {
                s.gateway().registry().check_invariants();
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("registries hold {} connections, expected {n}", count());
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_two_heartbeat_periods_and_leaves_the_registry() {
    let server = TestServer::start_with(|c| c.heartbeat_interval_ms = 1000).await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    // The server's clock for this connection starts when it reads the login: between these two
    // instants.
    let sent = tokio::time::Instant::now();
    let login = raw.login("alice", "phone").await;
    let answered = tokio::time::Instant::now();
    assert_eq!(login.heartbeat_interval_ms, 1000);
    until_registry_holds(&server, 1).await;

    tokio::time::pause();
    assert!(
        raw.until_closed().await.is_empty(),
        "a heartbeat timeout closes without a frame"
    );
    let closed = tokio::time::Instant::now();
    assert!(
        closed >= sent + Duration::from_millis(2000),
        "closed {:?} after the login",
        closed - sent
    );
    assert!(
        closed <= answered + Duration::from_millis(2050),
        "closed {:?} after the login's answer",
        closed - answered
    );
    until_registry_holds(&server, 0).await;
}

#[tokio::test]
async fn a_connection_that_keeps_pinging_stays_open() {
    let server = TestServer::start_with(|c| c.heartbeat_interval_ms = 1000).await;
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    tokio::time::pause();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let pong = raw.call(pb::Ping { client_time_ms: 7 }).await;
        assert_eq!(pong.client_time_ms, 7);
    }
    // Nine seconds of pings: far past two periods, still connected.
    until_registry_holds(&server, 1).await;
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_told_and_closed() {
    let server = TestServer::start().await;
    // The server's login clock starts when it accepts: after `before`, and (being on this
    // runtime) no later than when the clock is frozen.
    let before = tokio::time::Instant::now();
    let mut raw = server.raw().await;
    tokio::time::pause();
    let frozen = tokio::time::Instant::now();
    let frames = raw.until_closed().await;
    let closed = tokio::time::Instant::now();
    assert!(
        closed >= before + Duration::from_secs(10),
        "closed {:?} after connecting",
        closed - before
    );
    assert!(
        closed <= frozen + Duration::from_millis(10_050),
        "closed {:?} after the clock froze; the default login timeout is 10 s",
        closed - frozen
    );
    assert_eq!(frames.len(), 1);
    assert!(frames[0].is_error());
    let error: pb::Error = decode(&frames[0]);
    assert_eq!(error.code, ErrorCode::LoginTimeout.as_u32());
    assert_eq!(error.name, "LOGIN_TIMEOUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_the_same_platform_kicks_the_old_connection_with_a_notice() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let mut old_phone = server
        .client_with("alice", "old-phone", |c| c.platform = pb::Platform::Ios)
        .await;
    let mut desktop = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    assert!(matches!(
        old_phone.next_event().await,
        Event::Connected { .. }
    ));
    assert!(matches!(
        desktop.next_event().await,
        Event::Connected { .. }
    ));

    let mut new_phone = server
        .client_with("alice", "new-phone", |c| c.platform = pb::Platform::Ios)
        .await;
    assert!(matches!(
        new_phone.next_event().await,
        Event::Connected { .. }
    ));
    match old_phone.next_event().await {
        Event::Kicked(kick) => assert_eq!(kick.reason, pb::KickReason::Replaced as i32),
        other => panic!("expected a kick, got {other:?}"),
    }
    until_registry_holds(&server, 2).await;
    let devices = registered_devices(&server, "alice");
    assert_eq!(devices, vec!["desktop", "new-phone"]);
    // The desktop, on another platform, was left alone.
    desktop.expect_no_message(Duration::from_millis(100)).await;
    assert!(
        desktop.events.try_recv().is_err(),
        "the desktop got no kick"
    );
}

fn tern_core_user(s: &str) -> tern_core::UserId {
    tern_core::UserId::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_unlimited_policy_nobody_is_kicked() {
    let server = TestServer::start_with(|c| c.kick_policy = "unlimited".into()).await;
    server.register(&["alice"]).await;
    let _a = server
        .client_with("alice", "p1", |c| c.platform = pb::Platform::Ios)
        .await;
    let _b = server
        .client_with("alice", "p2", |c| c.platform = pb::Platform::Ios)
        .await;
    until_registry_holds(&server, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_tabs_of_one_user_stay_connected_side_by_side() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    // Each tab is a device of its own, over WebSocket, as the web client connects.
    let mut tabs = Vec::new();
    for tab in ["tab-1", "tab-2"] {
        let ws = server.ws();
        tabs.push(
            server
                .client_with("alice", tab, |c| {
                    c.endpoint = ws;
                    c.platform = pb::Platform::Web;
                })
                .await,
        );
    }
    until_registry_holds(&server, 2).await;
    let bob = server.client("bob", "phone").await;
    bob.client.send_text("alice", "to every tab").await.unwrap();
    // A kicked client does not reconnect, so a message reaching both proves neither was kicked.
    for tab in &mut tabs {
        let got = tab.messages(1).await;
        assert_eq!(text_of(&got[0].1), "to every tab");
    }
    let devices = registered_devices(&server, "alice");
    assert_eq!(devices, vec!["tab-1", "tab-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_cursors_and_tokens_survive_a_graceful_restart() {
    let mut server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    for i in 0..10 {
        alice
            .client
            .send_text("bob", &format!("before {i}"))
            .await
            .unwrap();
    }
    assert_eq!(bob.messages(10).await.len(), 10);
    bob.client.close_and_wait().await;
    let alice_token = alice.client.token().unwrap();

    server.restart().await;

    // Bob's device resumes at the cursor it acknowledged before the restart.
    let mut raw = server.raw().await;
    let login = raw.login("bob", "phone").await;
    assert_eq!(login.cursor, 10);
    assert_eq!(login.inbox_head, 10);
    let page = raw
        .call(pb::HistoryRequest {
            target: Some(pb::history_request::Target::Peer("alice".into())),
            anchor_seq: 0,
            direction: pb::Direction::Forward as i32,
            limit: 100,
        })
        .await;
    assert_eq!(page.messages.len(), 10);
    assert_eq!(text_of(&page.messages[9]), "before 9");

    // Alice's token still logs her in.
    let mut raw_alice = server.raw().await;
    let resp = raw_alice
        .call(pb::LoginRequest {
            user_id: "alice".into(),
            credential: Some(pb::login_request::Credential::Token(alice_token)),
            device_id: "phone".into(),
            platform: 0,
        })
        .await;
    assert_eq!(resp.inbox_head, 10);

    // Alice's SDK client was told goodbye, reconnected on its own, and keeps sending.
    loop {
        match alice.next_event().await {
            Event::Connected { .. } => break,
            Event::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let ack = alice.client.send_text("bob", "after").await.unwrap();
    assert_eq!(ack.seq, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_is_removed_from_the_registry() {
    let server = TestServer::start_with(|c| c.kick_policy = "unlimited".into()).await;
    server.register(&["alice"]).await;
    let mut raws = Vec::new();
    for d in ["a", "b", "c"] {
        let mut raw = server.raw().await;
        raw.login("alice", d).await;
        raws.push(raw);
    }
    until_registry_holds(&server, 3).await;
    // The process holding the sockets dies: the sockets close without a goodbye.
    raws.truncate(1);
    until_registry_holds(&server, 1).await;
    drop(raws);
    until_registry_holds(&server, 0).await;
    assert_eq!(server.server().gateway().registry().user_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_commits_the_sends_in_flight_before_it_exits() {
    let mut server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.raw().await;
    let mut alice = alice;
    alice.login("alice", "phone").await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let req = pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: format!("inflight-{i}"),
            content: Some(tern_testkit::text("x")),
        };
        ids.push(
            alice
                .send(
                    tern_proto::Request::Send(req),
                    tern_proto::Encoding::Protobuf,
                )
                .await,
        );
    }
    let stop = tokio::spawn(async move {
        server.stop().await;
        server
    });
    // Sends the server already took in are committed and answered before the goodbye; frames it
    // had not read yet get no answer, and the client retries them after reconnecting.
    let frames = alice.until_closed().await;
    let goodbye = frames
        .iter()
        .position(|f| f.kind == tern_proto::MessageType::Goodbye.as_u16());
    assert_eq!(goodbye, Some(frames.len() - 1), "the goodbye comes last");
    let acked: std::collections::HashSet<_> = frames
        .iter()
        .filter(|f| f.is_response() && !f.is_error())
        .map(|f| f.packet_id)
        .collect();
    for f in frames.iter().filter(|f| f.is_error()) {
        let e: pb::Error = decode(f);
        assert!(
            e.retryable,
            "a send refused during shutdown may be retried: {e:?}"
        );
    }
    let mut server = stop.await.unwrap();
    server.restart().await;
    let mut bob = server.raw().await;
    let head = bob.login("bob", "phone").await.inbox_head;
    assert_eq!(
        head as usize,
        acked.len(),
        "every acked send was committed, and no other"
    );

    let mut alice = server.raw().await;
    alice.login("alice", "phone").await;
    let mut duplicates = 0;
    for (i, id) in ids.iter().enumerate() {
        let ack = alice
            .call(pb::SendRequest {
                target: Some(pb::send_request::Target::ToUser("bob".into())),
                client_msg_id: format!("inflight-{i}"),
                content: Some(tern_testkit::text("x")),
            })
            .await;
        assert_eq!(ack.duplicate, acked.contains(id), "send {i}");
        duplicates += usize::from(ack.duplicate);
    }
    assert_eq!(duplicates, acked.len());
    let mut bob = server.raw().await;
    assert_eq!(
        bob.login("bob", "tablet").await.inbox_head,
        200,
        "each send stored exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_logout_is_answered_and_the_client_stays_out() {
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    for round in 0..20 {
        let mut alice = server.client("alice", "phone").await;
        alice
            .next_where(|e| matches!(e, Event::Connected { .. }).then_some(()))
            .await;
        // A cursor ack in flight while the server answers and closes must not cost the answer.
        alice
            .client
            .logout()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        until_registry_holds(&server, 0).await;
        // The client stops instead of taking the close for a loss and logging in again.
        loop {
            match tokio::time::timeout(Duration::from_secs(5), alice.events.recv()).await {
                Ok(Some(Event::Connected { .. })) => panic!("round {round}: logged in again"),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => panic!("round {round}: the client did not stop"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_task_stays_within_its_memory_budget() {
    // Each idle connection holds its task for life; a buffer or a large future added to it
    // by mistake multiplies by every connection (at 15,000 connections, 1 KiB is 15 MiB).
    // Measured at 768 bytes (TCP) and 1,592 (WebSocket) in test builds.
    const TCP_BUDGET: usize = 896;
    const WS_BUDGET: usize = 1792;
    let server = TestServer::start().await;
    server.register(&["alice"]).await;
    let tcp = server.client("alice", "phone").await;
    let tcp_bytes = server.server().gateway().connection_task_bytes();
    assert!(
        tcp_bytes > 0 && tcp_bytes <= TCP_BUDGET,
        "TCP task: {tcp_bytes} bytes"
    );
    let _ws = server
        .client_with("alice", "web", |c| {
            c.endpoint = server.ws();
            c.platform = pb::Platform::Web;
        })
        .await;
    let ws_bytes = server.server().gateway().connection_task_bytes();
    assert!(ws_bytes <= WS_BUDGET, "WebSocket task: {ws_bytes} bytes");
    drop(tcp);
}

/// The devices of `user` connected to any node of `server`, sorted.
fn registered_devices(server: &TestServer, user: &str) -> Vec<String> {
    let mut devices: Vec<String> = server
        .nodes()
        .flat_map(|s| s.gateway().registry().connections_of(&tern_core_user(user)))
        .map(|(_, d, _)| d.to_string())
        .collect();
    devices.sort();
    devices
}
