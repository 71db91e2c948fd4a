//! Limits on guessing and abuse: failed logins per user and per source address, and
//! registrations per source address.
//!
//! The rules are pure: every call takes the time, so tests state exactly what happens when.
//! Counts live in fixed windows per key, and the maps are bounded: past `max_keys`, expired
//! windows are dropped first, then the oldest, so a flood of addresses costs memory in
//! proportion to the bound, not to the flood.
//!
//! A password login by a user who failed `free_failures` times in the window waits before it is
//! answered, twice as long after each further failure (up to `max_delay`); after
//! `max_failures` it is refused with `RATE_LIMITED` until the window ends, without checking the
//! password. A token login is not held back by failures of the user's password: a device that
//! already holds a token keeps working while someone guesses at the password. Source addresses
//! count every failed login (password or token), and every registration attempt.

use std::{collections::HashMap, hash::Hash, net::IpAddr, sync::Mutex, time::Duration};

use crate::ids::UserId;

/// The limits. Every field is configurable; see [`ThrottleConfig::default`] for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// The window in which failed logins are counted.
    pub login_window: Duration,
    /// Failed password logins of one user answered without delay, per window.
    pub free_failures: u32,
    /// The delay after the first failure past the free ones; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failed password logins of one user per window; more are refused until the window ends
    /// (0: no limit).
    pub max_failures: u32,
    /// Failed logins from one source address per window; more are refused until it ends (0: no
    /// limit).
    pub max_failures_per_address: u32,
    /// The window in which registrations are counted.
    pub registration_window: Duration,
    /// Registration attempts from one source address per window (0: no limit).
    pub registrations_per_address: u32,
    /// Keys (users, addresses) remembered per map.
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            login_window: Duration::from_secs(15 * 60),
            free_failures: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_failures: 20,
            max_failures_per_address: 200,
            registration_window: Duration::from_secs(3600),
            registrations_per_address: 30,
            max_keys: 100_000,
        }
    }
}

/// What to do with a login or registration about to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead, after waiting this long (zero: at once).
    Proceed(Duration),
    /// Refuse with `RATE_LIMITED`; the same request may succeed after this long.
    Refuse(Duration),
}

/// A count within a fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started_ms: i64,
    count: u32,
}

/// Windows per key, bounded.
#[derive(Debug)]
struct Counters<K> {
    windows: HashMap<K, Window>,
    window_ms: i64,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            windows: HashMap::new(),
            window_ms: window.as_millis() as i64,
            max_keys: max_keys.max(1),
        }
    }

    /// The count of `key` in its current window, and when that window ends.
    fn get(&self, key: &K, now_ms: i64) -> (u32, i64) {
        match self.windows.get(key) {
            Some(w) if now_ms < w.started_ms + self.window_ms => {
                (w.count, w.started_ms + self.window_ms)
            }
            _ => (0, now_ms + self.window_ms),
        }
    }

    fn add(&mut self, key: &K, now_ms: i64) {
        let window_ms = self.window_ms;
        if !self.windows.contains_key(key) && self.windows.len() >= self.max_keys {
            self.windows
                .retain(|_, w| now_ms < w.started_ms + window_ms);
            if self.windows.len() >= self.max_keys
                && let Some(oldest) = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.started_ms)
                    .map(|(k, _)| k.clone())
            {
                self.windows.remove(&oldest);
            }
        }
        let w = self.windows.entry(key.clone()).or_insert(Window {
            started_ms: now_ms,
            count: 0,
        });
        if now_ms >= w.started_ms + window_ms {
            *w = Window {
                started_ms: now_ms,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
    }

    fn clear(&mut self, key: &K) {
        self.windows.remove(key);
    }
}

/// The state of the limits. Shared by every connection of the process.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    users: Mutex<Counters<UserId>>,
    addresses: Mutex<Counters<IpAddr>>,
    registrations: Mutex<Counters<IpAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `count` reached `limit`; a limit of 0 is no limit.
fn reached(count: u32, limit: u32) -> bool {
    limit > 0 && count >= limit
}

fn until(end_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis((end_ms - now_ms).max(1) as u64)
}

impl Throttle {
    /// Limits with `config`, nothing counted yet.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            users: Mutex::new(Counters::new(config.login_window, config.max_keys)),
            addresses: Mutex::new(Counters::new(config.login_window, config.max_keys)),
            registrations: Mutex::new(Counters::new(config.registration_window, config.max_keys)),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Before a password is checked for `user` from `address`.
    pub fn before_password(&self, user: &UserId, address: IpAddr, now_ms: i64) -> Verdict {
        if let Verdict::Refuse(after) = self.address_verdict(address, now_ms) {
            return Verdict::Refuse(after);
        }
        let (failures, ends_ms) = lock(&self.users).get(user, now_ms);
        if reached(failures, self.config.max_failures) {
            return Verdict::Refuse(until(ends_ms, now_ms));
        }
        Verdict::Proceed(self.delay_after(failures))
    }

    /// Before a token is checked from `address`: only the address's failures count.
    pub fn before_token(&self, address: IpAddr, now_ms: i64) -> Verdict {
        self.address_verdict(address, now_ms)
    }

    /// A wrong password for `user` (or an unknown user) from `address`.
    pub fn password_failed(&self, user: &UserId, address: IpAddr, now_ms: i64) {
        lock(&self.users).add(user, now_ms);
        lock(&self.addresses).add(&address, now_ms);
    }

