//! One-to-one messaging end to end: store first, then sync, over real servers and clients.

use std::{collections::HashSet, time::Duration};

use tern_client::{HistoryQuery, pb};
use tern_testkit::{TestServer, text, text_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_receiver_gets_the_message_when_it_comes_online() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let ack = alice.client.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(ack.seq, 1);
    assert_eq!(ack.conversation_id, "p:alice:bob");

    let mut bob = server.client("bob", "phone").await;
    let got = bob.messages(1).await;
    assert_eq!(text_of(&got[0].1), "hello bob");
    assert_eq!(got[0].1.sender, "alice");
    assert_eq!(got[0].1.message_id, ack.message_id);
}
