//! Configuration: defaults, then a TOML file (`--config`), then `TERN_*` environment
//! variables, then command-line flags, each overriding the one before.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use tern_core::{
    UserId, accounts::AccountConfig, conversations::ConversationConfig, groups::GroupLimits,
    messages::MessageConfig, sync::SyncConfig, throttle::ThrottleConfig,
};
use tern_gateway::{GatewayConfig, KickPolicy};
use tern_store::{SqliteConfig, Synchronous};

/// Every setting of `tern serve`. Each key can be set in the TOML file, as `TERN_<KEY>` in the
/// environment (e.g. `TERN_DATA_DIR`), and the first three also as flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://USER:PASS@HOST:PORT/DB`) to keep everything in
    /// instead of the embedded store: what several nodes of a cluster share.
    pub store: Option<String>,
    /// Connections to that database this node keeps, at most.
    pub store_pool_size: usize,
    /// A Redis server (`redis://HOST:PORT`) that nodes sharing the PostgreSQL `store` use to
    /// deliver to each other's connections and to list the live nodes. Needs `store`.
    pub redis_url: Option<String>,
    /// The host clients reach this node at, as the node list (`/v1/nodes`) shows it; unset,
    /// the listeners' address, or this machine's host name when they listen on all addresses.
    pub advertise_host: Option<String>,
    /// The TCP listener for binary frames.
    pub tcp_addr: SocketAddr,
    /// The HTTP listener: WebSocket at `/ws`, `/healthz`, `/metrics`.
    pub http_addr: SocketAddr,
    /// Whether the HTTP listener serves the web client (the files built into the binary) at
    /// `/`; off, those paths answer 404, for a deployment whose clients are all native apps or
    /// that serves its own client elsewhere.
    pub web_client: bool,
    /// A PEM certificate chain: with `tls_key`, both listeners speak TLS (TCP frames over TLS,
    /// HTTPS and WSS). Reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// This node's id (0 to 16,777,215), unique in a cluster; drawn at random when unset.
    pub node_id: Option<u32>,
    /// Clients should send something this often; silence for twice this closes a connection.
    pub heartbeat_interval_ms: u64,
    /// How long a connection may stay without logging in.
    pub login_timeout_ms: u64,
    /// `one_per_platform` (a login replaces the user's connection on the same platform, except
    /// on the web, where each browser tab is a device of its own and only a login of the same
    /// device replaces it) or `unlimited` (only a login of the same device replaces).
    pub kick_policy: String,
    /// The largest frame accepted, header included.
    pub max_frame_bytes: usize,
    /// The largest frame accepted from a connection that has not logged in.
    pub max_frame_bytes_before_login: usize,
    /// Connections without a login, at most; more are refused until some log in or close.
    pub max_anonymous_connections: usize,
    /// Connections from one source address, at most (0: no limit).
    pub max_connections_per_address: usize,
    /// Logged-in connections of one user, at most (0: no limit).
    pub max_connections_per_user: usize,
    /// The window in which failed logins are counted, in seconds.
    pub login_failure_window_secs: u64,
    /// Failed password logins of one user answered without delay, per window.
    pub login_free_failures: u32,
    /// The delay after the first failure past the free ones, doubling with each further one.
    pub login_failure_delay_ms: u64,
    /// The longest such delay.
    pub login_max_delay_ms: u64,
    /// Failed password logins of one user per window; more are refused until it ends.
    pub login_max_failures: u32,
    /// Failed logins from one source address per window; more are refused until it ends.
    pub login_max_failures_per_address: u32,
    /// Registration attempts from one source address per window.
    pub registrations_per_address: u32,
    /// The window in which registrations are counted, in seconds.
    pub registration_window_secs: u64,
    /// The largest message content accepted (its protobuf encoding).
    pub max_content_bytes: usize,
    /// A file of sensitive words, one per line (`#` starts a comment): text containing one,
    /// matched after NFKC normalization, case folding and removal of zero-width characters, is
    /// refused or masked (`filter_action`). Read again on SIGHUP.
    pub filter_words_file: Option<PathBuf>,
    /// `reject` (the send or edit fails with `CONTENT_REJECTED`) or `mask` (each character of
    /// a match becomes `*`).
    pub filter_action: String,
    /// Requests per second each admin key may make on the HTTP API (bursts of as many); beyond
    /// it requests are refused with 429 and `Retry-After` (0: no limit).
    pub api_requests_per_second: u32,
    /// How often a node reads again the settings changed through the API (the content
    /// filter, webhooks, observers), in ms: how long another node's change takes to reach it.
    pub settings_poll_ms: u64,
    /// Requests one connection may have in progress.
    pub max_inflight_per_connection: usize,
    /// Pushes queued per connection before it must catch up by sync.
    pub outbox_capacity: usize,
    /// SQLite sync policy: `full` (every ack survives power loss), `normal`, or `off`.
    pub store_sync: String,
    /// SQLite page size in bytes for a new database (512 to 65536, a power of two).
    pub store_page_size: u32,
    /// SQLite's page cache per connection of the embedded store, in KiB.
    pub store_cache_kib: u32,
    /// How often committed messages are copied into the store's keyed indexes, in ms. Longer
    /// intervals write each hot index page less often and keep more messages in memory.
    pub store_index_interval_ms: u64,
    /// How long the commit pipeline waits to fill a batch (0: commit at once).
    pub commit_window_us: u64,
    /// The most messages per commit.
    pub max_batch: usize,
    /// The most members a group may have.
    pub group_max_members: usize,
    /// Groups with at most this many members give every member an inbox entry per message
    /// (write diffusion); larger groups store each message once (read diffusion).
    pub group_write_diffusion_max: usize,
    /// How long after sending a message it may be recalled, in seconds.
    pub recall_window_secs: u64,
    /// How long after sending a message it may be edited, in seconds.
    pub edit_window_secs: u64,
    /// Users with the observer role: they may observe any conversation's live messages.
    pub observers: Vec<String>,
    /// Inbox entries kept in memory per user.
    pub ring_capacity: usize,
    /// Users whose inbox ring is kept in memory.
    pub max_rings: usize,
    /// Inbox entries kept in memory across all users' rings (what bounds their memory).
    pub ring_entries: usize,
    /// How long a login token stays valid.
    pub token_ttl_secs: u64,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// How long shutdown waits for sessions to finish before exiting anyway.
    pub shutdown_drain_ms: u64,
    /// Where events go: `[[webhooks]]` tables of `name`, `url`, `secret` and `events`.
    pub webhooks: Vec<WebhookSetting>,
    /// How long a webhook receiver may take to answer, in ms.
    pub webhook_timeout_ms: u64,
    /// The wait after a failed delivery, doubled after each further failure, in ms.
    pub webhook_retry_base_ms: u64,
    /// The longest wait between two attempts at one delivery, in ms.
    pub webhook_retry_max_ms: u64,
    /// Attempts at one delivery before it becomes a dead letter.
    pub webhook_max_attempts: u32,
    /// The app's check of every send (`http://` or `https://`): allow, reject or rewrite.
    pub before_send_url: Option<String>,
    /// The secret the check's requests are signed with (as a webhook's).
    pub before_send_secret: String,
    /// How long a check may take, in ms.
    pub before_send_timeout_ms: u64,
    /// What a failed check means: `allow` (store unchecked) or `reject` (refuse, retryable).
    pub before_send_on_failure: String,
    /// The account that sends the HTTP API's messages that name no sender; made (without a
    /// password) at start when missing.
    pub system_user: String,
    /// Where uploaded files' bytes are kept; `DATA_DIR/files` when unset. Ignored when
    /// `files_s3` is set.
    pub files_dir: Option<PathBuf>,
    /// An S3-compatible bucket to keep uploaded files' bytes in instead of a directory (a
    /// `[files_s3]` table: bucket, endpoint, region, access_key_id, secret_access_key,
    /// allow_http). Every node of a cluster needs it.
    pub files_s3: Option<tern_blobs::S3Config>,
    /// The largest upload, in bytes.
    pub file_max_bytes: u64,
    /// The most bytes one user's uploads may hold (0: no limit).
    pub file_quota_bytes: u64,
    /// How long an upload that no message refers to is kept, in seconds.
    pub file_grace_secs: u64,
    /// How often uploads past their grace period are looked for, in seconds.
    pub file_collect_interval_secs: u64,
    /// How long a signed link to a file stays good, in seconds.
    pub file_link_ttl_secs: u64,
    /// The boxes (in pixels) thumbnails of pictures are fitted in.
    pub file_thumbnail_edges: Vec<u32>,
    /// Offline push: a `[push]` table with a table per provider to send through
    /// (`[push.apns]`, `[push.fcm]`, `[push.webpush]`, `[push.webhook]`). None configured: no
    /// push, and registrations are refused.
    pub push: PushSettings,
}

