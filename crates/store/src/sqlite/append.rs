//! Appending a batch of writes inside the writer's transaction: messages (one-to-one and
//! group), group creations and group changes, in order.
//!
//! Rows are only appended here (`messages`, `inbox_log`); the keyed indexes follow later from
//! the tail. Group writes also update `groups` and `group_members`, which change rarely. Each
//! group rule runs here, against the group's state at this point of the batch, which is what
//! makes a membership change and a send that race take one order for everyone.

use std::sync::Arc;

use rusqlite::params;
use tern_core::{
    ConversationId, ConversationKind, MessageId, Refusal, UserId,
    content::Content,
    conversations::{
        ConversationStanding, FlagsChange, MarkDecision, amend_role, decide_amend, decide_flags,
        decide_mark_read,
    },
    groups::{
        self, Diffusion, GroupChangeRequest, GroupSettings, GroupState, Members, Mutation, NewGroup,
    },
    store::{
        Amend, Amendment, AppendOutcome, Audience, MarkRead, NewMessage, SetFlags, Stored,
        StoredMessage, Write,
    },
    webhooks::{Hint, OutboxCollector},
};

use super::{
    groups::{created_by_request, insert_group, persist},
    writer::{Appended, Batch, JobError},
};

/// Runs every write of the batch, in order.
pub(crate) fn append_batch(
    batch: &mut Batch<'_>,
    writes: Vec<Write>,
    mut events: Option<&mut OutboxCollector>,
) -> Result<Vec<AppendOutcome>, JobError> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let hint = events.as_ref().map(|_| Hint::of(&write));
        let outcome = match write {
            Write::Message(m) => append_message(batch, m)?,
            Write::CreateGroup(new) => create_group(batch, new)?,
            Write::ChangeGroup(req) => change_group(batch, req)?,
            Write::MarkRead(m) => mark_read(batch, m)?,
            Write::Amend(a) => amend(batch, a)?,
            Write::SetFlags(f) => set_flags(batch, f)?,
            Write::Social(w) => super::social::apply(batch, w)?,
        };
        if let (Some(events), Some(hint)) = (events.as_deref_mut(), hint) {
            events.add(&hint, &outcome);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// What [`insert`] needs of a message.
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

/// Appends one message and its inbox entries; `Err(user)` (and nothing written) when an inbox
/// user does not exist.
fn insert(batch: &mut Batch<'_>, row: Row<'_>) -> Result<Result<Inserted, UserId>, JobError> {
    let mut heads = Vec::with_capacity(row.inboxes.len());
    for user in row.inboxes {
        match batch.inbox_head(user)? {
            Some(head) => heads.push(head),
            None => return Ok(Err(user.clone())),
        }
    }
    let seq = batch.conversation_head(&row.conversation)? + 1;
    let sender_inbox_seq = match (row.inboxes.first(), heads.first()) {
        (Some(first), Some(head)) if *first == row.sender => head + 1,
        _ => 0,
    };
    let content = tern_core::codes::content::encode(&row.content);
    batch
        .conn
        .prepare_cached(
            "INSERT INTO messages (conversation, seq, sender, client_msg_id, server_time_ms, sender_inbox_seq, content)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            row.conversation.as_str(),
            seq as i64,
            row.sender.as_str(),
            row.client_msg_id,
            row.server_time_ms,
            sender_inbox_seq as i64,
            content
        ])?;
    let id = batch.conn.last_insert_rowid() as u64;
    let mut inbox_seqs = Vec::with_capacity(row.inboxes.len());
    let mut entries = Vec::with_capacity(row.inboxes.len());
    {
        let mut insert = batch.conn.prepare_cached(
            "INSERT INTO inbox_log (id, user_id, seq, message_id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (user, head) in row.inboxes.iter().zip(&heads) {
            let log_id = batch.next_log_id();
            insert.execute(params![
                log_id as i64,
                user.as_str(),
                (head + 1) as i64,
                id as i64
            ])?;
            entries.push((user.clone(), head + 1, log_id));
            inbox_seqs.push((user.clone(), head + 1));
        }
    }
    for (user, seq) in &inbox_seqs {
        batch.set_inbox_head(user, *seq);
    }
    batch.set_conversation_head(&row.conversation, seq);
    let message = Arc::new(StoredMessage {
        id: MessageId(id),
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
    batch.appended(Appended {
        message: message.clone(),
        entries,
    });
    Ok(Ok((message, inbox_seqs)))
}

fn append_message(batch: &mut Batch<'_>, m: NewMessage) -> Result<AppendOutcome, JobError> {
    // A retry is answered with the original even if the sender has since left its group.
    if let Some(existing) = batch.find_duplicate(&m.sender, &m.client_msg_id)? {
        if !tern_core::messages::is_retry_of(&existing, &m.conversation, &m.content) {
            return Ok(AppendOutcome::Refused(Refusal::ClientMsgIdReused));
        }
        return Ok(AppendOutcome::Duplicate(existing));
    }
    let (inboxes, push_members) = match &m.audience {
        Audience::Direct(inboxes) => {
            if let Some(recipient) = inboxes.get(1)
                && batch.refuses(recipient, &m.sender)?
            {
                return Ok(AppendOutcome::Refused(Refusal::NotAccepted));
            }
            (inboxes.clone(), None)
        }
        Audience::Group {
            group,
            write_diffusion_max,
        } => {
            let Some(state) = batch.group(*group)? else {
                return Ok(AppendOutcome::Refused(Refusal::NotAParticipant));
            };
            if let Err(e) = groups::check_send(state, &m.sender, m.server_time_ms) {
                return Ok(AppendOutcome::Refused(e));
            }
            match groups::diffusion(state, &m.sender, &[], *write_diffusion_max) {
                Diffusion::Write(users) => (users, None),
                Diffusion::Read(users) => (users, Some(state.members.clone())),
            }
        }
    };
    let direct = push_members.is_none() && matches!(&m.audience, Audience::Direct(_));
    let row = Row {
        conversation: m.conversation,
        sender: m.sender,
        client_msg_id: m.client_msg_id,
        server_time_ms: m.server_time_ms,
        content: m.content,
        inboxes: &inboxes,
    };
    Ok(match insert(batch, row)? {
        Ok((message, inbox_seqs)) => {
            if direct {
                for (user, _) in &inbox_seqs {
                    batch.note_conversation(user, &message.conversation)?;
                }
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

/// A group event to record.
struct Event<'a> {
    /// Who made the change.
    actor: &'a UserId,
    event: tern_core::content::GroupEvent,
    /// Users added or removed.
    concerned: &'a [UserId],
    now_ms: i64,
    write_diffusion_max: usize,
    /// The seq the decision was applied with; the event must take it.
    seq: u64,
}

/// Records a group event in the group's timeline, spread by the group's size now.
fn record_event(
    batch: &mut Batch<'_>,
    state: &GroupState,
    e: Event<'_>,
) -> Result<Result<Stored, Refusal>, JobError> {
    let Event {
        actor,
        event,
        concerned,
        now_ms,
        write_diffusion_max,
        seq: expected_seq,
    } = e;
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
    match insert(batch, row)? {
        Ok((message, inbox_seqs)) => {
            if message.seq != expected_seq {
                return Err(JobError::Store(tern_core::StoreError::Corrupt(format!(
                    "group {} event took seq {} instead of {expected_seq}",
                    state.id, message.seq
                ))));
            }
            Ok(Ok(Stored {
                message,
                inbox_seqs,
                push_members,
            }))
        }
        Err(user) => Ok(Err(Refusal::UnknownUser(user))),
    }
}

/// The first user of `users` that does not exist, if any.
fn missing_user<'a>(
    batch: &mut Batch<'_>,
    users: impl IntoIterator<Item = &'a UserId>,
) -> Result<Option<UserId>, JobError> {
    for u in users {
        if batch.inbox_head(u)?.is_none() {
            return Ok(Some(u.clone()));
        }
    }
    Ok(None)
}

fn create_group(batch: &mut Batch<'_>, new: NewGroup) -> Result<AppendOutcome, JobError> {
    let decision = match groups::decide_create(&new) {
        Ok(d) => d,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    if !new.request_id.is_empty()
        && let Some(id) = created_by_request(batch.conn, &new.owner, &new.request_id)?
    {
        // A retry: answer with the group as it is now, and record nothing.
        let Some(state) = batch.group(id)?.cloned() else {
            return Err(JobError::Store(tern_core::StoreError::Corrupt(format!(
                "group {id} vanished"
            ))));
        };
        let head_seq = batch.conversation_head(&state.conversation())?;
        return Ok(AppendOutcome::Group {
            state,
            head_seq,
            event: None,
        });
    }
    if let Some(user) = missing_user(batch, std::iter::once(&new.owner).chain(&new.members))? {
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
    let id = insert_group(batch.conn, &settings, &new.request_id)?;
    let mut state = GroupState {
        id,
        settings,
        members: Arc::new(Members::default()),
    };
    let seq = batch.conversation_head(&state.conversation())? + 1;
    for m in &decision.mutations {
        persist(batch.conn, id, m, seq)?;
        state.apply(m, seq);
    }
    let Some(event) = decision.event else {
        return Err(JobError::Store(tern_core::StoreError::Corrupt(
            "a group creation decided no event".into(),
        )));
    };
    let stored = match record_event(
        batch,
        &state,
        Event {
            actor: &new.owner,
            event,
            concerned: &decision.concerned,
            now_ms: new.created_ms,
            write_diffusion_max: new.limits.write_diffusion_max,
            seq,
        },
    )? {
        Ok(s) => s,
        // Checked above; a missing user here would leave a half-created group, so fail the
        // batch rather than commit it.
        Err(e) => {
            return Err(JobError::Store(tern_core::StoreError::Unavailable(
                format!("creating group {id}: {e}"),
            )));
        }
    };
    batch.put_group(state.clone());
    Ok(AppendOutcome::Group {
        state,
        head_seq: seq,
        event: Some(stored),
    })
}

fn change_group(batch: &mut Batch<'_>, req: GroupChangeRequest) -> Result<AppendOutcome, JobError> {
    let Some(mut state) = batch.take_group(req.group)? else {
        return Ok(AppendOutcome::Refused(Refusal::NotAParticipant));
    };
    let outcome = apply_change(batch, &mut state, &req);
    // The state goes back whatever happened: unchanged if the change was refused.
    batch.put_group(state);
    outcome
}

fn apply_change(
    batch: &mut Batch<'_>,
    state: &mut GroupState,
    req: &GroupChangeRequest,
) -> Result<AppendOutcome, JobError> {
    let decision = match groups::decide(state, req) {
        Ok(d) => d,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    let conversation = state.conversation();
    let Some(event) = decision.event else {
        return Ok(AppendOutcome::Group {
            state: state.clone(),
            head_seq: batch.conversation_head(&conversation)?,
            event: None,
        });
    };
    let added = decision.mutations.iter().filter_map(|m| match m {
        Mutation::Add(u, _) => Some(u),
        _ => None,
    });
    if let Some(user) = missing_user(batch, added)? {
        return Ok(AppendOutcome::Refused(Refusal::UnknownUser(user)));
    }
    let seq = batch.conversation_head(&conversation)? + 1;
    // Should anything below fail, the batch rolls back and the writer drops every cached group
    // state, so applying in place is safe.
    for m in &decision.mutations {
        persist(batch.conn, state.id, m, seq)?;
        state.apply(m, seq);
    }
    let stored = match record_event(
        batch,
        state,
        Event {
            actor: &req.actor,
            event,
            concerned: &decision.concerned,
            now_ms: req.now_ms,
            write_diffusion_max: req.limits.write_diffusion_max,
            seq,
        },
    )? {
        Ok(s) => s,
        Err(e) => {
            return Err(JobError::Store(tern_core::StoreError::Unavailable(
                format!("changing group {}: {e}", state.id),
            )));
        }
    };
    Ok(AppendOutcome::Group {
        state: state.clone(),
        head_seq: seq,
        event: Some(stored),
    })
}

/// Whether `user` takes part in `conversation` now: one of its two users, or a member of its
/// group. Notice timelines take no reads or flags.
fn takes_part(
    batch: &mut Batch<'_>,
    user: &UserId,
    conversation: &ConversationId,
) -> Result<bool, JobError> {
    Ok(match conversation.kind() {
        Ok(ConversationKind::Direct(a, b)) => &a == user || &b == user,
        Ok(ConversationKind::Group(g)) => batch
            .group(g)?
            .is_some_and(|state| state.members.contains_key(user)),
        _ => false,
    })
}

fn put_conversation_state(
    batch: &Batch<'_>,
    user: &UserId,
    conversation: &ConversationId,
    (read_seq, pinned, muted): (u64, bool, bool),
) -> rusqlite::Result<()> {
    batch
        .conn
        .prepare_cached(
            "INSERT INTO conversation_states (user_id, conversation, read_seq, pinned, muted)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, conversation) DO UPDATE
             SET read_seq = excluded.read_seq, pinned = excluded.pinned, muted = excluded.muted",
        )?
        .execute(params![
            user.as_str(),
            conversation.as_str(),
            read_seq as i64,
            pinned,
            muted
        ])?;
    Ok(())
}

/// Records a notice in `user`'s notice timeline, with entries in the inboxes of `user` and of
/// `also` (a read receipt's peer).
fn notice(
    batch: &mut Batch<'_>,
    user: &UserId,
    also: Option<UserId>,
    body: Content,
    now_ms: i64,
) -> Result<Result<Stored, Refusal>, JobError> {
    let also: Vec<UserId> = also.into_iter().collect();
    notice_to(batch, user, &also, body, now_ms)
}

/// Records a notice in `user`'s notice timeline, with entries in the inboxes of `user` and of
/// each of `also`.
pub(crate) fn notice_to(
    batch: &mut Batch<'_>,
    user: &UserId,
    also: &[UserId],
    body: Content,
    now_ms: i64,
) -> Result<Result<Stored, Refusal>, JobError> {
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
    Ok(match insert(batch, row)? {
        Ok((message, inbox_seqs)) => Ok(Stored {
            message,
            inbox_seqs,
            push_members: None,
        }),
        Err(u) => Err(Refusal::UnknownUser(u)),
    })
}

/// Loads `user`'s standing in `conversation` for a read-mark or flag decision; the receipt
/// peer only when `receipts` (read marks), and only if no block stands between the two.
fn standing(
    batch: &mut Batch<'_>,
    user: &UserId,
    conversation: &ConversationId,
    receipts: bool,
) -> Result<ConversationStanding, JobError> {
    if !takes_part(batch, user, conversation)? {
        return Ok(ConversationStanding::default());
    }
    let head = batch.conversation_head(conversation)?;
    let (read_seq, pinned, muted) = super::reader::state(batch.conn, user, conversation)?;
    let receipt_to = match conversation.peer_of(user) {
        Some(p) if receipts && !super::social::blocks_either(batch.conn, user, &p)? => Some(p),
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

fn mark_read(batch: &mut Batch<'_>, m: MarkRead) -> Result<AppendOutcome, JobError> {
    let standing = standing(batch, &m.user, &m.conversation, true)?;
    let (mark, notice_body, receipt_to) = match decide_mark_read(&m.conversation, m.seq, &standing)
    {
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
    let stored = match notice(batch, &m.user, receipt_to, notice_body, m.now_ms)? {
        Ok(s) => s,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    put_conversation_state(
        batch,
        &m.user,
        &m.conversation,
        (mark, standing.pinned, standing.muted),
    )?;
    Ok(AppendOutcome::ReadMark {
        conversation: m.conversation,
        mark,
        notice: Some(stored),
    })
}

fn set_flags(batch: &mut Batch<'_>, f: SetFlags) -> Result<AppendOutcome, JobError> {
    let standing = standing(batch, &f.user, &f.conversation, false)?;
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
    let stored = match notice(batch, &f.user, None, body, f.now_ms)? {
        Ok(s) => s,
        Err(e) => return Ok(AppendOutcome::Refused(e)),
    };
    put_conversation_state(
        batch,
        &f.user,
        &f.conversation,
        (standing.read_seq, pinned, muted),
    )?;
    Ok(AppendOutcome::Flags {
        conversation: f.conversation,
        notice: Some(stored),
    })
}

fn amend(batch: &mut Batch<'_>, a: Amend) -> Result<AppendOutcome, JobError> {
    let Some(message) = batch.message(a.message.0)? else {
        return Ok(AppendOutcome::Refused(Refusal::MessageNotFound));
    };
    let conversation = message.conversation.clone();
    let group = match conversation.kind() {
        Ok(ConversationKind::Group(g)) => batch.group(g)?.cloned(),
        _ => None,
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
                Some(peer) if batch.refuses(&peer, &a.actor)? => Some(Refusal::NotAccepted),
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
            users.extend(conversation.peer_of(&a.actor).filter(|p| p != &a.actor));
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
    let (stored, inbox_seqs) = match insert(batch, row)? {
        Ok(inserted) => inserted,
        Err(u) => return Ok(AppendOutcome::Refused(Refusal::UnknownUser(u))),
    };
    let column = if recall { "recall_event" } else { "edit_event" };
    batch
        .conn
        .prepare_cached(&format!(
            "INSERT INTO amendments (message_id, {column}) VALUES (?1, ?2)
             ON CONFLICT (message_id) DO UPDATE SET {column} = excluded.{column}"
        ))?
        .execute(params![message.id.0 as i64, stored.id.0 as i64])?;
    Ok(AppendOutcome::Amended {
        conversation,
        event: Some(Stored {
            message: stored,
            inbox_seqs,
            push_members,
        }),
    })
}
