//! Groups: membership, roles and settings, and the rules that decide every change and every
//! send (the group service, which submits changes and reads groups, is `group_service.rs`).
//!
//! A group's state changes only inside the store's write serialization (the same transaction
//! that assigns timeline seqs), so a rule always sees the membership that the next seq will be
//! delivered to: a send racing with a removal is either before it (and reaches the removed
//! member) or after it (and does not). The rules are plain functions over [`GroupState`]; every
//! backend calls them at that point, which keeps the policy here and the atomicity there.

use std::{collections::HashMap, sync::Arc};

use rustc_hash::FxBuildHasher;

use crate::{
    Refusal,
    content::{GroupEvent, GroupEventKind},
    ids::{ConversationId, GroupId, UserId},
};

/// The longest group name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The longest avatar reference, in bytes.
pub const MAX_AVATAR_LEN: usize = 2048;
/// The longest announcement, in bytes.
pub const MAX_ANNOUNCEMENT_LEN: usize = 4096;

/// A member's role. Ordered: an owner outranks an admin, who outranks a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Can send (unless muted) and leave.
    Member,
    /// Can also add and remove members, mute members, and change name, avatar, announcement.
    Admin,
    /// Exactly one per group: can also set roles, transfer ownership, and dissolve.
    Owner,
}

/// Which part of the timeline a member may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryVisibility {
    /// From the event that added the member.
    #[default]
    FromJoin,
    /// The whole timeline.
    Full,
}

impl HistoryVisibility {
    /// The first timeline seq a member who joined at `joined_seq` may read.
    pub fn first_seq(self, joined_seq: u64) -> u64 {
        match self {
            HistoryVisibility::Full => 1,
            HistoryVisibility::FromJoin => joined_seq.max(1),
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// What the member may do.
    pub role: Role,
    /// The timeline seq of the event that added the member.
    pub joined_seq: u64,
    /// Muted until then (Unix ms); 0 when not muted.
    pub muted_until_ms: i64,
}

/// The members of a group. Keys are validated ids and the map's size is bounded by the group
/// limit, so a fast non-cryptographic hash is used: fan-out looks members up per message.
pub type Members = HashMap<UserId, Member, FxBuildHasher>;

/// A group's settings: everything but its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// The display name.
    pub name: String,
    /// A file id or URL.
    pub avatar: String,
    /// The announcement members see.
    pub announcement: String,
    /// The one owner.
    pub owner: UserId,
    /// While on, only the owner and admins can send.
    pub mute_all: bool,
    /// Which history new members see.
    pub history: HistoryVisibility,
    /// A dissolved group keeps its history and takes no sends or changes.
    pub dissolved: bool,
    /// When it was created (Unix ms).
    pub created_ms: i64,
}

/// A group as the rules see it. Members are shared copy-on-write, so a snapshot handed to
/// fan-out costs one reference count, and a change clones the map only while an older
/// snapshot is still being delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    /// The group.
    pub id: GroupId,
    /// Its settings.
    pub settings: GroupSettings,
    /// Its members.
    pub members: Arc<Members>,
}

impl GroupState {
    /// The group's timeline.
    pub fn conversation(&self) -> ConversationId {
        ConversationId::group(self.id)
    }

    /// Applies a decided change. `event_seq` is the timeline seq of the change's event, which
    /// becomes the join point of members it adds.
    pub fn apply(&mut self, mutation: &Mutation, event_seq: u64) {
        match mutation {
            Mutation::Add(user, role) => {
                Arc::make_mut(&mut self.members).insert(
                    user.clone(),
                    Member {
                        role: *role,
                        joined_seq: event_seq,
                        muted_until_ms: 0,
                    },
                );
            }
            Mutation::Remove(user) => {
                Arc::make_mut(&mut self.members).remove(user);
            }
            Mutation::SetRole(user, role) => {
                if let Some(m) = Arc::make_mut(&mut self.members).get_mut(user) {
                    m.role = *role;
                }
                if *role == Role::Owner {
                    self.settings.owner = user.clone();
                }
            }
            Mutation::Mute(user, until) => {
                if let Some(m) = Arc::make_mut(&mut self.members).get_mut(user) {
                    m.muted_until_ms = *until;
                }
            }
            Mutation::Settings(s) => self.settings = s.clone(),
        }
    }

