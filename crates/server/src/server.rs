//! Wiring and lifecycle: store → services → gateway and HTTP; then shutdown in reverse.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tern_cluster::{Cluster, ClusterConfig, NodeInfo};
use tern_core::{
    Clock, ServiceError, StoreError, SystemClock,
    accounts::AccountService,
    conversations::ConversationService,
    group_service::GroupService,
    messages::MessageService,
    settings::LiveSettings,
    social::SocialService,
    sync::SyncService,
    typing::{TypingConfig, TypingService},
};
use tern_core::{
    social::SocialStore,
    store::{AccountStore, CommitStore, ConversationStore, GroupStore, HistoryStore, InboxStore},
};
use tern_gateway::{
    Gateway, Services, fanout::Fanout, observe::Observers, presence::Presence, registry::Registry,
};
use tern_store::SqliteStore;
use tern_store_postgres::PgStore;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, ConfigError},
    http::{AppState, app},
    listen::{Peer, TlsListener},
    metrics_setup,
    tls::{Certificates, TlsError},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The webhook dispatcher could not start.
    #[error("cannot start the webhook dispatcher: {0}")]
    Webhooks(String),
    /// A service could not be built.
    #[error("cannot start a service: {0}")]
    Service(#[from] ServiceError),
    /// The TLS certificate or key cannot be used.
    #[error("cannot use the TLS certificate: {0}")]
    Tls(#[from] TlsError),
    /// The node could not join the cluster.
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] tern_cluster::ClusterError),
    /// Where uploads are kept cannot be used.
    #[error(transparent)]
    Blobs(#[from] tern_blobs::BlobsError),
}

/// The backend a node keeps everything in.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The embedded store, in `data_dir`.
    Sqlite(SqliteStore),
    /// A PostgreSQL database that several nodes may share.
    Postgres(PgStore),
}

/// Every storage trait the services take, all served by one backend.
struct Stores {
    commit: Arc<dyn CommitStore>,
    history: Arc<dyn HistoryStore>,
    inbox: Arc<dyn InboxStore>,
    accounts: Arc<dyn AccountStore>,
    groups: Arc<dyn GroupStore>,
    conversations: Arc<dyn ConversationStore>,
    social: Arc<dyn SocialStore>,
    admin_keys: Arc<dyn tern_core::store::AdminKeyStore>,
    outbox: Arc<dyn tern_core::webhooks::WebhookOutbox>,
    settings: Arc<dyn tern_core::store::SettingsStore>,
    search: Arc<dyn tern_core::search::SearchStore>,
    files: Arc<dyn tern_core::files::FileStore>,
    push: Arc<dyn tern_core::push::PushStore>,
}

impl Stores {
    fn of<S>(store: &S) -> Stores
    where
        S: CommitStore
            + HistoryStore
            + InboxStore
            + AccountStore
            + GroupStore
            + ConversationStore
            + SocialStore
            + tern_core::store::AdminKeyStore
            + tern_core::webhooks::WebhookOutbox
            + tern_core::store::SettingsStore
            + tern_core::search::SearchStore
            + tern_core::files::FileStore
            + tern_core::push::PushStore
            + Clone,
    {
        let shared = Arc::new(store.clone());
        Stores {
            commit: shared.clone(),
            history: shared.clone(),
            inbox: shared.clone(),
            accounts: shared.clone(),
            groups: shared.clone(),
            conversations: shared.clone(),
            social: shared.clone(),
            admin_keys: shared.clone(),
            outbox: shared.clone(),
            settings: shared.clone(),
            search: shared.clone(),
            files: shared.clone(),
            push: shared,
        }
    }
}

impl Backend {
    fn stores(&self) -> Stores {
        match self {
            Backend::Sqlite(s) => Stores::of(s),
            Backend::Postgres(s) => Stores::of(s),
        }
    }

    async fn close(&self) {
        match self {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.close(),
        }
    }

