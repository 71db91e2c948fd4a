//! The connection registry: which connections each user has, and who each connection is.
//!
//! It is plain data behind one lock, with two indexes kept in step (user → connections,
//! connection → entry) and a [`Registry::check_invariants`] that tests call after every step.
//! The lock guard is `!Send`, so it can never be held across an `.await` in a spawned task.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use tern_core::{ConnectionId, DeviceId, Platform, UserId, groups::Members};
use tern_proto::Encoding;

use crate::outbox::Outbox;

/// What a new login does to the user's other connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KickPolicy {
    /// One connection per platform: a login replaces the user's connection on the same platform.
    /// Connections that state no platform (`Unspecified`, as the one-shot CLI commands do)
    /// cannot be classified, so they are only replaced by a login of the same device. Web
    /// connections are only replaced by the same device too: each browser tab logs in as a
    /// device of its own, and a user's tabs are meant to stay connected side by side.
    #[default]
    OnePerPlatform,
    /// Any number of connections per platform.
    Unlimited,
}

impl std::str::FromStr for KickPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one_per_platform" | "one-per-platform" => Ok(KickPolicy::OnePerPlatform),
            "unlimited" => Ok(KickPolicy::Unlimited),
            other => Err(format!(
                "unknown kick policy {other:?}; expected one_per_platform or unlimited"
            )),
        }
    }
}

/// A logged-in connection.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Whose connection it is.
    pub user: UserId,
    /// The device it comes from.
    pub device: DeviceId,
    /// The device's platform.
    pub platform: Platform,
    /// The encoding its pushes use (the one it logged in with).
    pub encoding: Encoding,
    /// Where fan-out leaves frames for it.
    pub outbox: Outbox,
}

/// Whether a login of `device` on `platform` replaces connection `old` under `policy`.
fn replaces(old: &Entry, device: &DeviceId, platform: Platform, policy: KickPolicy) -> bool {
    old.device == *device
        || (policy == KickPolicy::OnePerPlatform
            && old.platform == platform
            && one_per_platform_applies(platform))
}

/// Whether `OnePerPlatform` limits `platform` to one connection. Not for connections stating no
/// platform, which cannot be classified, nor for the web, where every tab is a device of its own.
fn one_per_platform_applies(platform: Platform) -> bool {
    !matches!(platform, Platform::Unspecified | Platform::Web)
}

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<ConnectionId, Entry>,
    /// Each user's connections, in login order. A user is present only while it has one.
    users: HashMap<UserId, Vec<ConnectionId>>,
}

