//! Test kit: start a real server on `127.0.0.1:0` over a temporary data directory, talk to it
//! with raw frames or with the SDK, and restart it over the same files.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use tern_client::{Client, ClientConfig, Endpoint, Event};
use tern_proto::{
    Decoded, Encoding, Frame, FrameDecoder, PacketId, Payload, Request, RequestPayload, pb,
};
use tern_server::{Config, Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

pub mod session_script;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(15);

pub mod postgres;
pub mod process;
pub mod redis;
pub mod s3;

/// A server for one test, over a data directory that outlives restarts. With
/// `TERN_TEST_STORE=cluster` it is three nodes over one PostgreSQL database and a Redis of the
/// test's own: SDK clients ([`TestServer::client`]) are spread over the nodes in turn, and
/// everything else (`tcp()`, `raw()`, `server()`) is the first node.
#[derive(Debug)]
pub struct TestServer {
    server: Option<Server>,
    config: Config,
    /// The cluster's other nodes, with their configurations (ports resolved).
    others: Vec<(Option<Server>, Config)>,
    /// The cluster's Redis.
    redis: Option<redis::TestRedis>,
    /// Which node the next SDK client connects to.
    next: std::sync::atomic::AtomicUsize,
    /// Keeps the data directory alive for the test's duration.
    _dir: Arc<tempfile::TempDir>,
}

/// Nodes of a test cluster.
pub const CLUSTER_NODES: usize = 3;

/// Whether the suite runs each server as a three-node cluster (`TERN_TEST_STORE=cluster`).
pub fn test_cluster() -> bool {
    std::env::var("TERN_TEST_STORE").as_deref() == Ok("cluster")
}

/// A configuration for tests: loopback on free ports, a temporary directory, and cheap
/// password hashing (argon2id with 64 KiB and one pass) so tests can register many users.
pub fn test_config(dir: PathBuf) -> Config {
    Config {
        data_dir: dir,
        tcp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        shutdown_drain_ms: 5_000,
        // Settings changed through the API on one node reach the others this quickly.
        settings_poll_ms: 50,
        // Every test client comes from 127.0.0.1: limits per address would count them all
        // together. Tests of those limits set them.
        registrations_per_address: 0,
        max_connections_per_address: 0,
        login_max_failures_per_address: 0,
        ..Config::default()
    }
}

/// The backend the suite runs on: the embedded store, unless `TERN_TEST_STORE=postgres`, which
/// gives every server a fresh database of its own on the PostgreSQL server that
/// `TERN_TEST_POSTGRES` names (`postgres://USER@HOST:PORT`; `scripts/test` starts one and runs
/// the end-to-end suites both ways). Returns that database's URL.
pub async fn test_database() -> Option<String> {
    match std::env::var("TERN_TEST_STORE").as_deref() {
        Ok("postgres" | "cluster") => {}
        Ok("sqlite") | Err(_) => return None,
        Ok(other) => panic!("TERN_TEST_STORE must be sqlite, postgres or cluster, not {other:?}"),
    }
    Some(postgres_database().await)
}

/// A fresh database on the PostgreSQL server `TERN_TEST_POSTGRES` names; its URL.
pub async fn postgres_database() -> String {
    let base = std::env::var("TERN_TEST_POSTGRES").expect(
        "a PostgreSQL test needs TERN_TEST_POSTGRES=postgres://USER@HOST:PORT (scripts/test starts one)",
    );
    let (admin, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    let conn = tokio::spawn(conn);
    let name = format!("tern_e2e_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    drop(admin);
    let _ = conn.await;
    format!("{base}/{name}")
}

impl TestServer {
    /// A server with the test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with the test configuration changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_clock(adjust, Arc::new(tern_server::SystemClock)).await
    }

    /// [`TestServer::start_with`] on a given clock (a `ManualClock` for expiry tests).
    pub async fn start_with_clock(
        adjust: impl FnOnce(&mut Config),
        clock: Arc<dyn tern_server::Clock>,
    ) -> TestServer {
        Self::launch(adjust, clock, test_cluster()).await
    }

    /// A three-node cluster over a fresh PostgreSQL database and a Redis of its own, whatever
    /// `TERN_TEST_STORE` says (the cluster's own tests).
    pub async fn start_cluster(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::launch(adjust, Arc::new(tern_server::SystemClock), true).await
    }

    async fn launch(
        adjust: impl FnOnce(&mut Config),
        clock: Arc<dyn tern_server::Clock>,
        cluster: bool,
    ) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let mut config = test_config(dir.path().to_path_buf());
        config.store = if cluster {
            Some(postgres_database().await)
        } else {
            test_database().await
        };
        let redis = if cluster {
            let redis = redis::TestRedis::start().await;
            config.redis_url = Some(redis.url());
            Some(redis)
        } else {
            None
        };
        adjust(&mut config);
        let (server, config) = start_node(config, clock.clone()).await;
        let mut others = Vec::new();
        if redis.is_some() {
            for _ in 1..CLUSTER_NODES {
                let mut c = config.clone();
                c.tcp_addr = SocketAddr::from(([127, 0, 0, 1], 0));
                c.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
                c.node_id = None;
                let (s, c) = start_node(c, clock.clone()).await;
                others.push((Some(s), c));
            }
        }
        TestServer {
            server: Some(server),
            config,
            others,
            redis,
            next: std::sync::atomic::AtomicUsize::new(0),
            _dir: dir,
        }
    }

    /// The cluster's Redis (`TERN_TEST_STORE=cluster` only).
    pub fn redis(&mut self) -> Option<&mut redis::TestRedis> {
        self.redis.as_mut()
    }

    /// Every node's TCP endpoint: one, or the cluster's.
    pub fn tcp_nodes(&self) -> Vec<Endpoint> {
        std::iter::once(&self.config)
            .chain(self.others.iter().map(|(_, c)| c))
            .map(|c| Endpoint::Tcp(c.tcp_addr.to_string()))
            .collect()
    }

    /// Waits until `GET path` (with admin key `key`) answers, on every node, a body `done`
    /// accepts: a setting changed through the API on one node reaches the others of a cluster
    /// within `settings_poll_ms`.
    pub async fn until_every_node(&self, key: &str, path: &str, done: impl Fn(&str) -> bool) {
        let addrs: Vec<SocketAddr> = std::iter::once(&self.config)
            .chain(self.others.iter().map(|(_, c)| c))
            .map(|c| c.http_addr)
            .collect();
        let deadline = tokio::time::Instant::now() + WAIT * 4;
        for addr in addrs {
            loop {
                let (status, _, body) = http_call(addr, "GET", path, Some(key), None).await;
                if status == 200 && done(&body) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "GET {path} on {addr} still answers {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Shuts node `i` (1 or more) of the cluster down gracefully.
    pub async fn stop_node(&mut self, i: usize) {
        assert!(i >= 1, "node 0 stops with stop()");
        if let Some(s) = self.others[i - 1].0.take() {
            s.shutdown().await;
        }
    }

    /// Restarts node `i` (0: the first) gracefully on its ports: it drains, says goodbye to
    /// its clients, and comes back.
    pub async fn restart_node(&mut self, i: usize) {
        let slot = if i == 0 {
            (&mut self.server, &self.config)
        } else {
            let (s, c) = &mut self.others[i - 1];
            (s, &*c)
        };
        if let Some(s) = slot.0.take() {
            s.shutdown().await;
        }
        *slot.0 = Some(restart_node(slot.1).await);
    }

    /// Node `i`'s HTTP address (0: the first node).
    pub fn http_addr_of(&self, i: usize) -> SocketAddr {
        if i == 0 {
            self.config.http_addr
        } else {
            self.others[i - 1].1.http_addr
        }
    }

    /// A logged-in SDK client of `user` on `device`, connected to node `i`.
    pub async fn client_on(
        &self,
        i: usize,
        user: &str,
        device: &str,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> TestClient {
        let endpoint = self.tcp_nodes()[i].clone();
        self.connect_client(endpoint, user, device, adjust).await
    }

    /// Every running node: the first, then the cluster's others.
    pub fn nodes(&self) -> impl Iterator<Item = &Server> {
        self.server.iter().chain(self.other_nodes())
    }

    /// The running nodes beyond the first (none outside cluster mode).
    pub fn other_nodes(&self) -> impl Iterator<Item = &Server> {
        self.others.iter().filter_map(|(s, _)| s.as_ref())
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server is running")
    }

    /// The configuration it runs with (ports resolved).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The TCP endpoint.
    pub fn tcp(&self) -> Endpoint {
        Endpoint::Tcp(self.config.tcp_addr.to_string())
    }

    /// The WebSocket endpoint.
    pub fn ws(&self) -> Endpoint {
        Endpoint::WebSocket(format!("ws://{}/ws", self.config.http_addr))
    }

    /// The HTTP base URL.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.config.http_addr)
    }

    /// Shuts the server (every node) down gracefully.
    pub async fn stop(&mut self) {
        for (server, _) in &mut self.others {
            if let Some(s) = server.take() {
                s.shutdown().await;
            }
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Shuts down gracefully and starts again over the same data on the same ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(restart_node(&self.config).await);
        for (server, config) in &mut self.others {
            *server = Some(restart_node(config).await);
        }
    }

    /// Registers users with the password `password-<user>`.
    pub async fn register(&self, users: &[&str]) {
        for u in users {
            tern_client::register(&self.tcp(), u, &password(u))
                .await
                .unwrap_or_else(|e| panic!("registering {u}: {e}"));
        }
    }

    /// Registers many users at once: a few connections, each with a window of requests in
    /// flight, so the server commits them in large batches.
    pub async fn register_many(&self, users: &[String]) {
        const CONNECTIONS: usize = 8;
        const WINDOW: usize = 128;
        let mut tasks = Vec::new();
        for chunk in users.chunks(users.len().div_ceil(CONNECTIONS).max(1)) {
            let chunk = chunk.to_vec();
            let endpoint = self.tcp();
            tasks.push(tokio::spawn(async move {
                let (conn, _events) =
                    tern_client::Connection::connect(&endpoint, Encoding::Protobuf, WAIT * 4)
                        .await
                        .expect("connects");
                for window in chunk.chunks(WINDOW) {
                    let pending: Vec<_> = window
                        .iter()
                        .map(|u| {
                            conn.start(pb::RegisterRequest {
                                user_id: u.clone(),
                                password: password(u),
                            })
                        })
                        .collect::<Result<_, _>>()
                        .expect("requests queue");
                    for p in pending {
                        p.await.expect("registers");
                    }
                }
                conn.close();
            }));
        }
        for t in tasks {
            t.await.expect("registration task");
        }
    }

    /// A logged-in SDK client of `user` on `device`, with its event stream.
    pub async fn client(&self, user: &str, device: &str) -> TestClient {
        self.client_with(user, device, |_| {}).await
    }

    /// [`TestServer::client`] with the client configuration changed by `adjust`.
    pub async fn client_with(
        &self,
        user: &str,
        device: &str,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> TestClient {
        // Spread over the nodes, so that a user's devices and a conversation's users meet on
        // different nodes.
        let nodes = self.tcp_nodes();
        let at = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % nodes.len();
        self.connect_client(nodes[at].clone(), user, device, adjust)
            .await
    }

    async fn connect_client(
        &self,
        endpoint: Endpoint,
        user: &str,
        device: &str,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> TestClient {
        let mut config = ClientConfig::new(endpoint, user, &password(user), device);
        config.reconnect.initial_backoff = Duration::from_millis(50);
        config.reconnect.max_backoff = Duration::from_millis(500);
        adjust(&mut config);
        let (client, events) = Client::connect(config)
            .await
            .unwrap_or_else(|e| panic!("{user}/{device} login: {e}"));
        TestClient { client, events }
    }

    /// The first admin key, made where the store is (the embedded store wants the server
    /// stopped, so the server restarts around it).
    pub async fn first_admin_key(&mut self) -> String {
        self.stop().await;
        let (keys, store) = tern_server::open_admin_keys(self.config())
            .await
            .expect("the store opens");
        let (_, key) = keys.create("first").await.expect("a key is made");
        store.close().await;
        self.restart().await;
        key
    }

    /// A raw frame connection over TCP.
    pub async fn raw(&self) -> RawClient {
        RawClient::connect(self.config.tcp_addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A server not stopped by the test is dropped with the runtime; nothing to flush.
        self.server.take();
        self.others.clear();
    }
}

/// Starts a node; returns it with its configuration, ports resolved: restarts reuse the ports
/// first bound, so reconnecting clients find the node again.
async fn start_node(mut config: Config, clock: Arc<dyn tern_server::Clock>) -> (Server, Config) {
    let server = Server::start_with_clock(config.clone(), clock)
        .await
        .expect("server starts");
    config.tcp_addr = server.tcp_addr();
    config.http_addr = server.http_addr();
    (server, config)
}

/// Starts a node again on its ports (retrying while the old sockets linger).
async fn restart_node(config: &Config) -> Server {
    let mut attempts = 0;
    loop {
        match Server::start(config.clone()).await {
            Ok(server) => return server,
            Err(e) if attempts < 50 => {
                attempts += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart failed: {e}"),
        }
    }
}

/// `GET path` on the HTTP listener at `addr`: the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP listener");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write the request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read the response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// One HTTP/1.1 request with an optional bearer key and JSON body: the status, the raw head
/// and the body.
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP listener");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: tern\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A body the server refuses early may not be read whole: the answer matters, not the write.
    let _ = s.write_all(body.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), rest.to_owned())
}

/// Whether a request carries a valid Standard Webhooks signature under `key`: one of the
/// space-separated `signatures` is `v1,` and the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`,
/// and the timestamp is within five minutes of now. Written apart from the server's signing
/// code, so that a test checks one against the other.
pub fn signature_valid(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &str,
) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() < 300);
    fresh && signatures.split(' ').any(|s| s == expected)
}

/// The password the kit registers `user` with.
pub fn password(user: &str) -> String {
    format!("password-{user}")
}

/// An SDK client and its events.
#[derive(Debug)]
pub struct TestClient {
    /// The client.
    pub client: Client,
    /// Its event stream.
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl TestClient {
    /// Waits for the next event.
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event within the wait")
            .expect("the event stream is open")
    }

    /// Waits for the first event that `pick` maps to something, skipping the others.
    pub async fn next_where<T>(&mut self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the awaited event within the wait")
                .expect("the event stream is open");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    }

    /// Collects messages until `n` have arrived, skipping connection events. Returns them with
    /// their inbox seqs, in arrival order.
    pub async fn messages(&mut self, n: usize) -> Vec<(u64, pb::Message)> {
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + WAIT * 4;
        while out.len() < n {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()))
                .expect("the event stream is open");
            if let Event::Message { inbox_seq, message } = event {
                out.push((inbox_seq, message));
            }
        }
        out
    }

    /// Collects group messages (and events) until `until` accepts one, skipping other events.
    /// Returns everything collected, in arrival order.
    pub async fn group_messages_until(
        &mut self,
        mut until: impl FnMut(&pb::Message) -> bool,
    ) -> Vec<pb::Message> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT * 4;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the awaited group message did not arrive; got seqs {:?}",
                        out.iter().map(|m: &pb::Message| m.seq).collect::<Vec<_>>()
                    )
                })
                .expect("the event stream is open");
            if let Event::GroupMessage { message } = event {
                let done = until(&message);
                out.push(message);
                if done {
                    return out;
                }
            }
        }
    }

    /// Asserts that no message arrives within `quiet`.
    pub async fn expect_no_message(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) | Ok(None) => return,
                Ok(Some(Event::Message { inbox_seq, message })) => {
                    panic!("unexpected message {inbox_seq}: {message:?}")
                }
                Ok(Some(Event::GroupMessage { message })) => {
                    panic!("unexpected group message: {message:?}")
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// The text of a text message.
pub fn text_of(m: &pb::Message) -> &str {
    match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => &t.text,
        _ => "",
    }
}

