//! The JSON endpoints of the admin API (described in `docs/admin-api.yaml`):
//! pools, rules, route previews, alerts, and the Prometheus exposition.
//! Every error, bad input included, is `{"error": "..."}` with a 4xx status.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shardgate_rules::config::{
    AlgorithmConfig, BalanceStrategy, Config, Credential, PrimaryReads, ReadConfig,
    ReadConsistency, ReadFallback, StrategyConfig, TransactionReads,
};

use crate::backend::pool::HealthCheck;
use crate::backend::{Backend, Connection, Pool};
use crate::proxy::Proxy;
use shardgate_sql::shard::preview::preview;

/// Largest size `POST /api/pools/{name}/resize` accepts.
pub const MAX_MANUAL_SIZE: usize = 1000;

/// An error answer: `{"error": "..."}` with a status.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(error_body(message))).into_response()
}

/// The body of every error answer (`Error` in docs/admin-api.yaml), also
/// for the refusals the listener writes before a request reaches a route.
pub(super) fn error_body(message: impl Into<String>) -> Value {
    json!({ "error": message.into() })
}

/// A request to a path the API does not have.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /openapi.yaml describes the API",
    )
}

/// A known path with a method it does not take (axum adds `Allow`).
pub async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see the Allow header",
    )
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn health_json(check: &Option<HealthCheck>) -> Value {
    match check {
        None => Value::Null,
        Some(c) => json!({
            "at_ms": c.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            "ok": c.ok,
            "latency_ms": millis(c.latency),
            "error": c.error,
        }),
    }
}

/// One pool as `GET /api/pools` lists it.
pub fn pool_json<C: Connection>(pool: &Pool<C>) -> Value {
    let s = pool.stats();
    let config = pool.config();
    json!({
        "name": pool.name(),
        "data_source": pool.data_source(),
        "role": pool.role().label(),
        "address": format!("{}:{}", pool.url().host, pool.url().port),
        "max": s.max,
        "size": s.open,
        "active": s.active,
        "idle": s.idle,
        "waiting": s.waiting,
        "peak": s.peak,
        "min_idle": config.min_idle().min(s.max),
        "acquired": s.acquired,
        "timeouts": s.timeouts,
        "errors": s.errors,
        "acquire_ms": { "p50": millis(s.acquire_p50), "p99": millis(s.acquire_p99) },
        "adaptive": {
            "enabled": config.adaptive,
            "min_size": config.min_size,
            "max_bound": config.max_bound,
            "resize_interval_ms": config.resize_interval_ms,
        },
        "last_health_check": health_json(&s.last_health_check),
        "down": pool.down().map(|d| json!({
            "since_ms": u64::try_from(d.since.elapsed().as_millis()).unwrap_or(u64::MAX),
            "reason": d.why,
        })),
        "lag_seconds": pool.replication().and_then(|r| r.lag).map(|d| d.as_secs_f64()),
        "replication": pool.replication().map(|r| json!({
            "usable": r.usable,
            "reason": r.reason,
            "lag_seconds": r.lag.map(|d| d.as_secs_f64()),
            "applied": r.applied.to_string(),
            "checked_at_ms": r.checked_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        })),
    })
}

