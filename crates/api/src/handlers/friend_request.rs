//! FRIEND_REQUEST: asks a user to be friends.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::FriendRequestRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::FriendRequestRequest,
    ) -> Result<pb::FriendRequestResponse, ServiceError> {
        let services = &*self.services;
        let friends = services
            .social
            .request_friend(&caller.user, &req.to_user, req.message)
            .await?;
        Ok(pb::FriendRequestResponse { friends })
    }
}