    /// Publishes what the backend measures about itself.
    fn record_metrics(&self) {
        if let Backend::Postgres(s) = self {
            s.record_pool_metrics();
        }
    }

    /// Whether the store can serve now: the embedded store is part of the process; a database
    /// must answer.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(s) => s.ping().await,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
    gateway: Arc<Gateway>,
    messages: MessageService,
    store: Backend,
    /// The settings in force (the content filter, webhooks, observers), and the
    /// configuration the file's part is read again from.
    settings: Arc<LiveSettings>,
    /// Reads the settings again when another node changed them.
    settings_watch: JoinHandle<()>,
    config: Config,
    /// This node's membership of a cluster, when it has one.
    cluster: Option<Arc<Cluster>>,
    /// Delivers webhook events.
    dispatcher: tern_hooks::Dispatcher,
    /// Sends offline pushes, when a provider is configured.
    push_dispatcher: Option<tern_push::Dispatcher>,
    http_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    drain: Duration,
    /// The certificates both listeners serve, when TLS is on.
    tls: Option<Arc<Certificates>>,
}

impl Server {
    /// Opens the store, starts the services, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Server::start`] with a given clock, for tests of expiry.
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        let gateway_config = config.gateway();
        let node = gateway_config.node;
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let metrics = metrics_setup::handle(node);
        // Certificates first: a wrong path should fail before the store is opened.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Certificates::load(cert, key)?),
            _ => None,
        };
        let backend = match &config.store {
            Some(url) => Backend::Postgres(PgStore::connect(url, config.postgres()).await?),
            None => Backend::Sqlite(SqliteStore::open(&config.data_dir, config.store())?),
        };
        // Bound before the services: a cluster node registers the addresses clients reach.
        let tcp = TcpListener::bind(config.tcp_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.tcp_addr,
                source,
            })?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServerError::Bind {
            addr: config.tcp_addr,
            source,
        })?;
        let http_addr = http.local_addr().map_err(|source| ServerError::Bind {
            addr: config.http_addr,
            source,
        })?;
        let this_node = advertised(&config, node, epoch, tcp_addr, http_addr, tls.is_some());

        let filter = tern_core::filter::ContentFilter::default();
        let store = backend.stores();
        let conversations_config = config.conversations()?;
        let settings = Arc::new(LiveSettings::new(
            store.settings.clone(),
            clock.clone(),
            filter.clone(),
            store.outbox.routes().clone(),
            conversations_config.observers.clone(),
            config.webhooks()?,
            config.observer_users()?,
        ));
        settings.set_file_filter(config.load_filter()?, config.filter_action()?);
        // Before the first commit: from now on commits queue the events webhooks want, the
        // file's and those added through the API.
        settings.refresh().await?;
        let settings_watch = settings.watch(Duration::from_millis(config.settings_poll_ms.max(10)));
        let registry = Arc::new(Registry::new());
        let observers = Arc::new(Observers::new(conversations_config.observers.clone()));
        let fanout = Arc::new(Fanout::new(
            registry.clone(),
            observers.clone(),
            gateway_config.kick_policy,
        ));
        let presence = Arc::new(Presence::new(registry.clone()));
        let cluster = match &config.redis_url {
            Some(url) => Some(Arc::new(
                Cluster::join(
                    ClusterConfig {
                        redis_url: url.clone(),
                        node,
                        epoch,
                        tcp: this_node.tcp.clone(),
                        ws: this_node.ws.clone(),
                        http: this_node.http.clone(),
                        heartbeat: ClusterConfig::HEARTBEAT,
                        ttl: ClusterConfig::TTL,
                    },
                    fanout.clone(),
                    presence.clone(),
                )
                .await?,
            )),
            None => None,
        };
        // One process: what commits publish goes to this process's fan-out. A cluster node's
        // bus also carries it to the other nodes.
        let bus: Arc<dyn tern_core::bus::Bus> = match &cluster {
            Some(c) => c.bus(),
            None => Arc::new(tern_core::bus::LocalBus::new(fanout)),
        };
        let typing = Arc::new(TypingService::new(
            store.accounts.clone(),
            store.social.clone(),
            bus.clone(),
            clock.clone(),
            TypingConfig::default(),
        ));
        let sync = Arc::new(SyncService::new(
            store.inbox.clone(),
            bus.clone(),
            config.sync(),
        ));
        // Links to files are signed with one key that every node reads from the store; the
        // first node to start makes it.
        let link_key = store
            .settings
            .init_setting(
                tern_core::files::LINK_KEY_SETTING,
                &tern_core::files::new_link_key(),
            )
            .await?;
        if cluster.is_some() && config.files_s3.is_none() && config.files_dir.is_none() {
            tracing::warn!(
                dir = %config.data_dir.join("files").display(),
                "this cluster node keeps uploads in its own data directory: other nodes cannot \
                 serve them unless every node shares it; set files_s3 (or a shared files_dir)"
            );
        }
        let files = tern_core::files::FileService::new(
            store.files.clone(),
            Arc::new(config.blobs()?),
            store.groups.clone(),
            clock.clone(),
            config.files(),
            link_key.into_bytes(),
        );
        let messages = MessageService::start(
            store.commit.clone(),
            store.history.clone(),
            store.groups.clone(),
            sync.clone(),
            clock.clone(),
            tern_core::messages::MessageConfig {
                filter: filter.clone(),
                before_send: config.before_send()?,
                files: Some(files.clone()),
                ..config.messages()
            },
        );
        let accounts =
            AccountService::new(store.accounts.clone(), clock.clone(), config.accounts())?;
        // The sender of the HTTP API's messages that name none: an account like any other.
        let system_user = match accounts.create_user(&config.system_user, None).await {
            Ok(user) => user,
            Err(ServiceError::UserExists) => tern_core::UserId::parse(&config.system_user)?,
            Err(e) => return Err(e.into()),
        };
        let groups = GroupService::new(messages.clone(), store.groups.clone());
        let conversations = ConversationService::new(
            messages.clone(),
            store.conversations.clone(),
            store.inbox.clone(),
            store.groups.clone(),
            tern_core::conversations::ConversationConfig {
                filter: filter.clone(),
                ..conversations_config
            },
        );
        let social =
            SocialService::new(messages.clone(), store.social.clone(), store.inbox.clone());
        let push_providers = config.push_providers()?;
        let vapid_public_key = push_providers.webpush.as_ref().map(|w| w.public_key());
        let push = tern_core::push::PushService::new(
            store.push.clone(),
            store.groups.clone(),
            social.clone(),
            conversations.clone(),
            presence.clone(),
            clock.clone(),
            tern_core::push::PushConfig {
                providers: push_providers.configured().into_iter().collect(),
                private_text: config.push.private_text.clone(),
                notify_background: config.push.notify_background,
                webpush_allow_http: config.push.webpush.as_ref().is_some_and(|w| w.allow_http),
                max_age_ms: i64::try_from(config.push.max_age_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
        );
        // This node's connection ids start over: marks an earlier run left must not match them.
        push.node_started(node).await?;
        // Before any message commits: from now on each queues its push row with it.
        store.outbox.routes().set_push(push.enabled());
        let push_dispatcher = push.enabled().then(|| {
            tern_push::Dispatcher::start(
                store.outbox.clone(),
                push.clone(),
                push_providers,
                config.push_dispatch(),
                clock.clone(),
            )
        });
        let api = tern_api::Api::new(tern_api::Services {
            push,
            social,
            accounts,
            messages: messages.clone(),
            sync,
            groups,
            typing,
            conversations,
            presence: presence.clone(),
            search: tern_core::search::SearchService::new(
                store.search.clone(),
                store.history.clone(),
                store.groups.clone(),
                store.conversations.clone(),
            ),
        });
        // The HTTP API is another front door over the same handlers.
        let http_api = api.clone();
        let bus_for_http = bus.clone();
        let http_presence = presence.clone();
        let services = Services {
            api,
            observers,
            presence,
            bus,
            // Costs nothing while no webhook wants presence.
            presence_events: Some(tern_core::webhooks::PresenceEvents::start(
                store.outbox.clone(),
                clock.clone(),
            )),
        };
        let gateway = Gateway::new(services, registry, clock.clone(), gateway_config);

        let mut tasks = Vec::new();
        let frame_tls = tls.as_ref().map(|c| c.acceptor(&[])).transpose()?;
        tasks.push(tokio::spawn(gateway.clone().serve_tcp(tcp, frame_tls)));
        let http_stop = CancellationToken::new();
        let limiter = tern_http::key_limiter(config.api_requests_per_second);
        if let Some(limiter) = limiter.clone() {
            // Each key and each user calling the API leaves a state behind: drop the idle ones.
            let stop = http_stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => limiter.retain_recent(),
                    }
                }
            }));
        }
        let router = app(AppState {
            gateway: gateway.clone(),
            metrics: metrics.clone(),
            backend: backend.clone(),
            cluster: cluster.clone(),
            this_node,
            web_client: config.web_client,
        })
        .merge(tern_http::router(tern_http::HttpApi {
            admin_keys: tern_core::admin::AdminKeys::new(store.admin_keys.clone(), clock.clone()),
            limiter: limiter.clone(),
            api: http_api,
            system_user,
            presence: http_presence,
            users: tern_core::accounts::UserAdmin::new(
                store.accounts.clone(),
                store.social.clone(),
                bus_for_http.clone(),
                clock.clone(),
            ),
            webhooks: tern_core::webhooks::WebhookAdmin::new(store.outbox.clone(), clock.clone()),
            settings: settings.clone(),
            files: files.clone(),
            vapid_public_key,
        }))
        .layer(axum::middleware::from_fn(crate::http::client_addr));
        // Idle while nothing is queued; webhooks may be added through the API at any time.
        let dispatcher =
            tern_hooks::Dispatcher::start(store.outbox.clone(), config.dispatch(), clock.clone())
                .map_err(|e| ServerError::Webhooks(e.to_string()))?;
        let stop = http_stop.clone();
        let service = router.into_make_service_with_connect_info::<Peer>();
        let served = match &tls {
            None => tokio::spawn(async move {
                if let Err(e) = axum::serve(http, service)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            }),
            Some(certificates) => {
                let listener = TlsListener::new(
                    http,
                    certificates.acceptor(&[b"http/1.1"])?,
                    Duration::from_millis(config.login_timeout_ms),
                )
                .map_err(|source| ServerError::Bind {
                    addr: http_addr,
                    source,
                })?;
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, service)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                    {
                        tracing::error!(error = %e, "HTTPS listener failed");
                    }
                })
            }
        };
        tasks.push(served);
        // Histograms are summarised by the exporter; it needs a periodic turn to drain them.
        let stop = http_stop.clone();
        let measured = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        measured.record_metrics();
                        metrics.run_upkeep();
                    }
                }
            }
        }));
        // Uploads no message refers to go after their grace period; every node looks, and a
        // deletion two nodes race for happens once.
        let stop = http_stop.clone();
        let collect_every = Duration::from_secs(config.file_collect_interval_secs.max(1));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(collect_every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => match files.collect().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(uploads = n, "collected uploads no message refers to"),
                        Err(e) => tracing::warn!(error = %e, "collecting uploads failed"),
                    },
                }
            }
        }));
        tracing::info!(%tcp_addr, %http_addr, data_dir = %config.data_dir.display(), "tern is serving");
        Ok(Server {
            tcp_addr,
            http_addr,
            gateway,
            messages,
            store: backend,
            settings,
            settings_watch,
            config: config.clone(),
            cluster,
            dispatcher,
            push_dispatcher,
            http_stop,
            tasks,
            drain: Duration::from_millis(config.shutdown_drain_ms),
            tls,
        })
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Whether both listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the certificate and key files again and serves them to new handshakes; open
    /// connections are not touched. On error the previous certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(certificates) => {
                certificates.reload()?;
                tracing::info!(cert = %certificates.cert_path().display(), "TLS certificate reloaded");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Reads the content filter's word list again and puts it in force for every send and edit
    /// from now on; answers with the number of words. On error the previous list stays.
    pub fn reload_filter(&self) -> Result<usize, ConfigError> {
        self.settings
            .set_file_filter(self.config.load_filter()?, self.config.filter_action()?);
        let words = self.settings.filter().word_count;
        if self.config.filter_words_file.is_some() {
            tracing::info!(words, "content filter reloaded");
        }
        Ok(words)
    }

    /// The gateway, for tests that inspect the connection registry.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Graceful shutdown: stop accepting; let sessions finish in-flight requests and send a
    /// goodbye (up to the drain deadline); commit every queued message; close the store.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        if let Some(cluster) = &self.cluster {
            // Out of the node list first, so that reconnecting clients pick another node.
            cluster.withdraw(self.drain).await;
        }
        if !self.gateway.shutdown(self.drain).await {
            tracing::warn!(
                drain_ms = self.drain.as_millis() as u64,
                "some connections did not finish before the drain deadline"
            );
        }
        self.messages.close().await;
        if let Some(cluster) = &self.cluster {
            // After the last commit: its publications reach the other nodes' clients.
            cluster.close(self.drain).await;
        }
        // What it has not delivered stays in the outbox for the next start.
        self.dispatcher.stop().await;
        if let Some(d) = self.push_dispatcher {
            d.stop().await;
        }
        self.settings_watch.abort();
        self.http_stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.store.close().await;
        tracing::info!("shut down");
    }
}

