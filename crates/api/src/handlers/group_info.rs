//! GROUP_INFO: one group the caller is a member of.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::group_to_wire};

impl Handle<pb::GroupInfoRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::GroupInfoRequest,
    ) -> Result<pb::GroupInfoResponse, ServiceError> {
        let services = &*self.services;
        let view = services.groups.info(&caller.user, req.group_id).await?;
        Ok(pb::GroupInfoResponse {
            group: Some(group_to_wire(&view)),
        })
    }
}
