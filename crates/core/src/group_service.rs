//! The group service: creating and changing groups through the message pipeline, and reading
//! them.
//!
//! Every create and change is a write of the message pipeline, so it is committed in the same
//! serialization as the group's messages (see [`crate::groups`] for why that matters), is
//! durable before it is answered, and its event is published in commit order like a message.

use std::sync::Arc;

use crate::{
    ServiceError,
    groups::{
        GroupChange, GroupChangeRequest, GroupSettings, HistoryVisibility, Member, NewGroup, dedup,
    },
    ids::{GroupId, UserId},
    messages::MessageService,
    store::{GroupRecord, GroupStore, Write},
};

/// Members per GROUP_MEMBERS page when the client asks for 0.
pub const DEFAULT_MEMBERS_PAGE: u32 = 200;
/// The most members one GROUP_MEMBERS page carries.
pub const MAX_MEMBERS_PAGE: u32 = 1000;

/// A group as one member sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// The group.
    pub id: GroupId,
    /// Its settings.
    pub settings: GroupSettings,
    /// How many members it has.
    pub member_count: usize,
    /// The newest seq of its timeline.
    pub head_seq: u64,
    /// The viewer's membership (`None` after the viewer left or was removed).
    pub me: Option<Member>,
    /// Whether its messages currently travel by read diffusion.
    pub read_diffusion: bool,
}

impl GroupView {
    /// The first timeline seq the viewer may read (0 when not a member).
    pub fn visible_from(&self) -> u64 {
        self.me
            .map_or(0, |m| self.settings.history.first_seq(m.joined_seq))
    }
}

/// What a client asks for when it creates a group.
#[derive(Debug, Clone, Default)]
pub struct CreateInput {
    /// The name.
    pub name: String,
    /// Initial members besides the creator, unvalidated.
    pub members: Vec<String>,
    /// A file id or URL.
    pub avatar: String,
    /// The first announcement.
    pub announcement: String,
    /// Which history new members see.
    pub history: HistoryVisibility,
    /// The client's idempotency key (empty: none).
    pub request_id: String,
}

/// Groups: create, change, read.
#[derive(Debug, Clone)]
pub struct GroupService {
    messages: MessageService,
    store: Arc<dyn GroupStore>,
}

/// Parses user ids from a request, deduplicated, in order.
pub fn parse_users(raw: &[String]) -> Result<Vec<UserId>, ServiceError> {
    let users = raw
        .iter()
        .map(|u| UserId::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup(&users))
}

impl GroupService {
    /// The service over the message pipeline (which commits group writes) and `store`.
    pub fn new(messages: MessageService, store: Arc<dyn GroupStore>) -> Self {
        Self { messages, store }
    }

    fn view(&self, record: GroupRecord, me: Option<Member>) -> GroupView {
        GroupView {
            id: record.id,
            read_diffusion: record.member_count > self.messages.group_limits().write_diffusion_max,
            settings: record.settings,
            member_count: record.member_count,
            head_seq: record.head_seq,
            me,
        }
    }

    /// Creates a group owned by `owner`; answers once it is durable.
    pub async fn create(
        &self,
        owner: &UserId,
        input: CreateInput,
    ) -> Result<GroupView, ServiceError> {
        let members: Vec<UserId> = parse_users(&input.members)?
            .into_iter()
            .filter(|u| u != owner)
            .collect();
        let new = NewGroup {
            owner: owner.clone(),
            name: input.name,
            avatar: input.avatar,
            announcement: input.announcement,
            history: input.history,
            members,
            request_id: input.request_id,
            created_ms: self.messages.now_ms(),
            limits: self.messages.group_limits(),
        };
        // Refuse early what the store would refuse anyway, without taking a commit slot.
        crate::groups::decide_create(&new)?;
        let done = self
            .messages
            .submit_group(Write::CreateGroup(new), None)?
            .await?;
        Ok(self.committed_view(owner, done))
    }