    /// The first timeline seq `user` may read, if `user` is a member.
    pub fn visible_from(&self, user: &UserId) -> Option<u64> {
        let m = self.members.get(user)?;
        Some(self.settings.history.first_seq(m.joined_seq))
    }
}

/// Limits every group write is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// The most members a group may have.
    pub max_members: usize,
    /// Groups with at most this many members use write diffusion (an inbox entry per member);
    /// larger groups use read diffusion (the timeline only, pushed to online members).
    pub write_diffusion_max: usize,
    /// The most members one create or add names.
    pub max_members_per_change: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_members: 100_000,
            write_diffusion_max: 500,
            max_members_per_change: 1000,
        }
    }
}

/// A new group, before the store assigns its id.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// The creator, who becomes the owner.
    pub owner: UserId,
    /// Initial settings (`owner`, `dissolved` and `created_ms` are set from the other fields).
    pub name: String,
    /// A file id or URL.
    pub avatar: String,
    /// The first announcement.
    pub announcement: String,
    /// Which history new members see.
    pub history: HistoryVisibility,
    /// Initial members besides the owner, deduplicated, owner excluded.
    pub members: Vec<UserId>,
    /// The creator's idempotency key (empty: none): a create repeating `(owner, request_id)`
    /// answers with the group created first.
    pub request_id: String,
    /// The creation time.
    pub created_ms: i64,
    /// Limits to check.
    pub limits: GroupLimits,
}

/// One change to a group, as a member asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChange {
    /// Add members (owner, admin).
    AddMembers(Vec<UserId>),
    /// Remove members (owner; admin for plain members).
    RemoveMembers(Vec<UserId>),
    /// The caller leaves (anyone but the owner).
    Leave,
    /// New name (owner, admin).
    Rename(String),
    /// New avatar (owner, admin).
    SetAvatar(String),
    /// New announcement (owner, admin).
    SetAnnouncement(String),
    /// Make a member an admin or a plain member (owner).
    SetRole(UserId, Role),
    /// Hand ownership to a member; the old owner becomes an admin (owner).
    TransferOwner(UserId),
    /// Mute a member until a time, 0 to lift (owner; admin for plain members).
    Mute(UserId, i64),
    /// Mute everyone but the owner and admins (owner, admin).
    MuteAll(bool),
    /// Which history new members see (owner).
    SetHistoryVisibility(HistoryVisibility),
    /// Dissolve the group (owner).
    Dissolve,
}

/// A change to a group, with who asks and the limits to check.
#[derive(Debug, Clone)]
pub struct GroupChangeRequest {
    /// The group.
    pub group: GroupId,
    /// Who asks.
    pub actor: UserId,
    /// What.
    pub change: GroupChange,
    /// When (the event's server time).
    pub now_ms: i64,
    /// Limits to check.
    pub limits: GroupLimits,
}

/// A state change a decision makes; the store persists each and applies it to its state.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// A new member with a role; joins at the event's seq.
    Add(UserId, Role),
    /// A member leaves the group.
    Remove(UserId),
    /// A member's new role (`Owner` also moves `settings.owner`).
    SetRole(UserId, Role),
    /// A member's mute deadline.
    Mute(UserId, i64),
    /// New settings.
    Settings(GroupSettings),
}

/// What a change does: the mutations, in order, and the event that records them. An empty
/// decision (nothing changes) records no event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// The state changes.
    pub mutations: Vec<Mutation>,
    /// The timeline event; `None` when nothing changes.
    pub event: Option<GroupEvent>,
    /// Users the change concerns directly (added, removed, left): they get an inbox entry for
    /// the event even in a read-diffusion group, so every one of their devices learns of it.
    pub concerned: Vec<UserId>,
}

fn check_text(s: &str, max: usize, what: &'static str) -> Result<(), Refusal> {
    if s.len() > max {
        return Err(Refusal::InvalidArgument(format!(
            "{what} is longer than {max} bytes"
        )));
    }
    Ok(())
}

