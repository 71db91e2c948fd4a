//! BLOCK: refuses a user's one-to-one messages and friend requests.

use tern_core::{ServiceError, UserId};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::BlockRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::BlockRequest,
    ) -> Result<pb::BlockResponse, ServiceError> {
        let services = &*self.services;
        services.social.block(&caller.user, &req.user_id).await?;
        // A blocked user no longer sees the blocker come and go.
        if let Ok(other) = UserId::parse(&req.user_id) {
            services.presence.revoke(&other, &caller.user);
        }
        Ok(pb::BlockResponse {})
    }
}
