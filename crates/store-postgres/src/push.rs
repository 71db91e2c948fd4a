//! Devices' push registrations.

use async_trait::async_trait;
use tern_core::{
    DeviceId, StoreError, UserId,
    push::{Provider, PushRegistration, PushStore},
};
use tokio_postgres::Row;

use crate::{
    PgStore, db_err,
    rows::{exec, rows},
};

const COLUMNS: &str =
    "user_id, device_id, provider, token, p256dh, auth, private, updated_ms, background_connection";

fn registration_of(r: &Row) -> Result<PushRegistration, StoreError> {
    let provider: String = r.get(2);
    Ok(PushRegistration {
        user: r.get(0),
        device: r.get(1),
        provider: Provider::parse(&provider)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown push provider {provider:?}")))?,
        token: r.get(3),
        p256dh: r.get(4),
        auth: r.get(5),
        private: r.get(6),
        updated_ms: r.get(7),
        background_connection: r.get::<_, i64>(8) as u64,
    })
}

#[async_trait]
impl PushStore for PgStore {
    async fn put_push(&self, r: &PushRegistration) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        exec(
            &tx,
            "DELETE FROM push_devices WHERE provider = $1 AND token = $2
               AND NOT (user_id = $3 AND device_id = $4)",
            &[&r.provider.as_str(), &r.token, &r.user, &r.device],
        )
        .await?;
        exec(
            &tx,
            &format!(
                "INSERT INTO push_devices ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET
                   provider = EXCLUDED.provider, token = EXCLUDED.token,
                   p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
                   private = EXCLUDED.private, updated_ms = EXCLUDED.updated_ms,
                   background_connection = EXCLUDED.background_connection"
            ),
            &[
                &r.user,
                &r.device,
                &r.provider.as_str(),
                &r.token,
                &r.p256dh,
                &r.auth,
                &r.private,
                &r.updated_ms,
                &(r.background_connection as i64),
            ],
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn delete_push(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM push_devices WHERE user_id = $1 AND device_id = $2",
            &[&user.as_str(), &device.as_str()],
        )
        .await?;
        Ok(n == 1)
    }

    async fn pushes_of(&self, users: Vec<UserId>) -> Result<Vec<PushRegistration>, StoreError> {
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let c = self.client().await?;
        rows(
            &c,
            &format!(
                "SELECT {COLUMNS} FROM push_devices WHERE user_id = ANY($1)
                 ORDER BY user_id COLLATE \"C\", device_id COLLATE \"C\""
            ),
            &[&users],
        )
        .await?
        .iter()
        .map(registration_of)
        .collect()
    }

    async fn set_push_background(
        &self,
        user: &UserId,
        device: &DeviceId,
        connection: u64,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE push_devices SET background_connection = $3
             WHERE user_id = $1 AND device_id = $2",
            &[&user.as_str(), &device.as_str(), &(connection as i64)],
        )
        .await?;
        Ok(n == 1)
    }

    async fn clear_push_background(&self, node: u32) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE push_devices SET background_connection = 0
             WHERE background_connection <> 0 AND (background_connection >> 40) = $1",
            &[&i64::from(node)],
        )
        .await?;
        Ok(())
    }

    async fn forget_push_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        token: &str,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM push_devices WHERE user_id = $1 AND device_id = $2 AND token = $3",
            &[&user.as_str(), &device.as_str(), &token],
        )
        .await?;
        Ok(n == 1)
    }
}