/// Checks a group name: 1 to [`MAX_NAME_LEN`] bytes, not only whitespace.
pub fn check_name(name: &str) -> Result<(), Refusal> {
    if name.trim().is_empty() {
        return Err(Refusal::InvalidArgument("a group name is required".into()));
    }
    check_text(name, MAX_NAME_LEN, "the group name")
}

/// Checks what a change carries, whatever the group's state (a name, an avatar, an
/// announcement), so that several changes asked for together can be refused before any is
/// committed. `decide` checks the same again.
pub fn check_change(change: &GroupChange) -> Result<(), Refusal> {
    match change {
        GroupChange::Rename(name) => check_name(name),
        GroupChange::SetAvatar(avatar) => check_text(avatar, MAX_AVATAR_LEN, "the avatar"),
        GroupChange::SetAnnouncement(text) => {
            check_text(text, MAX_ANNOUNCEMENT_LEN, "the announcement")
        }
        _ => Ok(()),
    }
}

/// Checks a new group before it is stored; returns its creation event and initial members.
pub fn decide_create(new: &NewGroup) -> Result<Decision, Refusal> {
    check_name(&new.name)?;
    check_text(&new.request_id, 64, "the client request id")?;
    check_text(&new.avatar, MAX_AVATAR_LEN, "the avatar")?;
    check_text(&new.announcement, MAX_ANNOUNCEMENT_LEN, "the announcement")?;
    if new.members.len() > new.limits.max_members_per_change {
        return Err(Refusal::InvalidArgument(format!(
            "at most {} members can be named at once",
            new.limits.max_members_per_change
        )));
    }
    if new.members.len() + 1 > new.limits.max_members {
        return Err(Refusal::GroupFull {
            max: new.limits.max_members,
        });
    }
    let mut mutations = vec![Mutation::Add(new.owner.clone(), Role::Owner)];
    mutations.extend(
        new.members
            .iter()
            .map(|u| Mutation::Add(u.clone(), Role::Member)),
    );
    let mut ev = GroupEvent::new(GroupEventKind::Created);
    ev.members = new.members.clone();
    ev.name = new.name.clone();
    ev.avatar = new.avatar.clone();
    ev.announcement = new.announcement.clone();
    ev.history_visibility = new.history;
    Ok(Decision {
        mutations,
        event: Some(ev),
        concerned: Vec::new(),
    })
}

