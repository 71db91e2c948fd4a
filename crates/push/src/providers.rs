//! The push providers: one request per notification to APNs (HTTP/2, an ES256 provider
//! token), FCM HTTP v1 (a service account's RS256 assertion traded for an access token), Web
//! Push (VAPID and RFC 8291 encryption) or the app's own gateway (a POST signed the Standard
//! Webhooks way). Every endpoint is configurable, so tests point them at local servers.
//!
//! Each answer is read into one of three outcomes: delivered, try again later (429, 5xx, no
//! answer), or the token is dead (the provider says the app was removed or the token is not
//! one it issued), which removes the registration. Any other refusal is final for that push.

use std::time::{Duration, Instant};

use base64::Engine as _;
use jwt_simple::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tern_core::push::{Notification, Outgoing, Provider};

/// Why a push was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: rate limited, the provider failed, or no answer.
    #[error("try again: {0}")]
    Retry(String),
    /// The provider says the token is no longer valid: the registration is removed.
    #[error("the token is no longer valid: {0}")]
    DeadToken(String),
    /// Refused for good (a malformed push, a misconfigured credential).
    #[error("refused: {0}")]
    Refused(String),
}

/// Why a provider could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("push provider {provider}: {message}")]
pub struct ConfigError {
    /// Which provider.
    pub provider: Provider,
    /// What is wrong.
    pub message: String,
}

fn config_error(provider: Provider, message: impl Into<String>) -> ConfigError {
    ConfigError {
        provider,
        message: message.into(),
    }
}

/// What a refusal (not 429, not 5xx) means, as each provider says it.
enum Verdict {
    /// The token is dead: remove the registration.
    Dead,
    /// The credential this server sent is stale: make a new one and try again.
    Stale,
    /// Refused for good.
    Refused,
}

/// Reads an answer the way every provider means it: 2xx delivered; 429, 5xx or no answer tried
/// again; any other status as `classify` says (a stale credential is dropped from `cache`).
async fn outcome(
    response: Result<reqwest::Response, reqwest::Error>,
    cache: Option<&Cached>,
    classify: impl FnOnce(StatusCode, &str) -> Verdict,
) -> Result<(), SendError> {
    let response = response.map_err(|e| {
        if e.is_timeout() {
            SendError::Retry("no answer in time".into())
        } else {
            // Without the URL: it holds a device token or a subscription's endpoint.
            SendError::Retry(format!("request failed: {}", e.without_url()))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let mut said = body.chars().take(300).collect::<String>();
    if said.is_empty() {
        said = status.to_string();
    } else {
        said = format!("{status}: {said}");
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(SendError::Retry(said));
    }
    match classify(status, &body) {
        Verdict::Dead => Err(SendError::DeadToken(said)),
        Verdict::Stale => {
            if let Some(c) = cache {
                c.clear().await;
            }
            Err(SendError::Retry(said))
        }
        Verdict::Refused => Err(SendError::Refused(said)),
    }
}

/// A credential reused until shortly before it expires, made by one caller at a time: many
/// notifications at once must not each sign a provider token (APNs refuses tokens renewed too
/// often) or trade an assertion of their own.
#[derive(Debug, Default)]
struct Cached(tokio::sync::Mutex<Option<(String, Instant)>>);

impl Cached {
    /// The credential, made with `make` (which says how long it lasts) when there is none.
    async fn get_or_make<F, Fut>(&self, make: F) -> Result<String, SendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), SendError>>,
    {
        let mut slot = self.0.lock().await;
        if let Some((token, until)) = slot.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, life) = make().await?;
        *slot = Some((token.clone(), Instant::now() + life));
        Ok(token)
    }

    async fn clear(&self) {
        *self.0.lock().await = None;
    }
}

/// An HTTP client for one provider: no redirects (a push service has no reason to send one,
/// and following them would let an endpoint point the server elsewhere).
fn client(timeout: Duration, http2_only: bool) -> reqwest::Result<reqwest::Client> {
    let mut b = builder(timeout);
    if http2_only {
        b = b.http2_prior_knowledge();
    }
    b.build()
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tern-push/", env!("CARGO_PKG_VERSION")))
}

/// Whether a Web Push endpoint named by address points at the public internet. An address on a
/// private network never will, so its registration is dead. (A name is checked where the
/// connection is made, by [`crate::address::PublicOnly`], with no lookup of its own here.)
fn check_public(endpoint: &reqwest::Url) -> Result<(), SendError> {
    let host = endpoint
        .host_str()
        .ok_or_else(|| SendError::Refused("the endpoint has no host".into()))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) if !crate::address::is_public(ip) => Err(SendError::DeadToken(
            "the endpoint is on a private network".into(),
        )),
        _ => Ok(()),
    }
}

