//! People: profiles, friends, the blacklist and who may message a user.
//!
//! Every change is a write of the message pipeline, so it takes one place in the commit order:
//! a block or a friends-only policy applies to exactly the messages committed after it. Each
//! change records a notice in the actor's notice timeline with inbox entries for whoever must
//! learn it (the actor's devices, and for friend requests, answers and removals the other user),
//! so every device converges through sync; the lists themselves are read by version.

use std::sync::Arc;

use crate::{
    Refusal, ServiceError,
    content::{BlockChanged, Content, FriendEvent, FriendEventKind, ProfileChanged},
    ids::UserId,
    messages::MessageService,
    store::{InboxStore, Write},
};

/// The longest nickname, in bytes.
pub const MAX_NICKNAME: usize = 64;
/// The longest avatar reference, in bytes.
pub const MAX_AVATAR: usize = 2048;
/// The longest signature, in bytes.
pub const MAX_SIGNATURE: usize = 256;
/// The longest extra JSON, in bytes.
pub const MAX_EXTRA: usize = 4096;
/// The longest remark, in bytes.
pub const MAX_REMARK: usize = 64;
/// The longest friend request message, in bytes.
pub const MAX_REQUEST_MESSAGE: usize = 256;
/// Profiles per PROFILE_GET.
pub const MAX_PROFILES_PER_GET: usize = 200;
/// Pending requests listed per FRIEND_LIST.
pub const MAX_LISTED_REQUESTS: u32 = 200;

/// Who may start a one-to-one conversation with a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrangerPolicy {
    /// Anyone not blocked.
    #[default]
    Anyone,
    /// Friends only.
    FriendsOnly,
}

/// A user's public profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Whose.
    pub user: UserId,
    /// Display name; empty when never set.
    pub nickname: String,
    /// A file id or URL.
    pub avatar: String,
    /// A short status line.
    pub signature: String,
    /// A JSON object as text, or empty.
    pub extra: String,
    /// When it last changed (0: never).
    pub updated_ms: i64,
}

impl Profile {
    /// The profile of a user who never set one.
    pub fn empty(user: UserId) -> Self {
        Self {
            user,
            nickname: String::new(),
            avatar: String::new(),
            signature: String::new(),
            extra: String::new(),
            updated_ms: 0,
        }
    }
}

/// Changes to a profile and settings; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    /// New nickname.
    pub nickname: Option<String>,
    /// New avatar.
    pub avatar: Option<String>,
    /// New signature.
    pub signature: Option<String>,
    /// New extra JSON.
    pub extra: Option<String>,
    /// New stranger policy.
    pub stranger_policy: Option<StrangerPolicy>,
}

impl ProfilePatch {
    /// Checks every field that is set.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let check = |v: &Option<String>, max: usize, what: &str| match v {
            Some(s) if s.len() > max => Err(ServiceError::InvalidArgument(format!(
                "{what} is longer than {max} bytes"
            ))),
            _ => Ok(()),
        };
        check(&self.nickname, MAX_NICKNAME, "nickname")?;
        check(&self.avatar, MAX_AVATAR, "avatar")?;
        check(&self.signature, MAX_SIGNATURE, "signature")?;
        check(&self.extra, MAX_EXTRA, "extra")?;
        if let Some(extra) = &self.extra
            && !extra.is_empty()
            && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(extra).is_err()
        {
            return Err(ServiceError::InvalidArgument(
                "extra must be a JSON object or empty".into(),
            ));
        }
        if self.nickname.as_deref().is_some_and(has_control) {
            return Err(ServiceError::InvalidArgument(
                "nickname has control characters".into(),
            ));
        }
        Ok(())
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ProfilePatch::default()
    }

    /// The profile and policy after the patch, or `None` when it changes nothing.
    pub fn apply(
        &self,
        profile: &Profile,
        policy: StrangerPolicy,
        now_ms: i64,
    ) -> Option<(Profile, StrangerPolicy)> {
        let mut next = profile.clone();
        let set = |field: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                field.clone_from(v);
            }
        };
        set(&mut next.nickname, &self.nickname);
        set(&mut next.avatar, &self.avatar);
        set(&mut next.signature, &self.signature);
        set(&mut next.extra, &self.extra);
        let policy_next = self.stranger_policy.unwrap_or(policy);
        if next == *profile && policy_next == policy {
            return None;
        }
        next.updated_ms = now_ms;
        Some((next, policy_next))
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A change to the social graph, decided in the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum SocialChange {
    /// Change the actor's profile and settings.
    UpdateProfile(ProfilePatch),
    /// Ask `to` to be friends.
    FriendRequest {
        /// Who is asked.
        to: UserId,
        /// The request's message.
        message: String,
    },
    /// Answer the pending request of `from`.
    FriendRespond {
        /// Who asked.
        from: UserId,
        /// Accept (else decline).
        accept: bool,
    },
    /// End a friendship.
    FriendDelete(UserId),
    /// Set the actor's remark for a friend.
    FriendRemark {
        /// The friend.
        friend: UserId,
        /// The remark (empty clears it).
        remark: String,
    },
    /// Refuse a user's one-to-one messages and friend requests.
    Block(UserId),
    /// Stop refusing them.
    Unblock(UserId),
}

