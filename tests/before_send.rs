//! The before-send hook end to end: a real HTTP hook (checking every request's signature with
//! the test kit's own code) that allows, rejects with the app's code, rewrites, answers late or
//! fails, for sends over the binary protocol and the HTTP API; both failure policies; and one
//! connection's sends keeping their order while checks of different lengths run at once.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse};
use serde_json::{Value, json};
use tern_client::{ClientError, Encoding, pb};
use tern_proto::Request;
use tern_testkit::{TestServer, http_call, text_of};

const SECRET: &str = "the app's before-send secret";

/// The texts the hook saw, and requests whose signature did not verify.
#[derive(Default)]
struct Seen {
    texts: Mutex<Vec<String>>,
    bad: Mutex<usize>,
}

async fn hook(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if !tern_testkit::signature_valid(
        SECRET.as_bytes(),
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
    ) {
        *seen.bad.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, Json(json!({}))).into_response();
    }
    let draft: Value = serde_json::from_str(&body).unwrap();
    let text = draft["content"]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    seen.texts.lock().unwrap().push(text.clone());
    let answer = match text.as_str() {
        "block" => json!({"action": "reject", "code": 9001, "message": "not here"}),
        "plain-no" => json!({"action": "reject"}),
        "rewrite me" => json!({"action": "modify", "content": {"text": {"text": "rewritten"}}}),
        "bad-modify" => json!({"action": "modify", "content": {}}),
        "gibberish" => json!({"action": "shrug"}),
        "error" => return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json!({"action": "reject", "message": "too late to count"})
        }
        t => {
            if let Some(ms) = t.strip_prefix("delay-") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            assert_eq!(draft["sender"], "alice");
            json!({"action": "allow"})
        }
    };
    Json(answer).into_response()
}

/// Starts the hook; its URL and what it saw.
async fn start_hook() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route("/check", axum::routing::post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn server_with_hook(url: &str, on_failure: &str) -> TestServer {
    let (url, on_failure) = (url.to_owned(), on_failure.to_owned());
    TestServer::start_with(move |c| {
        c.before_send_url = Some(url);
        c.before_send_secret = SECRET.into();
        c.before_send_timeout_ms = 300;
        c.before_send_on_failure = on_failure;
    })
    .await
}

fn code(e: &ClientError) -> (u32, String) {
    match e {
        ClientError::Server { code, message, .. } => (*code, message.clone()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_allows_rejects_and_rewrites_and_failures_go_through_when_set_to_allow() {
    let (url, seen) = start_hook().await;
    let mut server = server_with_hook(&url, "allow").await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;

    alice.client.send_text("bob", "hello").await.unwrap();
    let e = alice.client.send_text("bob", "block").await.unwrap_err();
    assert_eq!(
        code(&e),
        (9001, "not here".to_owned()),
        "the app's own code"
    );
    let e = alice.client.send_text("bob", "plain-no").await.unwrap_err();
    assert_eq!(
        code(&e).0,
        3013,
        "REJECTED_BY_APP without a code of the app's"
    );
    alice.client.send_text("bob", "rewrite me").await.unwrap();
    // Failures, let through unchecked: late, an error status, an invalid replacement, an
    // answer that is not a verdict.
    let started = tokio::time::Instant::now();
    alice.client.send_text("bob", "slow").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    for t in ["error", "bad-modify", "gibberish"] {
        alice.client.send_text("bob", t).await.unwrap();
    }
    let got: Vec<String> = bob
        .messages(6)
        .await
        .iter()
        .map(|(_, m)| text_of(m).to_owned())
        .collect();
    assert_eq!(
        got,
        [
            "hello",
            "rewritten",
            "slow",
            "error",
            "bad-modify",
            "gibberish"
        ]
    );

    // The HTTP API's sends pass the same check.
    let body = r#"{"sender":"alice","to_user":"bob","client_msg_id":"h1","content":{"text":{"text":"block"}}}"#;
    let (status, _, answer) = http_call(
        server.config().http_addr,
        "POST",
        "/v1/messages",
        Some(&key),
        Some(body),
    )
    .await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], 9001);
    assert_eq!(answer["name"], "REJECTED_BY_APP");
    assert_eq!(answer["message"], "not here");
    assert_eq!(*seen.bad.lock().unwrap(), 0, "every check was signed");
    assert!(seen.texts.lock().unwrap().len() >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_refused_as_retryable_when_set_to_reject() {
    let (url, _) = start_hook().await;
    let server = server_with_hook(&url, "reject").await;
    server.register(&["alice", "bob"]).await;
    let mut bob = server.client("bob", "phone").await;
    // A raw connection: the SDK would retry a retryable refusal by itself.
    let mut alice = server.raw().await;
    alice.login("alice", "phone").await;
    for t in ["slow", "error", "bad-modify", "gibberish"] {
        let e = alice
            .call_err(pb::SendRequest {
                target: Some(pb::send_request::Target::ToUser("bob".into())),
                client_msg_id: t.into(),
                content: Some(tern_testkit::text(t)),
            })
            .await;
        assert_eq!((e.code, e.name.as_str()), (5001, "UNAVAILABLE"), "{t}");
        assert!(e.retryable, "{t}");
    }
    alice
        .call(pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: "ok".into(),
            content: Some(tern_testkit::text("hello")),
        })
        .await;
    let got = bob.messages(1).await;
    assert_eq!(
        text_of(&got[0].1),
        "hello",
        "only the checked message was stored"
    );
    bob.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sends_pass_the_hook_too() {
    let (url, _) = start_hook().await;
    let server = server_with_hook(&url, "allow").await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let group = alice.client.create_group("team", &["bob"]).await.unwrap();
    let e = alice
        .client
        .send_group_text(group.group_id, "block")
        .await
        .unwrap_err();
    assert_eq!(code(&e).0, 9001);
    alice
        .client
        .send_group_text(group.group_id, "fine")
        .await
        .unwrap();
}

/// Checks run at once and finish in any order, but a connection's sends take their seqs in
/// the order they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connections_sends_keep_their_order_while_checks_overlap() {
    let (url, seen) = start_hook().await;
    let server = server_with_hook(&url, "reject").await;
    server.register(&["alice", "bob"]).await;
    let mut raw = server.raw().await;
    raw.login("alice", "phone").await;
    // The first waits longest: without turns it would be stored last.
    let mut ids = Vec::new();
    for i in 0..8u64 {
        let req = pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: format!("o{i}"),
            content: Some(tern_testkit::text(&format!("delay-{}", (8 - i) * 25))),
        };
        ids.push(raw.send(Request::Send(req), Encoding::Protobuf).await);
    }
    // Acks come back as their commits finish; match them to the sends by packet id.
    let mut acks = std::collections::HashMap::new();
    while acks.len() < ids.len() {
        let f = raw.read().await.expect("an ack before close");
        if f.is_response() {
            assert!(!f.is_error(), "{:?}", f.decode::<pb::Error>());
            acks.insert(f.packet_id, f.decode::<pb::SendAck>().unwrap().seq);
        }
    }
    let seqs: Vec<u64> = ids.iter().map(|id| acks[id]).collect();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<u64>>(),
        "stored in the order sent"
    );
    assert_eq!(seen.texts.lock().unwrap().len(), 8);
}
