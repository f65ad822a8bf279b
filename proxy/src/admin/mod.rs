//! The admin HTTP listener (default 127.0.0.1:9797): liveness and
//! readiness for load balancers and orchestrators.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::server::Shared;

/// The admin routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(shared)
}

/// Serves the admin routes on `listener` in the background.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(shared)).await {
            warn!("admin listener stopped: {e}");
        }
    })
}

/// The process is up and serving.
async fn health() -> &'static str {
    "ok\n"
}

/// Every primary accepts connections (200), or which ones do not (503).
async fn ready(State(shared): State<Arc<Shared>>) -> (StatusCode, Json<serde_json::Value>) {
    let mut down = Vec::new();
    for (name, ds) in &shared.config.data_sources {
        let addr = format!("{}:{}", ds.url.host, ds.url.port);
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await,
            Ok(Ok(_))
        );
        if !reachable {
            down.push(serde_json::json!({ "data_source": name, "address": addr }));
        }
    }
    let status = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": down.is_empty(), "unreachable": down })),
    )
}

/// Binds the admin listener.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
