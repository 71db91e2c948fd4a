//! OBSERVE: an observer follows (or stops following) a conversation's live messages.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::ObserveRequest,
) -> Result<pb::ObserveResponse, ServiceError> {
    if req.stop {
        // Stopping needs no role: one taken away since must not keep the stream going.
        let (conversation, _) = tern_core::ConversationId::parse(&req.conversation_id)?;
        services.observers.stop(caller.connection, &conversation);
        return Ok(pb::ObserveResponse {});
    }
    let conversation = services
        .core()
        .conversations
        .may_observe(&caller.user, &req.conversation_id)?;
    // The connection's own queue and encoding, as registered at login.
    let Some(entry) = services.presence.registry().entry(caller.connection) else {
        return Err(ServiceError::ShuttingDown);
    };
    services
        .observers
        .start(
            caller.connection,
            conversation,
            caller.user.clone(),
            entry.outbox,
            entry.encoding,
        )
        .map_err(|max| {
            ServiceError::InvalidArgument(format!(
                "a connection observes at most {max} conversations"
            ))
        })?;
    Ok(pb::ObserveResponse {})
}
