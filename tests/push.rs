//! Offline push end to end: devices register through the protocol and the HTTP API, and a
//! message reaches every registered device that is not connected through local stand-ins for
//! APNs (HTTP/2, checking the ES256 provider token), FCM (checking the service account's RS256
//! assertion at its token endpoint, then the access token), Web Push (checking the VAPID
//! signature and decrypting the payload as the browser would) and an app's gateway (checking
//! the webhook signature). Then the policy (muted, blocked, private, badges, groups), dead
//! tokens, retries, and a push that outlives a restart.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode, Version},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::{Value, json};
use tern_proto::pb;
use tern_testkit::{
    TestServer, http_call,
    process::{Serve, ServeProcess},
    signature_valid,
};
use tokio::sync::mpsc;
use web_push_native::p256;

const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "org.tern.app";
const PROJECT: &str = "tern-test";
const CLIENT_EMAIL: &str = "push@tern-test.iam.gserviceaccount.com";
const SUBJECT: &str = "mailto:ops@tern.test";
const GATEWAY_SECRET: &[u8] = b"gateway secret of the test";
const WAIT: Duration = Duration::from_secs(10);

/// A notification as a provider stand-in received and checked it.
#[derive(Debug, Clone)]
struct Got {
    /// `apns`, `fcm`, `webpush` or `webhook`.
    provider: &'static str,
    /// The device token (the endpoint's last segment for Web Push).
    token: String,
    title: String,
    body: String,
    badge: u64,
    conversation: String,
    collapse: String,
    message_id: String,
}

/// The stand-ins' keys and what they answer.
struct Farm {
    apns_public: ES256PublicKey,
    fcm_public: RS256PublicKey,
    vapid_public: ES256PublicKey,
    /// The browser's key and secret, per subscription id.
    browsers: Mutex<HashMap<String, (p256::SecretKey, [u8; 16])>>,
    /// Status codes to answer per token before answering success.
    scripted: Mutex<HashMap<String, Vec<u16>>>,
    /// Access tokens the token endpoint handed out.
    access_tokens: Mutex<Vec<String>>,
    /// The gateway holds every request unanswered (a provider that hangs).
    hang: std::sync::atomic::AtomicBool,
    /// Requests the gateway held.
    hung: std::sync::atomic::AtomicUsize,
    got: mpsc::UnboundedSender<Got>,
}

impl Farm {
    /// The next scripted status for `token`, if any.
    fn scripted(&self, token: &str) -> Option<u16> {
        let mut s = self.scripted.lock().unwrap();
        let list = s.get_mut(token)?;
        (!list.is_empty()).then(|| list.remove(0))
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("bearer ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .unwrap_or_default()
        .to_owned()
}

fn refuse(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response()
}

async fn apns(
    State(farm): State<Arc<Farm>>,
    UrlPath(token): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(version, Version::HTTP_2, "APNs is spoken in HTTP/2");
    let jwt = bearer(&headers);
    let meta = Token::decode_metadata(&jwt).expect("a JWT");
    assert_eq!(meta.algorithm(), "ES256");
    assert_eq!(meta.key_id(), Some(KEY_ID));
    let claims = farm
        .apns_public
        .verify_token::<NoCustomClaims>(&jwt, None)
        .expect("the provider token is signed with the team's key");
    assert_eq!(claims.issuer.as_deref(), Some(TEAM));
    assert!(claims.issued_at.is_some());
    assert_eq!(headers["apns-topic"], TOPIC);
    assert_eq!(headers["apns-push-type"], "alert");
    if let Some(status) = farm.scripted(&token) {
        let reason = if status == 410 {
            "Unregistered"
        } else {
            "TooManyRequests"
        };
        return refuse(status, json!({ "reason": reason }));
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let aps = &payload["aps"];
    let _ = farm.got.send(Got {
        provider: "apns",
        token,
        title: aps["alert"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body: aps["alert"]["body"].as_str().unwrap().to_owned(),
        badge: aps["badge"].as_u64().unwrap(),
        conversation: payload["tern"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        collapse: headers["apns-collapse-id"].to_str().unwrap().to_owned(),
        message_id: payload["tern"]["message_id"].as_str().unwrap().to_owned(),
    });
    StatusCode::OK.into_response()
}

async fn oauth(State(farm): State<Arc<Farm>>, body: String) -> Response {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_owned(), v.into_owned())
        })
        .collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    #[derive(Serialize, Deserialize)]
    struct Scope {
        scope: String,
    }
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[CLIENT_EMAIL])),
        ..Default::default()
    };
    let claims = farm
        .fcm_public
        .verify_token::<Scope>(&form["assertion"], Some(options))
        .expect("the assertion is signed with the service account's key");
    assert_eq!(
        claims.custom.scope,
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert!(claims.audiences.is_some());
    let access = format!("ya29.{}", rand::random::<u32>());
    farm.access_tokens.lock().unwrap().push(access.clone());
    axum::Json(json!({ "access_token": access, "expires_in": 3599, "token_type": "Bearer" }))
        .into_response()
}