/// APNs' settings.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// The signing key Apple issued (`AuthKey_XXXX.p8`): PKCS#8 PEM.
    pub key_pem: String,
    /// The key's id.
    pub key_id: String,
    /// The developer team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com` (or the sandbox's). An `http://` address is spoken to in
    /// HTTP/2 without TLS (a test server).
    pub endpoint: String,
}

/// Sends through APNs.
#[derive(Debug)]
pub struct Apns {
    config: ApnsConfig,
    key: ES256KeyPair,
    client: reqwest::Client,
    token: Cached,
}

/// Apple accepts a provider token for an hour and refuses one renewed more often than every
/// twenty minutes, so one is kept for forty.
const APNS_TOKEN_LIFE: Duration = Duration::from_secs(40 * 60);

impl Apns {
    /// APNs with `config`.
    pub fn new(config: ApnsConfig, timeout: Duration) -> Result<Apns, ConfigError> {
        let err = |m: String| config_error(Provider::Apns, m);
        let key = ES256KeyPair::from_pem(&config.key_pem)
            .map_err(|e| err(format!("the key is not a PKCS#8 P-256 key: {e}")))?
            .with_key_id(&config.key_id);
        if config.team_id.is_empty() || config.topic.is_empty() || config.key_id.is_empty() {
            return Err(err("key_id, team_id and topic are required".into()));
        }
        let client = client(timeout, true).map_err(|e| err(e.to_string()))?;
        Ok(Apns {
            config,
            key,
            client,
            token: Cached::default(),
        })
    }

    async fn provider_token(&self) -> Result<String, SendError> {
        self.token
            .get_or_make(|| async {
                // Apple reads only the issuer and the time of issue.
                let mut claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
                    .with_issuer(&self.config.team_id);
                claims.expires_at = None;
                claims.invalid_before = None;
                let token = self
                    .key
                    .sign(claims)
                    .map_err(|e| SendError::Refused(format!("cannot sign: {e}")))?;
                Ok((token, APNS_TOKEN_LIFE))
            })
            .await
    }

    /// The payload Apple delivers: the alert, the badge, the thread, and Tern's data.
    pub fn payload(n: &Notification) -> Value {
        let mut alert = json!({ "body": n.body });
        if !n.title.is_empty() {
            alert["title"] = json!(n.title);
        }
        json!({
            "aps": {
                "alert": alert,
                "badge": n.badge,
                "sound": "default",
                "thread-id": n.conversation,
            },
            "tern": n.data(),
        })
    }

    /// Sends one notification.
    pub async fn send(&self, out: &Outgoing) -> Result<(), SendError> {
        let token = self.provider_token().await?;
        let url = format!(
            "{}/3/device/{}",
            self.config.endpoint.trim_end_matches('/'),
            out.registration.token
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-collapse-id", out.notification.collapse_key())
            .json(&Apns::payload(&out.notification))
            .send()
            .await;
        outcome(response, Some(&self.token), |status, body| {
            if status == StatusCode::GONE
                || (status == StatusCode::BAD_REQUEST && body.contains("BadDeviceToken"))
            {
                Verdict::Dead
            } else if body.contains("ExpiredProviderToken") {
                Verdict::Stale
            } else {
                // A wrong topic (DeviceTokenNotForTopic) is this server's mistake, not the
                // device's: its token stays.
                Verdict::Refused
            }
        })
        .await
    }
}

/// FCM's settings.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The service account's JSON key file, as Google's console downloads it (its
    /// `project_id`, `client_email`, `private_key`, `private_key_id` and `token_uri`).
    pub service_account_json: String,
    /// `https://fcm.googleapis.com`.
    pub endpoint: String,
}

#[derive(Debug, serde::Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default = "google_token_uri")]
    token_uri: String,
}

