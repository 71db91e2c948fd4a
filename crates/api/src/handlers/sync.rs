//! SYNC: the caller's inbox entries after a cursor, oldest first, in bounded pages.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle, wire::inbox_entry_to_wire};

impl Handle<pb::SyncRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::SyncRequest,
    ) -> Result<pb::SyncResponse, ServiceError> {
        let services = &*self.services;
        let page = services
            .sync
            .sync(&caller.user, req.after, req.limit)
            .await?;
        Ok(pb::SyncResponse {
            entries: page
                .entries
                .iter()
                .map(|e| inbox_entry_to_wire(e))
                .collect(),
            has_more: page.has_more,
            head: page.head,
        })
    }
}