/// Decides a change against the group's current state: who may do it, and what it does.
pub fn decide(state: &GroupState, req: &GroupChangeRequest) -> Result<Decision, Refusal> {
    let actor = state
        .members
        .get(&req.actor)
        .ok_or(Refusal::NotAParticipant)?;
    if state.settings.dissolved {
        return Err(Refusal::GroupDissolved);
    }
    let role = actor.role;
    let at_least = |min: Role, what: &'static str| {
        if role >= min {
            Ok(())
        } else {
            Err(Refusal::PermissionDenied(what))
        }
    };
    let member_of = |user: &UserId| -> Result<Member, Refusal> {
        state
            .members
            .get(user)
            .copied()
            .ok_or_else(|| Refusal::InvalidArgument(format!("{user} is not a member")))
    };
    let mut d = Decision::default();
    let mut settings = state.settings.clone();
    match &req.change {
        GroupChange::AddMembers(users) => {
            at_least(Role::Admin, "only the owner and admins can add members")?;
            if users.len() > req.limits.max_members_per_change {
                return Err(Refusal::InvalidArgument(format!(
                    "at most {} members can be named at once",
                    req.limits.max_members_per_change
                )));
            }
            let new: Vec<UserId> = dedup(users)
                .into_iter()
                .filter(|u| !state.members.contains_key(u))
                .collect();
            if new.is_empty() {
                return Ok(d);
            }
            if state.members.len() + new.len() > req.limits.max_members {
                return Err(Refusal::GroupFull {
                    max: req.limits.max_members,
                });
            }
            let mut ev = GroupEvent::new(GroupEventKind::MembersAdded);
            ev.members = new.clone();
            d.mutations = new
                .iter()
                .map(|u| Mutation::Add(u.clone(), Role::Member))
                .collect();
            d.concerned = new;
            d.event = Some(ev);
        }
        GroupChange::RemoveMembers(users) => {
            at_least(Role::Admin, "only the owner and admins can remove members")?;
            let gone: Vec<UserId> = dedup(users)
                .into_iter()
                .filter(|u| state.members.contains_key(u))
                .collect();
            for u in &gone {
                let target = state.members[u].role;
                if target == Role::Owner {
                    return Err(Refusal::PermissionDenied(
                        "the owner cannot be removed; transfer ownership first",
                    ));
                }
                if target >= role {
                    return Err(Refusal::PermissionDenied(
                        "admins can remove plain members only",
                    ));
                }
            }
            if gone.is_empty() {
                return Ok(d);
            }
            let mut ev = GroupEvent::new(GroupEventKind::MembersRemoved);
            ev.members = gone.clone();
            d.mutations = gone.iter().map(|u| Mutation::Remove(u.clone())).collect();
            d.concerned = gone;
            d.event = Some(ev);
        }
        GroupChange::Leave => {
            if role == Role::Owner {
                return Err(Refusal::OwnerCannotLeave);
            }
            let mut ev = GroupEvent::new(GroupEventKind::MemberLeft);
            ev.members = vec![req.actor.clone()];
            d.mutations = vec![Mutation::Remove(req.actor.clone())];
            d.concerned = vec![req.actor.clone()];
            d.event = Some(ev);
        }
        GroupChange::Rename(name) => {
            at_least(
                Role::Admin,
                "only the owner and admins can rename the group",
            )?;
            check_name(name)?;
            if *name == settings.name {
                return Ok(d);
            }
            settings.name = name.clone();
            let mut ev = GroupEvent::new(GroupEventKind::Renamed);
            ev.name = name.clone();
            d.event = Some(ev);
        }
        GroupChange::SetAvatar(avatar) => {
            at_least(
                Role::Admin,
                "only the owner and admins can change the avatar",
            )?;
            check_text(avatar, MAX_AVATAR_LEN, "the avatar")?;
            if *avatar == settings.avatar {
                return Ok(d);
            }
            settings.avatar = avatar.clone();
            let mut ev = GroupEvent::new(GroupEventKind::AvatarChanged);
            ev.avatar = avatar.clone();
            d.event = Some(ev);
        }
        GroupChange::SetAnnouncement(text) => {
            at_least(
                Role::Admin,
                "only the owner and admins can change the announcement",
            )?;
            check_text(text, MAX_ANNOUNCEMENT_LEN, "the announcement")?;
            if *text == settings.announcement {
                return Ok(d);
            }
            settings.announcement = text.clone();
            let mut ev = GroupEvent::new(GroupEventKind::AnnouncementChanged);
            ev.announcement = text.clone();
            d.event = Some(ev);
        }
        GroupChange::SetRole(user, new_role) => {
            at_least(Role::Owner, "only the owner can change roles")?;
            if *new_role == Role::Owner {
                return Err(Refusal::InvalidArgument(
                    "use transfer_owner to hand over ownership".into(),
                ));
            }
            let target = member_of(user)?;
            if target.role == Role::Owner {
                return Err(Refusal::InvalidArgument(
                    "the owner's role changes only by transferring ownership".into(),
                ));
            }
            if target.role == *new_role {
                return Ok(d);
            }
            let mut ev = GroupEvent::new(GroupEventKind::RoleChanged);
            ev.members = vec![user.clone()];
            ev.role = Some(*new_role);
            d.mutations = vec![Mutation::SetRole(user.clone(), *new_role)];
            d.event = Some(ev);
        }
        GroupChange::TransferOwner(user) => {
            at_least(Role::Owner, "only the owner can transfer ownership")?;
            member_of(user)?;
            if *user == req.actor {
                return Ok(d);
            }
            let mut ev = GroupEvent::new(GroupEventKind::OwnerTransferred);
            ev.members = vec![user.clone()];
            d.mutations = vec![
                Mutation::SetRole(req.actor.clone(), Role::Admin),
                Mutation::SetRole(user.clone(), Role::Owner),
            ];
            d.event = Some(ev);
        }
        GroupChange::Mute(user, until) => {
            at_least(Role::Admin, "only the owner and admins can mute members")?;
            let target = member_of(user)?;
            if target.role >= role {
                return Err(Refusal::PermissionDenied(
                    "admins can mute plain members only",
                ));
            }
            let until = (*until).max(0);
            if target.muted_until_ms == until {
                return Ok(d);
            }
            let mut ev = GroupEvent::new(GroupEventKind::MemberMuted);
            ev.members = vec![user.clone()];
            ev.muted_until_ms = until;
            d.mutations = vec![Mutation::Mute(user.clone(), until)];
            d.event = Some(ev);
        }
        GroupChange::MuteAll(on) => {
            at_least(Role::Admin, "only the owner and admins can mute the group")?;
            if *on == settings.mute_all {
                return Ok(d);
            }
            settings.mute_all = *on;
            let mut ev = GroupEvent::new(GroupEventKind::MuteAllChanged);
            ev.mute_all = *on;
            d.event = Some(ev);
        }
        GroupChange::SetHistoryVisibility(v) => {
            at_least(Role::Owner, "only the owner can change history visibility")?;
            if *v == settings.history {
                return Ok(d);
            }
            settings.history = *v;
            let mut ev = GroupEvent::new(GroupEventKind::HistoryVisibilityChanged);
            ev.history_visibility = *v;
            d.event = Some(ev);
        }
        GroupChange::Dissolve => {
            at_least(Role::Owner, "only the owner can dissolve the group")?;
            settings.dissolved = true;
            d.event = Some(GroupEvent::new(GroupEventKind::Dissolved));
        }
    }
    if settings != state.settings {
        d.mutations.push(Mutation::Settings(settings));
    }
    Ok(d)
}