    /// A token that did not authenticate, from `address`.
    pub fn token_failed(&self, address: IpAddr, now_ms: i64) {
        lock(&self.addresses).add(&address, now_ms);
    }

    /// The right password for `user`: its failures are forgiven.
    pub fn password_succeeded(&self, user: &UserId) {
        lock(&self.users).clear(user);
    }

    /// Before a registration from `address`; counts the attempt when it may proceed.
    pub fn register(&self, address: IpAddr, now_ms: i64) -> Verdict {
        let mut registrations = lock(&self.registrations);
        let (count, ends_ms) = registrations.get(&address, now_ms);
        if reached(count, self.config.registrations_per_address) {
            return Verdict::Refuse(until(ends_ms, now_ms));
        }
        registrations.add(&address, now_ms);
        Verdict::Proceed(Duration::ZERO)
    }

    fn address_verdict(&self, address: IpAddr, now_ms: i64) -> Verdict {
        let (failures, ends_ms) = lock(&self.addresses).get(&address, now_ms);
        if reached(failures, self.config.max_failures_per_address) {
            return Verdict::Refuse(until(ends_ms, now_ms));
        }
        Verdict::Proceed(Duration::ZERO)
    }

    /// How long a login waits after `failures` failures in the window.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(past) = failures.checked_sub(self.config.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(past.min(30)).unwrap_or(u32::MAX);
        self.config
            .first_delay
            .saturating_mul(factor)
            .min(self.config.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            login_window: Duration::from_secs(60),
            free_failures: 2,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_failures: 5,
            max_failures_per_address: 8,
            registration_window: Duration::from_secs(60),
            registrations_per_address: 3,
            max_keys: 4,
        }
    }

    #[test]
    fn password_failures_delay_then_refuse_until_the_window_ends() {
        let t = Throttle::new(config());
        let alice = user("alice");
        let mut delays = Vec::new();
        for i in 0..5 {
            match t.before_password(&alice, A, 1_000 + i) {
                Verdict::Proceed(d) => delays.push(d.as_millis()),
                v => panic!("attempt {i}: {v:?}"),
            }
            t.password_failed(&alice, A, 1_000 + i);
        }
        assert_eq!(
            delays,
            [0, 0, 100, 200, 350],
            "free, then doubling to the cap"
        );
        assert_eq!(
            t.before_password(&alice, A, 2_000),
            Verdict::Refuse(Duration::from_millis(59_000)),
            "refused for the rest of the window"
        );
        // From another address too: the lock is on the user.
        assert!(matches!(
            t.before_password(&alice, B, 2_000),
            Verdict::Refuse(_)
        ));
        // A token login is not held back by the password's failures.
        assert_eq!(t.before_token(A, 2_000), Verdict::Proceed(Duration::ZERO));
        // The window ends: free again.
        assert_eq!(
            t.before_password(&alice, A, 61_000),
            Verdict::Proceed(Duration::ZERO)
        );
        // Other users were never affected.
        assert_eq!(
            t.before_password(&user("bob"), A, 2_000),
            Verdict::Proceed(Duration::ZERO)
        );
    }

    #[test]
    fn a_right_password_forgives_the_users_failures() {
        let t = Throttle::new(config());
        let alice = user("alice");
        for i in 0..4 {
            t.password_failed(&alice, A, i);
        }
        assert_ne!(
            t.before_password(&alice, A, 10),
            Verdict::Proceed(Duration::ZERO)
        );
        t.password_succeeded(&alice);
        assert_eq!(
            t.before_password(&alice, A, 11),
            Verdict::Proceed(Duration::ZERO)
        );
    }

    #[test]
    fn an_address_failing_for_many_users_is_refused_for_all() {
        let t = Throttle::new(config());
        for i in 0..8 {
            t.password_failed(&user(&format!("u{i}")), A, i);
        }
        assert!(matches!(
            t.before_password(&user("fresh"), A, 10),
            Verdict::Refuse(_)
        ));
        assert!(matches!(t.before_token(A, 10), Verdict::Refuse(_)));
        assert_eq!(
            t.before_password(&user("fresh"), B, 10),
            Verdict::Proceed(Duration::ZERO),
            "other addresses are unaffected"
        );
    }

    #[test]
    fn token_failures_count_against_the_address() {
        let t = Throttle::new(config());
        for i in 0..8 {
            t.token_failed(A, i);
        }
        assert!(matches!(t.before_token(A, 10), Verdict::Refuse(_)));
    }

    #[test]
    fn registrations_per_address_are_counted_per_window() {
        let t = Throttle::new(config());
        for i in 0..3 {
            assert_eq!(t.register(A, i), Verdict::Proceed(Duration::ZERO));
        }
        assert_eq!(
            t.register(A, 1_000),
            Verdict::Refuse(Duration::from_millis(59_000))
        );
        assert_eq!(t.register(B, 1_000), Verdict::Proceed(Duration::ZERO));
        assert_eq!(t.register(A, 60_000), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn memory_stays_bounded_by_the_number_of_keys() {
        let t = Throttle::new(config());
        for i in 0..1000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(i));
            t.token_failed(address, i64::from(i));
            t.password_failed(&user(&format!("u{i}")), address, i64::from(i));
        }
        assert!(lock(&t.addresses).windows.len() <= 4);
        assert!(lock(&t.users).windows.len() <= 4);
    }
}
