//! A user's conversations and people, for an app's backend: the conversation list with unread
//! counts, friends (listed, imported, removed) and the blacklist, each done as the user would
//! do it, through the same services and rules as the binary protocol.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    Admin, ApiError, ApiJson, ApiQuery, Caller, ErrorBody, HttpApi, messages::MessageView,
};

/// One conversation of a user's list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationItem {
    /// The conversation.
    pub conversation_id: String,
    /// The other user of a one-to-one conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The group of a group conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Its newest seq.
    pub max_seq: u64,
    /// The user's read mark.
    pub read_seq: u64,
    /// Messages from others after the read mark (at most 10,000).
    pub unread: u64,
    /// Pinned by the user.
    pub pinned: bool,
    /// Muted by the user.
    pub muted: bool,
    /// The newest entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<MessageView>,
}

/// A page of a user's conversations: pinned first, then newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationItems {
    /// The conversations.
    pub conversations: Vec<ConversationItem>,
    /// Pass as `after` for the next page; absent on the last. A conversation that moves ahead
    /// of it between pages (a new message) is on the next first page, not on this listing's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Which page of a conversation list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// The previous page's `next_after` (absent: the first page).
    #[serde(default)]
    pub after: String,
    /// At most this many (default 500, at most 1,000).
    #[serde(default)]
    #[param(maximum = 4294967295_u64)]
    pub limit: u32,
}

/// Where a conversation sits in the list's order: pinned first, then newest entry first, then
/// by id. Written as `pinned:time:id` in cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListKey {
    pinned: bool,
    time_ms: i64,
    id: String,
}

impl ListKey {
    fn of(c: &ConversationItem) -> ListKey {
        ListKey {
            pinned: c.pinned,
            time_ms: c.last.as_ref().map_or(0, |m| m.server_time_ms),
            id: c.conversation_id.clone(),
        }
    }

    fn cursor(&self) -> String {
        format!("{}:{}:{}", u8::from(self.pinned), self.time_ms, self.id)
    }

    fn parse(cursor: &str) -> Option<ListKey> {
        let mut parts = cursor.splitn(3, ':');
        let pinned = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let time_ms = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_owned();
        Some(ListKey {
            pinned,
            time_ms,
            id,
        })
    }

