//! PRESENCE_UNSUBSCRIBE: stops following users' presence.

use tern_core::{ServiceError, UserId};
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::PresenceUnsubscribeRequest,
) -> Result<pb::PresenceUnsubscribeResponse, ServiceError> {
    let users: Vec<UserId> = req
        .user_ids
        .iter()
        .filter_map(|u| UserId::parse(u).ok())
        .collect();
    services.presence.unfollow(caller.connection, &users);
    Ok(pb::PresenceUnsubscribeResponse {})
}