    /// Applies one change by `actor`; answers with the group after it and the event's seq (0
    /// when nothing changed).
    pub async fn change(
        &self,
        actor: &UserId,
        group: u64,
        change: GroupChange,
    ) -> Result<(GroupView, u64), ServiceError> {
        if group == 0 {
            return Err(ServiceError::NotAParticipant);
        }
        let request = GroupChangeRequest {
            group: GroupId(group),
            actor: actor.clone(),
            change,
            now_ms: self.messages.now_ms(),
            limits: self.messages.group_limits(),
        };
        let done = self
            .messages
            .submit_group(Write::ChangeGroup(request), None)?
            .await?;
        let seq = done.event_seq;
        Ok((self.committed_view(actor, done), seq))
    }

    fn committed_view(&self, viewer: &UserId, done: crate::messages::GroupCommitted) -> GroupView {
        let me = done.state.members.get(viewer).copied();
        let record = GroupRecord {
            id: done.state.id,
            member_count: done.state.members.len(),
            settings: done.state.settings,
            head_seq: done.head_seq,
        };
        self.view(record, me)
    }

    /// A group as the app's administrators see it: whoever its members are.
    pub async fn inspect(&self, group: u64) -> Result<GroupView, ServiceError> {
        // The store answers a group with one user's membership; here the user is only a probe
        // and the membership it answers is ignored.
        let probe = UserId::parse(".admin").map_err(|e| ServiceError::Internal(e.to_string()))?;
        match self.store.group(GroupId(group), &probe).await? {
            Some((record, _)) => Ok(self.view(record, None)),
            None => Err(ServiceError::NotAParticipant),
        }
    }

    /// Applies one change with the owner's authority, for the app's administrators: the
    /// group's event names the owner as who made it. An ownership handed over between the
    /// read of the owner and the commit is read again.
    pub async fn administer(
        &self,
        group: u64,
        change: GroupChange,
    ) -> Result<(GroupView, u64), ServiceError> {
        let mut tries = 0;
        loop {
            let owner = self.inspect(group).await?.settings.owner;
            match self.change(&owner, group, change.clone()).await {
                // Refused as a non-owner: try again only if the group changed hands meanwhile.
                Err(e @ (ServiceError::PermissionDenied(_) | ServiceError::NotAParticipant))
                    if tries < 3 =>
                {
                    if self.inspect(group).await?.settings.owner == owner {
                        return Err(e);
                    }
                    tries += 1;
                }
                done => return done,
            }
        }
    }

    /// A page of a group's members for the app's administrators, ordered by user id.
    pub async fn member_page(
        &self,
        group: u64,
        after: &str,
        limit: u32,
    ) -> Result<(Vec<(UserId, Member)>, bool), ServiceError> {
        self.inspect(group).await?;
        self.page(group, after, limit).await
    }

    /// A group `user` is a member of.
    pub async fn info(&self, user: &UserId, group: u64) -> Result<GroupView, ServiceError> {
        match self.store.group(GroupId(group), user).await? {
            Some((record, Some(me))) => Ok(self.view(record, Some(me))),
            _ => Err(ServiceError::NotAParticipant),
        }
    }

    /// A page of the members of a group `user` is a member of, ordered by user id.
    pub async fn members(
        &self,
        user: &UserId,
        group: u64,
        after: &str,
        limit: u32,
    ) -> Result<(Vec<(UserId, Member)>, bool), ServiceError> {
        self.info(user, group).await?;
        self.page(group, after, limit).await
    }

    async fn page(
        &self,
        group: u64,
        after: &str,
        limit: u32,
    ) -> Result<(Vec<(UserId, Member)>, bool), ServiceError> {
        let after = if after.is_empty() {
            None
        } else {
            Some(UserId::parse(after).map_err(|_| {
                ServiceError::InvalidArgument("after must be a user id or empty".into())
            })?)
        };
        let limit = if limit == 0 {
            DEFAULT_MEMBERS_PAGE
        } else {
            limit.min(MAX_MEMBERS_PAGE)
        };
        let mut page = self
            .store
            .group_members(GroupId(group), after, limit + 1)
            .await?;
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    /// Every group `user` is a member of, with its timeline head.
    pub async fn list(&self, user: &UserId) -> Result<Vec<GroupView>, ServiceError> {
        Ok(self
            .store
            .groups_of(user)
            .await?
            .into_iter()
            .map(|(record, me)| self.view(record, Some(me)))
            .collect())
    }
}
