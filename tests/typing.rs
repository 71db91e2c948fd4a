//! Typing signals: relayed to the peer's online devices only, never stored, rate-limited.

use std::time::Duration;

use tern_client::{ErrorCode, Event};
use tern_testkit::TestServer;

async fn next_typing(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Typing {
                from,
                conversation_id,
            })) => return (from, conversation_id),
            Ok(Some(_)) => {}
            other => panic!("no typing notice arrived: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_every_online_device_of_the_peer_and_is_never_stored() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob_phone = server.client("bob", "phone").await;
    let mut bob_desk = server
        .client_with("bob", "desk", |c| {
            c.platform = tern_client::pb::Platform::Desktop
        })
        .await;
    alice.client.typing("bob").await.unwrap();
    for events in [&mut bob_phone.events, &mut bob_desk.events] {
        let (from, conversation) = next_typing(events).await;
        assert_eq!(from, "alice");
        assert_eq!(conversation, "p:alice:bob");
    }
    // Nothing was stored: a device that logs in later sees no trace of it.
    let mut bob_later = server
        .client_with("bob", "tablet", |c| {
            c.platform = tern_client::pb::Platform::Web
        })
        .await;
    bob_later
        .expect_no_message(Duration::from_millis(200))
        .await;
    let conn = bob_later.client.connection().await.unwrap();
    let page = conn
        .request(tern_client::pb::SyncRequest { after: 0, limit: 0 })
        .await
        .unwrap();
    assert!(page.entries.is_empty() && page.head == 0);

    let e = alice.client.typing("nobody").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownUser));
    let e = alice.client.typing("not a user id").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidUserId));
    // Typing to oneself tells nobody, not even one's other devices.
    let mut alice_desk = server
        .client_with("alice", "desk", |c| {
            c.platform = tern_client::pb::Platform::Desktop
        })
        .await;
    alice.client.typing("alice").await.unwrap();
    alice_desk
        .expect_no_message(Duration::from_millis(200))
        .await;
    let quiet = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if let Some(Event::Typing { .. }) = alice_desk.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "no typing notice to one's own devices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_too_often_is_refused_with_rate_limited() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut accepted = 0;
    let mut limited = 0;
    for _ in 0..30 {
        match alice.client.typing("bob").await {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::RateLimited));
                assert!(e.is_retryable());
                limited += 1;
            }
        }
    }
    // A burst of ten, plus whatever the budget regained during the loop (two a second).
    assert!((10..=13).contains(&accepted), "accepted {accepted}");
    assert_eq!(accepted + limited, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_to_someone_who_refuses_the_sender_is_refused_like_a_message() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    bob.client.block("alice").await.unwrap();
    let e = alice.client.typing("bob").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));
    let quiet = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if let Some(Event::Typing { .. }) = bob.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the blocker is not told");
    bob.client.unblock("alice").await.unwrap();
    alice.client.typing("bob").await.unwrap();
    assert_eq!(next_typing(&mut bob.events).await.0, "alice");
}
