//! Rows to domain records and back: the column lists the queries share, the store's own numbers
//! for domain enums, and small helpers that run a cached statement and map its error once.

use tern_core::{
    ConversationId, GroupId, MessageId, StoreError, UserId,
    groups::{GroupSettings, HistoryVisibility, Member, Role},
    social::{Profile, StrangerPolicy},
    store::StoredMessage,
};
use tokio_postgres::{Row, types::ToSql};

use crate::db_err;

/// The columns [`message_from_row`] reads, for `messages` aliased `m`.
pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.conversation, m.seq, m.sender, m.client_msg_id, m.server_time_ms, m.sender_inbox_seq, m.content";

/// Reads a message laid out as [`MESSAGE_COLUMNS`] from column `offset`.
pub(crate) fn message_from_row(row: &Row, offset: usize) -> Result<StoredMessage, StoreError> {
    let id: i64 = row.get(offset);
    let sender: &str = row.get(offset + 3);
    let sender = UserId::parse(sender).map_err(|_| {
        StoreError::Corrupt(format!("message {id} has an invalid sender {sender:?}"))
    })?;
    let content: &[u8] = row.get(offset + 7);
    let content = tern_core::codes::content::decode(content)
        .map_err(|e| StoreError::Corrupt(format!("message {id} content does not decode: {e}")))?;
    Ok(StoredMessage {
        id: MessageId(id as u64),
        conversation: ConversationId::from_stored(row.get(offset + 1)),
        seq: row.get::<_, i64>(offset + 2) as u64,
        sender,
        client_msg_id: row.get(offset + 4),
        server_time_ms: row.get(offset + 5),
        sender_inbox_seq: row.get::<_, i64>(offset + 6) as u64,
        content,
        recalled_by: None,
        edited_ms: 0,
    })
}

/// A user id read from the database.
pub(crate) fn user_of(s: &str) -> Result<UserId, StoreError> {
    UserId::parse(s).map_err(|_| StoreError::Corrupt(format!("invalid user id {s:?}")))
}

/// Whether `$1` refuses one-to-one messages from `$2`: a block, or a friends-only policy and no
/// friendship.
pub(crate) const REFUSES: &str = "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2)
    OR (coalesce((SELECT stranger_policy FROM profiles WHERE user_id = $1), 0) = 1
        AND NOT EXISTS (SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2 AND NOT deleted))";

/// Whether either of `$1` and `$2` blocks the other.
pub(crate) const BLOCKS_EITHER: &str = "SELECT EXISTS (SELECT 1 FROM blocks
    WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1))";

/// `(read_seq, pinned, muted)` of `$1` in `$2`, as at most one row.
pub(crate) const CONVERSATION_STATE: &str = "SELECT read_seq, pinned, muted FROM conversation_states WHERE user_id = $1 AND conversation = $2";

/// A row of [`CONVERSATION_STATE`], or the state of a user who never read or flagged anything.
pub(crate) fn conversation_state(row: Option<Row>) -> (u64, bool, bool) {
    row.map_or((0, false, false), |r| {
        (r.get::<_, i64>(0) as u64, r.get(1), r.get(2))
    })
}

/// The columns [`settings_from_row`] reads, for `groups` unaliased.
pub(crate) const SETTINGS_COLUMNS: &str =
    "name, avatar, announcement, owner, mute_all, history, dissolved, created_ms, member_count";

fn corrupt_group(id: GroupId, what: &str) -> StoreError {
    StoreError::Corrupt(format!("group {id} has an invalid {what}"))
}

/// Reads [`SETTINGS_COLUMNS`] from `offset`: the settings and the member count.
pub(crate) fn settings_from_row(
    id: GroupId,
    row: &Row,
    offset: usize,
) -> Result<(GroupSettings, usize), StoreError> {
    let owner = UserId::parse(row.get(offset + 3)).map_err(|_| corrupt_group(id, "owner"))?;
    let history = codes::history_of(row.get(offset + 5))
        .ok_or_else(|| corrupt_group(id, "history visibility"))?;
    Ok((
        GroupSettings {
            name: row.get(offset),
            avatar: row.get(offset + 1),
            announcement: row.get(offset + 2),
            owner,
            mute_all: row.get(offset + 4),
            history,
            dissolved: row.get(offset + 6),
            created_ms: row.get(offset + 7),
        },
        row.get::<_, i64>(offset + 8) as usize,
    ))
}

