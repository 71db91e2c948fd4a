//! SYNC: the caller's inbox entries after a cursor, oldest first, in bounded pages.

use tern_core::ServiceError;
use tern_proto::pb;

use super::{Caller, inbox_entry_to_wire};
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::SyncRequest,
) -> Result<pb::SyncResponse, ServiceError> {
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
