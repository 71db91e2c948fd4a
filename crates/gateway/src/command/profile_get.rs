//! PROFILE_GET: the profiles of some users.

use tern_core::ServiceError;
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    _caller: &Caller,
    req: pb::ProfileGetRequest,
) -> Result<pb::ProfileGetResponse, ServiceError> {
    let profiles = services.social.profiles(&req.user_ids).await?;
    Ok(pb::ProfileGetResponse {
        profiles: profiles.iter().map(|p| p.to_wire()).collect(),
    })
}
