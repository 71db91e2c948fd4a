//! Groups end to end, on a real server with SDK clients: delivery to online and offline
//! members in small and large groups, a group crossing the diffusion threshold, membership
//! changes racing with sends, and the permission errors.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tern_client::{ClientError, Conversation, ErrorCode, MemoryCursorStore, pb};
use tern_testkit::{TestServer, text_of};

fn list(users: &[&str]) -> pb::StringList {
    pb::StringList {
        values: users.iter().map(|u| u.to_string()).collect(),
    }
}

fn add(users: &[&str]) -> pb::group_update_request::Change {
    pb::group_update_request::Change::AddMembers(list(users))
}

fn remove(users: &[&str]) -> pb::group_update_request::Change {
    pb::group_update_request::Change::RemoveMembers(list(users))
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

fn is_text(m: &pb::Message, text: &str) -> bool {
    text_of(m) == text
}

fn event_kind(m: &pb::Message) -> Option<pb::GroupEventKind> {
    match m.content.as_ref()?.body.as_ref()? {
        pb::content::Body::GroupEvent(e) => pb::GroupEventKind::try_from(e.kind).ok(),
        _ => None,
    }
}

fn seqs(ms: &[pb::Message]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_group_reaches_online_members_at_once_and_offline_ones_on_sync() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let mut alice = server.client("alice", "phone").await;
    let mut bob = server.client("bob", "phone").await;
    let group = alice
        .client
        .create_group("trio", &["bob", "carol"])
        .await
        .unwrap();
    assert_eq!(group.member_count, 3);
    assert_eq!(
        group.head_seq, 1,
        "the creation is the first timeline entry"
    );
    assert!(!group.read_diffusion);
    let g = group.group_id;

    let created = bob.group_messages_until(|m| m.seq == 1).await;
    assert_eq!(event_kind(&created[0]), Some(pb::GroupEventKind::Created));
    let ack = alice.client.send_group_text(g, "hello trio").await.unwrap();
    assert_eq!(ack.seq, 2);
    assert!(
        ack.inbox_seq > 0,
        "write diffusion gives the sender an inbox entry"
    );
    let got = bob.group_messages_until(|m| m.seq == 2).await;
    assert!(is_text(got.last().unwrap(), "hello trio"));
    bob.client.send_group_text(g, "hi all").await.unwrap();
    // Alice sees the creation (her own event, pushed like everyone's) and bob's message, not
    // her own send.
    let got = alice.group_messages_until(|m| m.seq == 3).await;
    assert_eq!(seqs(&got), vec![1, 3]);

    // Carol was never online: she catches up on login, in order, exactly once.
    let mut carol = server.client("carol", "laptop").await;
    let got = carol.group_messages_until(|m| m.seq == 3).await;
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    assert!(is_text(&got[1], "hello trio"));
    assert!(is_text(&got[2], "hi all"));
    let history = carol.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(seqs(&history), vec![1, 2, 3]);
    carol.expect_no_message(Duration::from_millis(200)).await;

    let mine = carol.client.groups().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].head_seq, 3);
    assert_eq!(mine[0].my_role, pb::GroupRole::Member as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_stores_a_message_once_and_every_member_gets_it() {
    const MEMBERS: usize = 10_000;
    const ONLINE: usize = 300;
    let server = TestServer::start().await;
    let users: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:05}")).collect();
    server.register_many(&users).await;
    let owner = server.client("m00000", "desk").await;
    let group = owner
        .client
        .create_group(
            "everyone",
            &users[1..1000]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let g = group.group_id;
    for chunk in users[1000..].chunks(1000) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        owner.client.update_group(g, add(&names)).await.unwrap();
    }
    let info = owner
        .client
        .request(pb::GroupInfoRequest { group_id: g })
        .await
        .unwrap()
        .group
        .unwrap();
    assert_eq!(info.member_count as usize, MEMBERS);
    assert!(info.read_diffusion);

    // A few hundred members online; each catches up on its own join events first.
    let mut online = Vec::new();
    for u in &users[1..=ONLINE] {
        online.push(server.client(u, "phone").await);
    }
    let head = info.head_seq;
    for c in &mut online {
        c.group_messages_until(|m| m.seq == head).await;
    }

    let ack = owner
        .client
        .send_group_text(g, "to all ten thousand")
        .await
        .unwrap();
    assert_eq!(ack.seq, head + 1);
    assert_eq!(
        ack.inbox_seq, 0,
        "read diffusion writes no inbox entry, not even the sender's"
    );
    for c in &mut online {
        let got = c.group_messages_until(|m| m.seq == ack.seq).await;
        assert!(is_text(got.last().unwrap(), "to all ten thousand"));
        assert_eq!(got.len(), 1, "nothing but the new message");
    }

    // The store holds one timeline row and no inbox rows for it.
    let id = ack.message_id as i64;
    match &server.config().store {
        Some(url) => {
            let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let count =
                async |sql: &str| -> i64 { db.query_one(sql, &[&id]).await.unwrap().get(0) };
            assert_eq!(
                count("SELECT count(*) FROM messages WHERE id = $1").await,
                1
            );
            assert_eq!(
                count("SELECT count(*) FROM inbox WHERE message_id = $1").await,
                0
            );
        }
        None => {
            let dir = &server.config().data_dir;
            let db = rusqlite::Connection::open(dir.join("tern.db")).unwrap();
            let index = rusqlite::Connection::open(dir.join("tern-index.db")).unwrap();
            let count = |conn: &rusqlite::Connection, sql: &str| -> i64 {
                conn.query_row(sql, [id], |r| r.get(0)).unwrap()
            };
            assert_eq!(count(&db, "SELECT count(*) FROM messages WHERE id = ?1"), 1);
            assert_eq!(
                count(&db, "SELECT count(*) FROM inbox_log WHERE message_id = ?1"),
                0
            );
            assert_eq!(
                count(&index, "SELECT count(*) FROM inbox WHERE message_id = ?1"),
                0
            );
        }
    }

    // A member who was offline learns that the group advanced and pulls it.
    let mut late = server.client(&users[MEMBERS - 1], "tablet").await;
    let got = late.group_messages_until(|m| m.seq == ack.seq).await;
    assert!(is_text(got.last().unwrap(), "to all ten thousand"));
    assert_eq!(
        event_kind(&got[0]),
        Some(pb::GroupEventKind::MembersAdded),
        "a new member's view starts at the event that added it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_crossing_the_threshold_both_ways_stays_consistent() {
    let server = TestServer::start_with(|c| c.group_write_diffusion_max = 3).await;
    server.register(&["a", "b", "c", "d"]).await;
    let a = server.client("a", "phone").await;
    let mut b = server.client("b", "phone").await;
    let g = a
        .client
        .create_group("edge", &["b", "c"])
        .await
        .unwrap()
        .group_id;
    a.client.send_group_text(g, "small").await.unwrap();
    let grown = a.client.update_group(g, add(&["d"])).await.unwrap();
    assert!(grown.group.unwrap().read_diffusion);
    a.client.send_group_text(g, "large").await.unwrap();
    let shrunk = a.client.update_group(g, remove(&["d"])).await.unwrap();
    assert!(!shrunk.group.unwrap().read_diffusion);
    let last = a.client.send_group_text(g, "small again").await.unwrap();
    assert_eq!(last.seq, 6);

    let texts = |ms: &[pb::Message]| -> Vec<String> {
        ms.iter()
            .filter(|m| event_kind(m).is_none())
            .map(|m| text_of(m).to_owned())
            .collect()
    };
    let online = b.group_messages_until(|m| m.seq == 6).await;
    assert_eq!(seqs(&online), (1..=6).collect::<Vec<_>>());
    assert_eq!(texts(&online), ["small", "large", "small again"]);
    // C was offline throughout: its inbox has 1, 2, 3, 5, 6; the pull fills in 4.
    let mut c = server.client("c", "phone").await;
    let got = c.group_messages_until(|m| m.seq == 6).await;
    assert_eq!(seqs(&got), (1..=6).collect::<Vec<_>>());
    assert_eq!(texts(&got), ["small", "large", "small again"]);
    // D, offline too, was a member from seq 3 to its removal at 5: its inbox has 3 and 5, and
    // the timeline (still readable up to its removal) fills in 4. Nothing after reaches it.
    let mut d = server.client("d", "phone").await;
    let got = d.group_messages_until(|m| m.seq == 5).await;
    assert_eq!(seqs(&got), vec![3, 4, 5]);
    d.expect_no_message(Duration::from_millis(300)).await;
}

/// Runs sends from one member while the owner removes and re-adds another, then checks each
/// member received exactly the messages stored while it was a member.
async fn race(write_diffusion_max: usize) {
    let server =
        TestServer::start_with(|c| c.group_write_diffusion_max = write_diffusion_max).await;
    server
        .register(&["owner", "talker", "steady", "flappy"])
        .await;
    let owner = server.client("owner", "phone").await;
    let talker = server.client("talker", "phone").await;
    let mut steady = server.client("steady", "phone").await;
    let mut flappy = server.client("flappy", "phone").await;
    let g = owner
        .client
        .create_group("race", &["talker", "steady", "flappy"])
        .await
        .unwrap()
        .group_id;
    const SENDS: usize = 120;
    const FLAPS: usize = 15;
    let sender = {
        let talker = talker.client.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..SENDS {
                last = talker
                    .send_group_text(g, &format!("m{i}"))
                    .await
                    .unwrap()
                    .seq;
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            last
        })
    };
    for _ in 0..FLAPS {
        owner
            .client
            .update_group(g, remove(&["flappy"]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        owner
            .client
            .update_group(g, add(&["flappy"]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sender.await.unwrap();
    let head = owner.client.send_group_text(g, "end").await.unwrap().seq;

    // The timeline is the truth: flappy is a member from each addition to the next removal.
    let timeline = owner.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(seqs(&timeline), (1..=head).collect::<Vec<_>>());
    let mut member = true;
    let mut expected = BTreeSet::new();
    for m in &timeline {
        match event_kind(m) {
            Some(pb::GroupEventKind::MembersRemoved) => {
                member = false;
                // The removed member sees its own removal.
                expected.insert(m.seq);
            }
            Some(pb::GroupEventKind::MembersAdded) => {
                member = true;
                expected.insert(m.seq);
            }
            _ if member => {
                expected.insert(m.seq);
            }
            _ => {}
        }
    }
    let all = steady.group_messages_until(|m| m.seq == head).await;
    assert_eq!(
        seqs(&all),
        (1..=head).collect::<Vec<_>>(),
        "a steady member misses nothing"
    );
    let got = flappy.group_messages_until(|m| m.seq == head).await;
    let got: BTreeSet<u64> = got.iter().map(|m| m.seq).collect();
    let lost: Vec<_> = expected.difference(&got).collect();
    let leaked: Vec<_> = got.difference(&expected).collect();
    assert!(lost.is_empty(), "lost while a member: {lost:?}");
    assert!(
        leaked.is_empty(),
        "delivered while not a member: {leaked:?}"
    );
    flappy.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_racing_with_sends_in_a_small_group() {
    race(500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_racing_with_sends_in_a_large_group() {
    race(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_refuse_with_documented_codes() {
    let server = TestServer::start().await;
    server
        .register(&["owner", "admin", "member", "muted", "outsider"])
        .await;
    let owner = server.client("owner", "phone").await;
    let member = server.client("member", "phone").await;
    let muted = server.client("muted", "phone").await;
    let outsider = server.client("outsider", "phone").await;
    let admin = server.client("admin", "phone").await;
    let g = owner
        .client
        .create_group("rules", &["admin", "member", "muted"])
        .await
        .unwrap()
        .group_id;
    owner
        .client
        .update_group(
            g,
            pb::group_update_request::Change::SetRole(pb::GroupMemberRole {
                user_id: "admin".into(),
                role: pb::GroupRole::Admin as i32,
            }),
        )
        .await
        .unwrap();

    let e = outsider
        .client
        .send_group_text(g, "let me in")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotAParticipant));
    let e = outsider
        .client
        .send_group_text(9999, "anyone?")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotAParticipant));

    let e = member
        .client
        .update_group(g, remove(&["muted"]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PermissionDenied));
    let e = admin
        .client
        .update_group(g, remove(&["owner"]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PermissionDenied));

    admin
        .client
        .update_group(
            g,
            pb::group_update_request::Change::MuteMember(pb::GroupMute {
                user_id: "muted".into(),
                until_ms: i64::MAX,
            }),
        )
        .await
        .unwrap();
    let e = muted.client.send_group_text(g, "shh").await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Muted));
    owner
        .client
        .update_group(g, pb::group_update_request::Change::MuteAll(true))
        .await
        .unwrap();
    let e = member
        .client
        .send_group_text(g, "quiet?")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Muted));
    admin
        .client
        .send_group_text(g, "admins still talk")
        .await
        .unwrap();

    let e = owner
        .client
        .update_group(g, pb::group_update_request::Change::Leave(true))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::OwnerCannotLeave));
    let e = owner
        .client
        .update_group(g, add(&["ghost"]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::UnknownUser));
    let e = member
        .client
        .request(pb::SendRequest {
            target: Some(pb::send_request::Target::GroupId(g)),
            client_msg_id: "forged".into(),
            content: Some(pb::Content {
                body: Some(pb::content::Body::GroupEvent(pb::GroupEvent::default())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::InvalidContent));

    // A removed member stops at once: no more sends, and of the history only what was
    // stored while it was a member, up to its removal.
    let removal = owner
        .client
        .update_group(g, remove(&["member"]))
        .await
        .unwrap()
        .event_seq;
    owner
        .client
        .send_group_text(g, "after member left")
        .await
        .unwrap();
    let e = member
        .client
        .send_group_text(g, "still here?")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotAParticipant));
    let seen = member.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(seqs(&seen), (1..=removal).collect::<Vec<_>>());
    let e = outsider
        .client
        .whole(Conversation::Group(g))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotAParticipant));

    owner
        .client
        .update_group(g, pb::group_update_request::Change::Dissolve(true))
        .await
        .unwrap();
    let e = owner
        .client
        .send_group_text(g, "anyone?")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::GroupDissolved));
    let e = owner
        .client
        .update_group(g, add(&["outsider"]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::GroupDissolved));
    // The history stays readable.
    let history = admin.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(
        event_kind(history.last().unwrap()),
        Some(pb::GroupEventKind::Dissolved)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_visibility_decides_what_a_new_member_reads() {
    let server = TestServer::start().await;
    server.register(&["owner", "early", "late", "later"]).await;
    let owner = server.client("owner", "phone").await;
    let g = owner
        .client
        .create_group("vis", &["early"])
        .await
        .unwrap()
        .group_id;
    owner.client.send_group_text(g, "before").await.unwrap();
    owner.client.update_group(g, add(&["late"])).await.unwrap();
    let mut late = server.client("late", "phone").await;
    let got = late.group_messages_until(|m| m.seq == 3).await;
    assert_eq!(
        seqs(&got),
        vec![3],
        "from join: the addition is the first thing seen"
    );
    let history = late.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(seqs(&history), vec![3]);

    owner
        .client
        .update_group(
            g,
            pb::group_update_request::Change::SetHistoryVisibility(
                pb::HistoryVisibility::Full as i32,
            ),
        )
        .await
        .unwrap();
    owner.client.update_group(g, add(&["later"])).await.unwrap();
    let later = server.client("later", "phone").await;
    let history = later.client.whole(Conversation::Group(g)).await.unwrap();
    assert_eq!(seqs(&history), (1..=5).collect::<Vec<_>>());
    let members = later
        .client
        .request(pb::GroupMembersRequest {
            group_id: g,
            after: String::new(),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        members
            .members
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        ["early", "late"]
    );
    assert!(members.has_more);
}

/// A device that resumes from a saved position behind a gap it may not read (it was away from
/// the group meanwhile) moves past the gap instead of asking for the same page again, and a
/// device of a removed member still gets what was stored while it was a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_resume_from_saved_positions_across_gaps_and_departures() {
    let server = TestServer::start_with(|c| c.group_write_diffusion_max = 2).await;
    server.register(&["owner", "x", "y"]).await;
    let owner = server.client("owner", "phone").await;
    let g = owner
        .client
        .create_group("resume", &["x", "y"])
        .await
        .unwrap()
        .group_id;
    let store: Arc<MemoryCursorStore> = Arc::default();
    let with_store = |store: Arc<MemoryCursorStore>| {
        move |c: &mut tern_client::ClientConfig| {
            c.cursor_store = store;
            c.sync_page = 3;
        }
    };
    let mut x = server
        .client_with("x", "phone", with_store(store.clone()))
        .await;
    let first = owner.client.send_group_text(g, "first").await.unwrap().seq;
    x.group_messages_until(|m| m.seq == first).await;
    x.client.close_and_wait().await;

    // Away: removed, messages it may not read, re-added, then more than a page of messages.
    owner.client.update_group(g, remove(&["x"])).await.unwrap();
    for i in 0..3 {
        owner
            .client
            .send_group_text(g, &format!("hidden {i}"))
            .await
            .unwrap();
    }
    let rejoin = owner
        .client
        .update_group(g, add(&["x"]))
        .await
        .unwrap()
        .event_seq;
    let mut last = 0;
    for i in 0..7 {
        last = owner
            .client
            .send_group_text(g, &format!("after {i}"))
            .await
            .unwrap()
            .seq;
    }
    let mut x = server
        .client_with("x", "phone", with_store(store.clone()))
        .await;
    let got = x.group_messages_until(|m| m.seq == last).await;
    let got = seqs(&got);
    assert_eq!(got[0], first + 1, "the removal it was part of comes first");
    assert!(
        got.iter().all(|s| *s == first + 1 || *s >= rejoin),
        "nothing from while it was away: {got:?}"
    );
    assert_eq!(&got[1..], (rejoin..=last).collect::<Vec<_>>());
    x.client.close_and_wait().await;

    // Away again, in a read-diffusion group: messages, then removal. The restarted device
    // still gets the messages stored while it was a member, then its removal.
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(
            owner
                .client
                .send_group_text(g, &format!("while away {i}"))
                .await
                .unwrap()
                .seq,
        );
    }
    let removal = owner
        .client
        .update_group(g, remove(&["x"]))
        .await
        .unwrap()
        .event_seq;
    let mut x = server.client_with("x", "phone", with_store(store)).await;
    let got = x.group_messages_until(|m| m.seq == removal).await;
    sent.push(removal);
    assert_eq!(seqs(&got), sent);
    x.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_finds_the_group_the_first_attempt_made() {
    let server = TestServer::start().await;
    server.register(&["owner", "m"]).await;
    let owner = server.client("owner", "phone").await;
    let create = |id: &str| pb::GroupCreateRequest {
        name: "once".into(),
        members: vec!["m".into()],
        client_request_id: id.into(),
        ..Default::default()
    };
    let conn = owner.client.connection().await.unwrap();
    let first = conn.request(create("r1")).await.unwrap().group.unwrap();
    owner
        .client
        .send_group_text(first.group_id, "between")
        .await
        .unwrap();
    let again = conn.request(create("r1")).await.unwrap().group.unwrap();
    assert_eq!(again.group_id, first.group_id);
    assert_eq!(again.head_seq, 2, "the retry recorded no second creation");
    let other = conn.request(create("r2")).await.unwrap().group.unwrap();
    assert_ne!(other.group_id, first.group_id);
    let e = conn.request(create(&"x".repeat(65))).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::InvalidArgument));
    assert_eq!(owner.client.groups().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_clear_errors_and_change_nothing() {
    let server = TestServer::start_with(|c| c.group_max_members = 3).await;
    server.register(&["owner", "a", "b", "c"]).await;
    let owner = server.client("owner", "phone").await;
    let conn = owner.client.connection().await.unwrap();
    let create = |name: &str, members: &[&str], history: i32| pb::GroupCreateRequest {
        name: name.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        history_visibility: history,
        ..Default::default()
    };
    let bad = |e: ClientError| code(&e);
    assert_eq!(
        bad(conn.request(create("  ", &[], 0)).await.unwrap_err()),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        bad(conn
            .request(create(&"n".repeat(129), &[], 0))
            .await
            .unwrap_err()),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        bad(conn.request(create("g", &[], 7)).await.unwrap_err()),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        bad(conn
            .request(create("g", &["not valid"], 0))
            .await
            .unwrap_err()),
        Some(ErrorCode::InvalidUserId)
    );
    assert_eq!(
        bad(conn
            .request(create("g", &["a", "b", "c"], 0))
            .await
            .unwrap_err()),
        Some(ErrorCode::GroupFull)
    );
    assert!(
        owner.client.groups().await.unwrap().is_empty(),
        "nothing was created"
    );

    let g = owner
        .client
        .create_group("ok", &["a"])
        .await
        .unwrap()
        .group_id;
    let update = |change: Option<pb::group_update_request::Change>| pb::GroupUpdateRequest {
        group_id: g,
        change,
    };
    use pb::group_update_request::Change;
    for (change, expected) in [
        (None, ErrorCode::InvalidArgument),
        (Some(Change::Leave(false)), ErrorCode::InvalidArgument),
        (Some(Change::Dissolve(false)), ErrorCode::InvalidArgument),
        (
            Some(Change::SetRole(pb::GroupMemberRole {
                user_id: "a".into(),
                role: pb::GroupRole::Owner as i32,
            })),
            ErrorCode::InvalidArgument,
        ),
        (
            Some(Change::SetRole(pb::GroupMemberRole {
                user_id: "a".into(),
                role: 99,
            })),
            ErrorCode::InvalidArgument,
        ),
        (
            Some(Change::SetRole(pb::GroupMemberRole {
                user_id: "b".into(),
                role: pb::GroupRole::Admin as i32,
            })),
            ErrorCode::InvalidArgument,
        ),
        (
            Some(Change::SetHistoryVisibility(5)),
            ErrorCode::InvalidArgument,
        ),
        (
            Some(Change::Rename(String::new())),
            ErrorCode::InvalidArgument,
        ),
        (Some(add(&["b", "c"])), ErrorCode::GroupFull),
    ] {
        let e = conn.request(update(change.clone())).await.unwrap_err();
        assert_eq!(code(&e), Some(expected), "{change:?}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = conn.request(update(Some(add(&many)))).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::InvalidArgument));
    let e = conn
        .request(pb::GroupMembersRequest {
            group_id: g,
            after: "not valid".into(),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::InvalidArgument));
    let e = owner
        .client
        .send_group_text(0, "nowhere")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotAParticipant));
    for id in ["g:0", "g:01", "g:x"] {
        let e = conn
            .request(pb::HistoryRequest {
                target: Some(pb::history_request::Target::ConversationId(id.into())),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::NotAParticipant), "{id}");
    }
    // Nothing of the refused changes reached the timeline.
    let info = owner.client.groups().await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].head_seq, 1);
    assert_eq!(info[0].member_count, 2);
}
