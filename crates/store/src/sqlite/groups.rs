//! Groups in SQLite: the `groups` and `group_members` tables, written by the writer thread
//! (inside the batch that records each change's event) and read by the readers.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tern_core::{
    GroupId, StoreError, UserId,
    groups::{GroupSettings, GroupState, HistoryVisibility, Member, Members, Mutation, Role},
    store::GroupRecord,
};

use super::{rows::store_err, writer::JobError};

const SETTINGS_COLUMNS: &str =
    "name, avatar, announcement, owner, mute_all, history, dissolved, created_ms, member_count";

fn corrupt(id: GroupId, what: &str) -> StoreError {
    StoreError::Corrupt(format!("group {id} has an invalid {what}"))
}

fn history_code(h: HistoryVisibility) -> i64 {
    super::codes::history(h)
}

/// Reads `SETTINGS_COLUMNS` from `offset`; returns the settings and the member count.
fn settings_from_row(
    id: GroupId,
    row: &rusqlite::Row<'_>,
    offset: usize,
) -> Result<(GroupSettings, usize), StoreError> {
    let get_text = |i: usize| row.get::<_, String>(offset + i).map_err(store_err);
    let get_int = |i: usize| row.get::<_, i64>(offset + i).map_err(store_err);
    let owner = UserId::parse(&get_text(3)?).map_err(|_| corrupt(id, "owner"))?;
    let history =
        super::codes::history_of(get_int(5)?).ok_or_else(|| corrupt(id, "history visibility"))?;
    Ok((
        GroupSettings {
            name: get_text(0)?,
            avatar: get_text(1)?,
            announcement: get_text(2)?,
            owner,
            mute_all: get_int(4)? != 0,
            history,
            dissolved: get_int(6)? != 0,
            created_ms: get_int(7)?,
        },
        get_int(8)? as usize,
    ))
}

fn member_from_row(
    id: GroupId,
    row: &rusqlite::Row<'_>,
    offset: usize,
) -> Result<Member, StoreError> {
    let role = row.get::<_, i64>(offset).map_err(store_err)?;
    Ok(Member {
        role: super::codes::role_of(role).ok_or_else(|| corrupt(id, "member role"))?,
        joined_seq: row.get::<_, i64>(offset + 1).map_err(store_err)? as u64,
        muted_until_ms: row.get::<_, i64>(offset + 2).map_err(store_err)?,
    })
}

/// Loads a group's whole state (settings and every member), for the writer.
pub(crate) fn load_group(conn: &Connection, id: GroupId) -> Result<Option<GroupState>, JobError> {
    let settings = conn
        .prepare_cached(&format!(
            "SELECT {SETTINGS_COLUMNS} FROM groups WHERE id = ?1"
        ))?
        .query_row([id.0 as i64], |row| Ok(settings_from_row(id, row, 0)))
        .optional()?;
    let Some(settings) = settings else {
        return Ok(None);
    };
    let (settings, count) = settings?;
    let mut members = Members::with_capacity_and_hasher(count, Default::default());
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, role, joined_seq, muted_until_ms FROM group_members WHERE group_id = ?1",
    )?;
    let mut rows = stmt.query([id.0 as i64])?;
    while let Some(row) = rows.next()? {
        let user = UserId::parse(&row.get::<_, String>(0)?).map_err(|_| corrupt(id, "member"))?;
        members.insert(user, member_from_row(id, row, 1)?);
    }
    Ok(Some(GroupState {
        id,
        settings,
        members: Arc::new(members),
    }))
}

