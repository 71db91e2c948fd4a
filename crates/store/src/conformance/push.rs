//! Offline push: device registrations kept, replaced and forgotten only while they hold the
//! token a provider refused, and committed messages queued on the push lane of the outbox,
//! which webhook dispatchers never claim.

use tern_core::{
    push::{Provider, PushRegistration, PushStore},
    webhooks::{Lane, PUSH_ROUTE},
};

use super::*;

fn registration(u: &str, device: &str, provider: Provider, token: &str) -> PushRegistration {
    PushRegistration {
        user: u.to_owned(),
        device: device.to_owned(),
        provider,
        token: token.to_owned(),
        p256dh: if provider == Provider::Webpush {
            "BPk".into()
        } else {
            String::new()
        },
        auth: if provider == Provider::Webpush {
            "c2VjcmV0".into()
        } else {
            String::new()
        },
        private: device == "tablet",
        updated_ms: 1_000,
        background_connection: 0,
    }
}

/// A device holds one registration, replaced whole; they are read per user in order; a
/// refused token is forgotten only while the device still holds it.
pub async fn push_registrations_are_kept_replaced_and_forgotten(store: &dyn Backend) {
    let phone = registration("alice", "phone", Provider::Apns, "aa11");
    let tablet = registration("alice", "tablet", Provider::Webpush, "https://push.test/x");
    let bob = registration("bob", "pc", Provider::Fcm, "fcm-token");
    for r in [&phone, &tablet, &bob] {
        store.put_push(r).await.unwrap();
    }
    assert_eq!(
        store.pushes_of(vec![user("alice")]).await.unwrap(),
        vec![phone.clone(), tablet.clone()]
    );
    assert_eq!(
        store
            .pushes_of(vec![user("bob"), user("alice"), user("nobody")])
            .await
            .unwrap(),
        vec![phone.clone(), tablet.clone(), bob.clone()]
    );

    // The tablet's app goes to the background over a connection, and comes back.
    let tablet_id = DeviceId::parse("tablet").unwrap();
    let alice = user("alice");
    assert!(
        store
            .set_push_background(&alice, &tablet_id, 77)
            .await
            .unwrap()
    );
    let read = store.pushes_of(vec![user("alice")]).await.unwrap();
    assert_eq!(read[1].background_connection, 77);
    assert!(
        store
            .set_push_background(&alice, &tablet_id, 0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_push_background(&user("carol"), &tablet_id, 5)
            .await
            .unwrap(),
        "no registration, nothing to mark"
    );

    // The phone registers again, now through FCM: replaced, not added.
    let moved = registration("alice", "phone", Provider::Fcm, "new-token");
    store.put_push(&moved).await.unwrap();
    assert_eq!(
        store.pushes_of(vec![user("alice")]).await.unwrap(),
        vec![moved.clone(), tablet.clone()]
    );
    // A refusal of the old token arriving late forgets nothing.
    // A node starting again clears its own connections' marks, not another node's.
    let node_a = 5u64 << 40 | 9;
    assert!(
        store
            .set_push_background(&alice, &tablet_id, node_a)
            .await
            .unwrap()
    );
    store.clear_push_background(6).await.unwrap();
    assert_eq!(
        store.pushes_of(vec![alice.clone()]).await.unwrap()[1].background_connection,
        node_a
    );
    store.clear_push_background(5).await.unwrap();
    assert_eq!(
        store.pushes_of(vec![alice.clone()]).await.unwrap()[1].background_connection,
        0
    );

    let phone_id = DeviceId::parse("phone").unwrap();
    assert!(
        !store
            .forget_push_token(&alice, &phone_id, "aa11")
            .await
            .unwrap()
    );
    assert!(
        store
            .forget_push_token(&alice, &phone_id, "new-token")
            .await
            .unwrap()
    );
    assert_eq!(
        store.pushes_of(vec![user("alice")]).await.unwrap(),
        vec![tablet.clone()]
    );
    assert!(store.delete_push(&alice, &tablet_id).await.unwrap());
    assert!(!store.delete_push(&alice, &tablet_id).await.unwrap());
    assert!(
        store
            .pushes_of(vec![user("alice")])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.pushes_of(vec![user("bob")]).await.unwrap(), vec![bob]);
}

/// With push on, each committed message is queued once on the push lane, in the same
/// commit; webhook claims never see those rows, and push claims never see webhook rows.
pub async fn messages_are_queued_on_the_push_lane(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    store.routes().set_push(true);
    store
        .commit(vec![
            text("a", "b", "m1", "one"),
            text("a", "b", "m1", "one"),
        ])
        .await
        .unwrap();
    assert_eq!(store.pending_count(Lane::Push).await.unwrap(), 1);
    assert_eq!(store.pending_count(Lane::Webhooks).await.unwrap(), 0);
    assert!(
        store
            .claim(Lane::Webhooks, 10, 100, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.routes().set(vec![
        tern_core::webhooks::Webhook::new("all", "http://127.0.0.1:9/", "s", ["*"]).unwrap(),
    ]);
    store
        .commit(vec![text("a", "b", "m2", "two")])
        .await
        .unwrap();
    assert_eq!(store.pending_count(Lane::Push).await.unwrap(), 2);
    assert_eq!(store.pending_count(Lane::Webhooks).await.unwrap(), 1);
    let pushes = store.claim(Lane::Push, 10, 100, 10).await.unwrap();
    assert_eq!(pushes.len(), 1, "one conversation: one head at a time");
    assert_eq!(pushes[0].webhook, PUSH_ROUTE);
    let hooks = store.claim(Lane::Webhooks, 10, 100, 10).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].webhook, "all");
    // A claimant still at work holds its row longer.
    store.extend_lease(pushes[0].seq, 5_000).await.unwrap();
    assert!(
        store
            .claim(Lane::Push, 1_000, 2_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "held by its claimant"
    );
    store.delivered(pushes[0].seq).await.unwrap();
    let next = store.claim(Lane::Push, 11, 100, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].seq, pushes[0].seq);
    store.routes().set_push(false);
    store.routes().set(Vec::new());
}

/// Registrations survive a reopen.
pub async fn push_registrations_survive_a_reopen<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    let r = registration("alice", "phone", Provider::Webhook, "gw-token");
    store.put_push(&r).await.unwrap();
    h.close(store).await;
    let store = h.open(&loc).await;
    assert_eq!(store.pushes_of(vec![user("alice")]).await.unwrap(), vec![r]);
    h.close(store).await;
}
