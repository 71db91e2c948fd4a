//! Webhooks end to end: a real HTTP receiver that checks every signature (with the test kit's
//! own HMAC code), a real server that queues events with its commits; events arrive signed,
//! once per id and in order per conversation, survive a receiver that is down and a server
//! killed mid-delivery, and the deliveries given up on are listed and replayed through the
//! admin API.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{extract::State, http::HeaderMap, http::StatusCode};
use base64::Engine as _;
use serde_json::Value;
use tern_client::pb;
use tern_server::WebhookSetting;
use tern_testkit::{
    TestServer, http_call,
    process::{Serve, ServeProcess},
};

const SECRET_BYTES: &[u8] = b"a receiver's secret, 32 bytes...";

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_BYTES)
    )
}

/// What the receiver answers.
const ANSWER: u8 = 0;
const FAIL: u8 = 1;
/// Holds the request without answering (until the server gives up on it).
const HANG: u8 = 2;

/// One event as received.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    body: Value,
}

#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    attempts: AtomicUsize,
    got: Mutex<Vec<Got>>,
    bad: Mutex<Vec<String>>,
}

/// A webhook receiver: a real HTTP server that verifies the Standard Webhooks signature of
/// every request on its own (HMAC-SHA256 over `id.timestamp.body`).
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, mode: u8) {
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }

    fn attempts(&self) -> usize {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// Waits until `enough` holds of what arrived.
    async fn wait_for(&self, what: &str, enough: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got();
            if enough(&got) {
                assert!(
                    self.shared.bad.lock().unwrap().is_empty(),
                    "badly signed requests: {:?}",
                    self.shared.bad.lock().unwrap()
                );
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: got {} events: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    shared.attempts.fetch_add(1, Ordering::SeqCst);
    if body.contains("hang-me") {
        // One conversation's receiver that never answers.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    match shared.mode.load(Ordering::SeqCst) {
        FAIL => return StatusCode::SERVICE_UNAVAILABLE,
        HANG => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        _ => {}
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    if !tern_testkit::signature_valid(SECRET_BYTES, &id, &timestamp, &signatures, &body) {
        shared
            .bad
            .lock()
            .unwrap()
            .push(format!("{id} {timestamp} {signatures}"));
        return StatusCode::BAD_REQUEST;
    }
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["id"], id.as_str(), "the body names the event's id");
    shared.got.lock().unwrap().push(Got { id, body });
    StatusCode::NO_CONTENT
}

fn hook(url: &str, events: &[&str]) -> WebhookSetting {
    WebhookSetting {
        name: "app".into(),
        url: url.into(),
        secret: secret(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
    }
}

/// Fast retries, so a test sees several in a moment.
fn quick_retries(c: &mut tern_server::Config) {
    c.webhook_retry_base_ms = 20;
    c.webhook_retry_max_ms = 100;
    c.webhook_timeout_ms = 2_000;
}

fn kinds(got: &[Got]) -> Vec<String> {
    let mut k: Vec<String> = got
        .iter()
        .map(|g| g.body["type"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

/// The seqs of one conversation's events, in the order they arrived.
fn seqs_of(got: &[Got], conversation: &str) -> Vec<u64> {
    got.iter()
        .filter(|g| g.body["data"]["conversation_id"] == conversation)
        .map(|g| g.body["data"]["seq"].as_u64().unwrap())
        .collect()
}

fn unique_ids(got: &[Got]) -> HashSet<String> {
    got.iter().map(|g| g.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_and_in_order_per_conversation() {
    let rx = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(
            &rx.url(),
            &[
                "message.created",
                "message.recalled",
                "message.edited",
                "group.created",
                "group.changed",
                "friend.changed",
            ],
        )];
        quick_retries(c);
    })
    .await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(
            alice
                .client
                .send_text("bob", &format!("m{i}"))
                .await
                .unwrap(),
        );
    }
    alice.client.recall(acks[0].message_id).await.unwrap();
    alice
        .client
        .edit_text(acks[1].message_id, "edited")
        .await
        .unwrap();
    let group = alice
        .client
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap();
    alice
        .client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::Rename("renamed".into()),
        )
        .await
        .unwrap();
    alice.client.request_friend("carol", "hello").await.unwrap();

    let got = rx.wait_for("ten events", |g| g.len() >= 10).await;
    assert_eq!(
        kinds(&got),
        [
            "friend.changed",
            "group.changed",
            "group.created",
            "message.created",
            "message.created",
            "message.created",
            "message.created",
            "message.created",
            "message.edited",
            "message.recalled",
        ]
    );
    assert_eq!(unique_ids(&got).len(), 10, "ten events, ten ids");
    // One conversation's events in commit order: five messages, the recall, the edit.
    let direct = &acks[0].conversation_id;
    assert_eq!(seqs_of(&got, direct), [1, 2, 3, 4, 5, 6, 7]);
    let first = got
        .iter()
        .find(|g| g.body["data"]["client_msg_id"].is_string() && g.body["data"]["seq"] == 1)
        .unwrap();
    assert_eq!(first.body["type"], "message.created");
    assert_eq!(first.body["data"]["sender"], "alice");
    assert_eq!(first.body["data"]["content"]["text"]["text"], "m0");
    assert_eq!(
        first.body["data"]["message_id"],
        acks[0].message_id.to_string()
    );
    let recalled = got
        .iter()
        .find(|g| g.body["type"] == "message.recalled")
        .unwrap();
    assert_eq!(
        recalled.body["data"]["target_message_id"],
        acks[0].message_id.to_string()
    );
    let friend = got
        .iter()
        .find(|g| g.body["type"] == "friend.changed")
        .unwrap();
    assert_eq!(friend.body["data"]["other_user"], "carol");
    assert_eq!(friend.body["data"]["change"], "request");
    let created = got
        .iter()
        .find(|g| g.body["type"] == "group.created")
        .unwrap();
    assert_eq!(created.body["data"]["group_id"], group.group_id.to_string());
    // Nothing more arrives: every event once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_only_the_events_it_names() {
    let rx = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(&rx.url(), &["group.created"])];
        quick_retries(c);
    })
    .await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    alice.client.send_text("bob", "not wanted").await.unwrap();
    alice.client.create_group("team", &["bob"]).await.unwrap();
    let got = rx.wait_for("the group", |g| !g.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kinds(&rx.got()), ["group.created"], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_coming_online_and_going_offline_is_told_once_each() {
    let rx = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(&rx.url(), &["user.online", "user.offline"])];
        quick_retries(c);
    })
    .await;
    server.register(&["alice"]).await;
    let phone = server.client("alice", "phone").await;
    rx.wait_for("online", |g| !g.is_empty()).await;
    // A second device, and the first leaving while it stays: alice is online throughout.
    let tablet = server.client("alice", "tablet").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    phone.client.close_and_wait().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tablet.client.close_and_wait().await;
    let got = rx.wait_for("offline", |g| g.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = rx.got();
    let types: Vec<&str> = got_now
        .iter()
        .map(|g| g.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["user.online", "user.offline"], "{got:?}");
    assert!(got_now.iter().all(|g| g.body["data"]["user_id"] == "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_event_once_in_order() {
    let rx = Receiver::start().await;
    rx.set(FAIL);
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(&rx.url(), &["message.created"])];
        quick_retries(c);
        c.webhook_max_attempts = 1_000;
    })
    .await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let mut conversations = HashSet::new();
    for i in 0..10 {
        for to in ["bob", "carol"] {
            let ack = alice
                .client
                .send_text(to, &format!("{to}{i}"))
                .await
                .unwrap();
            conversations.insert(ack.conversation_id);
        }
    }
    // Refused again and again, with backoff, while it is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rx.attempts() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "retries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.got().is_empty());
    rx.set(ANSWER);
    let got = rx.wait_for("twenty messages", |g| g.len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 20, "each once");
    assert_eq!(unique_ids(&got).len(), 20);
    for c in &conversations {
        assert_eq!(seqs_of(&got, c), (1..=10).collect::<Vec<u64>>(), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_hangs_holds_back_only_its_own_conversation() {
    let rx = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(&rx.url(), &["message.created"])];
        quick_retries(c);
        c.webhook_timeout_ms = 30_000;
    })
    .await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    alice.client.send_text("bob", "hang-me").await.unwrap();
    alice.client.send_text("bob", "after it").await.unwrap();
    let mut to_carol = None;
    for i in 0..5 {
        to_carol = Some(
            alice
                .client
                .send_text("carol", &format!("c{i}"))
                .await
                .unwrap(),
        );
    }
    let carol = to_carol.unwrap().conversation_id;
    // Carol's five arrive long before the hanging delivery's 30 s timeout; bob's second
    // waits behind his first.
    let started = tokio::time::Instant::now();
    let got = rx
        .wait_for("carol's messages", |g| seqs_of(g, &carol).len() == 5)
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(got.len(), 5, "nothing of bob's: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_through_the_api() {
    let rx = Receiver::start().await;
    rx.set(FAIL);
    let mut server = TestServer::start_with(|c| {
        c.webhooks = vec![hook(&rx.url(), &["message.created"])];
        quick_retries(c);
        c.webhook_max_attempts = 3;
    })
    .await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let ack = alice.client.send_text("bob", "given up on").await.unwrap();

    let json = |b: &str| serde_json::from_str::<Value>(b).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (status, _, body) =
            http_call(http, "GET", "/v1/webhooks/dead-letters", Some(&key), None).await;
        assert_eq!(status, 200, "{body}");
        let page = json(&body);
        if let Some(d) = page["dead_letters"].as_array().and_then(|d| d.first()) {
            break d.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "a dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rx.attempts(), 3, "three attempts, then no more");
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["webhook"], "app");
    assert_eq!(dead["event_type"], "message.created");
    assert!(
        dead["last_error"].as_str().unwrap().contains("503"),
        "{dead}"
    );
    assert_eq!(
        dead["body"]["data"]["message_id"],
        ack.message_id.to_string()
    );
    // The list shows the webhook, never its secret.
    let (status, _, body) = http_call(http, "GET", "/v1/webhooks", Some(&key), None).await;
    assert_eq!(status, 200);
    assert!(!body.contains("whsec_"), "{body}");
    assert_eq!(json(&body)["webhooks"][0]["name"], "app");
    assert_eq!(json(&body)["webhooks"][0]["events"][0], "message.created");
    assert_eq!(json(&body)["backlog"], 0, "a dead letter waits for nobody");

    rx.set(ANSWER);
    let seq = dead["seq"].as_u64().unwrap();
    let replay = format!("/v1/webhooks/dead-letters/{seq}/replay");
    let (status, _, body) = http_call(http, "POST", &replay, Some(&key), None).await;
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_for("the replayed event", |g| !g.is_empty()).await;
    assert_eq!(got[0].id, dead["event_id"].as_str().unwrap());
    let (_, _, body) = http_call(http, "GET", "/v1/webhooks/dead-letters", Some(&key), None).await;
    assert_eq!(json(&body)["dead_letters"], serde_json::json!([]));
    // Replaying what is not a dead letter is refused in the API's error shape.
    let (status, _, body) = http_call(http, "POST", &replay, Some(&key), None).await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, _, _) = http_call(
        http,
        "POST",
        "/v1/webhooks/dead-letters/not-a-number/replay",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

/// A `tern serve` process over a data directory, with a config file naming the webhook.
fn spawn(dir: &std::path::Path, store: Option<&str>, receiver: &str) -> ServeProcess {
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "webhook_retry_base_ms = 20\nwebhook_retry_max_ms = 100\nwebhook_timeout_ms = 1000\n\
             webhook_max_attempts = 1000\n\
             [[webhooks]]\nname = \"app\"\nurl = \"{receiver}\"\nsecret = \"{}\"\nevents = [\"message.created\"]\n",
            secret()
        ),
    )
    .unwrap();
    Serve::new(env!("CARGO_BIN_EXE_tern"), dir)
        .store(store)
        .config(&config)
        .spawn()
}

