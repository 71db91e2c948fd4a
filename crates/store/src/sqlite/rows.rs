//! Converting rows to the service's records, and SQLite errors to the store's.

use rusqlite::Row;
use tern_core::{ConversationId, MessageId, StoreError, UserId, store::StoredMessage};

/// The columns [`message_from_row`] reads, in order, for the `messages` table aliased `m`.
pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.conversation, m.seq, m.sender, m.client_msg_id, m.server_time_ms, m.sender_inbox_seq, m.content";

/// Reads a message from columns `offset..offset + 8`, laid out as [`MESSAGE_COLUMNS`].
pub(crate) fn message_from_row(row: &Row<'_>, offset: usize) -> Result<StoredMessage, StoreError> {
    let int = |i: usize| row.get::<_, i64>(offset + i).map_err(store_err);
    let text = |i: usize| row.get::<_, String>(offset + i).map_err(store_err);
    let id = int(0)? as u64;
    let sender = text(3)?;
    let sender = UserId::parse(&sender).map_err(|_| {
        StoreError::Corrupt(format!("message {id} has an invalid sender {sender:?}"))
    })?;
    let content = row
        .get_ref(offset + 7)
        .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
        .map_err(store_err)?;
    let content = tern_core::codes::content::decode(content)
        .map_err(|e| StoreError::Corrupt(format!("message {id} content does not decode: {e}")))?;
    Ok(StoredMessage {
        id: MessageId(id),
        conversation: ConversationId::from_stored(&text(1)?),
        seq: int(2)? as u64,
        sender,
        client_msg_id: text(4)?,
        server_time_ms: int(5)?,
        sender_inbox_seq: int(6)? as u64,
        content,
        recalled_by: None,
        edited_ms: 0,
    })
}

/// Maps a SQLite error to the store's error class.
pub(crate) fn store_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseCorrupt | C::NotADatabase => StoreError::Corrupt(e.to_string()),
            // A key another write took first: the whole write may be retried.
            C::ConstraintViolation => StoreError::Conflict(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        },
        // A value of the wrong type in a column: the data, not the moment, is at fault.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}
