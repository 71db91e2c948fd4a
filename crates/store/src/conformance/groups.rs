//! Groups: write and read diffusion, the rules in batch order, reads.

use super::*;

/// A group within the write-diffusion threshold: every member's inbox gets each message and
/// event, the sender's first; the creation event is seq 1.
pub async fn small_groups_write_every_inbox(store: &dyn Backend) {
    register(store, &["a", "b", "c", "x"]).await;
    let out = store
        .commit(vec![create_group("a", &["b", "c"], 500)])
        .await
        .unwrap();
    let (g, event) = group_outcome(&out[0]);
    let event = event.expect("creation records an event");
    assert_eq!(event.message.seq, 1);
    assert_eq!(
        event.message.client_msg_id, "",
        "events take no client message id"
    );
    assert!(event.push_members.is_none());
    assert_eq!(inbox_users(event), users(&["a", "b", "c"]));
    assert!(matches!(
        &event.message.content,
        Content::GroupEvent(e) if e.kind == content::GroupEventKind::Created
    ));
    let out = store
        .commit(vec![group_text("b", g, "hello", 500)])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[0] else {
        panic!("a member's send was not stored: {:?}", out[0]);
    };
    assert_eq!(s.message.seq, 2);
    assert_eq!(
        s.inbox_seqs[0].0,
        user("b"),
        "the sender's entry comes first"
    );
    assert_eq!(s.message.sender_inbox_seq, s.inbox_seqs[0].1);
    assert_eq!(inbox_users(s), users(&["a", "b", "c"]));
    let c_inbox = store.read_inbox(&user("c"), 0, 10).await.unwrap();
    assert_eq!(c_inbox.entries.len(), 2);
    // Retries are deduplicated like one-to-one messages.
    let out = store
        .commit(vec![group_text("b", g, "hello", 500)])
        .await
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Duplicate(m) if m.seq == 2));
    // A non-member is refused and nothing is written.
    let out = store
        .commit(vec![group_text("x", g, "intrude", 500)])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(Refusal::NotAParticipant)
    ));
    let out = store
        .commit(vec![group_text("a", GroupId(999), "nowhere", 500)])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(Refusal::NotAParticipant)
    ));
    let head = store
        .history(&ConversationId::group(g), 0, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(head.messages.last().unwrap().seq, 2);
}

/// A group above the threshold: a message is one timeline row with no inbox entries, pushed
/// to the members it had when it took its seq; membership events still reach the inboxes of
/// the users they concern.
pub async fn large_groups_write_the_timeline_only(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .commit(vec![create_group("a", &["b", "c"], 2)])
        .await
        .unwrap();
    let (g, event) = group_outcome(&out[0]);
    let event = event.unwrap();
    assert!(event.inbox_seqs.is_empty());
    assert_eq!(event.push_members.as_ref().unwrap().len(), 3);
    let heads_before = store.inbox_head(&user("b")).await.unwrap();
    let out = store
        .commit(vec![group_text("b", g, "big", 2)])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[0] else {
        panic!("not stored: {:?}", out[0]);
    };
    assert!(
        s.inbox_seqs.is_empty(),
        "read diffusion writes no inbox entry"
    );
    assert_eq!(s.message.sender_inbox_seq, 0);
    assert_eq!(s.push_members.as_ref().unwrap().len(), 3);
    assert_eq!(store.inbox_head(&user("b")).await.unwrap(), heads_before);
    let out = store
        .commit(vec![change_group(
            g,
            "a",
            GroupChange::AddMembers(vec![user("d")]),
            2,
        )])
        .await
        .unwrap();
    let (_, event) = group_outcome(&out[0]);
    let event = event.unwrap();
    assert_eq!(
        inbox_users(event),
        users(&["d"]),
        "the added user learns through its inbox"
    );
    assert_eq!(event.push_members.as_ref().unwrap().len(), 4);
    // Shrinking back under the threshold returns to write diffusion.
    let out = store
        .commit(vec![
            change_group(
                g,
                "a",
                GroupChange::RemoveMembers(vec![user("c"), user("d")]),
                2,
            ),
            group_text("b", g, "small again", 2),
        ])
        .await
        .unwrap();
    let AppendOutcome::Stored(s) = &out[1] else {
        panic!("not stored: {:?}", out[1]);
    };
    assert_eq!(inbox_users(s), users(&["a", "b"]));
    assert_eq!(s.message.seq, 5);
}