async fn fcm(
    State(farm): State<Arc<Farm>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(project, PROJECT);
    let access = bearer(&headers);
    assert!(
        farm.access_tokens.lock().unwrap().contains(&access),
        "a token the token endpoint handed out"
    );
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let m = &payload["message"];
    let token = m["token"].as_str().unwrap().to_owned();
    if let Some(status) = farm.scripted(&token) {
        return refuse(
            status,
            json!({ "error": { "code": status, "status": "NOT_FOUND",
                "details": [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                              "errorCode": "UNREGISTERED" }] } }),
        );
    }
    let _ = farm.got.send(Got {
        provider: "fcm",
        token,
        title: m["notification"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body: m["notification"]["body"].as_str().unwrap().to_owned(),
        badge: m["android"]["notification"]["notification_count"]
            .as_u64()
            .unwrap(),
        conversation: m["data"]["conversation_id"].as_str().unwrap().to_owned(),
        collapse: m["android"]["collapse_key"].as_str().unwrap().to_owned(),
        message_id: m["data"]["message_id"].as_str().unwrap().to_owned(),
    });
    axum::Json(json!({ "name": format!("projects/{PROJECT}/messages/1") })).into_response()
}

async fn webpush(
    State(farm): State<Arc<Farm>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers["authorization"].to_str().unwrap();
    let rest = auth
        .strip_prefix("vapid t=")
        .expect("a VAPID authorization");
    let (jwt, k) = rest.split_once(", k=").unwrap();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k)
        .unwrap();
    assert_eq!(
        key,
        farm.vapid_public.public_key().to_bytes_uncompressed(),
        "the server's VAPID key"
    );
    let claims = farm
        .vapid_public
        .verify_token::<NoCustomClaims>(jwt, None)
        .expect("the VAPID token is signed with the server's key");
    assert_eq!(claims.subject.as_deref(), Some(SUBJECT));
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert!(headers.contains_key("ttl"));
    if let Some(status) = farm.scripted(&id) {
        return refuse(status, json!({}));
    }
    let (secret, auth_secret) = farm.browsers.lock().unwrap()[&id].clone();
    let plain = web_push_native::decrypt(
        body.to_vec(),
        &secret,
        &web_push_native::Auth::clone_from_slice(&auth_secret),
    )
    .expect("the payload decrypts with the browser's key");
    let payload: Value = serde_json::from_slice(&plain).unwrap();
    let _ = farm.got.send(Got {
        provider: "webpush",
        token: id,
        title: payload["title"].as_str().unwrap().to_owned(),
        body: payload["body"].as_str().unwrap().to_owned(),
        badge: payload["badge"].as_u64().unwrap(),
        conversation: payload["data"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        collapse: headers["topic"].to_str().unwrap().to_owned(),
        message_id: payload["data"]["message_id"].as_str().unwrap().to_owned(),
    });
    StatusCode::CREATED.into_response()
}

