//! GROUP_MEMBERS: a page of a group's members, ordered by user id.

use tern_core::{ConversationId, GroupId, ServiceError, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::GroupMembersRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::GroupMembersRequest,
    ) -> Result<pb::GroupMembersResponse, ServiceError> {
        let services = &*self.services;
        let (members, has_more) = services
            .groups
            .members(&caller.user, req.group_id, &req.after, req.limit)
            .await?;
        let marks = services
            .conversations
            .read_marks(
                &ConversationId::group(GroupId(req.group_id)),
                members.iter().map(|(u, _)| u.clone()).collect(),
            )
            .await?;
        Ok(pb::GroupMembersResponse {
            members: members
                .into_iter()
                .zip(marks)
                .map(|((user, m), read_seq)| pb::GroupMember {
                    user_id: user.to_string(),
                    role: wire::role(m.role) as i32,
                    joined_seq: m.joined_seq,
                    muted_until_ms: m.muted_until_ms,
                    read_seq,
                })
                .collect(),
            has_more,
        })
    }
}
