//! Offline push: the push tokens devices register, which of them a committed message reaches,
//! and what each notification says.
//!
//! A message reaches a phone whose app is not connected only through the phone maker's push
//! service, so each device may register one token with its provider. When a message commits,
//! the backend queues it on the push lane of the durable outbox in the same transaction (see
//! [`crate::webhooks::Lane`]); a dispatcher later asks [`PushService::plan`] who should hear
//! of it: every recipient's registered devices that are not connected to any node, unless the
//! recipient muted the conversation or blocked the sender. The badge is the recipient's unread
//! count over every conversation it has not muted, read when the push is planned. Providers
//! (APNs, FCM, Web Push, a webhook) live with the dispatcher; this module only decides.

use std::{collections::HashSet, fmt, sync::Arc};

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ConnectionId, ConversationId, ConversationKind, DeviceId, GroupId, ServiceError, StoreError,
    UserId, content::Content, conversations::ConversationService, pb, social::SocialService,
    store::GroupStore,
};

/// Where a device's notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Apple Push Notification service: a device token.
    Apns,
    /// Firebase Cloud Messaging: a registration token.
    Fcm,
    /// Web Push (RFC 8030): a subscription's endpoint and keys.
    Webpush,
    /// The app's own push gateway (a phone maker's service behind it): any token it knows.
    Webhook,
}

impl Provider {
    /// Every provider, in a fixed order.
    pub const ALL: [Provider; 4] = [
        Provider::Apns,
        Provider::Fcm,
        Provider::Webpush,
        Provider::Webhook,
    ];

    /// The name clients and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
            Provider::Webpush => "webpush",
            Provider::Webhook => "webhook",
        }
    }

    /// The provider named `name`.
    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest token (a Web Push endpoint is a URL, the longest kind).
pub const MAX_TOKEN_LEN: usize = 2048;

/// One device's push registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRegistration {
    /// Whose device.
    pub user: String,
    /// The device.
    pub device: String,
    /// Its provider.
    pub provider: Provider,
    /// APNs: the device token, hex. FCM: the registration token. Web Push: the subscription's
    /// endpoint URL. Webhook: whatever the app's gateway knows the device by.
    pub token: String,
    /// Web Push: the subscription's P-256 public key, base64url; empty otherwise.
    pub p256dh: String,
    /// Web Push: the subscription's authentication secret, base64url; empty otherwise.
    pub auth: String,
    /// Notifications say only that a message came, not who sent what.
    pub private: bool,
    /// When it was registered (Unix ms).
    pub updated_ms: i64,
    /// The connection (its [`ConnectionId::get`]) over which the app said it went to the
    /// background, 0 when none: while that connection lasts the device is notified as if it
    /// were offline (when the policy says so). A new connection is in the foreground, so an
    /// app that was killed in the background is not left marked.
    pub background_connection: u64,
}

fn base64url(raw: &str) -> Option<Vec<u8>> {
    let raw = raw.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
}

impl PushRegistration {
    /// Checks what a client sent: a token of the provider's form and, for Web Push, keys of
    /// the right lengths, so that a malformed registration is refused when it is made rather
    /// than failing at every message.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let bad = |what: &str| Err(ServiceError::InvalidArgument(what.to_owned()));
        if self.token.is_empty()
            || self.token.len() > MAX_TOKEN_LEN
            || self
                .token
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return bad("a push token is 1 to 2048 characters without spaces");
        }
        match self.provider {
            Provider::Apns => {
                if !self.token.bytes().all(|b| b.is_ascii_hexdigit()) || self.token.len() > 200 {
                    return bad("an APNs device token is hex digits");
                }
            }
            Provider::Webpush => {
                let rest = self
                    .token
                    .strip_prefix("https://")
                    .or_else(|| self.token.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return bad("a Web Push token is the subscription's endpoint URL");
                }
                if base64url(&self.p256dh).is_none_or(|k| k.len() != 65 || k[0] != 4) {
                    return bad("p256dh must be the subscription's P-256 key, base64url");
                }
                if base64url(&self.auth).is_none_or(|a| a.len() != 16) {
                    return bad("auth must be the subscription's 16-byte secret, base64url");
                }
            }
            Provider::Fcm | Provider::Webhook => {}
        }
        if self.provider != Provider::Webpush && !(self.p256dh.is_empty() && self.auth.is_empty()) {
            return bad("p256dh and auth belong to Web Push registrations only");
        }
        Ok(())
    }

    /// The Web Push keys, decoded (checked at registration).
    pub fn web_keys(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((base64url(&self.p256dh)?, base64url(&self.auth)?))
    }
}

