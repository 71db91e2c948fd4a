//! PROFILE_GET: the profiles of some users.

use tern_core::{ServiceError, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::ProfileGetRequest> for Api {
    async fn handle(
        &self,
        _caller: &Caller,
        req: pb::ProfileGetRequest,
    ) -> Result<pb::ProfileGetResponse, ServiceError> {
        let services = &*self.services;
        let profiles = services.social.profiles(&req.user_ids).await?;
        Ok(pb::ProfileGetResponse {
            profiles: profiles.iter().map(wire::profile).collect(),
        })
    }
}
