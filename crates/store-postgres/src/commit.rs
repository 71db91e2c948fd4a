//! Committing a batch: one PostgreSQL transaction per batch, retried whole when it loses a race
//! with another node.
//!
//! Each write locks what its decision depends on before it reads it, always in one order:
//! conversation head rows first (the actor's notice timeline, then the conversation the write
//! is about, whose head row also stands for the group's state), then the inbox head rows of
//! every user involved, sorted, in one statement. A user's social and conversation state only
//! changes in commits holding that user's inbox or notice-timeline row, so once they are locked
//! what the rules read stays true until COMMIT. Seqs are taken from the locked rows and written
//! back once at the end of the batch. Batches of several writes may still lock in an order that
//! crosses another node's: PostgreSQL then aborts one of them as a deadlock, and the batch is
//! retried from the start, deduplication making a retried message a duplicate of itself.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use deadpool_postgres::Transaction;
use tern_core::{
    ConversationId, ConversationKind, GroupId, Refusal, StoreError, UserId,
    content::Content,
    conversations::{
        ConversationStanding, FlagsChange, MarkDecision, amend_role, decide_amend, decide_flags,
        decide_mark_read,
    },
    groups::{
        self, Diffusion, GroupChange, GroupChangeRequest, GroupSettings, GroupState, Members,
        Mutation, NewGroup, Role,
    },
    store::{
        Amend, Amendment, AppendOutcome, Audience, MarkRead, NewMessage, SetFlags, Stored,
        StoredMessage, Write,
    },
    webhooks::Hint,
};
use tokio_postgres::types::ToSql;

use crate::{
    PgStore,
    rows::{
        self, BLOCKS_EITHER, CONVERSATION_STATE, MEMBER_COLUMNS, MESSAGE_COLUMNS, REFUSES,
        SETTINGS_COLUMNS, codes, conversation_state, member_from_row, member_of, message_from_row,
        settings_from_row,
    },
};

/// How many times a batch is tried before a conflict is reported to the caller.
const MAX_ATTEMPTS: u32 = 8;

/// Commits `writes` in one transaction, retrying the whole batch after a conflict.
pub(crate) async fn commit(
    store: &PgStore,
    writes: Vec<Write>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    let mut attempt = 1;
    loop {
        match attempt_commit(store, writes.clone()).await {
            Err(StoreError::Conflict(why)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, %why, "a commit lost a race; retrying the batch");
                // Spread the retries of two nodes that collided, more with every attempt.
                let ms = rand::random_range(0..(2u64 << attempt.min(6)));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn attempt_commit(
    store: &PgStore,
    writes: Vec<Write>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(crate::db_err)?;
    let mut batch = Batch::new(&tx);
    batch.lock_planned(store, &writes).await?;
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut events = store.routes.collector();
    for write in writes {
        let hint = events.as_ref().map(|_| Hint::of(&write));
        let outcome = batch.apply(store, write).await?;
        if let (Some(events), Some(hint)) = (events.as_mut(), hint) {
            events.add(&hint, &outcome);
        }
        outcomes.push(outcome);
    }
    batch.write_heads().await?;
    // Queued in this transaction: the events are exactly as durable as the writes.
    let queued = match events {
        Some(e) => crate::outbox::insert(&tx, &e.into_rows()).await?,
        None => 0,
    };
    let groups = std::mem::take(&mut batch.groups);
    drop(batch);
    tx.commit().await.map_err(crate::db_err)?;
    if queued > 0 {
        store.routes.notify_queued();
    }
    // Only now: a batch rolled back must leave no trace in the node's cache.
    store.remember_groups(
        groups
            .into_values()
            .map(|g| (g.state.id, g.version, g.state.members)),
    );
    Ok(outcomes)
}

/// A head row locked by this transaction: the seq it held and the seq it holds now.
#[derive(Debug, Clone, Copy)]
struct Head {
    read: u64,
    now: u64,
}

/// A group's state as this transaction sees it.
struct LoadedGroup {
    state: GroupState,
    /// The `version` column, advanced by this transaction's changes.
    version: i64,
}

/// The state of one batch's transaction.
struct Batch<'t> {
    tx: &'t Transaction<'t>,
    /// Inbox heads locked so far (`None`: no such user).
    inboxes: HashMap<UserId, Option<Head>>,
    /// Conversation heads locked so far.
    conversations: HashMap<ConversationId, Head>,
    /// Groups loaded (under their timeline's lock) so far.
    groups: HashMap<GroupId, LoadedGroup>,
}

/// What [`Batch::insert`] needs of a message.
struct Row<'a> {
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: String,
    server_time_ms: i64,
    content: Content,
    inboxes: &'a [UserId],
}

/// A message appended, with `(user, inbox seq)` of each entry it got.
type Inserted = (Arc<StoredMessage>, Vec<(UserId, u64)>);

/// Appends a message, its inbox entries and its searchable text (`$10`, when it has one) in one
/// statement.
const INSERT_MESSAGE: &str = "WITH m AS (
    INSERT INTO messages (conversation, seq, sender, client_msg_id, server_time_ms, sender_inbox_seq, content)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
), i AS (
    INSERT INTO inbox (user_id, seq, message_id)
    SELECT t.u, t.s, m.id FROM m, unnest($8::text[], $9::bigint[]) AS t(u, s)
), s AS (
    INSERT INTO message_search (message_id, conversation, seq, sender, text, source)
    SELECT m.id, $1, $2, $3, $10::text, m.id FROM m WHERE $10::text IS NOT NULL
)
SELECT id FROM m";

