//! User tokens on the HTTP API: a user's own token reaches the endpoints about that user and
//! nothing else; no user acts on another user, and no user token reaches an admin endpoint.

use serde_json::Value;
use tern_testkit::{TestServer, http_call as call};

fn json(body: &str) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// A token for `user`'s device `device`, handed out by the backend.
async fn token_for(http: std::net::SocketAddr, key: &str, user: &str, device: &str) -> String {
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/users/{user}/tokens"),
        Some(key),
        Some(&format!(r#"{{"device_id":"{device}","platform":"web"}}"#)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    json(&body)["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_acts_for_its_own_user_only() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob"]).await;
    let alice = token_for(http, &key, "alice", "web").await;
    let mut bob_phone = server.client("bob", "phone").await;

    // About herself: allowed.
    let own = [
        ("GET", "/v1/users/alice".to_owned(), None),
        (
            "PATCH",
            "/v1/users/alice".to_owned(),
            Some(r#"{"nickname":"Al"}"#),
        ),
        ("GET", "/v1/users/alice/conversations".to_owned(), None),
        ("GET", "/v1/users/alice/friends".to_owned(), None),
        ("GET", "/v1/users/alice/blocked".to_owned(), None),
        ("GET", "/v1/users/alice/groups".to_owned(), None),
        (
            "GET",
            "/v1/users/alice/conversations/p:alice:bob/messages".to_owned(),
            None,
        ),
    ];
    for (method, path, body) in &own {
        let (status, _, answer) = call(http, method, path, Some(&alice), *body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    let (_, _, body) = call(http, "GET", "/v1/users/alice", Some(&alice), None).await;
    assert_eq!(json(&body)["profile"]["nickname"], "Al");

    // About bob: refused with PERMISSION_DENIED, and nothing done.
    let others = [
        ("GET", "/v1/users/bob", None),
        ("PATCH", "/v1/users/bob", Some(r#"{"nickname":"pwned"}"#)),
        ("GET", "/v1/users/bob/conversations", None),
        ("GET", "/v1/users/bob/friends", None),
        ("GET", "/v1/users/bob/blocked", None),
        ("PUT", "/v1/users/bob/blocked/alice", None),
        ("DELETE", "/v1/users/bob/blocked/alice", None),
        ("DELETE", "/v1/users/bob/friends/alice", None),
        ("DELETE", "/v1/users/bob/tokens", None),
        ("DELETE", "/v1/users/bob/tokens/phone", None),
        ("GET", "/v1/users/bob/groups", None),
        (
            "GET",
            "/v1/users/bob/conversations/p:alice:bob/messages",
            None,
        ),
        (
            "POST",
            "/v1/messages",
            Some(
                r#"{"sender":"bob","to_user":"alice","client_msg_id":"f1","content":{"text":{"text":"hi"}}}"#,
            ),
        ),
        (
            "POST",
            "/v1/messages",
            Some(r#"{"to_users":["bob"],"client_msg_id":"f2","content":{"text":{"text":"hi"}}}"#),
        ),
    ];
    for (method, path, body) in others {
        let (status, _, answer) = call(http, method, path, Some(&alice), body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(
            json(&answer)["name"],
            "PERMISSION_DENIED",
            "{method} {path}"
        );
    }
    let (_, _, body) = call(http, "GET", "/v1/users/bob", Some(&key), None).await;
    assert_eq!(
        json(&body)["profile"]["nickname"],
        "",
        "bob's profile is untouched"
    );
    bob_phone
        .expect_no_message(std::time::Duration::from_millis(200))
        .await;

    // Admin endpoints: a user token is no admin key.
    let admin_only = [
        ("GET", "/v1/admin/keys", None),
        ("POST", "/v1/users", Some(r#"{"user_id":"mallory"}"#)),
        (
            "POST",
            "/v1/users/alice/tokens",
            Some(r#"{"device_id":"d2"}"#),
        ),
        ("POST", "/v1/users/alice/disable", None),
        (
            "POST",
            "/v1/users/alice/friends",
            Some(r#"{"friend_id":"bob"}"#),
        ),
        ("GET", "/v1/presence?user_ids=bob", None),
        (
            "POST",
            "/v1/groups",
            Some(r#"{"owner":"alice","name":"g"}"#),
        ),
        ("GET", "/v1/groups/1", None),
        ("GET", "/v1/webhooks", None),
    ];
    for (method, path, body) in admin_only {
        let (status, _, answer) = call(http, method, path, Some(&alice), body).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(json(&answer)["name"], "AUTH_FAILED");
    }

    // Sending as herself: no sender means her, not the system user.
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(r#"{"to_user":"bob","client_msg_id":"a1","content":{"text":{"text":"from alice"}}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let message_id = json(&body)["message_id"].as_u64().unwrap();
    let got = bob_phone.messages(1).await;
    assert_eq!(got[0].1.sender, "alice");
    assert_eq!(tern_testkit::text_of(&got[0].1), "from alice");

    // Recalls: as herself, not as bob.
    let recall = format!("/v1/messages/{message_id}/recall");
    let (status, _, _) = call(
        http,
        "POST",
        &recall,
        Some(&alice),
        Some(r#"{"user_id":"bob"}"#),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = call(
        http,
        "POST",
        &recall,
        Some(&alice),
        Some(r#"{"user_id":"alice"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A wrong token is refused like a wrong key; a disabled user's token stops working.
    let (status, _, body) = call(http, "GET", "/v1/users/alice", Some("not-a-token"), None).await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (401, Some("AUTH_FAILED"))
    );
    let bob = token_for(http, &key, "bob", "web").await;
    let (status, _, _) = call(http, "GET", "/v1/users/bob", Some(&bob), None).await;
    assert_eq!(status, 200);
    call(http, "POST", "/v1/users/bob/disable", Some(&key), None).await;
    let (status, _, body) = call(http, "GET", "/v1/users/bob", Some(&bob), None).await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (403, Some("USER_DISABLED")),
        "{body}"
    );

    // Logging her own device out ends the token.
    let (status, _, body) = call(
        http,
        "DELETE",
        "/v1/users/alice/tokens/web",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(http, "GET", "/v1/users/alice", Some(&alice), None).await;
    assert_eq!(status, 401, "a revoked token authenticates nothing");
}

/// Wrong tokens from one address are slowed down past the limit; a live token from that same
/// address (users behind one proxy) still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_limited_per_address_and_live_ones_are_not() {
    let mut server = TestServer::start_with(|c| c.login_max_failures_per_address = 3).await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice"]).await;
    let alice = token_for(http, &key, "alice", "web").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let wrong = format!("not-a-token-{i}");
        statuses.push(
            call(http, "GET", "/v1/users/alice", Some(&wrong), None)
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..3], [401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[5], 429, "past the limit: {statuses:?}");
    let (status, _, body) = call(http, "GET", "/v1/users/alice", Some(&alice), None).await;
    assert_eq!(status, 200, "a live token is not held back: {body}");
}
