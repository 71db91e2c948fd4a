//! Reopening: everything written is there after a clean close and a reopen.

use super::*;

/// Closing and reopening keeps messages, heads, cursors, tokens and deduplication.
pub async fn reopen_keeps_everything<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    register(&store, &["a", "b"]).await;
    let acked = write_acked(&store, "a", "b", 30).await;
    let d = DeviceId::parse("phone").unwrap();
    store.save_cursor(&user("b"), &d, 12).await.unwrap();
    store
        .put_token(&TokenRecord {
            hash: "tok".into(),
            user: user("b"),
            device: d.clone(),
            platform: Platform::Android,
            issued_ms: 1,
            expires_ms: 2,
        })
        .await
        .unwrap();
    let admin = AdminKeyRecord {
        id: "k1".into(),
        name: "ops".into(),
        hash: "hk1".into(),
        created_ms: 3,
        revoked_ms: None,
    };
    assert!(store.create_admin_key(&admin).await.unwrap());
    h.close(store).await;

    let store = h.open(&loc).await;
    verify_acked(&store, "a", "b", &acked).await;
    assert_eq!(store.load_cursor(&user("b"), &d).await.unwrap(), 12);
    assert!(store.find_token("tok").await.unwrap().is_some());
    assert_eq!(store.admin_keys().await.unwrap(), vec![admin]);
    // Read marks, flags and amendments too.
    let out = store
        .commit(vec![
            mark_read("b", "a", 10),
            set_flags("b", "a", Some(true), None),
            amend(
                "a",
                stored_id(&store, "a", "b", 30).await,
                Amendment::Recall,
                0,
            ),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|o| applied(o).1.is_some()));
    let before = summary(&store, "b", "a").await;
    h.close(store).await;
    let store = h.open(&loc).await;
    let after = summary(&store, "b", "a").await;
    assert_eq!(before, after, "conversation state survives a reopen");
    assert_eq!((after.read_seq, after.pinned), (10, true));
    // 31 of a's messages (30 acked, one written after reopen), 10 read, one recalled.
    assert_eq!(after.unread, 20);
    // A block made before the reopen still refuses messages after it.
    store
        .commit(vec![social("b", SocialChange::Block(user("a")))])
        .await
        .unwrap();
    h.close(store).await;
    let store = h.open(&loc).await;
    let out = store
        .commit(vec![text("a", "b", "blocked", "x")])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(Refusal::NotAccepted)
    ));
    h.close(store).await;

    // Groups too: membership, settings and the timeline's seqs survive a reopen.
    let store = h.open(&loc).await;
    let out = store
        .commit(vec![create_group("a", &["b"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    store
        .commit(vec![
            group_text("b", g, "g1", 500),
            change_group(g, "a", GroupChange::MuteAll(true), 500),
        ])
        .await
        .unwrap();
    h.close(store).await;
    let store = h.open(&loc).await;
    let out = store
        .commit(vec![
            group_text("b", g, "g2", 500),
            group_text("a", g, "g3", 500),
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Refused(Refusal::Muted)));
    assert_eq!(
        stored(&out[1]).seq,
        4,
        "the timeline continues after reopen"
    );
    h.close(store).await;
}
