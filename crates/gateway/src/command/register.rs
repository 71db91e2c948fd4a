//! REGISTER: creates an account. Allowed before login.

use tern_core::ServiceError;
use tern_proto::pb;

use crate::Services;

pub(crate) async fn run(
    services: &Services,
    req: pb::RegisterRequest,
    source: std::net::IpAddr,
) -> Result<pb::RegisterResponse, ServiceError> {
    let user = services
        .core()
        .accounts
        .register(&req.user_id, &req.password, source)
        .await?;
    Ok(pb::RegisterResponse {
        user_id: user.as_str().to_owned(),
    })
}
