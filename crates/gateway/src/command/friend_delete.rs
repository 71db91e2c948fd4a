//! FRIEND_DELETE: ends a friendship.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::FriendDeleteRequest,
) -> Result<pb::FriendDeleteResponse, ServiceError> {
    services
        .social
        .delete_friend(&caller.user, &req.user_id)
        .await?;
    Ok(pb::FriendDeleteResponse {})
}
