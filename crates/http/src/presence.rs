//! Online status for an app's backend: which of many users are connected now, and with which
//! devices, as this node sees the whole deployment (its own connections and, in a cluster,
//! every other node's).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};
use tern_core::UserId;
use utoipa::{IntoParams, ToSchema};

use crate::{Admin, ApiError, ErrorBody, HttpApi};

/// The most users one call asks about.
pub const MAX_USERS: usize = 1000;

/// Whose status.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Comma-separated user ids, 1 to 1,000.
    pub user_ids: String,
}

/// A connected device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceOnline {
    /// The device.
    pub device_id: String,
    /// Its platform (`ios`, `android`, `web`, `desktop`, `cli` or `unspecified`).
    pub platform: String,
}

/// One user's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOnline {
    /// The user.
    pub user_id: String,
    /// Whether any device of it is connected.
    pub online: bool,
    /// Its connected devices.
    pub devices: Vec<DeviceOnline>,
}

/// The users' status, in the order asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PresenceList {
    /// One per user asked about (unknown users are offline).
    pub users: Vec<UserOnline>,
}

/// Which of these users are online now, with their devices.
#[utoipa::path(
    get,
    path = "/v1/presence",
    tag = "users",
    security(("admin_key" = [])),
    params(PresenceQuery),
    responses(
        (status = 200, description = "Each user's status", body = PresenceList),
        (status = 400, description = "No users, too many, or an invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
    )
)]
pub(crate) async fn online(
    _: Admin,
    State(api): State<HttpApi>,
    query: Result<Query<PresenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PresenceList>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(tern_proto::ErrorCode::InvalidArgument, e.body_text()))?;
    let ids: Vec<&str> = q.user_ids.split(',').map(str::trim).collect();
    if ids.is_empty() || ids.len() > MAX_USERS || ids.iter().any(|u| u.is_empty()) {
        return Err(ApiError::new(
            tern_proto::ErrorCode::InvalidArgument,
            format!("user_ids names 1 to {MAX_USERS} users, separated by commas"),
        ));
    }
    let presence: &Arc<tern_gateway::presence::Presence> = &api.presence;
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        let user = UserId::parse(id)?;
        let now = presence.of(&user);
        users.push(UserOnline {
            user_id: now.user_id,
            online: now.online,
            devices: now
                .devices
                .into_iter()
                .map(|d| DeviceOnline {
                    device_id: d.device_id,
                    platform: tern_core::wire::platform_of(d.platform).as_str().to_owned(),
                })
                .collect(),
        });
    }
    Ok(Json(PresenceList { users }))
}