/// Users ⇄ live connections of this process.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a logged-in connection and removes the connections it replaces under `policy`: any
    /// other connection of the same device, and with `OnePerPlatform` any other connection of
    /// the same platform (but the web's and unspecified ones). Returns the removed entries so the caller can kick them.
    pub fn attach(
        &self,
        id: ConnectionId,
        entry: Entry,
        policy: KickPolicy,
    ) -> Vec<(ConnectionId, Entry)> {
        match self.attach_within(id, entry, policy, 0) {
            Ok(kicked) => kicked,
            Err(_) => unreachable!("no limit was given"),
        }
    }

    /// [`Registry::attach`], unless the user would then have more than `max` connections
    /// (0: no limit); the connections the login replaces do not count. Refused, nothing
    /// changes and the entry comes back.
    pub fn attach_within(
        &self,
        id: ConnectionId,
        entry: Entry,
        policy: KickPolicy,
        max: usize,
    ) -> Result<Vec<(ConnectionId, Entry)>, Entry> {
        let mut inner = self.lock();
        // A connection logs in once; should it ever attach again, its old entry goes first.
        remove(&mut inner, id);
        let replaced: Vec<ConnectionId> = inner
            .users
            .get(&entry.user)
            .into_iter()
            .flatten()
            .copied()
            .filter(|c| *c != id)
            .filter(|c| {
                inner
                    .connections
                    .get(c)
                    .is_some_and(|old| replaces(old, &entry.device, entry.platform, policy))
            })
            .collect();
        if max > 0 {
            let staying = inner
                .users
                .get(&entry.user)
                .map_or(0, |ids| ids.iter().filter(|c| **c != id).count())
                - replaced.len();
            if staying >= max {
                return Err(entry);
            }
        }
        let mut kicked = Vec::with_capacity(replaced.len());
        for c in replaced {
            if let Some(old) = remove(&mut inner, c) {
                kicked.push((c, old));
            }
        }
        inner.users.entry(entry.user.clone()).or_default().push(id);
        inner.connections.insert(id, entry);
        Ok(kicked)
    }

    /// Removes a connection (at close). Removing an unknown connection does nothing: a kicked
    /// connection was removed when it was replaced.
    pub fn detach(&self, id: ConnectionId) -> Option<Entry> {
        remove(&mut self.lock(), id)
    }

    /// Calls `f` with each connection of `user`, under the lock: `f` must not block.
    pub fn for_each_connection(&self, user: &UserId, mut f: impl FnMut(ConnectionId, &Entry)) {
        let inner = self.lock();
        if let Some(ids) = inner.users.get(user) {
            for id in ids {
                if let Some(entry) = inner.connections.get(id) {
                    f(*id, entry);
                }
            }
        }
    }

    /// Calls `f` with each connection of each user in `members` except those in `except`
    /// (sorted),
    /// under the lock: `f` must not block. Walks whichever is smaller, the members or the
    /// users online, so a 100,000-member group with few members online costs little.
    pub fn for_each_member_connection(
        &self,
        members: &Members,
        except: &[UserId],
        mut f: impl FnMut(ConnectionId, &Entry),
    ) {
        let inner = self.lock();
        let mut visit = |user: &UserId, ids: &Vec<ConnectionId>| {
            if except.binary_search(user).is_ok() {
                return;
            }
            for id in ids {
                if let Some(entry) = inner.connections.get(id) {
                    f(*id, entry);
                }
            }
        };
        if members.len() <= inner.users.len() {
            for user in members.keys() {
                if let Some(ids) = inner.users.get(user) {
                    visit(user, ids);
                }
            }
        } else {
            for (user, ids) in &inner.users {
                if members.contains_key(user) {
                    visit(user, ids);
                }
            }
        }
    }

    /// The connections of `user`, as `(id, device, platform)`.
    pub fn connections_of(&self, user: &UserId) -> Vec<(ConnectionId, DeviceId, Platform)> {
        let mut out = Vec::new();
        self.for_each_connection(user, |id, e| out.push((id, e.device.clone(), e.platform)));
        out
    }

    /// The entry of a logged-in connection.
    pub fn entry(&self, id: ConnectionId) -> Option<Entry> {
        self.lock().connections.get(&id).cloned()
    }

    /// The outboxes of `user`'s connections that a login of `device` on `platform` replaces
    /// under `policy` (made on another node, as `by`), left registered: each closes when told.
    pub fn replaced_by(
        &self,
        user: &UserId,
        device: &DeviceId,
        platform: Platform,
        policy: KickPolicy,
        by: ConnectionId,
    ) -> Vec<Outbox> {
        let mut out = Vec::new();
        self.for_each_connection(user, |id, e| {
            if id != by && replaces(e, device, platform, policy) {
                out.push(e.outbox.clone());
            }
        });
        out
    }

    /// Every logged-in connection as presence shows it.
    pub fn devices(&self) -> Vec<tern_core::presence::DevicePresence> {
        self.lock()
            .connections
            .iter()
            .map(|(id, e)| tern_core::presence::DevicePresence {
                user: e.user.clone(),
                connection: *id,
                device: e.device.clone(),
                platform: e.platform,
            })
            .collect()
    }

    /// Every logged-in connection's outbox, for broadcasts such as shutdown.
    pub fn all_outboxes(&self) -> Vec<Outbox> {
        self.lock()
            .connections
            .values()
            .map(|e| e.outbox.clone())
            .collect()
    }

    /// Logged-in connections.
    pub fn connection_count(&self) -> usize {
        self.lock().connections.len()
    }

    /// Users with at least one logged-in connection.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    /// Panics if the two indexes disagree. Tests call it after every operation.
    pub fn check_invariants(&self) {
        let inner = self.lock();
        let mut seen = 0;
        for (user, ids) in &inner.users {
            assert!(!ids.is_empty(), "user {user} is listed with no connection");
            for id in ids {
                let entry = inner
                    .connections
                    .get(id)
                    .unwrap_or_else(|| panic!("user {user} lists {id:?}, which is not registered"));
                assert_eq!(&entry.user, user, "{id:?} is listed under the wrong user");
                seen += 1;
            }
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                ids.len(),
                "user {user} lists a connection twice"
            );
        }
        assert_eq!(
            seen,
            inner.connections.len(),
            "a connection is not listed under its user"
        );
    }
}

