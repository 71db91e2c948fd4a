//! The read side: history, inboxes, groups, conversation lists and people, straight from the
//! tables, on any node.
//!
//! Seqs of one conversation or one inbox commit in order (their head row serializes the
//! commits that take them), so a reader that reads a head and then the rows up to it sees every
//! one of them, and one that reads rows sees no gap.

use std::{collections::HashMap, sync::Arc};

use deadpool_postgres::GenericClient;
use tern_core::{
    ConversationId, GroupId, MessageId, StoreError, UserId,
    content::Content,
    groups::Member,
    social::{FriendRecord, FriendRequestRecord, Profile},
    store::{
        ConversationSummary, Direction, GroupRecord, HistoryPage, InboxEntry, InboxEvent,
        InboxPage, MAX_UNREAD_COUNTED, StoredMessage, SummaryQuery,
    },
};

use crate::rows::{
    BLOCKS_EITHER, CONVERSATION_STATE, MEMBER_COLUMNS, MESSAGE_COLUMNS, PROFILE_COLUMNS,
    SETTINGS_COLUMNS, conversation_state, member_from_row, member_of, message_from_row,
    profile_from_row, row, row_opt, rows, settings_from_row, user_of,
};

/// A seq or anchor as a BIGINT parameter (anchors may be `u64::MAX`).
fn big(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// One message by id as readers see it now (amended), if it exists.
pub(crate) async fn message<C: GenericClient>(
    c: &C,
    id: MessageId,
) -> Result<Option<StoredMessage>, StoreError> {
    let Some(r) = row_opt(
        c,
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1"),
        &[&big(id.0)],
    )
    .await?
    else {
        return Ok(None);
    };
    let mut messages = [message_from_row(&r, 0)?];
    amend(c, &mut messages).await?;
    let [m] = messages;
    Ok(Some(m))
}

/// Shows each message as it is now: applies the newest edit and the recall, if any, from the
/// events recorded in `amendments`, and withdraws the text of edit events whose message was
/// recalled since. Amendments are rare: a page without any costs one indexed probe.
pub(crate) async fn amend<C: GenericClient>(
    c: &C,
    messages: &mut [StoredMessage],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = messages.iter().map(|m| m.id.0 as i64).collect();
    let edited: Vec<i64> = messages
        .iter()
        .filter_map(|m| match &m.content {
            Content::Edit(e) => Some(big(e.message_id.0)),
            _ => None,
        })
        .collect();
    let found = rows(
        c,
        "SELECT message_id, recall_event, edit_event FROM amendments
         WHERE message_id = ANY($1) OR (message_id = ANY($2) AND recall_event IS NOT NULL)",
        &[&ids, &edited],
    )
    .await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut by_message: HashMap<u64, (Option<i64>, Option<i64>)> = HashMap::new();
    let mut events: Vec<i64> = Vec::new();
    for r in &found {
        let (recall, edit): (Option<i64>, Option<i64>) = (r.get(1), r.get(2));
        by_message.insert(r.get::<_, i64>(0) as u64, (recall, edit));
        events.extend(recall);
        events.extend(edit);
    }
    let events: HashMap<i64, StoredMessage> = rows(
        c,
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ANY($1)"),
        &[&events],
    )
    .await?
    .iter()
    .map(|r| message_from_row(r, 0).map(|m| (m.id.0 as i64, m)))
    .collect::<Result<_, _>>()?;
    for m in messages.iter_mut() {
        if let Some((recall, edit)) = by_message.get(&m.id.0) {
            for event in [edit, recall].into_iter().flatten() {
                let event = events.get(event).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "amendment {event} of message {} is missing",
                        m.id.0
                    ))
                })?;
                tern_core::conversations::apply_amendment(m, event);
            }
        }
        if let Content::Edit(e) = &m.content
            && by_message
                .get(&e.message_id.0)
                .is_some_and(|(recall, _)| recall.is_some())
        {
            tern_core::conversations::withdraw_edit(m);
        }
    }
    Ok(())
}