pub async fn pools<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Value> {
    let shared = proxy.current();
    let pools: Vec<Value> = shared.all_pools().map(|p| pool_json(p)).collect();
    Json(json!({ "pools": pools }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeRequest {
    size: usize,
}

pub async fn resize<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ResizeRequest>, JsonRejection>,
) -> Response {
    let shared = proxy.current();
    // axum's own rejections answer in plain text; the API answers in JSON,
    // keeping their status (400 bad encoding or syntax, 413 too large, 415
    // not declared JSON, 422 not the expected shape).
    let Path(name) = match name {
        Ok(name) => name,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let Some(pool) = shared.pool_named(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no pool named {name}; GET /api/pools lists them"),
        );
    };
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                format!(
                    "expected a JSON body like {{\"size\": 30}}: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    if request.size == 0 || request.size > MAX_MANUAL_SIZE {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("size must be between 1 and {MAX_MANUAL_SIZE}"),
        );
    }
    let from = pool.resize(request.size, "api");
    Json(json!({ "name": name, "from": from, "to": request.size, "pool": pool_json(pool) }))
        .into_response()
}

fn strategy_json(strategy: &Option<StrategyConfig>) -> Value {
    let Some(s) = strategy else {
        return Value::Null;
    };
    let algorithm = match &s.algorithm {
        AlgorithmConfig::Mod { count } => json!({ "type": "mod", "count": count.get() }),
        AlgorithmConfig::Crc32Mod { count } => {
            json!({ "type": "crc32_mod", "count": count.get() })
        }
        AlgorithmConfig::Month => json!({ "type": "month", "format": "%Y%m" }),
        AlgorithmConfig::Expression(template) => {
            json!({ "type": "expression", "expression": template.text() })
        }
    };
    json!({ "column": s.column, "algorithm": algorithm })
}

fn read_json(read: &ReadConfig) -> Value {
    let strategy = match read.strategy {
        BalanceStrategy::RoundRobin => "round_robin",
        BalanceStrategy::WeightedRoundRobin => "weighted_round_robin",
        BalanceStrategy::LeastConnections => "least_connections",
        BalanceStrategy::ResponseTime => "response_time",
        BalanceStrategy::Adaptive => "adaptive",
    };
    json!({
        "strategy": strategy,
        "weights": read.weights,
        "primary_reads": match read.primary_reads {
            PrimaryReads::Fallback => "fallback",
            PrimaryReads::Always => "always",
        },
        "fallback": match read.fallback {
            ReadFallback::Primary => "primary",
            ReadFallback::Error => "error",
        },
        "max_replica_lag_ms": read.max_replica_lag_ms,
        "monitor_interval_ms": read.monitor_interval_ms,
    })
}

/// The effective configuration with secrets (passwords, the admin token)
/// redacted.
pub fn rules_json(config: &Config, version: u64) -> Value {
    let redacted = |secret: &str| if secret.is_empty() { "" } else { "***" };
    let data_sources: serde_json::Map<String, Value> = config
        .data_sources
        .iter()
        .map(|(name, ds)| {
            let p = &ds.pool;
            let value = json!({
                "url": ds.url.to_string(),
                "replicas": ds.replicas.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "pool": {
                    "max_size": p.max_size,
                    "min_idle": p.min_idle(),
                    "acquire_timeout_ms": p.acquire_timeout_ms,
                    "adaptive": p.adaptive,
                    "min_size": p.min_size,
                    "max_bound": p.max_bound,
                    "resize_interval_ms": p.resize_interval_ms,
                    "validate_idle_ms": p.validate_idle_ms,
                    "validation_timeout_ms": p.validation_timeout_ms,
                    "health_check_interval_ms": p.health_check_interval_ms,
                    "connect_timeout_ms": p.connect_timeout_ms,
                    "query_timeout_ms": p.query_timeout_ms,
                },
                "read": read_json(&ds.read),
            });
            (name.clone(), value)
        })
        .collect();
    let tables: serde_json::Map<String, Value> = config
        .tables
        .iter()
        .map(|(name, t)| {
            let value = json!({
                "nodes": t.nodes,
                "database": strategy_json(&t.database),
                "table": strategy_json(&t.table),
                "key": t.key.as_ref().map(|k| json!({ "column": k.column, "generator": "snowflake" })),
            });
            (name.clone(), value)
        })
        .collect();
    let server = &config.server;
    json!({
        "version": version,
        "server": {
            "mysql_listen": server.mysql_listen,
            "admin_listen": server.admin_listen,
            "database": server.database,
            "default_data_source": server.default_data_source,
            "read_write_splitting": server.read_write_splitting,
            "read_consistency": match server.read_consistency {
                ReadConsistency::Session => "session",
                ReadConsistency::Eventual => "eventual",
                ReadConsistency::Proxy => "proxy",
            },
            "transaction_reads": match server.transaction_reads {
                TransactionReads::Primary => "primary",
                TransactionReads::Replica => "replica",
            },
            "max_allowed_packet": server.max_allowed_packet,
            "users": server.users.iter().map(|u| json!({
                "name": u.name,
                // Whether it has a secret, never the secret or its hash.
                "password": if u.credential == Credential::default() { "" } else { "***" },
                "auth_plugin": u.plugin().name(),
            })).collect::<Vec<_>>(),
            "admin_token": server.admin_token.as_deref().map(redacted),
        },
        "data_sources": data_sources,
        "tables": tables,
        "broadcast": { "tables": config.broadcast.tables },
        "binding": config.binding.iter().map(|b| json!({ "tables": b.tables })).collect::<Vec<_>>(),
        "snowflake": {
            "epoch_ms": config.snowflake.epoch.unix_millis(),
            "worker_id": config.snowflake.worker_id.get(),
            "max_clock_backward_ms": config.snowflake.max_clock_backward_ms,
        },
        "alerts": {
            "webhook": config.alerts.webhook.as_deref().map(redact_url_password),
            "pool_usage_ratio": config.alerts.pool_usage_ratio,
            "pool_usage_sustain_ms": config.alerts.pool_usage_sustain_ms,
        },
    })
}

/// `http://user:secret@host/...` becomes `http://user:***@host/...`, as
/// backend URLs show; a URL without a password stays as it is.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// `GET /api/rules`: the configuration in force, its version and the
/// staged version (null when nothing is staged).
pub async fn rules<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Value> {
    let shared = proxy.current();
    let mut rules = rules_json(&shared.config, shared.version);
    rules["staged_version"] = json!(proxy.staged_version());
    Json(rules)
}

#[derive(Debug, Deserialize)]
pub struct RouteQuery {
    sql: Option<String>,
}

pub async fn route<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    query: Result<Query<RouteQuery>, QueryRejection>,
) -> Response {
    let shared = proxy.current();
    // A query string that does not decode (e.g. `sql` given twice) is the
    // caller's mistake: JSON 400 like the other errors, not axum's text.
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "pass the statement once as ?sql=SELECT ... (URL-encoded): {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let Some(sql) = query.sql.filter(|s| !s.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "pass the statement as ?sql=SELECT ... (URL-encoded)",
        );
    };
    let db = shared.first_database();
    let kinds = db.known_kinds(db.table_columns_learnt().iter().map(String::as_str));
    let ctx = shardgate_sql::shard::plan::PlanContext {
        dialect: B::dialect(),
        rules: &db.rules,
        default_data_source: &db.default_data_source,
        keys: &shared.keys,
        kinds: &kinds,
    };
    match preview(&sql, &db.name, &ctx) {
        Ok(p) => Json(json!({ "sql": sql, "preview": p })).into_response(),
        Err(err) => {
            // The admin API answers in the backend's clients' terms.
            let err = B::client_error(&err.into());
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "sql": sql,
                    "error": err.message,
                    "code": err.code,
                    "sqlstate": String::from_utf8_lossy(&err.sqlstate),
                })),
            )
                .into_response()
        }
    }
}

