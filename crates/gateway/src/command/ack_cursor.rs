//! ACK_CURSOR: records how far the caller's device has synced.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::AckCursorRequest,
) -> Result<pb::AckCursorResponse, ServiceError> {
    let cursor = services
        .sync
        .ack_cursor(&caller.user, &caller.device, req.seq)
        .await?;
    Ok(pb::AckCursorResponse { cursor })
}
