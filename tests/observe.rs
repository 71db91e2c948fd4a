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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_role_is_granted_and_revoked_through_the_api() {
    let mut server = TestServer::start_with(|c| c.observers = vec!["auditor".into()]).await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server
        .register(&["alice", "bob", "supervisor", "auditor"])
        .await;
    let alice = server.client("alice", "phone").await;
    let mut sup = server.client("supervisor", "desk").await;
    let e = sup.client.observe("p:alice:bob").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");

    let call = |method: &'static str, path: &'static str| {
        let key = key.clone();
        async move { tern_testkit::http_call(http, method, path, Some(&key), None).await }
    };
    let (status, _, body) = call("PUT", "/v1/observers/supervisor").await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call("PUT", "/v1/observers/nobody").await;
    assert_eq!(status, 404);
    let (_, _, body) = call("GET", "/v1/observers").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list["observers"],
        serde_json::json!([
            {"user_id": "auditor", "source": "file"},
            {"user_id": "supervisor", "source": "api"},
        ])
    );

    server
        .until_every_node(&key, "/v1/observers", |b| b.contains("supervisor"))
        .await;
    sup.client.observe("p:alice:bob").await.unwrap();
    alice.client.send_text("bob", "watched").await.unwrap();
    assert_eq!(text_of(&next_observed(&mut sup).await), "watched");

    // The file's grant is changed in the file; the API's is revoked, and the store keeps that.
    let (status, _, _) = call("DELETE", "/v1/observers/auditor").await;
    assert_eq!(status, 403);
    let (status, _, _) = call("DELETE", "/v1/observers/supervisor").await;
    assert_eq!(status, 204);
    server
        .until_every_node(&key, "/v1/observers", |b| !b.contains("supervisor"))
        .await;
    // The running observation ends with the role.
    alice.client.send_text("bob", "unwatched").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_observed(&mut sup))
            .await
            .is_err(),
        "a revoked observer still receives"
    );
    sup.client.stop_observing("p:alice:bob").await.unwrap();
    let e = sup.client.observe("p:alice:carol").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    drop((alice, sup));
    server.restart().await;
    let sup = server.client("supervisor", "desk").await;
    let e = sup.client.observe("p:alice:bob").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    let (status, _, _) = call("PUT", "/v1/observers/supervisor").await;
    assert_eq!(status, 204);
    server.restart().await;
    let sup = server.client("supervisor", "desk").await;
    sup.client.observe("p:alice:bob").await.unwrap();
}