/// One friend of a user, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRecord {
    /// The friend.
    pub user: UserId,
    /// The owner's remark for it.
    pub remark: String,
    /// When the friendship began.
    pub since_ms: i64,
    /// The friendship ended (listed only among changes).
    pub removed: bool,
}

/// A pending friend request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequestRecord {
    /// Who asked.
    pub from: UserId,
    /// Who is asked.
    pub to: UserId,
    /// Its message.
    pub message: String,
    /// When.
    pub created_ms: i64,
}

/// Profiles, friends and blocks as readers see them (written through the message pipeline).
#[async_trait::async_trait]
pub trait SocialStore: Send + Sync + std::fmt::Debug + 'static {
    /// The profiles of those of `users` that exist, in the same order.
    async fn profiles(&self, users: Vec<UserId>) -> Result<Vec<Profile>, crate::StoreError>;

    /// A user's stranger policy.
    async fn stranger_policy(&self, user: &UserId) -> Result<StrangerPolicy, crate::StoreError>;

    /// Users whose nickname starts with `prefix`, ordered by nickname, `limit` at most.
    async fn search_nicknames(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<Profile>, crate::StoreError>;

    /// `user`'s friends; with `since` 0 the current ones, otherwise the rows changed by notices
    /// after inbox seq `since`, removals included.
    async fn friends(
        &self,
        user: &UserId,
        since: u64,
    ) -> Result<Vec<FriendRecord>, crate::StoreError>;

    /// Pending requests to or from `user`, newest first, `limit` at most.
    async fn friend_requests(
        &self,
        user: &UserId,
        limit: u32,
    ) -> Result<Vec<FriendRequestRecord>, crate::StoreError>;

    /// Whether `user` is friends with each of `others`, in the same order.
    async fn are_friends(
        &self,
        user: &UserId,
        others: Vec<UserId>,
    ) -> Result<Vec<bool>, crate::StoreError>;

    /// Everyone `user` blocked, ordered by id.
    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, crate::StoreError>;

    /// Whether `recipient` refuses one-to-one traffic from `sender` (a block, or a friends-only
    /// policy and no friendship), as committed now.
    async fn refuses(&self, recipient: &UserId, sender: &UserId)
    -> Result<bool, crate::StoreError>;
}

/// A user's friend list, whole or the changes since a version.
#[derive(Debug, Clone, PartialEq)]
pub struct FriendList {
    /// Friends added or changed (all of them when `full`).
    pub friends: Vec<FriendRecord>,
    /// Users who stopped being friends since.
    pub removed: Vec<UserId>,
    /// Pending requests to or from the user.
    pub requests: Vec<FriendRequestRecord>,
    /// The version to ask for changes from.
    pub version: u64,
    /// Whether this is the whole list.
    pub full: bool,
}

/// Profiles, friends and the blacklist.
#[derive(Debug, Clone)]
pub struct SocialService {
    messages: MessageService,
    store: Arc<dyn SocialStore>,
    inbox: Arc<dyn InboxStore>,
}

fn parse_user(raw: &str) -> Result<UserId, ServiceError> {
    UserId::parse(raw).map_err(|_| ServiceError::UnknownUser(crate::messages::unknown_user(raw)))
}

