//! People: profiles, friends and blocks in commit order.

use super::*;

/// Profiles, friend requests, blocks and the friends-only policy, each applied at its place in
/// the commit order: a message committed after a block is refused, one before it is not.
pub async fn people_blocks_and_friends_apply_in_commit_order(store: &dyn Backend) {
    register(store, &["ann", "bob", "cat"]).await;
    let friends_only = ProfilePatch {
        nickname: Some("Annie".into()),
        stranger_policy: Some(StrangerPolicy::FriendsOnly),
        ..Default::default()
    };
    let out = store
        .commit(vec![
            text("bob", "ann", "before", "still anyone"),
            social("ann", SocialChange::UpdateProfile(friends_only.clone())),
            text("bob", "ann", "after", "friends only now"),
            social("ann", SocialChange::UpdateProfile(friends_only)),
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Stored(_)));
    assert_eq!(inbox_users(applied(&out[1]).1.unwrap()), users(&["ann"]));
    assert_eq!(refused_with(&out[2]), "NotAccepted");
    assert_eq!(
        plain(&out[3]),
        (0, false),
        "the same profile again records nothing"
    );
    let p = store
        .profiles(vec![user("ann"), user("nobody")])
        .await
        .unwrap();
    assert_eq!((p.len(), p[0].nickname.as_str()), (1, "Annie"));
    assert_eq!(
        store.stranger_policy(&user("ann")).await.unwrap(),
        StrangerPolicy::FriendsOnly
    );
    let found = store.search_nicknames("Ann", 10).await.unwrap();
    assert_eq!(
        found.iter().map(|p| p.user.as_str()).collect::<Vec<_>>(),
        ["ann"]
    );
    assert!(store.search_nicknames("Bo", 10).await.unwrap().is_empty());

    // A request, an answer, then messages flow.
    let request = SocialChange::FriendRequest {
        to: user("ann"),
        message: "it's bob".into(),
    };
    let out = store
        .commit(vec![
            social("bob", request),
            social(
                "ann",
                SocialChange::FriendRespond {
                    from: user("cat"),
                    accept: true,
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        inbox_users(applied(&out[0]).1.unwrap()),
        users(&["ann", "bob"])
    );
    assert_eq!(refused_with(&out[1]), "RequestNotFound");
    let pending = store.friend_requests(&user("ann"), 10).await.unwrap();
    assert_eq!(
        (pending.len(), pending[0].message.as_str()),
        (1, "it's bob")
    );
    let version = store.inbox_head(&user("ann")).await.unwrap();
    let out = store
        .commit(vec![
            social(
                "ann",
                SocialChange::FriendRespond {
                    from: user("bob"),
                    accept: true,
                },
            ),
            text("bob", "ann", "friends", "hello friend"),
            social(
                "ann",
                SocialChange::FriendRemark {
                    friend: user("bob"),
                    remark: "Bobby".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(applied(&out[0]).0, 1);
    assert!(matches!(&out[1], AppendOutcome::Stored(_)));
    assert!(
        store
            .friend_requests(&user("ann"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let changed = store.friends(&user("ann"), version).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].user.as_str(), changed[0].remark.as_str()),
        ("bob", "Bobby")
    );
    assert_eq!(
        store
            .are_friends(&user("bob"), vec![user("ann"), user("cat")])
            .await
            .unwrap(),
        vec![true, false]
    );

    // Blocks refuse messages and requests; the blocked user is told nothing more.
    let out = store
        .commit(vec![
            social("ann", SocialChange::Block(user("cat"))),
            social("ann", SocialChange::Block(user("cat"))),
            social(
                "cat",
                SocialChange::FriendRequest {
                    to: user("ann"),
                    message: String::new(),
                },
            ),
            social("bob", SocialChange::Block(user("cat"))),
            text("cat", "bob", "c1", "blocked"),
            social("bob", SocialChange::Unblock(user("cat"))),
            text("cat", "bob", "c2", "unblocked"),
        ])
        .await
        .unwrap();
    assert_eq!(inbox_users(applied(&out[0]).1.unwrap()), users(&["ann"]));
    assert_eq!(plain(&out[1]), (0, false));
    assert_eq!(refused_with(&out[2]), "NotAccepted");
    assert_eq!(refused_with(&out[4]), "NotAccepted");
    assert!(matches!(&out[6], AppendOutcome::Stored(_)));
    assert_eq!(
        store.blocked(&user("ann")).await.unwrap(),
        vec![user("cat")]
    );
    assert!(store.blocked(&user("bob")).await.unwrap().is_empty());

    // Ending the friendship shows as a removal among the changes, and friends-only bites again.
    let version = store.inbox_head(&user("ann")).await.unwrap();
    let out = store
        .commit(vec![
            social("bob", SocialChange::FriendDelete(user("ann"))),
            text("bob", "ann", "gone", "hello?"),
        ])
        .await
        .unwrap();
    assert_eq!(
        inbox_users(applied(&out[0]).1.unwrap()),
        users(&["ann", "bob"])
    );
    assert_eq!(refused_with(&out[1]), "NotAccepted");
    let changed = store.friends(&user("ann"), version).await.unwrap();
    assert!(changed.len() == 1 && changed[0].removed);
    assert!(store.friends(&user("ann"), 0).await.unwrap().is_empty());
}
