//! HISTORY: a page of one conversation the caller is part of.

use tern_core::{ConversationId, GroupId, ServiceError, UserId, store::Direction};
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::message_to_wire};

impl Handle<pb::HistoryRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse, ServiceError> {
        let services = &*self.services;
        let conversation = match req.target {
            Some(pb::history_request::Target::Peer(peer)) => {
                let peer = UserId::parse(&peer).map_err(|_| ServiceError::NotAParticipant)?;
                ConversationId::direct(&caller.user, &peer)
            }
            Some(pb::history_request::Target::ConversationId(id)) => ConversationId::parse(&id)?.0,
            Some(pb::history_request::Target::GroupId(0)) => {
                return Err(ServiceError::NotAParticipant);
            }
            Some(pb::history_request::Target::GroupId(g)) => ConversationId::group(GroupId(g)),
            None => {
                return Err(ServiceError::InvalidArgument(
                    "a peer or a conversation_id is required".into(),
                ));
            }
        };
        let direction = match pb::Direction::try_from(req.direction) {
            Ok(pb::Direction::Forward) => Direction::Forward,
            Ok(pb::Direction::Backward) => Direction::Backward,
            Err(_) => {
                return Err(ServiceError::InvalidArgument(format!(
                    "unknown direction {}",
                    req.direction
                )));
            }
        };
        let page = services
            .messages
            .history(
                &caller.user,
                &conversation,
                req.anchor_seq,
                direction,
                req.limit,
            )
            .await?;
        Ok(pb::HistoryResponse {
            messages: page.messages.iter().map(message_to_wire).collect(),
            has_more: page.has_more,
        })
    }
}
