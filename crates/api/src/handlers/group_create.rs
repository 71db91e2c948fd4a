//! GROUP_CREATE: creates a group owned by the caller, with its first members.

use tern_core::{ServiceError, group_service::CreateInput, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::group_to_wire};

impl Handle<pb::GroupCreateRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::GroupCreateRequest,
    ) -> Result<pb::GroupInfoResponse, ServiceError> {
        let services = &*self.services;
        let history = wire::history_of(req.history_visibility).ok_or_else(|| {
            ServiceError::InvalidArgument(format!(
                "unknown history visibility {}",
                req.history_visibility
            ))
        })?;
        let view = services
            .groups
            .create(
                &caller.user,
                CreateInput {
                    name: req.name,
                    members: req.members,
                    avatar: req.avatar,
                    announcement: req.announcement,
                    history,
                    request_id: req.client_request_id,
                },
            )
            .await?;
        Ok(pb::GroupInfoResponse {
            group: Some(group_to_wire(&view)),
        })
    }
}
