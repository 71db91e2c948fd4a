//! FRIEND_REMARK: the caller's private name for a friend.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::FriendRemarkRequest,
) -> Result<pb::FriendRemarkResponse, ServiceError> {
    services
        .social
        .remark(&caller.user, &req.user_id, req.remark)
        .await?;
    Ok(pb::FriendRemarkResponse {})
}