impl<'t> Batch<'t> {
    fn new(tx: &'t Transaction<'t>) -> Self {
        Self {
            tx,
            inboxes: HashMap::new(),
            conversations: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    async fn apply(&mut self, store: &PgStore, write: Write) -> Result<AppendOutcome, StoreError> {
        match write {
            Write::Message(m) => self.append_message(store, m).await,
            Write::CreateGroup(new) => self.create_group(store, new).await,
            Write::ChangeGroup(req) => self.change_group(store, req).await,
            Write::MarkRead(m) => self.mark_read(store, m).await,
            Write::Amend(a) => self.amend(store, a).await,
            Write::SetFlags(f) => self.set_flags(store, f).await,
            Write::Social(w) => self.social(w).await,
        }
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        rows::rows(self.tx, sql, params).await
    }

    async fn row_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        rows::row_opt(self.tx, sql, params).await
    }

    pub(crate) async fn exec(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        rows::exec(self.tx, sql, params).await
    }

    /// Locks, before any write runs, every head row the batch is known to need, in the one
    /// order every transaction uses: group timelines, then the other conversations (sorted,
    /// and `g:` sorts first), then inboxes (sorted). Transactions that only lock up front
    /// cannot deadlock with each other; a write that turns out to need more (a member added
    /// earlier in the same batch) locks it when it gets there, and in the rare deadlock that
    /// this allows, the batch is retried.
    async fn lock_planned(&mut self, store: &PgStore, writes: &[Write]) -> Result<(), StoreError> {
        let mut groups: BTreeSet<GroupId> = BTreeSet::new();
        let mut conversations: BTreeSet<ConversationId> = BTreeSet::new();
        let mut users: BTreeSet<UserId> = BTreeSet::new();
        // Groups whose members get inbox entries when at most this many.
        let mut spread: Vec<(GroupId, usize, Vec<UserId>)> = Vec::new();
        let mut conversation = |c: &ConversationId, groups: &mut BTreeSet<GroupId>| match c.kind() {
            Ok(ConversationKind::Group(g)) => {
                groups.insert(g);
            }
            _ => {
                conversations.insert(c.clone());
            }
        };
        for w in writes {
            match w {
                Write::Message(m) => match &m.audience {
                    Audience::Direct(inboxes) => {
                        conversation(&m.conversation, &mut groups);
                        users.extend(inboxes.iter().cloned());
                    }
                    Audience::Group {
                        group,
                        write_diffusion_max,
                    } => {
                        groups.insert(*group);
                        spread.push((*group, *write_diffusion_max, vec![m.sender.clone()]));
                    }
                },
                Write::CreateGroup(new) => {
                    if new.members.len() < new.limits.write_diffusion_max {
                        users.extend(new.members.iter().cloned());
                    }
                    users.insert(new.owner.clone());
                }
                Write::ChangeGroup(req) => {
                    groups.insert(req.group);
                    let mut named = vec![req.actor.clone()];
                    match &req.change {
                        GroupChange::AddMembers(list) | GroupChange::RemoveMembers(list) => {
                            named.extend(list.iter().cloned());
                        }
                        GroupChange::SetRole(u, _)
                        | GroupChange::TransferOwner(u)
                        | GroupChange::Mute(u, _) => named.push(u.clone()),
                        _ => {}
                    }
                    spread.push((req.group, req.limits.write_diffusion_max, named));
                }
                Write::MarkRead(MarkRead {
                    user,
                    conversation: c,
                    ..
                })
                | Write::SetFlags(SetFlags {
                    user,
                    conversation: c,
                    ..
                }) => {
                    conversation(&ConversationId::notices(user), &mut groups);
                    conversation(c, &mut groups);
                    users.insert(user.clone());
                    users.extend(c.peer_of(user));
                }
                Write::Amend(a) => {
                    let Some(row) = self
                        .row_opt(
                            "SELECT conversation FROM messages WHERE id = $1",
                            &[&(a.message.0.min(i64::MAX as u64) as i64)],
                        )
                        .await?
                    else {
                        continue;
                    };
                    let c = ConversationId::from_stored(row.get(0));
                    match c.kind() {
                        Ok(ConversationKind::Group(g)) => {
                            groups.insert(g);
                            spread.push((g, a.write_diffusion_max, vec![a.actor.clone()]));
                        }
                        _ => {
                            users.insert(a.actor.clone());
                            users.extend(c.peer_of(&a.actor));
                            conversation(&c, &mut groups);
                        }
                    }
                }
                Write::Social(w) => {
                    conversation(&ConversationId::notices(&w.actor), &mut groups);
                    users.insert(w.actor.clone());
                    users.extend(tern_core::social::other_of(&w.change).cloned());
                }
            }
        }
        let group_heads: Vec<String> = groups
            .iter()
            .map(|g| ConversationId::group(*g).as_str().to_owned())
            .collect();
        if !group_heads.is_empty() {
            // Only existing groups have a head row; a missing one is found missing later.
            for r in self
                .rows(
                    "SELECT conversation, seq FROM conversation_heads WHERE conversation = ANY($1)
                     ORDER BY conversation FOR UPDATE",
                    &[&group_heads],
                )
                .await?
            {
                let seq = r.get::<_, i64>(1) as u64;
                self.conversations.insert(
                    ConversationId::from_stored(r.get(0)),
                    Head {
                        read: seq,
                        now: seq,
                    },
                );
            }
        }
        let names: Vec<&str> = conversations.iter().map(ConversationId::as_str).collect();
        if !names.is_empty() {
            // Creates missing rows and locks every row, in sorted order, in one statement.
            for r in self
                .rows(
                    "INSERT INTO conversation_heads (conversation, seq)
                     SELECT c, 0 FROM unnest($1::text[]) AS c ORDER BY c COLLATE \"C\"
                     ON CONFLICT (conversation) DO UPDATE SET seq = conversation_heads.seq
                     RETURNING conversation, seq",
                    &[&names],
                )
                .await?
            {
                let seq = r.get::<_, i64>(1) as u64;
                self.conversations.insert(
                    ConversationId::from_stored(r.get(0)),
                    Head {
                        read: seq,
                        now: seq,
                    },
                );
            }
        }
        for (g, write_max, named) in spread {
            users.extend(named);
            if let Some(state) = self.group(store, g).await?
                && state.members.len() <= write_max
            {
                users.extend(state.members.keys().cloned());
            }
        }
        let users: Vec<UserId> = users.into_iter().collect();
        self.lock_inboxes(&users).await
    }

    /// Locks the inbox head rows of those of `users` not locked yet, in one sorted statement.
    pub(crate) async fn lock_inboxes(&mut self, users: &[UserId]) -> Result<(), StoreError> {
        let mut want: Vec<&str> = users
            .iter()
            .filter(|u| !self.inboxes.contains_key(*u))
            .map(UserId::as_str)
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        want.sort_unstable();
        want.dedup();
        let found: HashMap<String, u64> = self
            .rows(
                "SELECT user_id, seq FROM inbox_heads WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
                &[&want],
            )
            .await?
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect();
        for u in users {
            let head = found.get(u.as_str()).map(|&s| Head { read: s, now: s });
            self.inboxes.entry(u.clone()).or_insert(head);
        }
        Ok(())
    }

    /// The newest inbox seq of `user` (locking its row), or `None` if the user does not exist.
    pub(crate) async fn inbox_head(&mut self, user: &UserId) -> Result<Option<u64>, StoreError> {
        self.lock_inboxes(std::slice::from_ref(user)).await?;
        Ok(self.inboxes.get(user).copied().flatten().map(|h| h.now))
    }

    /// The head of a conversation that has a head row, locked; `None` when it has none.
    async fn existing_head(&mut self, c: &ConversationId) -> Result<Option<u64>, StoreError> {
        if let Some(h) = self.conversations.get(c) {
            return Ok(Some(h.now));
        }
        let seq = self
            .row_opt(
                "SELECT seq FROM conversation_heads WHERE conversation = $1 FOR UPDATE",
                &[&c.as_str()],
            )
            .await?
            .map(|r| r.get::<_, i64>(0) as u64);
        if let Some(seq) = seq {
            self.conversations.insert(
                c.clone(),
                Head {
                    read: seq,
                    now: seq,
                },
            );
        }
        Ok(seq)
    }

    /// The newest seq of `c` (0 when it has no message yet), its head row locked (and created
    /// when missing).
    pub(crate) async fn conversation_head(
        &mut self,
        c: &ConversationId,
    ) -> Result<u64, StoreError> {
        if let Some(seq) = self.existing_head(c).await? {
            return Ok(seq);
        }
        // Two commits creating the same row: the second waits for the first and inserts nothing.
        self.exec(
            "INSERT INTO conversation_heads (conversation, seq) VALUES ($1, 0) ON CONFLICT (conversation) DO NOTHING",
            &[&c.as_str()],
        )
        .await?;
        self.existing_head(c).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("conversation {} lost its head row", c.as_str()))
        })
    }

    /// Writes every head this batch advanced.
    async fn write_heads(&mut self) -> Result<(), StoreError> {
        let (mut users, mut seqs): (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
        for (u, h) in &self.inboxes {
            if let Some(h) = h
                && h.now != h.read
            {
                users.push(u.as_str());
                seqs.push(h.now as i64);
            }
        }
        if !users.is_empty() {
            self.exec(
                "UPDATE inbox_heads AS h SET seq = v.seq FROM unnest($1::text[], $2::bigint[]) AS v(u, seq) WHERE h.user_id = v.u",
                &[&users, &seqs],
            )
            .await?;
        }
        let (mut convs, mut seqs): (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
        for (c, h) in &self.conversations {
            if h.now != h.read {
                convs.push(c.as_str());
                seqs.push(h.now as i64);
            }
        }
        if !convs.is_empty() {
            self.exec(
                "UPDATE conversation_heads AS h SET seq = v.seq FROM unnest($1::text[], $2::bigint[]) AS v(c, seq) WHERE h.conversation = v.c",
                &[&convs, &seqs],
            )
            .await?;
        }
        Ok(())
    }

    /// Appends one message and its inbox entries; `Err(user)` (and nothing written) when an
    /// inbox user does not exist.
    async fn insert(&mut self, row: Row<'_>) -> Result<Result<Inserted, UserId>, StoreError> {
        let seq = self.conversation_head(&row.conversation).await? + 1;
        self.lock_inboxes(row.inboxes).await?;
        let mut inbox_seqs = Vec::with_capacity(row.inboxes.len());
        for user in row.inboxes {
            match self.inboxes.get(user).copied().flatten() {
                Some(head) => inbox_seqs.push((user.clone(), head.now + 1)),
                None => return Ok(Err(user.clone())),
            }
        }
        let sender_inbox_seq = match inbox_seqs.first() {
            Some((first, seq)) if *first == row.sender => *seq,
            _ => 0,
        };
        let users: Vec<&str> = inbox_seqs.iter().map(|(u, _)| u.as_str()).collect();
        let seqs: Vec<i64> = inbox_seqs.iter().map(|(_, s)| *s as i64).collect();
        let content = tern_core::codes::content::encode(&row.content);
        // A text or a file finds itself in the same statement; what amends another message
        // (an edit, a recall) changes that message's text below.
        let text = tern_core::search::text_of(&row.content);
        let id: i64 = rows::row(
            self.tx,
            INSERT_MESSAGE,
            &[
                &row.conversation.as_str(),
                &(seq as i64),
                &row.sender.as_str(),
                &row.client_msg_id,
                &row.server_time_ms,
                &(sender_inbox_seq as i64),
                &content,
                &users,
                &seqs,
                &text,
            ],
        )
        .await?
        .get(0);
        for (user, seq) in &inbox_seqs {
            if let Some(Some(head)) = self.inboxes.get_mut(user) {
                head.now = *seq;
            }
        }
        if let Some(head) = self.conversations.get_mut(&row.conversation) {
            head.now = seq;
        }
        let message = Arc::new(StoredMessage {
            id: tern_core::MessageId(id as u64),
            conversation: row.conversation,
            seq,
            sender: row.sender,
            client_msg_id: row.client_msg_id,
            server_time_ms: row.server_time_ms,
            sender_inbox_seq,
            content: row.content,
            recalled_by: None,
            edited_ms: 0,
        });
        if text.is_none() {
            crate::search::apply(self.tx, &message).await?;
        }
        Ok(Ok((message, inbox_seqs)))
    }

    /// The message stored earlier under `(sender, client_msg_id)`, this batch included.
    async fn find_duplicate(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Arc<StoredMessage>>, StoreError> {
        if client_msg_id.is_empty() {
            return Ok(None);
        }
        self.row_opt(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.sender = $1 AND m.client_msg_id = $2 AND m.client_msg_id <> ''"
            ),
            &[&sender.as_str(), &client_msg_id],
        )
        .await?
        .map(|r| message_from_row(&r, 0).map(Arc::new))
        .transpose()
    }

    /// Whether `recipient` refuses a one-to-one message from `sender`; the caller holds the
    /// recipient's inbox row, which every change to that answer locks too.
    async fn refuses(&self, recipient: &UserId, sender: &UserId) -> Result<bool, StoreError> {
        if recipient == sender {
            return Ok(false);
        }
        Ok(
            rows::row(self.tx, REFUSES, &[&recipient.as_str(), &sender.as_str()])
                .await?
                .get(0),
        )
    }

    /// The group's state, loaded under its timeline's lock (once per batch; members from the
    /// node's cache while the group's version says they are current); `None` if it does not
    /// exist.
    async fn group(
        &mut self,
        store: &PgStore,
        id: GroupId,
    ) -> Result<Option<&mut GroupState>, StoreError> {
        if !self.groups.contains_key(&id) {
            // A group's timeline head row is created with the group and serializes everything
            // that reads or changes it.
            if self
                .existing_head(&ConversationId::group(id))
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let Some(row) = self
                .row_opt(
                    &format!("SELECT {SETTINGS_COLUMNS}, version FROM groups WHERE id = $1"),
                    &[&(id.0 as i64)],
                )
                .await?
            else {
                return Ok(None);
            };
            let (settings, count) = settings_from_row(id, &row, 0)?;
            let version: i64 = row.get(9);
            let members = match store.cached_members(id, version) {
                Some(members) => members,
                None => Arc::new(self.load_members(id, count).await?),
            };
            self.groups.insert(
                id,
                LoadedGroup {
                    state: GroupState {
                        id,
                        settings,
                        members,
                    },
                    version,
                },
            );
        }
        Ok(self.groups.get_mut(&id).map(|g| &mut g.state))
    }

    async fn load_members(&self, id: GroupId, count: usize) -> Result<Members, StoreError> {
        let mut members = Members::with_capacity_and_hasher(count, Default::default());
        for row in self
            .rows(
                &format!("SELECT user_id, {MEMBER_COLUMNS} FROM group_members WHERE group_id = $1"),
                &[&(id.0 as i64)],
            )
            .await?
        {
            members.insert(member_of(id, row.get(0))?, member_from_row(id, &row, 1)?);
        }
        Ok(members)
    }

    async fn append_message(
        &mut self,
        store: &PgStore,
        m: NewMessage,
    ) -> Result<AppendOutcome, StoreError> {
        // Lock first (the conversation, then the inboxes), decide after.
        let group = match &m.audience {
            Audience::Direct(inboxes) => {
                self.conversation_head(&m.conversation).await?;
                self.lock_inboxes(inboxes).await?;
                None
            }
            Audience::Group { group, .. } => Some(self.group(store, *group).await?.cloned()),
        };
        // A retry is answered with the original even if the sender has since left its group.
        if let Some(existing) = self.find_duplicate(&m.sender, &m.client_msg_id).await? {
            if !tern_core::messages::is_retry_of(&existing, &m.conversation, &m.content) {
                return Ok(AppendOutcome::Refused(Refusal::ClientMsgIdReused));
            }
            return Ok(AppendOutcome::Duplicate(existing));
        }
        let (inboxes, push_members) = match (&m.audience, group) {
            (Audience::Direct(inboxes), _) => {
                if let Some(recipient) = inboxes.get(1)
                    && self.refuses(recipient, &m.sender).await?
                {
                    return Ok(AppendOutcome::Refused(Refusal::NotAccepted));
                }
                (inboxes.clone(), None)
            }
            (Audience::Group { .. }, None | Some(None)) => {
                return Ok(AppendOutcome::Refused(Refusal::NotAParticipant));
            }
            (
                Audience::Group {
                    write_diffusion_max,
                    ..
                },
                Some(Some(state)),
            ) => {
                if let Err(e) = groups::check_send(&state, &m.sender, m.server_time_ms) {
                    return Ok(AppendOutcome::Refused(e));
                }
                match groups::diffusion(&state, &m.sender, &[], *write_diffusion_max) {
                    Diffusion::Write(users) => (users, None),
                    Diffusion::Read(users) => (users, Some(state.members.clone())),
                }
            }
        };
        let direct = matches!(&m.audience, Audience::Direct(_));
        let row = Row {
            conversation: m.conversation,
            sender: m.sender,
            client_msg_id: m.client_msg_id,
            server_time_ms: m.server_time_ms,
            content: m.content,
            inboxes: &inboxes,
        };
        Ok(match self.insert(row).await? {
            Ok((message, inbox_seqs)) => {
                // A one-to-one conversation's first message names both of its users, so listing
                // it for them then lists it for good.
                if direct && message.seq == 1 {
                    let users: Vec<&str> = inbox_seqs.iter().map(|(u, _)| u.as_str()).collect();
                    self.exec(
                        "INSERT INTO user_conversations (user_id, conversation)
                         SELECT u, $2 FROM unnest($1::text[]) AS u ON CONFLICT DO NOTHING",
                        &[&users, &message.conversation.as_str()],
                    )
                    .await?;
                }
                AppendOutcome::Stored(Stored {
                    message,
                    inbox_seqs,
                    push_members,
                })
            }
            Err(user) => AppendOutcome::UnknownUser(user),
        })
    }

    /// Records a group event in the group's timeline, spread by the group's size now; it must
    /// take `expected_seq`, the seq its changes were applied with.
    async fn record_event(
        &mut self,
        state: &GroupState,
        actor: &UserId,
        event: tern_core::content::GroupEvent,
        concerned: &[UserId],
        (now_ms, write_diffusion_max, expected_seq): (i64, usize, u64),
    ) -> Result<Stored, StoreError> {
        let (inboxes, push_members) =
            match groups::diffusion(state, actor, concerned, write_diffusion_max) {
                Diffusion::Write(users) => (users, None),
                Diffusion::Read(users) => (users, Some(state.members.clone())),
            };
        let row = Row {
            conversation: state.conversation(),
            sender: actor.clone(),
            // Events are never retried by a client, so they take no deduplication key.
            client_msg_id: String::new(),
            server_time_ms: now_ms,
            content: Content::GroupEvent(event),
            inboxes: &inboxes,
        };
        match self.insert(row).await? {
            Ok((message, inbox_seqs)) if message.seq == expected_seq => Ok(Stored {
                message,
                inbox_seqs,
                push_members,
            }),
            Ok((message, _)) => Err(StoreError::Corrupt(format!(
                "group {} event took seq {} instead of {expected_seq}",
                state.id, message.seq
            ))),
            // Users were checked before anything was applied; a missing one now would leave a
            // half-made change, so the whole batch fails instead.
            Err(user) => Err(StoreError::Unavailable(format!(
                "group {}: user {user} vanished",
                state.id
            ))),
        }
    }

    /// The first of `users` that does not exist, if any (users are never deleted, so this
    /// needs no lock).
    async fn missing_user<'a>(
        &self,
        users: impl IntoIterator<Item = &'a UserId>,
    ) -> Result<Option<UserId>, StoreError> {
        let users: Vec<&UserId> = users.into_iter().collect();
        if users.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        let found: HashSet<String> = self
            .rows("SELECT id FROM users WHERE id = ANY($1)", &[&names])
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(users
            .into_iter()
            .find(|u| !found.contains(u.as_str()))
            .cloned())
    }

    /// Persists one decided group mutation; `event_seq` is the seq of the event recording it.
    async fn persist_group(
        &self,
        id: GroupId,
        mutation: &Mutation,
        event_seq: u64,
    ) -> Result<(), StoreError> {
        let gid = id.0 as i64;
        match mutation {
            Mutation::Add(user, role) => {
                self.exec(
                    "INSERT INTO group_members (group_id, user_id, role, joined_seq, muted_until_ms)
                     VALUES ($1, $2, $3, $4, 0)",
                    &[&gid, &user.as_str(), &codes::role(*role), &(event_seq as i64)],
                )
                .await?;
                self.exec(
                    "UPDATE groups SET member_count = member_count + 1 WHERE id = $1",
                    &[&gid],
                )
                .await?;
            }
            Mutation::Remove(user) => {
                self.exec(
                    "INSERT INTO group_departures (group_id, user_id, joined_seq, left_seq)
                     SELECT group_id, user_id, joined_seq, $3 FROM group_members
                     WHERE group_id = $1 AND user_id = $2
                     ON CONFLICT (group_id, user_id) DO UPDATE
                     SET joined_seq = excluded.joined_seq, left_seq = excluded.left_seq",
                    &[&gid, &user.as_str(), &(event_seq as i64)],
                )
                .await?;
                let n = self
                    .exec(
                        "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                        &[&gid, &user.as_str()],
                    )
                    .await?;
                self.exec(
                    "UPDATE groups SET member_count = member_count - $2 WHERE id = $1",
                    &[&gid, &(n as i64)],
                )
                .await?;
            }
            Mutation::SetRole(user, role) => {
                self.exec(
                    "UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2",
                    &[&gid, &user.as_str(), &codes::role(*role)],
                )
                .await?;
                if *role == Role::Owner {
                    self.exec(
                        "UPDATE groups SET owner = $2 WHERE id = $1",
                        &[&gid, &user.as_str()],
                    )
                    .await?;
                }
            }
            Mutation::Mute(user, until) => {
                self.exec(
                    "UPDATE group_members SET muted_until_ms = $3 WHERE group_id = $1 AND user_id = $2",
                    &[&gid, &user.as_str(), until],
                )
                .await?;
            }
            Mutation::Settings(s) => {
                self.exec(
                    "UPDATE groups SET name = $2, avatar = $3, announcement = $4, owner = $5,
                     mute_all = $6, history = $7, dissolved = $8 WHERE id = $1",
                    &[
                        &gid,
                        &s.name,
                        &s.avatar,
                        &s.announcement,
                        &s.owner.as_str(),
                        &s.mute_all,
                        &codes::history(s.history),
                        &s.dissolved,
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Applies decided mutations at `seq` to the database and to `state`, and advances the
    /// group's version to `seq`.
    async fn apply_mutations(
        &mut self,
        state: &mut GroupState,
        mutations: &[Mutation],
        seq: u64,
    ) -> Result<(), StoreError> {
        for m in mutations {
            self.persist_group(state.id, m, seq).await?;
            state.apply(m, seq);
        }
        self.exec(
            "UPDATE groups SET version = $2 WHERE id = $1",
            &[&(state.id.0 as i64), &(seq as i64)],
        )
        .await?;
        Ok(())
    }

    async fn create_group(
        &mut self,
        store: &PgStore,
        new: NewGroup,
    ) -> Result<AppendOutcome, StoreError> {
        let decision = match groups::decide_create(&new) {
            Ok(d) => d,
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        if !new.request_id.is_empty()
            && let Some(row) = self
                .row_opt(
                    "SELECT id FROM groups WHERE creator = $1 AND request_id = $2 AND request_id <> ''",
                    &[&new.owner.as_str(), &new.request_id],
                )
                .await?
        {
            // A retry: answer with the group as it is now, and record nothing.
            let id = GroupId(row.get::<_, i64>(0) as u64);
            return self.unchanged_group(store, id).await;
        }
        if let Some(user) = self
            .missing_user(std::iter::once(&new.owner).chain(&new.members))
            .await?
        {
            return Ok(AppendOutcome::Refused(Refusal::UnknownUser(user)));
        }
        let settings = GroupSettings {
            name: new.name,
            avatar: new.avatar,
            announcement: new.announcement,
            owner: new.owner.clone(),
            mute_all: false,
            history: new.history,
            dissolved: false,
            created_ms: new.created_ms,
        };
        // A second node creating the same request loses on the unique index and retries into
        // the branch above.
        let id: i64 = rows::row(
            self.tx,
            "INSERT INTO groups (name, avatar, announcement, owner, mute_all, history, dissolved,
                                 created_ms, member_count, creator, request_id, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $4, $9, 0) RETURNING id",
            &[
                &settings.name,
                &settings.avatar,
                &settings.announcement,
                &settings.owner.as_str(),
                &settings.mute_all,
                &codes::history(settings.history),
                &settings.dissolved,
                &settings.created_ms,
                &new.request_id,
            ],
        )
        .await?
        .get(0);
        let id = GroupId(id as u64);
        let mut state = GroupState {
            id,
            settings,
            members: Arc::new(Members::default()),
        };
        let seq = self.conversation_head(&state.conversation()).await? + 1;
        self.apply_mutations(&mut state, &decision.mutations, seq)
            .await?;
        let Some(event) = decision.event else {
            return Err(StoreError::Corrupt(
                "a group creation decided no event".into(),
            ));
        };
        let stored = self
            .record_event(
                &state,
                &new.owner,
                event,
                &decision.concerned,
                (new.created_ms, new.limits.write_diffusion_max, seq),
            )
            .await?;
        self.groups.insert(
            id,
            LoadedGroup {
                state: state.clone(),
                version: seq as i64,
            },
        );
        Ok(AppendOutcome::Group {
            state,
            head_seq: seq,
            event: Some(stored),
        })
    }

    /// The outcome of a group write that changed nothing: the group as it is.
    async fn unchanged_group(
        &mut self,
        store: &PgStore,
        id: GroupId,
    ) -> Result<AppendOutcome, StoreError> {
        let Some(state) = self.group(store, id).await?.cloned() else {
            return Err(StoreError::Corrupt(format!("group {id} vanished")));
        };
        let head_seq = self.conversation_head(&state.conversation()).await?;
        Ok(AppendOutcome::Group {
            state,
            head_seq,
            event: None,
        })
    }

    async fn change_group(
        &mut self,
        store: &PgStore,
        req: GroupChangeRequest,
    ) -> Result<AppendOutcome, StoreError> {
        let Some(state) = self.group(store, req.group).await? else {
            return Ok(AppendOutcome::Refused(Refusal::NotAParticipant));
        };
        let mut state = state.clone();
        let decision = match groups::decide(&state, &req) {
            Ok(d) => d,
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        let Some(event) = decision.event else {
            return self.unchanged_group(store, req.group).await;
        };
        let added = decision.mutations.iter().filter_map(|m| match m {
            Mutation::Add(u, _) => Some(u),
            _ => None,
        });
        if let Some(user) = self.missing_user(added).await? {
            return Ok(AppendOutcome::Refused(Refusal::UnknownUser(user)));
        }
        let seq = self.conversation_head(&state.conversation()).await? + 1;
        self.apply_mutations(&mut state, &decision.mutations, seq)
            .await?;
        let stored = self
            .record_event(
                &state,
                &req.actor,
                event,
                &decision.concerned,
                (req.now_ms, req.limits.write_diffusion_max, seq),
            )
            .await?;
        self.groups.insert(
            state.id,
            LoadedGroup {
                state: state.clone(),
                version: seq as i64,
            },
        );
        Ok(AppendOutcome::Group {
            state,
            head_seq: seq,
            event: Some(stored),
        })
    }

    /// Records a notice in `user`'s notice timeline, with entries in the inboxes of `user` and
    /// of each of `also`.
    pub(crate) async fn notice(
        &mut self,
        user: &UserId,
        also: &[UserId],
        body: Content,
        now_ms: i64,
    ) -> Result<Result<Stored, Refusal>, StoreError> {
        let mut inboxes = vec![user.clone()];
        inboxes.extend(also.iter().filter(|u| *u != user).cloned());
        let row = Row {
            conversation: ConversationId::notices(user),
            sender: user.clone(),
            client_msg_id: String::new(),
            server_time_ms: now_ms,
            content: body,
            inboxes: &inboxes,
        };
        Ok(match self.insert(row).await? {
            Ok((message, inbox_seqs)) => Ok(Stored {
                message,
                inbox_seqs,
                push_members: None,
            }),
            Err(u) => Err(Refusal::UnknownUser(u)),
        })
    }

    /// Loads `user`'s standing in `conversation` for a read-mark or flag decision, after
    /// locking (in order) the user's notice timeline, the conversation and the inboxes of the
    /// user and the peer; the receipt peer only when `receipts`, and only if no block stands
    /// between the two.
    async fn standing(
        &mut self,
        store: &PgStore,
        user: &UserId,
        conversation: &ConversationId,
        receipts: bool,
    ) -> Result<ConversationStanding, StoreError> {
        self.conversation_head(&ConversationId::notices(user))
            .await?;
        let participant = match conversation.kind() {
            Ok(ConversationKind::Direct(a, b)) => &a == user || &b == user,
            Ok(ConversationKind::Group(g)) => self
                .group(store, g)
                .await?
                .is_some_and(|state| state.members.contains_key(user)),
            // Notice timelines take no reads or flags.
            _ => false,
        };
        if !participant {
            return Ok(ConversationStanding::default());
        }
        let head = self.conversation_head(conversation).await?;
        let peer = conversation.peer_of(user);
        let mut users = vec![user.clone()];
        users.extend(peer.clone());
        self.lock_inboxes(&users).await?;
        let (read_seq, pinned, muted) = conversation_state(
            self.row_opt(
                CONVERSATION_STATE,
                &[&user.as_str(), &conversation.as_str()],
            )
            .await?,
        );
        let receipt_to = match peer {
            Some(p)
                if receipts
                    && !rows::row(self.tx, BLOCKS_EITHER, &[&user.as_str(), &p.as_str()])
                        .await?
                        .get::<_, bool>(0) =>
            {
                Some(p)
            }
            _ => None,
        };
        Ok(ConversationStanding {
            participant: true,
            head,
            read_seq,
            pinned,
            muted,
            receipt_to,
        })
    }

    async fn put_conversation_state(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        (read_seq, pinned, muted): (u64, bool, bool),
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO conversation_states (user_id, conversation, read_seq, pinned, muted)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, conversation) DO UPDATE
             SET read_seq = excluded.read_seq, pinned = excluded.pinned, muted = excluded.muted",
            &[
                &user.as_str(),
                &conversation.as_str(),
                &(read_seq as i64),
                &pinned,
                &muted,
            ],
        )
        .await?;
        Ok(())
    }

    async fn mark_read(
        &mut self,
        store: &PgStore,
        m: MarkRead,
    ) -> Result<AppendOutcome, StoreError> {
        let standing = self.standing(store, &m.user, &m.conversation, true).await?;
        let (mark, body, receipt_to) = match decide_mark_read(&m.conversation, m.seq, &standing) {
            Err(e) => return Ok(AppendOutcome::Refused(e)),
            Ok(MarkDecision::Unchanged { mark }) => {
                return Ok(AppendOutcome::ReadMark {
                    conversation: m.conversation,
                    mark,
                    notice: None,
                });
            }
            Ok(MarkDecision::Raise {
                mark,
                notice,
                receipt_to,
            }) => (mark, notice, receipt_to),
        };
        let also: Vec<UserId> = receipt_to.into_iter().collect();
        let stored = match self.notice(&m.user, &also, body, m.now_ms).await? {
            Ok(s) => s,
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        self.put_conversation_state(
            &m.user,
            &m.conversation,
            (mark, standing.pinned, standing.muted),
        )
        .await?;
        Ok(AppendOutcome::ReadMark {
            conversation: m.conversation,
            mark,
            notice: Some(stored),
        })
    }

    async fn set_flags(
        &mut self,
        store: &PgStore,
        f: SetFlags,
    ) -> Result<AppendOutcome, StoreError> {
        let standing = self
            .standing(store, &f.user, &f.conversation, false)
            .await?;
        let FlagsChange {
            pinned,
            muted,
            notice: body,
        } = match decide_flags(&f.conversation, f.pinned, f.muted, &standing) {
            Err(e) => return Ok(AppendOutcome::Refused(e)),
            Ok(None) => {
                return Ok(AppendOutcome::Flags {
                    conversation: f.conversation,
                    notice: None,
                });
            }
            Ok(Some(change)) => change,
        };
        let stored = match self.notice(&f.user, &[], body, f.now_ms).await? {
            Ok(s) => s,
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        self.put_conversation_state(&f.user, &f.conversation, (standing.read_seq, pinned, muted))
            .await?;
        Ok(AppendOutcome::Flags {
            conversation: f.conversation,
            notice: Some(stored),
        })
    }

    async fn amend(&mut self, store: &PgStore, a: Amend) -> Result<AppendOutcome, StoreError> {
        // A message never changes conversation: find it, lock the conversation (and the
        // inboxes of a one-to-one conversation), then read the message as amended now.
        let Some(row) = self
            .row_opt(
                "SELECT conversation FROM messages WHERE id = $1",
                &[&(a.message.0.min(i64::MAX as u64) as i64)],
            )
            .await?
        else {
            return Ok(AppendOutcome::Refused(Refusal::MessageNotFound));
        };
        let conversation = ConversationId::from_stored(row.get(0));
        let group = match conversation.kind() {
            Ok(ConversationKind::Group(g)) => self.group(store, g).await?.cloned(),
            _ => {
                self.conversation_head(&conversation).await?;
                None
            }
        };
        let peer = conversation.peer_of(&a.actor).filter(|p| p != &a.actor);
        if group.is_none() {
            let mut users = vec![a.actor.clone()];
            users.extend(peer.clone());
            self.lock_inboxes(&users).await?;
        }
        let Some(message) = crate::reads::message(self.tx, a.message).await? else {
            return Ok(AppendOutcome::Refused(Refusal::MessageNotFound));
        };
        let role = group
            .as_ref()
            .and_then(|g| amend_role(g, &a.actor, message.seq));
        let event = match decide_amend(&message, &a.actor, role, &a.change, a.now_ms, a.window_ms) {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Ok(AppendOutcome::Amended {
                    conversation,
                    event: None,
                });
            }
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        if matches!(a.change, Amendment::Edit(_)) {
            // An edit says something new: whoever could not send it may not edit it in.
            let refused = match &group {
                Some(state) => groups::check_send(state, &a.actor, a.now_ms).err(),
                None => match conversation.peer_of(&a.actor) {
                    Some(peer) if self.refuses(&peer, &a.actor).await? => {
                        Some(Refusal::NotAccepted)
                    }
                    _ => None,
                },
            };
            if let Some(e) = refused {
                return Ok(AppendOutcome::Refused(e));
            }
        }
        let (inboxes, push_members) = match &group {
            Some(state) if state.settings.dissolved => {
                return Ok(AppendOutcome::Refused(Refusal::GroupDissolved));
            }
            Some(state) => match groups::diffusion(state, &a.actor, &[], a.write_diffusion_max) {
                Diffusion::Write(users) => (users, None),
                Diffusion::Read(users) => (users, Some(state.members.clone())),
            },
            None => {
                let mut users = vec![a.actor.clone()];
                users.extend(peer);
                (users, None)
            }
        };
        let recall = matches!(event, Content::Recall(_));
        let row = Row {
            conversation: conversation.clone(),
            sender: a.actor.clone(),
            client_msg_id: String::new(),
            server_time_ms: a.now_ms,
            content: event,
            inboxes: &inboxes,
        };
        let (stored, inbox_seqs) = match self.insert(row).await? {
            Ok(inserted) => inserted,
            Err(u) => return Ok(AppendOutcome::Refused(Refusal::UnknownUser(u))),
        };
        let column = if recall { "recall_event" } else { "edit_event" };
        self.exec(
            &format!(
                "INSERT INTO amendments (message_id, {column}) VALUES ($1, $2)
                 ON CONFLICT (message_id) DO UPDATE SET {column} = excluded.{column}"
            ),
            &[&(message.id.0 as i64), &(stored.id.0 as i64)],
        )
        .await?;
        Ok(AppendOutcome::Amended {
            conversation,
            event: Some(Stored {
                message: stored,
                inbox_seqs,
                push_members,
            }),
        })
    }
}

mod social;
