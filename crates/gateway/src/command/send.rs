//! SEND: queues a message for the next commit; the ack follows once it is durable.

use tern_core::{
    ServiceError,
    messages::{PendingSend, SendAck, SendInput, SendTarget},
};
use tern_proto::pb;

use super::Caller;
use crate::Services;

/// Validates and queues the message, without waiting, so consecutive sends of one connection
/// keep their order.
pub(crate) fn submit(
    services: &Services,
    caller: &Caller,
    req: pb::SendRequest,
) -> Result<PendingSend, ServiceError> {
    let target = match req.target {
        Some(pb::send_request::Target::ToUser(u)) => SendTarget::User(u),
        Some(pb::send_request::Target::GroupId(g)) => SendTarget::Group(g),
        None => {
            return Err(ServiceError::InvalidArgument(
                "a target (to_user or group_id) is required".into(),
            ));
        }
    };
    services.messages.send(
        &caller.user,
        Some(caller.connection),
        SendInput {
            target,
            client_msg_id: req.client_msg_id,
            content: req.content,
        },
    )
}

pub(crate) fn ack(ack: SendAck) -> pb::SendAck {
    let m = &ack.message;
    pb::SendAck {
        message_id: m.id.0,
        conversation_id: m.conversation.as_str().to_owned(),
        seq: m.seq,
        server_time_ms: m.server_time_ms,
        inbox_seq: m.sender_inbox_seq,
        duplicate: ack.duplicate,
    }
}
