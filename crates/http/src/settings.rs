//! Settings operators change while Tern runs: the content filter's word list and the observer
//! role. Both are kept in the store and put in force on every node (this one at once, the
//! others within `settings_poll_ms`), without a restart.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use tern_core::{
    UserId,
    filter::FilterAction,
    settings::{FilterView, FilterWords},
};
use utoipa::ToSchema;

use crate::{Admin, ApiError, ApiJson, ErrorBody, HttpApi, webhooks::SourceName};

/// What a match does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The send or edit is refused with `CONTENT_REJECTED`.
    Reject,
    /// Each character of a match becomes `*` and the message goes through.
    Mask,
}

impl From<Action> for FilterAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Reject => FilterAction::Reject,
            Action::Mask => FilterAction::Mask,
        }
    }
}

impl From<FilterAction> for Action {
    fn from(a: FilterAction) -> Self {
        match a {
            FilterAction::Reject => Action::Reject,
            FilterAction::Mask => Action::Mask,
        }
    }
}

/// The content filter in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilterInfo {
    /// Where the word list in force comes from: `api`, `file` (`filter_words_file`), or absent
    /// when no list is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceName>,
    /// What a match does.
    pub action: Action,
    /// How many words are in force.
    pub word_count: usize,
    /// The words set through the API, as given (the file's are in the file).
    pub words: Vec<String>,
}

impl From<FilterView> for FilterInfo {
    fn from(v: FilterView) -> Self {
        FilterInfo {
            source: v.source.map(SourceName::from),
            action: v.action.into(),
            word_count: v.word_count,
            words: v.words,
        }
    }
}

/// A word list to put in force.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFilter {
    /// What a match does.
    pub action: Action,
    /// The words (at most 100,000, each at most 100 characters). They match after Unicode NFKC
    /// normalization and case folding, with zero-width characters ignored; an empty list
    /// filters nothing.
    #[schema(max_items = 100000)]
    pub words: Vec<String>,
}

/// The content filter in force.
#[utoipa::path(
    get,
    path = "/v1/filter",
    tag = "settings",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The filter", body = FilterInfo),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn filter(_: Admin, State(api): State<HttpApi>) -> Json<FilterInfo> {
    Json(api.settings.filter().into())
}

/// Puts a word list in force on every node, in place of the file's, for every send and edit
/// from both front doors.
#[utoipa::path(
    put,
    path = "/v1/filter",
    tag = "settings",
    security(("admin_key" = [])),
    request_body = NewFilter,
    responses(
        (status = 200, description = "In force on this node now, on the others within `settings_poll_ms`", body = FilterInfo),
        (status = 400, description = "Too many words, or one too long", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn set_filter(
    _: Admin,
    State(api): State<HttpApi>,
    ApiJson(new): ApiJson<NewFilter>,
) -> Result<Json<FilterInfo>, ApiError> {
    let view = api
        .settings
        .set_filter(FilterWords {
            action: new.action.into(),
            words: new.words,
        })
        .await?;
    Ok(Json(view.into()))
}

/// Drops the word list set through the API: the file's (if any) is in force again.
#[utoipa::path(
    delete,
    path = "/v1/filter",
    tag = "settings",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The filter now in force", body = FilterInfo),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn clear_filter(
    _: Admin,
    State(api): State<HttpApi>,
) -> Result<Json<FilterInfo>, ApiError> {
    Ok(Json(api.settings.clear_filter().await?.into()))
}

/// A user with the observer role.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObserverInfo {
    /// The user.
    pub user_id: String,
    /// `file` (`observers` in the configuration) or `api`.
    pub source: SourceName,
}

/// Who has the observer role.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObserverList {
    /// By user id.
    pub observers: Vec<ObserverInfo>,
}

/// Who has the observer role (may OBSERVE any conversation's live messages).
#[utoipa::path(
    get,
    path = "/v1/observers",
    tag = "settings",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The observers", body = ObserverList),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn observers(_: Admin, State(api): State<HttpApi>) -> Json<ObserverList> {
    Json(ObserverList {
        observers: api
            .settings
            .observers()
            .into_iter()
            .map(|(u, source)| ObserverInfo {
                user_id: u.to_string(),
                source: source.into(),
            })
            .collect(),
    })
}

/// Grants a user the observer role on every node.
#[utoipa::path(
    put,
    path = "/v1/observers/{user_id}",
    tag = "settings",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "The user")),
    responses(
        (status = 204, description = "Granted (this node at once, the others within `settings_poll_ms`)"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn grant_observer(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = api.existing_user(&user_id).await?;
    api.settings.grant_observer(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes the observer role granted through the API from a user, on every node: new OBSERVE
/// requests are refused and the observations running end.
#[utoipa::path(
    delete,
    path = "/v1/observers/{user_id}",
    tag = "settings",
    security(("admin_key" = [])),
    params(("user_id" = String, Path, description = "The user")),
    responses(
        (status = 204, description = "Revoked (or never granted)"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "The configuration file grants this user the role", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_observer(
    _: Admin,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.settings
        .revoke_observer(&UserId::parse(&user_id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
