//! RECALL: withdraws a message and records the recall in its conversation.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::RecallRequest,
) -> Result<pb::RecallResponse, ServiceError> {
    let done = services
        .conversations
        .recall(&caller.user, req.message_id)
        .await?;
    Ok(pb::RecallResponse {
        conversation_id: done.conversation.to_string(),
        event_seq: done.value,
    })
}
