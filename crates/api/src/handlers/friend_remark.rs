//! FRIEND_REMARK: the caller's private name for a friend.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::FriendRemarkRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::FriendRemarkRequest,
    ) -> Result<pb::FriendRemarkResponse, ServiceError> {
        let services = &*self.services;
        services
            .social
            .remark(&caller.user, &req.user_id, req.remark)
            .await?;
        Ok(pb::FriendRemarkResponse {})
    }
}
