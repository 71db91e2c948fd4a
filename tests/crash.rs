//! Crash safety: kill -9 the server while clients send, once mid-stream and many times in a row
//! right after acks; after every restart each acknowledged message is present exactly once,
//! keeps its seq, and is in every inbox it was written to, and every device's view converges.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use tern_client::{Connection, Encoding, Endpoint, pb};
use tern_testkit::{
    TestClient, password,
    process::{Serve, ServeProcess},
};

/// Where a test's server keeps its data: a directory for the embedded store, and with
/// `TERN_TEST_STORE=postgres` a fresh database besides.
struct Data {
    dir: tempfile::TempDir,
    store: Option<String>,
}

impl Data {
    async fn new() -> Data {
        Data {
            dir: tempfile::tempdir().unwrap(),
            store: tern_testkit::test_database().await,
        }
    }
}

/// A `tern serve` process over `data`, on free ports.
type Process = ServeProcess;

fn spawn_server(data: &Data) -> Process {
    spawn_server_with(data, &[])
}

fn spawn_server_with(data: &Data, env: &[(&str, &str)]) -> Process {
    let mut serve =
        Serve::new(env!("CARGO_BIN_EXE_tern"), data.dir.path()).store(data.store.as_deref());
    for (k, v) in env {
        serve = serve.env(k, v);
    }
    serve.spawn()
}

async fn logged_in(endpoint: &Endpoint, user: &str) -> Connection {
    login(endpoint, Encoding::Protobuf, user, "sender").await.0
}

/// A connection logged in as `user` on `device`, and what the login answered.
async fn login(
    endpoint: &Endpoint,
    encoding: Encoding,
    user: &str,
    device: &str,
) -> (Connection, pb::LoginResponse) {
    let (conn, _events) = Connection::connect(endpoint, encoding, Duration::from_secs(10))
        .await
        .unwrap();
    let login = conn
        .request(pb::LoginRequest {
            user_id: user.into(),
            credential: Some(pb::login_request::Credential::Password(password(user))),
            // Each device on its own platform, so that no login kicks another.
            platform: match device {
                "phone" => pb::Platform::Ios,
                "tablet" => pb::Platform::Android,
                "web" => pb::Platform::Web,
                _ => pb::Platform::Desktop,
            } as i32,
            device_id: device.into(),
        })
        .await
        .unwrap();
    (conn, login)
}

#[derive(Debug, Clone, PartialEq)]
struct Acked {
    sender: String,
    cmid: String,
    message_id: u64,
    seq: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_survives_kill_9_exactly_once_and_reaches_the_receiver() {
    let data = Data::new().await;
    let mut server = spawn_server(&data);
    let endpoint = Endpoint::Tcp(server.tcp.clone());
    let senders = ["alice", "carol", "dave"];
    for u in senders.iter().chain(&["bob"]) {
        tern_client::register(&endpoint, u, &password(u))
            .await
            .unwrap();
    }

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for sender in senders {
        let conn = logged_in(&endpoint, sender).await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            // Several sends in flight at once, so the kill lands inside a batch commit.
            let mut in_flight = tokio::task::JoinSet::new();
            for i in 0.. {
                let cmid = format!("{sender}-{i}");
                let conn = conn.clone();
                let acked = acked.clone();
                in_flight.spawn(async move {
                    let req = pb::SendRequest {
                        target: Some(pb::send_request::Target::ToUser("bob".into())),
                        client_msg_id: cmid.clone(),
                        content: Some(tern_testkit::text(&cmid)),
                    };
                    match conn.request(req).await {
                        Ok(ack) => {
                            acked.lock().unwrap().push(Acked {
                                sender: sender.to_owned(),
                                cmid,
                                message_id: ack.message_id,
                                seq: ack.seq,
                            });
                            true
                        }
                        Err(_) => false,
                    }
                });
                if in_flight.len() >= 8
                    && let Some(Ok(false)) = in_flight.join_next().await
                {
                    break;
                }
            }
            while in_flight.join_next().await.is_some() {}
        }));
    }
    // Let them run until a good number of messages are acknowledged, then kill without warning.
    while acked.lock().unwrap().len() < 600 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 600);

    let server = spawn_server(&data);
    let endpoint = Endpoint::Tcp(server.tcp.clone());
    // History: every acked message present exactly once with its seq and id; no gaps.
    for sender in senders {
        let conn = logged_in(&endpoint, sender).await;
        let mut messages = Vec::new();
        let mut anchor = 0;
        loop {
            let page = conn
                .request(pb::HistoryRequest {
                    target: Some(pb::history_request::Target::Peer("bob".into())),
                    anchor_seq: anchor,
                    direction: pb::Direction::Forward as i32,
                    limit: 500,
                })
                .await
                .unwrap();
            anchor = page.messages.last().map_or(anchor, |m| m.seq);
            messages.extend(page.messages);
            if !page.has_more {
                break;
            }
        }
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{sender}'s conversation has no gap"
        );
        let by_cmid: HashMap<&str, Vec<&pb::Message>> =
            messages.iter().fold(HashMap::new(), |mut m, msg| {
                m.entry(msg.client_msg_id.as_str()).or_default().push(msg);
                m
            });
        for a in acked.iter().filter(|a| a.sender == sender) {
            let found = by_cmid
                .get(a.cmid.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert_eq!(found.len(), 1, "acked {} present exactly once", a.cmid);
            assert_eq!(
                (found[0].seq, found[0].message_id),
                (a.seq, a.message_id),
                "{} kept its seq and id",
                a.cmid
            );
        }
    }
    // The receiver, on a fresh device, gets every acked message exactly once.
    let mut config =
        tern_client::ClientConfig::new(endpoint.clone(), "bob", &password("bob"), "tablet");
    config.reconnect.enabled = false;
    let (client, events) = tern_client::Client::connect(config).await.unwrap();
    let mut bob = TestClient { client, events };
    let total = {
        let conn = logged_in(&endpoint, "bob").await;
        conn.request(pb::SyncRequest { after: 0, limit: 1 })
            .await
            .unwrap()
            .head
    };
    let got = bob.messages(total as usize).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let received: HashSet<u64> = got.iter().map(|(_, m)| m.message_id).collect();
    assert_eq!(received.len(), got.len(), "no duplicates");
    for a in &acked {
        assert!(
            received.contains(&a.message_id),
            "acked {} reached the receiver",
            a.cmid
        );
    }
    drop(server);
}