async fn gateway(State(farm): State<Arc<Farm>>, headers: HeaderMap, body: String) -> Response {
    let h = |n: &str| headers[n].to_str().unwrap().to_owned();
    assert!(
        signature_valid(
            GATEWAY_SECRET,
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &h("webhook-signature"),
            &body
        ),
        "signed with the gateway's secret"
    );
    if farm.hang.load(std::sync::atomic::Ordering::SeqCst) {
        // Held until the server gives up on it (or is killed): never answered.
        farm.hung.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let payload: Value = serde_json::from_str(&body).unwrap();
    let token = payload["token"].as_str().unwrap().to_owned();
    if let Some(status) = farm.scripted(&token) {
        return refuse(status, json!({}));
    }
    let _ = farm.got.send(Got {
        provider: "webhook",
        token,
        title: payload["title"].as_str().unwrap().to_owned(),
        body: payload["body"].as_str().unwrap().to_owned(),
        badge: payload["badge"].as_u64().unwrap(),
        conversation: payload["data"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        collapse: payload["collapse_key"].as_str().unwrap().to_owned(),
        message_id: payload["data"]["message_id"].as_str().unwrap().to_owned(),
    });
    StatusCode::NO_CONTENT.into_response()
}

/// The stand-ins, listening; and the configuration that points a server at them.
struct Providers {
    farm: Arc<Farm>,
    addr: SocketAddr,
    got: mpsc::UnboundedReceiver<Got>,
    _dir: tempfile::TempDir,
    configure: tern_server::PushSettings,
}

impl Providers {
    async fn start() -> Providers {
        let dir = tempfile::tempdir().unwrap();
        let apns_key = ES256KeyPair::generate();
        let fcm_key = RS256KeyPair::generate(2048).unwrap();
        let vapid_key = ES256KeyPair::generate();
        let (tx, got) = mpsc::unbounded_channel();
        let farm = Arc::new(Farm {
            apns_public: apns_key.public_key(),
            fcm_public: fcm_key.public_key(),
            vapid_public: vapid_key.public_key(),
            browsers: Mutex::new(HashMap::new()),
            scripted: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(Vec::new()),
            hang: Default::default(),
            hung: Default::default(),
            got: tx,
        });
        let app = Router::new()
            .route("/3/device/{token}", post(apns))
            .route("/oauth/token", post(oauth))
            .route("/v1/projects/{project}/messages:send", post(fcm))
            .route("/wp/{id}", post(webpush))
            .route("/gateway", post(gateway))
            .with_state(farm.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let account = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "kid-1",
            "private_key": fcm_key.to_pem().unwrap(),
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("http://{addr}/oauth/token"),
        });
        let configure = tern_server::PushSettings {
            apns: Some(tern_server::ApnsSetting {
                key_file: write("apns.p8", &apns_key.to_pem().unwrap()),
                key_id: KEY_ID.into(),
                team_id: TEAM.into(),
                topic: TOPIC.into(),
                endpoint: format!("http://{addr}"),
            }),
            fcm: Some(tern_server::FcmSetting {
                service_account_file: write("account.json", &account.to_string()),
                endpoint: format!("http://{addr}"),
            }),
            webpush: Some(tern_server::WebPushSetting {
                vapid_key_file: write("vapid.pem", &vapid_key.to_pem().unwrap()),
                subject: SUBJECT.into(),
                ttl_secs: 600,
                allow_http: true,
                allow_private_addresses: true,
            }),
            webhook: Some(tern_server::PushWebhookSetting {
                url: format!("http://{addr}/gateway"),
                secret: String::from_utf8(GATEWAY_SECRET.to_vec()).unwrap(),
            }),
            retry_base_ms: 20,
            retry_max_ms: 100,
            max_attempts: 5,
            timeout_ms: 5_000,
            ..Default::default()
        };
        Providers {
            farm,
            addr,
            got,
            _dir: dir,
            configure,
        }
    }

    /// A browser's subscription: the endpoint and its keys, base64url.
    fn subscribe(&self, id: &str) -> (String, String, String) {
        let secret = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let public = secret.public_key();
        let auth: [u8; 16] = rand::random();
        self.farm
            .browsers
            .lock()
            .unwrap()
            .insert(id.to_owned(), (secret, auth));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        (
            format!("http://{}/wp/{id}", self.addr),
            b64.encode(public.to_encoded_point(false).as_bytes()),
            b64.encode(auth),
        )
    }

    /// Makes the stand-in answer `statuses` to `token`'s next pushes, in order.
    fn script(&self, token: &str, statuses: &[u16]) {
        self.farm
            .scripted
            .lock()
            .unwrap()
            .insert(token.to_owned(), statuses.to_vec());
    }

    async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.got.recv())
            .await
            .expect("a push arrives")
            .expect("the stand-ins run")
    }

    /// The next `n` pushes, ordered by provider and token.
    async fn next_n(&mut self, n: usize) -> Vec<Got> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await);
        }
        out.sort_by(|a, b| (a.provider, &a.token).cmp(&(b.provider, &b.token)));
        out
    }

    async fn quiet(&mut self, for_: Duration) {
        if let Ok(Some(g)) = tokio::time::timeout(for_, self.got.recv()).await {
            panic!("no push was expected, got {g:?}");
        }
    }
}

async fn server_with(providers: &Providers) -> TestServer {
    let push = providers.configure.clone();
    TestServer::start_with(move |c| c.push = push).await
}

fn register(provider: &str, token: &str) -> pb::PushRegisterRequest {
    pb::PushRegisterRequest {
        provider: provider.into(),
        token: token.into(),
        ..Default::default()
    }
}

/// Registers `device` of `user` and leaves: the device is offline from then on.
async fn registered(server: &TestServer, user: &str, device: &str, req: pb::PushRegisterRequest) {
    let c = server.client(user, device).await;
    c.client.request(req).await.expect("registers");
    c.client.close_and_wait().await;
    seen(server, user, device, false).await;
}

/// Waits until every node sees `device` of `user` connected (or not): in a cluster, other
/// nodes learn of it over the bus.
async fn seen(server: &TestServer, user: &str, device: &str, online: bool) {
    let (user, device) = (
        tern_core::UserId::parse(user).unwrap(),
        tern_core::DeviceId::parse(device).unwrap(),
    );
    tokio::time::timeout(WAIT, async {
        while !server
            .nodes()
            .all(|n| n.gateway().services().core().push.is_online(&user, &device) == online)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every node sees the device come or go");
}

/// The value of the series `name` whose labels include every one of `labels`.
fn metric(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if let Some(value) = rest.strip_prefix(' ') {
            // A series without labels.
            return labels.is_empty().then(|| value.trim().parse().ok())?;
        }
        let rest = rest.strip_prefix('{')?;
        let (series, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|l| series.split(',').any(|s| s == *l))
            .then(|| value.trim().parse().ok())?
    })
}

