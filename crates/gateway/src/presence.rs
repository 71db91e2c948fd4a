//! Presence: which devices of a user are connected, told to the connections that follow it.
//!
//! Presence is read from the registry, never stored: a device is online exactly while its
//! connection is registered, so a connection that crashed or timed out (its heartbeat lapsed)
//! is offline as soon as its session ends, and a restarted server starts with everyone offline.
//! Each change of a user's devices (a login, a replaced login, a close) sends the user's whole
//! device list to its followers as an ephemeral PRESENCE frame.
//!
//! In a cluster the devices on other nodes come from what those nodes announce on the bus
//! ([`RemotePresence`]): kept here beside the registry, shown together with it, and dropped
//! for a node that leaves the node list.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use tern_core::{
    ConnectionId, DeviceId, NodeId, Platform, UserId,
    presence::{DevicePresence, RemotePresence},
};
use tern_proto::{Encoding, ServerEvent, pb};

use crate::{fanout::Encoded, outbox::Outbox, registry::Registry};

/// The most users one connection may follow.
pub const MAX_FOLLOWED_PER_CONNECTION: usize = 1000;

/// A connection that follows someone.
#[derive(Debug, Clone)]
struct Follower {
    /// Whose connection it is, so a friendship's end can stop it.
    user: UserId,
    outbox: Outbox,
    encoding: Encoding,
}

#[derive(Debug, Default)]
struct Inner {
    /// Who follows each user.
    followers: HashMap<UserId, HashMap<ConnectionId, Follower>>,
    /// Whom each connection follows, to forget it at close.
    following: HashMap<ConnectionId, HashSet<UserId>>,
}

/// Devices on other nodes.
#[derive(Debug, Default)]
struct Remote {
    /// Each user's devices elsewhere, by connection.
    users: HashMap<UserId, BTreeMap<ConnectionId, (DeviceId, Platform)>>,
    /// Each other node: when it last announced something, and its connections.
    nodes: HashMap<NodeId, (Instant, HashSet<(UserId, ConnectionId)>)>,
}

impl Remote {
    fn insert(&mut self, d: DevicePresence) {
        let node = self
            .nodes
            .entry(d.connection.node())
            .or_insert_with(|| (Instant::now(), HashSet::new()));
        node.0 = Instant::now();
        node.1.insert((d.user.clone(), d.connection));
        self.users
            .entry(d.user)
            .or_default()
            .insert(d.connection, (d.device, d.platform));
    }

    fn remove(&mut self, user: &UserId, connection: ConnectionId) -> bool {
        if let Some(node) = self.nodes.get_mut(&connection.node()) {
            node.0 = Instant::now();
            node.1.remove(&(user.clone(), connection));
        }
        let Some(devices) = self.users.get_mut(user) else {
            return false;
        };
        let removed = devices.remove(&connection).is_some();
        if devices.is_empty() {
            self.users.remove(user);
        }
        removed
    }

    /// Drops everything of `node`; returns the users whose devices changed.
    fn forget_node(&mut self, node: NodeId) -> HashSet<UserId> {
        let mut changed = HashSet::new();
        if let Some((_, conns)) = self.nodes.remove(&node) {
            for (user, connection) in conns {
                if let Some(devices) = self.users.get_mut(&user) {
                    devices.remove(&connection);
                    if devices.is_empty() {
                        self.users.remove(&user);
                    }
                }
                changed.insert(user);
            }
        }
        changed
    }
}

/// Presence subscriptions of this process's connections.
#[derive(Debug)]
pub struct Presence {
    registry: Arc<Registry>,
    inner: Mutex<Inner>,
    remote: Mutex<Remote>,
}

