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
