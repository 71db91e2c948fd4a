//! CONVERSATION_UPDATE: pins or mutes a conversation in the caller's list.

use tern_core::ServiceError;
use tern_proto::pb;

use super::{Caller, conversation_to_wire};
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::ConversationUpdateRequest,
) -> Result<pb::ConversationUpdateResponse, ServiceError> {
    let view = services
        .conversations
        .set_flags(&caller.user, &req.conversation_id, req.pinned, req.muted)
        .await?;
    Ok(pb::ConversationUpdateResponse {
        conversation: Some(conversation_to_wire(&view)),
    })
}
