//! Typing: an ephemeral signal to the peer's online devices, never stored, rate-limited per
//! sender.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use lru::LruCache;

use crate::{
    Clock, ServiceError,
    bus::Bus,
    ids::{ConversationId, UserId},
    social::SocialStore,
    store::AccountStore,
};

/// How often a user may signal typing.
#[derive(Debug, Clone, Copy)]
pub struct TypingConfig {
    /// Signals a user may send at once.
    pub burst: u32,
    /// Signals regained per second.
    pub per_second: u32,
    /// Senders whose budget is remembered; the least recent are forgotten (and start full).
    pub max_senders: usize,
}

impl Default for TypingConfig {
    fn default() -> Self {
        // Clients signal every few seconds while the user types; a burst covers switching
        // between conversations.
        Self {
            burst: 10,
            per_second: 2,
            max_senders: 100_000,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Relays typing signals.
#[derive(Debug)]
pub struct TypingService {
    accounts: Arc<dyn AccountStore>,
    social: Arc<dyn SocialStore>,
    bus: Arc<dyn Bus>,
    clock: Arc<dyn Clock>,
    config: TypingConfig,
    /// Held only for in-memory work.
    buckets: Mutex<LruCache<UserId, Bucket>>,
}

impl TypingService {
    /// The service; `accounts` tells whether the peer exists, `social` whether it takes
    /// anything from the sender.
    pub fn new(
        accounts: Arc<dyn AccountStore>,
        social: Arc<dyn SocialStore>,
        bus: Arc<dyn Bus>,
        clock: Arc<dyn Clock>,
        config: TypingConfig,
    ) -> Self {
        let cap = NonZeroUsize::new(config.max_senders.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            accounts,
            social,
            bus,
            clock,
            config,
            buckets: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Takes one signal from `user`'s budget, or refuses.
    fn spend(&self, user: &UserId) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        let burst = f64::from(self.config.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.get_or_insert_mut(user.clone(), || Bucket {
            tokens: burst,
            at_ms: now,
        });
        let elapsed = (now - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * f64::from(self.config.per_second)).min(burst);
        b.at_ms = now;
        if b.tokens < 1.0 {
            // The time until the bucket holds a whole token again.
            let wait = (1.0 - b.tokens) / f64::from(self.config.per_second.max(1));
            return Err(ServiceError::RateLimited {
                what: "TYPING signals",
                retry_after: std::time::Duration::from_secs_f64(wait),
            });
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Tells `to`'s online devices that `from` is typing to them.
    pub async fn typing(&self, from: &UserId, to: &str) -> Result<(), ServiceError> {
        // An id that cannot parse cannot exist; it is not echoed back.
        let to = UserId::parse(to).map_err(|_| ServiceError::InvalidUserId)?;
        self.spend(from)?;
        if to == *from {
            // Nobody to tell: the user's own devices know what it types.
            return Ok(());
        }
        if self.accounts.password_hash(&to).await?.is_none() {
            return Err(ServiceError::UnknownUser(to));
        }
        // Whoever may not message the peer may not tell it they are typing either.
        if self.social.refuses(&to, from).await? {
            return Err(ServiceError::NotAccepted);
        }
        self.bus
            .typing(&to, from, &ConversationId::direct(from, &to));
        Ok(())
    }
}