/// Kills the server with SIGKILL, again and again: while a delivery hangs, right after acks,
/// and at a random moment while events go out (on PostgreSQL the dead process's leases run out
/// after the 1 s timeout and 2 s more). Every acked message's event arrives in the
/// end, and one conversation's events never arrive out of order (a delivery the crash cut
/// short may arrive twice, right after itself: at least once, deduplicated by id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_survive_repeated_kills_during_delivery() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tern_testkit::test_database().await;
    let mut process = spawn(dir.path(), store.as_deref(), &rx.url());
    let endpoint = tern_client::Endpoint::Tcp(process.tcp.clone());
    for u in ["alice", "bob"] {
        tern_client::register(&endpoint, u, &tern_testkit::password(u))
            .await
            .unwrap();
    }
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut conversation = String::new();
    for round in 0..4 {
        rx.set(if round == 0 { HANG } else { ANSWER });
        let endpoint = tern_client::Endpoint::Tcp(process.tcp.clone());
        let (conn, _events) = tern_client::Connection::connect(
            &endpoint,
            tern_client::Encoding::Protobuf,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        conn.request(pb::LoginRequest {
            user_id: "alice".into(),
            device_id: "phone".into(),
            platform: pb::Platform::Ios as i32,
            credential: Some(pb::login_request::Credential::Password(
                tern_testkit::password("alice"),
            )),
        })
        .await
        .unwrap();
        for i in 0..10 {
            let ack = conn
                .request(pb::SendRequest {
                    client_msg_id: format!("r{round}-{i}"),
                    target: Some(pb::send_request::Target::ToUser("bob".into())),
                    content: Some(tern_testkit::text(&format!("r{round}-{i}"))),
                })
                .await
                .unwrap();
            acked.insert(ack.message_id.to_string(), ack.seq);
            conversation = ack.conversation_id;
        }
        match round {
            // A delivery is in flight, unanswered.
            0 => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while rx.attempts() == 0 {
                    assert!(tokio::time::Instant::now() < deadline, "a delivery starts");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            // Right after the acks.
            1 => {}
            // At a random moment while events go out.
            _ => {
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..60))).await;
            }
        }
        drop(conn);
        process.child.kill().unwrap();
        process.child.wait().unwrap();
        rx.set(ANSWER);
        process = spawn(dir.path(), store.as_deref(), &rx.url());
    }
    let got = rx
        .wait_for("every acked message's event", |g| {
            let ids: HashSet<&str> = g
                .iter()
                .filter_map(|e| e.body["data"]["message_id"].as_str())
                .collect();
            acked.keys().all(|id| ids.contains(id.as_str()))
        })
        .await;
    let seqs = seqs_of(&got, &conversation);
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "one conversation's events in order: {seqs:?}"
    );
    let want: Vec<u64> = (1..=acked.len() as u64).collect();
    let mut distinct = seqs.clone();
    distinct.dedup();
    assert_eq!(distinct, want, "every acked message, gapless");
}

