//! CONVERSATION_UPDATE: pins or mutes a conversation in the caller's list.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::conversation_to_wire};

impl Handle<pb::ConversationUpdateRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::ConversationUpdateRequest,
    ) -> Result<pb::ConversationUpdateResponse, ServiceError> {
        let services = &*self.services;
        let view = services
            .conversations
            .set_flags(&caller.user, &req.conversation_id, req.pinned, req.muted)
            .await?;
        Ok(pb::ConversationUpdateResponse {
            conversation: Some(conversation_to_wire(&view)),
        })
    }
}
