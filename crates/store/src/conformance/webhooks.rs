//! The webhook outbox: events queued by the commits that caused them, claimed one head per
//! webhook and conversation, retried, given up on and replayed.

use tern_core::webhooks::{
    Event, EventKind, Failure, Lane, OutboxState, QueuedEvent, Webhook, WebhookOutbox,
};

use super::*;

fn routes() -> Vec<Webhook> {
    vec![
        Webhook::new("all", "http://127.0.0.1:9/all", "s", ["*"]).unwrap(),
        Webhook::new(
            "groups",
            "http://127.0.0.1:9/groups",
            "s",
            ["group.created", "group.changed"],
        )
        .unwrap(),
    ]
}

fn body(e: &QueuedEvent) -> serde_json::Value {
    serde_json::from_str(&e.body).expect("the body is JSON")
}

fn pairs(claimed: &[QueuedEvent]) -> Vec<(String, String)> {
    claimed
        .iter()
        .map(|e| (e.webhook.clone(), e.kind.clone()))
        .collect()
}

/// Commits queue one row per event and interested webhook, in the same transaction; a claim
/// takes the oldest row of each webhook and key, holds it for its lease, and the next row of
/// that key becomes claimable only once it is settled.
pub async fn commits_queue_events_and_claims_take_heads_in_order(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    // Without webhooks nothing is queued.
    store
        .commit(vec![text("a", "b", "m0", "before")])
        .await
        .unwrap();
    assert_eq!(store.pending_count(Lane::Webhooks).await.unwrap(), 0);

    store.routes().set(routes());
    let out = store
        .commit(vec![
            text("a", "b", "m1", "one"),
            text("a", "b", "m1", "one"),
            text("a", "b", "m2", "two"),
            text("a", "c", "m3", "three"),
            create_group("a", &["b"], 100),
        ])
        .await
        .unwrap();
    assert!(matches!(out[1], AppendOutcome::Duplicate(_)), "a retry");
    // Four events for "all" (the duplicate is none), the group's creation for "groups" too.
    assert_eq!(store.pending_count(Lane::Webhooks).await.unwrap(), 5);

    let now = 1_000;
    let claimed = store
        .claim(Lane::Webhooks, now, now + 30_000, 100)
        .await
        .unwrap();
    assert_eq!(
        pairs(&claimed),
        vec![
            ("all".into(), "message.created".into()),
            ("all".into(), "message.created".into()),
            ("all".into(), "group.created".into()),
            ("groups".into(), "group.created".into()),
        ],
        "the heads of (all, a-b), (all, a-c) and each webhook's group key, in commit order"
    );
    let first = &claimed[0];
    assert_eq!(body(first)["data"]["client_msg_id"], "m1");
    assert_eq!(body(first)["type"], "message.created");
    assert_eq!(body(first)["id"], first.event_id.as_str());
    assert_eq!(
        claimed[2].event_id, claimed[3].event_id,
        "one event, one id, whichever webhook gets it"
    );
    assert_eq!(first.state, OutboxState::Pending);
    // Leased: nothing more until settled or expired.
    assert!(
        store
            .claim(Lane::Webhooks, now + 1, now + 30_000, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Delivering m1 makes m2 the head of its key.
    store.delivered(first.seq).await.unwrap();
    let next = store
        .claim(Lane::Webhooks, now + 2, now + 30_000, 100)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(body(&next[0])["data"]["client_msg_id"], "m2");

    // A failure schedules the next attempt and keeps the key blocked until then.
    let failure = Failure {
        attempts: 1,
        next_ms: now + 5_000,
        error: "503 from the receiver".into(),
        dead: false,
    };
    store.failed(next[0].seq, &failure).await.unwrap();
    assert!(
        store
            .claim(Lane::Webhooks, now + 3, now + 30_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim(Lane::Webhooks, now + 5_000, now + 40_000, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].seq, again[0].attempts), (next[0].seq, 1));
    assert_eq!(again[0].last_error, "503 from the receiver");

    // Given up: a dead letter, out of the queue, until replayed.
    store
        .failed(
            again[0].seq,
            &Failure {
                attempts: 2,
                next_ms: 0,
                error: "timed out".into(),
                dead: true,
            },
        )
        .await
        .unwrap();
    let dead = store.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].seq, dead[0].state, dead[0].attempts),
        (again[0].seq, OutboxState::Dead, 2)
    );
    assert!(
        store
            .dead_letters(dead[0].seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim(Lane::Webhooks, now + 6_000, now + 40_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.replay(dead[0].seq, now + 7_000).await.unwrap());
    assert!(
        !store.replay(dead[0].seq, now + 7_000).await.unwrap(),
        "not dead now"
    );
    let replayed = store
        .claim(Lane::Webhooks, now + 7_000, now + 40_000, 100)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!((replayed[0].seq, replayed[0].attempts), (dead[0].seq, 0));
    assert!(store.dead_letters(0, 10).await.unwrap().is_empty());

    // Events from outside a commit queue the same way.
    let online = Event::presence(&user("c"), true, 5);
    let rows = store.routes().rows_for(online.clone());
    assert_eq!(rows.len(), 1, "only \"all\" wants presence");
    store.enqueue(rows).await.unwrap();
    let claimed = store
        .claim(Lane::Webhooks, now + 8_000, now + 40_000, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event_id, online.id);
    assert_eq!(claimed[0].kind, EventKind::UserOnline.as_str());
}

/// Queued events survive a reopen, and a reopened store hands them out again.
pub async fn queued_events_survive_a_reopen<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    register(&store, &["a", "b"]).await;
    store.routes().set(routes());
    store
        .commit(vec![
            text("a", "b", "m1", "one"),
            text("a", "b", "m2", "two"),
        ])
        .await
        .unwrap();
    h.close(store).await;

    let store = h.open(&loc).await;
    assert_eq!(store.pending_count(Lane::Webhooks).await.unwrap(), 2);
    let claimed = store.claim(Lane::Webhooks, 1, 2, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(body(&claimed[0])["data"]["client_msg_id"], "m1");
    h.close(store).await;
}
