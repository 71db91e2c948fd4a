//! Accounts: registration with argon2id password hashes, login by password or token, logout,
//! and what an administrator does to accounts (read, disable and enable, log devices out).

use std::{net::IpAddr, sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    Clock, ServiceError,
    ids::{DeviceId, Platform, UserId},
    store::{AccountStore, TokenRecord},
    throttle::{Throttle, ThrottleConfig, Verdict},
};

/// Password length bounds, in bytes.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=256;

/// What an account made without a password stores in place of a hash: no password verifies
/// against it, so such a user logs in only with tokens its app's backend hands out.
pub const NO_PASSWORD: &str = "!no-password";

/// Settings of the account service.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Limits on failed logins and registrations.
    pub throttle: ThrottleConfig,
    /// How long a token stays valid after it is issued.
    pub token_ttl: Duration,
    /// Argon2id memory cost in KiB (OWASP's minimum recommendation is 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            throttle: ThrottleConfig::default(),
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
        }
    }
}

/// How a login proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The account's password.
    Password(String),
    /// A token from an earlier login of the same device.
    Token(String),
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The authenticated user.
    pub user: UserId,
    /// The device that logged in.
    pub device: DeviceId,
    /// Its platform.
    pub platform: Platform,
    /// The token to use next time (the same one for token logins).
    pub token: String,
    /// SHA-256 of the token, kept by the connection so that logout can revoke it.
    pub token_hash: String,
    /// When the token expires.
    pub expires_ms: i64,
}

/// Registration, login and logout.
#[derive(Debug, Clone)]
pub struct AccountService {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
    config: AccountConfig,
    argon2: Argon2<'static>,
    /// A hash that no password matches, verified when the user is unknown so that the response
    /// time does not reveal whether a user id exists.
    decoy_hash: Arc<str>,
    /// Bounds concurrent hashing to the number of cores: hashing is CPU-bound, so more at once
    /// only adds blocking threads and their memory during a login storm.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Failed logins and registrations counted per user and per source address.
    throttle: Arc<Throttle>,
}

