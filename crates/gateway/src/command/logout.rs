//! LOGOUT: revokes the connection's token and removes the device's push registration (a
//! logged-out device must not show the next messages on its lock screen). The session closes
//! the connection after answering.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &tern_api::Caller,
    token_hash: &str,
) -> Result<pb::LogoutResponse, ServiceError> {
    services.core().accounts.logout(token_hash).await?;
    services
        .core()
        .push
        .unregister(&caller.user, &caller.device)
        .await?;
    Ok(pb::LogoutResponse {})
}