/// Offline push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// APNs.
    pub apns: Option<ApnsSetting>,
    /// FCM HTTP v1.
    pub fcm: Option<FcmSetting>,
    /// Web Push.
    pub webpush: Option<WebPushSetting>,
    /// The app's own push gateway.
    pub webhook: Option<PushWebhookSetting>,
    /// What a private notification says.
    pub private_text: String,
    /// Whether a device still connected while its app is in the background (it said so with
    /// PUSH_APP_STATE) is notified too.
    pub notify_background: bool,
    /// How long a provider may take to answer, in ms.
    pub timeout_ms: u64,
    /// The wait after a notification's first failure, doubled after each further one, in ms.
    pub retry_base_ms: u64,
    /// The longest wait between two attempts, in ms.
    pub retry_max_ms: u64,
    /// Attempts at one notification before it is given up.
    pub max_attempts: u32,
    /// How old a message may be and still be notified, in seconds: notifications queued while
    /// push was off or the server down for longer are dropped, not sent as old news.
    pub max_age_secs: u64,
}

impl Default for PushSettings {
    fn default() -> Self {
        let d = tern_push::defaults();
        Self {
            apns: None,
            fcm: None,
            webpush: None,
            webhook: None,
            private_text: tern_core::push::PushConfig::default().private_text,
            notify_background: true,
            timeout_ms: d.timeout.as_millis() as u64,
            retry_base_ms: d.retry_base.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
            max_attempts: d.max_attempts,
            max_age_secs: (tern_core::push::PushConfig::default().max_age_ms / 1000) as u64,
        }
    }
}

