//! READ: raises the caller's read mark in a conversation.

use tern_core::{ServiceError, conversations::ConversationTarget};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::ReadRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::ReadRequest,
    ) -> Result<pb::ReadResponse, ServiceError> {
        let services = &*self.services;
        use pb::read_request::Target;
        let target = match req.target {
            Some(Target::Peer(p)) => ConversationTarget::Peer(p),
            Some(Target::ConversationId(c)) => ConversationTarget::Id(c),
            Some(Target::GroupId(g)) => ConversationTarget::Group(g),
            None => {
                return Err(ServiceError::InvalidArgument(
                    "set peer, conversation_id or group_id".into(),
                ));
            }
        };
        let (conversation, read_seq, unread) = services
            .conversations
            .mark_read(&caller.user, target, req.seq)
            .await?;
        Ok(pb::ReadResponse {
            conversation_id: conversation.to_string(),
            read_seq,
            unread: unread.min(u64::from(u32::MAX)) as u32,
        })
    }
}
