//! RECALL: withdraws a message and records the recall in its conversation.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::RecallRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::RecallRequest,
    ) -> Result<pb::RecallResponse, ServiceError> {
        let services = &*self.services;
        let done = services
            .conversations
            .recall(&caller.user, req.message_id)
            .await?;
        Ok(pb::RecallResponse {
            conversation_id: done.conversation.to_string(),
            event_seq: done.value,
        })
    }
}
