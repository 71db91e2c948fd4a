//! CONVERSATION_LIST: the caller's conversations, whole or changed since a version.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::conversation_to_wire};

impl Handle<pb::ConversationListRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::ConversationListRequest,
    ) -> Result<pb::ConversationListResponse, ServiceError> {
        let services = &*self.services;
        let list = services
            .conversations
            .list(&caller.user, req.since_version)
            .await?;
        Ok(pb::ConversationListResponse {
            conversations: list
                .conversations
                .iter()
                .map(conversation_to_wire)
                .collect(),
            version: list.version,
            full: list.full,
        })
    }
}
