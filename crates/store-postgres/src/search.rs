//! Message search on PostgreSQL: each findable message's folded text in `message_search`,
//! written in the transaction that stores the message or the edit or recall that changes it,
//! and matched by substring (`strpos`), newest first, within the searcher's conversations.

use async_trait::async_trait;
use tern_core::{
    ConversationId, MessageId, StoreError,
    search::{Candidate, IndexChange, SearchRequest, SearchStore, index_change},
    store::StoredMessage,
};

use crate::{
    PgStore,
    rows::{self, MESSAGE_COLUMNS, exec, message_from_row},
};

/// Applies what `message`, just stored, changes in the search table. A text replaces the one
/// there only if it comes from a later message, so the backfill of old messages never undoes
/// an edit committed meanwhile.
pub(crate) async fn apply<C: deadpool_postgres::GenericClient>(
    c: &C,
    message: &StoredMessage,
) -> Result<(), StoreError> {
    match index_change(message) {
        Some(IndexChange::Put {
            id,
            conversation,
            seq,
            sender,
            text,
        }) => {
            exec(
                c,
                "INSERT INTO message_search (message_id, conversation, seq, sender, text, source)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (message_id) DO UPDATE SET text = excluded.text, source = excluded.source
                 WHERE message_search.source < excluded.source",
                &[
                    &(id.0 as i64),
                    &conversation.as_str(),
                    &(seq as i64),
                    &sender.as_str(),
                    &text,
                    &(message.id.0 as i64),
                ],
            )
            .await?;
        }
        Some(IndexChange::Remove(id)) => {
            exec(
                c,
                "DELETE FROM message_search WHERE message_id = $1",
                &[&(id.0 as i64)],
            )
            .await?;
        }
        None => {}
    }
    Ok(())
}

/// Adds the messages stored before the search table existed, in id order, a chunk per
/// transaction; any node may do it, and several at once do no harm. A recall committed
/// meanwhile may leave its message's old text behind: search checks every candidate against
/// the message as it is now.
pub(crate) async fn backfill(store: &PgStore) -> Result<(), StoreError> {
    loop {
        let mut c = store.client().await?;
        let tx = c.transaction().await.map_err(crate::db_err)?;
        let state = rows::row(
            &tx,
            "SELECT done_upto, backfill_below FROM search_backfill WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
        let (done, below): (i64, i64) = (state.get(0), state.get(1));
        if done + 1 >= below {
            return Ok(());
        }
        let chunk = rows::rows(
            &tx,
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id > $1 AND m.id < $2
                 ORDER BY m.id LIMIT 5000"
            ),
            &[&done, &below],
        )
        .await?;
        let mut last = below - 1;
        if let Some(r) = chunk.last() {
            last = r.get(0);
        }
        for r in &chunk {
            apply(&tx, &message_from_row(r, 0)?).await?;
        }
        exec(
            &tx,
            "UPDATE search_backfill SET done_upto = $1 WHERE id = 1",
            &[&last],
        )
        .await?;
        tx.commit().await.map_err(crate::db_err)?;
        if chunk.is_empty() {
            return Ok(());
        }
    }
}

#[async_trait]
impl SearchStore for PgStore {
    async fn search(&self, request: SearchRequest) -> Result<Vec<Candidate>, StoreError> {
        let c = self.client().await?;
        let sender = request.sender.as_ref().map(|s| s.as_str().to_owned());
        let before = request.before as i64;
        let limit = i64::from(request.limit);
        let found = match &request.scope {
            Some(scope) => {
                let conversations: Vec<&str> =
                    scope.iter().map(|s| s.conversation.as_str()).collect();
                let floors: Vec<i64> = scope.iter().map(|s| s.from_seq as i64).collect();
                rows::rows(
                    &c,
                    "SELECT m.message_id, m.conversation, m.seq FROM message_search m
                     JOIN unnest($1::text[], $2::bigint[]) AS s(conversation, from_seq)
                       ON m.conversation = s.conversation AND m.seq >= s.from_seq
                     WHERE strpos(m.text, $3) > 0 AND ($4::text IS NULL OR m.sender = $4)
                       AND ($5::bigint = 0 OR m.message_id < $5)
                     ORDER BY m.message_id DESC LIMIT $6",
                    &[
                        &conversations,
                        &floors,
                        &request.query,
                        &sender,
                        &before,
                        &limit,
                    ],
                )
                .await?
            }
            None => {
                rows::rows(
                    &c,
                    "SELECT m.message_id, m.conversation, m.seq FROM message_search m
                     WHERE strpos(m.text, $1) > 0 AND ($2::text IS NULL OR m.sender = $2)
                       AND ($3::bigint = 0 OR m.message_id < $3)
                     ORDER BY m.message_id DESC LIMIT $4",
                    &[&request.query, &sender, &before, &limit],
                )
                .await?
            }
        };
        found
            .iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let conversation: String = r.get(1);
                let seq: i64 = r.get(2);
                let (conversation, _) = ConversationId::parse(&conversation).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "search row {id} names conversation {conversation:?}"
                    ))
                })?;
                Ok(Candidate {
                    id: MessageId(id as u64),
                    conversation,
                    seq: seq as u64,
                })
            })
            .collect()
    }
}
