//! Admin API keys: what an app builder's backend authenticates with on the HTTP API. A key is
//! shown once, when it is made; the store keeps only its SHA-256 (a key carries 192 random
//! bits, so a slow hash adds nothing) and a public id for lists and revocation.

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::{
    Clock, ServiceError,
    store::{AdminKeyRecord, AdminKeyStore},
};

/// What every key starts with, so that one pasted in the wrong place is recognisable.
pub const KEY_PREFIX: &str = "tern_";

/// The longest key name.
pub const MAX_NAME_LEN: usize = 64;

/// Makes, checks, lists and revokes admin keys.
#[derive(Debug, Clone)]
pub struct AdminKeys {
    store: Arc<dyn AdminKeyStore>,
    clock: Arc<dyn Clock>,
}

/// The SHA-256 of a key, hex: what the store looks it up by.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl AdminKeys {
    /// Keys in `store`.
    pub fn new(store: Arc<dyn AdminKeyStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Makes a key called `name`; returns its record and the key itself, which nothing keeps.
    pub async fn create(&self, name: &str) -> Result<(AdminKeyRecord, String), ServiceError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(ServiceError::InvalidArgument(format!(
                "a key name is 1 to {MAX_NAME_LEN} printable characters"
            )));
        }
        for _ in 0..4 {
            let id = hex::encode(rand::random::<[u8; 4]>());
            let secret =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
            let key = format!("{KEY_PREFIX}{id}_{secret}");
            let record = AdminKeyRecord {
                id,
                name: name.to_owned(),
                hash: key_hash(&key),
                created_ms: self.clock.now_ms(),
                revoked_ms: None,
            };
            if self.store.create_admin_key(&record).await? {
                return Ok((record, key));
            }
            // The random id was taken: draw again.
        }
        Err(ServiceError::Internal(
            "could not draw a free key id".into(),
        ))
    }

    /// The live key `key` is, or `AuthFailed` (unknown, malformed or revoked alike).
    pub async fn verify(&self, key: &str) -> Result<AdminKeyRecord, ServiceError> {
        if !key.starts_with(KEY_PREFIX) || key.len() > 128 {
            return Err(ServiceError::AuthFailed);
        }
        match self.store.admin_key_by_hash(&key_hash(key)).await? {
            Some(k) if k.revoked_ms.is_none() => Ok(k),
            _ => Err(ServiceError::AuthFailed),
        }
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<AdminKeyRecord>, ServiceError> {
        Ok(self.store.admin_keys().await?)
    }

    /// Revokes key `id`: it authenticates nothing from now on.
    pub async fn revoke(&self, id: &str) -> Result<(), ServiceError> {
        if self.store.revoke_admin_key(id, self.clock.now_ms()).await? {
            Ok(())
        } else {
            Err(ServiceError::InvalidArgument(format!(
                "no live key with id {id:?}"
            )))
        }
    }
}
