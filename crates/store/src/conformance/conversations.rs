//! Conversations: read marks and unread counts, recall and edit, flags.

use super::*;

/// Read marks only move forward, reach the reader's and the peer's inboxes as a notice, and set
/// the unread count: messages from others after the mark.
pub async fn read_marks_and_unread_counts(store: &dyn Backend) {
    register(store, &["a", "b", "c"]).await;
    store
        .commit(vec![
            text("a", "b", "1", "one"),
            text("a", "b", "2", "two"),
            text("a", "b", "3", "three"),
            text("b", "a", "4", "four"),
            text("c", "c", "5", "note to self"),
        ])
        .await
        .unwrap();
    let b = summary(store, "b", "a").await;
    assert_eq!((b.max_seq, b.read_seq, b.unread), (4, 0, 3));
    assert_eq!(b.last.as_ref().map(|m| m.client_msg_id.as_str()), Some("4"));
    assert_eq!(summary(store, "a", "b").await.unread, 1);
    assert_eq!(
        store.direct_conversations(&user("a")).await.unwrap(),
        vec![ConversationId::direct(&user("a"), &user("b"))]
    );
    assert_eq!(
        store.direct_conversations(&user("c")).await.unwrap(),
        vec![ConversationId::direct(&user("c"), &user("c"))]
    );

    let out = store
        .commit(vec![
            mark_read("b", "a", 2),
            mark_read("b", "a", 1),
            mark_read("b", "a", 99),
            Write::MarkRead(MarkRead {
                user: user("c"),
                conversation: ConversationId::direct(&user("a"), &user("b")),
                seq: 0,
                now_ms: 0,
            }),
        ])
        .await
        .unwrap();
    let (value, event) = applied(&out[0]);
    assert_eq!(value, 2);
    let event = event.expect("a raised mark records a notice");
    assert_eq!(
        event.message.conversation,
        ConversationId::notices(&user("b"))
    );
    assert_eq!(
        inbox_users(event),
        users(&["a", "b"]),
        "reader and peer get it"
    );
    assert_eq!(plain(&out[1]), (2, false), "marks never move back");
    assert_eq!(
        applied(&out[2]).0,
        4,
        "a mark past the head stops at the head"
    );
    assert!(matches!(
        &out[3],
        AppendOutcome::Refused(Refusal::NotAParticipant)
    ));
    let b = summary(store, "b", "a").await;
    assert_eq!((b.read_seq, b.unread), (4, 0));
    assert_eq!(summary(store, "a", "b").await.peer_read_seq, 4);
    let inbox = store.read_inbox(&user("b"), 0, 100).await.unwrap();
    let InboxEvent::Message(last) = &inbox.entries.last().unwrap().event;
    assert!(matches!(
        &last.content,
        Content::ReadMark(content::ReadMark { read_seq: 4, .. })
    ));
    // Notices are not messages of the conversation: its head and unread count ignore them.
    assert_eq!(summary(store, "a", "b").await.max_seq, 4);
}

/// A recall or an edit changes what history and sync show, records one event, and takes a
/// recalled message out of the unread count.
pub async fn recall_and_edit_amend_what_readers_see(store: &dyn Backend) {
    register(store, &["a", "b"]).await;
    store
        .commit(vec![text("a", "b", "1", "one"), text("a", "b", "2", "two")])
        .await
        .unwrap();
    let (one, two) = (
        stored_id(store, "a", "b", 1).await,
        stored_id(store, "a", "b", 2).await,
    );
    let out = store
        .commit(vec![
            amend("a", one, Amendment::Edit(text_content("one!")), 1_000),
            amend("a", one, Amendment::Edit(text_content("one!")), 1_000),
            amend("b", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Recall, 1_000),
            amend("a", two, Amendment::Edit(text_content("x")), 1_000),
            amend("a", one, Amendment::Recall, 121_000),
            amend("a", 999_999, Amendment::Recall, 0),
        ])
        .await
        .unwrap();
    let (seq, event) = applied(&out[0]);
    assert_eq!(seq, 3, "the edit event takes the conversation's next seq");
    assert_eq!(inbox_users(event.unwrap()), users(&["a", "b"]));
    assert_eq!(
        plain(&out[1]),
        (0, false),
        "the same edit again records nothing"
    );
    assert!(matches!(
        &out[2],
        AppendOutcome::Refused(Refusal::PermissionDenied(_))
    ));
    assert_eq!(applied(&out[3]).0, 4);
    assert_eq!(
        plain(&out[4]),
        (0, false),
        "a second recall records nothing"
    );
    assert!(matches!(
        &out[5],
        AppendOutcome::Refused(Refusal::NotEditable(_))
    ));
    assert!(matches!(
        &out[6],
        AppendOutcome::Refused(Refusal::WindowPassed { .. })
    ));
    assert!(matches!(
        &out[7],
        AppendOutcome::Refused(Refusal::MessageNotFound)
    ));

    let conv = ConversationId::direct(&user("a"), &user("b"));
    let page = store
        .history(&conv, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 4);
    assert_eq!(page.messages[0].content, text_content("one!"));
    assert_eq!(page.messages[0].edited_ms, 1_700_000_001_000);
    assert_eq!(page.messages[1].recalled_by, Some(user("a")));
    assert_eq!(page.messages[1].content, Content::Empty);
    let inbox = store.read_inbox(&user("b"), 0, 10).await.unwrap();
    let InboxEvent::Message(synced) = &inbox.entries[1].event;
    assert_eq!(
        synced.recalled_by,
        Some(user("a")),
        "sync shows the tombstone too"
    );
    assert_eq!(inbox.entries.len(), 4, "and the events, in order");
    assert_eq!(
        summary(store, "b", "a").await.unread,
        1,
        "the recalled one is not unread"
    );
}

