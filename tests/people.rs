//! People end to end: profiles and search, friends, the blacklist and the friends-only policy.

use std::time::Duration;

use tern_client::{ErrorCode, Event, pb};
use tern_testkit::{TestServer, text_of};

fn friend_event(e: Event) -> Option<(pb::FriendEventKind, String, bool)> {
    match e {
        Event::Friend {
            kind, other, by_me, ..
        } => Some((kind, other, by_me)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_sender_is_rejected_and_learns_nothing_more() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let mut alice_desk = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let mut bob = server.client("bob", "phone").await;
    bob.client.send_text("alice", "before").await.unwrap();

    alice.client.block("bob").await.unwrap();
    let changed = alice_desk
        .next_where(|e| match e {
            Event::BlockChanged { user, blocked } => Some((user, blocked)),
            _ => None,
        })
        .await;
    assert_eq!(changed, ("bob".to_owned(), true));
    let e = bob.client.send_text("alice", "after").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));
    let e = bob
        .client
        .request_friend("alice", "please")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));
    // The refusal says nothing of a block: a friends-only stranger gets the very same error.
    let carol = server.client("carol", "phone").await;
    carol
        .client
        .update_profile(pb::ProfileUpdateRequest {
            stranger_policy: Some(pb::StrangerPolicy::FriendsOnly as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    let e2 = bob.client.send_text("carol", "hi").await.unwrap_err();
    assert_eq!((e2.code(), e2.to_string()), (e.code(), e.to_string()));
    // The blocked user's devices were told nothing.
    bob.expect_no_message(Duration::from_millis(200)).await;
    assert_eq!(alice.client.blocked().await.unwrap(), ["bob"]);
    // Alice still writes to bob: a block refuses what comes in, not what goes out.
    alice
        .client
        .send_text("bob", "I can still talk")
        .await
        .unwrap();
    assert_eq!(text_of(&bob.messages(1).await[0].1), "I can still talk");

    alice.client.unblock("bob").await.unwrap();
    bob.client.send_text("alice", "again").await.unwrap();
    assert!(alice.client.blocked().await.unwrap().is_empty());
    let e = alice.client.block("alice").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = alice.client.block("nobody").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownUser));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friends_only_user_rejects_a_stranger_until_they_are_friends() {
    let server = TestServer::start().await;
    server.register(&["carol", "dave"]).await;
    let mut carol = server.client("carol", "phone").await;
    let mut dave = server.client("dave", "phone").await;
    let settings = carol
        .client
        .update_profile(pb::ProfileUpdateRequest {
            stranger_policy: Some(pb::StrangerPolicy::FriendsOnly as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        settings.stranger_policy,
        pb::StrangerPolicy::FriendsOnly as i32
    );
    let e = dave.client.send_text("carol", "hello?").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));

    let initial = carol.client.friends(0).await.unwrap();
    assert!(initial.full && initial.friends.is_empty());
    assert!(
        !dave
            .client
            .request_friend("carol", "it's dave")
            .await
            .unwrap()
    );
    let (kind, other, by_me) = carol.next_where(friend_event).await;
    assert_eq!(
        (kind, other.as_str(), by_me),
        (pb::FriendEventKind::Requested, "dave", false)
    );
    let pending = carol.client.friends(initial.version).await.unwrap();
    assert_eq!(pending.requests.len(), 1);
    assert_eq!(pending.requests[0].message, "it's dave");

    carol.client.respond_friend("dave", true).await.unwrap();
    for c in [&mut carol, &mut dave] {
        let (kind, ..) = c
            .next_where(|e| friend_event(e).filter(|f| f.0 == pb::FriendEventKind::Added))
            .await;
        assert_eq!(kind, pb::FriendEventKind::Added);
    }
    dave.client.send_text("carol", "friends now").await.unwrap();
    assert_eq!(text_of(&carol.messages(1).await[0].1), "friends now");
    let e = carol.client.respond_friend("dave", true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RequestNotFound));

    // The friend list follows by version: a remark, then the end of the friendship.
    let list = carol.client.friends(0).await.unwrap();
    assert_eq!(list.friends.len(), 1);
    assert!(list.requests.is_empty());
    carol
        .client
        .remark_friend("dave", "Dave from work")
        .await
        .unwrap();
    let changes = carol.client.friends(list.version).await.unwrap();
    assert!(!changes.full);
    assert_eq!(changes.friends[0].remark, "Dave from work");
    dave.client.delete_friend("carol").await.unwrap();
    let (kind, other, by_me) = carol
        .next_where(|e| friend_event(e).filter(|f| f.0 == pb::FriendEventKind::Removed))
        .await;
    assert_eq!(
        (kind, other.as_str(), by_me),
        (pb::FriendEventKind::Removed, "dave", false)
    );
    let changes = carol.client.friends(changes.version).await.unwrap();
    assert_eq!(changes.removed, ["dave"]);
    let e = dave
        .client
        .send_text("carol", "still there?")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));
    let e = carol.client.remark_friend("dave", "x").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));

    // Asking back someone who asked first makes friends at once.
    assert!(!carol.client.request_friend("dave", "sorry").await.unwrap());
    assert!(dave.client.request_friend("carol", "me too").await.unwrap());
    carol
        .client
        .friends(0)
        .await
        .unwrap()
        .friends
        .iter()
        .for_each(|f| {
            assert_eq!(f.user_id, "dave");
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_searchable_and_follow_the_user_to_every_device() {
    let server = TestServer::start().await;
    server.register(&["erin", "frank", "fran"]).await;
    let erin = server.client("erin", "phone").await;
    let mut erin_desk = server
        .client_with("erin", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let frank = server.client("frank", "phone").await;
    let fran = server.client("fran", "phone").await;
    for (c, nick) in [(&frank, "Frankie"), (&fran, "Francesca")] {
        c.client
            .update_profile(pb::ProfileUpdateRequest {
                nickname: Some(nick.into()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let updated = erin
        .client
        .update_profile(pb::ProfileUpdateRequest {
            nickname: Some("Erin".into()),
            avatar: Some("https://example.com/erin.png".into()),
            signature: Some("on call".into()),
            extra: Some(r#"{"team":"sre"}"#.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let profile = updated.profile.unwrap();
    assert_eq!(profile.nickname, "Erin");
    assert!(profile.updated_ms > 0);
    let seen = erin_desk
        .next_where(|e| match e {
            Event::ProfileChanged { profile, .. } => Some(profile),
            _ => None,
        })
        .await;
    assert_eq!(seen, profile);
    let fetched = frank
        .client
        .profiles(&["erin", "nobody", "fran"])
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = fetched
        .iter()
        .map(|p| (p.user_id.as_str(), p.nickname.as_str()))
        .collect();
    assert_eq!(names, [("erin", "Erin"), ("fran", "Francesca")]);

    let found = erin.client.search_users("Fran", 10).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(ids, ["fran", "frank"], "by nickname, in nickname order");
    let found = erin.client.search_users("fran", 10).await.unwrap();
    assert_eq!(found[0].user_id, "fran", "an exact id comes first");
    let e = erin.client.search_users("", 10).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = erin
        .client
        .update_profile(pb::ProfileUpdateRequest {
            extra: Some("not json".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_people_requests_get_clear_errors_and_change_nothing() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let code = |r: Result<bool, tern_client::ClientError>| r.err().and_then(|e| e.code());
    assert_eq!(
        code(alice.client.request_friend("alice", "me").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(alice.client.request_friend("nobody", "").await),
        Some(ErrorCode::UnknownUser)
    );
    assert_eq!(
        code(alice.client.request_friend("not a user", "").await),
        Some(ErrorCode::UnknownUser)
    );
    assert_eq!(
        code(alice.client.request_friend("bob", &"m".repeat(257)).await),
        Some(ErrorCode::InvalidArgument)
    );
    let e = alice
        .client
        .respond_friend("not a user", true)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RequestNotFound));
    let e = alice
        .client
        .remark_friend("bob", &"r".repeat(65))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = alice.client.delete_friend("not a user").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownUser));
    // Ending a friendship that does not exist succeeds and changes nothing.
    alice.client.delete_friend("bob").await.unwrap();
    let too_many: Vec<String> = (0..201).map(|i| format!("u{i}")).collect();
    let e = alice
        .client
        .request(pb::ProfileGetRequest { user_ids: too_many })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = alice
        .client
        .search_users(&"q".repeat(65), 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    for bad in [
        pb::ProfileUpdateRequest {
            nickname: Some("n".repeat(65)),
            ..Default::default()
        },
        pb::ProfileUpdateRequest {
            nickname: Some("tab\there".into()),
            ..Default::default()
        },
        pb::ProfileUpdateRequest {
            avatar: Some("a".repeat(2049)),
            ..Default::default()
        },
        pb::ProfileUpdateRequest {
            extra: Some("[1]".into()),
            ..Default::default()
        },
    ] {
        let e = alice.client.update_profile(bad.clone()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{bad:?}");
    }
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let e = alice.client.follow_presence(&refs).await;
    // Only friends are followed, so a long list of strangers follows nobody.
    assert!(e.unwrap().is_empty());
    // Nothing above changed anything.
    let list = alice.client.friends(0).await.unwrap();
    assert!(list.friends.is_empty() && list.requests.is_empty());
    let me = alice.client.profiles(&["alice"]).await.unwrap();
    assert_eq!((me[0].nickname.as_str(), me[0].updated_ms), ("", 0));
}
