//! MESSAGE_SEARCH: the caller's messages containing a text, newest first.

use tern_core::{ServiceError, search::SearchQuery};
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::message_to_wire};

impl Handle<pb::MessageSearchRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::MessageSearchRequest,
    ) -> Result<pb::MessageSearchResponse, ServiceError> {
        let page = self
            .services
            .search
            .search(
                Some(&caller.user),
                SearchQuery {
                    text: req.query,
                    conversation: Some(req.conversation_id),
                    sender: Some(req.sender),
                    before: req.before,
                    limit: req.limit,
                },
            )
            .await?;
        Ok(pb::MessageSearchResponse {
            messages: page.messages.iter().map(message_to_wire).collect(),
            next_before: page.next_before.unwrap_or(0),
        })
    }
}