impl AccountService {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn AccountStore>,
        clock: Arc<dyn Clock>,
        config: AccountConfig,
    ) -> Result<Self, ServiceError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| ServiceError::InvalidArgument(format!("argon2 parameters: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let decoy_hash = argon2
            .hash_password(b"decoy password that is never accepted", &salt)
            .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            store,
            clock,
            argon2,
            decoy_hash: Arc::from(decoy_hash),
            hashing: Arc::new(tokio::sync::Semaphore::new(cores)),
            throttle: Arc::new(Throttle::new(config.throttle)),
            config,
        })
    }

    /// Creates an account for a client at `source`.
    pub async fn register(
        &self,
        user: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<UserId, ServiceError> {
        // Every attempt counts, so that a source cannot probe for taken ids without limit.
        if let Verdict::Refuse(retry_after) = self.throttle.register(source, self.clock.now_ms()) {
            return Err(ServiceError::RateLimited {
                what: "registrations from this address",
                retry_after,
            });
        }
        let user = UserId::parse(user)?;
        if !PASSWORD_LEN.contains(&password.len()) {
            return Err(ServiceError::InvalidPassword);
        }
        // Hashing is the expensive part; skip it for ids that are plainly taken. The insert below
        // still decides races.
        if self.store.password_hash(&user).await?.is_some() {
            return Err(ServiceError::UserExists);
        }
        let hash = self.hash_password(password.to_owned()).await?;
        if self
            .store
            .create_user(&user, &hash, self.clock.now_ms())
            .await?
        {
            Ok(user)
        } else {
            Err(ServiceError::UserExists)
        }
    }

    /// Authenticates a device and issues (or re-confirms) its token.
    pub async fn login(
        &self,
        user: &str,
        credential: Credential,
        device: &str,
        platform: Platform,
        source: IpAddr,
    ) -> Result<Login, ServiceError> {
        let refused = |retry_after| ServiceError::RateLimited {
            what: "failed logins",
            retry_after,
        };
        let now = self.clock.now_ms();
        let Ok(user) = UserId::parse(user) else {
            self.throttle.token_failed(source, now);
            return Err(ServiceError::AuthFailed);
        };
        let device = DeviceId::parse(device)?;
        match credential {
            Credential::Password(password) => {
                match self.throttle.before_password(&user, source, now) {
                    Verdict::Refuse(after) => return Err(refused(after)),
                    // Each failure past the free ones makes the next answer wait longer.
                    Verdict::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
                    Verdict::Proceed(_) => {}
                }
                let stored = self
                    .store
                    .password_hash(&user)
                    .await?
                    .filter(|h| h != NO_PASSWORD);
                let known = stored.is_some();
                let hash = stored.unwrap_or_else(|| self.decoy_hash.to_string());
                let ok = self.verify_password(password, hash).await?;
                if !(ok && known) {
                    self.throttle
                        .password_failed(&user, source, self.clock.now_ms());
                    return Err(ServiceError::AuthFailed);
                }
                self.throttle.password_succeeded(&user);
                // Said only to someone who knows the password.
                self.refuse_disabled(&user).await?;
                let token = new_token();
                let record = TokenRecord {
                    hash: token_hash(&token),
                    user: user.clone(),
                    device: device.clone(),
                    platform,
                    issued_ms: self.clock.now_ms(),
                    expires_ms: self.clock.now_ms() + self.config.token_ttl.as_millis() as i64,
                };
                self.store.put_token(&record).await?;
                Ok(Login {
                    user,
                    device,
                    platform,
                    token,
                    token_hash: record.hash,
                    expires_ms: record.expires_ms,
                })
            }
            Credential::Token(token) => {
                // A device holding a token is not held back by failures of the password.
                if let Verdict::Refuse(after) = self.throttle.before_token(source, now) {
                    return Err(refused(after));
                }
                let hash = token_hash(&token);
                let record = self.store.find_token(&hash).await?;
                let valid = record.filter(|r| {
                    r.user == user && r.device == device && r.expires_ms > self.clock.now_ms()
                });
                let Some(record) = valid else {
                    self.throttle.token_failed(source, self.clock.now_ms());
                    return Err(ServiceError::TokenInvalid);
                };
                self.refuse_disabled(&user).await?;
                Ok(Login {
                    user,
                    device,
                    platform,
                    token,
                    token_hash: hash,
                    expires_ms: record.expires_ms,
                })
            }
        }
    }

    /// The user and device a live token belongs to, for a front door that authenticates each
    /// request with a token rather than a session (the HTTP API). A live token is taken whatever
    /// its address did (tokens carry 256 bits: no failure count brings a guess closer, and many
    /// users may share one address behind a proxy); wrong ones count against `source` as failed
    /// token logins do, and are refused with `RATE_LIMITED` past the limit.
    pub async fn authenticate(
        &self,
        token: &str,
        source: IpAddr,
    ) -> Result<(UserId, DeviceId), ServiceError> {
        let record = self
            .store
            .find_token(&token_hash(token))
            .await?
            .filter(|r| r.expires_ms > self.clock.now_ms());
        let Some(record) = record else {
            let now = self.clock.now_ms();
            if let Verdict::Refuse(retry_after) = self.throttle.before_token(source, now) {
                return Err(ServiceError::RateLimited {
                    what: "failed logins",
                    retry_after,
                });
            }
            self.throttle.token_failed(source, now);
            return Err(ServiceError::TokenInvalid);
        };
        self.refuse_disabled(&record.user).await?;
        Ok((record.user, record.device))
    }

    /// Makes an account for an app's backend (no throttle: the caller is trusted), with a
    /// password or without one (the user then logs in only with tokens from
    /// [`AccountService::issue_token`]).
    pub async fn create_user(
        &self,
        user: &str,
        password: Option<&str>,
    ) -> Result<UserId, ServiceError> {
        let user = UserId::parse(user)?;
        let hash = match password {
            Some(p) if !PASSWORD_LEN.contains(&p.len()) => {
                return Err(ServiceError::InvalidPassword);
            }
            Some(p) => {
                if self.store.password_hash(&user).await?.is_some() {
                    return Err(ServiceError::UserExists);
                }
                self.hash_password(p.to_owned()).await?
            }
            None => NO_PASSWORD.to_owned(),
        };
        if self
            .store
            .create_user(&user, &hash, self.clock.now_ms())
            .await?
        {
            Ok(user)
        } else {
            Err(ServiceError::UserExists)
        }
    }

    /// Issues a token for `user`'s `device` without a password (an app's backend vouches for
    /// the user): the device logs in with it as after a password login. The device's previous
    /// token stops working.
    pub async fn issue_token(
        &self,
        user: &str,
        device: &str,
        platform: Platform,
    ) -> Result<Login, ServiceError> {
        let user = UserId::parse(user)?;
        let device = DeviceId::parse(device)?;
        match self.store.user_record(&user).await? {
            None => return Err(ServiceError::UnknownUser(user)),
            Some(r) if r.disabled_ms.is_some() => return Err(ServiceError::UserDisabled),
            Some(_) => {}
        }
        let token = new_token();
        let now = self.clock.now_ms();
        let record = TokenRecord {
            hash: token_hash(&token),
            user: user.clone(),
            device: device.clone(),
            platform,
            issued_ms: now,
            expires_ms: now + self.config.token_ttl.as_millis() as i64,
        };
        self.store.put_token(&record).await?;
        Ok(Login {
            user,
            device,
            platform,
            token,
            token_hash: record.hash,
            expires_ms: record.expires_ms,
        })
    }

    /// Refuses a login of a disabled account.
    async fn refuse_disabled(&self, user: &UserId) -> Result<(), ServiceError> {
        match self.store.user_record(user).await? {
            Some(r) if r.disabled_ms.is_some() => Err(ServiceError::UserDisabled),
            _ => Ok(()),
        }
    }

    /// Revokes the token with this hash.
    pub async fn logout(&self, token_hash: &str) -> Result<(), ServiceError> {
        Ok(self.store.revoke_token(token_hash).await?)
    }

    async fn hash_password(&self, password: String) -> Result<String, ServiceError> {
        self.run_hashing(move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
        })
        .await
    }

    async fn verify_password(&self, password: String, hash: String) -> Result<bool, ServiceError> {
        self.run_hashing(move |argon2| {
            let parsed = PasswordHash::new(&hash).map_err(|e| {
                ServiceError::Store(crate::StoreError::Corrupt(format!("password hash: {e}")))
            })?;
            // Verification uses the parameters recorded in the hash, so old hashes keep working
            // after the configured cost changes.
            Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
    }

    /// Runs argon2 work off the async workers (it is deliberately slow, and must never stall
    /// delivery), at most one job per core at a time.
    async fn run_hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce(Argon2<'static>) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || work(argon2))
            .await
            .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))?
    }
}

