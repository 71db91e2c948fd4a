//! Profiles, friends and blocks: persisting social changes inside the writer's transaction, and
//! the read queries. The rules are `tern_core::social::decide`; this file loads the state a
//! decision needs and writes what it decided.
//!
//! Each change records its notice first (so the rows can carry the owner's inbox seq as their
//! version) and then updates the keyed tables, all in the batch's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use rustc_hash::FxHashSet;
use tern_core::{
    ConversationId, StoreError, UserId,
    social::{
        FriendRecord, FriendRequestRecord, Profile, SocialChange, SocialMutation, SocialState,
        SocialWrite, StrangerPolicy,
    },
    store::{AppendOutcome, Stored},
};

use super::{
    append::notice_to,
    rows::store_err,
    writer::{Batch, JobError},
};

/// Users who block someone or take messages from friends only.
pub(crate) fn restrictive_users(conn: &Connection) -> rusqlite::Result<FxHashSet<UserId>> {
    conn.prepare(
        "SELECT user_id FROM blocks UNION SELECT user_id FROM profiles WHERE stranger_policy <> 0",
    )?
    .query_map([], |r| r.get::<_, String>(0))?
    .filter_map(|r| match r {
        Ok(s) => UserId::parse(&s).ok().map(Ok),
        Err(e) => Some(Err(e)),
    })
    .collect()
}

/// Whether `recipient` refuses one-to-one messages from `sender`.
pub(crate) fn refuses(
    conn: &Connection,
    recipient: &UserId,
    sender: &UserId,
) -> rusqlite::Result<bool> {
    if blocks(conn, recipient, sender)? {
        return Ok(true);
    }
    Ok(policy(conn, recipient)? == StrangerPolicy::FriendsOnly
        && !friends(conn, recipient, sender)?)
}

/// Whether either of two users blocks the other.
pub(crate) fn blocks_either(conn: &Connection, a: &UserId, b: &UserId) -> rusqlite::Result<bool> {
    Ok(blocks(conn, a, b)? || blocks(conn, b, a)?)
}

fn blocks(conn: &Connection, user: &UserId, other: &UserId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")?
        .exists(params![user.as_str(), other.as_str()])
}

fn friends(conn: &Connection, user: &UserId, other: &UserId) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2 AND deleted = 0",
    )?
    .exists(params![user.as_str(), other.as_str()])
}

fn policy(conn: &Connection, user: &UserId) -> rusqlite::Result<StrangerPolicy> {
    Ok(conn
        .prepare_cached("SELECT stranger_policy FROM profiles WHERE user_id = ?1")?
        .query_row([user.as_str()], |r| r.get::<_, i64>(0))
        .optional()?
        .map_or(StrangerPolicy::Anyone, super::codes::policy_of))
}

const PROFILE_COLUMNS: &str = "u.id, coalesce(p.nickname, ''), coalesce(p.avatar, ''), coalesce(p.signature, ''), coalesce(p.extra, ''), coalesce(p.updated_ms, 0)";

fn profile_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Profile> {
    let id: String = row.get(0)?;
    let user = UserId::parse(&id).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "user id".into())
    })?;
    Ok(Profile {
        user,
        nickname: row.get(1)?,
        avatar: row.get(2)?,
        signature: row.get(3)?,
        extra: row.get(4)?,
        updated_ms: row.get(5)?,
    })
}

/// The profile of an existing user.
pub(crate) fn profile(conn: &Connection, user: &UserId) -> rusqlite::Result<Option<Profile>> {
    conn.prepare_cached(&format!(
        "SELECT {PROFILE_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = ?1"
    ))?
    .query_row([user.as_str()], profile_from_row)
    .optional()
}