fn write_key(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every provider gets a verified notification for an offline device; a connected device
/// gets none; the devices are listed with their registrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_notifies_offline_devices() {
    let mut p = Providers::start().await;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob"]).await;
    let (endpoint, p256dh, auth) = p.subscribe("browser-1");
    registered(&server, "bob", "iphone", register("apns", "a1b2c3")).await;
    registered(&server, "bob", "android", register("fcm", "fcm-token-1")).await;
    registered(
        &server,
        "bob",
        "browser",
        pb::PushRegisterRequest {
            provider: "webpush".into(),
            token: endpoint,
            p256dh,
            auth,
            private: false,
        },
    )
    .await;
    // The app's backend registers the last one over HTTP.
    let key = server.first_admin_key().await;
    let http = server.server().http_addr();
    let (status, _, body) = http_call(
        http,
        "PUT",
        "/v1/users/bob/devices/huawei/push",
        Some(&key),
        Some(r#"{"provider":"webhook","token":"hw-token-9"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"token_hint\":\"oken-9\""), "{body}");

    let alice = server.client("alice", "pc").await;
    alice.client.send_text("bob", "hello bob").await.unwrap();
    let got = p.next_n(4).await;
    let providers: Vec<&str> = got.iter().map(|g| g.provider).collect();
    assert_eq!(providers, ["apns", "fcm", "webhook", "webpush"]);
    let conversation = "p:alice:bob";
    for g in &got {
        assert_eq!(g.title, "alice", "{g:?}");
        assert_eq!(g.body, "hello bob", "{g:?}");
        assert_eq!(g.badge, 1, "{g:?}");
        assert_eq!(g.conversation, conversation, "{g:?}");
        assert_eq!(g.collapse.len(), 32, "one key per conversation: {g:?}");
    }
    assert!(got.windows(2).all(|w| w[0].collapse == w[1].collapse));

    // The iPhone comes online: it is sent nothing; the others get the second message with
    // the badge grown.
    let bob_phone = server.client("bob", "iphone").await;
    seen(&server, "bob", "iphone", true).await;
    alice.client.send_text("bob", "again").await.unwrap();
    let got = p.next_n(3).await;
    let providers: Vec<&str> = got.iter().map(|g| g.provider).collect();
    assert_eq!(providers, ["fcm", "webhook", "webpush"]);
    assert!(got.iter().all(|g| g.badge == 2 && g.body == "again"));
    p.quiet(Duration::from_millis(300)).await;

    let (status, _, body) = http_call(http, "GET", "/v1/users/bob/devices", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    let devices: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<(String, bool, String)> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap().to_owned(),
                d["online"].as_bool().unwrap(),
                d["push"]["provider"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("android".to_owned(), false, "fcm".to_owned()),
            ("browser".to_owned(), false, "webpush".to_owned()),
            ("huawei".to_owned(), false, "webhook".to_owned()),
            ("iphone".to_owned(), true, "apns".to_owned()),
        ]
    );
    // Browsers subscribe with the server's VAPID key.
    let (status, _, body) = http_call(http, "GET", "/v1/push/vapid", None, None).await;
    assert_eq!(status, 200, "{body}");
    let vapid: Value = serde_json::from_str(&body).unwrap();
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(p.farm.vapid_public.public_key().to_bytes_uncompressed());
    assert_eq!(vapid["public_key"], expected);

    // The counters say what was sent.
    let (_, metrics) = tern_testkit::http_get(http, "/metrics").await;
    let sent = |provider: &str| {
        metric(
            &metrics,
            "tern_push_sent_total",
            &[&format!("provider=\"{provider}\"")],
        )
    };
    assert_eq!(sent("apns"), Some(1.0), "{metrics}");
    assert_eq!(sent("fcm"), Some(2.0), "{metrics}");
    bob_phone.client.close_and_wait().await;
    server.stop().await;
}

/// Nothing for a muted conversation or a blocked sender; a private device gets no names or
/// text; a group's notification names the group and the sender; the badge counts the
/// conversations that are not muted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_who_hears_what() {
    let mut p = Providers::start().await;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob", "carol", "dave"]).await;
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;
    registered(
        &server,
        "bob",
        "tablet",
        pb::PushRegisterRequest {
            private: true,
            ..register("webhook", "bob-tablet")
        },
    )
    .await;
    let alice = server.client("alice", "pc").await;
    let carol = server.client("carol", "pc").await;
    let dave = server.client("dave", "pc").await;

    alice.client.send_text("bob", "from alice").await.unwrap();
    let got = p.next_n(2).await;
    assert_eq!(
        (
            got[0].token.as_str(),
            got[0].title.as_str(),
            got[0].body.as_str()
        ),
        ("bob-phone", "alice", "from alice")
    );
    assert_eq!(got[1].token, "bob-tablet");
    assert_eq!(got[1].title, "", "a private notification names nobody");
    assert_eq!(got[1].body, "You have a new message");

    // Bob mutes alice: her next message is counted nowhere and pushed nowhere.
    let bob = server.client("bob", "pc").await;
    bob.client
        .request(pb::ConversationUpdateRequest {
            conversation_id: "p:alice:bob".into(),
            muted: Some(true),
            pinned: None,
        })
        .await
        .unwrap();
    bob.client.block("dave").await.unwrap();
    bob.client.close_and_wait().await;
    alice.client.send_text("bob", "muted").await.unwrap();
    // Dave is blocked: his messages are refused outright in a one-to-one conversation, and in
    // a group they are stored but bob hears nothing of them.
    let group = carol
        .client
        .create_group("climbers", &["bob", "dave"])
        .await
        .unwrap();
    dave.client
        .send_group_text(group.group_id, "from dave")
        .await
        .unwrap();
    carol
        .client
        .send_group_text(group.group_id, "from carol")
        .await
        .unwrap();
    let got = p.next_n(2).await;
    assert_eq!(got[0].token, "bob-phone");
    assert_eq!(got[0].title, "climbers");
    assert_eq!(got[0].body, "carol: from carol");
    // One unread from carol and one from dave in the group (the blacklist hides nothing from
    // the count); alice's two are muted and not counted.
    assert_eq!(got[0].badge, 2, "{got:?}");
    assert_eq!(got[0].conversation, format!("g:{}", group.group_id));
    assert_eq!(got[1].token, "bob-tablet");
    assert_eq!(got[1].body, "You have a new message");
    p.quiet(Duration::from_millis(300)).await;

    // Unregistering stops them.
    let tablet = server.client("bob", "tablet").await;
    let removed = tablet
        .client
        .request(pb::PushUnregisterRequest {})
        .await
        .unwrap();
    assert!(removed.removed);
    tablet.client.close_and_wait().await;
    carol
        .client
        .send_group_text(group.group_id, "again")
        .await
        .unwrap();
    assert_eq!(p.next().await.token, "bob-phone");
    p.quiet(Duration::from_millis(300)).await;
    server.stop().await;
}

/// Tokens a provider calls dead are removed; 429 and 5xx are tried again until accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_go_and_failures_are_retried() {
    let mut p = Providers::start().await;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob"]).await;
    registered(&server, "bob", "old-iphone", register("apns", "dead01")).await;
    registered(&server, "bob", "old-android", register("fcm", "gone-token")).await;
    registered(&server, "bob", "flaky", register("webhook", "flaky-token")).await;
    p.script("dead01", &[410]);
    p.script("gone-token", &[404]);
    p.script("flaky-token", &[503, 429, 500]);
    let key = server.first_admin_key().await;
    let http = server.server().http_addr();
    let alice = server.client("alice", "pc").await;
    alice.client.send_text("bob", "anyone there").await.unwrap();
    let got = p.next().await;
    assert_eq!(
        (got.provider, got.token.as_str()),
        ("webhook", "flaky-token")
    );
    assert_eq!(got.body, "anyone there");
    p.quiet(Duration::from_millis(300)).await;
    let (status, _, body) = http_call(http, "GET", "/v1/users/bob/devices", Some(&key), None).await;
    assert_eq!(status, 200);
    let devices: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["flaky"], "dead tokens are removed: {body}");
    let (_, metrics) = tern_testkit::http_get(http, "/metrics").await;
    for (name, labels, value) in [
        (
            "tern_push_failed_total",
            vec!["provider=\"apns\"", "reason=\"dead_token\""],
            1.0,
        ),
        (
            "tern_push_failed_total",
            vec!["provider=\"fcm\"", "reason=\"dead_token\""],
            1.0,
        ),
        (
            "tern_push_failed_total",
            vec!["provider=\"webhook\"", "reason=\"retry\""],
            3.0,
        ),
        ("tern_push_sent_total", vec!["provider=\"webhook\""], 1.0),
    ] {
        assert_eq!(
            metric(&metrics, name, &labels),
            Some(value),
            "{name} {labels:?}: {metrics}"
        );
    }
    server.stop().await;
}