impl SocialService {
    /// The service over the message pipeline (which commits every change) and the stores.
    pub fn new(
        messages: MessageService,
        store: Arc<dyn SocialStore>,
        inbox: Arc<dyn InboxStore>,
    ) -> Self {
        Self {
            messages,
            store,
            inbox,
        }
    }

    async fn submit(&self, actor: &UserId, change: SocialChange) -> Result<u64, ServiceError> {
        let done = self
            .messages
            .submit_applied(Write::Social(SocialWrite {
                actor: actor.clone(),
                change,
                now_ms: self.messages.now_ms(),
            }))?
            .await?;
        Ok(done.value)
    }

    /// Profiles of existing users among `users` (unknown or invalid ids are left out).
    pub async fn profiles(&self, users: &[String]) -> Result<Vec<Profile>, ServiceError> {
        if users.len() > MAX_PROFILES_PER_GET {
            return Err(ServiceError::InvalidArgument(format!(
                "at most {MAX_PROFILES_PER_GET} profiles per request"
            )));
        }
        let ids: Vec<UserId> = users.iter().filter_map(|u| UserId::parse(u).ok()).collect();
        Ok(self.store.profiles(ids).await?)
    }

    /// Changes the caller's profile and settings; answers with them after the change.
    pub async fn update_profile(
        &self,
        user: &UserId,
        patch: ProfilePatch,
    ) -> Result<(Profile, StrangerPolicy), ServiceError> {
        patch.validate()?;
        if !patch.is_empty() {
            self.submit(user, SocialChange::UpdateProfile(patch))
                .await?;
        }
        let profile = self
            .store
            .profiles(vec![user.clone()])
            .await?
            .pop()
            .unwrap_or_else(|| Profile::empty(user.clone()));
        Ok((profile, self.store.stranger_policy(user).await?))
    }