impl Presence {
    /// Presence over `registry` (the one sessions attach to).
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            inner: Mutex::new(Inner::default()),
            remote: Mutex::new(Remote::default()),
        }
    }

    /// The registry presence reads.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remote(&self) -> MutexGuard<'_, Remote> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user`'s presence now: its devices here and on the other nodes.
    pub fn of(&self, user: &UserId) -> pb::Presence {
        let mut devices: Vec<pb::DevicePresence> = self
            .registry
            .connections_of(user)
            .into_iter()
            .map(|(_, device, platform)| pb::DevicePresence {
                device_id: device.to_string(),
                platform: tern_core::wire::platform(platform),
            })
            .collect();
        if let Some(elsewhere) = self.remote().users.get(user) {
            for (device, platform) in elsewhere.values() {
                // A device that moved to this node (or between others) may still be listed
                // where it was until that node announces its close or is found dead.
                if devices.iter().any(|d| d.device_id == device.as_str()) {
                    continue;
                }
                devices.push(pb::DevicePresence {
                    device_id: device.to_string(),
                    platform: tern_core::wire::platform(*platform),
                });
            }
        }
        pb::Presence {
            user_id: user.to_string(),
            online: !devices.is_empty(),
            devices,
        }
    }

    /// Makes connection `id` follow `users` and answers with their presence now. A connection
    /// that is not logged in follows nobody; beyond [`MAX_FOLLOWED_PER_CONNECTION`] the rest
    /// are refused.
    pub fn follow(&self, id: ConnectionId, users: &[UserId]) -> Result<Vec<pb::Presence>, usize> {
        let Some(entry) = self.registry.entry(id) else {
            return Ok(Vec::new());
        };
        {
            let mut inner = self.lock();
            let following = inner.following.entry(id).or_default();
            let new = users.iter().filter(|u| !following.contains(*u)).count();
            if following.len() + new > MAX_FOLLOWED_PER_CONNECTION {
                return Err(MAX_FOLLOWED_PER_CONNECTION);
            }
            following.extend(users.iter().cloned());
            for user in users {
                inner.followers.entry(user.clone()).or_default().insert(
                    id,
                    Follower {
                        user: entry.user.clone(),
                        outbox: entry.outbox.clone(),
                        encoding: entry.encoding,
                    },
                );
            }
        }
        // Read after subscribing: a change in between is sent as an event as well, so the
        // client's view ends up current either way.
        Ok(users.iter().map(|u| self.of(u)).collect())
    }

    /// Stops connection `id` following `users`.
    pub fn unfollow(&self, id: ConnectionId, users: &[UserId]) {
        let mut inner = self.lock();
        for user in users {
            if let Some(f) = inner.following.get_mut(&id) {
                f.remove(user);
            }
            drop_follower(&mut inner, user, id);
        }
    }

    /// Forgets everything connection `id` follows (at close).
    pub fn forget(&self, id: ConnectionId) {
        let mut inner = self.lock();
        if let Some(users) = inner.following.remove(&id) {
            for user in users {
                drop_follower(&mut inner, &user, id);
            }
        }
    }

    /// Stops every connection of `follower` following `followed` (the two stopped being
    /// friends, or `followed` blocked `follower`).
    pub fn revoke(&self, follower: &UserId, followed: &UserId) {
        tern_core::presence::PresenceFollows::revoke(self, follower, followed);
    }
}

impl tern_core::push::OnlineDevices for Presence {
    fn online_devices(&self, user: &UserId) -> Vec<(tern_core::DeviceId, ConnectionId)> {
        let mut out: Vec<(tern_core::DeviceId, ConnectionId)> = self
            .registry
            .connections_of(user)
            .into_iter()
            .map(|(id, device, _)| (device, id))
            .collect();
        if let Some(elsewhere) = self.remote().users.get(user) {
            out.extend(
                elsewhere
                    .iter()
                    .map(|(id, (device, _))| (device.clone(), *id)),
            );
        }
        out
    }
}

impl tern_core::presence::PresenceFollows for Presence {
    fn revoke(&self, follower: &UserId, followed: &UserId) {
        let mut inner = self.lock();
        let Some(f) = inner.followers.get_mut(followed) else {
            return;
        };
        let gone: Vec<ConnectionId> = f
            .iter()
            .filter(|(_, x)| &x.user == follower)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            drop_follower(&mut inner, followed, id);
            if let Some(mine) = inner.following.get_mut(&id) {
                mine.remove(followed);
            }
        }
    }
}

impl Presence {
    /// Tells `user`'s followers its presence now, after its devices changed.
    pub fn changed(&self, user: &UserId) {
        // The device list is read and sent under the lock, so two changes of one user reach
        // each follower in the order they happened: the last one a follower sees is current.
        let inner = self.lock();
        let Some(followers) = inner.followers.get(user) else {
            return;
        };
        let followers: Vec<Follower> = followers.values().cloned().collect();
        let event = ServerEvent::Presence(self.of(user));
        let mut encoded = Encoded::new(&event);
        for f in followers {
            if let Some(frame) = encoded.frame(f.encoding) {
                f.outbox.push_ephemeral(frame.clone());
            }
        }
        drop(inner);
    }

    /// Tells the followers of each of `users`.
    fn changed_all(&self, users: impl IntoIterator<Item = UserId>) {
        for user in users {
            self.changed(&user);
        }
    }

    /// Connections following someone, and users followed (for tests).
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.following.len(), inner.followers.len())
    }
}

impl RemotePresence for Presence {
    fn local_devices(&self) -> Vec<DevicePresence> {
        self.registry.devices()
    }