/// The whole inbox of the connection's user after `after`, in order, with the head.
async fn sync_from(conn: &Connection, after: u64) -> (Vec<(u64, u64)>, u64) {
    let mut entries = Vec::new();
    let mut cursor = after;
    loop {
        let page = conn
            .request(pb::SyncRequest {
                after: cursor,
                limit: 200,
            })
            .await
            .unwrap();
        for e in &page.entries {
            let Some(pb::inbox_entry::Event::Message(m)) = &e.event else {
                panic!("an inbox entry without a message: {e:?}");
            };
            entries.push((e.seq, m.message_id));
            cursor = e.seq;
        }
        if !page.has_more {
            return (entries, page.head);
        }
    }
}

/// Alice sends `n` messages to bob, 32 in flight, over JSON; returns each ack by client id.
async fn send_batch(conn: &Connection, first: usize, n: usize) -> Vec<(String, pb::SendAck)> {
    let mut in_flight = tokio::task::JoinSet::new();
    let mut acks = Vec::new();
    for i in first..first + n {
        let cmid = format!("m{i}");
        let req = conn.start(pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: cmid.clone(),
            content: Some(tern_testkit::text(&cmid)),
        });
        in_flight.spawn(async move { (cmid, req.unwrap().await.unwrap()) });
        if in_flight.len() >= 32 {
            acks.push(in_flight.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(done) = in_flight.join_next().await {
        acks.push(done.unwrap());
    }
    acks
}

/// What the test knows every device must see: every acked message and where its ack put it.
#[derive(Default)]
struct Model {
    /// client message id → (message id, conversation seq, alice's inbox seq).
    sends: HashMap<String, (u64, u64, u64)>,
    /// The highest heads and cursors seen: none may go back.
    alice_head: u64,
    bob_head: u64,
    bob_phone_cursor: u64,
}

impl Model {
    fn record(&mut self, acks: Vec<(String, pb::SendAck)>) {
        for (cmid, ack) in acks {
            assert!(!ack.duplicate, "{cmid} is new");
            assert!(
                !self
                    .sends
                    .values()
                    .any(|(id, _, inbox)| *id == ack.message_id || *inbox == ack.inbox_seq),
                "{cmid} was acked with message id {} and inbox seq {}, already given to an acked \
                 message",
                ack.message_id,
                ack.inbox_seq
            );
            self.alice_head = self.alice_head.max(ack.inbox_seq);
            self.sends
                .insert(cmid, (ack.message_id, ack.seq, ack.inbox_seq));
        }
    }

    /// Checks one user's whole inbox: gapless from 1, each acked message once.
    fn check_inbox(&self, who: &str, entries: &[(u64, u64)], head: u64) {
        let seqs: Vec<u64> = entries.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs,
            (1..=head).collect::<Vec<_>>(),
            "{who}: the inbox is 1..=head"
        );
        let ids: HashSet<u64> = entries.iter().map(|e| e.1).collect();
        assert_eq!(ids.len(), entries.len(), "{who}: no message twice");
        for (cmid, (id, _, _)) in &self.sends {
            assert!(
                ids.contains(id),
                "{who}: acked {cmid} (message {id}) is in the inbox"
            );
        }
    }
}

/// The failure the crash model first found, end to end: kill -9 right after acks, several times
/// in a row, and right after a recovery. Every acked message stays in history and in every inbox
/// it was written to, under the seqs its ack reported; heads and cursors never go back; a device
/// following the sync algorithm from its saved cursor misses nothing.
async fn acked_messages_survive_repeated_kills(store_sync: &str) {
    let data = Data::new().await;
    let env = [("TERN_STORE_SYNC", store_sync)];
    let mut acked = Model::default();
    let mut sent = 0;
    for round in 0..6 {
        let server = spawn_server_with(&data, &env);
        let endpoint = Endpoint::Tcp(server.tcp.clone());
        if round == 0 {
            for u in ["alice", "bob"] {
                tern_client::register(&endpoint, u, &password(u))
                    .await
                    .unwrap();
            }
        }
        if round == 3 {
            // Killed again right after recovering, before any new write.
            drop(server);
            continue;
        }
        let (alice, _) = login(&endpoint, Encoding::Json, "alice", "desktop").await;
        // Whatever the earlier kills did, what was acked is all there.
        let (entries, head) = sync_from(&alice, 0).await;
        assert!(head >= acked.alice_head, "alice's inbox head went back");
        let by_seq: HashMap<u64, u64> = entries.iter().copied().collect();
        for (cmid, (id, _, inbox)) in &acked.sends {
            assert_eq!(
                by_seq.get(inbox),
                Some(id),
                "round {round}: alice's acked {cmid} is at inbox seq {inbox}"
            );
        }
        acked.record(send_batch(&alice, sent, 300).await);
        sent += 300;
        if round % 2 == 1 {
            // Killed within a moment of the last send ack.
            drop(server);
            continue;
        }
        // Bob's phone follows the sync algorithm: from its saved cursor to the head, then acks.
        let (bob, login) = login(&endpoint, Encoding::Json, "bob", "phone").await;
        assert_eq!(
            login.cursor, acked.bob_phone_cursor,
            "round {round}: bob's cursor"
        );
        assert!(
            login.inbox_head >= acked.bob_head,
            "round {round}: bob's head went back"
        );
        let (fresh, head) = sync_from(&bob, login.cursor).await;
        assert_eq!(
            fresh.iter().map(|e| e.0).collect::<Vec<_>>(),
            (login.cursor + 1..=head).collect::<Vec<_>>(),
            "round {round}: bob syncs everything after his cursor"
        );
        let ack = bob
            .request(pb::AckCursorRequest { seq: head })
            .await
            .unwrap();
        assert_eq!(ack.cursor, head);
        acked.bob_head = head;
        acked.bob_phone_cursor = head;
        // Killed within a moment of the cursor's ack.
        drop(server);
    }

    let server = spawn_server_with(&data, &env);
    let endpoint = Endpoint::Tcp(server.tcp.clone());
    let (alice, _) = login(&endpoint, Encoding::Json, "alice", "desktop").await;
    let (entries, head) = sync_from(&alice, 0).await;
    acked.check_inbox("alice", &entries, head);
    for (cmid, (id, _, inbox)) in &acked.sends {
        assert!(
            entries.contains(&(*inbox, *id)),
            "alice's {cmid} at inbox seq {inbox}"
        );
    }
    // History: every acked message once, at the seq its ack reported.
    let mut history = HashMap::new();
    let mut anchor = 0;
    loop {
        let page = alice
            .request(pb::HistoryRequest {
                target: Some(pb::history_request::Target::Peer("bob".into())),
                anchor_seq: anchor,
                direction: pb::Direction::Forward as i32,
                limit: 500,
            })
            .await
            .unwrap();
        for m in &page.messages {
            assert!(history.insert(m.seq, m.message_id).is_none());
        }
        anchor = page.messages.last().map_or(anchor, |m| m.seq);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        history.len(),
        acked.sends.len(),
        "history holds exactly what was acked"
    );
    for (cmid, (id, seq, _)) in &acked.sends {
        assert_eq!(
            history.get(seq),
            Some(id),
            "{cmid} at seq {seq} of the conversation"
        );
    }
    // Bob: the phone from its cursor, a tablet that never synced from 0; both end with it all.
    let (phone, login_phone) = login(&endpoint, Encoding::Json, "bob", "phone").await;
    assert_eq!(login_phone.cursor, acked.bob_phone_cursor);
    let (rest, head) = sync_from(&phone, login_phone.cursor).await;
    assert_eq!(
        rest.first().map(|e| e.0),
        (head > login_phone.cursor).then_some(login_phone.cursor + 1)
    );
    let (tablet, _) = login(&endpoint, Encoding::Protobuf, "bob", "tablet").await;
    let (all, tablet_head) = sync_from(&tablet, 0).await;
    assert_eq!(tablet_head, head);
    acked.check_inbox("bob", &all, head);
    assert_eq!(
        &all[login_phone.cursor as usize..],
        &rest[..],
        "the phone and the tablet agree"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_repeated_kills_right_after_acks() {
    acked_messages_survive_repeated_kills("full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_repeated_kills_right_after_acks_with_normal_sync() {
    acked_messages_survive_repeated_kills("normal").await;
}