/// APNs with token authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsSetting {
    /// The signing key Apple issued (`AuthKey_XXXX.p8`).
    pub key_file: PathBuf,
    /// The key's id.
    pub key_id: String,
    /// The developer team id.
    pub team_id: String,
    /// The app's bundle id.
    pub topic: String,
    /// `https://api.push.apple.com`, or `https://api.sandbox.push.apple.com` for development
    /// builds.
    #[serde(default = "apns_endpoint")]
    pub endpoint: String,
}

fn apns_endpoint() -> String {
    "https://api.push.apple.com".into()
}

/// FCM HTTP v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmSetting {
    /// The service account's JSON key file.
    pub service_account_file: PathBuf,
    /// `https://fcm.googleapis.com`.
    #[serde(default = "fcm_endpoint")]
    pub endpoint: String,
}

fn fcm_endpoint() -> String {
    "https://fcm.googleapis.com".into()
}

/// Web Push with VAPID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushSetting {
    /// The VAPID key: a P-256 private key in PKCS#8 PEM (`openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256`).
    pub vapid_key_file: PathBuf,
    /// Who runs this server: `mailto:` or `https:`.
    pub subject: String,
    /// How long a push service keeps a notification for a browser that is offline, in seconds.
    #[serde(default = "webpush_ttl")]
    pub ttl_secs: u64,
    /// Accept `http://` subscription endpoints (a push service on the same network, tests);
    /// otherwise only `https://`.
    #[serde(default)]
    pub allow_http: bool,
    /// Accept endpoints on private networks (loopback, RFC 1918, link-local…): a push service
    /// of one's own, tests. Otherwise an endpoint must resolve to a public address, since a
    /// device chooses it and could otherwise aim the server at its own network.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

fn webpush_ttl() -> u64 {
    86_400
}

/// The app's own push gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushWebhookSetting {
    /// Where notifications are POSTed.
    pub url: String,
    /// The signing secret (as a webhook's).
    pub secret: String,
}