/// A push the provider keeps refusing stays queued across a restart and goes out once the
/// provider accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_push_outlives_a_restart() {
    let mut p = Providers::start().await;
    // Tried every 100 ms at most and never given up while the test runs.
    p.configure.max_attempts = 100_000;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob"]).await;
    registered(&server, "bob", "phone", register("webhook", "phone-token")).await;
    // Refused long enough for the server to go down with the push still queued.
    p.script("phone-token", &[503; 400]);
    let alice = server.client("alice", "pc").await;
    alice.client.send_text("bob", "kept").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.client.close_and_wait().await;
    server.stop().await;
    p.script("phone-token", &[]);
    server.restart().await;
    let got = p.next().await;
    assert_eq!(
        (got.token.as_str(), got.body.as_str()),
        ("phone-token", "kept")
    );
    server.stop().await;
}

/// A member who joined a group after a message is not notified of it, even when the message's
/// notifications are planned after the join: here they wait behind an earlier message of the
/// same conversation whose notification hangs at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_joined_after_a_message_is_not_notified_of_it() {
    let mut p = Providers::start().await;
    p.configure.timeout_ms = 1_000;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob", "eve"]).await;
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;
    registered(&server, "eve", "phone", register("webhook", "eve-phone")).await;
    let alice = server.client("alice", "pc").await;
    let group = alice.client.create_group("late", &["bob"]).await.unwrap();
    let hold = |on: bool| p.farm.hang.store(on, std::sync::atomic::Ordering::SeqCst);

    // The first message's notification hangs at the provider; the second waits behind it.
    hold(true);
    alice
        .client
        .send_group_text(group.group_id, "first")
        .await
        .unwrap();
    for _ in 0..200 {
        if p.farm.hung.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.farm.hung.load(std::sync::atomic::Ordering::SeqCst), 1);
    alice
        .client
        .send_group_text(group.group_id, "before eve")
        .await
        .unwrap();
    // Eve joins while that second message's notifications are still to be planned.
    alice
        .client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::AddMembers(pb::StringList {
                values: vec!["eve".into()],
            }),
        )
        .await
        .unwrap();
    hold(false);

    // Bob hears of both (the first once its timed-out attempt is retried); eve of neither.
    let mut bodies: Vec<(String, String)> = p
        .next_n(2)
        .await
        .into_iter()
        .map(|g| (g.token, g.body))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            ("bob-phone".to_owned(), "alice: before eve".to_owned()),
            ("bob-phone".to_owned(), "alice: first".to_owned()),
        ]
    );
    p.quiet(Duration::from_millis(500)).await;

    // What is said after she joined reaches her.
    alice
        .client
        .send_group_text(group.group_id, "welcome eve")
        .await
        .unwrap();
    let mut tokens: Vec<String> = p.next_n(2).await.into_iter().map(|g| g.token).collect();
    tokens.sort();
    assert_eq!(tokens, ["bob-phone", "eve-phone"]);
    server.stop().await;
}

