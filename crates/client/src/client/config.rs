//! What a client is told: where, as whom, and how it reconnects.

use super::*;

/// How the client reconnects after losing its connection.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Reconnect at all.
    pub enabled: bool,
    /// The first delay; it doubles after each failed attempt.
    pub initial_backoff: Duration,
    /// The longest delay.
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Everything a client needs to log in and stay connected.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub endpoint: Endpoint,
    /// Other nodes of the same deployment, tried in turn after `endpoint` when the node in use
    /// cannot be reached, is lost, or drains (`GOODBYE`).
    pub fallbacks: Vec<Endpoint>,
    /// Payload encoding for requests (and, chosen at login, for pushes).
    pub encoding: Encoding,
    /// The user to log in as.
    pub user: String,
    /// The password (used for the first login; reconnects use the token it yields).
    pub password: Option<String>,
    /// A token from an earlier login of this device, used when no password is given.
    pub token: Option<String>,
    /// This installation's stable device id.
    pub device_id: String,
    /// The platform (the kick policy works per platform).
    pub platform: pb::Platform,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long `send` keeps retrying before giving up.
    pub send_deadline: Duration,
    /// Reconnection behaviour.
    pub reconnect: ReconnectPolicy,
    /// Where the cursor is persisted between runs.
    pub cursor_store: Arc<dyn CursorStore>,
    /// Entries per SYNC page.
    pub sync_page: u32,
    /// How often the cursor is acknowledged to the server when it moved.
    pub cursor_ack_interval: Duration,
    /// The local address to connect from (TCP only); `None` lets the system choose.
    pub local_ip: Option<std::net::IpAddr>,
    /// Which certificate authorities to trust for `tls://` and `wss://` endpoints; `None`
    /// trusts the system's roots.
    pub tls: Option<crate::TlsTrust>,
}

impl ClientConfig {
    /// `endpoint`, then the fallbacks.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        std::iter::once(self.endpoint.clone())
            .chain(self.fallbacks.iter().cloned())
            .collect()
    }

    /// A configuration with defaults for everything but the essentials.
    pub fn new(endpoint: Endpoint, user: &str, password: &str, device_id: &str) -> Self {
        Self {
            endpoint,
            fallbacks: Vec::new(),
            encoding: Encoding::Protobuf,
            user: user.to_owned(),
            password: Some(password.to_owned()),
            token: None,
            device_id: device_id.to_owned(),
            platform: pb::Platform::Unspecified,
            request_timeout: Duration::from_secs(10),
            send_deadline: Duration::from_secs(30),
            reconnect: ReconnectPolicy::default(),
            cursor_store: Arc::new(MemoryCursorStore::default()),
            sync_page: 500,
            cursor_ack_interval: Duration::from_secs(1),
            local_ip: None,
            tls: None,
        }
    }
}
