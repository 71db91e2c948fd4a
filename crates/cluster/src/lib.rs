//! Cluster state over Redis: the bus that carries each node's publications and signals to the
//! others, and the registry of live nodes with their client addresses and connections.
//!
//! Nothing here is a source of truth: PostgreSQL holds every message, seq and cursor. Redis
//! only makes delivery fast and lets clients find nodes; when it is lost, nodes keep serving
//! from the store, re-subscribe and re-register when it is back, and have every connection sync.

pub mod bus;
pub mod envelope;
pub mod nodes;

use std::{sync::Arc, time::Duration};

use tern_core::{Delivery, NodeId, presence::RemotePresence};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bus::RedisBus;
pub use nodes::NodeInfo;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT` (or `rediss://` with TLS, `redis://:PASSWORD@HOST:PORT/DB`).
    pub redis_url: String,
    /// This node.
    pub node: NodeId,
    /// When this node started (Unix ms).
    pub epoch: u64,
    /// Where clients reach this node.
    pub tcp: String,
    /// Where WebSocket clients reach this node.
    pub ws: String,
    /// This node's HTTP base.
    pub http: String,
    /// How often the node renews its registration and checks its subscription.
    pub heartbeat: Duration,
    /// How long a registration lives without renewal: a dead node leaves the list after this.
    pub ttl: Duration,
}

impl ClusterConfig {
    /// The default heartbeat.
    pub const HEARTBEAT: Duration = Duration::from_secs(2);
    /// The default registration lifetime.
    pub const TTL: Duration = Duration::from_secs(8);
}

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL is not one.
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    /// Redis could not be reached or refused.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The node could not register.
    #[error(transparent)]
    Join(#[from] nodes::JoinError),
}

/// This node's membership of the cluster.
#[derive(Debug)]
pub struct Cluster {
    bus: Arc<RedisBus>,
    info: NodeInfo,
    conn: redis::aio::ConnectionManager,
    /// Stops renewing the registration.
    withdrawn: CancellationToken,
    /// Stops the bus.
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    publisher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to Redis, registers this node and subscribes to the bus; from then on what
    /// other nodes publish reaches `delivery`, and the devices they announce `presence`.
    pub async fn join(
        config: ClusterConfig,
        delivery: Arc<dyn Delivery>,
        presence: Arc<dyn RemotePresence>,
    ) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str()).map_err(ClusterError::Url)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.heartbeat))
            .set_response_timeout(Some(config.heartbeat))
            .set_max_delay(Duration::from_secs(1));
        let mut conn = client.get_connection_manager_with_config(manager).await?;
        let info = NodeInfo {
            node_id: config.node.get(),
            epoch: config.epoch,
            tcp: config.tcp.clone(),
            ws: config.ws.clone(),
            http: config.http.clone(),
            connections: 0,
        };
        nodes::join(&mut conn, &info, config.ttl).await?;
        let stop = CancellationToken::new();
        let running = bus::start(
            client,
            conn.clone(),
            bus::Here {
                node: config.node,
                epoch: config.epoch,
                delivery,
                presence: presence.clone(),
            },
            config.heartbeat,
            stop.clone(),
        )
        .await?;
        let withdrawn = CancellationToken::new();
        let renewer = {
            let bus = running.bus.clone();
            let mut drifted = false;
            let mut conn = conn.clone();
            let info = info.clone();
            let stop = withdrawn.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(config.heartbeat);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {
                            if let Err(e) = nodes::renew(&mut conn, &info, config.ttl).await {
                                tracing::warn!(error = %e, "cannot renew this node's registration in Redis");
                                continue;
                            }
                            // The survivors forget a dead node's devices once its entry expired.
                            let listed_at = std::time::Instant::now();
                            match nodes::list(&mut conn).await {
                                Ok(live) => {
                                    let alive: Vec<NodeId> = live
                                        .iter()
                                        .filter_map(|n| NodeId::new(n.node_id))
                                        .collect();
                                    presence.retain_nodes(&alive, listed_at);
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot list the nodes"),
                            }
                            // The registry hash follows this node's logins and closes; one that
                            // stays off the local count (a write lost with Redis) is rewritten.
                            let counted: redis::RedisResult<u64> = redis::cmd("HLEN")
                                .arg(nodes::connections_key(info.node_id))
                                .query_async(&mut conn)
                                .await;
                            if let Ok(counted) = counted {
                                let local = presence.local_devices().len() as u64;
                                if counted == local {
                                    drifted = false;
                                } else if drifted {
                                    tracing::info!(counted, local, "rewriting this node's connection registry in Redis");
                                    bus.announce(false);
                                    drifted = false;
                                } else {
                                    drifted = true;
                                }
                            }
                        }
                    }
                }
            })
        };
        tracing::info!(node = %config.node, epoch = config.epoch, "joined the cluster");
        Ok(Cluster {
            bus: running.bus,
            info,
            conn,
            withdrawn,
            stop,
            tasks: std::sync::Mutex::new(vec![running.subscriber, renewer]),
            publisher: std::sync::Mutex::new(Some(running.publisher)),
        })
    }

    /// The bus the services publish on.
    pub fn bus(&self) -> Arc<RedisBus> {
        self.bus.clone()
    }

    /// This node as the registry lists it.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Every live node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        Ok(nodes::list(&mut self.conn.clone()).await?)
    }

    /// Whether Redis answers now.
    pub async fn ready(&self) -> Result<(), ClusterError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Leaves the node list, so that clients and load balancers stop choosing this node; the
    /// bus keeps running for the commits still in flight. The first step of a drain.
    pub async fn withdraw(&self, wait: Duration) {
        self.withdrawn.cancel();
        let mut conn = self.conn.clone();
        match tokio::time::timeout(wait, nodes::leave(&mut conn, &self.info)).await {
            Ok(Ok(())) => tracing::info!(node = self.info.node_id, "left the node list"),
            _ => tracing::warn!(
                node = self.info.node_id,
                "cannot leave the node list; the entry expires by itself"
            ),
        }
    }

    /// Publishes what is still queued (waiting up to `drain`) and stops the bus. Call after
    /// the last commit; withdraws first if that was not done.
    pub async fn close(&self, drain: Duration) {
        if !self.withdrawn.is_cancelled() {
            self.withdraw(drain).await;
        }
        self.stop.cancel();
        let publisher = self
            .publisher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = publisher {
            let _ = tokio::time::timeout(drain, p).await;
        }
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}
