//! The admin HTTP listener (default 127.0.0.1:9797): liveness and
//! readiness for orchestrators, the JSON API for operators and the
//! migrator (cutover pauses, staged rules versions, sessions), Prometheus
//! metrics, and the dashboard.
//!
//! Access: on loopback, reading is open and mutating endpoints need the
//! bearer token when one is configured (`server.admin_token`). Bound beyond
//! loopback, a token is required (the proxy refuses to start without one)
//! and every endpoint but `/health` and `/ready` asks for it.

mod api;
mod body;
mod cutover;
mod dashboard;
mod head;
mod listener;
mod prefixed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::proxy::Proxy;

pub use api::{pool_json, rules_json};

/// Who may call what. The token is read from the current configuration
/// on each request, so a reload can change it.
struct Access<B: Backend> {
    proxy: Arc<Proxy<B>>,
    /// Every endpoint (but liveness/readiness) needs the token.
    everything: bool,
}

impl<B: Backend> Clone for Access<B> {
    fn clone(&self) -> Self {
        Access {
            proxy: self.proxy.clone(),
            everything: self.everything,
        }
    }
}

/// The admin routes.
pub fn router<B: Backend>(proxy: Arc<Proxy<B>>, loopback: bool) -> Router {
    let access = Access {
        proxy: proxy.clone(),
        everything: !loopback,
    };
    let guarded = Router::new()
        .route("/", get(dashboard::page))
        .route("/api/pools", get(api::pools))
        .route("/api/pools/{name}/resize", post(api::resize))
        .route("/api/rules", get(api::rules))
        .route("/api/route", get(api::route))
        .route("/api/alerts", get(api::alerts))
        .route("/api/stats", get(api::stats))
        .route("/api/reload", post(api::reload))
        .route("/api/pauses", get(cutover::pauses).post(cutover::pause))
        .route("/api/pauses/resume", post(cutover::resume))
        .route(
            "/api/rules/staged",
            put(cutover::stage).delete(cutover::discard_staged),
        )
        .route("/api/rules/activate", post(cutover::activate))
        .route("/api/sessions", get(cutover::sessions))
        .route("/metrics", get(api::metrics))
        .route("/openapi.yaml", get(dashboard::openapi))
        .layer(middleware::from_fn_with_state(access, authorize));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(guarded)
        // JSON like every other error (axum's defaults have empty bodies).
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .with_state(proxy)
}

/// Checks the bearer token where one is needed.
async fn authorize<B: Backend>(
    State(access): State<Access<B>>,
    request: Request,
    next: Next,
) -> Response {
    let mutating = request.method() != Method::GET && request.method() != Method::HEAD;
    if !(mutating || access.everything) {
        return next.run(request).await;
    }
    let shared = access.proxy.current();
    let Some(token) = &shared.config.server.admin_token else {
        // Loopback without a token: the host's own users are trusted.
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        let mut response = api::error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <server.admin_token>'",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

/// The credentials of `Authorization: Bearer <token>`; the scheme's name
/// is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the admin routes on `listener` in the background; aborting the
/// task stops the listener and its open connections.
pub fn serve<B: Backend>(listener: TcpListener, proxy: Arc<Proxy<B>>) -> JoinHandle<()> {
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let routes = router(proxy.clone(), loopback);
    tokio::spawn(listener::run(
        listener,
        routes,
        move || proxy.current().admin_tls.clone(),
        listener::Deadlines::SERVED,
    ))
}

/// The process is up and serving.
async fn health() -> &'static str {
    "ok\n"
}

/// Every primary accepts connections (200), or which ones do not (503).
async fn ready<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let shared = proxy.current();
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
