//! USER_SEARCH: users by id or nickname prefix.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    _caller: &Caller,
    req: pb::UserSearchRequest,
) -> Result<pb::UserSearchResponse, ServiceError> {
    let profiles = services.social.search(&req.query, req.limit).await?;
    Ok(pb::UserSearchResponse {
        profiles: profiles.iter().map(|p| p.to_wire()).collect(),
    })
}
