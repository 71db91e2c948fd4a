//! FRIEND_RESPOND: accepts or declines a pending friend request.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::FriendRespondRequest,
) -> Result<pb::FriendRespondResponse, ServiceError> {
    services
        .social
        .respond(&caller.user, &req.from_user, req.accept)
        .await?;
    Ok(pb::FriendRespondResponse {})
}