/// Everything the dashboard shows, in one request: counters (rates are
/// the client's deltas between two snapshots), pools and recent alerts.
pub async fn stats<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Value> {
    let shared = proxy.current();
    let at_ms = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let pools: Vec<Value> = shared.all_pools().map(|p| pool_json(p)).collect();
    Json(json!({
        "at_ms": at_ms,
        "counters": shared.metrics.snapshot(),
        "snowflake_ids": shared.keys.issued(),
        "data_sources": shared.config.data_sources.keys().collect::<Vec<_>>(),
        "tables": shared.config.tables.keys().chain(shared.config.broadcast.tables.iter()).collect::<Vec<_>>(),
        "pools": pools,
        "alerts": shared.alerts.recent(),
    }))
}

/// `POST /api/reload`: re-reads the configuration file; an invalid one
/// is refused with its errors and the old configuration keeps serving.
pub async fn reload<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Response {
    match proxy.reload().await {
        Ok(r) => Json(json!({ "reloaded": true, "version": r.version, "changes": r.changes }))
            .into_response(),
        Err(e) => {
            let status = match e {
                crate::reload::ReloadError::NoFile => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (
                status,
                Json(json!({ "reloaded": false, "error": e.to_string(), "version": proxy.version() })),
            )
                .into_response()
        }
    }
}

pub async fn alerts<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Value> {
    let shared = proxy.current();
    Json(json!({ "alerts": shared.alerts.recent() }))
}

pub async fn metrics<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Response {
    let shared = proxy.current();
    let text = shared
        .metrics
        .render(shared.all_pools(), shared.keys.issued());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::redact_url_password;

    #[test]
    fn webhook_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("http://ops:hunter2@alerts.local:8080/hook?x=1"),
            "http://ops:***@alerts.local:8080/hook?x=1"
        );
        assert_eq!(
            redact_url_password("http://alerts.local/a@b"),
            "http://alerts.local/a@b"
        );
        assert_eq!(
            redact_url_password("http://ops@alerts.local/"),
            "http://ops@alerts.local/"
        );
    }
}