/// Applies one social change: loads what the decision needs, lets the rules in core decide,
/// then records the notice and persists the mutations, in the batch's transaction.
pub(crate) fn apply(batch: &mut Batch<'_>, w: SocialWrite) -> Result<AppendOutcome, JobError> {
    let state = load_state(batch, &w)?;
    let decision = match tern_core::social::decide(&w, &state) {
        Ok(d) => d,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    let friends = decision.now_friends;
    let done = |notice: Option<Stored>| AppendOutcome::Social {
        conversation: ConversationId::notices(&w.actor),
        friends,
        notice,
    };
    let Some(notice) = decision.notice else {
        return Ok(done(None));
    };
    // The notice goes first: the rows carry the inbox seq it took as their version, and a
    // refusal leaves nothing written.
    let also: Vec<UserId> = notice.also_to.into_iter().collect();
    let stored = match notice_to(batch, &w.actor, &also, notice.body, w.now_ms)? {
        Ok(s) => s,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    for mutation in &decision.mutations {
        persist(batch, mutation, &stored, w.now_ms)?;
    }
    if decision.restrictive {
        batch.mark_restrictive(&w.actor)?;
    }
    Ok(done(Some(stored)))
}

/// Reads the state of the actor and of the user the change names.
fn load_state(batch: &mut Batch<'_>, w: &SocialWrite) -> Result<SocialState, JobError> {
    let conn = batch.conn;
    let actor = &w.actor;
    let mut state = SocialState::default();
    if matches!(w.change, SocialChange::UpdateProfile(_)) {
        if let Some(current) = profile(conn, actor)? {
            state.actor = Some((current, policy(conn, actor)?));
        }
        return Ok(state);
    }
    let Some(other) = tern_core::social::other_of(&w.change) else {
        return Ok(state);
    };
    state.other_exists = batch.inbox_head(other)?.is_some();
    let conn = batch.conn;
    state.friends = friends(conn, actor, other)?;
    if state.friends {
        state.remark = conn
            .prepare_cached("SELECT remark FROM friends WHERE user_id = ?1 AND friend_id = ?2")?
            .query_row(params![actor.as_str(), other.as_str()], |r| r.get(0))?;
    }
    state.requested_by_other = pending(conn, other, actor)?;
    state.actor_blocks = blocks(conn, actor, other)?;
    state.other_blocks = blocks(conn, other, actor)?;
    Ok(state)
}

/// Persists one decided mutation.
fn persist(
    batch: &mut Batch<'_>,
    mutation: &SocialMutation,
    notice: &Stored,
    now_ms: i64,
) -> Result<(), JobError> {
    let conn = batch.conn;
    match mutation {
        SocialMutation::SetProfile(next, policy) => {
            conn.prepare_cached(
                "INSERT INTO profiles (user_id, nickname, avatar, signature, extra, updated_ms, stranger_policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user_id) DO UPDATE SET nickname = excluded.nickname,
                   avatar = excluded.avatar, signature = excluded.signature, extra = excluded.extra,
                   updated_ms = excluded.updated_ms, stranger_policy = excluded.stranger_policy",
            )?
            .execute(params![
                next.user.as_str(),
                next.nickname,
                next.avatar,
                next.signature,
                next.extra,
                next.updated_ms,
                super::codes::policy(*policy)
            ])?;
        }
        SocialMutation::PutRequest { from, to, message } => {
            conn.prepare_cached(
                "INSERT INTO friend_requests (from_id, to_id, message, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (from_id, to_id) DO UPDATE SET message = excluded.message, created_ms = excluded.created_ms",
            )?
            .execute(params![from.as_str(), to.as_str(), message, now_ms])?;
        }
        SocialMutation::DeleteRequest { from, to } => delete_request(conn, from, to)?,
        SocialMutation::Befriend(a, b) => {
            for (owner, friend) in [(a, b), (b, a)] {
                conn.prepare_cached(
                    "INSERT INTO friends (user_id, friend_id, remark, since_ms, version, deleted)
                     VALUES (?1, ?2, '', ?3, ?4, 0)
                     ON CONFLICT (user_id, friend_id) DO UPDATE SET remark = '', since_ms = excluded.since_ms,
                       version = excluded.version, deleted = 0",
                )?
                .execute(params![
                    owner.as_str(),
                    friend.as_str(),
                    now_ms,
                    version_of(notice, owner) as i64
                ])?;
            }
        }
        SocialMutation::Unfriend(a, b) => {
            for (owner, friend) in [(a, b), (b, a)] {
                conn.prepare_cached(
                    "UPDATE friends SET deleted = 1, version = ?3 WHERE user_id = ?1 AND friend_id = ?2",
                )?
                .execute(params![
                    owner.as_str(),
                    friend.as_str(),
                    version_of(notice, owner) as i64
                ])?;
            }
        }
        SocialMutation::SetRemark {
            owner,
            friend,
            remark,
        } => {
            conn.prepare_cached(
                "UPDATE friends SET remark = ?3, version = ?4 WHERE user_id = ?1 AND friend_id = ?2",
            )?
            .execute(params![
                owner.as_str(),
                friend.as_str(),
                remark,
                version_of(notice, owner) as i64
            ])?;
        }
        SocialMutation::Block { user, blocked } => {
            conn.prepare_cached(
                "INSERT INTO blocks (user_id, blocked_id, created_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![user.as_str(), blocked.as_str(), now_ms])?;
        }
        SocialMutation::Unblock { user, blocked } => {
            conn.prepare_cached("DELETE FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")?
                .execute(params![user.as_str(), blocked.as_str()])?;
        }
    }
    Ok(())
}

fn pending(conn: &Connection, from: &UserId, to: &UserId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
        .exists(params![from.as_str(), to.as_str()])
}

fn delete_request(conn: &Connection, from: &UserId, to: &UserId) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
        .execute(params![from.as_str(), to.as_str()])?;
    Ok(())
}

/// The inbox seq the notice took in `owner`'s inbox.
fn version_of(stored: &Stored, owner: &UserId) -> u64 {
    stored
        .inbox_seqs
        .iter()
        .find(|(u, _)| u == owner)
        .map_or(0, |(_, seq)| *seq)
}

/// Profiles of those of `users` that exist, in order.
pub(crate) fn profiles(conn: &Connection, users: &[UserId]) -> Result<Vec<Profile>, StoreError> {
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        if let Some(p) = profile(conn, u).map_err(store_err)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// A user's stranger policy.
pub(crate) fn stranger_policy(
    conn: &Connection,
    user: &UserId,
) -> Result<StrangerPolicy, StoreError> {
    policy(conn, user).map_err(store_err)
}

/// Users whose nickname starts with `prefix`.
pub(crate) fn search_nicknames(
    conn: &Connection,
    prefix: &str,
    limit: u32,
) -> Result<Vec<Profile>, StoreError> {
    // Every string with the prefix sorts at or after it and before the prefix followed by the
    // largest character, so the nickname index answers it as a range.
    let upper = format!("{prefix}\u{10FFFF}");
    conn.prepare_cached(&format!(
        "SELECT {PROFILE_COLUMNS} FROM profiles p JOIN users u ON u.id = p.user_id
         WHERE p.nickname <> '' AND p.nickname >= ?1 AND p.nickname < ?2
         ORDER BY p.nickname, u.id LIMIT ?3"
    ))
    .and_then(|mut s| {
        s.query_map(params![prefix, upper, i64::from(limit)], profile_from_row)?
            .collect()
    })
    .map_err(store_err)
}

/// Friends of `user` (current ones with `since` 0, else rows changed after `since`).
pub(crate) fn friend_rows(
    conn: &Connection,
    user: &UserId,
    since: u64,
) -> Result<Vec<FriendRecord>, StoreError> {
    let sql = if since == 0 {
        "SELECT friend_id, remark, since_ms, deleted FROM friends WHERE user_id = ?1 AND deleted = 0 AND ?2 = 0 ORDER BY friend_id"
    } else {
        "SELECT friend_id, remark, since_ms, deleted FROM friends WHERE user_id = ?1 AND version > ?2 ORDER BY friend_id"
    };
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params![user.as_str(), since as i64], |r| {
                let id: String = r.get(0)?;
                Ok((id, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, String, i64, bool)>>>()
        })
        .map_err(store_err)?
        .into_iter()
        .map(|(id, remark, since_ms, removed)| {
            Ok(FriendRecord {
                user: UserId::parse(&id)
                    .map_err(|_| StoreError::Corrupt(format!("friend id {id:?}")))?,
                remark,
                since_ms,
                removed,
            })
        })
        .collect()
}

/// Pending requests to or from `user`, newest first.
pub(crate) fn friend_requests(
    conn: &Connection,
    user: &UserId,
    limit: u32,
) -> Result<Vec<FriendRequestRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT from_id, to_id, message, created_ms FROM (
             SELECT * FROM friend_requests WHERE from_id = ?1
             UNION ALL
             SELECT * FROM friend_requests WHERE to_id = ?1
         ) ORDER BY created_ms DESC, from_id, to_id LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![user.as_str(), i64::from(limit)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<(String, String, String, i64)>>>()
    })
    .map_err(store_err)?
    .into_iter()
    .map(|(from, to, message, created_ms)| {
        let parse =
            |s: &str| UserId::parse(s).map_err(|_| StoreError::Corrupt(format!("user id {s:?}")));
        Ok(FriendRequestRecord {
            from: parse(&from)?,
            to: parse(&to)?,
            message,
            created_ms,
        })
    })
    .collect()
}

/// Whether `user` is friends with each of `others`.
pub(crate) fn are_friends(
    conn: &Connection,
    user: &UserId,
    others: &[UserId],
) -> Result<Vec<bool>, StoreError> {
    others
        .iter()
        .map(|o| friends(conn, user, o).map_err(store_err))
        .collect()
}

/// Everyone `user` blocked.
pub(crate) fn blocked(conn: &Connection, user: &UserId) -> Result<Vec<UserId>, StoreError> {
    conn.prepare_cached("SELECT blocked_id FROM blocks WHERE user_id = ?1 ORDER BY blocked_id")
        .and_then(|mut s| {
            s.query_map([user.as_str()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(store_err)?
        .into_iter()
        .map(|id| UserId::parse(&id).map_err(|_| StoreError::Corrupt(format!("user id {id:?}"))))
        .collect()
}
