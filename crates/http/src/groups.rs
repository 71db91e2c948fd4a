//! Groups from an app's backend: created with an owner, read whoever the members are, and
//! changed (members, roles, mutes, settings, dissolution) with the owner's authority, through
//! the same group service and rules as the binary protocol's GROUP_* requests.

use axum::{
    Json,
    extract::{Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tern_core::{
    UserId,
    group_service::{CreateInput, GroupView},
    groups::{GroupChange, HistoryVisibility, Member, Role},
};
use tern_proto::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use crate::{Admin, ApiError, ApiJson, ApiQuery, Caller, ErrorBody, HttpApi};

/// Which history new members see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// From the event that added them.
    #[default]
    FromJoin,
    /// The whole timeline.
    Full,
}

impl From<History> for HistoryVisibility {
    fn from(h: History) -> Self {
        match h {
            History::FromJoin => HistoryVisibility::FromJoin,
            History::Full => HistoryVisibility::Full,
        }
    }
}

impl From<HistoryVisibility> for History {
    fn from(h: HistoryVisibility) -> Self {
        match h {
            HistoryVisibility::FromJoin => History::FromJoin,
            HistoryVisibility::Full => History::Full,
        }
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Sends (unless muted) and leaves.
    Member,
    /// Also adds, removes and mutes members and changes the name, avatar and announcement.
    Admin,
    /// The one owner.
    Owner,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Member => RoleName::Member,
            Role::Admin => RoleName::Admin,
            Role::Owner => RoleName::Owner,
        }
    }
}

/// A group to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Its owner, an existing user.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub owner: String,
    /// Its name.
    pub name: String,
    /// Members besides the owner.
    #[serde(default)]
    pub members: Vec<String>,
    /// A file id or URL.
    #[serde(default)]
    pub avatar: String,
    /// The first announcement.
    #[serde(default)]
    pub announcement: String,
    /// Which history new members see (default `from_join`).
    #[serde(default)]
    pub history: History,
    /// An idempotency key: a retry with the same key and owner answers the group made first.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub request_id: String,
}

/// A group as administrators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupInfo {
    /// The group.
    pub group_id: u64,
    /// Its conversation (`g:ID`).
    pub conversation_id: String,
    /// Its name.
    pub name: String,
    /// A file id or URL.
    pub avatar: String,
    /// The announcement.
    pub announcement: String,
    /// The owner.
    pub owner: String,
    /// While on, only the owner and admins send.
    pub mute_all: bool,
    /// Which history new members see.
    pub history: History,
    /// A dissolved group keeps its history and takes no sends or changes.
    pub dissolved: bool,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// How many members it has.
    pub member_count: usize,
    /// The newest seq of its timeline.
    pub head_seq: u64,
    /// Whether its messages travel by read diffusion (a large group).
    pub read_diffusion: bool,
}

impl From<GroupView> for GroupInfo {
    fn from(v: GroupView) -> Self {
        GroupInfo {
            group_id: v.id.0,
            conversation_id: format!("g:{}", v.id.0),
            name: v.settings.name,
            avatar: v.settings.avatar,
            announcement: v.settings.announcement,
            owner: v.settings.owner.to_string(),
            mute_all: v.settings.mute_all,
            history: v.settings.history.into(),
            dissolved: v.settings.dissolved,
            created_ms: v.settings.created_ms,
            member_count: v.member_count,
            head_seq: v.head_seq,
            read_diffusion: v.read_diffusion,
        }
    }
}

/// Settings to change; the absent ones stay. Each present one is its own change (and event),
/// applied in the order listed here; a name, avatar or announcement that is not valid refuses
/// the whole request before anything changes.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new avatar.
    #[serde(default)]
    pub avatar: Option<String>,
    /// A new announcement.
    #[serde(default)]
    pub announcement: Option<String>,
    /// Mute everyone but the owner and admins, or lift it.
    #[serde(default)]
    pub mute_all: Option<bool>,
    /// Which history new members see.
    #[serde(default)]
    pub history: Option<History>,
}

/// Members to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMembers {
    /// Existing users (1 to 1,000); those already members are skipped.
    #[schema(min_items = 1, max_items = 1000)]
    pub user_ids: Vec<String>,
}

/// A member's new role.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// `member` or `admin`; `owner` hands the group over (the old owner becomes an admin).
    pub role: RoleName,
}

/// A member's mute.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMute {
    /// Muted until then (Unix ms); 0 lifts the mute.
    pub until_ms: i64,
}

/// One member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberInfo {
    /// The member.
    pub user_id: String,
    /// Its role.
    pub role: RoleName,
    /// The seq of the event that added it.
    pub joined_seq: u64,
    /// Muted until then (Unix ms); 0 when not muted.
    pub muted_until_ms: i64,
}