/// Whether `sender` may send to the group now.
pub fn check_send(state: &GroupState, sender: &UserId, now_ms: i64) -> Result<(), Refusal> {
    let member = state.members.get(sender).ok_or(Refusal::NotAParticipant)?;
    if state.settings.dissolved {
        return Err(Refusal::GroupDissolved);
    }
    if member.muted_until_ms > now_ms {
        return Err(Refusal::Muted);
    }
    if state.settings.mute_all && member.role == Role::Member {
        return Err(Refusal::Muted);
    }
    Ok(())
}

/// How a group's message reaches its members.
#[derive(Debug, Clone, PartialEq)]
pub enum Diffusion {
    /// Every listed user's inbox gets an entry (sender or actor first when listed).
    Write(Vec<UserId>),
    /// The listed users' inboxes get an entry; every other member is pushed the message from
    /// the timeline, and devices that were away pull it with HISTORY.
    Read(Vec<UserId>),
}

impl Diffusion {
    /// Users whose inbox gets an entry.
    pub fn inboxes(&self) -> &[UserId] {
        match self {
            Diffusion::Write(u) | Diffusion::Read(u) => u,
        }
    }
}

/// How a message from `sender` (or an event by `sender`, with `concerned` users and
/// `removed` members that are no longer in `state`) reaches the group. The mode follows the
/// group's size at the moment the message takes its seq.
pub fn diffusion(
    state: &GroupState,
    sender: &UserId,
    concerned: &[UserId],
    write_diffusion_max: usize,
) -> Diffusion {
    if state.members.len() <= write_diffusion_max {
        let mut users = Vec::with_capacity(state.members.len() + concerned.len());
        users.push(sender.clone());
        users.extend(state.members.keys().filter(|u| *u != sender).cloned());
        users.extend(
            concerned
                .iter()
                .filter(|u| *u != sender && !state.members.contains_key(*u))
                .cloned(),
        );
        Diffusion::Write(users)
    } else {
        Diffusion::Read(dedup(concerned))
    }
}

