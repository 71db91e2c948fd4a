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

/// A device connected to some node, as presence shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePresence {
    /// Whose device.
    pub user: UserId,
    /// Its connection (which names the node).
    pub connection: crate::ids::ConnectionId,
    /// The device.
    pub device: crate::ids::DeviceId,
    /// Its platform.
    pub platform: crate::ids::Platform,
}

/// The devices connected to other nodes, as a cluster tells this node of them. Each node keeps
/// what the others announce (logins, closes, and a whole list after a node (re)subscribes) and
/// shows the union with its own connections to its followers; a node that dies is forgotten
/// once it leaves the node list.
pub trait RemotePresence: Send + Sync + std::fmt::Debug + 'static {
    /// This node's devices now, for the list it announces.
    fn local_devices(&self) -> Vec<DevicePresence>;
    /// A device connected to another node.
    fn remote_online(&self, device: DevicePresence);
    /// A connection of `user` on another node ended.
    fn remote_offline(&self, user: &UserId, connection: crate::ids::ConnectionId);
    /// Node `node`'s devices are exactly `devices` now.
    fn replace_node(&self, node: crate::ids::NodeId, devices: Vec<DevicePresence>);
    /// Forgets the devices of every node missing from `alive` that has announced nothing since
    /// `listed_at` (when the list was read): such a node died.
    fn retain_nodes(&self, alive: &[crate::ids::NodeId], listed_at: std::time::Instant);
}