/// One webhook of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSetting {
    /// Unique name; queued deliveries name it, so keep it when changing the URL.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The signing secret: `whsec_` and base64 (the Standard Webhooks form), or any string.
    pub secret: String,
    /// Event names (`message.created`, ...), or `*` for all.
    pub events: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let gateway = GatewayConfig::default();
        let messages = MessageConfig::default();
        let sync = SyncConfig::default();
        let accounts = AccountConfig::default();
        let files = tern_core::files::FileConfig::default();
        Self {
            data_dir: PathBuf::from("tern-data"),
            tcp_addr: SocketAddr::from(([0, 0, 0, 0], 7700)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 7701)),
            web_client: true,
            tls_cert: None,
            tls_key: None,
            node_id: None,
            heartbeat_interval_ms: gateway.heartbeat_interval.as_millis() as u64,
            login_timeout_ms: gateway.login_timeout.as_millis() as u64,
            kick_policy: "one_per_platform".into(),
            max_frame_bytes: gateway.max_frame_len,
            max_frame_bytes_before_login: gateway.max_frame_len_before_login,
            max_anonymous_connections: gateway.max_anonymous_connections,
            max_connections_per_address: gateway.max_connections_per_address,
            max_connections_per_user: gateway.max_connections_per_user,
            login_failure_window_secs: accounts.throttle.login_window.as_secs(),
            login_free_failures: accounts.throttle.free_failures,
            login_failure_delay_ms: accounts.throttle.first_delay.as_millis() as u64,
            login_max_delay_ms: accounts.throttle.max_delay.as_millis() as u64,
            login_max_failures: accounts.throttle.max_failures,
            login_max_failures_per_address: accounts.throttle.max_failures_per_address,
            registrations_per_address: accounts.throttle.registrations_per_address,
            registration_window_secs: accounts.throttle.registration_window.as_secs(),
            max_content_bytes: messages.max_content_bytes,
            filter_words_file: None,
            filter_action: "reject".into(),
            api_requests_per_second: 100,
            settings_poll_ms: 1000,
            max_inflight_per_connection: gateway.max_inflight,
            outbox_capacity: gateway.outbox_capacity,
            store: None,
            redis_url: None,
            advertise_host: None,
            store_pool_size: tern_store_postgres::PgConfig::default().pool_size,
            store_sync: "full".into(),
            store_page_size: tern_store::SqliteConfig::default().page_size,
            store_cache_kib: tern_store::SqliteConfig::default().cache_kib,
            store_index_interval_ms: tern_store::SqliteConfig::default()
                .index_interval
                .as_millis() as u64,
            commit_window_us: messages.commit_window.as_micros() as u64,
            max_batch: messages.max_batch,
            group_max_members: messages.groups.max_members,
            group_write_diffusion_max: messages.groups.write_diffusion_max,
            recall_window_secs: ConversationConfig::default().recall_window.as_secs(),
            edit_window_secs: ConversationConfig::default().edit_window.as_secs(),
            observers: Vec::new(),
            ring_capacity: sync.ring_capacity,
            max_rings: sync.max_rings,
            ring_entries: sync.ring_entries,
            token_ttl_secs: accounts.token_ttl.as_secs(),
            argon2_memory_kib: accounts.argon2_memory_kib,
            argon2_iterations: accounts.argon2_iterations,
            shutdown_drain_ms: 10_000,
            webhooks: Vec::new(),
            webhook_timeout_ms: 10_000,
            webhook_retry_base_ms: 1_000,
            webhook_retry_max_ms: 600_000,
            webhook_max_attempts: 20,
            before_send_url: None,
            before_send_secret: String::new(),
            before_send_timeout_ms: 2_000,
            before_send_on_failure: "allow".into(),
            system_user: "system".into(),
            files_dir: None,
            files_s3: None,
            file_max_bytes: files.max_bytes,
            file_quota_bytes: files.quota_bytes,
            file_grace_secs: files.grace.as_secs(),
            file_collect_interval_secs: 600,
            file_link_ttl_secs: files.link_ttl.as_secs(),
            file_thumbnail_edges: files.thumbnail_edges,
            push: PushSettings::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// The flags of `tern serve`.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// A TOML file with settings (see docs/configuration in the README).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the embedded store keeps its files [default: ./tern-data].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Keep everything in this PostgreSQL database (postgres://USER:PASS@HOST:PORT/DB)
    /// instead of the embedded store.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Join the cluster of nodes that share --store through this Redis (redis://HOST:PORT).
    #[arg(long = "redis", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// TCP listener for binary frames [default: 0.0.0.0:7700].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_addr: Option<SocketAddr>,
    /// HTTP listener for WebSocket (/ws), /healthz and /metrics [default: 0.0.0.0:7701].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// PEM certificate chain: both listeners speak TLS (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Defaults, then the file, then `TERN_*` variables, then flags.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        Self::load_from(args, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        args: &ServeArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &args.config {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let known = known_keys();
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("TERN_")?.to_ascii_lowercase();
                // Other TERN_ variables (the CLI's TERN_USER, say) are not server settings.
                known.contains(&key).then_some((key, v))
            })
            .collect();
        for (key, value) in env {
            figment = figment.merge(Serialized::default(&key, parse_env_value(&value)));
        }
        figment = figment.merge(Serialized::defaults(args));
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .node_id
            .is_some_and(|id| tern_core::NodeId::new(id).is_none())
        {
            return Err(ConfigError(format!(
                "node_id must be at most {}",
                tern_core::NodeId::MAX
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        self.kick_policy()?;
        self.filter_action()?;
        self.webhooks()?;
        self.before_send()?;
        UserId::parse(&self.system_user).map_err(|_| {
            ConfigError(format!(
                "system_user {:?} is not a valid user id",
                self.system_user
            ))
        })?;
        self.synchronous()?;
        if let Some(url) = &self.store
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "store must be a postgres:// URL (or unset for the embedded store), not {url:?}"
            )));
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError(format!(
                    "redis_url must be a redis:// or rediss:// URL, not {url:?}"
                )));
            }
            if self.store.is_none() {
                return Err(ConfigError(
                    "redis_url joins nodes that share a PostgreSQL store: set store as well".into(),
                ));
            }
        }
        if self.store_pool_size == 0 {
            return Err(ConfigError("store_pool_size must be positive".into()));
        }
        if self.heartbeat_interval_ms == 0 || self.login_timeout_ms == 0 {
            return Err(ConfigError(
                "heartbeat_interval_ms and login_timeout_ms must be positive".into(),
            ));
        }
        if !(512..=65536).contains(&self.store_page_size) || !self.store_page_size.is_power_of_two()
        {
            return Err(ConfigError(
                "store_page_size must be a power of two from 512 to 65536".into(),
            ));
        }
        if self.store_cache_kib < 64 {
            return Err(ConfigError("store_cache_kib must be at least 64".into()));
        }
        if self.max_frame_bytes < tern_proto::HEADER_LEN + 64 {
            return Err(ConfigError(format!(
                "max_frame_bytes must be at least {}",
                tern_proto::HEADER_LEN + 64
            )));
        }
        if self.max_frame_bytes_before_login < tern_proto::HEADER_LEN + 64 {
            return Err(ConfigError(format!(
                "max_frame_bytes_before_login must be at least {}",
                tern_proto::HEADER_LEN + 64
            )));
        }
        Ok(())
    }

    pub(crate) fn filter_action(&self) -> Result<tern_core::filter::FilterAction, ConfigError> {
        self.filter_action.parse().map_err(ConfigError)
    }

    /// The content filter `filter_words_file` describes, read now (none without the setting,
    /// or when the file lists no word).
    pub fn load_filter(&self) -> Result<Option<tern_core::filter::WordFilter>, ConfigError> {
        let Some(path) = &self.filter_words_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("filter_words_file {}: {e}", path.display())))?;
        tern_core::filter::WordFilter::new(text.lines(), self.filter_action()?)
            .map_err(|e| ConfigError(format!("filter_words_file {}: {e}", path.display())))
    }

    /// The webhooks, checked: unique names, HTTP(S) URLs, secrets, known event names.
    pub fn webhooks(&self) -> Result<Vec<tern_core::webhooks::Webhook>, ConfigError> {
        let mut hooks: Vec<tern_core::webhooks::Webhook> = Vec::new();
        for w in &self.webhooks {
            if hooks.iter().any(|h| h.name == w.name) {
                return Err(ConfigError(format!(
                    "webhook {:?}: every webhook needs a name of its own",
                    w.name
                )));
            }
            hooks.push(
                tern_core::webhooks::Webhook::new(
                    &w.name,
                    &w.url,
                    &w.secret,
                    w.events.iter().map(String::as_str),
                )
                .map_err(ConfigError)?,
            );
        }
        if self.webhook_max_attempts == 0 || self.webhook_timeout_ms == 0 {
            return Err(ConfigError(
                "webhook_max_attempts and webhook_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(hooks)
    }

    /// The before-send hook `before_send_url` names, if any.
    pub fn before_send(
        &self,
    ) -> Result<Option<tern_core::before_send::BeforeSendHook>, ConfigError> {
        let Some(url) = &self.before_send_url else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError(format!(
                "before_send_url must be http:// or https://, not {url:?}"
            )));
        }
        if self.before_send_secret.is_empty() {
            return Err(ConfigError(
                "before_send_secret is required to sign the checks".into(),
            ));
        }
        if self.before_send_timeout_ms == 0 {
            return Err(ConfigError(
                "before_send_timeout_ms must be at least 1".into(),
            ));
        }
        let on_failure = self.before_send_on_failure.parse().map_err(ConfigError)?;
        let key = tern_core::webhooks::secret_key(&self.before_send_secret)
            .map_err(|e| ConfigError(format!("before_send_secret: {e}")))?;
        let timeout = Duration::from_millis(self.before_send_timeout_ms);
        let hook =
            tern_hooks::HttpBeforeSend::new(url.clone(), key, timeout + Duration::from_secs(1))
                .map_err(|e| ConfigError(format!("before_send_url: {e}")))?;
        Ok(Some(tern_core::before_send::BeforeSendHook {
            hook: std::sync::Arc::new(hook),
            timeout,
            on_failure,
        }))
    }

    /// The push providers configured, each checked and its key read.
    pub fn push_providers(&self) -> Result<tern_push::Providers, ConfigError> {
        use tern_push::providers as p;
        let push = &self.push;
        let timeout = Duration::from_millis(push.timeout_ms.max(1));
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("push {what} {}: {e}", path.display())))
        };
        let err = |e: p::ConfigError| ConfigError(e.to_string());
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        let mut providers = tern_push::Providers::default();
        if let Some(a) = &push.apns {
            if !url_ok(&a.endpoint) {
                return Err(ConfigError(
                    "push.apns.endpoint must be an http(s) URL".into(),
                ));
            }
            providers.apns = Some(
                p::Apns::new(
                    p::ApnsConfig {
                        key_pem: read("apns key_file", &a.key_file)?,
                        key_id: a.key_id.clone(),
                        team_id: a.team_id.clone(),
                        topic: a.topic.clone(),
                        endpoint: a.endpoint.clone(),
                    },
                    timeout,
                )
                .map_err(err)?,
            );
        }
        if let Some(f) = &push.fcm {
            if !url_ok(&f.endpoint) {
                return Err(ConfigError(
                    "push.fcm.endpoint must be an http(s) URL".into(),
                ));
            }
            providers.fcm = Some(
                p::Fcm::new(
                    p::FcmConfig {
                        service_account_json: read(
                            "fcm service_account_file",
                            &f.service_account_file,
                        )?,
                        endpoint: f.endpoint.clone(),
                    },
                    timeout,
                )
                .map_err(err)?,
            );
        }
        if let Some(w) = &push.webpush {
            providers.webpush = Some(
                p::WebPush::new(
                    p::WebPushConfig {
                        vapid_key_pem: read("webpush vapid_key_file", &w.vapid_key_file)?,
                        subject: w.subject.clone(),
                        ttl: Duration::from_secs(w.ttl_secs),
                        allow_private: w.allow_private_addresses,
                    },
                    timeout,
                )
                .map_err(err)?,
            );
        }
        if let Some(g) = &push.webhook {
            if !url_ok(&g.url) {
                return Err(ConfigError(
                    "push.webhook.url must be an http(s) URL".into(),
                ));
            }
            let key = tern_core::webhooks::secret_key(&g.secret)
                .ok()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| ConfigError("push.webhook.secret is required".into()))?;
            providers.webhook = Some(
                p::Gateway::new(
                    p::GatewayConfig {
                        url: g.url.clone(),
                        key,
                    },
                    timeout,
                )
                .map_err(err)?,
            );
        }
        Ok(providers)
    }

    /// How notifications are sent and retried.
    pub fn push_dispatch(&self) -> tern_push::DispatchConfig {
        let push = &self.push;
        tern_push::DispatchConfig {
            timeout: Duration::from_millis(push.timeout_ms.max(1)),
            retry_base: Duration::from_millis(push.retry_base_ms.max(1)),
            retry_max: Duration::from_millis(push.retry_max_ms.max(push.retry_base_ms)),
            max_attempts: push.max_attempts.max(1),
            ..tern_push::defaults()
        }
    }

    /// How webhooks are delivered.
    pub fn dispatch(&self) -> tern_hooks::DispatchConfig {
        tern_hooks::DispatchConfig {
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            retry_base: Duration::from_millis(self.webhook_retry_base_ms.max(1)),
            retry_max: Duration::from_millis(
                self.webhook_retry_max_ms.max(self.webhook_retry_base_ms),
            ),
            max_attempts: self.webhook_max_attempts,
            ..tern_hooks::DispatchConfig::default()
        }
    }

    fn kick_policy(&self) -> Result<KickPolicy, ConfigError> {
        self.kick_policy.parse().map_err(ConfigError)
    }

    fn synchronous(&self) -> Result<Synchronous, ConfigError> {
        self.store_sync.parse().map_err(ConfigError)
    }

    /// The gateway's part.
    pub fn gateway(&self) -> GatewayConfig {
        GatewayConfig {
            max_frame_len: self.max_frame_bytes,
            // Never more than after login.
            max_frame_len_before_login: self.max_frame_bytes_before_login.min(self.max_frame_bytes),
            max_anonymous_connections: self.max_anonymous_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_connections_per_user: self.max_connections_per_user,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            login_timeout: Duration::from_millis(self.login_timeout_ms),
            kick_policy: self.kick_policy().unwrap_or_default(),
            max_inflight: self.max_inflight_per_connection.max(1),
            outbox_capacity: self.outbox_capacity.max(1),
            node: self
                .node_id
                .and_then(tern_core::NodeId::new)
                .unwrap_or_else(tern_core::NodeId::random),
            ..GatewayConfig::default()
        }
    }

    /// The message service's part.
    /// The limits of uploads.
    pub fn files(&self) -> tern_core::files::FileConfig {
        tern_core::files::FileConfig {
            max_bytes: self.file_max_bytes.max(1),
            quota_bytes: self.file_quota_bytes,
            grace: Duration::from_secs(self.file_grace_secs),
            thumbnail_edges: self.file_thumbnail_edges.clone(),
            link_ttl: Duration::from_secs(self.file_link_ttl_secs.max(1)),
            ..tern_core::files::FileConfig::default()
        }
    }

    /// Where uploads' bytes go: the bucket when one is set, else the directory.
    pub fn blobs(&self) -> Result<tern_blobs::ObjectBlobs, tern_blobs::BlobsError> {
        match &self.files_s3 {
            Some(s3) => tern_blobs::ObjectBlobs::s3(s3),
            None => tern_blobs::ObjectBlobs::dir(
                self.files_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("files")),
            ),
        }
    }

    pub fn messages(&self) -> MessageConfig {
        MessageConfig {
            max_content_bytes: self.max_content_bytes,
            max_batch: self.max_batch.max(1),
            commit_window: Duration::from_micros(self.commit_window_us),
            groups: GroupLimits {
                max_members: self.group_max_members.max(1),
                write_diffusion_max: self.group_write_diffusion_max,
                ..GroupLimits::default()
            },
            ..MessageConfig::default()
        }
    }

    /// The conversation service's part.
    pub fn conversations(&self) -> Result<ConversationConfig, ConfigError> {
        Ok(ConversationConfig {
            observers: tern_core::conversations::ObserverRoles::new(self.observer_users()?),
            recall_window: Duration::from_secs(self.recall_window_secs),
            edit_window: Duration::from_secs(self.edit_window_secs),
            max_content_bytes: self.max_content_bytes,
            ..ConversationConfig::default()
        })
    }

    /// The users `observers` names.
    pub fn observer_users(&self) -> Result<Vec<UserId>, ConfigError> {
        self.observers
            .iter()
            .map(|u| {
                UserId::parse(u)
                    .map_err(|_| ConfigError(format!("observers: {u:?} is not a valid user id")))
            })
            .collect()
    }

    /// The sync service's part.
    pub fn sync(&self) -> SyncConfig {
        SyncConfig {
            ring_capacity: self.ring_capacity.max(1),
            max_rings: self.max_rings.max(1),
            ring_entries: self.ring_entries,
            // Other nodes may commit to a PostgreSQL store.
            shared_store: self.store.is_some(),
            ..SyncConfig::default()
        }
    }

    /// The account service's part.
    pub fn accounts(&self) -> AccountConfig {
        AccountConfig {
            throttle: ThrottleConfig {
                login_window: Duration::from_secs(self.login_failure_window_secs),
                free_failures: self.login_free_failures,
                first_delay: Duration::from_millis(self.login_failure_delay_ms),
                max_delay: Duration::from_millis(self.login_max_delay_ms),
                max_failures: self.login_max_failures,
                max_failures_per_address: self.login_max_failures_per_address,
                registration_window: Duration::from_secs(self.registration_window_secs),
                registrations_per_address: self.registrations_per_address,
                ..ThrottleConfig::default()
            },
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            argon2_memory_kib: self.argon2_memory_kib,
            argon2_iterations: self.argon2_iterations,
            ..AccountConfig::default()
        }
    }

    /// The PostgreSQL store's part.
    pub fn postgres(&self) -> tern_store_postgres::PgConfig {
        tern_store_postgres::PgConfig {
            pool_size: self.store_pool_size,
            ..tern_store_postgres::PgConfig::default()
        }
    }

    /// The embedded store's part.
    pub fn store(&self) -> SqliteConfig {
        SqliteConfig {
            synchronous: self.synchronous().unwrap_or_default(),
            page_size: self.store_page_size,
            cache_kib: self.store_cache_kib,
            index_interval: Duration::from_millis(self.store_index_interval_ms),
            ..SqliteConfig::default()
        }
    }
}

