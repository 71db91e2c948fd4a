//! Conversations end to end: read marks across devices, unread counts, recall, edit, flags and
//! the conversation list, through real servers and SDK clients.

use std::{sync::Arc, time::Duration};

use tern_client::{Conversation, ConversationList, ErrorCode, Event, pb};
use tern_testkit::{TestServer, text, text_of};

fn read_of(conversation: &str) -> impl FnMut(Event) -> Option<u64> + '_ {
    move |e| match e {
        Event::Read {
            conversation_id,
            read_seq,
        } if conversation_id == conversation => Some(read_seq),
        _ => None,
    }
}

fn find<'a>(list: &'a pb::ConversationListResponse, id: &str) -> &'a pb::Conversation {
    list.conversations
        .iter()
        .find(|c| c.conversation_id == id)
        .unwrap_or_else(|| panic!("{id} is not in the list: {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_one_device_clears_the_unread_count_on_every_device() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut phone = server.client("alice", "phone").await;
    let mut desktop = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let mut bob = server.client("bob", "phone").await;
    for i in 0..3 {
        bob.client
            .send_text("alice", &format!("m{i}"))
            .await
            .unwrap();
    }
    phone.messages(3).await;
    desktop.messages(3).await;

    let mut list = ConversationList::new();
    list.apply(phone.client.conversations(0).await.unwrap());
    let c = list.get("p:alice:bob").expect("listed");
    assert_eq!(
        (c.unread, c.max_seq, c.read_seq, c.peer.as_str()),
        (3, 3, 0, "bob")
    );
    assert_eq!(text_of(c.last_message.as_ref().unwrap()), "m2");
    assert_eq!(list.total_unread(), 3);

    // The desktop reads: its answer, the phone and the peer all learn it.
    let read = desktop
        .client
        .mark_read(&Conversation::Peer("bob".into()), 0)
        .await
        .unwrap();
    assert_eq!((read.read_seq, read.unread), (3, 0));
    assert_eq!(phone.next_where(read_of("p:alice:bob")).await, 3);
    let receipt = bob
        .next_where(|e| match e {
            Event::PeerRead { user, read_seq, .. } => Some((user, read_seq)),
            _ => None,
        })
        .await;
    assert_eq!(receipt, ("alice".to_owned(), 3));
    let changes = phone.client.conversations(list.version()).await.unwrap();
    assert!(!changes.full, "only what changed");
    assert_eq!(changes.conversations.len(), 1);
    list.apply(changes);
    assert_eq!(list.get("p:alice:bob").unwrap().unread, 0);
    assert_eq!(list.total_unread(), 0);
    let bob_side = bob.client.conversations(0).await.unwrap();
    assert_eq!(find(&bob_side, "p:alice:bob").peer_read_seq, 3);

    // The phone goes away; two more arrive and the desktop reads them meanwhile.
    phone.client.close_and_wait().await;
    for i in 3..5 {
        bob.client
            .send_text("alice", &format!("m{i}"))
            .await
            .unwrap();
    }
    desktop.messages(2).await;
    let before_read = desktop.client.conversations(0).await.unwrap();
    assert_eq!(find(&before_read, "p:alice:bob").unread, 2);
    desktop
        .client
        .mark_read(&Conversation::Peer("bob".into()), 5)
        .await
        .unwrap();
    // Back online, the phone replays the messages and then the read mark, in inbox order.
    let mut phone = server.client("alice", "phone").await;
    let mut order = Vec::new();
    phone
        .next_where(|e| match e {
            Event::Message { message, .. } => {
                order.push(text_of(&message).to_owned());
                None
            }
            Event::Read { read_seq, .. } => Some(read_seq),
            _ => None,
        })
        .await;
    assert_eq!(order, ["m3", "m4"]);
    let changes = phone.client.conversations(list.version()).await.unwrap();
    list.apply(changes);
    let c = list.get("p:alice:bob").unwrap();
    assert_eq!((c.unread, c.read_seq, c.max_seq), (0, 5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_reaches_a_device_that_already_had_the_message() {
    let clock = Arc::new(tern_server::ManualClock::new(1_800_000_000_000));
    let server = TestServer::start_with_clock(|_| {}, clock.clone()).await;
    server.register(&["alice", "bob"]).await;
    let mut phone = server.client("alice", "phone").await;
    let mut desktop = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let bob = server.client("bob", "phone").await;
    let kept = bob.client.send_text("alice", "keep me").await.unwrap();
    let ack = bob.client.send_text("alice", "oops").await.unwrap();
    assert_eq!(phone.messages(2).await[1].1.message_id, ack.message_id);
    desktop.messages(2).await;
    phone.client.close_and_wait().await;

    let e = desktop.client.recall(ack.message_id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied));
    let e = desktop.client.recall(987_654).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageNotFound));
    let recalled = bob.client.recall(ack.message_id).await.unwrap();
    assert_eq!(recalled.conversation_id, "p:alice:bob");
    assert_eq!(recalled.event_seq, 3);
    let again = bob.client.recall(ack.message_id).await.unwrap();
    assert_eq!(again.event_seq, 0, "a second recall records nothing");

    // Online devices learn it at once.
    let live = desktop
        .next_where(|e| match e {
            Event::Recalled {
                message_id,
                by,
                seq,
                ..
            } => Some((message_id, by, seq)),
            _ => None,
        })
        .await;
    assert_eq!(live, (ack.message_id, "bob".to_owned(), ack.seq));
    // The phone, which showed the message before, learns it when it comes back.
    let mut phone = server.client("alice", "phone").await;
    let later = phone
        .next_where(|e| match e {
            Event::Recalled { message_id, .. } => Some(message_id),
            _ => None,
        })
        .await;
    assert_eq!(later, ack.message_id);
    let page = phone
        .client
        .history(&tern_client::HistoryQuery::newest(
            Conversation::Peer("bob".into()),
            10,
        ))
        .await
        .unwrap();
    let tombstone = page.messages.iter().find(|m| m.seq == ack.seq).unwrap();
    assert!(tombstone.recalled && tombstone.content.is_none());
    assert_eq!(tombstone.recalled_by, "bob");
    let list = phone.client.conversations(0).await.unwrap();
    assert_eq!(
        find(&list, "p:alice:bob").unread,
        1,
        "the recalled one no longer counts"
    );

    // After the window, nothing can be recalled.
    clock.advance_ms(121_000);
    let e = bob.client.recall(kept.message_id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WindowPassed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_propagate_and_history_shows_them() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut alice = server.client("alice", "phone").await;
    let bob = server.client("bob", "phone").await;
    let ack = bob.client.send_text("alice", "helo").await.unwrap();
    alice.messages(1).await;
    let e = alice
        .client
        .edit_text(ack.message_id, "mine now")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied));
    let edited = bob.client.edit_text(ack.message_id, "hello").await.unwrap();
    assert!(edited.event_seq > ack.seq && edited.edited_at_ms > 0);
    let (seq, content) = alice
        .next_where(|e| match e {
            Event::Edited { seq, content, .. } => Some((seq, content)),
            _ => None,
        })
        .await;
    assert_eq!((seq, content), (ack.seq, Some(text("hello"))));
    let page = alice
        .client
        .history(&tern_client::HistoryQuery::newest(
            Conversation::Peer("bob".into()),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(text_of(&page.messages[0]), "hello");
    assert_eq!(page.messages[0].edited_at_ms, edited.edited_at_ms);
    let same = bob.client.edit_text(ack.message_id, "hello").await.unwrap();
    assert_eq!(
        same.event_seq, 0,
        "editing to the same text records nothing"
    );

    bob.client.recall(ack.message_id).await.unwrap();
    let e = bob
        .client
        .edit_text(ack.message_id, "again")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotEditable));
    let e = bob
        .client
        .request(pb::EditRequest {
            message_id: ack.message_id,
            content: Some(pb::Content {
                body: Some(pb::content::Body::Recall(pb::Recall::default())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidContent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_follow_the_user_and_muted_conversations_leave_the_total() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let phone = server.client("alice", "phone").await;
    let mut desktop = server
        .client_with("alice", "desktop", |c| c.platform = pb::Platform::Desktop)
        .await;
    let bob = server.client("bob", "phone").await;
    let carol = server.client("carol", "phone").await;
    bob.client.send_text("alice", "from bob").await.unwrap();
    carol.client.send_text("alice", "from carol").await.unwrap();

    let c = phone
        .client
        .set_conversation_flags("p:alice:bob", Some(true), Some(true))
        .await
        .unwrap();
    assert!(c.pinned && c.muted && c.unread == 1);
    let flags = desktop
        .next_where(|e| match e {
            Event::ConversationFlags {
                conversation_id,
                pinned,
                muted,
            } => Some((conversation_id, pinned, muted)),
            _ => None,
        })
        .await;
    assert_eq!(flags, ("p:alice:bob".to_owned(), true, true));
    let mut list = ConversationList::new();
    list.apply(desktop.client.conversations(0).await.unwrap());
    let order: Vec<&str> = list
        .sorted()
        .iter()
        .map(|c| c.conversation_id.as_str())
        .collect();
    assert_eq!(order, ["p:alice:bob", "p:alice:carol"], "pinned first");
    assert_eq!(
        list.total_unread(),
        1,
        "the muted conversation is not counted"
    );

    let e = phone
        .client
        .set_conversation_flags("p:bob:carol", Some(true), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAParticipant));
    let e = phone
        .client
        .set_conversation_flags("p:alice:bob", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_keep_a_read_position_per_member() {
    // A threshold of 2 makes the 3-member group use read diffusion; counts work the same.
    for write_diffusion_max in [500, 2] {
        let server =
            TestServer::start_with(|c| c.group_write_diffusion_max = write_diffusion_max).await;
        server.register(&["owner", "m1", "m2"]).await;
        let owner = server.client("owner", "phone").await;
        let m1 = server.client("m1", "phone").await;
        let group = owner
            .client
            .create_group("team", &["m1", "m2"])
            .await
            .unwrap();
        for i in 0..3 {
            owner
                .client
                .send_group_text(group.group_id, &format!("g{i}"))
                .await
                .unwrap();
        }
        let list = m1.client.conversations(0).await.unwrap();
        let g = find(&list, &group.conversation_id);
        assert_eq!((g.group_id, g.max_seq, g.unread), (group.group_id, 4, 3));
        let read = m1
            .client
            .mark_read(&Conversation::Group(group.group_id), 3)
            .await
            .unwrap();
        assert_eq!((read.read_seq, read.unread), (3, 1));
        let members = owner
            .client
            .request(pb::GroupMembersRequest {
                group_id: group.group_id,
                ..Default::default()
            })
            .await
            .unwrap();
        let marks: Vec<(String, u64)> = members
            .members
            .into_iter()
            .map(|m| (m.user_id, m.read_seq))
            .collect();
        assert_eq!(
            marks,
            [
                ("m1".to_owned(), 3),
                ("m2".to_owned(), 0),
                ("owner".to_owned(), 0)
            ]
        );
        let e = server
            .client("m2", "phone")
            .await
            .client
            .mark_read(&Conversation::Group(group.group_id + 1), 0)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotAParticipant));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_fetches_a_thousand_conversations_in_one_request() {
    let server = TestServer::start().await;
    let peers: Vec<String> = (0..1000).map(|i| format!("peer{i:04}")).collect();
    let mut users = peers.clone();
    users.push("hub".into());
    server.register_many(&users).await;
    let hub = server.client("hub", "phone").await;
    let conn = hub.client.connection().await.unwrap();
    for window in peers.chunks(100) {
        let pending: Vec<_> = window
            .iter()
            .map(|p| {
                conn.start(pb::SendRequest {
                    target: Some(pb::send_request::Target::ToUser(p.clone())),
                    client_msg_id: format!("to-{p}"),
                    content: Some(text(&format!("hello {p}"))),
                })
                .unwrap()
            })
            .collect();
        for p in pending {
            p.await.unwrap();
        }
    }
    // A few answer, so some conversations have unread messages.
    for p in &peers[..3] {
        let c = server.client(p, "phone").await;
        c.client.send_text("hub", "hi hub").await.unwrap();
    }

    let tablet = server
        .client_with("hub", "tablet", |c| c.platform = pb::Platform::Web)
        .await;
    let started = std::time::Instant::now();
    let list = tablet.client.conversations(0).await.unwrap();
    let took = started.elapsed();
    assert!(list.full);
    assert_eq!(list.conversations.len(), 1000);
    let unread: u32 = list.conversations.iter().map(|c| c.unread).sum();
    assert_eq!(unread, 3);
    let newest = &list.conversations[0];
    assert_eq!(text_of(newest.last_message.as_ref().unwrap()), "hi hub");
    assert!(
        list.conversations
            .iter()
            .all(|c| c.last_message.is_some() && c.max_seq >= 1)
    );
    eprintln!("1000 conversations listed in {took:?}");
    // Nothing changed since: the next request carries nothing.
    let again = tablet.client.conversations(list.version).await.unwrap();
    assert!(!again.full && again.conversations.is_empty());
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_far_behind_gets_the_whole_list_instead_of_the_changes() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    let carol = server.client("carol", "phone").await;
    carol
        .client
        .send_text("alice", "an older conversation")
        .await
        .unwrap();
    let before = alice.client.conversations(0).await.unwrap();
    assert_eq!(before.conversations.len(), 1);

    // More entries than the server scans for changes (2000).
    let bob = server.client("bob", "phone").await;
    let conn = bob.client.connection().await.unwrap();
    let ids: Vec<usize> = (0..2001).collect();
    for window in ids.chunks(200) {
        let pending: Vec<_> = window
            .iter()
            .map(|i| {
                conn.start(pb::SendRequest {
                    target: Some(pb::send_request::Target::ToUser("alice".into())),
                    client_msg_id: format!("bulk-{i}"),
                    content: Some(text(&format!("m{i}"))),
                })
                .unwrap()
            })
            .collect();
        for p in pending {
            p.await.unwrap();
        }
    }
    let after = alice.client.conversations(before.version).await.unwrap();
    assert!(after.full, "too much changed: the whole list");
    assert_eq!(after.conversations.len(), 2);
    assert_eq!(find(&after, "p:alice:bob").unread, 2001);
    assert_eq!(find(&after, "p:alice:carol").unread, 1);
    // A few changes later, only those come.
    bob.client.send_text("alice", "one more").await.unwrap();
    let changes = alice.client.conversations(after.version).await.unwrap();
    assert!(!changes.full);
    assert_eq!(changes.conversations.len(), 1);
    assert_eq!(changes.conversations[0].unread, 2002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_withdraws_every_version_wherever_a_device_reads_it() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut phone = server.client("alice", "phone").await;
    let bob = server.client("bob", "phone").await;
    let ack = bob.client.send_text("alice", "secret").await.unwrap();
    phone.messages(1).await;
    bob.client
        .edit_text(ack.message_id, "secret v2")
        .await
        .unwrap();
    bob.client.recall(ack.message_id).await.unwrap();

    // A new device syncs from 0: served from the server's memory (the entries are recent),
    // it sees the tombstone, an edit with no text, and the recall; never the text.
    let mut tablet = server
        .client_with("alice", "tablet", |c| c.platform = pb::Platform::Web)
        .await;
    let mut seen = Vec::new();
    tablet
        .next_where(|e| {
            let done = matches!(e, Event::Recalled { .. });
            seen.push(e);
            done.then_some(())
        })
        .await;
    let rendered = format!("{seen:?}");
    assert!(!rendered.contains("secret"), "{rendered}");
    let original = seen
        .iter()
        .find_map(|e| match e {
            Event::Message { message, .. } if message.message_id == ack.message_id => {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("the original entry, as a tombstone");
    assert!(original.recalled && original.content.is_none());
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Edited { content: None, .. }))
    );
    // History says the same.
    let page = phone
        .client
        .history(&tern_client::HistoryQuery::newest(
            Conversation::Peer("bob".into()),
            10,
        ))
        .await
        .unwrap();
    assert!(!format!("{page:?}").contains("secret"), "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_mutes_and_join_points_bound_edits_recalls_and_receipts() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "owner", "late"]).await;
    let alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;

    // After bob blocks alice, she can still withdraw a message but not edit new text in, and
    // bob's reads send her no receipt.
    let ack = alice.client.send_text("bob", "hi").await.unwrap();
    bob.messages(1).await;
    bob.client.block("alice").await.unwrap();
    let e = alice
        .client
        .edit_text(ack.message_id, "hey you")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotAccepted));
    bob.client
        .mark_read(&Conversation::Peer("alice".into()), 0)
        .await
        .unwrap();
    let list = alice.client.conversations(0).await.unwrap();
    assert_eq!(
        find(&list, "p:alice:bob").peer_read_seq,
        0,
        "no receipt across a block"
    );
    let inbox = alice
        .client
        .request(pb::SyncRequest { after: 0, limit: 0 })
        .await
        .unwrap();
    assert!(
        !format!("{inbox:?}").contains("ReadMark"),
        "no read notice reached alice: {inbox:?}"
    );
    alice.client.recall(ack.message_id).await.unwrap();

    // A muted member cannot edit; a member who joined later cannot touch what came before.
    let owner = server.client("owner", "phone").await;
    let group = owner.client.create_group("g", &["bob"]).await.unwrap();
    let early = bob
        .client
        .send_group_text(group.group_id, "early")
        .await
        .unwrap();
    owner
        .client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::MuteMember(pb::GroupMute {
                user_id: "bob".into(),
                until_ms: i64::MAX,
            }),
        )
        .await
        .unwrap();
    let e = bob
        .client
        .edit_text(early.message_id, "late edit")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Muted));
    owner
        .client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::AddMembers(pb::StringList {
                values: vec!["late".into()],
            }),
        )
        .await
        .unwrap();
    owner
        .client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::SetRole(pb::GroupMemberRole {
                user_id: "late".into(),
                role: pb::GroupRole::Admin as i32,
            }),
        )
        .await
        .unwrap();
    let late = server.client("late", "phone").await;
    let e = late.client.recall(early.message_id).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::MessageNotFound),
        "before its view begins"
    );
    owner.client.recall(early.message_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_left_drops_out_of_the_list_kept_by_version() {
    let server = TestServer::start().await;
    server.register(&["owner", "m"]).await;
    let owner = server.client("owner", "phone").await;
    let m = server.client("m", "phone").await;
    let group = owner.client.create_group("g", &["m"]).await.unwrap();
    owner
        .client
        .send_group_text(group.group_id, "hello")
        .await
        .unwrap();
    let mut list = ConversationList::new();
    list.apply(m.client.conversations(0).await.unwrap());
    assert_eq!(list.get(&group.conversation_id).unwrap().unread, 1);
    m.client
        .update_group(
            group.group_id,
            pb::group_update_request::Change::Leave(true),
        )
        .await
        .unwrap();
    list.apply(m.client.conversations(list.version()).await.unwrap());
    assert!(list.get(&group.conversation_id).is_none());
    assert_eq!(list.total_unread(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_conversation_requests_get_clear_errors_and_change_nothing() {
    let server = TestServer::start_with(|c| c.max_content_bytes = 1024).await;
    server.register(&["alice", "bob"]).await;
    let alice = server.client("alice", "phone").await;
    let bob = server.client("bob", "phone").await;
    let ack = bob.client.send_text("alice", "hi").await.unwrap();
    let conn = alice.client.connection().await.unwrap();
    fn code<T>(r: Result<T, tern_client::ClientError>) -> Option<ErrorCode> {
        r.err().and_then(|e| e.code())
    }
    let read = |target| pb::ReadRequest { target, seq: 0 };
    use pb::read_request::Target;
    assert_eq!(
        code(conn.request(read(None)).await),
        Some(ErrorCode::InvalidArgument)
    );
    for target in [
        Target::ConversationId("nonsense".into()),
        Target::ConversationId("p:bob:carol".into()),
        Target::ConversationId("u:alice".into()),
        Target::GroupId(0),
        Target::GroupId(99),
        Target::Peer("not a user".into()),
    ] {
        assert_eq!(
            code(conn.request(read(Some(target.clone()))).await),
            Some(ErrorCode::NotAParticipant),
            "{target:?}"
        );
    }
    assert_eq!(
        code(conn.request(pb::RecallRequest { message_id: 0 }).await),
        Some(ErrorCode::MessageNotFound)
    );
    let edit = |content| pb::EditRequest {
        message_id: ack.message_id,
        content,
    };
    assert_eq!(
        code(bob.client.request(edit(None)).await),
        Some(ErrorCode::InvalidContent)
    );
    assert_eq!(
        code(bob.client.request(edit(Some(text("")))).await),
        Some(ErrorCode::InvalidContent)
    );
    assert_eq!(
        code(
            bob.client
                .request(edit(Some(text(&"x".repeat(2000)))))
                .await
        ),
        Some(ErrorCode::ContentTooLarge)
    );
    let update = |id: &str| pb::ConversationUpdateRequest {
        conversation_id: id.into(),
        pinned: Some(true),
        muted: None,
    };
    for id in ["", "g:0", "u:alice", "p:bob:carol"] {
        assert_eq!(
            code(conn.request(update(id)).await),
            Some(ErrorCode::NotAParticipant),
            "{id:?}"
        );
    }
    // Nothing above changed anything: the message stands as sent, unread and unpinned.
    let list = alice.client.conversations(0).await.unwrap();
    let c = find(&list, "p:alice:bob");
    assert_eq!((c.unread, c.read_seq, c.pinned), (1, 0, false));
    assert_eq!(text_of(c.last_message.as_ref().unwrap()), "hi");
}
