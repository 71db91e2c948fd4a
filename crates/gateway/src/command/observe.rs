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
    let conversation = services
        .core()
        .conversations
        .may_observe(&caller.user, &req.conversation_id)?;
    if req.stop {
        services.observers.stop(caller.connection, &conversation);
        return Ok(pb::ObserveResponse {});
    }
    // The connection's own queue and encoding, as registered at login.
    let Some(entry) = services.presence.registry().entry(caller.connection) else {
        return Err(ServiceError::ShuttingDown);
    };
    services
        .observers
        .start(
            caller.connection,
            conversation,
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
