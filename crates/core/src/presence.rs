//! The presence seam: who follows whose presence lives with the connections (in the gateway of
//! each process, or in a shared store in a cluster); the services only tell it when a
//! following must end.

use crate::ids::UserId;

/// What services may ask of presence.
pub trait PresenceFollows: Send + Sync + std::fmt::Debug + 'static {
    /// Stops every connection of `follower` following `followed`: the two stopped being friends,
    /// or `followed` blocked `follower`, who must no longer see it come and go.
    fn revoke(&self, follower: &UserId, followed: &UserId);
}
