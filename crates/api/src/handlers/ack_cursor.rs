//! ACK_CURSOR: records how far the caller's device has synced.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::AckCursorRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::AckCursorRequest,
    ) -> Result<pb::AckCursorResponse, ServiceError> {
        let services = &*self.services;
        let cursor = services
            .sync
            .ack_cursor(&caller.user, &caller.device, req.seq)
            .await?;
        Ok(pb::AckCursorResponse { cursor })
    }
}
