//! The HTTP API end to end: a real server, a real HTTP client over TCP, admin keys made where
//! the store is; every refusal in the one error shape with its status and stable code.

use tern_testkit::{TestServer, http_call as call};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_through_the_api_with_every_refusal_in_one_shape() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;

    // No key, a wrong key, a user's login token: 401 with AUTH_FAILED.
    server.register(&["alice"]).await;
    let mut raw = server.raw().await;
    let token = raw.login("alice", "phone").await.token;
    for k in [None, Some("tern_00000000_wrong"), Some(token.as_str())] {
        let (status, head, body) = call(http, "GET", "/v1/admin/keys", k, None).await;
        assert_eq!(status, 401, "{k:?}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        let e = json(&body);
        assert_eq!(
            (e["code"].as_u64(), e["name"].as_str()),
            (Some(2001), Some("AUTH_FAILED"))
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let (status, _, body) = call(http, "GET", "/v1/admin/keys", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["name"], "first");
    assert!(!body.contains(&key), "a list never shows a key");

    let (status, _, body) = call(
        http,
        "POST",
        "/v1/admin/keys",
        Some(&key),
        Some(r#"{"name":"second"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let made = json(&body);
    let second = made["key"].as_str().unwrap().to_owned();
    let second_id = made["id"].as_str().unwrap().to_owned();
    let (status, _, _) = call(http, "GET", "/v1/admin/keys", Some(&second), None).await;
    assert_eq!(status, 200, "the new key works at once");

    for bad in [r#"{"name":"   "}"#, r#"{"name":"#, r#"{"nom":"x"}"#] {
        let (status, _, body) = call(http, "POST", "/v1/admin/keys", Some(&key), Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(json(&body)["name"], "INVALID_ARGUMENT");
    }
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(300 * 1024));
    let (status, _, _) = call(http, "POST", "/v1/admin/keys", Some(&key), Some(&huge)).await;
    assert_eq!(status, 413, "a body over the limit");

    let path = format!("/v1/admin/keys/{second_id}");
    let (status, _, body) = call(http, "DELETE", &path, Some(&key), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call(http, "GET", "/v1/admin/keys", Some(&second), None).await;
    assert_eq!(status, 401, "a revoked key authenticates nothing");
    let (status, _, body) = call(http, "DELETE", &path, Some(&key), None).await;
    assert_eq!(status, 400, "{body}");
    let (_, _, body) = call(http, "GET", "/v1/admin/keys", Some(&key), None).await;
    let list = json(&body);
    assert!(list["keys"][1]["revoked_ms"].as_i64().is_some(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_api() {
    let server = TestServer::start().await;
    let (status, _, body) = call(
        server.config().http_addr,
        "GET",
        "/v1/openapi.json",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let doc = json(&body);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/admin/keys",
        "/v1/admin/keys/{id}",
        "/v1/users",
        "/v1/users/{user_id}/tokens",
        "/v1/messages",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing: {body}");
    }
    assert!(doc["paths"]["/v1/admin/keys"]["post"]["requestBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["admin_key"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Every reference resolves: a tool reading the document skips what it cannot find.
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    // Every path parameter is in its path's template, and every template slot is a parameter.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                let slot = format!("{{{name}}}");
                assert_eq!(
                    p["in"] == "path",
                    path.contains(&slot),
                    "{method} {path}: parameter {name} is in {}",
                    p["in"]
                );
            }
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
}

/// The app-server login flow: the backend makes users (some without a password) and hands
/// their devices tokens; a device logs in with its token over the binary protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_makes_users_and_hands_their_devices_tokens() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;

    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users",
        Some(&key),
        Some(r#"{"user_id":"carol"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["user_id"], "carol");
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users",
        Some(&key),
        Some(r#"{"user_id":"carol"}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["name"], "USER_EXISTS");

    let batch = r#"{"users":[{"user_id":"dave","password":"dave-secret-1"},{"user_id":"bad id"},{"user_id":"erin","password":"short"}]}"#;
    let (status, _, body) = call(http, "POST", "/v1/users", Some(&key), Some(batch)).await;
    assert_eq!(status, 200, "{body}");
    let outcomes = json(&body);
    let users = outcomes["users"].as_array().unwrap();
    assert_eq!(users[0]["created"], true);
    assert_eq!(users[1]["error"]["name"], "INVALID_USER_ID");
    assert_eq!(users[2]["error"]["name"], "INVALID_PASSWORD");

    // Dave, made with a password, logs in with it.
    let mut raw = server.raw().await;
    let login = raw
        .call(tern_proto::pb::LoginRequest {
            user_id: "dave".into(),
            credential: Some(tern_proto::pb::login_request::Credential::Password(
                "dave-secret-1".into(),
            )),
            device_id: "phone".into(),
            platform: tern_proto::pb::Platform::Ios as i32,
        })
        .await;
    assert!(!login.token.is_empty());

    // Carol has no password: only a token her backend asks for lets her in.
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/carol/tokens",
        Some(&key),
        Some(r#"{"device_id":"web-1","platform":"web"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let issued = json(&body);
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(issued["expires_at_ms"].as_i64().unwrap() > 0);
    let mut device = server.raw().await;
    let login = device
        .call(tern_proto::pb::LoginRequest {
            user_id: "carol".into(),
            credential: Some(tern_proto::pb::login_request::Credential::Token(token)),
            device_id: "web-1".into(),
            platform: tern_proto::pb::Platform::Web as i32,
        })
        .await;
    assert!(!login.token.is_empty(), "logged in with the issued token");
    let mut guess = server.raw().await;
    let refused = guess
        .call_err(tern_proto::pb::LoginRequest {
            user_id: "carol".into(),
            credential: Some(tern_proto::pb::login_request::Credential::Password(
                "!no-password".into(),
            )),
            device_id: "x".into(),
            platform: 0,
        })
        .await;
    assert_eq!(refused.code, tern_proto::ErrorCode::AuthFailed as u32);

    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/nobody/tokens",
        Some(&key),
        Some(r#"{"device_id":"d"}"#),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["name"], "UNKNOWN_USER");
    let (status, _, _) = call(
        http,
        "POST",
        "/v1/users/carol/tokens",
        None,
        Some(r#"{"device_id":"d"}"#),
    )
    .await;
    assert_eq!(status, 401);
}

/// A backend sends as one of its users: stored, acked and delivered like a send from a device,
/// a retry stores nothing, and the same rules (the content filter among them) apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_sends_as_a_user_and_a_retry_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "spam\n").unwrap();
    let mut server = TestServer::start_with(|c| c.filter_words_file = Some(words)).await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob"]).await;
    let mut bob = server.client_on(0, "bob", "phone", |_| {}).await;
    let http = server.config().http_addr;
    let send = |cmid: &str, to: &str, text: &str| {
        format!(
            r#"{{"sender":"alice","to_user":"{to}","client_msg_id":"{cmid}","content":{{"text":{{"text":"{text}"}}}}}}"#
        )
    };

    let (status, _, body) = call(
        http,
        "POST",
        "/v1/messages",
        Some(&key),
        Some(&send("order-1", "bob", "your order shipped")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sent = json(&body);
    assert_eq!(sent["conversation_id"], "p:alice:bob");
    assert_eq!(sent["duplicate"], false);
    let got = bob.messages(1).await;
    assert_eq!(Some(got[0].1.message_id), sent["message_id"].as_u64());
    assert_eq!(tern_testkit::text_of(&got[0].1), "your order shipped");

    let (status, _, body) = call(
        http,
        "POST",
        "/v1/messages",
        Some(&key),
        Some(&send("order-1", "bob", "your order shipped")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let again = json(&body);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], sent["message_id"]);
    bob.expect_no_message(std::time::Duration::from_millis(200))
        .await;

    let refusals = [
        (send("order-1", "bob", "something else"), 409, "CLIENT_MSG_ID_REUSED"),
        (send("x-1", "nobody", "hi"), 404, "UNKNOWN_USER"),
        (send("x-2", "bob", "buy SPAM"), 422, "CONTENT_REJECTED"),
        (send("x-3", "bob", ""), 400, "INVALID_CONTENT"),
        (
            r#"{"sender":"alice","to_user":"bob","group_id":1,"client_msg_id":"x-4","content":{"text":{"text":"hi"}}}"#.to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            r#"{"sender":"alice","client_msg_id":"x-5","content":{"text":{"text":"hi"}}}"#.to_owned(),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (body, want, name) in refusals {
        let (status, _, answer) = call(http, "POST", "/v1/messages", Some(&key), Some(&body)).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert_eq!(json(&answer)["name"], name, "{body}");
    }
}

/// Each key is held to its own rate: past it, 429 with `Retry-After`; another key is not held
/// back; after the wait the key works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_is_held_to_its_own_rate() {
    let mut server = TestServer::start_with(|c| c.api_requests_per_second = 2).await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/admin/keys",
        Some(&key),
        Some(r#"{"name":"other"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let other = json(&body)["key"].as_str().unwrap().to_owned();

    let mut limited = None;
    for _ in 0..5 {
        let (status, head, body) = call(http, "GET", "/v1/admin/keys", Some(&key), None).await;
        if status == 429 {
            limited = Some((head, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (head, body) = limited.expect("the key was held to its rate");
    assert_eq!(json(&body)["name"], "RATE_LIMITED");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let (status, _, _) = call(http, "GET", "/v1/admin/keys", Some(&other), None).await;
    assert_eq!(status, 200, "another key has its own allowance");

    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, _, body) = call(http, "GET", "/v1/admin/keys", Some(&key), None).await;
    assert_eq!(status, 200, "after the wait: {body}");
}

/// Every endpoint refuses a caller without a live admin key, before reading its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_a_caller_without_a_key() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    let endpoints = [
        ("GET", "/v1/admin/keys", None),
        ("POST", "/v1/admin/keys", Some(r#"{"name":"x"}"#)),
        ("DELETE", "/v1/admin/keys/whatever", None),
        ("POST", "/v1/users", Some(r#"{"user_id":"mallory"}"#)),
        (
            "POST",
            "/v1/users/mallory/tokens",
            Some(r#"{"device_id":"d"}"#),
        ),
        (
            "POST",
            "/v1/messages",
            Some(
                r#"{"sender":"a","to_user":"b","client_msg_id":"c","content":{"text":{"text":"hi"}}}"#,
            ),
        ),
        ("GET", "/v1/users/alice", None),
        ("PATCH", "/v1/users/alice", Some(r#"{"nickname":"x"}"#)),
        ("POST", "/v1/users/alice/disable", None),
        ("POST", "/v1/users/alice/enable", None),
        ("DELETE", "/v1/users/alice/tokens", None),
        ("DELETE", "/v1/users/alice/tokens/phone", None),
        (
            "GET",
            "/v1/users/alice/conversations/p:alice:bob/messages",
            None,
        ),
        (
            "POST",
            "/v1/messages/1/recall",
            Some(r#"{"user_id":"alice"}"#),
        ),
        ("GET", "/v1/presence?user_ids=alice", None),
        ("GET", "/v1/users/alice/conversations", None),
        ("GET", "/v1/users/alice/friends", None),
        (
            "POST",
            "/v1/users/alice/friends",
            Some(r#"{"friend_id":"bob"}"#),
        ),
        ("DELETE", "/v1/users/alice/friends/bob", None),
        ("GET", "/v1/users/alice/blocked", None),
        ("PUT", "/v1/users/alice/blocked/bob", None),
        ("DELETE", "/v1/users/alice/blocked/bob", None),
        (
            "POST",
            "/v1/groups",
            Some(r#"{"owner":"alice","name":"g"}"#),
        ),
        ("GET", "/v1/groups/1", None),
        ("PATCH", "/v1/groups/1", Some(r#"{"name":"g"}"#)),
        ("POST", "/v1/groups/1/dissolve", None),
        ("GET", "/v1/groups/1/members", None),
        (
            "POST",
            "/v1/groups/1/members",
            Some(r#"{"user_ids":["bob"]}"#),
        ),
        ("DELETE", "/v1/groups/1/members/bob", None),
        (
            "PUT",
            "/v1/groups/1/members/bob/role",
            Some(r#"{"role":"admin"}"#),
        ),
        (
            "PUT",
            "/v1/groups/1/members/bob/mute",
            Some(r#"{"until_ms":0}"#),
        ),
        ("GET", "/v1/users/alice/groups", None),
        ("GET", "/v1/users/alice/search?q=hello", None),
        ("GET", "/v1/search?q=hello", None),
        ("GET", "/v1/webhooks", None),
        (
            "PUT",
            "/v1/webhooks/x",
            Some(r#"{"url":"http://127.0.0.1:9/","events":["*"]}"#),
        ),
        ("DELETE", "/v1/webhooks/x", None),
        ("GET", "/v1/filter", None),
        (
            "PUT",
            "/v1/filter",
            Some(r#"{"action":"mask","words":["x"]}"#),
        ),
        ("DELETE", "/v1/filter", None),
        ("GET", "/v1/observers", None),
        ("PUT", "/v1/observers/bob", None),
        ("DELETE", "/v1/observers/bob", None),
        ("GET", "/v1/webhooks/dead-letters", None),
        ("POST", "/v1/webhooks/dead-letters/1/replay", None),
    ];
    let revoked = {
        let (_, _, body) = call(
            http,
            "POST",
            "/v1/admin/keys",
            Some(&key),
            Some(r#"{"name":"gone"}"#),
        )
        .await;
        let made = json(&body);
        let id = made["id"].as_str().unwrap().to_owned();
        call(
            http,
            "DELETE",
            &format!("/v1/admin/keys/{id}"),
            Some(&key),
            None,
        )
        .await;
        made["key"].as_str().unwrap().to_owned()
    };
    for (method, path, body) in endpoints {
        for caller in [None, Some("not-a-key"), Some(revoked.as_str())] {
            let (status, _, answer) = call(http, method, path, caller, body).await;
            assert_eq!(status, 401, "{method} {path} as {caller:?}: {answer}");
            assert_eq!(json(&answer)["name"], "AUTH_FAILED");
        }
    }
    // Nothing was done on their behalf.
    let (_, _, body) = call(http, "GET", "/v1/admin/keys", Some(&key), None).await;
    assert_eq!(json(&body)["keys"].as_array().unwrap().len(), 2);
}

/// Paths and methods nobody serves answer in the API's one error shape, with 404 and 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_answer_in_the_error_shape() {
    let server = TestServer::start().await;
    let http = server.config().http_addr;
    let (status, head, body) = call(http, "POST", "/v1/nothing/here", None, Some("{}")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(json(&body)["name"], "INVALID_ARGUMENT");
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing/here")
    );
    let (status, _, body) = call(http, "PUT", "/v1/messages", None, Some("{}")).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(json(&body)["name"], "INVALID_ARGUMENT");
}

fn login(
    user: &str,
    credential: tern_proto::pb::login_request::Credential,
    device: &str,
) -> tern_proto::pb::LoginRequest {
    tern_proto::pb::LoginRequest {
        user_id: user.into(),
        credential: Some(credential),
        device_id: device.into(),
        platform: tern_proto::pb::Platform::Web as i32,
    }
}

fn password_of(user: &str) -> tern_proto::pb::login_request::Credential {
    tern_proto::pb::login_request::Credential::Password(tern_testkit::password(user))
}

/// An account is read, its profile changed, disabled (every device kicked, logins refused),
/// enabled again, and its devices logged out one or all at once, on whichever node they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_read_changed_disabled_and_logged_out() {
    use tern_client::Event;
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob"]).await;

    let (status, _, body) = call(http, "GET", "/v1/users/alice", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    let alice = json(&body);
    assert_eq!(
        (alice["has_password"].as_bool(), alice["disabled"].as_bool()),
        (Some(true), Some(false))
    );
    let (status, _, body) = call(http, "GET", "/v1/users/nobody", Some(&key), None).await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (404, Some("UNKNOWN_USER"))
    );
    let (status, _, body) = call(
        http,
        "PATCH",
        "/v1/users/alice",
        Some(&key),
        Some(r#"{"nickname":"Al","signature":"here"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["profile"]["nickname"], "Al");
    assert_eq!(json(&body)["profile"]["signature"], "here");
    let (status, _, _) = call(
        http,
        "PATCH",
        "/v1/users/nobody",
        Some(&key),
        Some(r#"{"nickname":"x"}"#),
    )
    .await;
    assert_eq!(status, 404);

    // Disabled: both devices are kicked, wherever they are connected, and stay out.
    let mut phone = server.client("alice", "phone").await;
    let mut desk = server
        .client_with("alice", "desk", |c| {
            c.platform = tern_proto::pb::Platform::Desktop
        })
        .await;
    let (status, _, body) = call(http, "POST", "/v1/users/alice/disable", Some(&key), None).await;
    assert_eq!(status, 204, "{body}");
    for device in [&mut phone, &mut desk] {
        let kick = device
            .next_where(|e| match e {
                Event::Kicked(k) => Some(k),
                _ => None,
            })
            .await;
        assert_eq!(kick.reason, tern_proto::pb::KickReason::Admin as i32);
    }
    let mut raw = server.raw().await;
    let refused = raw
        .call_err(login("alice", password_of("alice"), "phone"))
        .await;
    assert_eq!(
        (refused.code, refused.name.as_str()),
        (2009, "USER_DISABLED")
    );
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/alice/tokens",
        Some(&key),
        Some(r#"{"device_id":"tab"}"#),
    )
    .await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (403, Some("USER_DISABLED"))
    );
    let (_, _, body) = call(http, "GET", "/v1/users/alice", Some(&key), None).await;
    assert_eq!(json(&body)["disabled"], true);
    assert!(json(&body)["disabled_ms"].as_i64().unwrap() > 0);

    // Enabled: logins work again.
    let (status, _, _) = call(http, "POST", "/v1/users/alice/enable", Some(&key), None).await;
    assert_eq!(status, 204);
    let mut raw = server.raw().await;
    raw.call(login("alice", password_of("alice"), "phone"))
        .await;
    drop(raw);

    // One device logged out: its token stops working and its connection is kicked.
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/alice/tokens",
        Some(&key),
        Some(r#"{"device_id":"tab"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = json(&body)["token"].as_str().unwrap().to_owned();
    let with_token = || tern_proto::pb::login_request::Credential::Token(token.clone());
    let mut tab = server.raw().await;
    tab.call(login("alice", with_token(), "tab")).await;
    let mut desk = server
        .client_with("alice", "desk", |c| {
            c.platform = tern_proto::pb::Platform::Desktop
        })
        .await;
    let (status, _, body) = call(
        http,
        "DELETE",
        "/v1/users/alice/tokens/tab",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revoked"], 1);
    let frames = tab.until_closed().await;
    assert!(
        frames
            .iter()
            .any(|f| f.kind == tern_proto::MessageType::Kick.as_u16()),
        "the tab was kicked: {frames:?}"
    );
    let mut again = server.raw().await;
    let refused = again.call_err(login("alice", with_token(), "tab")).await;
    assert_eq!(refused.name, "TOKEN_INVALID");

    // Every device logged out: the desk, which logged in with its password, is kicked too.
    let (status, _, body) = call(http, "DELETE", "/v1/users/alice/tokens", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["revoked"].as_u64().unwrap() >= 1);
    let kick = desk
        .next_where(|e| match e {
            Event::Kicked(k) => Some(k),
            _ => None,
        })
        .await;
    assert_eq!(kick.reason, tern_proto::pb::KickReason::LoggedOut as i32);
    let (status, _, _) = call(http, "DELETE", "/v1/users/nobody/tokens", Some(&key), None).await;
    assert_eq!(status, 404);
}

/// The system user sends, one call reaches many users (each answered, a retry storing
/// nothing), a user's view of a conversation is read page by page, and a message is recalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_messages_sends_to_many_history_and_recall() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob", "carol"]).await;
    let mut bob = server.client("bob", "phone").await;

    // No sender: the system user, an account made at start.
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/messages",
        Some(&key),
        Some(
            r#"{"to_user":"bob","client_msg_id":"welcome","content":{"text":{"text":"welcome"}}}"#,
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let got = bob.messages(1).await;
    assert_eq!(got[0].1.sender, "system");
    assert_eq!(tern_testkit::text_of(&got[0].1), "welcome");

    // Many users in one call, each with its own outcome.
    let many = r#"{"sender":"alice","to_users":["bob","carol","nobody"],"client_msg_id":"promo-1","content":{"text":{"text":"sale"}}}"#;
    let (status, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(many)).await;
    assert_eq!(status, 200, "{body}");
    let first = json(&body);
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["to_user"], "bob");
    assert_eq!(results[0]["message"]["duplicate"], false);
    assert_eq!(results[1]["message"]["conversation_id"], "p:alice:carol");
    assert_eq!(results[2]["error"]["name"], "UNKNOWN_USER");
    // The same call again stores nothing new.
    let (_, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(many)).await;
    let again = json(&body);
    for i in 0..2 {
        assert_eq!(again["results"][i]["message"]["duplicate"], true);
        assert_eq!(
            again["results"][i]["message"]["message_id"],
            first["results"][i]["message"]["message_id"]
        );
    }
    let got = bob.messages(1).await;
    assert_eq!(tern_testkit::text_of(&got[0].1), "sale");
    bob.expect_no_message(std::time::Duration::from_millis(200))
        .await;
    for bad in [
        r#"{"sender":"alice","to_users":[],"client_msg_id":"x","content":{"text":{"text":"x"}}}"#,
        r#"{"sender":"alice","to_users":["bob","bob"],"client_msg_id":"x","content":{"text":{"text":"x"}}}"#,
        r#"{"sender":"alice","to_user":"bob","to_users":["carol"],"client_msg_id":"x","content":{"text":{"text":"x"}}}"#,
    ] {
        let (status, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(bad)).await;
        assert_eq!(
            (status, json(&body)["name"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{bad}"
        );
    }

    // History as alice sees it, one page at a time.
    for i in 0..3 {
        let body = format!(
            r#"{{"sender":"alice","to_user":"bob","client_msg_id":"h{i}","content":{{"text":{{"text":"h{i}"}}}}}}"#
        );
        let (status, _, _) = call(http, "POST", "/v1/messages", Some(&key), Some(&body)).await;
        assert_eq!(status, 201);
    }
    let path = "/v1/users/alice/conversations/p:alice:bob/messages?limit=2";
    let (status, _, body) = call(http, "GET", path, Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["h1", "h2"]);
    assert_eq!(page["has_more"], true);
    let (_, _, body) = call(
        http,
        "GET",
        "/v1/users/alice/conversations/p:alice:bob/messages?anchor_seq=0&direction=forward&limit=10",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(json(&body)["messages"].as_array().unwrap().len(), 4);
    let (status, _, body) = call(
        http,
        "GET",
        "/v1/users/carol/conversations/p:alice:bob/messages",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (404, Some("NOT_A_PARTICIPANT"))
    );

    // Recall as alice; bob may not recall alice's message.
    let last = page["messages"][1]["message_id"].as_u64().unwrap();
    let recall = format!("/v1/messages/{last}/recall");
    let (status, _, body) = call(
        http,
        "POST",
        &recall,
        Some(&key),
        Some(r#"{"user_id":"bob"}"#),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {body}");
    let (status, _, body) = call(
        http,
        "POST",
        &recall,
        Some(&key),
        Some(r#"{"user_id":"alice"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["event_seq"].as_u64().unwrap() > 0);
    let (_, _, body) = call(http, "GET", path, Some(&key), None).await;
    // The page ends with the recall event; the message itself shows who withdrew it.
    let page = json(&body);
    let newest = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == last)
        .unwrap();
    assert_eq!(newest["recalled_by"], "alice", "{newest}");
    assert!(newest.get("content").is_none(), "{newest}");
}

/// Which users are online, with their devices, wherever in the deployment they are connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_of_many_users_at_once() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob"]).await;
    let _phone = server
        .client_with("alice", "phone", |c| {
            c.platform = tern_proto::pb::Platform::Ios
        })
        .await;
    let _desk = server
        .client_with("alice", "desk", |c| {
            c.platform = tern_proto::pb::Platform::Desktop
        })
        .await;
    // On a cluster the devices may be on other nodes than the one asked: their logins reach it
    // over the bus a moment later.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let users = loop {
        let (status, _, body) = call(
            http,
            "GET",
            "/v1/presence?user_ids=alice,bob,nobody",
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let users = json(&body)["users"].clone();
        if users[0]["devices"].as_array().map_or(0, Vec::len) == 2 {
            break users;
        }
        assert!(tokio::time::Instant::now() < deadline, "{users}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(users[0]["user_id"], "alice");
    assert_eq!(users[0]["online"], true);
    let mut platforms: Vec<&str> = users[0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"].as_str().unwrap())
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["desktop", "ios"]);
    assert_eq!(
        (users[1]["user_id"].as_str(), users[1]["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    assert_eq!(users[2]["online"], false, "an unknown user is offline");
    for (bad, name) in [
        ("/v1/presence?user_ids=", "INVALID_ARGUMENT"),
        ("/v1/presence", "INVALID_ARGUMENT"),
        ("/v1/presence?user_ids=alice,bad%20id", "INVALID_USER_ID"),
    ] {
        let (status, _, body) = call(http, "GET", bad, Some(&key), None).await;
        assert_eq!(
            (status, json(&body)["name"].as_str()),
            (400, Some(name)),
            "{bad}"
        );
    }
}

/// A user's conversation list with unread counts, friends imported, listed and removed, and
/// the blacklist, each as the user would do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_friends_and_the_blacklist() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob", "carol"]).await;
    for (i, to) in ["bob", "bob", "carol"].iter().enumerate() {
        let body = format!(
            r#"{{"sender":"alice","to_user":"{to}","client_msg_id":"c{i}","content":{{"text":{{"text":"m{i}"}}}}}}"#
        );
        let (status, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(&body)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _, body) =
        call(http, "GET", "/v1/users/bob/conversations", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    let with_alice = &list["conversations"][0];
    assert_eq!(with_alice["peer"], "alice");
    assert_eq!(with_alice["unread"], 2);
    assert_eq!(with_alice["last"]["content"]["text"]["text"], "m1");
    let (_, _, body) = call(
        http,
        "GET",
        "/v1/users/alice/conversations",
        Some(&key),
        None,
    )
    .await;
    let all = json(&body)["conversations"].clone();
    assert_eq!(all.as_array().unwrap().len(), 2);
    // A page at a time, in the list's order.
    let (_, _, body) = call(
        http,
        "GET",
        "/v1/users/alice/conversations?limit=1",
        Some(&key),
        None,
    )
    .await;
    let first = json(&body);
    assert_eq!(first["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(first["conversations"][0], all[0]);
    let cursor = first["next_after"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (status, _, body) = call(
        http,
        "GET",
        &format!("/v1/users/alice/conversations?limit=1&after={cursor}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let last = json(&body);
    assert_eq!(last["conversations"][0], all[1]);
    assert!(last.get("next_after").is_none(), "{last}");
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/users/alice/conversations?after=garbage",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/users/nobody/conversations",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Friends imported as a request and its acceptance.
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/alice/friends",
        Some(&key),
        Some(r#"{"friend_id":"bob"}"#),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = call(
        http,
        "POST",
        "/v1/users/alice/friends",
        Some(&key),
        Some(r#"{"friend_id":"bob"}"#),
    )
    .await;
    assert_eq!(status, 204, "importing twice changes nothing");
    for (who, other) in [("alice", "bob"), ("bob", "alice")] {
        let (_, _, body) = call(
            http,
            "GET",
            &format!("/v1/users/{who}/friends"),
            Some(&key),
            None,
        )
        .await;
        let friends = json(&body)["friends"].clone();
        assert_eq!(friends.as_array().unwrap().len(), 1, "{who}: {friends}");
        assert_eq!(friends[0]["user_id"], other);
    }
    let (status, _, _) = call(
        http,
        "DELETE",
        "/v1/users/bob/friends/alice",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, body) = call(http, "GET", "/v1/users/alice/friends", Some(&key), None).await;
    assert_eq!(json(&body)["friends"], serde_json::json!([]));

    // The blacklist: carol refuses alice, whose next message to carol is refused.
    let (status, _, _) = call(
        http,
        "PUT",
        "/v1/users/carol/blocked/alice",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, body) = call(http, "GET", "/v1/users/carol/blocked", Some(&key), None).await;
    assert_eq!(json(&body)["blocked"], serde_json::json!(["alice"]));
    let refused = r#"{"sender":"alice","to_user":"carol","client_msg_id":"after-block","content":{"text":{"text":"hi"}}}"#;
    let (status, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(refused)).await;
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (422, Some("NOT_ACCEPTED"))
    );
    let (status, _, body) = call(
        http,
        "POST",
        "/v1/users/alice/friends",
        Some(&key),
        Some(r#"{"friend_id":"carol"}"#),
    )
    .await;
    assert_eq!(status, 422, "a blacklist refuses the import too: {body}");
    let (status, _, _) = call(
        http,
        "DELETE",
        "/v1/users/carol/blocked/alice",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = call(http, "POST", "/v1/messages", Some(&key), Some(refused)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, _) = call(
        http,
        "PUT",
        "/v1/users/carol/blocked/carol",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Long lists come a page at a time, by user id.
    for other in ["bob", "alice"] {
        let path = format!("/v1/users/carol/blocked/{other}");
        assert_eq!(call(http, "PUT", &path, Some(&key), None).await.0, 204);
    }
    let (_, _, body) = call(
        http,
        "GET",
        "/v1/users/carol/blocked?limit=1",
        Some(&key),
        None,
    )
    .await;
    let first = json(&body);
    assert_eq!(first["blocked"], serde_json::json!(["alice"]));
    assert_eq!(first["next_after"], "alice");
    let (_, _, body) = call(
        http,
        "GET",
        "/v1/users/carol/blocked?limit=1&after=alice",
        Some(&key),
        None,
    )
    .await;
    let last = json(&body);
    assert_eq!(last["blocked"], serde_json::json!(["bob"]));
    assert!(last.get("next_after").is_none(), "{last}");
    let (status, _, _) = call(
        http,
        "GET",
        "/v1/users/carol/friends?limit=-1",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 400);
}