    /// The list's order: `Less` sorts first.
    fn order(&self, other: &ListKey) -> std::cmp::Ordering {
        other
            .pinned
            .cmp(&self.pinned)
            .then_with(|| other.time_ms.cmp(&self.time_ms))
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// A user's conversation list with unread counts, as the user's devices see it.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/conversations",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Whose list"), ConversationsQuery),
    responses(
        (status = 200, description = "A page of the list", body = ConversationItems),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn conversations(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiQuery(q): ApiQuery<ConversationsQuery>,
) -> Result<Json<ConversationItems>, ApiError> {
    caller.may_act_for(&user_id)?;
    let after = if q.after.is_empty() {
        None
    } else {
        Some(ListKey::parse(&q.after).ok_or_else(|| {
            ApiError::new(
                tern_proto::ErrorCode::InvalidArgument,
                "after must be a next_after this endpoint answered",
            )
        })?)
    };
    let user = api.existing_user(&user_id).await?;
    let list = api.api.services().conversations.list(&user, 0).await?;
    let limit = match q.limit {
        0 => 500,
        n => n.min(1000) as usize,
    };
    let mut conversations: Vec<ConversationItem> = list
        .conversations
        .into_iter()
        .map(|c| ConversationItem {
            conversation_id: c.summary.conversation.to_string(),
            peer: c.peer.map(|p| p.to_string()),
            group_id: c.group.map(|g| g.0),
            max_seq: c.summary.max_seq,
            read_seq: c.summary.read_seq,
            unread: c.summary.unread,
            pinned: c.summary.pinned,
            muted: c.summary.muted,
            last: c.summary.last.as_ref().map(MessageView::from),
        })
        .filter(|c| {
            after
                .as_ref()
                .is_none_or(|a| ListKey::of(c).order(a).is_gt())
        })
        .collect();
    let more = conversations.len() > limit;
    conversations.truncate(limit);
    let next_after = more
        .then(|| conversations.last().map(|c| ListKey::of(c).cursor()))
        .flatten();
    Ok(Json(ConversationItems {
        conversations,
        next_after,
    }))
}

/// A friend.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Friend {
    /// The friend.
    pub user_id: String,
    /// The user's remark for it.
    pub remark: String,
    /// Friends since (Unix ms).
    pub since_ms: i64,
}

/// A page of friends, ordered by user id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Friends {
    /// The friends.
    pub friends: Vec<Friend>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Which page of a list ordered by user id.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries with ids after this one (the previous page's `next_after`; absent: the first).
    #[serde(default)]
    pub after: String,
    /// At most this many (default 500, at most 1,000).
    #[serde(default)]
    #[param(maximum = 4294967295_u64)]
    pub limit: u32,
}

/// The page `q` asks for of `items`, ordered by `key`, and the `after` of the next page.
fn page<T>(mut items: Vec<T>, key: impl Fn(&T) -> &str, q: &PageQuery) -> (Vec<T>, Option<String>) {
    let limit = match q.limit {
        0 => 500,
        n => n.min(1000) as usize,
    };
    items.sort_by(|a, b| key(a).cmp(key(b)));
    items.retain(|i| key(i) > q.after.as_str());
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more
        .then(|| items.last().map(|i| key(i).to_owned()))
        .flatten();
    (items, next)
}

/// A user's friends.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/friends",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Whose friends"), PageQuery),
    responses(
        (status = 200, description = "A page of friends", body = Friends),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn friends(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Friends>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    let list = api.api.services().social.friends(&user, 0).await?;
    let all = list
        .friends
        .into_iter()
        .map(|f| Friend {
            user_id: f.user.to_string(),
            remark: f.remark,
            since_ms: f.since_ms,
        })
        .collect();
    let (friends, next_after) = page(all, |f| &f.user_id, &q);
    Ok(Json(Friends {
        friends,
        next_after,
    }))
}

/// A friend to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFriend {
    /// The other user.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub friend_id: String,
}

/// Makes two users friends (an import from the app's own friend graph): a request from the
/// user and the other's acceptance, under the same rules as when they do it themselves (a
/// blacklist refuses it). Both users' devices hear of it.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/friends",
    tag = "people",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "One of the two")),
    request_body = NewFriend,
    responses(
        (status = 204, description = "Friends (or were already)"),
        (status = 400, description = "An invalid id, or the same user twice", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "One of them does not accept the other", body = ErrorBody),
    )
)]
pub(crate) async fn add_friend(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiJson(new): ApiJson<NewFriend>,
) -> Result<StatusCode, ApiError> {
    let user = api.existing_user(&user_id).await?;
    let friend = api.existing_user(&new.friend_id).await?;
    let social = &api.api.services().social;
    let already = social
        .are_friends(&user, vec![friend.clone()])
        .await?
        .first()
        .copied()
        .unwrap_or(false);
    if !already {
        let befriended = social
            .request_friend(&user, friend.as_str(), String::new())
            .await?;
        if !befriended {
            social.respond(&friend, user.as_str(), true).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a friendship.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/friends/{friend_id}",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "One of the two"),
        ("friend_id" = String, Path, description = "The other"),
    ),
    responses(
        (status = 204, description = "No longer friends"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn remove_friend(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, friend_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    api.api
        .services()
        .social
        .delete_friend(&user, &friend_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's blacklist.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Blocked {
    /// The users refused, by id.
    pub blocked: Vec<String>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The users a user refuses.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/blocked",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Whose blacklist"), PageQuery),
    responses(
        (status = 200, description = "A page of the blacklist", body = Blocked),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn blocked(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Blocked>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    let all = api.api.services().social.blocked(&user).await?;
    let (blocked, next_after) = page(
        all.into_iter().map(|u| u.to_string()).collect(),
        |u: &String| u.as_str(),
        &q,
    );
    Ok(Json(Blocked {
        blocked,
        next_after,
    }))
}

/// Adds a user to a user's blacklist: its one-to-one messages and friend requests are refused.
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}/blocked/{other_id}",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "Who refuses"),
        ("other_id" = String, Path, description = "Whom"),
    ),
    responses(
        (status = 204, description = "Blocked"),
        (status = 400, description = "An invalid id, or the user itself", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn block(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, other_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    api.api.services().social.block(&user, &other_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a user off a user's blacklist.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/blocked/{other_id}",
    tag = "people",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "Who refused"),
        ("other_id" = String, Path, description = "Whom"),
    ),
    responses(
        (status = 204, description = "No longer blocked"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn unblock(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, other_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    api.api.services().social.unblock(&user, &other_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
