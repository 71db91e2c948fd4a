//! The content filter end to end: sensitive words refused or masked in sends and edits, in
//! Chinese and Latin text and through disguises, and a new word list taking effect on reload.

use tern_proto::ErrorCode;
use tern_testkit::{TestServer, text_of};

fn words(dir: &std::path::Path, list: &str) -> std::path::PathBuf {
    let path = dir.join("words.txt");
    std::fs::write(&path, list).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_words_refuse_the_send_and_the_edit_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = words(dir.path(), "# words this app refuses\n坏蛋\nspam\n");
    let server = TestServer::start_with(|c| {
        c.filter_words_file = Some(file);
        c.filter_action = "reject".into();
    })
    .await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob = server.client_on(0, "bob", "phone", |_| {}).await;
    for text in ["你是坏蛋", "buy ＳＰＡＭ", "s\u{200B}pam"] {
        let e = alice.client.send_text("bob", text).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::ContentRejected), "{text:?}: {e}");
    }
    let ack = alice.client.send_text("bob", "你好").await.unwrap();
    let got = bob.messages(1).await;
    assert_eq!(
        got[0].1.message_id, ack.message_id,
        "only the clean message was stored"
    );
    let e = alice
        .client
        .edit_text(ack.message_id, "坏蛋")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ContentRejected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_words_arrive_as_a_star_per_character_and_a_reload_changes_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = words(dir.path(), "坏蛋\n");
    let server = TestServer::start_with(|c| {
        c.filter_words_file = Some(file.clone());
        c.filter_action = "mask".into();
    })
    .await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob = server.client_on(0, "bob", "phone", |_| {}).await;
    alice
        .client
        .send_text("bob", "你是坏蛋吗 spam")
        .await
        .unwrap();
    assert_eq!(text_of(&bob.messages(1).await[0].1), "你是**吗 spam");

    std::fs::write(&file, "坏蛋\nSpam\n").unwrap();
    assert_eq!(server.server().reload_filter().unwrap(), 2);
    alice.client.send_text("bob", "SPAM, 坏蛋").await.unwrap();
    assert_eq!(text_of(&bob.messages(1).await[0].1), "****, **");

    // A list that cannot be read leaves the one in force.
    std::fs::remove_file(&file).unwrap();
    assert!(server.server().reload_filter().is_err());
    let ack = alice.client.send_text("bob", "spam").await.unwrap();
    let got = bob.messages(1).await;
    assert_eq!(got[0].1.message_id, ack.message_id);
    assert_eq!(text_of(&got[0].1), "****");
}

/// One admin call; the status and the parsed body.
async fn admin(
    server: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, _, answer) =
        tern_testkit::http_call(server.config().http_addr, method, path, Some(key), body).await;
    let value = serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_word_list_is_managed_through_the_api_and_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = words(dir.path(), "fileword\n");
    let mut server = TestServer::start_with(|c| {
        c.filter_words_file = Some(file);
        c.filter_action = "reject".into();
    })
    .await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob"]).await;

    let (status, f) = admin(&server, &key, "GET", "/v1/filter", None).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        (f["source"].as_str(), f["word_count"].as_u64()),
        (Some("file"), Some(1))
    );

    for bad in [
        format!(r#"{{"action":"mask","words":["{}"]}}"#, "x".repeat(101)),
        r#"{"action":"drop","words":["x"]}"#.to_owned(),
        r#"{"words":["x"]}"#.to_owned(),
    ] {
        let (status, e) = admin(&server, &key, "PUT", "/v1/filter", Some(&bad)).await;
        assert_eq!(status, 400, "{bad}: {e}");
    }

    // A list set through the API replaces the file's at once, for both front doors.
    let (status, f) = admin(
        &server,
        &key,
        "PUT",
        "/v1/filter",
        Some(r#"{"action":"mask","words":["坏蛋","Spam"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        (f["source"].as_str(), f["word_count"].as_u64()),
        (Some("api"), Some(2))
    );
    assert_eq!(f["words"], serde_json::json!(["坏蛋", "Spam"]));
    server
        .until_every_node(&key, "/v1/filter", |b| b.contains(r#""source":"api""#))
        .await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    alice
        .client
        .send_text("bob", "你是坏蛋, buy ＳＰＡＭ, fileword")
        .await
        .unwrap();
    assert_eq!(
        text_of(&bob.messages(1).await[0].1),
        "你是**, buy ****, fileword"
    );
    let body = r#"{"sender":"alice","to_user":"bob","client_msg_id":"h1","content":{"text":{"text":"s\u200bpam 坏蛋"}}}"#;
    let (status, sent) = admin(&server, &key, "POST", "/v1/messages", Some(body)).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(text_of(&bob.messages(1).await[0].1), "**** **");

    let (status, _) = admin(
        &server,
        &key,
        "PUT",
        "/v1/filter",
        Some(r#"{"action":"reject","words":["spam"]}"#),
    )
    .await;
    assert_eq!(status, 200);
    server
        .until_every_node(&key, "/v1/filter", |b| b.contains(r#""action":"reject""#))
        .await;
    let e = alice.client.send_text("bob", "SPAM").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ContentRejected), "{e}");
    let body = r#"{"sender":"alice","to_user":"bob","client_msg_id":"h2","content":{"text":{"text":"spam"}}}"#;
    let (status, e) = admin(&server, &key, "POST", "/v1/messages", Some(body)).await;
    assert_eq!(
        (status, e["name"].as_str()),
        (422, Some("CONTENT_REJECTED"))
    );
    drop((alice, bob));

    // The store keeps it: a restart starts with it.
    server.restart().await;
    let (_, f) = admin(&server, &key, "GET", "/v1/filter", None).await;
    assert_eq!(
        (f["source"].as_str(), f["action"].as_str()),
        (Some("api"), Some("reject"))
    );
    let alice = server.client("alice", "phone").await;
    let e = alice.client.send_text("bob", "spam").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ContentRejected), "{e}");

    // Cleared: the file's list is in force again.
    let (status, f) = admin(&server, &key, "DELETE", "/v1/filter", None).await;
    assert_eq!((status, f["source"].as_str()), (200, Some("file")), "{f}");
    server
        .until_every_node(&key, "/v1/filter", |b| b.contains(r#""source":"file""#))
        .await;
    alice.client.send_text("bob", "spam").await.unwrap();
    let e = alice.client.send_text("bob", "FILEWORD").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ContentRejected), "{e}");
}