/// The push registrations, kept by the store.
#[async_trait]
pub trait PushStore: Send + Sync + fmt::Debug + 'static {
    /// Keeps `registration`, replacing whatever the same device registered before, and any
    /// other device's registration of the same provider and token (a phone that changed hands:
    /// the previous user must not be notified on it).
    async fn put_push(&self, registration: &PushRegistration) -> Result<(), StoreError>;

    /// Removes the device's registration; whether there was one.
    async fn delete_push(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError>;

    /// Every registration of each of `users`, ordered by user and device.
    async fn pushes_of(&self, users: Vec<UserId>) -> Result<Vec<PushRegistration>, StoreError>;

    /// Records that the device's app went to the background over `connection` (0: came back to
    /// the foreground); whether the device has a registration.
    async fn set_push_background(
        &self,
        user: &UserId,
        device: &DeviceId,
        connection: u64,
    ) -> Result<bool, StoreError>;

    /// Clears the background marks of connections of node `node` (a node starting again: its
    /// connection ids start over, and a new connection must not inherit an old mark).
    async fn clear_push_background(&self, node: u32) -> Result<(), StoreError>;

    /// Removes the device's registration if it still holds `token` (a provider said the token
    /// is no longer valid; a token the device registered since is kept); whether it did.
    async fn forget_push_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        token: &str,
    ) -> Result<bool, StoreError>;
}

/// Which devices are connected now, on any node.
pub trait OnlineDevices: Send + Sync + fmt::Debug + 'static {
    /// The devices of `user` connected to this node or, in a cluster, to any other, each with
    /// its connection.
    fn online_devices(&self, user: &UserId) -> Vec<(DeviceId, ConnectionId)>;
}

/// What one notification says, whatever the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The sender's name, or the group's; empty in a private notification.
    pub title: String,
    /// What was said, shortened; the configured text in a private notification.
    pub body: String,
    /// The recipient's unread count over the conversations it has not muted.
    pub badge: u64,
    /// The conversation: notifications of one conversation replace each other.
    pub conversation: String,
    /// The message.
    pub message_id: String,
    /// Its seq in the conversation.
    pub seq: u64,
    /// Its sender.
    pub sender: String,
}

impl Notification {
    /// A key of at most 32 URL-safe characters naming the conversation, for providers that
    /// limit their collapse keys (Web Push's `Topic`).
    pub fn collapse_key(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.conversation.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
    }

    /// The data a client receives beside the alert, to open the right conversation.
    pub fn data(&self) -> Value {
        serde_json::json!({
            "conversation_id": self.conversation,
            "message_id": self.message_id,
            "seq": self.seq.to_string(),
            "sender": self.sender,
        })
    }
}

/// One notification for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Where it goes.
    pub registration: PushRegistration,
    /// What it says.
    pub notification: Notification,
}

/// The longest text a notification carries, in characters.
pub const MAX_BODY_CHARS: usize = 200;

/// What a notification says of `content`, or `None` for content nobody is notified of (group
/// changes, notices, recalls and edits).
pub fn preview(content: &Content) -> Option<String> {
    let text = match content {
        Content::Text(t) => t.text.clone(),
        Content::Image(_) => "[Picture]".to_owned(),
        Content::File(f) if f.name.is_empty() => "[File]".to_owned(),
        Content::File(f) => format!("[File] {}", f.name),
        Content::Custom(_) => "[Message]".to_owned(),
        _ => return None,
    };
    let mut chars = text.chars();
    let mut cut: String = chars.by_ref().take(MAX_BODY_CHARS).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    Some(cut)
}