    /// The user whose id is `query`, then users whose nickname starts with it.
    pub async fn search(&self, query: &str, limit: u32) -> Result<Vec<Profile>, ServiceError> {
        if query.is_empty() || query.len() > MAX_NICKNAME {
            return Err(ServiceError::InvalidArgument(
                "query must be 1 to 64 bytes".into(),
            ));
        }
        let limit = if limit == 0 { 20 } else { limit.min(100) };
        let mut out = match UserId::parse(query) {
            Ok(id) => self.store.profiles(vec![id]).await?,
            Err(_) => Vec::new(),
        };
        for p in self.store.search_nicknames(query, limit).await? {
            if out.len() >= limit as usize {
                break;
            }
            if !out.iter().any(|o| o.user == p.user) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Asks `to` to be friends; answers whether they are friends afterwards.
    pub async fn request_friend(
        &self,
        user: &UserId,
        to: &str,
        message: String,
    ) -> Result<bool, ServiceError> {
        let to = parse_user(to)?;
        if &to == user {
            return Err(ServiceError::InvalidArgument(
                "you cannot befriend yourself".into(),
            ));
        }
        if message.len() > MAX_REQUEST_MESSAGE {
            return Err(ServiceError::InvalidArgument(format!(
                "the message is longer than {MAX_REQUEST_MESSAGE} bytes"
            )));
        }
        Ok(self
            .submit(user, SocialChange::FriendRequest { to, message })
            .await?
            == 1)
    }

    /// Accepts or declines the pending request of `from`.
    pub async fn respond(
        &self,
        user: &UserId,
        from: &str,
        accept: bool,
    ) -> Result<(), ServiceError> {
        let from = UserId::parse(from).map_err(|_| ServiceError::RequestNotFound)?;
        self.submit(user, SocialChange::FriendRespond { from, accept })
            .await
            .map(drop)
    }

    /// Ends a friendship (succeeds when there is none).
    pub async fn delete_friend(&self, user: &UserId, friend: &str) -> Result<(), ServiceError> {
        let friend = parse_user(friend)?;
        self.submit(user, SocialChange::FriendDelete(friend))
            .await
            .map(drop)
    }

    /// Sets the caller's remark for a friend.
    pub async fn remark(
        &self,
        user: &UserId,
        friend: &str,
        remark: String,
    ) -> Result<(), ServiceError> {
        let friend = parse_user(friend)?;
        if remark.len() > MAX_REMARK || has_control(&remark) {
            return Err(ServiceError::InvalidArgument(format!(
                "a remark is at most {MAX_REMARK} bytes without control characters"
            )));
        }
        self.submit(user, SocialChange::FriendRemark { friend, remark })
            .await
            .map(drop)
    }

    /// The caller's friends: all with `since` 0, else the changes after that version.
    pub async fn friends(&self, user: &UserId, since: u64) -> Result<FriendList, ServiceError> {
        // Read first: a change committed meanwhile is listed again next time, never missed.
        let version = self.inbox.inbox_head(user).await?;
        let full = since == 0 || since > version;
        let rows = self
            .store
            .friends(user, if full { 0 } else { since })
            .await?;
        let (removed, friends): (Vec<FriendRecord>, Vec<FriendRecord>) =
            rows.into_iter().partition(|f| f.removed);
        let requests = self
            .store
            .friend_requests(user, MAX_LISTED_REQUESTS)
            .await?;
        Ok(FriendList {
            friends,
            removed: removed.into_iter().map(|f| f.user).collect(),
            requests,
            version,
            full,
        })
    }

    /// Blocks a user.
    pub async fn block(&self, user: &UserId, other: &str) -> Result<(), ServiceError> {
        let other = parse_user(other)?;
        if &other == user {
            return Err(ServiceError::InvalidArgument(
                "you cannot block yourself".into(),
            ));
        }
        self.submit(user, SocialChange::Block(other))
            .await
            .map(drop)
    }

    /// Unblocks a user (succeeds when it was not blocked).
    pub async fn unblock(&self, user: &UserId, other: &str) -> Result<(), ServiceError> {
        let other = parse_user(other)?;
        self.submit(user, SocialChange::Unblock(other))
            .await
            .map(drop)
    }

    /// Everyone the caller blocked.
    pub async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, ServiceError> {
        Ok(self.store.blocked(user).await?)
    }

    /// Which of `others` are friends of `user`.
    pub async fn are_friends(
        &self,
        user: &UserId,
        others: Vec<UserId>,
    ) -> Result<Vec<bool>, ServiceError> {
        Ok(self.store.are_friends(user, others).await?)
    }
}

/// A social change by `actor`.
#[derive(Debug, Clone)]
pub struct SocialWrite {
    /// Who makes it.
    pub actor: UserId,
    /// What.
    pub change: SocialChange,
    /// When.
    pub now_ms: i64,
}

/// What a social decision needs to know, loaded by the backend in the writer's transaction:
/// the actor, and the other user the change names (for a profile change, nobody).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocialState {
    /// The actor's profile and policy; `None` if the actor does not exist.
    pub actor: Option<(Profile, StrangerPolicy)>,
    /// The other user exists.
    pub other_exists: bool,
    /// The actor and the other user are friends.
    pub friends: bool,
    /// The actor's remark for the other user, when they are friends.
    pub remark: String,
    /// The other user asked the actor to be friends, and the actor has not answered.
    pub requested_by_other: bool,
    /// The actor blocks the other user.
    pub actor_blocks: bool,
    /// The other user blocks the actor.
    pub other_blocks: bool,
}

/// A state change a social decision makes; the backend persists each in order, in the same
/// transaction as the notice. A row's version is the inbox seq its owner's notice took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocialMutation {
    /// The actor's new profile and policy.
    SetProfile(Profile, StrangerPolicy),
    /// A pending request from `from` to `to` (replacing an earlier one).
    PutRequest {
        /// Who asks.
        from: UserId,
        /// Who is asked.
        to: UserId,
        /// What the request says.
        message: String,
    },
    /// The pending request from `from` to `to` is answered.
    DeleteRequest {
        /// Who asked.
        from: UserId,
        /// Who was asked.
        to: UserId,
    },
    /// `a` and `b` become friends (both directions, no remark).
    Befriend(UserId, UserId),
    /// `a` and `b` stop being friends (both directions keep a removed row).
    Unfriend(UserId, UserId),
    /// `owner`'s remark for `friend`.
    SetRemark {
        /// Whose list.
        owner: UserId,
        /// Which friend.
        friend: UserId,
        /// The remark.
        remark: String,
    },
    /// `user` blocks `blocked`.
    Block {
        /// Who blocks.
        user: UserId,
        /// Whom.
        blocked: UserId,
    },
    /// `user` stops blocking `blocked`.
    Unblock {
        /// Who blocked.
        user: UserId,
        /// Whom.
        blocked: UserId,
    },
}