/// A page of a conversation's history.
pub(crate) async fn history<C: GenericClient>(
    c: &C,
    conversation: &ConversationId,
    anchor_seq: u64,
    direction: Direction,
    limit: u32,
) -> Result<HistoryPage, StoreError> {
    let want = i64::from(limit) + 1;
    let sql = match direction {
        Direction::Backward => format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = $1 AND m.seq < $2
             ORDER BY m.seq DESC LIMIT $3"
        ),
        Direction::Forward => format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation = $1 AND m.seq > $2
             ORDER BY m.seq ASC LIMIT $3"
        ),
    };
    let anchor = match (direction, anchor_seq) {
        (Direction::Backward, 0) => i64::MAX,
        _ => big(anchor_seq),
    };
    let mut messages = rows(c, &sql, &[&conversation.as_str(), &anchor, &want])
        .await?
        .iter()
        .map(|r| message_from_row(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    if direction == Direction::Backward {
        messages.reverse();
    }
    amend(c, &mut messages).await?;
    Ok(HistoryPage { messages, has_more })
}

/// The newest seq of `user`'s inbox (0 when empty or unknown).
pub(crate) async fn inbox_head<C: GenericClient>(c: &C, user: &UserId) -> Result<u64, StoreError> {
    Ok(row_opt(
        c,
        "SELECT seq FROM inbox_heads WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?
    .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// Entries of `user`'s inbox after `after`: the head first, then the entries up to it, so the
/// page is contiguous.
pub(crate) async fn inbox<C: GenericClient>(
    c: &C,
    user: &UserId,
    after: u64,
    limit: u32,
) -> Result<InboxPage, StoreError> {
    let head = inbox_head(c, user).await?;
    if head <= after {
        return Ok(InboxPage {
            entries: Vec::new(),
            head,
        });
    }
    let found = rows(
        c,
        &format!(
            "SELECT i.seq, {MESSAGE_COLUMNS} FROM inbox i JOIN messages m ON m.id = i.message_id
             WHERE i.user_id = $1 AND i.seq > $2 AND i.seq <= $3 ORDER BY i.seq LIMIT $4"
        ),
        &[&user.as_str(), &big(after), &big(head), &i64::from(limit)],
    )
    .await?;
    let mut seqs = Vec::with_capacity(found.len());
    let mut messages = Vec::with_capacity(found.len());
    for r in &found {
        seqs.push(r.get::<_, i64>(0) as u64);
        messages.push(message_from_row(r, 1)?);
    }
    amend(c, &mut messages).await?;
    // A message shared by several entries of the page (never, today) would still be one value.
    let entries = seqs
        .into_iter()
        .zip(messages)
        .map(|(seq, m)| InboxEntry {
            seq,
            event: InboxEvent::Message(Arc::new(m)),
        })
        .collect();
    Ok(InboxPage { entries, head })
}

/// The newest seq of a conversation (0 when it has none).
pub(crate) async fn conversation_head<C: GenericClient>(
    c: &C,
    conversation: &ConversationId,
) -> Result<u64, StoreError> {
    Ok(row_opt(
        c,
        "SELECT seq FROM conversation_heads WHERE conversation = $1",
        &[&conversation.as_str()],
    )
    .await?
    .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// A group and `user`'s membership; the head is read before the membership.
pub(crate) async fn group<C: GenericClient>(
    c: &C,
    id: GroupId,
    user: &UserId,
) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError> {
    let Some(r) = row_opt(
        c,
        &format!("SELECT {SETTINGS_COLUMNS} FROM groups WHERE id = $1"),
        &[&(id.0 as i64)],
    )
    .await?
    else {
        return Ok(None);
    };
    let (settings, member_count) = settings_from_row(id, &r, 0)?;
    // If the user is still a member after the head was read, every message up to the head was
    // stored while it was one.
    let head_seq = conversation_head(c, &ConversationId::group(id)).await?;
    let me = row_opt(
        c,
        &format!("SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = $1 AND user_id = $2"),
        &[&(id.0 as i64), &user.as_str()],
    )
    .await?
    .map(|r| member_from_row(id, &r, 0))
    .transpose()?;
    Ok(Some((
        GroupRecord {
            id,
            settings,
            member_count,
            head_seq,
        },
        me,
    )))
}

/// A page of members ordered by user id.
pub(crate) async fn members<C: GenericClient>(
    c: &C,
    id: GroupId,
    after: Option<&UserId>,
    limit: u32,
) -> Result<Vec<(UserId, Member)>, StoreError> {
    rows(
        c,
        &format!(
            "SELECT user_id, {MEMBER_COLUMNS} FROM group_members
             WHERE group_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3"
        ),
        &[
            &(id.0 as i64),
            &after.map_or("", |u| u.as_str()),
            &i64::from(limit),
        ],
    )
    .await?
    .iter()
    .map(|r| Ok((member_of(id, r.get(0))?, member_from_row(id, r, 1)?)))
    .collect()
}

/// Every group of `user`, ordered by id.
pub(crate) async fn groups_of<C: GenericClient>(
    c: &C,
    user: &UserId,
) -> Result<Vec<(GroupRecord, Member)>, StoreError> {
    let settings = SETTINGS_COLUMNS
        .split(", ")
        .map(|c| format!("g.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let found = rows(
        c,
        &format!(
            "SELECT g.id, gm.role, gm.joined_seq, gm.muted_until_ms, coalesce(h.seq, 0), {settings}
             FROM group_members gm JOIN groups g ON g.id = gm.group_id
             LEFT JOIN conversation_heads h ON h.conversation = 'g:' || g.id
             WHERE gm.user_id = $1 ORDER BY g.id"
        ),
        &[&user.as_str()],
    )
    .await?;
    found
        .iter()
        .map(|r| {
            let id = GroupId(r.get::<_, i64>(0) as u64);
            let me = member_from_row(id, r, 1)?;
            let head_seq = r.get::<_, i64>(4) as u64;
            let (settings, member_count) = settings_from_row(id, r, 5)?;
            Ok((
                GroupRecord {
                    id,
                    settings,
                    member_count,
                    head_seq,
                },
                me,
            ))
        })
        .collect()
}

/// The last membership of a user who left or was removed.
pub(crate) async fn departure<C: GenericClient>(
    c: &C,
    id: GroupId,
    user: &UserId,
) -> Result<Option<(u64, u64)>, StoreError> {
    Ok(row_opt(
        c,
        "SELECT joined_seq, left_seq FROM group_departures WHERE group_id = $1 AND user_id = $2",
        &[&(id.0 as i64), &user.as_str()],
    )
    .await?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
}

/// The one-to-one conversations of `user`.
pub(crate) async fn direct_conversations<C: GenericClient>(
    c: &C,
    user: &UserId,
) -> Result<Vec<ConversationId>, StoreError> {
    Ok(rows(
        c,
        "SELECT conversation FROM user_conversations WHERE user_id = $1",
        &[&user.as_str()],
    )
    .await?
    .iter()
    .map(|r| ConversationId::from_stored(r.get(0)))
    .collect())
}

/// `(read_seq, pinned, muted)` of `user` in `conversation`.
async fn state<C: GenericClient>(
    c: &C,
    user: &UserId,
    conversation: &ConversationId,
) -> Result<(u64, bool, bool), StoreError> {
    Ok(conversation_state(
        row_opt(
            c,
            CONVERSATION_STATE,
            &[&user.as_str(), &conversation.as_str()],
        )
        .await?,
    ))
}

/// The summary of each wanted conversation for `user` (the caller reads them in one snapshot).
pub(crate) async fn summaries<C: GenericClient>(
    c: &C,
    user: &UserId,
    wanted: Vec<SummaryQuery>,
) -> Result<Vec<ConversationSummary>, StoreError> {
    let mut out = Vec::with_capacity(wanted.len());
    for q in wanted {
        let max_seq = conversation_head(c, &q.conversation).await?;
        let (read_seq, pinned, muted) = state(c, user, &q.conversation).await?;
        let last = history(c, &q.conversation, 0, Direction::Backward, 1)
            .await?
            .messages
            .pop();
        // Events (no client message id), the user's own messages and recalled ones never count;
        // counting stops at the cap, so a huge backlog costs a bounded scan.
        let unread: i64 = row(
            c,
            "SELECT count(*) FROM (
               SELECT 1 FROM messages m
               WHERE m.conversation = $1 AND m.seq > $2 AND m.sender <> $3 AND m.client_msg_id <> ''
                 AND NOT EXISTS (SELECT 1 FROM amendments a WHERE a.message_id = m.id AND a.recall_event IS NOT NULL)
               LIMIT $4) AS t",
            &[
                &q.conversation.as_str(),
                &big(read_seq.max(q.floor)),
                &user.as_str(),
                &(MAX_UNREAD_COUNTED as i64),
            ],
        )
        .await?
        .get(0);
        // A peer's read mark is its receipt: none crosses a block, either way.
        let peer_read_seq = match &q.peer {
            Some(peer)
                if !row(c, BLOCKS_EITHER, &[&user.as_str(), &peer.as_str()])
                    .await?
                    .get::<_, bool>(0) =>
            {
                state(c, peer, &q.conversation).await?.0
            }
            _ => 0,
        };
        out.push(ConversationSummary {
            conversation: q.conversation,
            max_seq,
            read_seq,
            unread: unread as u64,
            last,
            pinned,
            muted,
            peer_read_seq,
        });
    }
    Ok(out)
}

/// The read mark of each of `users` in `conversation`.
pub(crate) async fn read_marks<C: GenericClient>(
    c: &C,
    conversation: &ConversationId,
    users: &[UserId],
) -> Result<Vec<u64>, StoreError> {
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let marks: HashMap<String, u64> = rows(
        c,
        "SELECT user_id, read_seq FROM conversation_states WHERE conversation = $1 AND user_id = ANY($2)",
        &[&conversation.as_str(), &names],
    )
    .await?
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
    .collect();
    Ok(users
        .iter()
        .map(|u| marks.get(u.as_str()).copied().unwrap_or(0))
        .collect())
}

/// Profiles of those of `users` that exist, in order.
pub(crate) async fn profiles<C: GenericClient>(
    c: &C,
    users: &[UserId],
) -> Result<Vec<Profile>, StoreError> {
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let mut found: HashMap<UserId, Profile> = rows(
        c,
        &format!(
            "SELECT {PROFILE_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = ANY($1)"
        ),
        &[&names],
    )
    .await?
    .iter()
    .map(|r| profile_from_row(r).map(|(p, _)| (p.user.clone(), p)))
    .collect::<Result<_, _>>()?;
    Ok(users.iter().filter_map(|u| found.remove(u)).collect())
}

/// Users whose nickname starts with `prefix`, ordered by nickname.
pub(crate) async fn search_nicknames<C: GenericClient>(
    c: &C,
    prefix: &str,
    limit: u32,
) -> Result<Vec<Profile>, StoreError> {
    // Every string with the prefix sorts at or after it and before the prefix followed by the
    // largest character, so the nickname index answers it as a range (bytewise, like SQLite).
    let upper = format!("{prefix}\u{10FFFF}");
    rows(
        c,
        &format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles p JOIN users u ON u.id = p.user_id
             WHERE p.nickname <> '' AND p.nickname >= $1 AND p.nickname < $2
             ORDER BY p.nickname, u.id LIMIT $3"
        ),
        &[&prefix, &upper, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| profile_from_row(r).map(|(p, _)| p))
    .collect()
}

/// Friends of `user` (current ones with `since` 0, else rows changed after `since`).
pub(crate) async fn friends<C: GenericClient>(
    c: &C,
    user: &UserId,
    since: u64,
) -> Result<Vec<FriendRecord>, StoreError> {
    let sql = if since == 0 {
        "SELECT friend_id, remark, since_ms, deleted FROM friends
         WHERE user_id = $1 AND NOT deleted AND $2::bigint = 0 ORDER BY friend_id"
    } else {
        "SELECT friend_id, remark, since_ms, deleted FROM friends
         WHERE user_id = $1 AND version > $2 ORDER BY friend_id"
    };
    rows(c, sql, &[&user.as_str(), &big(since)])
        .await?
        .iter()
        .map(|r| {
            Ok(FriendRecord {
                user: user_of(r.get(0))?,
                remark: r.get(1),
                since_ms: r.get(2),
                removed: r.get(3),
            })
        })
        .collect()
}

/// Pending requests to or from `user`, newest first.
pub(crate) async fn friend_requests<C: GenericClient>(
    c: &C,
    user: &UserId,
    limit: u32,
) -> Result<Vec<FriendRequestRecord>, StoreError> {
    rows(
        c,
        "SELECT from_id, to_id, message, created_ms FROM friend_requests
         WHERE from_id = $1 OR to_id = $1
         ORDER BY created_ms DESC, from_id, to_id LIMIT $2",
        &[&user.as_str(), &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FriendRequestRecord {
            from: user_of(r.get(0))?,
            to: user_of(r.get(1))?,
            message: r.get(2),
            created_ms: r.get(3),
        })
    })
    .collect()
}

/// Whether `user` is friends with each of `others`.
pub(crate) async fn are_friends<C: GenericClient>(
    c: &C,
    user: &UserId,
    others: &[UserId],
) -> Result<Vec<bool>, StoreError> {
    let names: Vec<&str> = others.iter().map(UserId::as_str).collect();
    let friends: std::collections::HashSet<String> = rows(
        c,
        "SELECT friend_id FROM friends WHERE user_id = $1 AND friend_id = ANY($2) AND NOT deleted",
        &[&user.as_str(), &names],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    Ok(others
        .iter()
        .map(|o| friends.contains(o.as_str()))
        .collect())
}

/// Everyone `user` blocked, ordered by id.
pub(crate) async fn blocked<C: GenericClient>(
    c: &C,
    user: &UserId,
) -> Result<Vec<UserId>, StoreError> {
    rows(
        c,
        "SELECT blocked_id FROM blocks WHERE user_id = $1 ORDER BY blocked_id",
        &[&user.as_str()],
    )
    .await?
    .iter()
    .map(|r| user_of(r.get(0)))
    .collect()
}