fn google_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

/// What FCM sends may be done with.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Sends through FCM HTTP v1.
#[derive(Debug)]
pub struct Fcm {
    account: ServiceAccount,
    key: RS256KeyPair,
    endpoint: String,
    client: reqwest::Client,
    access: Cached,
}

impl Fcm {
    /// FCM with `config`.
    pub fn new(config: FcmConfig, timeout: Duration) -> Result<Fcm, ConfigError> {
        let err = |m: String| config_error(Provider::Fcm, m);
        let account: ServiceAccount = serde_json::from_str(&config.service_account_json)
            .map_err(|e| err(format!("the service account file is not one: {e}")))?;
        let mut key = RS256KeyPair::from_pem(&account.private_key)
            .map_err(|e| err(format!("the service account's key is unreadable: {e}")))?;
        if !account.private_key_id.is_empty() {
            key = key.with_key_id(&account.private_key_id);
        }
        let client = client(timeout, false).map_err(|e| err(e.to_string()))?;
        Ok(Fcm {
            account,
            key,
            endpoint: config.endpoint,
            client,
            access: Cached::default(),
        })
    }

    /// An access token: the service account's signed assertion traded at its token endpoint
    /// (RFC 7523), kept until a minute before it expires.
    async fn access_token(&self) -> Result<String, SendError> {
        self.access.get_or_make(|| self.trade_assertion()).await
    }

    async fn trade_assertion(&self) -> Result<(String, Duration), SendError> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Scope {
            scope: String,
        }
        let claims = Claims::with_custom_claims(
            Scope {
                scope: FCM_SCOPE.into(),
            },
            jwt_simple::prelude::Duration::from_hours(1),
        )
        .with_issuer(&self.account.client_email)
        .with_audience(&self.account.token_uri);
        let assertion = self
            .key
            .sign(claims)
            .map_err(|e| SendError::Refused(format!("cannot sign: {e}")))?;
        let form = format!(
            "grant_type={}&assertion={}",
            percent_encoding::utf8_percent_encode(
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                percent_encoding::NON_ALPHANUMERIC
            ),
            assertion
        );
        let response = self
            .client
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("token endpoint: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let said = response.text().await.unwrap_or_default();
            let why = format!("token endpoint answered {status}: {said}");
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    SendError::Retry(why)
                } else {
                    SendError::Refused(why)
                },
            );
        }
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let granted: Granted = response
            .json()
            .await
            .map_err(|e| SendError::Retry(format!("token endpoint: {e}")))?;
        let life = Duration::from_secs(granted.expires_in.max(120) - 60);
        Ok((granted.access_token, life))
    }

    /// The message FCM delivers: the notification, the data, the Android tag and count that
    /// collapse and badge it, and the same for iOS devices reached through FCM.
    pub fn message(token: &str, n: &Notification) -> Value {
        let collapse = n.collapse_key();
        let mut notification = json!({ "body": n.body });
        if !n.title.is_empty() {
            notification["title"] = json!(n.title);
        }
        json!({
            "message": {
                "token": token,
                "notification": notification,
                "data": n.data(),
                "android": {
                    "collapse_key": collapse,
                    "priority": "HIGH",
                    "notification": { "tag": collapse, "notification_count": n.badge },
                },
                "apns": {
                    "headers": { "apns-collapse-id": collapse },
                    "payload": { "aps": { "badge": n.badge, "thread-id": n.conversation } },
                },
            }
        })
    }

    /// Sends one notification.
    pub async fn send(&self, out: &Outgoing) -> Result<(), SendError> {
        let access = self.access_token().await?;
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.endpoint.trim_end_matches('/'),
            self.account.project_id
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(access)
            .json(&Fcm::message(&out.registration.token, &out.notification))
            .send()
            .await;
        outcome(response, Some(&self.access), |status, body| {
            // Only FCM's own word that the app is gone: a 404 from a wrong project or endpoint
            // says nothing of the token.
            if body.contains("UNREGISTERED") {
                Verdict::Dead
            } else if status == StatusCode::UNAUTHORIZED {
                Verdict::Stale
            } else {
                Verdict::Refused
            }
        })
        .await
    }
}