impl From<(UserId, Member)> for MemberInfo {
    fn from((user, m): (UserId, Member)) -> Self {
        MemberInfo {
            user_id: user.to_string(),
            role: m.role.into(),
            joined_seq: m.joined_seq,
            muted_until_ms: m.muted_until_ms,
        }
    }
}

/// A page of members, ordered by user id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberPage {
    /// The members.
    pub members: Vec<MemberInfo>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Which page of members.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Members with ids after this one (absent: from the first).
    #[serde(default)]
    pub after: String,
    /// At most this many (default 200, at most 1,000).
    #[serde(default)]
    #[param(maximum = 4294967295_u64)]
    pub limit: u32,
}

/// A user's groups.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupList {
    /// Every group the user is a member of, by id.
    pub groups: Vec<GroupInfo>,
}

fn group_id(path: Result<Path<u64>, PathRejection>) -> Result<u64, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))
}

fn group_and_user(
    path: Result<Path<(u64, String)>, PathRejection>,
) -> Result<(u64, UserId), ApiError> {
    let Path((group, user)) =
        path.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    Ok((group, UserId::parse(&user)?))
}

/// Creates a group owned by an existing user.
#[utoipa::path(
    post,
    path = "/v1/groups",
    tag = "groups",
    security(("admin_key" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "The group, durable", body = GroupInfo),
        (status = 400, description = "A bad field or too many members", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such owner", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    _: Admin,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    let owner = api.existing_user(&new.owner).await?;
    for member in tern_core::group_service::parse_users(&new.members)? {
        api.users.get(member.as_str()).await?;
    }
    let view = api
        .api
        .services()
        .groups
        .create(
            &owner,
            CreateInput {
                name: new.name,
                members: new.members,
                avatar: new.avatar,
                announcement: new.announcement,
                history: new.history.into(),
                request_id: new.request_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(GroupInfo::from(view))).into_response())
}

/// A group, whoever its members are.
#[utoipa::path(
    get,
    path = "/v1/groups/{group_id}",
    tag = "groups",
    security(("admin_key" = [])),
    params(("group_id" = u64, Path, description = "The group")),
    responses(
        (status = 200, description = "The group", body = GroupInfo),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<GroupInfo>, ApiError> {
    let view = api.api.services().groups.inspect(group_id(path)?).await?;
    Ok(Json(view.into()))
}

/// Changes a group's settings with the owner's authority.
#[utoipa::path(
    patch,
    path = "/v1/groups/{group_id}",
    tag = "groups",
    security(("admin_key" = [])),
    params(("group_id" = u64, Path, description = "The group")),
    request_body = GroupPatch,
    responses(
        (status = 200, description = "The group after the changes", body = GroupInfo),
        (status = 400, description = "A bad field, or the group is dissolved", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<u64>, PathRejection>,
    ApiJson(patch): ApiJson<GroupPatch>,
) -> Result<Json<GroupInfo>, ApiError> {
    let group = group_id(path)?;
    let groups = &api.api.services().groups;
    let changes = [
        patch.name.map(GroupChange::Rename),
        patch.avatar.map(GroupChange::SetAvatar),
        patch.announcement.map(GroupChange::SetAnnouncement),
        patch.mute_all.map(GroupChange::MuteAll),
        patch
            .history
            .map(|h| GroupChange::SetHistoryVisibility(h.into())),
    ];
    let changes: Vec<GroupChange> = changes.into_iter().flatten().collect();
    // What the fields carry is checked for all of them before any is committed.
    for change in &changes {
        tern_core::groups::check_change(change).map_err(tern_core::ServiceError::from)?;
    }
    for change in changes {
        groups.administer(group, change).await?;
    }
    Ok(Json(groups.inspect(group).await?.into()))
}

/// Dissolves a group: it keeps its history and takes no more sends or changes.
#[utoipa::path(
    post,
    path = "/v1/groups/{group_id}/dissolve",
    tag = "groups",
    security(("admin_key" = [])),
    params(("group_id" = u64, Path, description = "The group")),
    responses(
        (status = 200, description = "The group, dissolved", body = GroupInfo),
        (status = 400, description = "A bad id, or dissolved already", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn dissolve(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<GroupInfo>, ApiError> {
    let group = group_id(path)?;
    let groups = &api.api.services().groups;
    groups.administer(group, GroupChange::Dissolve).await?;
    Ok(Json(groups.inspect(group).await?.into()))
}

/// A page of a group's members, ordered by user id.
#[utoipa::path(
    get,
    path = "/v1/groups/{group_id}/members",
    tag = "groups",
    security(("admin_key" = [])),
    params(("group_id" = u64, Path, description = "The group"), MembersQuery),
    responses(
        (status = 200, description = "A page", body = MemberPage),
        (status = 400, description = "A bad id or query", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn members(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<u64>, PathRejection>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let group = group_id(path)?;
    let (page, more) = api
        .api
        .services()
        .groups
        .member_page(group, &q.after, q.limit)
        .await?;
    let next_after = more
        .then(|| page.last().map(|(u, _)| u.to_string()))
        .flatten();
    Ok(Json(MemberPage {
        members: page.into_iter().map(MemberInfo::from).collect(),
        next_after,
    }))
}

/// Adds members; those already in the group are skipped.
#[utoipa::path(
    post,
    path = "/v1/groups/{group_id}/members",
    tag = "groups",
    security(("admin_key" = [])),
    params(("group_id" = u64, Path, description = "The group")),
    request_body = NewMembers,
    responses(
        (status = 200, description = "The group after the change", body = GroupInfo),
        (status = 400, description = "A bad id, too many members, or the group is dissolved", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group or user", body = ErrorBody),
    )
)]
pub(crate) async fn add_members(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<u64>, PathRejection>,
    ApiJson(new): ApiJson<NewMembers>,
) -> Result<Json<GroupInfo>, ApiError> {
    let group = group_id(path)?;
    if new.user_ids.is_empty() || new.user_ids.len() > 1000 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "user_ids holds 1 to 1000 users",
        ));
    }
    let users = tern_core::group_service::parse_users(&new.user_ids)?;
    for user in &users {
        api.users.get(user.as_str()).await?;
    }
    let (view, _) = api
        .api
        .services()
        .groups
        .administer(group, GroupChange::AddMembers(users))
        .await?;
    Ok(Json(view.into()))
}

/// Removes a member (not the owner: hand the group over first).
#[utoipa::path(
    delete,
    path = "/v1/groups/{group_id}/members/{user_id}",
    tag = "groups",
    security(("admin_key" = [])),
    params(
        ("group_id" = u64, Path, description = "The group"),
        ("user_id" = String, Path, description = "The member"),
    ),
    responses(
        (status = 204, description = "Removed (or not a member)"),
        (status = 400, description = "A bad id, or the group is dissolved", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The member is the owner", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn remove_member(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<(u64, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (group, user) = group_and_user(path)?;
    api.api
        .services()
        .groups
        .administer(group, GroupChange::RemoveMembers(vec![user]))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a member's role; `owner` hands the group over.
#[utoipa::path(
    put,
    path = "/v1/groups/{group_id}/members/{user_id}/role",
    tag = "groups",
    security(("admin_key" = [])),
    params(
        ("group_id" = u64, Path, description = "The group"),
        ("user_id" = String, Path, description = "The member"),
    ),
    request_body = NewRole,
    responses(
        (status = 200, description = "The group after the change", body = GroupInfo),
        (status = 400, description = "A bad id or role, the user is not a member, the member is the owner (whose role changes only by a transfer), or the group is dissolved", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn set_role(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<(u64, String)>, PathRejection>,
    ApiJson(new): ApiJson<NewRole>,
) -> Result<Json<GroupInfo>, ApiError> {
    let (group, user) = group_and_user(path)?;
    let change = match new.role {
        RoleName::Owner => GroupChange::TransferOwner(user),
        RoleName::Admin => GroupChange::SetRole(user, Role::Admin),
        RoleName::Member => GroupChange::SetRole(user, Role::Member),
    };
    let (view, _) = api.api.services().groups.administer(group, change).await?;
    Ok(Json(view.into()))
}

/// Mutes a member until a time, or lifts its mute.
#[utoipa::path(
    put,
    path = "/v1/groups/{group_id}/members/{user_id}/mute",
    tag = "groups",
    security(("admin_key" = [])),
    params(
        ("group_id" = u64, Path, description = "The group"),
        ("user_id" = String, Path, description = "The member"),
    ),
    request_body = NewMute,
    responses(
        (status = 200, description = "The group after the change", body = GroupInfo),
        (status = 400, description = "A bad id or time, the user is not a member, or the group is dissolved", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The member is the owner", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub(crate) async fn mute(
    _: Admin,
    State(api): State<HttpApi>,
    path: Result<Path<(u64, String)>, PathRejection>,
    ApiJson(new): ApiJson<NewMute>,
) -> Result<Json<GroupInfo>, ApiError> {
    let (group, user) = group_and_user(path)?;
    let (view, _) = api
        .api
        .services()
        .groups
        .administer(group, GroupChange::Mute(user, new.until_ms))
        .await?;
    Ok(Json(view.into()))
}

/// Every group a user is a member of.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/groups",
    tag = "groups",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Whose groups")),
    responses(
        (status = 200, description = "The groups", body = GroupList),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn of_user(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<Json<GroupList>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    let groups = api.api.services().groups.list(&user).await?;
    Ok(Json(GroupList {
        groups: groups.into_iter().map(GroupInfo::from).collect(),
    }))
}