/// A committed message as the push lane carries it: the `message.created` event's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The message's id.
    pub message_id: String,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its seq there.
    pub seq: u64,
    /// Its sender.
    pub sender: UserId,
    /// What it says.
    pub content: Content,
}

impl Pushed {
    /// Reads a `message.created` event's body (`{"data": {…}}`, as webhooks receive it).
    pub fn from_event(body: &str) -> Result<Pushed, String> {
        #[derive(Deserialize)]
        struct Event {
            data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            message_id: String,
            conversation_id: String,
            seq: u64,
            sender: String,
            content: pb::Content,
        }
        let e: Event = serde_json::from_str(body).map_err(|e| format!("unreadable event: {e}"))?;
        let d = e.data;
        Ok(Pushed {
            message_id: d.message_id,
            conversation: ConversationId::parse(&d.conversation_id)
                .map_err(|e| e.to_string())?
                .0,
            seq: d.seq,
            sender: UserId::parse(&d.sender).map_err(|e| e.to_string())?,
            content: crate::wire::content_of(d.content).map_err(|e| e.to_string())?,
        })
    }
}

/// How notifications are made.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The providers this server can send through: registrations with any other are refused.
    pub providers: HashSet<Provider>,
    /// The body of a private notification.
    pub private_text: String,
    /// Whether a device connected with its app in the background is notified too (its app
    /// may not be shown what arrives; the phone's notification is what the user sees).
    pub notify_background: bool,
    /// Whether a Web Push endpoint may be `http://` (tests with a local push service). Off,
    /// endpoints are `https://` only, so a registration cannot aim the server at a plain
    /// service on its own network.
    pub webpush_allow_http: bool,
    /// How old a message may be, from its commit, and still be notified, in ms. A notification
    /// queued while push was off or the server was down for long says something the user has
    /// long had other ways to learn; sent late, it would only buzz the phone for old news.
    pub max_age_ms: i64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            providers: HashSet::new(),
            private_text: "You have a new message".to_owned(),
            notify_background: true,
            webpush_allow_http: false,
            max_age_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Whether something queued at `queued_ms` is older than `max_age_ms` at `now_ms`.
pub fn stale(queued_ms: i64, now_ms: i64, max_age_ms: i64) -> bool {
    now_ms.saturating_sub(queued_ms) > max_age_ms
}

/// How many group members are read at a time while planning a group message's pushes.
const MEMBER_PAGE: u32 = 500;

/// Registrations and the planning of notifications.
#[derive(Debug, Clone)]
pub struct PushService {
    store: Arc<dyn PushStore>,
    groups: Arc<dyn GroupStore>,
    social: SocialService,
    conversations: ConversationService,
    online: Arc<dyn OnlineDevices>,
    clock: Arc<dyn crate::Clock>,
    config: Arc<PushConfig>,
}

impl PushService {
    /// The service over its stores, the conversation and social services (for mutes, blocks,
    /// unread counts and names) and the view of connected devices.
    pub fn new(
        store: Arc<dyn PushStore>,
        groups: Arc<dyn GroupStore>,
        social: SocialService,
        conversations: ConversationService,
        online: Arc<dyn OnlineDevices>,
        clock: Arc<dyn crate::Clock>,
        config: PushConfig,
    ) -> Self {
        Self {
            store,
            groups,
            social,
            conversations,
            online,
            clock,
            config: Arc::new(config),
        }
    }

    /// Whether any provider is configured (otherwise nothing is queued for push).
    pub fn enabled(&self) -> bool {
        !self.config.providers.is_empty()
    }