/// Web Push's settings.
#[derive(Debug, Clone)]
pub struct WebPushConfig {
    /// The VAPID key: a P-256 private key, PKCS#8 PEM. Its public half is what browsers
    /// subscribe with (`applicationServerKey`).
    pub vapid_key_pem: String,
    /// Who runs this server, for push services to contact (`mailto:` or `https:`).
    pub subject: String,
    /// How long a push service keeps a notification for an offline browser.
    pub ttl: Duration,
    /// Whether endpoints may be on private networks (a push service of one's own, tests).
    /// Otherwise an endpoint must resolve to a public address: a device chooses it.
    pub allow_private: bool,
}

/// Sends through Web Push.
#[derive(Debug)]
pub struct WebPush {
    key: ES256KeyPair,
    subject: String,
    ttl: Duration,
    allow_private: bool,
    client: reqwest::Client,
}

/// What a Web Push payload may weigh before encryption: 4096 bytes in all on the wire, less
/// the record's header and tag.
const WEB_PUSH_MAX_PAYLOAD: usize = 3993;

impl WebPush {
    /// Web Push with `config`.
    pub fn new(config: WebPushConfig, timeout: Duration) -> Result<WebPush, ConfigError> {
        let err = |m: String| config_error(Provider::Webpush, m);
        let key = ES256KeyPair::from_pem(&config.vapid_key_pem)
            .map_err(|e| err(format!("the VAPID key is not a PKCS#8 P-256 key: {e}")))?;
        if !(config.subject.starts_with("mailto:") || config.subject.starts_with("https://")) {
            return Err(err("subject must be a mailto: or https: address".into()));
        }
        let client = if config.allow_private {
            client(timeout, false)
        } else {
            // Names are checked where the connection is made, each time one is: a name may
            // change its answer after registration.
            builder(timeout)
                .dns_resolver(crate::address::PublicOnly::shared())
                .build()
        }
        .map_err(|e| err(e.to_string()))?;
        Ok(WebPush {
            key,
            subject: config.subject,
            ttl: config.ttl,
            allow_private: config.allow_private,
            client,
        })
    }

    /// The VAPID public key browsers subscribe with, base64url.
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.key.public_key().public_key().to_bytes_uncompressed())
    }

    /// The JSON a service worker receives (decrypted by the browser).
    pub fn payload(n: &Notification) -> Value {
        json!({
            "title": n.title,
            "body": n.body,
            "badge": n.badge,
            "tag": n.collapse_key(),
            "data": n.data(),
        })
    }

    /// Sends one notification.
    pub async fn send(&self, out: &Outgoing) -> Result<(), SendError> {
        use web_push_native::{Auth, WebPushBuilder, p256};
        let refused = |m: String| SendError::Refused(m);
        let r = &out.registration;
        let (p256dh, auth) = r
            .web_keys()
            .ok_or_else(|| refused("the subscription's keys are unreadable".into()))?;
        let public = p256::PublicKey::from_sec1_bytes(&p256dh)
            .map_err(|_| refused("p256dh is not a P-256 point".into()))?;
        if auth.len() != 16 {
            return Err(refused("auth is not 16 bytes".into()));
        }
        let endpoint: reqwest::Url = r
            .token
            .parse()
            .map_err(|_| refused("the endpoint is not a URL".into()))?;
        if !self.allow_private {
            check_public(&endpoint)?;
        }
        let mut body = WebPush::payload(&out.notification).to_string();
        if body.len() > WEB_PUSH_MAX_PAYLOAD {
            let mut shorter = out.notification.clone();
            shorter.body = shorter.body.chars().take(100).collect();
            body = WebPush::payload(&shorter).to_string();
        }
        let request = WebPushBuilder::new(
            endpoint
                .as_str()
                .parse()
                .map_err(|_| refused("the endpoint is not a URL".into()))?,
            public,
            Auth::clone_from_slice(&auth),
        )
        .with_valid_duration(self.ttl)
        .with_vapid(&self.key, &self.subject)
        .build(body)
        .map_err(|e| refused(format!("cannot encrypt: {e}")))?;
        let (parts, payload) = request.into_parts();
        let mut builder = self.client.post(endpoint).body(payload);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let response = builder
            .header("topic", out.notification.collapse_key())
            .header("urgency", "high")
            .send()
            .await;
        if let Err(e) = &response
            && crate::address::NotPublic::caused(e)
        {
            // The name resolves only to private addresses: it will not become reachable.
            return Err(SendError::DeadToken(
                "the endpoint's name resolves only to private networks".into(),
            ));
        }
        // RFC 8030: 404 and 410 mean the subscription is gone.
        outcome(response, None, |status, _| {
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                Verdict::Dead
            } else {
                Verdict::Refused
            }
        })
        .await
    }
}

