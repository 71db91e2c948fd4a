//! GROUP_INFO: one group the caller is a member of.

use tern_core::ServiceError;
use tern_proto::pb;

use super::{Caller, group_to_wire};
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::GroupInfoRequest,
) -> Result<pb::GroupInfoResponse, ServiceError> {
    let view = services.groups.info(&caller.user, req.group_id).await?;
    Ok(pb::GroupInfoResponse {
        group: Some(group_to_wire(&view)),
    })
}
