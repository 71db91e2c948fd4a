//! TYPING: an ephemeral signal to the peer's online devices.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::TypingRequest,
) -> Result<pb::TypingResponse, ServiceError> {
    services.typing.typing(&caller.user, &req.to_user).await?;
    Ok(pb::TypingResponse {})
}
