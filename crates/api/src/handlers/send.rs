//! SEND: queues a message for the next commit; the ack follows once it is durable.

use tern_core::{
    ServiceError,
    messages::{PendingSend, SendAck, SendInput, SendTarget},
    wire,
};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Api {
    /// Validates and queues the message without waiting, so that a front door can queue the
    /// sends of one connection in the order they arrived; the returned future is the ack.
    pub fn submit_send(
        &self,
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
        self.services.messages.send(
            &caller.user,
            caller.connection,
            SendInput {
                target,
                client_msg_id: req.client_msg_id,
                content: req.content.map(wire::sent_content).transpose()?,
            },
        )
    }
}

/// The ack as the wire shows it.
pub fn ack(ack: SendAck) -> pb::SendAck {
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

impl Handle<pb::SendRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::SendRequest,
    ) -> Result<pb::SendAck, ServiceError> {
        let pending = self.submit_send(caller, req)?;
        pending.await.map(ack)
    }
}