fn remove(inner: &mut Inner, id: ConnectionId) -> Option<Entry> {
    let entry = inner.connections.remove(&id)?;
    if let Some(ids) = inner.users.get_mut(&entry.user) {
        ids.retain(|c| *c != id);
        if ids.is_empty() {
            inner.users.remove(&entry.user);
        }
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_conn(n: u64) -> tern_core::ConnectionId {
        tern_core::ConnectionId::new(tern_core::NodeId::new(0).unwrap(), n)
    }
    use crate::outbox::outbox;
    use proptest::prelude::*;

    fn entry(user: &str, device: &str, platform: Platform) -> Entry {
        Entry {
            user: UserId::parse(user).unwrap(),
            device: DeviceId::parse(device).unwrap(),
            platform,
            encoding: Encoding::Protobuf,
            outbox: outbox(4).0,
        }
    }

    #[test]
    fn a_login_on_the_same_platform_replaces_the_old_connection() {
        let r = Registry::new();
        assert!(
            r.attach(
                test_conn(1),
                entry("a", "phone1", Platform::Ios),
                KickPolicy::OnePerPlatform
            )
            .is_empty()
        );
        assert!(
            r.attach(
                test_conn(2),
                entry("a", "pc", Platform::Desktop),
                KickPolicy::OnePerPlatform
            )
            .is_empty()
        );
        let kicked = r.attach(
            test_conn(3),
            entry("a", "phone2", Platform::Ios),
            KickPolicy::OnePerPlatform,
        );
        assert_eq!(
            kicked.iter().map(|k| k.0).collect::<Vec<_>>(),
            vec![test_conn(1)]
        );
        r.check_invariants();
        let ids: Vec<_> = r
            .connections_of(&UserId::parse("a").unwrap())
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(ids, vec![test_conn(2), test_conn(3)]);
        // The kicked connection's own detach at close is harmless.
        assert!(r.detach(test_conn(1)).is_none());
        r.check_invariants();
    }

    /// Connections that state no platform cannot be classified, and each browser tab is a
    /// device of its own: either is replaced only by a login of its own device.
    #[test]
    fn unclassified_and_web_connections_replace_only_their_own_device() {
        for platform in [Platform::Unspecified, Platform::Web] {
            let r = Registry::new();
            r.attach(
                test_conn(1),
                entry("a", "tab1", platform),
                KickPolicy::OnePerPlatform,
            );
            assert!(
                r.attach(
                    test_conn(2),
                    entry("a", "tab2", platform),
                    KickPolicy::OnePerPlatform
                )
                .is_empty(),
                "{platform:?}: a second device stays beside the first"
            );
            assert_eq!(r.connection_count(), 2);
            let kicked = r.attach(
                test_conn(3),
                entry("a", "tab1", platform),
                KickPolicy::OnePerPlatform,
            );
            assert_eq!(
                kicked.iter().map(|k| k.0).collect::<Vec<_>>(),
                vec![test_conn(1)],
                "{platform:?}: the same device logging in again replaces its old connection"
            );
            let ids: Vec<_> = r
                .connections_of(&UserId::parse("a").unwrap())
                .into_iter()
                .map(|c| c.0)
                .collect();
            assert_eq!(ids, vec![test_conn(2), test_conn(3)]);
            r.check_invariants();
        }
    }

    #[test]
    fn unlimited_keeps_every_platform_connection_but_not_two_of_one_device() {
        let r = Registry::new();
        r.attach(
            test_conn(1),
            entry("a", "p1", Platform::Ios),
            KickPolicy::Unlimited,
        );
        assert!(
            r.attach(
                test_conn(2),
                entry("a", "p2", Platform::Ios),
                KickPolicy::Unlimited
            )
            .is_empty()
        );
        let kicked = r.attach(
            test_conn(3),
            entry("a", "p1", Platform::Ios),
            KickPolicy::Unlimited,
        );
        assert_eq!(kicked.len(), 1);
        assert_eq!(kicked[0].0, test_conn(1));
        assert_eq!(r.connection_count(), 2);
        r.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Attach(u64, u8, u8, u8),
        Detach(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..12, 0u8..3, 0u8..4, 0u8..3).prop_map(|(c, u, d, p)| Op::Attach(c, u, d, p)),
            (0u64..12).prop_map(Op::Detach),
        ]
    }

    proptest! {
        #[test]
        fn the_indexes_agree_after_any_sequence_of_operations(ops in proptest::collection::vec(op(), 1..60), unlimited in any::<bool>()) {
            let policy = if unlimited { KickPolicy::Unlimited } else { KickPolicy::OnePerPlatform };
            let platforms = [Platform::Ios, Platform::Android, Platform::Web];
            let r = Registry::new();
            // A model: connection → (user, device, platform).
            let mut model: HashMap<u64, (u8, u8, u8)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Attach(c, u, d, p) => {
                        let kicked = r.attach(test_conn(c), entry(&format!("u{u}"), &format!("d{d}"), platforms[p as usize]), policy);
                        let expect: Vec<u64> = model
                            .iter()
                            // Platform 2 is the web, where only the same device is replaced.
                            .filter(|(id, (mu, md, mp))| **id != c && *mu == u && (*md == d || (!unlimited && *mp == p && p != 2)))
                            .map(|(id, _)| *id)
                            .collect();
                        let mut got: Vec<u64> = kicked.iter().map(|k| k.0.local()).collect();
                        got.sort_unstable();
                        let mut expect = expect;
                        expect.sort_unstable();
                        prop_assert_eq!(&got, &expect);
                        for id in expect { model.remove(&id); }
                        model.insert(c, (u, d, p));
                    }
                    Op::Detach(c) => {
                        prop_assert_eq!(r.detach(test_conn(c)).is_some(), model.remove(&c).is_some());
                    }
                }
                r.check_invariants();
                prop_assert_eq!(r.connection_count(), model.len());
            }
        }
    }
}
