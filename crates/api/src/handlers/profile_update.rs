//! PROFILE_UPDATE: changes the caller's profile and settings.

use tern_core::{ServiceError, social::ProfilePatch, wire};
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::ProfileUpdateRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::ProfileUpdateRequest,
    ) -> Result<pb::ProfileUpdateResponse, ServiceError> {
        let services = &*self.services;
        let patch = ProfilePatch {
            nickname: req.nickname,
            avatar: req.avatar,
            signature: req.signature,
            extra: req.extra,
            stranger_policy: req.stranger_policy.map(wire::policy_of),
        };
        let (profile, policy) = services.social.update_profile(&caller.user, patch).await?;
        Ok(pb::ProfileUpdateResponse {
            profile: Some(wire::profile(&profile)),
            stranger_policy: wire::policy(policy) as i32,
        })
    }
}
