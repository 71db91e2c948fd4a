//! Offline push over HTTP: a device's push registration made or removed (by the app's backend,
//! or by the user's own token), the devices a user registered, and the VAPID key browsers
//! subscribe with.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, ApiJson, Caller, ErrorBody, HttpApi};

/// A device's push registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRegistrationBody {
    /// `apns`, `fcm`, `webpush` or `webhook`.
    pub provider: String,
    /// APNs: the device token, hex. FCM: the registration token. Web Push: the subscription's
    /// endpoint URL. webhook: whatever the app's push gateway knows the device by.
    pub token: String,
    /// Web Push only: the subscription's P-256 key, base64url.
    #[serde(default)]
    pub p256dh: String,
    /// Web Push only: the subscription's authentication secret, base64url.
    #[serde(default)]
    pub auth: String,
    /// Notifications say only that a message came.
    #[serde(default)]
    pub private: bool,
}

/// A registration as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PushView {
    /// Its provider.
    pub provider: String,
    /// The token's last characters, to tell registrations apart without showing them.
    pub token_hint: String,
    /// Whether notifications are private.
    pub private: bool,
    /// When it was registered (Unix ms).
    pub updated_ms: i64,
}

/// One device of a user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    /// The device.
    pub device_id: String,
    /// Connected to some node now.
    pub online: bool,
    /// Its push registration, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushView>,
}

/// A user's devices: those with a push registration and those connected now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Devices {
    /// Ordered by device id.
    pub devices: Vec<DeviceView>,
}

/// Whether a registration was removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Removed {
    /// Whether the device had one.
    pub removed: bool,
}

/// The key browsers subscribe to Web Push with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VapidKey {
    /// The VAPID public key, base64url (a browser's `applicationServerKey`).
    pub public_key: String,
}

fn view(r: &tern_core::push::PushRegistration) -> PushView {
    let chars: Vec<char> = r.token.chars().collect();
    PushView {
        provider: r.provider.as_str().to_owned(),
        token_hint: chars[chars.len().saturating_sub(6)..].iter().collect(),
        private: r.private,
        updated_ms: r.updated_ms,
    }
}

/// Registers a device's push token, replacing the device's earlier one.
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}/devices/{device_id}/push",
    tag = "push",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "Whose device"),
        ("device_id" = String, Path, description = "The device"),
    ),
    request_body = PushRegistrationBody,
    responses(
        (status = 200, description = "Registered", body = PushView),
        (status = 400, description = "An unknown or unconfigured provider, or a malformed token", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "A user's token for another user or another device", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn register(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, device_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PushRegistrationBody>,
) -> Result<Json<PushView>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    caller.may_act_for_device(&device_id)?;
    let device = tern_core::DeviceId::parse(&device_id)?;
    let registration = api
        .api
        .services()
        .push
        .register(
            &user,
            &device,
            &body.provider,
            &body.token,
            &body.p256dh,
            &body.auth,
            body.private,
        )
        .await?;
    Ok(Json(view(&registration)))
}

/// Removes a device's push registration.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/devices/{device_id}/push",
    tag = "push",
    security(("admin_key" = []), ("user_token" = [])),
    params(
        ("user_id" = String, Path, description = "Whose device"),
        ("device_id" = String, Path, description = "The device"),
    ),
    responses(
        (status = 200, description = "Whether there was one", body = Removed),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key, or not a live one", body = ErrorBody),
        (status = 403, description = "A user's token for another user or another device", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn unregister(
    caller: Caller,
    State(api): State<HttpApi>,
    Path((user_id, device_id)): Path<(String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    caller.may_act_for_device(&device_id)?;
    let device = tern_core::DeviceId::parse(&device_id)?;
    let removed = api.api.services().push.unregister(&user, &device).await?;
    Ok(Json(Removed { removed }))
}

/// A user's devices: each with a push registration, and each connected now, with whether it
/// is.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/devices",
    tag = "push",
    security(("admin_key" = []), ("user_token" = [])),
    params(("user_id" = String, Path, description = "Whose devices")),
    responses(
        (status = 200, description = "The devices", body = Devices),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "No admin key or user token, or not a live one", body = ErrorBody),
        (status = 403, description = "A user's token asking for another user's devices", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn devices(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(user_id): Path<String>,
) -> Result<Json<Devices>, ApiError> {
    let user = caller.acting_for(&api, &user_id).await?;
    let registered = api.api.services().push.devices(&user).await?;
    let online: Vec<String> = api
        .presence
        .of(&user)
        .devices
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    let mut devices: Vec<DeviceView> = registered
        .iter()
        .map(|r| DeviceView {
            device_id: r.device.clone(),
            online: online.contains(&r.device),
            push: Some(view(r)),
        })
        .collect();
    for d in online {
        if !devices.iter().any(|v| v.device_id == d) {
            devices.push(DeviceView {
                device_id: d,
                online: true,
                push: None,
            });
        }
    }
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    Ok(Json(Devices { devices }))
}

/// The VAPID public key browsers subscribe to Web Push with. Needs no credential: it is
/// public.
#[utoipa::path(
    get,
    path = "/v1/push/vapid",
    tag = "push",
    responses(
        (status = 200, description = "The key", body = VapidKey),
        (status = 404, description = "Web Push is not configured", body = ErrorBody),
    )
)]
pub(crate) async fn vapid(State(api): State<HttpApi>) -> Result<Json<VapidKey>, ApiError> {
    match &api.vapid_public_key {
        Some(k) => Ok(Json(VapidKey {
            public_key: k.clone(),
        })),
        None => Err(ApiError::with_status(
            axum::http::StatusCode::NOT_FOUND,
            tern_proto::ErrorCode::InvalidArgument,
            "Web Push is not configured on this server",
        )),
    }
}