/// An account with its profile, as an administrator reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    /// The account.
    pub record: crate::store::UserRecord,
    /// Its public profile.
    pub profile: crate::social::Profile,
}

/// What an app's backend does to accounts: read them, disable and enable them, and log their
/// devices out. Disconnecting goes through the bus, so devices on every node are reached.
#[derive(Debug, Clone)]
pub struct UserAdmin {
    store: Arc<dyn AccountStore>,
    social: Arc<dyn crate::social::SocialStore>,
    bus: Arc<dyn crate::bus::Bus>,
    clock: Arc<dyn Clock>,
}

impl UserAdmin {
    /// Over these stores and this bus.
    pub fn new(
        store: Arc<dyn AccountStore>,
        social: Arc<dyn crate::social::SocialStore>,
        bus: Arc<dyn crate::bus::Bus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            social,
            bus,
            clock,
        }
    }

    async fn record(&self, user: &UserId) -> Result<crate::store::UserRecord, ServiceError> {
        self.store
            .user_record(user)
            .await?
            .ok_or_else(|| ServiceError::UnknownUser(user.clone()))
    }

    /// The account `user` and its profile.
    pub async fn get(&self, user: &str) -> Result<UserInfo, ServiceError> {
        let user = UserId::parse(user)?;
        let record = self.record(&user).await?;
        let profile = self
            .social
            .profiles(vec![user.clone()])
            .await?
            .pop()
            .unwrap_or_else(|| crate::social::Profile::empty(user));
        Ok(UserInfo { record, profile })
    }

    /// Disables `user`: its logins are refused from now on and its devices are disconnected
    /// wherever they are. Disabling a disabled account changes nothing.
    pub async fn disable(&self, user: &str) -> Result<(), ServiceError> {
        let user = UserId::parse(user)?;
        if self.record(&user).await?.disabled_ms.is_none() {
            self.store
                .set_disabled(&user, Some(self.clock.now_ms()))
                .await?;
        }
        // Stored first: a device that reconnects at once is refused.
        self.bus.kick(&user, None, crate::sync::KickCause::Disabled);
        Ok(())
    }

    /// Lets `user` log in again.
    pub async fn enable(&self, user: &str) -> Result<(), ServiceError> {
        let user = UserId::parse(user)?;
        if !self.store.set_disabled(&user, None).await? {
            return Err(ServiceError::UnknownUser(user));
        }
        Ok(())
    }

    /// Revokes the tokens of `user`'s `device` (every device: `None`) and disconnects it: it
    /// must log in again. How many tokens were revoked.
    pub async fn revoke_tokens(
        &self,
        user: &str,
        device: Option<&str>,
    ) -> Result<u64, ServiceError> {
        let user = UserId::parse(user)?;
        let device = device.map(DeviceId::parse).transpose()?;
        self.record(&user).await?;
        let revoked = self
            .store
            .revoke_device_tokens(&user, device.as_ref())
            .await?;
        self.bus
            .kick(&user, device.as_ref(), crate::sync::KickCause::LoggedOut);
        Ok(revoked)
    }
}

/// A fresh token: 256 random bits, URL-safe base64.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token. Tokens carry 256 bits of entropy, so a fast hash suffices:
/// a leaked table cannot be brute-forced back into tokens.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