/// The app's own push gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to POST.
    pub url: String,
    /// The signing key (from a `whsec_` secret, as for webhooks).
    pub key: Vec<u8>,
}

/// Sends to the app's own gateway: a JSON POST signed like a webhook.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    client: reqwest::Client,
}

impl Gateway {
    /// The gateway with `config`.
    pub fn new(config: GatewayConfig, timeout: Duration) -> Result<Gateway, ConfigError> {
        let client =
            client(timeout, false).map_err(|e| config_error(Provider::Webhook, e.to_string()))?;
        Ok(Gateway { config, client })
    }

    /// What the gateway receives.
    pub fn payload(out: &Outgoing) -> Value {
        let n = &out.notification;
        json!({
            "user_id": out.registration.user,
            "device_id": out.registration.device,
            "token": out.registration.token,
            "title": n.title,
            "body": n.body,
            "badge": n.badge,
            "collapse_key": n.collapse_key(),
            "data": n.data(),
        })
    }

    /// Sends one notification.
    pub async fn send(&self, out: &Outgoing, now_s: i64) -> Result<(), SendError> {
        let body = Gateway::payload(out).to_string();
        let id = format!(
            "push_{}_{}",
            out.notification.message_id, out.registration.device
        );
        let signature = tern_core::webhooks::sign(&self.config.key, &id, now_s, &body);
        let response = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now_s.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        // Only 410: a 404 may be a wrong URL in the configuration, which says nothing of the
        // device.
        outcome(response, None, |status, _| {
            if status == StatusCode::GONE {
                Verdict::Dead
            } else {
                Verdict::Refused
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::push::PushRegistration;

    fn web_push(allow_private: bool) -> WebPush {
        WebPush::new(
            WebPushConfig {
                vapid_key_pem: ES256KeyPair::generate().to_pem().unwrap(),
                subject: "mailto:ops@example.com".into(),
                ttl: Duration::from_secs(60),
                allow_private,
            },
            Duration::from_secs(2),
        )
        .unwrap()
    }

    fn to(endpoint: &str) -> Outgoing {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let browser = ES256KeyPair::generate();
        Outgoing {
            registration: PushRegistration {
                user: "bob".into(),
                device: "browser".into(),
                provider: Provider::Webpush,
                token: endpoint.into(),
                p256dh: b64(&browser.public_key().public_key().to_bytes_uncompressed()),
                auth: b64(&[7; 16]),
                private: false,
                updated_ms: 0,
                background_connection: 0,
            },
            notification: Notification {
                title: "alice".into(),
                body: "hi".into(),
                badge: 1,
                conversation: "p:alice:bob".into(),
                message_id: "1".into(),
                seq: 1,
                sender: "alice".into(),
            },
        }
    }

    /// A device chooses its endpoint: one on the server's own network is a dead registration,
    /// whether named by address or by a name that resolves there, and nothing is sent to it.
    #[tokio::test]
    async fn endpoints_on_private_networks_are_dead_registrations() {
        let push = web_push(false);
        for endpoint in [
            "https://127.0.0.1:9/push/1",
            "https://[::1]:9/push/1",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.8/push",
            "https://localhost:9/push/1",
        ] {
            match push.send(&to(endpoint)).await {
                Err(SendError::DeadToken(m)) => assert!(m.contains("private"), "{endpoint}: {m}"),
                other => panic!("{endpoint}: {other:?}"),
            }
        }
    }

    /// With private networks allowed (a push service of one's own), the same endpoint is tried:
    /// nothing listens there, so the attempt is one to repeat, not a dead registration.
    #[tokio::test]
    async fn private_endpoints_are_tried_when_allowed() {
        let push = web_push(true);
        match push.send(&to("https://127.0.0.1:9/push/1")).await {
            Err(SendError::Retry(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