/// Text content.
pub fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text { text: s.to_owned() })),
    }
}

/// A frame-level client: writes exactly the bytes a test gives it and reads frames back.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_id: u128,
}

impl RawClient {
    /// Connects to a TCP listener.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(64 << 20),
            next_id: 1,
        }
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes a request and returns its packet id.
    pub async fn send(&mut self, req: Request, encoding: Encoding) -> PacketId {
        let id = PacketId::from_u128(self.next_id);
        self.next_id += 1;
        let frame = req.to_frame(id, encoding).expect("encodable request");
        self.write(&frame.to_bytes()).await;
        id
    }

    /// The next frame, or `None` if the server closed the connection.
    pub async fn read(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Decoded::Frame(f) = self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("server frames decode")
                {
                    return Some(f);
                }
                self.buf.reserve(4096);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a frame or a close within the wait")
    }

    /// Reads frames until the response to `id`, skipping pushes.
    pub async fn response(&mut self, id: PacketId) -> Frame {
        loop {
            let f = self.read().await.expect("a response before close");
            if f.is_response() && f.packet_id == id {
                return f;
            }
        }
    }

    /// Sends a request and decodes its successful response.
    pub async fn call<R: RequestPayload + Into<Request>>(&mut self, req: R) -> R::Response {
        let id = self.send(req.into(), Encoding::Protobuf).await;
        let f = self.response(id).await;
        assert!(
            !f.is_error(),
            "request failed: {:?}",
            f.decode::<pb::Error>()
        );
        f.decode().expect("response decodes")
    }

    /// Sends a request and returns the error it must fail with.
    pub async fn call_err<R: RequestPayload + Into<Request>>(&mut self, req: R) -> pb::Error {
        let id = self.send(req.into(), Encoding::Protobuf).await;
        let f = self.response(id).await;
        assert!(f.is_error(), "request unexpectedly succeeded");
        f.decode().expect("error decodes")
    }

    /// Logs in with the kit's password for `user`.
    pub async fn login(&mut self, user: &str, device: &str) -> pb::LoginResponse {
        self.call(pb::LoginRequest {
            user_id: user.into(),
            credential: Some(pb::login_request::Credential::Password(password(user))),
            device_id: device.into(),
            platform: pb::Platform::Cli as i32,
        })
        .await
    }

    /// Waits until the server closes the connection, returning the frames it sent first.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.read().await {
            frames.push(f);
        }
        frames
    }
}

