//! The requests only a connection can make: PING, REGISTER and LOGIN before login; LOGOUT,
//! which ends the connection; PRESENCE_SUBSCRIBE, PRESENCE_UNSUBSCRIBE and OBSERVE, which live
//! as long as it does. Every other request is handled by `tern_api`, the same code the HTTP
//! front door calls. One file per request type, each with the same shape.

pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod observe;
pub(crate) mod ping;
pub(crate) mod presence_subscribe;
pub(crate) mod presence_unsubscribe;
pub(crate) mod register;

use tern_core::{ConnectionId, DeviceId, UserId};

/// The authenticated identity a command runs for.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) connection: ConnectionId,
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
}

impl Caller {
    /// The caller as the transport-neutral handlers know it.
    pub(crate) fn api(&self) -> tern_api::Caller {
        tern_api::Caller {
            user: self.user.clone(),
            device: self.device.clone(),
            connection: Some(self.connection),
        }
    }
}
