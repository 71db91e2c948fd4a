//! Message search over HTTP: a user's search of the conversations they read (with an admin key
//! or the user's own token), and an administrator's across every conversation (compliance).

use axum::{
    Json,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};
use tern_core::search::{SearchPage, SearchQuery};
use utoipa::{IntoParams, ToSchema};

use crate::{Admin, ApiError, ApiQuery, Caller, ErrorBody, HttpApi, messages::MessageView};

/// What to search for.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Any part of the text (1 to 100 characters), matched without regard to case, width or
    /// zero-width characters: `天气`, `weather`.
    pub q: String,
    /// Only in this conversation (`p:a:b` or `g:ID`).
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Only messages from this user.
    #[serde(default)]
    pub sender: Option<String>,
    /// Only messages older than this (the previous page's `next_before`).
    #[serde(default)]
    pub before: u64,
    /// At most this many (default 20, at most 100).
    #[serde(default)]
    #[param(maximum = 4294967295_u64)]
    pub limit: u32,
}

impl From<SearchParams> for SearchQuery {
    fn from(p: SearchParams) -> Self {
        SearchQuery {
            text: p.q,
            conversation: p.conversation_id,
            sender: p.sender,
            before: p.before,
            limit: p.limit,
        }
    }
}

/// A page of messages found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResults {
    /// Newest first, as they are now (an edited message with its new text).
    pub messages: Vec<MessageView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

impl From<SearchPage> for SearchResults {
    fn from(p: SearchPage) -> Self {
        SearchResults {
            messages: p.messages.iter().map(MessageView::from).collect(),
            next_before: p.next_before,
        }
    }
}

/// Searches the messages a user may read: their one-to-one conversations, and their groups
/// from where their view of the history starts. Recalled messages are never found.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/search",
    tag = "messages",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Who searches"), SearchParams),
    responses(
        (status = 200, description = "A page of results", body = SearchResults),
        (status = 400, description = "An empty or too long query, or a bad id", body = ErrorBody),
        (status = 401, description = "No admin key or user token, or not a live one", body = ErrorBody),
        (status = 403, description = "A user's token searching as another user", body = ErrorBody),
        (status = 404, description = "No such user, or no such conversation for this user (a malformed id included)", body = ErrorBody),
    )
)]
pub(crate) async fn as_user(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    let page = api
        .api
        .services()
        .search
        .search(Some(&user), params.into())
        .await?;
    Ok(Json(page.into()))
}

/// Searches every conversation, for an app's compliance needs.
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "messages",
    security(("admin_key" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of results", body = SearchResults),
        (status = 400, description = "An empty or too long query, or a bad id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "A malformed conversation id (a well-formed one that holds nothing answers an empty page)", body = ErrorBody),
    )
)]
pub(crate) async fn everywhere(
    _: Admin,
    State(api): State<HttpApi>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let page = api
        .api
        .services()
        .search
        .search(None, params.into())
        .await?;
    Ok(Json(page.into()))
}