/// What waited longer than `push.max_age_secs` (push off, the server down) is dropped, not
/// sent as old news: a notification still being retried when the server stopped is not sent
/// when it comes back after the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_older_than_the_limit_are_dropped() {
    let mut p = Providers::start().await;
    p.configure.max_attempts = 100_000;
    p.configure.max_age_secs = 1;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob"]).await;
    registered(&server, "bob", "phone", register("webhook", "phone-token")).await;
    p.script("phone-token", &[503; 400]);
    let alice = server.client("alice", "pc").await;
    alice.client.send_text("bob", "stale").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.client.close_and_wait().await;
    server.stop().await;
    p.script("phone-token", &[]);
    // Longer than the limit since the row was queued.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    server.restart().await;
    let http = server.server().http_addr();
    let mut expired = None;
    // A row the stop left claimed waits for its lease to end first.
    for _ in 0..400 {
        let (_, metrics) = tern_testkit::http_get(http, "/metrics").await;
        expired = metric(&metrics, "tern_push_expired_total", &[]);
        if expired.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(expired, Some(1.0));
    p.quiet(Duration::from_millis(300)).await;

    // A fresh message is notified as ever.
    let alice = server.client("alice", "pc").await;
    alice.client.send_text("bob", "fresh").await.unwrap();
    let got = p.next().await;
    assert_eq!(
        (got.token.as_str(), got.body.as_str()),
        ("phone-token", "fresh")
    );
    server.stop().await;
}

