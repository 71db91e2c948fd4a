//! Message search end to end through the HTTP API: a user finds the messages of the
//! conversations they read, by any part of the text, Chinese words of one or two characters
//! included, newest first and a page at a time; never a recalled message, an edited one only by
//! its new text, never another user's conversation or a group's history from before joining.

use serde_json::Value;
use tern_testkit::{TestServer, http_call as call};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// Sends `text` as `sender` to a user (`to`) or a group (`group`); answers the message id.
async fn send(
    http: std::net::SocketAddr,
    key: &str,
    sender: &str,
    target: &str,
    cmid: &str,
    text: &str,
) -> u64 {
    let target = match target.strip_prefix("g:") {
        Some(g) => format!(r#""group_id":{g}"#),
        None => format!(r#""to_user":"{target}""#),
    };
    let body = format!(
        r#"{{"sender":"{sender}",{target},"client_msg_id":"{cmid}","content":{{"text":{{"text":"{text}"}}}}}}"#
    );
    let (status, _, answer) = call(http, "POST", "/v1/messages", Some(key), Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    json(&answer)["message_id"].as_u64().unwrap()
}

/// The ids a search answers, and its `next_before`.
async fn search(
    http: std::net::SocketAddr,
    credential: &str,
    path: &str,
) -> (u16, Vec<u64>, Option<u64>) {
    let (status, _, body) = call(http, "GET", path, Some(credential), None).await;
    if status != 200 {
        return (status, Vec::new(), None);
    }
    let v = json(&body);
    let ids = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_u64().unwrap())
        .collect();
    (status, ids, v["next_before"].as_u64())
}

fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_find_what_they_may_read_and_nothing_else() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob", "carol", "dave"]).await;

    let weather = send(http, &key, "alice", "bob", "a1", "明天的天气怎么样").await;
    let report = send(http, &key, "alice", "bob", "a2", "Weather report").await;
    let secret = send(http, &key, "alice", "bob", "a3", "secret plan").await;
    let reply = send(http, &key, "bob", "alice", "b1", "天 is sky").await;
    let carols = send(http, &key, "carol", "dave", "c1", "天气 for carol").await;
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/groups",
        Some(&key),
        Some(r#"{"owner":"alice","name":"team","members":["bob"]}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let group = json(&body)["group_id"].as_u64().unwrap();
    let g = format!("g:{group}");
    let before_carol = send(http, &key, "alice", &g, "g1", "天气 in the group").await;
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/groups/{group}/members"),
        Some(&key),
        Some(r#"{"user_ids":["carol"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after_carol = send(http, &key, "alice", &g, "g2", "天气 again").await;

    let path = |user: &str, query: &str| format!("/v1/users/{user}/search?q={}", q(query));
    // Two characters, one character, case and width folded; newest first.
    let (status, ids, _) = search(http, &key, &path("alice", "天气")).await;
    assert_eq!(status, 200);
    assert_eq!(ids, [after_carol, before_carol, weather]);
    assert_eq!(
        search(http, &key, &path("bob", "天")).await.1,
        [after_carol, before_carol, reply, weather]
    );
    assert_eq!(
        search(http, &key, &path("bob", "ＷＥＡＴＨＥＲ")).await.1,
        [report]
    );
    // Carol: her own conversation, and the group from her joining on.
    assert_eq!(
        search(http, &key, &path("carol", "天气")).await.1,
        [after_carol, carols]
    );
    let (status, _, _) = search(
        http,
        &key,
        &format!("{}&conversation_id=p:alice:bob", path("carol", "天气")),
    )
    .await;
    assert_eq!(status, 404, "not her conversation");
    // One conversation, one sender, a page at a time.
    assert_eq!(
        search(
            http,
            &key,
            &format!("{}&conversation_id=p:alice:bob", path("alice", "天"))
        )
        .await
        .1,
        [reply, weather]
    );
    assert_eq!(
        search(http, &key, &format!("{}&sender=bob", path("alice", "天")))
            .await
            .1,
        [reply]
    );
    let (_, first, next) = search(http, &key, &format!("{}&limit=2", path("alice", "天"))).await;
    assert_eq!(first, [after_carol, before_carol]);
    let next = next.expect("a next page");
    let (_, rest, last) = search(
        http,
        &key,
        &format!("{}&limit=2&before={next}", path("alice", "天")),
    )
    .await;
    assert_eq!(rest, [reply, weather]);
    assert_eq!(last, None);

    // Recalled: never found. Edited: found by the new text only.
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/messages/{secret}/recall"),
        Some(&key),
        Some(r#"{"user_id":"alice"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        search(http, &key, &path("bob", "secret"))
            .await
            .1
            .is_empty()
    );
    let alice = server.client("alice", "phone").await;
    alice.client.edit_text(report, "Kite report").await.unwrap();
    assert!(
        search(http, &key, &path("bob", "weather"))
            .await
            .1
            .is_empty()
    );
    assert_eq!(search(http, &key, &path("bob", "kite")).await.1, [report]);

    // The same after a restart (and the index catching up with everything).
    drop(alice);
    server.restart().await;
    assert_eq!(search(http, &key, &path("bob", "kite")).await.1, [report]);
    assert!(
        search(http, &key, &path("bob", "secret"))
            .await
            .1
            .is_empty()
    );
    assert_eq!(
        search(http, &key, &path("carol", "天气")).await.1,
        [after_carol, carols]
    );

    // A user's own token searches as that user only; an administrator searches everywhere.
    let (_, _, body) = call(
        http,
        "POST",
        "/v1/users/carol/tokens",
        Some(&key),
        Some(r#"{"device_id":"web"}"#),
    )
    .await;
    let token = json(&body)["token"].as_str().unwrap().to_owned();
    assert_eq!(
        search(http, &token, &path("carol", "天气")).await.1,
        [after_carol, carols]
    );
    assert_eq!(search(http, &token, &path("alice", "天气")).await.0, 403);
    assert_eq!(
        search(http, &token, &format!("/v1/search?q={}", q("天气")))
            .await
            .0,
        401
    );
    assert_eq!(
        search(http, &key, &format!("/v1/search?q={}", q("天气")))
            .await
            .1,
        [after_carol, before_carol, carols, weather]
    );
    for bad in ["", "%20%20", &"x".repeat(101)] {
        let (status, _, body) = call(
            http,
            "GET",
            &format!("/v1/users/alice/search?q={bad}"),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
}

/// The same search over the binary protocol: MESSAGE_SEARCH through the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_searches_over_the_binary_protocol() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let bob = server.client("bob", "phone").await;
    let carol = server.client("carol", "phone").await;
    let first = alice
        .client
        .send_text("bob", "Kite flying 风筝")
        .await
        .unwrap();
    let second = bob.client.send_text("alice", "风筝 again").await.unwrap();
    alice
        .client
        .send_text("carol", "风筝 for carol")
        .await
        .unwrap();
    let search = |client: &tern_client::Client, query: &str, before: u64, limit: u32| {
        let req = tern_client::pb::MessageSearchRequest {
            query: query.into(),
            before,
            limit,
            ..Default::default()
        };
        let client = client.clone();
        async move { client.search_messages(req).await }
    };
    let found = search(&bob.client, "风筝", 0, 0).await.unwrap();
    let ids: Vec<u64> = found.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(ids, [second.message_id, first.message_id]);
    assert_eq!(found.next_before, 0);
    let page = search(&bob.client, "风筝", 0, 1).await.unwrap();
    assert_eq!(page.messages[0].message_id, second.message_id);
    let rest = search(&bob.client, "风", page.next_before, 1)
        .await
        .unwrap();
    assert_eq!(rest.messages[0].message_id, first.message_id);
    assert_eq!(
        search(&carol.client, "kite", 0, 0)
            .await
            .unwrap()
            .messages
            .len(),
        0
    );
    let e = bob
        .client
        .search_messages(tern_client::pb::MessageSearchRequest {
            query: "风筝".into(),
            conversation_id: "p:alice:carol".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(tern_client::ErrorCode::NotAParticipant),
        "{e}"
    );
    let e = search(&bob.client, " ", 0, 0).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(tern_client::ErrorCode::InvalidArgument),
        "{e}"
    );
}
