//! UNBLOCK: stops refusing a user.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::UnblockRequest,
) -> Result<pb::UnblockResponse, ServiceError> {
    services.social.unblock(&caller.user, &req.user_id).await?;
    Ok(pb::UnblockResponse {})
}
