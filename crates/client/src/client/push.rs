//! Offline push: this device's push token, and whether its app is in the background.

use super::*;

impl Client {
    /// Registers this device's push token (replacing its earlier one): `provider` is `apns`,
    /// `fcm`, `webpush` (with the subscription's keys in `request`) or `webhook`.
    pub async fn register_push(
        &self,
        request: pb::PushRegisterRequest,
    ) -> Result<pb::PushRegisterResponse, ClientError> {
        self.request(request).await
    }

    /// Removes this device's push registration; whether it had one. An app logging its user
    /// out calls it before [`Client::logout`].
    pub async fn unregister_push(&self) -> Result<bool, ClientError> {
        Ok(self.request(pb::PushUnregisterRequest {}).await?.removed)
    }

    /// Tells the server the app went to the background (or came back), so that while it stays
    /// connected in the background its messages also arrive as notifications. Kept across
    /// reconnects: a new connection is told again.
    pub async fn set_background(&self, background: bool) -> Result<(), ClientError> {
        self.shared
            .background
            .store(background, std::sync::atomic::Ordering::SeqCst);
        self.request(pb::PushAppStateRequest { background }).await?;
        Ok(())
    }
}