/// What a raw WebSocket client reads.
#[derive(Debug, Clone, PartialEq)]
pub enum WsRead {
    /// A binary message: one Tern frame.
    Frame(Frame),
    /// A text message (the server never sends one).
    Text(Bytes),
    /// A close frame: its code and reason.
    Close(u16, String),
    /// A ping or pong.
    Control,
}

/// A WebSocket client that writes exactly the frames (or frame headers) a test gives it, and
/// reads the server's frames back, close frames included.
#[derive(Debug)]
pub struct RawWs {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawWs {
    /// Connects to `addr` and upgrades `/ws`; `None` if the server refused the upgrade (the
    /// status line is in the error).
    pub async fn connect(addr: SocketAddr) -> Result<RawWs, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = BytesMut::new();
        let end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Ok(end + 4);
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return Err(String::from_utf8_lossy(&buf).into_owned()),
                    Ok(_) => {}
                }
            }
        })
        .await
        .map_err(|_| "no response to the upgrade".to_string())??;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head.lines().next().unwrap_or_default().to_owned());
        }
        let _ = buf.split_to(end);
        Ok(RawWs { stream, buf })
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// A masked frame's header announcing `len` payload bytes (opcode 2 binary, 1 text, 0
    /// continuation), without the payload.
    pub fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
        use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, coding::OpCode};
        let header = FrameHeader {
            is_final: fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: OpCode::from(opcode),
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
        };
        let mut out = Vec::new();
        header.format(len, &mut out).expect("formats");
        out
    }

    /// `payload` masked as [`RawWs::header`] announces, starting at payload offset `at`.
    pub fn masked(payload: &[u8], at: usize) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[(at + i) % 4])
            .collect()
    }

    /// Writes a whole masked frame.
    pub async fn write_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut bytes = Self::header(opcode, true, payload.len() as u64);
        bytes.extend(Self::masked(payload, 0));
        self.write(&bytes).await;
    }

    /// Writes a Tern frame as one binary message.
    pub async fn send(&mut self, frame: &Frame) {
        self.write_frame(2, &frame.to_bytes()).await;
    }

    /// The next thing the server sent, or `None` once it closed the connection.
    pub async fn read(&mut self) -> Option<WsRead> {
        use std::io::Cursor;
        use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, coding::OpCode};
        tokio::time::timeout(WAIT, async {
            loop {
                let mut cursor = Cursor::new(&self.buf[..]);
                if let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) {
                    let start = cursor.position() as usize;
                    if self.buf.len() >= start + len as usize {
                        let _ = self.buf.split_to(start);
                        let payload = self.buf.split_to(len as usize).freeze();
                        return Some(match header.opcode {
                            OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Binary) => {
                                WsRead::Frame(
                                    FrameDecoder::new(64 << 20)
                                        .decode_exact(payload)
                                        .expect("a Tern frame"),
                                )
                            }
                            OpCode::Data(_) => WsRead::Text(payload),
                            OpCode::Control(tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Close) => {
                                let code = payload
                                    .get(..2)
                                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                                let reason = payload
                                    .get(2..)
                                    .map(|r| String::from_utf8_lossy(r).into_owned())
                                    .unwrap_or_default();
                                WsRead::Close(code, reason)
                            }
                            OpCode::Control(_) => WsRead::Control,
                        });
                    }
                }
                self.buf.reserve(4096);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a frame or a close within the wait")
    }

    /// Everything the server sends until it closes the connection.
    pub async fn until_closed(&mut self) -> Vec<WsRead> {
        let mut all = Vec::new();
        while let Some(r) = self.read().await {
            all.push(r);
        }
        all
    }
}

/// Decodes a payload, panicking with context on failure.
pub fn decode<M: Payload>(f: &Frame) -> M {
    f.decode()
        .unwrap_or_else(|e| panic!("frame {f:?} does not decode: {e}"))
}

/// The bytes of a frame.
pub fn bytes_of(f: &Frame) -> Bytes {
    f.to_bytes()
}
