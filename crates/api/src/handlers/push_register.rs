//! PUSH_REGISTER and PUSH_UNREGISTER: the calling device's push token.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::{Api, Caller, Handle};

impl Handle<pb::PushRegisterRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::PushRegisterRequest,
    ) -> Result<pb::PushRegisterResponse, ServiceError> {
        self.services
            .push
            .register(
                &caller.user,
                &caller.device,
                &req.provider,
                &req.token,
                &req.p256dh,
                &req.auth,
                req.private,
            )
            .await?;
        Ok(pb::PushRegisterResponse {})
    }
}

impl Handle<pb::PushUnregisterRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        _req: pb::PushUnregisterRequest,
    ) -> Result<pb::PushUnregisterResponse, ServiceError> {
        let removed = self
            .services
            .push
            .unregister(&caller.user, &caller.device)
            .await?;
        Ok(pb::PushUnregisterResponse { removed })
    }
}
