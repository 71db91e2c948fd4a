//! Crash safety: kill -9 the server while clients send; after a restart every acknowledged
//! message is present exactly once, keeps its seq, and reaches the receiver.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tern_client::{Connection, Encoding, Endpoint, pb};
use tern_testkit::{TestClient, password};

/// A `tern serve` process over `dir`, on free ports.
struct Process {
    child: Child,
    tcp: String,
}

fn spawn_server(dir: &std::path::Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "serve",
            "--tcp-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .env("TERN_ARGON2_MEMORY_KIB", "64")
        .env("TERN_ARGON2_ITERATIONS", "1")
        .env("TERN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let tcp = loop {
        let line = lines
            .next()
            .expect("the server prints its addresses")
            .unwrap();
        if let Some(rest) = line.strip_prefix("tern: tcp listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process { child, tcp }
}

async fn logged_in(endpoint: &Endpoint, user: &str) -> Connection {
    let (conn, _events) =
        Connection::connect(endpoint, Encoding::Protobuf, Duration::from_secs(10))
            .await
            .unwrap();
    conn.request(pb::LoginRequest {
        user_id: user.into(),
        credential: Some(pb::login_request::Credential::Password(password(user))),
        device_id: "sender".into(),
        platform: pb::Platform::Desktop as i32,
    })
    .await
    .unwrap();
    conn
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
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server(dir.path());
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

    let server = spawn_server(dir.path());
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

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
