//! FRIEND_DELETE: ends a friendship.

use tern_core::{ServiceError, UserId};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::FriendDeleteRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::FriendDeleteRequest,
    ) -> Result<pb::FriendDeleteResponse, ServiceError> {
        let services = &*self.services;
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
}
