//! Devices' push registrations, in the main database.

use async_trait::async_trait;
use rusqlite::{Row, params};
use tern_core::{
    DeviceId, StoreError, UserId,
    push::{Provider, PushRegistration, PushStore},
};

use super::{SqliteStore, rows::store_err};

const COLUMNS: &str =
    "user_id, device_id, provider, token, p256dh, auth, private, updated_ms, background_connection";

fn registration_of(r: &Row<'_>) -> rusqlite::Result<PushRegistration> {
    let provider: String = r.get(2)?;
    Ok(PushRegistration {
        user: r.get(0)?,
        device: r.get(1)?,
        provider: Provider::parse(&provider).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown push provider {provider:?}").into(),
            )
        })?,
        token: r.get(3)?,
        p256dh: r.get(4)?,
        auth: r.get(5)?,
        private: r.get(6)?,
        updated_ms: r.get(7)?,
        background_connection: r.get::<_, i64>(8)? as u64,
    })
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn put_push(&self, registration: &PushRegistration) -> Result<(), StoreError> {
        let r = registration.clone();
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "DELETE FROM push_devices WHERE provider = ?1 AND token = ?2
                       AND NOT (user_id = ?3 AND device_id = ?4)",
                )?
                .execute(params![r.provider.as_str(), r.token, r.user, r.device])?;
            b.conn
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO push_devices ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))?
                .execute(params![
                    r.user,
                    r.device,
                    r.provider.as_str(),
                    r.token,
                    r.p256dh,
                    r.auth,
                    r.private,
                    r.updated_ms,
                    r.background_connection as i64
                ])?;
            Ok(())
        })
        .await
    }

    async fn delete_push(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        let (user, device) = (user.to_string(), device.to_string());
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached("DELETE FROM push_devices WHERE user_id = ?1 AND device_id = ?2")?
                .execute(params![user, device])?;
            Ok(n == 1)
        })
        .await
    }

    async fn pushes_of(&self, users: Vec<UserId>) -> Result<Vec<PushRegistration>, StoreError> {
        let mut users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        users.sort_unstable();
        users.dedup();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM push_devices WHERE user_id = ?1 ORDER BY device_id"
                ))
                .map_err(store_err)?;
            let mut out = Vec::new();
            for u in &users {
                for r in stmt
                    .query_map([u.as_str()], registration_of)
                    .map_err(store_err)?
                {
                    out.push(r.map_err(store_err)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_push_background(
        &self,
        user: &UserId,
        device: &DeviceId,
        connection: u64,
    ) -> Result<bool, StoreError> {
        let (user, device) = (user.to_string(), device.to_string());
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached(
                    "UPDATE push_devices SET background_connection = ?3
                     WHERE user_id = ?1 AND device_id = ?2",
                )?
                .execute(params![user, device, connection as i64])?;
            Ok(n == 1)
        })
        .await
    }

    async fn clear_push_background(&self, node: u32) -> Result<(), StoreError> {
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "UPDATE push_devices SET background_connection = 0
                     WHERE background_connection <> 0 AND (background_connection >> 40) = ?1",
                )?
                .execute([i64::from(node)])?;
            Ok(())
        })
        .await
    }

    async fn forget_push_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        token: &str,
    ) -> Result<bool, StoreError> {
        let (user, device, token) = (user.to_string(), device.to_string(), token.to_owned());
        self.write(move |b| {
            let n = b
                .conn
                .prepare_cached(
                    "DELETE FROM push_devices WHERE user_id = ?1 AND device_id = ?2 AND token = ?3",
                )?
                .execute(params![user, device, token])?;
            Ok(n == 1)
        })
        .await
    }
}
