//! The node registry: each live node's client addresses under a Redis key that expires unless
//! the node renews it, so a node that dies leaves the list within one TTL without anyone
//! having to notice.

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// One live node, as clients and load balancers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub node_id: u32,
    /// When the node started (Unix ms); a node that restarts keeps its id and gets a new epoch.
    pub epoch: u64,
    /// Where clients connect with the binary protocol over TCP (`host:port`).
    pub tcp: String,
    /// Where clients connect with WebSocket (`ws://host:port/ws`, `wss://` with TLS).
    pub ws: String,
    /// The node's HTTP base (`http://host:port`).
    pub http: String,
    /// Its logged-in connections when the list was read (for choosing the least loaded).
    #[serde(default)]
    pub connections: u64,
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Redis refused or could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Another live node has this node's id.
    #[error(
        "node id {node} is registered by another live node (started at {epoch}); give each node its own node_id"
    )]
    Taken {
        /// The id.
        node: u32,
        /// The other node's epoch.
        epoch: u64,
    },
}

fn key(node: u32) -> String {
    format!("tern:node:{node}")
}

/// The hash of a node's connections (connection id → `user device platform`), which expires
/// with the node's entry unless the node renews both.
pub(crate) fn connections_key(node: u32) -> String {
    format!("tern:conns:{node}")
}

/// Sets node `node`'s entry to `value` for `ttl`, only if it is absent (`NX`) or present
/// (`XX`); whether it was set.
async fn set_entry(
    conn: &mut redis::aio::ConnectionManager,
    node: u32,
    value: &str,
    ttl: Duration,
    condition: &str,
) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key(node))
        .arg(value)
        .arg(condition)
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

/// Registers `info` (waiting up to `ttl` for a previous incarnation's key to expire, as after a
/// crash and a quick restart with a configured id).
pub(crate) async fn join(
    conn: &mut redis::aio::ConnectionManager,
    info: &NodeInfo,
    ttl: Duration,
) -> Result<(), JoinError> {
    let value = serde_json::to_string(info).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_millis(500);
    loop {
        if set_entry(conn, info.node_id, &value, ttl, "NX").await? {
            return Ok(());
        }
        let other: Option<String> = conn.get(key(info.node_id)).await?;
        let other: Option<NodeInfo> = other.and_then(|s| serde_json::from_str(&s).ok());
        match other {
            Some(o) if o.epoch == info.epoch => return Ok(()),
            Some(o) if tokio::time::Instant::now() >= deadline => {
                return Err(JoinError::Taken {
                    node: info.node_id,
                    epoch: o.epoch,
                });
            }
            Some(o) => {
                tracing::warn!(
                    node = info.node_id,
                    other_epoch = o.epoch,
                    "node id still registered by an earlier process; waiting for it to expire"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None => {}
        }
    }
}

/// Renews the key; registers again when it is gone (Redis restarted or was flushed).
pub(crate) async fn renew(
    conn: &mut redis::aio::ConnectionManager,
    info: &NodeInfo,
    ttl: Duration,
) -> redis::RedisResult<()> {
    let value = serde_json::to_string(info).unwrap_or_default();
    let renewed = set_entry(conn, info.node_id, &value, ttl, "XX").await?;
    // The connection registry lives as long as the node entry does.
    let _: () = redis::cmd("PEXPIRE")
        .arg(connections_key(info.node_id))
        .arg(ttl.as_millis() as u64)
        .query_async(conn)
        .await?;
    if !renewed {
        if set_entry(conn, info.node_id, &value, ttl, "NX").await? {
            tracing::info!(node = info.node_id, "registered again in Redis");
        } else {
            tracing::error!(node = info.node_id, "another node took this node's id");
        }
    }
    Ok(())
}

/// Removes the key, if it is still this incarnation's.
pub(crate) async fn leave(
    conn: &mut redis::aio::ConnectionManager,
    info: &NodeInfo,
) -> redis::RedisResult<()> {
    let current: Option<String> = conn.get(key(info.node_id)).await?;
    let mine = current
        .and_then(|s| serde_json::from_str::<NodeInfo>(&s).ok())
        .is_some_and(|o| o.epoch == info.epoch);
    if mine {
        let _: () = conn.del(key(info.node_id)).await?;
        let _: () = conn.del(connections_key(info.node_id)).await?;
    }
    Ok(())
}

/// Every live node, by id.
pub(crate) async fn list(
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<Vec<NodeInfo>> {
    let mut keys: Vec<String> = Vec::new();
    {
        let mut iter = conn.scan_match::<_, String>("tern:node:*").await?;
        while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
            keys.push(k?);
        }
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    let mut nodes: Vec<NodeInfo> = values
        .into_iter()
        .flatten()
        .filter_map(|s| serde_json::from_str(&s).ok())
        .collect();
    nodes.sort_by_key(|n| n.node_id);
    nodes.dedup_by_key(|n| n.node_id);
    let mut pipe = redis::pipe();
    for n in &nodes {
        pipe.hlen(connections_key(n.node_id));
    }
    let counts: Vec<u64> = pipe.query_async(conn).await?;
    for (n, c) in nodes.iter_mut().zip(counts) {
        n.connections = c;
    }
    Ok(nodes)
}
