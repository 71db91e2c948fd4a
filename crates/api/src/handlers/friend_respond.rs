//! FRIEND_RESPOND: accepts or declines a pending friend request.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::FriendRespondRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::FriendRespondRequest,
    ) -> Result<pb::FriendRespondResponse, ServiceError> {
        let services = &*self.services;
        services
            .social
            .respond(&caller.user, &req.from_user, req.accept)
            .await?;
        Ok(pb::FriendRespondResponse {})
    }
}
