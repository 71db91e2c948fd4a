//! BLOCK_LIST: everyone the caller blocked.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::BlockListRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::BlockListRequest,
    ) -> Result<pb::BlockListResponse, ServiceError> {
        let services = &*self.services;
        let _ = req;
        let users = services.social.blocked(&caller.user).await?;
        Ok(pb::BlockListResponse {
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        })
    }
}
