//! FRIEND_REQUEST: asks a user to be friends.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::FriendRequestRequest,
) -> Result<pb::FriendRequestResponse, ServiceError> {
    let friends = services
        .social
        .request_friend(&caller.user, &req.to_user, req.message)
        .await?;
    Ok(pb::FriendRequestResponse { friends })
}
