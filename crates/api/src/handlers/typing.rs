//! TYPING: an ephemeral signal to the peer's online devices.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::TypingRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::TypingRequest,
    ) -> Result<pb::TypingResponse, ServiceError> {
        let services = &*self.services;
        services.typing.typing(&caller.user, &req.to_user).await?;
        Ok(pb::TypingResponse {})
    }
}
