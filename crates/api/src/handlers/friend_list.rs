//! FRIEND_LIST: the caller's friends and pending requests, whole or changed since a version.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::FriendListRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::FriendListRequest,
    ) -> Result<pb::FriendListResponse, ServiceError> {
        let services = &*self.services;
        let list = services
            .social
            .friends(&caller.user, req.since_version)
            .await?;
        Ok(pb::FriendListResponse {
            friends: list
                .friends
                .iter()
                .map(|f| pb::Friend {
                    user_id: f.user.to_string(),
                    remark: f.remark.clone(),
                    since_ms: f.since_ms,
                })
                .collect(),
            removed: list.removed.iter().map(|u| u.to_string()).collect(),
            requests: list
                .requests
                .iter()
                .map(|r| pb::PendingFriendRequest {
                    from_user: r.from.to_string(),
                    to_user: r.to.to_string(),
                    message: r.message.clone(),
                    created_ms: r.created_ms,
                })
                .collect(),
            version: list.version,
            full: list.full,
        })
    }
}
