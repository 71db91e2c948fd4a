//! BLOCK_LIST: everyone the caller blocked.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::BlockListRequest,
) -> Result<pb::BlockListResponse, ServiceError> {
    let _ = req;
    let users = services.social.blocked(&caller.user).await?;
    Ok(pb::BlockListResponse {
        user_ids: users.iter().map(|u| u.to_string()).collect(),
    })
}