/// The notice a social change records in the actor's notice timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct SocialNotice {
    /// What it says.
    pub body: Content,
    /// Who besides the actor gets an inbox entry for it.
    pub also_to: Option<UserId>,
}

/// What a social change does.
#[derive(Debug, Clone, PartialEq)]
pub struct SocialDecision {
    /// The notice to record first (`None`: the change changes nothing).
    pub notice: Option<SocialNotice>,
    /// The state changes, in order, after the notice.
    pub mutations: Vec<SocialMutation>,
    /// The actor and the other user are friends afterwards.
    pub now_friends: bool,
    /// The actor now refuses some one-to-one messages (it blocks someone, or takes messages
    /// from friends only): the writer checks its messages from now on.
    pub restrictive: bool,
}

impl SocialDecision {
    fn nothing(now_friends: bool) -> Self {
        Self {
            notice: None,
            mutations: Vec::new(),
            now_friends,
            restrictive: false,
        }
    }

    fn notice(body: Content, also_to: Option<UserId>, mutations: Vec<SocialMutation>) -> Self {
        Self {
            notice: Some(SocialNotice { body, also_to }),
            mutations,
            now_friends: false,
            restrictive: false,
        }
    }
}

fn friend_event(kind: FriendEventKind, other: &UserId, message: String, remark: String) -> Content {
    Content::FriendEvent(FriendEvent {
        kind,
        user: other.clone(),
        message,
        remark,
    })
}

/// The user a change names besides its actor, if any: the one the backend loads state about.
pub fn other_of(change: &SocialChange) -> Option<&UserId> {
    match change {
        SocialChange::UpdateProfile(_) => None,
        SocialChange::FriendRequest { to, .. } => Some(to),
        SocialChange::FriendRespond { from, .. } => Some(from),
        SocialChange::FriendDelete(other)
        | SocialChange::FriendRemark { friend: other, .. }
        | SocialChange::Block(other)
        | SocialChange::Unblock(other) => Some(other),
    }
}

