//! Groups through the HTTP API end to end: created with an owner, read, changed with the owner's
//! authority, and dissolved, each change holding for sends from the binary protocol too.

use serde_json::Value;
use tern_testkit::{TestServer, http_call as call};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// One call with the admin key; answers the status and the parsed body (`null` when empty).
async fn admin(
    http: std::net::SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, _, answer) = call(http, method, path, Some(key), body).await;
    let value = if answer.is_empty() {
        Value::Null
    } else {
        json(&answer)
    };
    (status, value)
}

/// A text message to group `group` as `sender`, through the API.
async fn send(
    http: std::net::SocketAddr,
    key: &str,
    sender: &str,
    group: u64,
    n: u32,
) -> (u16, Value) {
    let body = format!(
        r#"{{"sender":"{sender}","group_id":{group},"client_msg_id":"{sender}-{n}","content":{{"text":{{"text":"m{n}"}}}}}}"#
    );
    admin(http, key, "POST", "/v1/messages", Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_creates_changes_and_dissolves_groups() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    let http = server.config().http_addr;
    server.register(&["alice", "bob", "carol", "dave"]).await;

    // Owners and members must exist.
    for bad in [
        r#"{"owner":"nobody","name":"x"}"#,
        r#"{"owner":"alice","name":"x","members":["nobody"]}"#,
    ] {
        let (status, e) = admin(http, &key, "POST", "/v1/groups", Some(bad)).await;
        assert_eq!(status, 404, "{bad}: {e}");
        assert_eq!(e["name"], "UNKNOWN_USER");
    }
    let (status, e) = admin(
        http,
        &key,
        "POST",
        "/v1/groups",
        Some(r#"{"owner":"alice","name":"x","colour":"red"}"#),
    )
    .await;
    assert_eq!(status, 400, "an unknown field: {e}");

    let (status, g) = admin(
        http,
        &key,
        "POST",
        "/v1/groups",
        Some(r#"{"owner":"alice","name":"Team","members":["bob"],"history":"full","request_id":"r1"}"#),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    let id = g["group_id"].as_u64().unwrap();
    assert_eq!(g["owner"], "alice");
    assert_eq!(g["member_count"], 2);
    assert_eq!(g["history"], "full");
    assert_eq!(g["conversation_id"], format!("g:{id}"));
    let (status, again) = admin(
        http,
        &key,
        "POST",
        "/v1/groups",
        Some(r#"{"owner":"alice","name":"Team","members":["bob"],"history":"full","request_id":"r1"}"#),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        again["group_id"], id,
        "a retried create answers the same group"
    );

    let path = format!("/v1/groups/{id}");
    let (status, got) = admin(http, &key, "GET", &path, None).await;
    assert_eq!((status, &got["name"]), (200, &Value::from("Team")));
    assert_eq!(
        admin(http, &key, "GET", "/v1/groups/999999", None).await.0,
        404
    );
    assert_eq!(
        admin(http, &key, "GET", "/v1/groups/abc", None).await.0,
        400
    );

    // Members: added, paged, given roles, muted.
    let members = format!("{path}/members");
    let (status, g) = admin(
        http,
        &key,
        "POST",
        &members,
        Some(r#"{"user_ids":["carol","dave","bob"]}"#),
    )
    .await;
    assert_eq!((status, g["member_count"].as_u64()), (200, Some(4)), "{g}");
    let (status, e) = admin(
        http,
        &key,
        "POST",
        &members,
        Some(r#"{"user_ids":["ghost"]}"#),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    let (_, page) = admin(http, &key, "GET", &format!("{members}?limit=3"), None).await;
    let ids: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob", "carol"]);
    assert_eq!(page["members"][0]["role"], "owner");
    assert_eq!(page["next_after"], "carol");
    let (_, rest) = admin(
        http,
        &key,
        "GET",
        &format!("{members}?limit=3&after=carol"),
        None,
    )
    .await;
    assert_eq!(rest["members"][0]["user_id"], "dave");
    assert!(rest.get("next_after").is_none(), "{rest}");
    assert_eq!(
        admin(http, &key, "GET", &format!("{members}?limit=x"), None)
            .await
            .0,
        400
    );

    let (status, _) = admin(
        http,
        &key,
        "PUT",
        &format!("{members}/bob/role"),
        Some(r#"{"role":"admin"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = admin(http, &key, "GET", &members, None).await;
    assert_eq!(page["members"][1]["role"], "admin");

    let far = 4_000_000_000_000_i64;
    let (status, _) = admin(
        http,
        &key,
        "PUT",
        &format!("{members}/carol/mute"),
        Some(&format!(r#"{{"until_ms":{far}}}"#)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, e) = send(http, &key, "carol", id, 1).await;
    assert_eq!((status, &e["name"]), (400, &Value::from("MUTED")), "{e}");
    admin(
        http,
        &key,
        "PUT",
        &format!("{members}/carol/mute"),
        Some(r#"{"until_ms":0}"#),
    )
    .await;
    assert_eq!(send(http, &key, "carol", id, 2).await.0, 201);

    // Settings: renamed and everyone but the owner and admins muted.
    let (status, g) = admin(
        http,
        &key,
        "PATCH",
        &path,
        Some(r#"{"name":"Team 2","announcement":"hello","mute_all":true}"#),
    )
    .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(
        (g["name"].as_str(), g["mute_all"].as_bool()),
        (Some("Team 2"), Some(true))
    );
    assert_eq!(g["announcement"], "hello");
    let too_long = format!(
        r#"{{"name":"Never","announcement":"{}"}}"#,
        "x".repeat(5000)
    );
    let (status, e) = admin(http, &key, "PATCH", &path, Some(&too_long)).await;
    assert_eq!(status, 400, "{e}");
    let (_, g) = admin(http, &key, "GET", &path, None).await;
    assert_eq!(g["name"], "Team 2", "nothing changed");
    assert_eq!(send(http, &key, "dave", id, 3).await.0, 400);
    assert_eq!(
        send(http, &key, "bob", id, 4).await.0,
        201,
        "an admin still sends"
    );
    admin(http, &key, "PATCH", &path, Some(r#"{"mute_all":false}"#)).await;

    // A device of a member sees what the backend did, in the group's timeline.
    let mut dave = server.client("dave", "phone").await;
    assert_eq!(send(http, &key, "alice", id, 5).await.0, 201);
    let got = dave.group_messages_until(|m| m.sender == "alice").await;
    assert_eq!(
        got.last().map(|m| m.conversation_id.clone()),
        Some(format!("g:{id}"))
    );

    // Removal: not of the owner.
    let (status, e) = admin(http, &key, "DELETE", &format!("{members}/alice"), None).await;
    assert_eq!(status, 403, "{e}");
    let (status, _) = admin(http, &key, "DELETE", &format!("{members}/dave"), None).await;
    assert_eq!(status, 204);
    let (_, dave_groups) = admin(http, &key, "GET", "/v1/users/dave/groups", None).await;
    assert_eq!(dave_groups["groups"].as_array().unwrap().len(), 0);
    let (_, carol_groups) = admin(http, &key, "GET", "/v1/users/carol/groups", None).await;
    assert_eq!(carol_groups["groups"][0]["group_id"], id);
    assert_eq!(
        admin(http, &key, "GET", "/v1/users/nobody/groups", None)
            .await
            .0,
        404
    );

    // Ownership handed over; the backend then acts with the new owner's authority.
    let (status, g) = admin(
        http,
        &key,
        "PUT",
        &format!("{members}/carol/role"),
        Some(r#"{"role":"owner"}"#),
    )
    .await;
    assert_eq!((status, &g["owner"]), (200, &Value::from("carol")), "{g}");
    let (status, g) = admin(http, &key, "PATCH", &path, Some(r#"{"avatar":"a.png"}"#)).await;
    assert_eq!((status, &g["avatar"]), (200, &Value::from("a.png")), "{g}");

    // Dissolved: history kept, no more sends or changes.
    let (status, g) = admin(http, &key, "POST", &format!("{path}/dissolve"), None).await;
    assert_eq!((status, g["dissolved"].as_bool()), (200, Some(true)), "{g}");
    let (status, e) = send(http, &key, "bob", id, 6).await;
    assert_eq!(e["name"], "GROUP_DISSOLVED", "{status}: {e}");
    let (status, e) = admin(http, &key, "PATCH", &path, Some(r#"{"name":"late"}"#)).await;
    assert_eq!(e["name"], "GROUP_DISSOLVED", "{status}: {e}");
    let (status, history) = admin(
        http,
        &key,
        "GET",
        &format!("/v1/users/bob/conversations/g:{id}/messages"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    assert!(!history["messages"].as_array().unwrap().is_empty());
}
