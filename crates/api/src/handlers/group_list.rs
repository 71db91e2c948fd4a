//! GROUP_LIST: every group of the caller with its timeline head, so a device that was away
//! learns which read-diffusion groups advanced and pulls them with HISTORY.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::group_to_wire};

impl Handle<pb::GroupListRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        _req: pb::GroupListRequest,
    ) -> Result<pb::GroupListResponse, ServiceError> {
        let services = &*self.services;
        let groups = services.groups.list(&caller.user).await?;
        Ok(pb::GroupListResponse {
            groups: groups.iter().map(group_to_wire).collect(),
        })
    }
}
