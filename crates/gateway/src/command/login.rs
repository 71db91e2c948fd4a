//! LOGIN: authenticates the connection. The session attaches it to the registry when this
//! completes, before the response is written, so that every entry stored after the client
//! reads the response is either pushed or found by its next SYNC.

use tern_core::{ServiceError, accounts::Credential, accounts::Login};
use tern_proto::pb;

use crate::Services;

/// A successful login with the sync positions the response reports.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    pub(crate) login: Login,
    pub(crate) inbox_head: u64,
    pub(crate) cursor: u64,
}

pub(crate) async fn run(
    services: &Services,
    req: pb::LoginRequest,
    source: std::net::IpAddr,
) -> Result<LoggedIn, ServiceError> {
    let credential = match req.credential {
        Some(pb::login_request::Credential::Password(p)) => Credential::Password(p),
        Some(pb::login_request::Credential::Token(t)) => Credential::Token(t),
        None => {
            return Err(ServiceError::InvalidArgument(
                "a password or a token is required".into(),
            ));
        }
    };
    let login = services
        .core()
        .accounts
        .login(
            &req.user_id,
            credential,
            &req.device_id,
            tern_core::wire::platform_of(req.platform),
            source,
        )
        .await?;
    let inbox_head = services.core().sync.head(&login.user).await?;
    let cursor = services
        .core()
        .sync
        .cursor(&login.user, &login.device)
        .await?;
    Ok(LoggedIn {
        login,
        inbox_head,
        cursor,
    })
}

pub(crate) fn response(
    done: &LoggedIn,
    heartbeat_interval_ms: u32,
    server_time_ms: i64,
) -> pb::LoginResponse {
    pb::LoginResponse {
        token: done.login.token.clone(),
        token_expires_at_ms: done.login.expires_ms,
        inbox_head: done.inbox_head,
        cursor: done.cursor,
        heartbeat_interval_ms,
        server_time_ms,
    }
}
