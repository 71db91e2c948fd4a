//! GROUP_MEMBERS: a page of a group's members, ordered by user id.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::GroupMembersRequest,
) -> Result<pb::GroupMembersResponse, ServiceError> {
    let (members, has_more) = services
        .groups
        .members(&caller.user, req.group_id, &req.after, req.limit)
        .await?;
    Ok(pb::GroupMembersResponse {
        members: members
            .into_iter()
            .map(|(user, m)| pb::GroupMember {
                user_id: user.to_string(),
                role: m.role.to_wire() as i32,
                joined_seq: m.joined_seq,
                muted_until_ms: m.muted_until_ms,
            })
            .collect(),
        has_more,
    })
}
