//! GROUP_LIST: every group of the caller with its timeline head, so a device that was away
//! learns which read-diffusion groups advanced and pulls them with HISTORY.

use tern_core::ServiceError;
use tern_proto::pb;

use super::{Caller, group_to_wire};
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    _req: pb::GroupListRequest,
) -> Result<pb::GroupListResponse, ServiceError> {
    let groups = services.groups.list(&caller.user).await?;
    Ok(pb::GroupListResponse {
        groups: groups.iter().map(group_to_wire).collect(),
    })
}