/// In a group, an admin may recall a member's message; flags change once and reach only the
/// owner's inbox.
pub async fn group_admins_recall_and_flags_change_once(store: &dyn Backend) {
    register(store, &["o", "m", "x"]).await;
    let out = store
        .commit(vec![create_group("o", &["m"], 500)])
        .await
        .unwrap();
    let (g, _) = group_outcome(&out[0]);
    let out = store
        .commit(vec![group_text("m", g, "hello", 500)])
        .await
        .unwrap();
    let id = stored(&out[0]).id.0;
    let out = store
        .commit(vec![
            amend("x", id, Amendment::Recall, 0),
            amend("o", id, Amendment::Recall, 0),
        ])
        .await
        .unwrap();
    assert!(matches!(
        &out[0],
        AppendOutcome::Refused(Refusal::MessageNotFound)
    ));
    let (_, event) = applied(&out[1]);
    assert_eq!(inbox_users(event.unwrap()), users(&["m", "o"]));
    let conv = ConversationId::group(g);
    let page = store
        .history(&conv, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(page.messages[1].recalled_by, Some(user("o")));

    let group_flags = |pinned| {
        Write::SetFlags(SetFlags {
            user: user("m"),
            conversation: conv.clone(),
            pinned: Some(pinned),
            muted: None,
            now_ms: 0,
        })
    };
    let out = store
        .commit(vec![
            group_flags(true),
            group_flags(true),
            group_flags(false),
        ])
        .await
        .unwrap();
    assert_eq!(inbox_users(applied(&out[0]).1.unwrap()), users(&["m"]));
    assert_eq!(applied(&out[1]).1.map(|_| ()), None);
    assert!(applied(&out[2]).1.is_some());
    let read = Write::MarkRead(MarkRead {
        user: user("m"),
        conversation: conv.clone(),
        seq: 0,
        now_ms: 0,
    });
    let out = store.commit(vec![read]).await.unwrap();
    assert_eq!(applied(&out[0]).0, 3);
    assert_eq!(
        store
            .read_marks(&conv, vec![user("m"), user("o")])
            .await
            .unwrap(),
        vec![3, 0]
    );
}

/// A backlog larger than the cap counts as the cap, wherever its messages are held.
pub async fn unread_counts_stop_at_the_cap(store: &dyn Backend) {
    use tern_core::store::MAX_UNREAD_COUNTED;
    register(store, &["a", "b"]).await;
    let n = MAX_UNREAD_COUNTED as usize + 50;
    let batch: Vec<Write> = (0..n)
        .map(|i| text("a", "b", &format!("m{i}"), "x"))
        .collect();
    store.commit(batch).await.unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, MAX_UNREAD_COUNTED);
    store.commit(vec![mark_read("b", "a", 40)]).await.unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, MAX_UNREAD_COUNTED);
    store
        .commit(vec![mark_read("b", "a", n as u64 - 7)])
        .await
        .unwrap();
    assert_eq!(summary(store, "b", "a").await.unread, 7);
}