/// The group `creator` created with `request_id`, if any.
pub(crate) fn created_by_request(
    conn: &Connection,
    creator: &UserId,
    request_id: &str,
) -> Result<Option<GroupId>, JobError> {
    Ok(conn
        .prepare_cached(
            // The extra term lets SQLite use the partial index on non-empty request ids.
            "SELECT id FROM groups WHERE creator = ?1 AND request_id = ?2 AND request_id <> ''",
        )?
        .query_row(params![creator.as_str(), request_id], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map(|id| GroupId(id as u64)))
}

/// Inserts a new group's row (its creator is its first owner) and returns its id.
pub(crate) fn insert_group(
    conn: &Connection,
    settings: &GroupSettings,
    request_id: &str,
) -> Result<GroupId, JobError> {
    conn.prepare_cached(&format!(
        "INSERT INTO groups ({SETTINGS_COLUMNS}, creator, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?4, ?9)"
    ))?
    .execute(params![
        settings.name,
        settings.avatar,
        settings.announcement,
        settings.owner.as_str(),
        settings.mute_all,
        history_code(settings.history),
        settings.dissolved,
        settings.created_ms,
        request_id,
    ])?;
    Ok(GroupId(conn.last_insert_rowid() as u64))
}

/// Persists one decided mutation; `event_seq` is the seq of the event recording it.
pub(crate) fn persist(
    conn: &Connection,
    id: GroupId,
    mutation: &Mutation,
    event_seq: u64,
) -> Result<(), JobError> {
    let gid = id.0 as i64;
    match mutation {
        Mutation::Add(user, role) => {
            conn.prepare_cached(
                "INSERT INTO group_members (group_id, user_id, role, joined_seq, muted_until_ms)
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![
                gid,
                user.as_str(),
                super::codes::role(*role),
                event_seq as i64
            ])?;
            conn.prepare_cached("UPDATE groups SET member_count = member_count + 1 WHERE id = ?1")?
                .execute([gid])?;
        }
        Mutation::Remove(user) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO group_departures (group_id, user_id, joined_seq, left_seq)
                 SELECT group_id, user_id, joined_seq, ?3 FROM group_members
                 WHERE group_id = ?1 AND user_id = ?2",
            )?
            .execute(params![gid, user.as_str(), event_seq as i64])?;
            let n = conn
                .prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
                .execute(params![gid, user.as_str()])?;
            conn.prepare_cached(
                "UPDATE groups SET member_count = member_count - ?2 WHERE id = ?1",
            )?
            .execute(params![gid, n as i64])?;
        }
        Mutation::SetRole(user, role) => {
            conn.prepare_cached(
                "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
            )?
            .execute(params![gid, user.as_str(), super::codes::role(*role)])?;
            if *role == Role::Owner {
                conn.prepare_cached("UPDATE groups SET owner = ?2 WHERE id = ?1")?
                    .execute(params![gid, user.as_str()])?;
            }
        }
        Mutation::Mute(user, until) => {
            conn.prepare_cached(
                "UPDATE group_members SET muted_until_ms = ?3 WHERE group_id = ?1 AND user_id = ?2",
            )?
            .execute(params![gid, user.as_str(), until])?;
        }
        Mutation::Settings(s) => {
            conn.prepare_cached(
                "UPDATE groups SET name = ?2, avatar = ?3, announcement = ?4, owner = ?5,
                 mute_all = ?6, history = ?7, dissolved = ?8 WHERE id = ?1",
            )?
            .execute(params![
                gid,
                s.name,
                s.avatar,
                s.announcement,
                s.owner.as_str(),
                s.mute_all,
                history_code(s.history),
                s.dissolved,
            ])?;
        }
    }
    Ok(())
}

/// A group's record and `user`'s membership, for readers. `head` gives a timeline's head.
pub(crate) fn group(
    conn: &Connection,
    id: GroupId,
    user: &UserId,
    head: impl Fn(GroupId) -> Result<u64, StoreError>,
) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {SETTINGS_COLUMNS} FROM groups WHERE id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row([id.0 as i64], |row| Ok(settings_from_row(id, row, 0)))
                .optional()
        })
        .map_err(store_err)?;
    let Some(found) = found else {
        return Ok(None);
    };
    let (settings, member_count) = found?;
    // The head is read before the membership: if the member is then still a member, every
    // message up to the head was stored while it was one.
    let head_seq = head(id)?;
    let me = conn
        .prepare_cached(
            "SELECT role, joined_seq, muted_until_ms FROM group_members WHERE group_id = ?1 AND user_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![id.0 as i64, user.as_str()], |row| {
                Ok(member_from_row(id, row, 0))
            })
            .optional()
        })
        .map_err(store_err)?
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
pub(crate) fn members(
    conn: &Connection,
    id: GroupId,
    after: Option<&UserId>,
    limit: u32,
) -> Result<Vec<(UserId, Member)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT user_id, role, joined_seq, muted_until_ms FROM group_members
             WHERE group_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3",
        )
        .map_err(store_err)?;
    let mut rows = stmt
        .query(params![
            id.0 as i64,
            after.map_or("", |u| u.as_str()),
            limit as i64
        ])
        .map_err(store_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(store_err)? {
        let user = row.get::<_, String>(0).map_err(store_err)?;
        let user = UserId::parse(&user).map_err(|_| corrupt(id, "member"))?;
        out.push((user, member_from_row(id, row, 1)?));
    }
    Ok(out)
}

/// Every group of `user`, ordered by id.
pub(crate) fn groups_of(
    conn: &Connection,
    user: &UserId,
    head: impl Fn(GroupId) -> Result<u64, StoreError>,
) -> Result<Vec<(GroupRecord, Member)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT g.id, gm.role, gm.joined_seq, gm.muted_until_ms, {} FROM group_members gm
             JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = ?1 ORDER BY g.id",
            SETTINGS_COLUMNS
                .split(", ")
                .map(|c| format!("g.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .map_err(store_err)?;
    let mut rows = stmt.query([user.as_str()]).map_err(store_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(store_err)? {
        let id = GroupId(row.get::<_, i64>(0).map_err(store_err)? as u64);
        let me = member_from_row(id, row, 1)?;
        let (settings, member_count) = settings_from_row(id, row, 4)?;
        out.push((
            GroupRecord {
                id,
                settings,
                member_count,
                head_seq: head(id)?,
            },
            me,
        ));
    }
    Ok(out)
}

/// The last membership of a user who left or was removed: `(joined_seq, left_seq)`.
pub(crate) fn departure(
    conn: &Connection,
    id: GroupId,
    user: &UserId,
) -> Result<Option<(u64, u64)>, StoreError> {
    conn.prepare_cached(
        "SELECT joined_seq, left_seq FROM group_departures WHERE group_id = ?1 AND user_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![id.0 as i64, user.as_str()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()
    })
    .map_err(store_err)
}
