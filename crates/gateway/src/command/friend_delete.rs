//! FRIEND_DELETE: ends a friendship.

use tern_core::{ServiceError, UserId};
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
    // Presence is for friends: neither follows the other any longer.
    if let Ok(other) = UserId::parse(&req.user_id) {
        services.presence.revoke(&caller.user, &other);
        services.presence.revoke(&other, &caller.user);
    }
    Ok(pb::FriendDeleteResponse {})
}