/// The columns [`member_from_row`] reads, for `group_members` unaliased.
pub(crate) const MEMBER_COLUMNS: &str = "role, joined_seq, muted_until_ms";

/// Reads [`MEMBER_COLUMNS`] from `offset`.
pub(crate) fn member_from_row(id: GroupId, row: &Row, offset: usize) -> Result<Member, StoreError> {
    Ok(Member {
        role: codes::role_of(row.get(offset)).ok_or_else(|| corrupt_group(id, "member role"))?,
        joined_seq: row.get::<_, i64>(offset + 1) as u64,
        muted_until_ms: row.get(offset + 2),
    })
}

/// A member's id read from the database.
pub(crate) fn member_of(id: GroupId, s: &str) -> Result<UserId, StoreError> {
    UserId::parse(s).map_err(|_| corrupt_group(id, "member"))
}

/// The columns [`profile_from_row`] reads, for `users u LEFT JOIN profiles p`.
pub(crate) const PROFILE_COLUMNS: &str = "u.id, coalesce(p.nickname, ''), coalesce(p.avatar, ''), coalesce(p.signature, ''), coalesce(p.extra, ''), coalesce(p.updated_ms, 0), coalesce(p.stranger_policy, 0::smallint)";

/// Reads [`PROFILE_COLUMNS`]: the profile and the stranger policy.
pub(crate) fn profile_from_row(row: &Row) -> Result<(Profile, StrangerPolicy), StoreError> {
    Ok((
        Profile {
            user: user_of(row.get(0))?,
            nickname: row.get(1),
            avatar: row.get(2),
            signature: row.get(3),
            extra: row.get(4),
            updated_ms: row.get(5),
        },
        codes::policy_of(row.get(6)),
    ))
}

/// Runs a cached statement and returns its rows.
pub(crate) async fn rows<C: deadpool_postgres::GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query(&stmt, params).await.map_err(db_err)
}

/// Runs a cached statement that returns at most one row.
pub(crate) async fn row_opt<C: deadpool_postgres::GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query_opt(&stmt, params).await.map_err(db_err)
}

/// Runs a cached statement that returns exactly one row.
pub(crate) async fn row<C: deadpool_postgres::GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query_one(&stmt, params).await.map_err(db_err)
}

/// Runs a cached statement and returns how many rows it changed.
pub(crate) async fn exec<C: deadpool_postgres::GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    c.execute(&stmt, params).await.map_err(db_err)
}

/// The stores' numbers for domain enums (`tern_core::codes`, shared with the SQLite store), in
/// the SMALLINT columns this schema keeps them in.
pub(crate) mod codes {
    use super::*;
    use tern_core::codes as shared;

    /// Every stored code is a small number; a wider one cannot come from `shared`.
    fn small(code: i64) -> i16 {
        i16::try_from(code).unwrap_or(i16::MAX)
    }

    pub(crate) fn role(r: Role) -> i16 {
        small(shared::role(r))
    }

    pub(crate) fn role_of(code: i16) -> Option<Role> {
        shared::role_of(i64::from(code))
    }

    pub(crate) fn history(h: HistoryVisibility) -> i16 {
        small(shared::history(h))
    }

    pub(crate) fn history_of(code: i16) -> Option<HistoryVisibility> {
        shared::history_of(i64::from(code))
    }

    pub(crate) fn policy(p: StrangerPolicy) -> i16 {
        small(shared::policy(p))
    }

    pub(crate) fn policy_of(code: i16) -> StrangerPolicy {
        shared::policy_of(i64::from(code))
    }
}