    /// Registers `device`'s token, replacing its earlier one.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        provider: &str,
        token: &str,
        p256dh: &str,
        auth: &str,
        private: bool,
    ) -> Result<PushRegistration, ServiceError> {
        let provider = Provider::parse(provider).ok_or_else(|| {
            ServiceError::InvalidArgument(format!(
                "provider must be apns, fcm, webpush or webhook, not {provider:?}"
            ))
        })?;
        if !self.config.providers.contains(&provider) {
            return Err(ServiceError::InvalidArgument(format!(
                "this server does not send through {provider}"
            )));
        }
        let registration = PushRegistration {
            user: user.to_string(),
            device: device.to_string(),
            provider,
            token: token.to_owned(),
            p256dh: p256dh.to_owned(),
            auth: auth.to_owned(),
            private,
            updated_ms: self.clock.now_ms(),
            background_connection: 0,
        };
        registration.validate()?;
        if provider == Provider::Webpush
            && !self.config.webpush_allow_http
            && !registration.token.starts_with("https://")
        {
            return Err(ServiceError::InvalidArgument(
                "a Web Push endpoint must be https://".into(),
            ));
        }
        self.store.put_push(&registration).await?;
        Ok(registration)
    }

    /// Removes `device`'s registration; whether it had one.
    pub async fn unregister(&self, user: &UserId, device: &DeviceId) -> Result<bool, ServiceError> {
        Ok(self.store.delete_push(user, device).await?)
    }

    /// Removes every registration of `user` (an account disabled, every token revoked).
    pub async fn unregister_all(&self, user: &UserId) -> Result<(), ServiceError> {
        for r in self.store.pushes_of(vec![user.clone()]).await? {
            let device = DeviceId::parse(&r.device)?;
            self.store.delete_push(user, &device).await?;
        }
        Ok(())
    }

    /// Clears the background marks this node's earlier run left (see
    /// [`PushStore::clear_push_background`]).
    pub async fn node_started(&self, node: crate::NodeId) -> Result<(), ServiceError> {
        Ok(self.store.clear_push_background(node.get()).await?)
    }

    /// `user`'s registered devices.
    pub async fn devices(&self, user: &UserId) -> Result<Vec<PushRegistration>, ServiceError> {
        Ok(self.store.pushes_of(vec![user.clone()]).await?)
    }

    /// Whether `device` of `user` is connected now.
    pub fn is_online(&self, user: &UserId, device: &DeviceId) -> bool {
        self.online
            .online_devices(user)
            .iter()
            .any(|(d, _)| d == device)
    }

    /// Whether `registration`'s device is reached over its connection now, so that it needs
    /// no notification: connected, and not over the connection on which its app said it went
    /// to the background (when such devices are notified).
    pub fn reached_live(&self, registration: &PushRegistration) -> bool {
        let Ok(user) = UserId::parse(&registration.user) else {
            return false;
        };
        let online = self.online.online_devices(&user);
        self.live_among(&online, registration)
    }

    fn live_among(&self, online: &[(DeviceId, ConnectionId)], r: &PushRegistration) -> bool {
        online.iter().any(|(d, c)| {
            d.as_str() == r.device
                && !(self.config.notify_background && r.background_connection == c.get())
        })
    }

    /// Records whether the app of `device` is in the background, over `connection`; a device
    /// without a registration is refused (there is nothing to notify).
    pub async fn set_background(
        &self,
        user: &UserId,
        device: &DeviceId,
        connection: ConnectionId,
        background: bool,
    ) -> Result<(), ServiceError> {
        let mark = if background { connection.get() } else { 0 };
        if self.store.set_push_background(user, device, mark).await? {
            Ok(())
        } else {
            Err(ServiceError::InvalidArgument(
                "this device has no push registration".into(),
            ))
        }
    }

    /// A provider said `registration`'s token is dead: forget it (unless replaced since).
    pub async fn forget(&self, registration: &PushRegistration) -> Result<bool, ServiceError> {
        let user = UserId::parse(&registration.user)?;
        let device = DeviceId::parse(&registration.device)?;
        Ok(self
            .store
            .forget_push_token(&user, &device, &registration.token)
            .await?)
    }

    /// Whether a notification queued at `queued_ms` is too old to send now.
    pub fn is_stale(&self, queued_ms: i64) -> bool {
        stale(queued_ms, self.clock.now_ms(), self.config.max_age_ms)
    }

    /// The notifications `message` causes: one per registered device of each recipient that
    /// is not connected, except where the recipient muted the conversation or blocked the
    /// sender.
    pub async fn plan(&self, message: &Pushed) -> Result<Vec<Outgoing>, ServiceError> {
        let Some(text) = preview(&message.content) else {
            return Ok(Vec::new());
        };
        let sender_name = self.name_of(&message.sender).await?;
        let mut out = Vec::new();
        match message.conversation.kind()? {
            ConversationKind::Direct(a, b) => {
                let Some(peer) = [a, b].into_iter().find(|u| u != &message.sender) else {
                    return Ok(out);
                };
                let registrations = self.store.pushes_of(vec![peer]).await?;
                let (title, body) = (sender_name, text);
                self.plan_for(message, registrations, &title, &body, &mut out)
                    .await?;
            }
            ConversationKind::Group(group) => {
                self.plan_group(message, group, &sender_name, &text, &mut out)
                    .await?;
            }
            ConversationKind::Notices(_) => {}
        }
        Ok(out)
    }

    async fn plan_group(
        &self,
        message: &Pushed,
        group: GroupId,
        sender_name: &str,
        text: &str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), ServiceError> {
        let Some((record, _)) = self.groups.group(group, &message.sender).await? else {
            return Ok(());
        };
        let title = if record.settings.name.is_empty() {
            sender_name.to_owned()
        } else {
            record.settings.name.clone()
        };
        let body = format!("{sender_name}: {text}");
        let mut after = None;
        loop {
            let page = self
                .groups
                .group_members(group, after.clone(), MEMBER_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            // Members read now may have joined after the message: they never saw it.
            let users: Vec<UserId> = page
                .iter()
                .filter(|(u, m)| u != &message.sender && m.joined_seq < message.seq)
                .map(|(u, _)| u.clone())
                .collect();
            let registrations = self.store.pushes_of(users).await?;
            self.plan_for(message, registrations, &title, &body, out)
                .await?;
            if page.len() < MEMBER_PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    /// Plans for the recipients of `registrations` (ordered by user).
    async fn plan_for(
        &self,
        message: &Pushed,
        registrations: Vec<PushRegistration>,
        title: &str,
        body: &str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), ServiceError> {
        let mut rest = registrations.as_slice();
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|r| r.user == first.user).count();
            let (mine, next) = rest.split_at(n);
            rest = next;
            let user = UserId::parse(&first.user)?;
            let online = self.online.online_devices(&user);
            let offline: Vec<&PushRegistration> = mine
                .iter()
                .filter(|r| !self.live_among(&online, r))
                .collect();
            if offline.is_empty() {
                continue;
            }
            let Some(badge) = self.badge_unless_muted(&user, message).await? else {
                continue;
            };
            for r in offline {
                let (title, body) = if r.private {
                    (String::new(), self.config.private_text.clone())
                } else {
                    (title.to_owned(), body.to_owned())
                };
                out.push(Outgoing {
                    registration: r.clone(),
                    notification: Notification {
                        title,
                        body,
                        badge,
                        conversation: message.conversation.to_string(),
                        message_id: message.message_id.clone(),
                        seq: message.seq,
                        sender: message.sender.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// `user`'s unread count over the conversations it has not muted, or `None` when it muted
    /// this message's conversation or blocked its sender (then it is not notified).
    async fn badge_unless_muted(
        &self,
        user: &UserId,
        message: &Pushed,
    ) -> Result<Option<u64>, ServiceError> {
        if self.social.blocked(user).await?.contains(&message.sender) {
            return Ok(None);
        }
        let list = self.conversations.list(user, 0).await?;
        let mut badge = 0;
        for c in &list.conversations {
            if c.summary.muted {
                if c.summary.conversation == message.conversation {
                    return Ok(None);
                }
                continue;
            }
            badge += c.summary.unread;
        }
        Ok(Some(badge))
    }

    async fn name_of(&self, user: &UserId) -> Result<String, ServiceError> {
        let profiles = self.social.profiles(&[user.to_string()]).await?;
        Ok(profiles
            .into_iter()
            .next()
            .map(|p| p.nickname)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| user.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(provider: Provider, token: &str, p256dh: &str, auth: &str) -> PushRegistration {
        PushRegistration {
            user: "alice".into(),
            device: "phone".into(),
            provider,
            token: token.into(),
            p256dh: p256dh.into(),
            auth: auth.into(),
            private: false,
            updated_ms: 0,
            background_connection: 0,
        }
    }

    #[test]
    fn notifications_older_than_the_limit_are_stale() {
        let day = 86_400_000;
        for (queued, now, stale_now) in [
            (0, 0, false),
            (0, day, false),
            (0, day + 1, true),
            (1_000, 500, false), // a clock that stepped back: not stale
            (i64::MIN, i64::MAX, true),
        ] {
            assert_eq!(stale(queued, now, day), stale_now, "{queued} {now}");
        }
    }

    #[test]
    fn registrations_are_checked_by_provider() {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode({
            let mut k = [7u8; 65];
            k[0] = 4;
            k
        });
        let auth = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 16]);
        assert!(reg(Provider::Apns, "ab12", "", "").validate().is_ok());
        assert!(reg(Provider::Apns, "not hex", "", "").validate().is_err());
        assert!(reg(Provider::Apns, "", "", "").validate().is_err());
        assert!(reg(Provider::Fcm, "abc:def", "", "").validate().is_ok());
        assert!(reg(Provider::Fcm, "abc", &key, "").validate().is_err());
        let endpoint = "https://push.example/send/abc";
        assert!(
            reg(Provider::Webpush, endpoint, &key, &auth)
                .validate()
                .is_ok()
        );
        assert!(
            reg(Provider::Webpush, "push.example", &key, &auth)
                .validate()
                .is_err()
        );
        assert!(
            reg(Provider::Webpush, endpoint, &auth, &auth)
                .validate()
                .is_err()
        );
        assert!(
            reg(Provider::Webpush, endpoint, &key, &key)
                .validate()
                .is_err()
        );
        assert!(
            reg(Provider::Webhook, "x".repeat(2049).as_str(), "", "")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn previews_say_what_was_sent_and_skip_what_nobody_is_told() {
        use crate::content;
        let text = Content::text;
        assert_eq!(preview(&text("hi")).as_deref(), Some("hi"));
        let long = preview(&text(&"字".repeat(300))).unwrap();
        assert_eq!(long.chars().count(), MAX_BODY_CHARS + 1);
        assert!(long.ends_with('…'));
        let image = Content::Image(content::Image::default());
        assert_eq!(preview(&image).as_deref(), Some("[Picture]"));
        let file = Content::File(content::File {
            name: "a.pdf".into(),
            ..Default::default()
        });
        assert_eq!(preview(&file).as_deref(), Some("[File] a.pdf"));
        let recall = Content::Recall(content::Recall {
            message_id: crate::MessageId(1),
            seq: 1,
        });
        assert_eq!(preview(&recall), None);
    }

    #[test]
    fn collapse_keys_are_short_and_stable() {
        let n = Notification {
            title: String::new(),
            body: String::new(),
            badge: 0,
            conversation: "p:alice:bob".into(),
            message_id: "1".into(),
            seq: 1,
            sender: "bob".into(),
        };
        assert_eq!(n.collapse_key().len(), 32);
        let other = Notification {
            conversation: "g:7".into(),
            ..n.clone()
        };
        assert_ne!(n.collapse_key(), other.collapse_key());
        assert!(
            n.collapse_key()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe, as Web Push's Topic wants"
        );
    }
}
