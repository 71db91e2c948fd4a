//! TLS on both listeners: frames over TLS (`tls://`), WebSocket over TLS (`wss://`), a client
//! trusting another CA refused, and a certificate swapped in place without dropping a
//! connection (by `reload_tls`, and by SIGHUP to a real `tern serve`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tern_client::{ConnectOptions, Connection, Encoding, Endpoint, TlsTrust, pb};
use tern_testkit::{TestServer, password};

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = Self::issue(dir.path());
        Pki { dir, ca_pem }
    }

    /// Issues a fresh CA and server certificate into `dir` (`cert.pem`, `key.pem`); returns
    /// the CA's PEM.
    fn issue(dir: &Path) -> String {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        ca.pem()
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn trust(&self) -> TlsTrust {
        TlsTrust::from_pem(self.ca_pem.as_bytes()).unwrap()
    }

    /// Replaces the files with a certificate from a new CA; the old trust no longer works.
    fn rotate(&mut self) {
        self.ca_pem = Self::issue(self.dir.path());
    }
}

async fn tls_server(pki: &Pki) -> TestServer {
    let (cert, key) = (pki.cert(), pki.key());
    TestServer::start_with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await
}

fn endpoints(server: &TestServer) -> [Endpoint; 2] {
    [
        Endpoint::Tls(server.config().tcp_addr.to_string()),
        Endpoint::WebSocket(format!("wss://{}/ws", server.config().http_addr)),
    ]
}

async fn connect(
    endpoint: &Endpoint,
    trust: &TlsTrust,
) -> Result<Connection, tern_client::ClientError> {
    let options = ConnectOptions {
        tls: Some(trust.clone()),
        ..ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(10))
    };
    Ok(Connection::connect_with(endpoint, &options).await?.0)
}

async fn login(conn: &Connection, user: &str, device: &str) {
    conn.request(pb::LoginRequest {
        user_id: user.into(),
        credential: Some(pb::login_request::Credential::Password(password(user))),
        device_id: device.into(),
        platform: pb::Platform::Unspecified as i32,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_and_websockets_travel_over_tls_with_a_trusted_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    assert!(server.server().tls());
    let [tls, wss] = endpoints(&server);
    let options = ConnectOptions {
        tls: Some(pki.trust()),
        ..ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(10))
    };
    tern_client::register_with(&tls, &options, "alice", &password("alice"))
        .await
        .unwrap();
    tern_client::register_with(&wss, &options, "bob", &password("bob"))
        .await
        .unwrap();
    let alice = connect(&tls, &pki.trust()).await.unwrap();
    login(&alice, "alice", "phone").await;
    let ack = alice
        .request(pb::SendRequest {
            target: Some(pb::send_request::Target::ToUser("bob".into())),
            client_msg_id: "over-tls".into(),
            content: Some(tern_testkit::text("sealed")),
        })
        .await
        .unwrap();
    let bob = connect(&wss, &pki.trust()).await.unwrap();
    login(&bob, "bob", "web").await;
    let page = bob
        .request(pb::SyncRequest {
            after: 0,
            limit: 10,
        })
        .await
        .unwrap();
    let Some(pb::inbox_entry::Event::Message(m)) = &page.entries[0].event else {
        panic!("a message")
    };
    assert_eq!(m.message_id, ack.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_is_refused_on_both_listeners() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let stranger = Pki::new();
    for endpoint in endpoints(&server) {
        let e = connect(&endpoint, &stranger.trust()).await.unwrap_err();
        assert!(
            matches!(e, tern_client::ClientError::Connect { .. }),
            "{endpoint}: {e}"
        );
    }
    // A plain-text client gets no answer from the TLS listener.
    let plain = Endpoint::Tcp(server.config().tcp_addr.to_string());
    let (conn, _) = Connection::connect(&plain, Encoding::Protobuf, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(conn.request(pb::Ping { client_time_ms: 1 }).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let mut pki = Pki::new();
    let server = tls_server(&pki).await;
    let [tls, wss] = endpoints(&server);
    let old_trust = pki.trust();
    let old_ca = pki.ca_pem.clone();
    let options = ConnectOptions {
        tls: Some(old_trust.clone()),
        ..ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(10))
    };
    tern_client::register_with(&tls, &options, "alice", &password("alice"))
        .await
        .unwrap();
    let open = connect(&tls, &old_trust).await.unwrap();
    login(&open, "alice", "phone").await;

    pki.rotate();
    server.server().reload_tls().unwrap();
    for endpoint in [&tls, &wss] {
        connect(endpoint, &pki.trust())
            .await
            .unwrap_or_else(|e| panic!("{endpoint} with the new CA: {e}"));
        // A fresh client of the old CA (a client that talked to the server before may resume
        // its TLS session, which is not a new handshake with the certificate).
        let fresh_old = TlsTrust::from_pem(old_ca.as_bytes()).unwrap();
        assert!(
            connect(endpoint, &fresh_old).await.is_err(),
            "{endpoint} still serves the old certificate"
        );
    }
    // The connection opened before the reload is untouched.
    let pong = open.request(pb::Ping { client_time_ms: 7 }).await.unwrap();
    assert_eq!(pong.client_time_ms, 7);

    // A broken file is refused and the current certificate stays.
    std::fs::write(pki.key(), "not a key").unwrap();
    assert!(server.server().reload_tls().is_err());
    connect(&tls, &pki.trust()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_a_running_server() {
    let mut pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "serve",
            "--tcp-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--tls-cert")
        .arg(pki.cert())
        .arg("--tls-key")
        .arg(pki.key())
        .env("TERN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let tcp = loop {
        let line = lines
            .next()
            .expect("the server prints its addresses")
            .unwrap();
        if let Some(rest) = line.strip_prefix("tern: tcp listening on ") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let endpoint = Endpoint::Tls(tcp);
    connect(&endpoint, &pki.trust()).await.unwrap();

    pki.rotate();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connect(&endpoint, &pki.trust()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is served after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The CLI reaches a TLS server with `--tls-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_over_tls_with_a_given_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let ca = pki.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(args)
            .env("TERN_SERVER", format!("tls://{}", server.config().tcp_addr))
            .env("TERN_TLS_CA", &ca)
            .output()
            .unwrap()
    };
    for user in ["alice", "bob"] {
        let out = run(&["register", "--user", user, "--password", &password(user)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&[
        "send",
        "--user",
        "alice",
        "--password",
        &password("alice"),
        "--to",
        "bob",
        "hello",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("seq=1 "));
}
