//! PUSH_REGISTER, PUSH_UNREGISTER and PUSH_APP_STATE: the calling device's push token, and
//! whether its app is in the background.

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

impl Handle<pb::PushAppStateRequest> for Api {
    async fn handle(
        &self,
        caller: &Caller,
        req: pb::PushAppStateRequest,
    ) -> Result<pb::PushAppStateResponse, ServiceError> {
        // An app's state belongs to its connection: a front door without one has none.
        let Some(connection) = caller.connection else {
            return Err(ServiceError::InvalidArgument(
                "only a connection's app has a state".into(),
            ));
        };
        self.services
            .push
            .set_background(&caller.user, &caller.device, connection, req.background)
            .await?;
        Ok(pb::PushAppStateResponse {})
    }
}
