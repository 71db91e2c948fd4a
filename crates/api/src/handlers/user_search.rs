//! USER_SEARCH: users by id or nickname prefix.

use tern_core::{ServiceError, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::UserSearchRequest> for Api {
    async fn handle(
        &self,
        _caller: &Caller,
        req: pb::UserSearchRequest,
    ) -> Result<pb::UserSearchResponse, ServiceError> {
        let services = &*self.services;
        let profiles = services.social.search(&req.query, req.limit).await?;
        Ok(pb::UserSearchResponse {
            profiles: profiles.iter().map(wire::profile).collect(),
        })
    }
}
