//! EDIT: replaces a message's content and records the edit in its conversation.

use tern_core::{ServiceError, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::EditRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::EditRequest,
    ) -> Result<pb::EditResponse, ServiceError> {
        let services = &*self.services;
        let done = services
            .conversations
            .edit(
                &caller.user,
                req.message_id,
                req.content.map(wire::sent_content).transpose()?,
            )
            .await?;
        Ok(pb::EditResponse {
            conversation_id: done.conversation.to_string(),
            event_seq: done.value,
            edited_at_ms: done.event_time_ms,
        })
    }
}
