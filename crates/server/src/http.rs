//! The HTTP listener: WebSocket sessions at `/ws`, `/healthz` (the process), `/readyz` (the
//! store and Redis answer), the live nodes at `/v1/nodes`, Prometheus `/metrics`, and the web
//! client's files on every other path.

use std::sync::Arc;

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tern_cluster::{Cluster, NodeInfo};
use tern_gateway::Gateway;

use crate::{listen::Peer, server::Backend};

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) metrics: PrometheusHandle,
    /// The store, which readiness asks.
    pub(crate) backend: Backend,
    /// The cluster, when this node is in one.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// This node as clients reach it.
    pub(crate) this_node: NodeInfo,
    /// Whether the web client is served (`web_client`).
    pub(crate) web_client: bool,
}

/// The HTTP routes; a plain `Router` so tests can drive it without a socket.
///
/// The web client's files are the fallback, so every route (and the HTTP API's, merged in
/// later, which answers unknown paths under `/v1` itself) takes precedence over them.
pub(crate) fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/nodes", get(nodes))
        .route("/metrics", get(metrics));
    let router = if state.web_client {
        router.fallback_service(crate::web::assets())
    } else {
        router.fallback(crate::web::not_found)
    };
    router.with_state(state)
}

/// Hands the client's address to the HTTP API, which counts failed user tokens per address.
pub(crate) async fn client_addr(
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    request.extensions_mut().insert(tern_http::ClientAddr(peer));
    next.run(request).await
}

async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    state.gateway.clone().upgrade_websocket(request, peer)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.gateway.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// 200 when this node can serve: not draining, its store answers and (in a cluster) Redis
/// answers; 503 with what is wrong otherwise. Health (`/healthz`) stays about the process, so an
/// orchestrator does not restart a node for an outage of PostgreSQL or Redis.
async fn readyz(State(state): State<AppState>) -> Response {
    let draining = state.gateway.is_shutting_down();
    let store = state.backend.ping().await.err().map(|e| e.to_string());
    let redis = match &state.cluster {
        Some(c) => c.ready().await.err().map(|e| e.to_string()),
        None => None,
    };
    let ready = !draining && store.is_none() && redis.is_none();
    let body = serde_json::json!({
        "ready": ready,
        "draining": draining,
        "store": store.as_deref().unwrap_or("ok"),
        "redis": match (&state.cluster, &redis) {
            (None, _) => "not used",
            (Some(_), None) => "ok",
            (Some(_), Some(e)) => e.as_str(),
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The live nodes' client addresses (from Redis in a cluster; this node alone otherwise), for
/// clients choosing a node and for load balancers.
async fn nodes(State(state): State<AppState>) -> Response {
    let nodes = match &state.cluster {
        None => vec![NodeInfo {
            connections: state.gateway.registry().connection_count() as u64,
            ..state.this_node.clone()
        }],
        Some(c) => match c.nodes().await {
            Ok(n) => n,
            Err(e) => {
                let body = serde_json::json!({
                    "code": tern_proto::ErrorCode::Unavailable as i32,
                    "name": tern_proto::ErrorCode::Unavailable.name(),
                    "message": format!("the node list is in Redis, which does not answer: {e}"),
                });
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            }
        },
    };
    axum::Json(serde_json::json!({ "nodes": nodes })).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
