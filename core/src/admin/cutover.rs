//! The admin endpoints a migrator drives during a resharding cutover
//! (described in `docs/admin-api.yaml`): pausing statements per logical
//! table, staging and activating a rules version, and the client sessions
//! with the rules version each runs on.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use shardgate_admin_api::{
    ActivateRequest, Activated, Discarded, Pause, PauseRequest, ResumeRequest, Staged,
};
use shardgate_rules::config::Config;

use super::api::error;
use crate::backend::Backend;
use crate::pause::PauseTerms;
use crate::proxy::Proxy;
use crate::staging::ActivateError;

/// Bounds of `max_queue_ms`: a statement waits at least 1 ms, at most 10 min.
const MAX_QUEUE_MS: std::ops::RangeInclusive<u64> = 1..=600_000;
/// Bounds of `lease_ms`: at most a day.
const LEASE_MS: std::ops::RangeInclusive<u64> = 1..=86_400_000;

/// axum's rejection of a JSON body, as the API's JSON error with its
/// status (400 syntax, 413 too large, 415 not JSON, 422 wrong shape).
fn bad_body(rejection: &JsonRejection, example: &str) -> Response {
    error(
        rejection.status(),
        format!(
            "expected a JSON body like {example}: {}",
            rejection.body_text()
        ),
    )
}

/// Whether `name` (lower case) is a sharded or broadcast table of `config`.
fn is_logical_table(config: &Config, name: &str) -> bool {
    config.tables.keys().any(|t| t.eq_ignore_ascii_case(name))
        || config
            .broadcast
            .tables
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
}

/// The pauses in effect with the in-flight transactions of each.
fn pauses_json<B: Backend>(proxy: &Proxy<B>) -> Vec<Pause> {
    proxy
        .pauses()
        .list()
        .into_iter()
        .map(|p| Pause {
            in_flight_transactions: proxy.sessions().in_flight(&p.table) as u64,
            table: p.table,
            scope: p.scope,
            since_unix_ms: p.since_unix_ms,
            max_queue_ms: p.max_queue_ms,
            lease_remaining_ms: p.lease_remaining_ms,
            queued: p.queued as u64,
            refused: p.refused,
        })
        .collect()
}

/// `GET /api/pauses`.
pub async fn pauses<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Vec<Pause>> {
    Json(pauses_json(&proxy))
}

/// `POST /api/pauses`: pauses tables, or renews and updates their pauses.
pub async fn pause<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    body: Result<Json<PauseRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return bad_body(&rejection, r#"{"tables": ["users"], "scope": "writes"}"#)
        }
    };
    if request.tables.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name at least one table");
    }
    for (key, value, range) in [
        ("max_queue_ms", request.max_queue_ms, MAX_QUEUE_MS),
        ("lease_ms", request.lease_ms, LEASE_MS),
    ] {
        if !range.contains(&value) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{key} must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    let tables: Vec<String> = request
        .tables
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let active = proxy.current();
    let unknown: Vec<&String> = {
        let staged = proxy.staged_slot();
        tables
            .iter()
            .filter(|t| {
                !is_logical_table(&active.config, t)
                    && !staged
                        .as_ref()
                        .is_some_and(|s| is_logical_table(s.config(), t))
            })
            .collect()
    };
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|t| t.as_str()).collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no sharded or broadcast table named {} in the rules in force or staged; nothing was paused",
                names.join(", ")
            ),
        );
    }
    let terms = PauseTerms {
        scope: request.scope,
        max_queue: Duration::from_millis(request.max_queue_ms),
        lease: Duration::from_millis(request.lease_ms),
    };
    proxy.pauses().pause(&tables, terms);
    tracing::info!(?tables, ?terms, "tables paused for a cutover");
    Json(pauses_json(&proxy)).into_response()
}

/// `POST /api/pauses/resume`: lifts pauses; their queued statements go on.
pub async fn resume<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    body: Result<Json<ResumeRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_body(&rejection, r#"{"tables": ["users"]}"#),
    };
    let tables: Vec<String> = request
        .tables
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let lifted = proxy.pauses().resume(&tables);
    tracing::info!(?lifted, "paused tables resumed");
    Json(pauses_json(&proxy)).into_response()
}

/// `PUT /api/rules/staged`: a whole configuration file's TOML text.
pub async fn stage<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("text/plain" | "application/toml")
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the configuration file's text as Content-Type: text/plain or application/toml",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the configuration is not UTF-8");
    };
    match proxy.stage(text).await {
        Ok(staged) => Json(Staged {
            staged_version: staged.version,
            changes: staged.changes,
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `DELETE /api/rules/staged`.
pub async fn discard_staged<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Discarded> {
    Json(Discarded {
        discarded_version: proxy.discard_staged(),
    })
}

/// `POST /api/rules/activate`: the staged version becomes current.
pub async fn activate<B: Backend>(
    State(proxy): State<Arc<Proxy<B>>>,
    body: Result<Json<ActivateRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_body(&rejection, r#"{"version": 2}"#),
    };
    match proxy.activate(request.version).await {
        Ok(activated) => Json(Activated {
            active_version: activated.version,
            sessions_on_older_versions: activated.sessions_on_older_versions as u64,
            previous_config_file: activated.previous_file.map(|p| p.display().to_string()),
        })
        .into_response(),
        Err(e @ ActivateError::NotStaged { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => {
            tracing::warn!("staged rules version not activated: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// `GET /api/sessions`.
pub async fn sessions<B: Backend>(State(proxy): State<Arc<Proxy<B>>>) -> Json<Value> {
    let list = proxy.sessions().list(proxy.version());
    Json(json!(list))
}