/// Decides a social change against the state of the two users it concerns.
///
/// Mutual requests make friends (asking someone who asked first is accepting); nobody blocks
/// themself; a remark is only for a friend; a request to someone who blocks the actor is refused
/// without saying why; a change that changes nothing records no notice. Requests, answers and
/// removals notify the other user too; everything else only the actor's devices.
pub fn decide(write: &SocialWrite, state: &SocialState) -> Result<SocialDecision, Refusal> {
    let actor = &write.actor;
    let befriend = |other: &UserId| SocialDecision {
        now_friends: true,
        ..SocialDecision::notice(
            friend_event(FriendEventKind::Added, other, String::new(), String::new()),
            Some(other.clone()),
            vec![
                SocialMutation::DeleteRequest {
                    from: other.clone(),
                    to: actor.clone(),
                },
                SocialMutation::DeleteRequest {
                    from: actor.clone(),
                    to: other.clone(),
                },
                SocialMutation::Befriend(actor.clone(), other.clone()),
            ],
        )
    };
    match &write.change {
        SocialChange::UpdateProfile(patch) => {
            let Some((current, policy)) = &state.actor else {
                return Err(Refusal::UnknownUser(actor.clone()));
            };
            let Some((next, next_policy)) = patch.apply(current, *policy, write.now_ms) else {
                return Ok(SocialDecision::nothing(false));
            };
            let body = Content::ProfileChanged(ProfileChanged {
                profile: next.clone(),
                stranger_policy: next_policy,
            });
            Ok(SocialDecision {
                restrictive: next_policy == StrangerPolicy::FriendsOnly,
                ..SocialDecision::notice(
                    body,
                    None,
                    vec![SocialMutation::SetProfile(next, next_policy)],
                )
            })
        }
        SocialChange::FriendRequest { to, message } => {
            if !state.other_exists {
                return Err(Refusal::UnknownUser(to.clone()));
            }
            if state.other_blocks {
                return Err(Refusal::NotAccepted);
            }
            if state.friends {
                return Ok(SocialDecision::nothing(true));
            }
            if state.requested_by_other {
                // They asked first: asking back is accepting.
                return Ok(befriend(to));
            }
            Ok(SocialDecision::notice(
                friend_event(
                    FriendEventKind::Requested,
                    to,
                    message.clone(),
                    String::new(),
                ),
                Some(to.clone()),
                vec![SocialMutation::PutRequest {
                    from: actor.clone(),
                    to: to.clone(),
                    message: message.clone(),
                }],
            ))
        }
        SocialChange::FriendRespond { from, accept } => {
            if !state.requested_by_other {
                return Err(Refusal::RequestNotFound);
            }
            if *accept {
                return Ok(befriend(from));
            }
            Ok(SocialDecision::notice(
                friend_event(
                    FriendEventKind::Declined,
                    from,
                    String::new(),
                    String::new(),
                ),
                None,
                vec![SocialMutation::DeleteRequest {
                    from: from.clone(),
                    to: actor.clone(),
                }],
            ))
        }
        SocialChange::FriendDelete(other) => {
            if !state.friends {
                return Ok(SocialDecision::nothing(false));
            }
            Ok(SocialDecision::notice(
                friend_event(
                    FriendEventKind::Removed,
                    other,
                    String::new(),
                    String::new(),
                ),
                Some(other.clone()),
                vec![SocialMutation::Unfriend(actor.clone(), other.clone())],
            ))
        }
        SocialChange::FriendRemark { friend, remark } => {
            if !state.friends {
                return Err(Refusal::InvalidArgument(
                    "a remark can only be set for a friend".into(),
                ));
            }
            if state.remark == *remark {
                return Ok(SocialDecision::nothing(true));
            }
            Ok(SocialDecision {
                now_friends: true,
                ..SocialDecision::notice(
                    friend_event(
                        FriendEventKind::Remarked,
                        friend,
                        String::new(),
                        remark.clone(),
                    ),
                    None,
                    vec![SocialMutation::SetRemark {
                        owner: actor.clone(),
                        friend: friend.clone(),
                        remark: remark.clone(),
                    }],
                )
            })
        }
        SocialChange::Block(other) | SocialChange::Unblock(other) if other == actor => {
            Err(Refusal::InvalidArgument("you cannot block yourself".into()))
        }
        SocialChange::Block(other) => {
            if !state.other_exists {
                return Err(Refusal::UnknownUser(other.clone()));
            }
            if state.actor_blocks {
                return Ok(SocialDecision::nothing(state.friends));
            }
            let body = Content::BlockChanged(BlockChanged {
                user: other.clone(),
                blocked: true,
            });
            Ok(SocialDecision {
                restrictive: true,
                now_friends: state.friends,
                ..SocialDecision::notice(
                    body,
                    None,
                    vec![SocialMutation::Block {
                        user: actor.clone(),
                        blocked: other.clone(),
                    }],
                )
            })
        }
        SocialChange::Unblock(other) => {
            if !state.actor_blocks {
                return Ok(SocialDecision::nothing(state.friends));
            }
            let body = Content::BlockChanged(BlockChanged {
                user: other.clone(),
                blocked: false,
            });
            Ok(SocialDecision {
                now_friends: state.friends,
                ..SocialDecision::notice(
                    body,
                    None,
                    vec![SocialMutation::Unblock {
                        user: actor.clone(),
                        blocked: other.clone(),
                    }],
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Profile {
        Profile::empty(UserId::parse("me").unwrap())
    }

    #[test]
    fn patches_are_validated_field_by_field() {
        let ok = ProfilePatch {
            nickname: Some("Ann".into()),
            extra: Some(r#"{"team":"blue"}"#.into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        for bad in [
            ProfilePatch {
                nickname: Some("x".repeat(65)),
                ..Default::default()
            },
            ProfilePatch {
                nickname: Some("a\nb".into()),
                ..Default::default()
            },
            ProfilePatch {
                extra: Some("[1,2]".into()),
                ..Default::default()
            },
            ProfilePatch {
                extra: Some("{".into()),
                ..Default::default()
            },
            ProfilePatch {
                signature: Some("s".repeat(257)),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(ServiceError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_patch_that_changes_nothing_applies_as_none() {
        let patch = ProfilePatch {
            nickname: Some(String::new()),
            stranger_policy: Some(StrangerPolicy::Anyone),
            ..Default::default()
        };
        assert_eq!(patch.apply(&me(), StrangerPolicy::Anyone, 5), None);
        let patch = ProfilePatch {
            nickname: Some("Ann".into()),
            ..Default::default()
        };
        let (p, policy) = patch.apply(&me(), StrangerPolicy::FriendsOnly, 5).unwrap();
        assert_eq!(
            (p.nickname.as_str(), p.updated_ms, policy),
            ("Ann", 5, StrangerPolicy::FriendsOnly)
        );
    }
}

#[cfg(test)]
mod decide_tests {
    //! The social rules as a table: each row is a change, the state of the two users, and what
    //! must come of it.

    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn write(change: SocialChange) -> SocialWrite {
        SocialWrite {
            actor: u("ann"),
            change,
            now_ms: 7,
        }
    }

    /// A short name for what a decision did.
    fn outcome(r: Result<SocialDecision, Refusal>) -> String {
        match r {
            Err(e) => format!("refused {e:?}"),
            Ok(d) => {
                let notice = match &d.notice {
                    None => "no notice".to_string(),
                    Some(n) => format!(
                        "notice{}",
                        n.also_to
                            .as_ref()
                            .map_or(String::new(), |o| format!(" also to {o}"))
                    ),
                };
                let mutations: Vec<String> = d
                    .mutations
                    .iter()
                    .map(|m| match m {
                        SocialMutation::SetProfile(..) => "set profile".to_string(),
                        SocialMutation::PutRequest { from, to, .. } => {
                            format!("request {from}>{to}")
                        }
                        SocialMutation::DeleteRequest { from, to } => format!("drop {from}>{to}"),
                        SocialMutation::Befriend(a, b) => format!("befriend {a},{b}"),
                        SocialMutation::Unfriend(a, b) => format!("unfriend {a},{b}"),
                        SocialMutation::SetRemark { remark, .. } => format!("remark {remark}"),
                        SocialMutation::Block { blocked, .. } => format!("block {blocked}"),
                        SocialMutation::Unblock { blocked, .. } => format!("unblock {blocked}"),
                    })
                    .collect();
                format!(
                    "{notice}; [{}]; friends={}; restrictive={}",
                    mutations.join(", "),
                    d.now_friends,
                    d.restrictive
                )
            }
        }
    }

    fn bob_exists() -> SocialState {
        SocialState {
            other_exists: true,
            ..SocialState::default()
        }
    }

    #[test]
    fn friend_requests_answers_and_removals() {
        let request = || SocialChange::FriendRequest {
            to: u("bob"),
            message: "hi".into(),
        };
        let rows: Vec<(&str, SocialChange, SocialState, &str)> = vec![
            (
                "a request to a stranger waits for the answer and tells both",
                request(),
                bob_exists(),
                "notice also to bob; [request ann>bob]; friends=false; restrictive=false",
            ),
            (
                "asking back someone who asked first is accepting",
                request(),
                SocialState {
                    requested_by_other: true,
                    ..bob_exists()
                },
                "notice also to bob; [drop bob>ann, drop ann>bob, befriend ann,bob]; friends=true; restrictive=false",
            ),
            (
                "asking a friend changes nothing",
                request(),
                SocialState {
                    friends: true,
                    ..bob_exists()
                },
                "no notice; []; friends=true; restrictive=false",
            ),
            (
                "a request to someone who blocks the actor is refused without saying why",
                request(),
                SocialState {
                    other_blocks: true,
                    ..bob_exists()
                },
                "refused NotAccepted",
            ),
            (
                "a request to nobody is refused",
                request(),
                SocialState::default(),
                "refused UnknownUser(UserId(bob))",
            ),
            (
                "accepting a pending request makes friends",
                SocialChange::FriendRespond {
                    from: u("bob"),
                    accept: true,
                },
                SocialState {
                    requested_by_other: true,
                    ..bob_exists()
                },
                "notice also to bob; [drop bob>ann, drop ann>bob, befriend ann,bob]; friends=true; restrictive=false",
            ),
            (
                "declining tells only the actor's devices",
                SocialChange::FriendRespond {
                    from: u("bob"),
                    accept: false,
                },
                SocialState {
                    requested_by_other: true,
                    ..bob_exists()
                },
                "notice; [drop bob>ann]; friends=false; restrictive=false",
            ),
            (
                "answering no request is refused",
                SocialChange::FriendRespond {
                    from: u("bob"),
                    accept: true,
                },
                bob_exists(),
                "refused RequestNotFound",
            ),
            (
                "removing a friend tells both",
                SocialChange::FriendDelete(u("bob")),
                SocialState {
                    friends: true,
                    ..bob_exists()
                },
                "notice also to bob; [unfriend ann,bob]; friends=false; restrictive=false",
            ),
            (
                "removing a stranger changes nothing",
                SocialChange::FriendDelete(u("bob")),
                bob_exists(),
                "no notice; []; friends=false; restrictive=false",
            ),
        ];
        for (why, change, state, want) in rows {
            assert_eq!(outcome(decide(&write(change), &state)), want, "{why}");
        }
    }

    #[test]
    fn remarks_blocks_and_profiles() {
        let remark = |r: &str| SocialChange::FriendRemark {
            friend: u("bob"),
            remark: r.into(),
        };
        let me = Profile::empty(u("ann"));
        let rows: Vec<(&str, SocialChange, SocialState, &str)> = vec![
            (
                "a remark is only for a friend",
                remark("pal"),
                bob_exists(),
                "refused InvalidArgument(\"a remark can only be set for a friend\")",
            ),
            (
                "a new remark for a friend",
                remark("pal"),
                SocialState {
                    friends: true,
                    ..bob_exists()
                },
                "notice; [remark pal]; friends=true; restrictive=false",
            ),
            (
                "the same remark again changes nothing",
                remark("pal"),
                SocialState {
                    friends: true,
                    remark: "pal".into(),
                    ..bob_exists()
                },
                "no notice; []; friends=true; restrictive=false",
            ),
            (
                "a block makes the actor restrictive",
                SocialChange::Block(u("bob")),
                bob_exists(),
                "notice; [block bob]; friends=false; restrictive=true",
            ),
            (
                "blocking twice changes nothing",
                SocialChange::Block(u("bob")),
                SocialState {
                    actor_blocks: true,
                    ..bob_exists()
                },
                "no notice; []; friends=false; restrictive=false",
            ),
            (
                "nobody blocks themself",
                SocialChange::Block(u("ann")),
                bob_exists(),
                "refused InvalidArgument(\"you cannot block yourself\")",
            ),
            (
                "blocking nobody is refused",
                SocialChange::Block(u("bob")),
                SocialState::default(),
                "refused UnknownUser(UserId(bob))",
            ),
            (
                "unblocking",
                SocialChange::Unblock(u("bob")),
                SocialState {
                    actor_blocks: true,
                    ..bob_exists()
                },
                "notice; [unblock bob]; friends=false; restrictive=false",
            ),
            (
                "unblocking someone not blocked changes nothing",
                SocialChange::Unblock(u("bob")),
                bob_exists(),
                "no notice; []; friends=false; restrictive=false",
            ),
            (
                "friends only makes the actor restrictive",
                SocialChange::UpdateProfile(ProfilePatch {
                    stranger_policy: Some(StrangerPolicy::FriendsOnly),
                    ..ProfilePatch::default()
                }),
                SocialState {
                    actor: Some((me.clone(), StrangerPolicy::Anyone)),
                    ..SocialState::default()
                },
                "notice; [set profile]; friends=false; restrictive=true",
            ),
            (
                "a patch that changes nothing records nothing",
                SocialChange::UpdateProfile(ProfilePatch {
                    nickname: Some(String::new()),
                    ..ProfilePatch::default()
                }),
                SocialState {
                    actor: Some((me.clone(), StrangerPolicy::Anyone)),
                    ..SocialState::default()
                },
                "no notice; []; friends=false; restrictive=false",
            ),
        ];
        for (why, change, state, want) in rows {
            assert_eq!(outcome(decide(&write(change), &state)), want, "{why}");
        }
    }
}