/// Registrations are checked: a provider this server does not send through, an unknown one,
/// a token not of the provider's form, Web Push without its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused() {
    let p = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Only the gateway and APNs here.
    let mut push = p.configure.clone();
    push.fcm = None;
    push.webpush = None;
    let apns_key = ES256KeyPair::generate();
    push.apns.as_mut().unwrap().key_file =
        write_key(dir.path(), "k.p8", &apns_key.to_pem().unwrap());
    let mut server = TestServer::start_with(move |c| c.push = push).await;
    server.register(&["bob"]).await;
    let bob = server.client("bob", "phone").await;
    for (req, why) in [
        (register("fcm", "t"), "not configured"),
        (register("carrier-pigeon", "t"), "unknown provider"),
        (register("apns", "not-hex!"), "not hex"),
        (register("webhook", ""), "empty token"),
        (register("apns", &"a".repeat(3000)), "too long"),
    ] {
        let err = bob.client.request(req).await.expect_err(why);
        assert_eq!(
            err.code(),
            Some(tern_proto::ErrorCode::InvalidArgument),
            "{why}"
        );
    }
    let key = server.first_admin_key().await;
    let http = server.server().http_addr();
    let (status, _, body) = http_call(
        http,
        "PUT",
        "/v1/users/bob/devices/browser/push",
        Some(&key),
        Some(r#"{"provider":"webpush","token":"https://push.example/x"}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = http_call(
        http,
        "PUT",
        "/v1/users/nobody/devices/x/push",
        Some(&key),
        Some(r#"{"provider":"webhook","token":"t"}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = http_call(http, "GET", "/v1/push/vapid", None, None).await;
    assert_eq!(status, 404, "no Web Push here");
    server.stop().await;
}

/// A connected device whose app went to the background is notified as if offline, until it
/// comes back or connects again; a server told not to leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_the_background_is_notified_while_connected() {
    let mut p = Providers::start().await;
    let mut server = server_with(&p).await;
    server.register(&["alice", "bob"]).await;
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;
    let alice = server.client("alice", "pc").await;
    let phone = server.client("bob", "phone").await;
    seen(&server, "bob", "phone", true).await;
    alice.client.send_text("bob", "foreground").await.unwrap();
    p.quiet(Duration::from_millis(300)).await;

    phone.client.set_background(true).await.unwrap();
    alice.client.send_text("bob", "background").await.unwrap();
    let got = p.next().await;
    assert_eq!(
        (got.token.as_str(), got.body.as_str()),
        ("bob-phone", "background")
    );

    phone.client.set_background(false).await.unwrap();
    alice.client.send_text("bob", "back").await.unwrap();
    p.quiet(Duration::from_millis(300)).await;

    // Marked in the background, then a new connection: the new one is in the foreground.
    phone
        .client
        .request(pb::PushAppStateRequest { background: true })
        .await
        .unwrap();
    phone.client.close_and_wait().await;
    let phone = server.client("bob", "phone").await;
    seen(&server, "bob", "phone", true).await;
    alice
        .client
        .send_text("bob", "new connection")
        .await
        .unwrap();
    p.quiet(Duration::from_millis(300)).await;

    // A device without a registration has no state to keep.
    let pc = server.client("bob", "pc").await;
    let err = pc.client.set_background(true).await.unwrap_err();
    assert_eq!(err.code(), Some(tern_proto::ErrorCode::InvalidArgument));
    pc.client.close_and_wait().await;

    // The SDK says it again on the connection it makes after losing one.
    phone.client.set_background(true).await.unwrap();
    server.restart().await;
    let services = server.server().gateway().services().core().push.clone();
    let (bob, phone_id) = (
        tern_core::UserId::parse("bob").unwrap(),
        tern_core::DeviceId::parse("phone").unwrap(),
    );
    tokio::time::timeout(WAIT, async {
        loop {
            let registered = services.devices(&bob).await.unwrap();
            if services.is_online(&bob, &phone_id) && !services.reached_live(&registered[0]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the phone reconnects in the background");
    alice
        .client
        .send_text("bob", "after reconnecting")
        .await
        .unwrap();
    let got = p.next().await;
    assert_eq!(got.body, "after reconnecting");
    phone.client.close_and_wait().await;
    alice.client.close_and_wait().await;
    server.stop().await;

    // A server that does not notify background devices.
    let mut push = p.configure.clone();
    push.notify_background = false;
    let mut server = TestServer::start_with(move |c| c.push = push).await;
    server.register(&["alice", "bob"]).await;
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;
    let alice = server.client("alice", "pc").await;
    let phone = server.client("bob", "phone").await;
    seen(&server, "bob", "phone", true).await;
    phone.client.set_background(true).await.unwrap();
    alice.client.send_text("bob", "left alone").await.unwrap();
    p.quiet(Duration::from_millis(300)).await;
    server.stop().await;
}

/// A `tern serve` process over a data directory, sending pushes to the gateway stand-in.
fn spawn(dir: &Path, store: Option<&str>, gateway: &str) -> ServeProcess {
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "[push]\nretry_base_ms = 20\nretry_max_ms = 100\ntimeout_ms = 1000\n\
             max_attempts = 100000\n\
             [push.webhook]\nurl = \"{gateway}\"\nsecret = \"{}\"\n",
            String::from_utf8(GATEWAY_SECRET.to_vec()).unwrap()
        ),
    )
    .unwrap();
    Serve::new(env!("CARGO_BIN_EXE_tern"), dir)
        .store(store)
        .config(&config)
        .spawn()
}

/// A raw connection logged in as `user` on `device`.
async fn login(tcp: &str, user: &str, device: &str) -> tern_client::Connection {
    let endpoint = tern_client::Endpoint::Tcp(tcp.to_owned());
    let (conn, _events) = tern_client::Connection::connect(
        &endpoint,
        tern_client::Encoding::Protobuf,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    conn.request(pb::LoginRequest {
        user_id: user.into(),
        device_id: device.into(),
        platform: pb::Platform::Ios as i32,
        credential: Some(pb::login_request::Credential::Password(
            tern_testkit::password(user),
        )),
    })
    .await
    .unwrap();
    conn
}

/// Kills the server with SIGKILL, again and again: while a push hangs at the provider, right
/// after acks, and at a random moment while pushes go out. Every acked message's push arrives
/// in the end (a push the crash cut short may arrive twice: at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_are_pushed_across_repeated_kills() {
    let mut p = Providers::start().await;
    let gateway = format!("http://{}/gateway", p.addr);
    let dir = tempfile::tempdir().unwrap();
    let store = tern_testkit::test_database().await;
    let mut process = spawn(dir.path(), store.as_deref(), &gateway);
    let endpoint = tern_client::Endpoint::Tcp(process.tcp.clone());
    for u in ["alice", "bob"] {
        tern_client::register(&endpoint, u, &tern_testkit::password(u))
            .await
            .unwrap();
    }
    let bob = login(&process.tcp, "bob", "phone").await;
    bob.request(register("webhook", "bob-phone")).await.unwrap();
    drop(bob);
    // A fresh process: bob's phone is offline there from the start.
    process.child.kill().unwrap();
    process.child.wait().unwrap();
    process = spawn(dir.path(), store.as_deref(), &gateway);
    let mut acked: HashSet<String> = HashSet::new();
    let mut got: HashSet<String> = HashSet::new();
    for round in 0..4 {
        p.farm
            .hang
            .store(round == 0, std::sync::atomic::Ordering::SeqCst);
        let alice = login(&process.tcp, "alice", "pc").await;
        for i in 0..10 {
            let ack = alice
                .request(pb::SendRequest {
                    client_msg_id: format!("r{round}-{i}"),
                    target: Some(pb::send_request::Target::ToUser("bob".into())),
                    content: Some(tern_testkit::text(&format!("r{round}-{i}"))),
                })
                .await
                .unwrap();
            acked.insert(ack.message_id.to_string());
        }
        match round {
            // A push is in flight, unanswered.
            0 => {
                let deadline = tokio::time::Instant::now() + WAIT;
                while p.farm.hung.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    assert!(tokio::time::Instant::now() < deadline, "a push starts");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            // Right after the acks.
            1 => {}
            // At a random moment while pushes go out.
            _ => tokio::time::sleep(Duration::from_millis(rand::random_range(0..60))).await,
        }
        drop(alice);
        process.child.kill().unwrap();
        process.child.wait().unwrap();
        p.farm
            .hang
            .store(false, std::sync::atomic::Ordering::SeqCst);
        while let Ok(g) = p.got.try_recv() {
            got.insert(g.message_id);
        }
        process = spawn(dir.path(), store.as_deref(), &gateway);
    }
    // On PostgreSQL a killed process's leases run out after the 1 s timeout thrice and 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !acked.is_subset(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, p.got.recv()).await {
            Ok(Some(g)) => {
                got.insert(g.message_id);
            }
            _ => panic!(
                "acked messages never pushed: {:?}",
                acked.difference(&got).collect::<Vec<_>>()
            ),
        }
    }
    drop(process);
}

/// Web Push endpoints are `https://` unless the server allows plain ones; a device that logs
/// out, has its tokens revoked, or whose account is disabled is registered no longer; a token
/// registered by another user's device moves to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_end_with_the_session_and_endpoints_are_https() {
    let p = Providers::start().await;
    let mut push = p.configure.clone();
    push.webpush.as_mut().unwrap().allow_http = false;
    let mut server = TestServer::start_with(move |c| c.push = push).await;
    server.register(&["bob", "carol"]).await;
    let key = server.first_admin_key().await;
    let http = server.server().http_addr();
    let (endpoint, p256dh, auth) = p.subscribe("b1");
    let web = |token: String| pb::PushRegisterRequest {
        provider: "webpush".into(),
        token,
        p256dh: p256dh.clone(),
        auth: auth.clone(),
        private: false,
    };
    let browser = server.client("bob", "browser").await;
    let err = browser
        .client
        .request(web(endpoint.clone()))
        .await
        .expect_err("plain http");
    assert_eq!(err.code(), Some(tern_proto::ErrorCode::InvalidArgument));
    browser
        .client
        .request(web("https://push.example/send/b1".into()))
        .await
        .unwrap();

    let devices = |user: &'static str| {
        let key = key.clone();
        async move {
            let (status, _, body) = http_call(
                http,
                "GET",
                &format!("/v1/users/{user}/devices"),
                Some(&key),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d.get("push").is_some())
                .map(|d| d["device_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // A user's token registers its own device only.
    let (status, _, body) = http_call(
        http,
        "POST",
        "/v1/users/bob/tokens",
        Some(&key),
        Some(r#"{"device_id":"web","platform":"web"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap();
    let gateway = Some(r#"{"provider":"webhook","token":"bob-web"}"#);
    for (path, want) in [
        ("/v1/users/bob/devices/web/push", 200),
        ("/v1/users/bob/devices/phone/push", 403),
        ("/v1/users/carol/devices/web/push", 403),
    ] {
        let (status, _, body) = http_call(http, "PUT", path, Some(token), gateway).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    // It lists its own user's devices, and nobody else's.
    for (path, want) in [
        ("/v1/users/bob/devices", 200),
        ("/v1/users/carol/devices", 403),
    ] {
        let (status, _, body) = http_call(http, "GET", path, Some(token), None).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, _, _) = http_call(
        http,
        "DELETE",
        "/v1/users/bob/devices/web/push",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // LOGOUT removes the device's registration.
    browser.client.logout().await.unwrap();
    assert!(devices("bob").await.is_empty());

    // Revoking a device's tokens, or all of them, or disabling the account, does too.
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;
    registered(&server, "bob", "tablet", register("webhook", "bob-tablet")).await;
    registered(&server, "bob", "pc", register("webhook", "bob-pc")).await;
    assert_eq!(devices("bob").await, ["pc", "phone", "tablet"]);
    let (status, _, _) = http_call(
        http,
        "DELETE",
        "/v1/users/bob/tokens/phone",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(devices("bob").await, ["pc", "tablet"]);
    let (status, _, _) = http_call(http, "DELETE", "/v1/users/bob/tokens", Some(&key), None).await;
    assert_eq!(status, 200);
    assert!(devices("bob").await.is_empty());
    registered(&server, "bob", "phone", register("webhook", "bob-phone")).await;

    // The phone changes hands: carol registers its token, and bob's registration goes.
    registered(&server, "carol", "phone", register("webhook", "bob-phone")).await;
    assert!(devices("bob").await.is_empty());
    assert_eq!(devices("carol").await, ["phone"]);
    let (status, _, body) =
        http_call(http, "POST", "/v1/users/carol/disable", Some(&key), None).await;
    assert_eq!(status, 204, "{body}");
    assert!(devices("carol").await.is_empty());
    server.stop().await;
}
