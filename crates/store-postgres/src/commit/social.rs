//! Social changes inside a batch's transaction: lock the two users, load the state the rules in
//! `tern_core::social::decide` ask for, record the notice, persist the mutations.
//!
//! The notice goes first: the rows carry the inbox seq it took as their version, and a refusal
//! leaves nothing written.

use tern_core::{
    ConversationId, StoreError, UserId,
    social::{SocialChange, SocialMutation, SocialState, SocialWrite},
    store::{AppendOutcome, Stored},
};

use super::Batch;
use crate::rows::{self, PROFILE_COLUMNS, codes, profile_from_row};

impl Batch<'_> {
    pub(super) async fn social(&mut self, w: SocialWrite) -> Result<AppendOutcome, StoreError> {
        let state = self.social_state(&w).await?;
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
        let also: Vec<UserId> = notice.also_to.into_iter().collect();
        let stored = match self.notice(&w.actor, &also, notice.body, w.now_ms).await? {
            Ok(s) => s,
            Err(e) => return Ok(AppendOutcome::Refused(e)),
        };
        for mutation in &decision.mutations {
            self.persist_social(mutation, &stored, w.now_ms).await?;
        }
        Ok(done(Some(stored)))
    }

    /// Locks the actor's notice timeline and the inboxes of the actor and of the user the
    /// change names, then reads their state.
    async fn social_state(&mut self, w: &SocialWrite) -> Result<SocialState, StoreError> {
        let actor = &w.actor;
        self.conversation_head(&ConversationId::notices(actor))
            .await?;
        let other = tern_core::social::other_of(&w.change);
        let mut users = vec![actor.clone()];
        users.extend(other.cloned());
        self.lock_inboxes(&users).await?;
        let mut state = SocialState::default();
        if matches!(w.change, SocialChange::UpdateProfile(_)) {
            if let Some(row) = self
                .row_opt(
                    &format!(
                        "SELECT {PROFILE_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = $1"
                    ),
                    &[&actor.as_str()],
                )
                .await?
            {
                state.actor = Some(profile_from_row(&row)?);
            }
            return Ok(state);
        }
        let Some(other) = other else {
            return Ok(state);
        };
        state.other_exists = self.inbox_head(other).await?.is_some();
        let row = rows::row(
            self.tx,
            "SELECT (SELECT remark FROM friends WHERE user_id = $1 AND friend_id = $2 AND NOT deleted),
                    EXISTS (SELECT 1 FROM friend_requests WHERE from_id = $2 AND to_id = $1),
                    EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2),
                    EXISTS (SELECT 1 FROM blocks WHERE user_id = $2 AND blocked_id = $1)",
            &[&actor.as_str(), &other.as_str()],
        )
        .await?;
        let remark: Option<String> = row.get(0);
        state.friends = remark.is_some();
        state.remark = remark.unwrap_or_default();
        state.requested_by_other = row.get(1);
        state.actor_blocks = row.get(2);
        state.other_blocks = row.get(3);
        Ok(state)
    }

    /// Persists one decided mutation.
    async fn persist_social(
        &self,
        mutation: &SocialMutation,
        notice: &Stored,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match mutation {
            SocialMutation::SetProfile(next, policy) => {
                self.exec(
                    "INSERT INTO profiles (user_id, nickname, avatar, signature, extra, updated_ms, stranger_policy)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (user_id) DO UPDATE SET nickname = excluded.nickname,
                       avatar = excluded.avatar, signature = excluded.signature, extra = excluded.extra,
                       updated_ms = excluded.updated_ms, stranger_policy = excluded.stranger_policy",
                    &[
                        &next.user.as_str(),
                        &next.nickname,
                        &next.avatar,
                        &next.signature,
                        &next.extra,
                        &next.updated_ms,
                        &codes::policy(*policy),
                    ],
                )
                .await?;
            }
            SocialMutation::PutRequest { from, to, message } => {
                self.exec(
                    "INSERT INTO friend_requests (from_id, to_id, message, created_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (from_id, to_id) DO UPDATE SET message = excluded.message, created_ms = excluded.created_ms",
                    &[&from.as_str(), &to.as_str(), message, &now_ms],
                )
                .await?;
            }
            SocialMutation::DeleteRequest { from, to } => {
                self.exec(
                    "DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2",
                    &[&from.as_str(), &to.as_str()],
                )
                .await?;
            }
            SocialMutation::Befriend(a, b) => {
                for (owner, friend) in [(a, b), (b, a)] {
                    self.exec(
                        "INSERT INTO friends (user_id, friend_id, remark, since_ms, version, deleted)
                         VALUES ($1, $2, '', $3, $4, false)
                         ON CONFLICT (user_id, friend_id) DO UPDATE SET remark = '', since_ms = excluded.since_ms,
                           version = excluded.version, deleted = false",
                        &[&owner.as_str(), &friend.as_str(), &now_ms, &version_of(notice, owner)],
                    )
                    .await?;
                }
            }
            SocialMutation::Unfriend(a, b) => {
                for (owner, friend) in [(a, b), (b, a)] {
                    self.exec(
                        "UPDATE friends SET deleted = true, version = $3 WHERE user_id = $1 AND friend_id = $2",
                        &[&owner.as_str(), &friend.as_str(), &version_of(notice, owner)],
                    )
                    .await?;
                }
            }
            SocialMutation::SetRemark {
                owner,
                friend,
                remark,
            } => {
                self.exec(
                    "UPDATE friends SET remark = $3, version = $4 WHERE user_id = $1 AND friend_id = $2",
                    &[&owner.as_str(), &friend.as_str(), remark, &version_of(notice, owner)],
                )
                .await?;
            }
            SocialMutation::Block { user, blocked } => {
                self.exec(
                    "INSERT INTO blocks (user_id, blocked_id, created_ms) VALUES ($1, $2, $3)",
                    &[&user.as_str(), &blocked.as_str(), &now_ms],
                )
                .await?;
            }
            SocialMutation::Unblock { user, blocked } => {
                self.exec(
                    "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2",
                    &[&user.as_str(), &blocked.as_str()],
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The inbox seq the notice took in `owner`'s inbox: the version of the rows it changed.
fn version_of(stored: &Stored, owner: &UserId) -> i64 {
    stored
        .inbox_seqs
        .iter()
        .find(|(u, _)| u == owner)
        .map_or(0, |(_, seq)| *seq as i64)
}
