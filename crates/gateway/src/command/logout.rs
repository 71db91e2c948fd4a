//! LOGOUT: revokes the connection's token. The session closes the connection after answering.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::Services;

pub(crate) async fn run(
    services: &Services,
    token_hash: &str,
) -> Result<pb::LogoutResponse, ServiceError> {
    services.core().accounts.logout(token_hash).await?;
    Ok(pb::LogoutResponse {})
}