    fn remote_online(&self, device: DevicePresence) {
        let user = device.user.clone();
        self.remote().insert(device);
        self.changed(&user);
    }

    fn remote_offline(&self, user: &UserId, connection: ConnectionId) {
        if self.remote().remove(user, connection) {
            self.changed(user);
        }
    }

    fn replace_node(&self, node: NodeId, devices: Vec<DevicePresence>) {
        let changed = {
            let mut remote = self.remote();
            let mut changed = remote.forget_node(node);
            // Announced now, even if empty: the node is alive.
            remote.nodes.insert(node, (Instant::now(), HashSet::new()));
            for d in devices {
                changed.insert(d.user.clone());
                remote.insert(d);
            }
            changed
        };
        self.changed_all(changed);
    }

    fn retain_nodes(&self, alive: &[NodeId], listed_at: Instant) {
        let changed = {
            let mut remote = self.remote();
            let dead: Vec<NodeId> = remote
                .nodes
                .iter()
                .filter(|(node, (seen, _))| !alive.contains(node) && *seen < listed_at)
                .map(|(node, _)| *node)
                .collect();
            let mut changed = HashSet::new();
            for node in dead {
                tracing::info!(%node, "a node left the cluster; its devices are offline");
                changed.extend(remote.forget_node(node));
            }
            changed
        };
        self.changed_all(changed);
    }
}

fn drop_follower(inner: &mut Inner, user: &UserId, id: ConnectionId) {
    if let Some(f) = inner.followers.get_mut(user) {
        f.remove(&id);
        if f.is_empty() {
            inner.followers.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use tern_core::{DeviceId, Platform};

    use super::*;

    fn test_conn(n: u64) -> tern_core::ConnectionId {
        tern_core::ConnectionId::new(tern_core::NodeId::new(0).unwrap(), n)
    }
    use crate::{
        outbox::outbox,
        registry::{Entry, KickPolicy},
    };

    fn entry(user: &str, device: &str, tx: Outbox) -> Entry {
        Entry {
            user: UserId::parse(user).unwrap(),
            device: DeviceId::parse(device).unwrap(),
            platform: Platform::Ios,
            encoding: Encoding::Protobuf,
            outbox: tx,
        }
    }

    #[test]
    fn followers_hear_of_each_change_and_are_forgotten_at_close() {
        let registry = Arc::new(Registry::new());
        let presence = Presence::new(registry.clone());
        let (watcher_tx, watcher_rx) = outbox(16);
        registry.attach(
            test_conn(1),
            entry("w", "d", watcher_tx),
            KickPolicy::Unlimited,
        );
        let bob = UserId::parse("bob").unwrap();
        let now = presence
            .follow(test_conn(1), std::slice::from_ref(&bob))
            .unwrap();
        assert!(!now[0].online);
        registry.attach(
            test_conn(2),
            entry("bob", "phone", outbox(4).0),
            KickPolicy::Unlimited,
        );
        presence.changed(&bob);
        assert_eq!(watcher_rx.drain().frames.len(), 1);
        assert!(presence.of(&bob).online);
        presence.forget(test_conn(1));
        assert_eq!(presence.counts(), (0, 0));
        presence.changed(&bob);
        assert!(watcher_rx.drain().frames.is_empty());
        // A connection that is not logged in follows nobody.
        assert!(
            presence
                .follow(test_conn(9), std::slice::from_ref(&bob))
                .unwrap()
                .is_empty()
        );
        assert_eq!(presence.counts(), (0, 0));
        // Revoking stops the follower's connections only.
        presence
            .follow(test_conn(1), std::slice::from_ref(&bob))
            .unwrap();
        presence.revoke(&UserId::parse("someone").unwrap(), &bob);
        assert_eq!(presence.counts(), (1, 1));
        presence.revoke(&UserId::parse("w").unwrap(), &bob);
        assert_eq!(presence.counts().1, 0);
        presence.changed(&bob);
        assert!(watcher_rx.drain().frames.is_empty());
    }

    #[test]
    fn a_connection_follows_at_most_the_limit() {
        let registry = Arc::new(Registry::new());
        let presence = Presence::new(registry.clone());
        registry.attach(
            test_conn(1),
            entry("w", "d", outbox(4).0),
            KickPolicy::Unlimited,
        );
        let many: Vec<UserId> = (0..=MAX_FOLLOWED_PER_CONNECTION)
            .map(|i| UserId::parse(&format!("u{i}")).unwrap())
            .collect();
        assert!(presence.follow(test_conn(1), &many).is_err());
        assert!(presence.follow(test_conn(1), &many[1..]).is_ok());
    }
}
