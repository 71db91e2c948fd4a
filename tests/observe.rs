//! Observing: a user with the observer role follows a conversation's live messages without
//! being part of it, and stops.

use std::time::Duration;

use tern_client::{ErrorCode, Event, pb};
use tern_testkit::{TestClient, TestServer, text_of};

async fn next_observed(c: &mut TestClient) -> pb::Message {
    c.next_where(|e| match e {
        Event::Observed(m) => Some(m),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_live_messages_without_being_a_member_and_stops() {
    // A threshold of 2 puts the 3-member group on read diffusion: observing works either way.
    let server = TestServer::start_with(|c| {
        c.observers = vec!["supervisor".into()];
        c.group_write_diffusion_max = 2;
    })
    .await;
    server
        .register(&["alice", "bob", "carol", "supervisor", "nosy"])
        .await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    let mut sup = server.client("supervisor", "desk").await;

    alice.client.send_text("bob", "before").await.unwrap();
    // Published before the observer starts: it must never see it.
    bob.messages(1).await;
    sup.client.observe("p:alice:bob").await.unwrap();
    let group = alice
        .client
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap();
    bob.group_messages_until(|m| m.seq == 1).await;
    sup.client.observe(&group.conversation_id).await.unwrap();

    alice.client.send_text("bob", "one").await.unwrap();
    bob.client.send_text("alice", "two").await.unwrap();
    alice
        .client
        .send_group_text(group.group_id, "to the team")
        .await
        .unwrap();
    let seen: Vec<(String, String)> = [
        next_observed(&mut sup).await,
        next_observed(&mut sup).await,
        next_observed(&mut sup).await,
    ]
    .iter()
    .map(|m| (m.conversation_id.clone(), text_of(m).to_owned()))
    .collect();
    assert_eq!(
        seen,
        [
            ("p:alice:bob".to_owned(), "one".to_owned()),
            ("p:alice:bob".to_owned(), "two".to_owned()),
            (group.conversation_id.clone(), "to the team".to_owned()),
        ],
        "each message once, in order, and nothing from before"
    );
    // The observer is no participant: no inbox entries, no history.
    let page = sup.client.conversations(0).await.unwrap();
    assert!(page.conversations.is_empty());
    let e = sup
        .client
        .history(&tern_client::HistoryQuery::newest(
            tern_client::Conversation::Group(group.group_id),
            10,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAParticipant));
    bob.messages(1).await;

    sup.client.stop_observing("p:alice:bob").await.unwrap();
    alice
        .client
        .send_text("bob", "private again")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_observed(&mut sup))
            .await
            .is_err()
    );

    // Without the role, or on a notice timeline, observing is refused.
    let nosy = server.client("nosy", "phone").await;
    let e = nosy.client.observe("p:alice:bob").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied));
    let e = sup.client.observe("u:alice").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAParticipant));
    let e = sup.client.observe("not a conversation").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAParticipant));
}
