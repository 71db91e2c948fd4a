//! UNBLOCK: stops refusing a user.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::UnblockRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::UnblockRequest,
    ) -> Result<pb::UnblockResponse, ServiceError> {
        let services = &*self.services;
        services.social.unblock(&caller.user, &req.user_id).await?;
        Ok(pb::UnblockResponse {})
    }
}