fn known_keys() -> Vec<String> {
    match figment::value::Value::serialize(Config::default()) {
        Ok(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Environment values are strings; numbers and booleans are given their type so that
/// `TERN_MAX_BATCH=64` sets a number.
fn parse_env_value(v: &str) -> figment::value::Value {
    v.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tern.toml");
        std::fs::write(
            &file,
            "data_dir = \"from-file\"\nmax_batch = 7\nheartbeat_interval_ms = 1000\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            tcp_addr: Some("127.0.0.1:9000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let c = Config::load_from(
            &args,
            env(&[
                ("TERN_MAX_BATCH", "9"),
                ("TERN_TCP_ADDR", "127.0.0.1:8000"),
                ("TERN_USER", "alice"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("from-file"));
        assert_eq!(c.max_batch, 9, "environment overrides the file");
        assert_eq!(
            c.tcp_addr,
            "127.0.0.1:9000".parse().unwrap(),
            "flags override the environment"
        );
        assert_eq!(c.heartbeat_interval_ms, 1000);
        assert_eq!(c.http_addr, Config::default().http_addr);
    }

    #[test]
    fn the_web_client_is_served_unless_turned_off() {
        assert!(Config::default().web_client);
        let c =
            Config::load_from(&ServeArgs::default(), env(&[("TERN_WEB_CLIENT", "false")])).unwrap();
        assert!(!c.web_client);
    }

    #[test]
    fn tls_files_come_from_the_environment_and_go_together() {
        let c = Config::load_from(
            &ServeArgs::default(),
            env(&[("TERN_TLS_CERT", "/c.pem"), ("TERN_TLS_KEY", "/k.pem")]),
        )
        .unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/k.pem")));
        let e = Config::load_from(&ServeArgs::default(), env(&[("TERN_TLS_CERT", "/c.pem")]))
            .unwrap_err();
        assert!(e.to_string().contains("tls_key"), "{e}");
    }

    #[test]
    fn bad_settings_are_refused_with_a_message() {
        let args = ServeArgs::default();
        let e = Config::load_from(&args, env(&[("TERN_KICK_POLICY", "sometimes")])).unwrap_err();
        assert!(e.to_string().contains("kick policy"), "{e}");
        let e = Config::load_from(&args, env(&[("TERN_STORE_SYNC", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("sync policy"), "{e}");
        let e = Config::load_from(&args, env(&[("TERN_STORE_CACHE_KIB", "8")])).unwrap_err();
        assert!(e.to_string().contains("store_cache_kib"), "{e}");
        let c = Config::load_from(
            &args,
            env(&[
                ("TERN_STORE_CACHE_KIB", "1024"),
                ("TERN_RING_ENTRIES", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(c.store().cache_kib, 1024);
        assert_eq!(c.sync().ring_entries, 10);
        let e = Config::load_from(&args, env(&[("TERN_STORE", "mysql://db/tern")])).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
        let c = Config::load_from(
            &args,
            env(&[("TERN_STORE", "postgres://tern@db:5432/tern")]),
        )
        .unwrap();
        assert_eq!(c.store.as_deref(), Some("postgres://tern@db:5432/tern"));
        let e =
            Config::load_from(&args, env(&[("TERN_REDIS_URL", "redis://cache:6379")])).unwrap_err();
        assert!(e.to_string().contains("set store as well"), "{e}");
        let e = Config::load_from(
            &args,
            env(&[
                ("TERN_STORE", "postgres://tern@db:5432/tern"),
                ("TERN_REDIS_URL", "cache:6379"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redis://"), "{e}");
        let c = Config::load_from(
            &ServeArgs {
                redis_url: Some("redis://cache:6379".into()),
                ..ServeArgs::default()
            },
            env(&[("TERN_STORE", "postgres://tern@db:5432/tern")]),
        )
        .unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://cache:6379"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let e = Config::load_from(&args, env(&[])).unwrap_err();
        assert!(e.to_string().contains("no_such_setting"), "{e}");
    }
}