/// The users of `users` in order, each once.
pub fn dedup(users: &[UserId]) -> Vec<UserId> {
    let mut seen = rustc_hash::FxHashSet::default();
    users
        .iter()
        .filter(|u| seen.insert((*u).clone()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn group(members: &[(&str, Role)]) -> GroupState {
        GroupState {
            id: GroupId(1),
            settings: GroupSettings {
                name: "g".into(),
                avatar: String::new(),
                announcement: String::new(),
                owner: u("o"),
                mute_all: false,
                history: HistoryVisibility::FromJoin,
                dissolved: false,
                created_ms: 0,
            },
            members: Arc::new(
                members
                    .iter()
                    .map(|(n, r)| {
                        (
                            u(n),
                            Member {
                                role: *r,
                                joined_seq: 1,
                                muted_until_ms: 0,
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    fn req(actor: &str, change: GroupChange) -> GroupChangeRequest {
        GroupChangeRequest {
            group: GroupId(1),
            actor: u(actor),
            change,
            now_ms: 1000,
            limits: GroupLimits::default(),
        }
    }

    #[test]
    fn roles_bound_what_each_member_may_change() {
        let g = group(&[("o", Role::Owner), ("a", Role::Admin), ("m", Role::Member)]);
        let remove =
            |by: &str, who: &str| decide(&g, &req(by, GroupChange::RemoveMembers(vec![u(who)])));
        assert!(matches!(
            remove("m", "a"),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            remove("a", "o"),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            remove("a", "a"),
            Err(Refusal::PermissionDenied(_))
        ));
        assert_eq!(remove("a", "m").unwrap().concerned, vec![u("m")]);
        assert!(matches!(
            decide(&g, &req("x", GroupChange::Leave)),
            Err(Refusal::NotAParticipant)
        ));
        assert!(matches!(
            decide(&g, &req("o", GroupChange::Leave)),
            Err(Refusal::OwnerCannotLeave)
        ));
        assert!(matches!(
            decide(&g, &req("a", GroupChange::Dissolve)),
            Err(Refusal::PermissionDenied(_))
        ));
    }

    #[test]
    fn a_change_that_changes_nothing_records_nothing() {
        let g = group(&[("o", Role::Owner), ("m", Role::Member)]);
        let d = decide(&g, &req("o", GroupChange::AddMembers(vec![u("m")]))).unwrap();
        assert_eq!(d, Decision::default());
        let d = decide(&g, &req("o", GroupChange::Rename("g".into()))).unwrap();
        assert!(d.event.is_none() && d.mutations.is_empty());
    }

    #[test]
    fn transfer_and_mute_apply_to_the_state() {
        let mut g = group(&[("o", Role::Owner), ("m", Role::Member)]);
        let d = decide(&g, &req("o", GroupChange::TransferOwner(u("m")))).unwrap();
        for m in &d.mutations {
            g.apply(m, 5);
        }
        assert_eq!(g.settings.owner, u("m"));
        assert_eq!(g.members[&u("o")].role, Role::Admin);
        let d = decide(&g, &req("m", GroupChange::Mute(u("o"), 2000))).unwrap();
        for m in &d.mutations {
            g.apply(m, 6);
        }
        assert!(matches!(check_send(&g, &u("o"), 1999), Err(Refusal::Muted)));
        assert!(check_send(&g, &u("o"), 2000).is_ok());
    }

    #[test]
    fn mute_all_silences_plain_members_only() {
        let mut g = group(&[("o", Role::Owner), ("m", Role::Member)]);
        let d = decide(&g, &req("o", GroupChange::MuteAll(true))).unwrap();
        for m in &d.mutations {
            g.apply(m, 2);
        }
        assert!(check_send(&g, &u("o"), 0).is_ok());
        assert!(matches!(check_send(&g, &u("m"), 0), Err(Refusal::Muted)));
        assert!(matches!(
            check_send(&g, &u("x"), 0),
            Err(Refusal::NotAParticipant)
        ));
    }

    #[test]
    fn diffusion_follows_the_size_at_the_time_of_the_message() {
        let g = group(&[("o", Role::Owner), ("a", Role::Member), ("b", Role::Member)]);
        match diffusion(&g, &u("a"), &[u("gone")], 3) {
            Diffusion::Write(users) => {
                assert_eq!(users[0], u("a"));
                assert_eq!(users.len(), 4, "every member and the removed user");
            }
            other => panic!("expected write diffusion, got {other:?}"),
        }
        assert_eq!(
            diffusion(&g, &u("a"), &[u("gone")], 2),
            Diffusion::Read(vec![u("gone")])
        );
    }
}
