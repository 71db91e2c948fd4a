//! Presence end to end: friends follow each other's devices, and a device that dies or goes
//! silent is shown offline once its connection is gone.

use std::time::Duration;

use tern_client::{Event, pb};
use tern_testkit::{TestClient, TestServer};

async fn next_presence(c: &mut TestClient) -> pb::Presence {
    c.next_where(|e| match e {
        Event::Presence(p) => Some(p),
        _ => None,
    })
    .await
}

fn devices(p: &pb::Presence) -> Vec<&str> {
    let mut d: Vec<&str> = p.devices.iter().map(|d| d.device_id.as_str()).collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_devices_and_goes_offline_when_a_client_dies_or_falls_silent() {
    // A short heartbeat, so a silent client times out quickly: silence for twice it closes.
    // The SDK clients ping at the interval, a whole interval within the timeout.
    let mut server = TestServer::start_with(|c| c.heartbeat_interval_ms = 1000).await;
    server.register(&["alice", "bob", "carol"]).await;
    let mut alice = server.client("alice", "phone").await;
    {
        let bob = server.client("bob", "setup").await;
        bob.client.request_friend("alice", "").await.unwrap();
        alice.client.respond_friend("bob", true).await.unwrap();
        // A logout is answered once the server has let the connection go.
        bob.client.logout().await.unwrap();
    }
    // One server knows at once; in a cluster the other nodes hear of the close just after.
    let deadline = tokio::time::Instant::now() + tern_testkit::WAIT;
    loop {
        let now = alice.client.follow_presence(&["bob"]).await.unwrap();
        assert_eq!(now.len(), 1);
        if !now[0].online {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A close that reached this node while the loop followed is told as an event too: drain
    // those before watching for new ones.
    while tokio::time::timeout(Duration::from_millis(300), next_presence(&mut alice))
        .await
        .is_ok()
    {}

    // A device logs in: online, with its platform.
    let mut silent = server.raw().await;
    silent.login("bob", "laptop").await;
    // The laptop's silence starts here: after twice the heartbeat interval it is dropped.
    let silent_since = std::time::Instant::now();
    let p = next_presence(&mut alice).await;
    assert!(p.online);
    assert_eq!(devices(&p), ["laptop"]);
    let mut bob_phone = server.raw().await;
    bob_phone
        .call(pb::LoginRequest {
            user_id: "bob".into(),
            credential: Some(pb::login_request::Credential::Password(
                tern_testkit::password("bob"),
            )),
            device_id: "phone".into(),
            platform: pb::Platform::Ios as i32,
        })
        .await;
    let p = next_presence(&mut alice).await;
    assert_eq!(devices(&p), ["laptop", "phone"]);
    assert!(
        p.devices
            .iter()
            .any(|d| d.device_id == "phone" && d.platform == pb::Platform::Ios as i32)
    );

    // Both raw clients stop sending anything; the phone's socket is then closed as if its
    // process were killed, and the laptop stays connected but silent: once the heartbeat
    // period has passed twice, the server drops it too.
    drop(bob_phone);
    let p = next_presence(&mut alice).await;
    assert_eq!(
        devices(&p),
        ["laptop"],
        "a killed client goes offline at once"
    );
    let p = next_presence(&mut alice).await;
    assert!(!p.online && p.devices.is_empty());
    assert!(
        silent_since.elapsed() >= Duration::from_millis(1500),
        "the silent one only after the timeout"
    );
    drop(silent);

    // Only friends (or oneself) can be followed; others are left out without a reason.
    let carol = server.client("carol", "phone").await;
    let seen = carol
        .client
        .follow_presence(&["bob", "carol"])
        .await
        .unwrap();
    let users: Vec<&str> = seen.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(users, ["carol"]);

    // Following survives a reconnect: after a server restart (everyone offline), the client
    // follows again by itself and reports what it finds.
    server.restart().await;
    let p = next_presence(&mut alice).await;
    assert!(!p.online);
    let bob = server.client("bob", "phone").await;
    assert!(next_presence(&mut alice).await.online);
    // Unfollowing stops the events.
    alice.client.unfollow_presence(&["bob"]).await.unwrap();
    bob.client.close_and_wait().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_presence(&mut alice))
            .await
            .is_err()
    );
}