/// Where clients reach this node: `advertise_host` if set, else the listeners' address, else
/// (listening on every address) this machine's host name.
fn advertised(
    config: &Config,
    node: tern_core::NodeId,
    epoch: u64,
    tcp: SocketAddr,
    http: SocketAddr,
    tls: bool,
) -> NodeInfo {
    let host = match &config.advertise_host {
        Some(h) => h.clone(),
        None if tcp.ip().is_unspecified() => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into()),
        None => match tcp.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
    };
    let (ws, web) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    NodeInfo {
        node_id: node.get(),
        epoch,
        tcp: format!("{host}:{}", tcp.port()),
        ws: format!("{ws}://{host}:{}/ws", http.port()),
        http: format!("{web}://{host}:{}", http.port()),
        connections: 0,
    }
}

/// The admin keys of the store `config` names, for `tern admin key …`: the keys, and the store
/// to close afterwards. On the embedded store the server must be stopped first (the data
/// directory has one writer); a PostgreSQL store may be shared with running nodes.
pub async fn open_admin_keys(
    config: &Config,
) -> Result<(tern_core::admin::AdminKeys, AdminStore), ServerError> {
    let backend = match &config.store {
        Some(url) => Backend::Postgres(PgStore::connect(url, config.postgres()).await?),
        None => Backend::Sqlite(SqliteStore::open(&config.data_dir, config.store())?),
    };
    let store: Arc<dyn tern_core::store::AdminKeyStore> = match &backend {
        Backend::Sqlite(s) => Arc::new(s.clone()),
        Backend::Postgres(s) => Arc::new(s.clone()),
    };
    Ok((
        tern_core::admin::AdminKeys::new(store, Arc::new(SystemClock)),
        AdminStore(backend),
    ))
}

/// The store behind [`open_admin_keys`], closed when done.
#[derive(Debug)]
pub struct AdminStore(Backend);

impl AdminStore {
    /// Closes the store (the embedded one commits and checkpoints first).
    pub async fn close(self) {
        self.0.close().await;
    }
}
