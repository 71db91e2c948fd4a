//! PRESENCE_SUBSCRIBE: follows the presence of friends (or of the caller itself).

use tern_core::{ServiceError, UserId};
use tern_proto::pb;

use super::Caller;
use crate::Services;

pub(crate) async fn run(
    services: &Services,
    caller: &Caller,
    req: pb::PresenceSubscribeRequest,
) -> Result<pb::PresenceSubscribeResponse, ServiceError> {
    let mut wanted: Vec<UserId> = req
        .user_ids
        .iter()
        .filter_map(|u| UserId::parse(u).ok())
        .collect();
    wanted.sort();
    wanted.dedup();
    let friends = services
        .core()
        .social
        .are_friends(&caller.user, wanted.clone())
        .await?;
    // Only friends (and oneself) may be followed; others are left out without saying why.
    let allowed: Vec<UserId> = wanted
        .into_iter()
        .zip(friends)
        .filter(|(u, friend)| *friend || u == &caller.user)
        .map(|(u, _)| u)
        .collect();
    let presences = services
        .presence
        .follow(caller.connection, &allowed)
        .map_err(|max| {
            ServiceError::InvalidArgument(format!("a connection follows at most {max} users"))
        })?;
    Ok(pb::PresenceSubscribeResponse { presences })
}