/// Webhooks added and removed through the admin API on one node of a cluster reach every node:
/// a send on another node is delivered to the new webhook (signed with the secret given), and
/// stops being after the webhook is removed through a third node. The file's webhooks are
/// changed only in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_added_and_removed_through_the_api_on_every_node() {
    let rx = Receiver::start().await;
    let file_rx = Receiver::start().await;
    let mut server = TestServer::start_cluster(|c| {
        let mut file_hook = hook(&file_rx.url(), &["friend.changed"]);
        file_hook.name = "from-file".into();
        c.webhooks = vec![file_hook];
        c.settings_poll_ms = 50;
        quick_retries(c);
    })
    .await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob"]).await;
    let on = |node: usize| server.http_addr_of(node);
    let list = |node: usize| {
        let key = key.clone();
        let addr = on(node);
        async move {
            let (status, _, body) = http_call(addr, "GET", "/v1/webhooks", Some(&key), None).await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["webhooks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        w["name"].as_str().unwrap().to_owned(),
                        w["source"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let wait_until = |node: usize, want: Vec<(&'static str, &'static str)>| {
        let list = &list;
        async move {
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let got = list(node).await;
                if got == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {node}: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Refusals: a bad URL, an unknown event, the file's name, the dead letters' path.
    for (name, body, want) in [
        ("app", r#"{"url":"ftp://x","events":["*"]}"#.to_owned(), 400),
        (
            "app",
            format!(r#"{{"url":"{}","events":["message.sent"]}}"#, rx.url()),
            400,
        ),
        (
            "from-file",
            format!(r#"{{"url":"{}","events":["*"]}}"#, rx.url()),
            403,
        ),
        (
            "dead-letters",
            format!(r#"{{"url":"{}","events":["*"]}}"#, rx.url()),
            405,
        ),
        (
            "bad name",
            format!(r#"{{"url":"{}","events":["*"]}}"#, rx.url()),
            400,
        ),
    ] {
        let path = format!("/v1/webhooks/{}", name.replace(' ', "%20"));
        let (status, _, answer) = http_call(on(0), "PUT", &path, Some(&key), Some(&body)).await;
        assert_eq!(status, want, "{name}: {answer}");
    }
    let (status, _, _) =
        http_call(on(0), "DELETE", "/v1/webhooks/from-file", Some(&key), None).await;
    assert_eq!(status, 403);

    let body = format!(
        r#"{{"url":"{}","secret":"{}","events":["message.created"]}}"#,
        rx.url(),
        secret()
    );
    let (status, _, answer) =
        http_call(on(0), "PUT", "/v1/webhooks/app", Some(&key), Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
    let made: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (made["name"].as_str(), made["source"].as_str()),
        (Some("app"), Some("api"))
    );
    assert_eq!(made["secret"], secret());
    wait_until(1, vec![("from-file", "file"), ("app", "api")]).await;

    // A send through node 1 reaches the webhook node 0 added, signed with its secret.
    let alice = server.client_on(1, "alice", "phone", |_| {}).await;
    let ack = alice.client.send_text("bob", "first").await.unwrap();
    let got = rx.wait_for("the message", |g| !g.is_empty()).await;
    assert_eq!(got[0].body["type"], "message.created");
    assert_eq!(
        got[0].body["data"]["message_id"],
        ack.message_id.to_string()
    );

    // Removed through node 2: node 1 stops queuing for it.
    let (status, _, _) = http_call(on(2), "DELETE", "/v1/webhooks/app", Some(&key), None).await;
    assert_eq!(status, 204);
    let (status, _, _) = http_call(on(2), "DELETE", "/v1/webhooks/app", Some(&key), None).await;
    assert_eq!(status, 400, "removed already");
    wait_until(1, vec![("from-file", "file")]).await;
    alice.client.send_text("bob", "second").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.got().len(),
        1,
        "nothing after the removal: {:?}",
        rx.got()
    );

    // Without a secret, one is made and shown.
    let body = format!(r#"{{"url":"{}","events":["*"]}}"#, rx.url());
    let (status, _, answer) =
        http_call(on(0), "PUT", "/v1/webhooks/other", Some(&key), Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
    let made: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        made["secret"].as_str().unwrap().starts_with("whsec_"),
        "{made}"
    );
    assert!(file_rx.got().is_empty());
}