/// Group rules see the writes before them in the same batch: a removal then a send leaves the
/// removed member out; an addition then a send includes the new member.
pub async fn group_rules_apply_in_batch_order(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .commit(vec![create_group("a", &["b", "c"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    let out = store
        .commit(vec![
            group_text("c", g, "before", 500),
            change_group(g, "a", GroupChange::RemoveMembers(vec![user("c")]), 500),
            group_text("b", g, "after", 500),
            group_text("c", g, "too late", 500),
            change_group(g, "a", GroupChange::AddMembers(vec![user("d")]), 500),
            group_text("b", g, "welcome", 500),
            change_group(g, "b", GroupChange::RemoveMembers(vec![user("a")]), 500),
            change_group(g, "a", GroupChange::Mute(user("b"), i64::MAX), 500),
            group_text("b", g, "muted", 500),
            change_group(g, "a", GroupChange::AddMembers(vec![user("ghost")]), 500),
        ])
        .await
        .unwrap();
    let AppendOutcome::Stored(before) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(inbox_users(before), users(&["a", "b", "c"]));
    let (_, removal) = group_outcome(&out[1]);
    assert_eq!(
        inbox_users(removal.unwrap()),
        users(&["a", "b", "c"]),
        "the removed member sees its removal"
    );
    let AppendOutcome::Stored(after) = &out[2] else {
        panic!("{:?}", out[2])
    };
    assert_eq!(inbox_users(after), users(&["a", "b"]));
    assert!(matches!(
        &out[3],
        AppendOutcome::Refused(Refusal::NotAParticipant)
    ));
    let (_, added) = group_outcome(&out[4]);
    let join_seq = added.unwrap().message.seq;
    let AppendOutcome::Stored(welcome) = &out[5] else {
        panic!("{:?}", out[5])
    };
    assert_eq!(inbox_users(welcome), users(&["a", "b", "d"]));
    assert!(matches!(
        &out[6],
        AppendOutcome::Refused(Refusal::PermissionDenied(_))
    ));
    assert!(matches!(&out[8], AppendOutcome::Refused(Refusal::Muted)));
    assert!(
        matches!(&out[9], AppendOutcome::Refused(Refusal::UnknownUser(u)) if u == &user("ghost"))
    );
    let (record, me) = store.group(g, &user("d")).await.unwrap().unwrap();
    assert_eq!(me.unwrap().joined_seq, join_seq);
    assert_eq!(record.member_count, 3);
    assert!(
        store
            .group(g, &user("c"))
            .await
            .unwrap()
            .unwrap()
            .1
            .is_none()
    );
    let (_, removal) = group_outcome(&out[1]);
    assert_eq!(
        store.departure(g, &user("c")).await.unwrap(),
        Some((1, removal.unwrap().message.seq)),
        "a removed member keeps its last membership's range"
    );
    assert_eq!(store.departure(g, &user("b")).await.unwrap(), None);
}

/// Group reads: the record with its timeline head, paged members, and a user's groups.
pub async fn group_reads(store: &dyn Backend) {
    register(store, &["a", "b", "c", "d"]).await;
    let out = store
        .commit(vec![
            create_group("a", &["b", "c", "d"], 500),
            create_group("b", &["a"], 500),
        ])
        .await
        .unwrap();
    let (g1, _) = group_outcome(&out[0]);
    let (g2, _) = group_outcome(&out[1]);
    store
        .commit(vec![
            group_text("a", g1, "one", 500),
            change_group(g1, "a", GroupChange::SetRole(user("b"), Role::Admin), 500),
            change_group(g1, "a", GroupChange::Rename("renamed".into()), 500),
        ])
        .await
        .unwrap();
    let (record, me) = store.group(g1, &user("b")).await.unwrap().unwrap();
    assert_eq!(record.head_seq, 4);
    assert_eq!(record.settings.name, "renamed");
    assert_eq!(record.settings.owner, user("a"));
    assert_eq!(record.member_count, 4);
    assert_eq!(me.unwrap().role, Role::Admin);
    assert!(
        store
            .group(GroupId(999), &user("a"))
            .await
            .unwrap()
            .is_none()
    );
    let page = store.group_members(g1, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        users(&["a", "b"])
    );
    let page = store.group_members(g1, Some(user("b")), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        users(&["c", "d"])
    );
    let mine = store.groups_of(&user("a")).await.unwrap();
    assert_eq!(
        mine.iter().map(|(r, _)| r.id).collect::<Vec<_>>(),
        vec![g1, g2]
    );
    assert_eq!(mine[0].0.head_seq, 4);
    assert_eq!(mine[1].1.role, Role::Member);
    assert!(store.groups_of(&user("x")).await.unwrap().is_empty());

    // A create repeating its request id, in a later batch or the same one, finds the first.
    let keyed = || {
        let Write::CreateGroup(mut new) = create_group("c", &["d"], 500) else {
            unreachable!("create_group builds a create")
        };
        new.request_id = "req-1".into();
        Write::CreateGroup(new)
    };
    let out = store.commit(vec![keyed(), keyed()]).await.unwrap();
    let (first, event) = group_outcome(&out[0]);
    assert!(event.is_some());
    let (again, event) = group_outcome(&out[1]);
    assert_eq!(again, first);
    assert!(event.is_none(), "a retry records nothing");
    let out = store.commit(vec![keyed()]).await.unwrap();
    assert_eq!(group_outcome(&out[0]).0, first);
    let owned = store
        .groups_of(&user("c"))
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.settings.owner == user("c"))
        .count();
    assert_eq!(owned, 1, "one group for three requests");
}
