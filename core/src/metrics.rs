//! The proxy's Prometheus metrics: one registry per proxy (no globals),
//! counters bumped where things happen, gauges read from the pools when
//! scraped. Labels are bounded: data source, user, statement kind, error
//! type, alert name, configured table — never SQL text.

use std::collections::BTreeMap;

use serde::Serialize;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::backend::{Connection, Pool};

/// Latency buckets in seconds, from 50 µs (a pass-through point select)
/// to 10 s (a pool wait that is about to time out).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    statements: IntCounterVec,
    statement_seconds: HistogramVec,
    errors: IntCounterVec,
    failed_logins: IntCounterVec,
    idle_sessions_closed: IntCounter,
    routed_statements: IntCounterVec,
    routed_rows: IntCounterVec,
    partial_commits: IntCounter,
    alerts: IntCounterVec,
    snowflake_ids: IntGaugeVec,
    pool_acquire_seconds: HistogramVec,
    pool_resizes: IntCounterVec,
    pool_gauges: IntGaugeVec,
    pool_events: IntCounterVec,
    replica_transitions: IntCounterVec,
    replica_gauges: prometheus::GaugeVec,
    paused_tables: IntGauge,
    paused_statements: IntGauge,
    pause_refused: IntCounterVec,
    rules_version: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(registry, &metric, name);
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(registry, &metric, name);
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(registry, &metric, name);
    metric
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: &M,
    name: &str,
) {
    // Names are fixed and distinct, so registration cannot collide.
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name} registered twice: {e}"));
}

/// Plain figures of the counters (see [`Metrics::snapshot`]).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    pub statements: u64,
    pub errors: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Error replies by type (backend, refused, pool_exhausted, ...).
    pub errors_by_type: BTreeMap<String, u64>,
    /// Cumulative counts per upper bound (seconds) of all statements.
    pub latency_buckets: Vec<(f64, u64)>,
    pub latency_count: u64,
    pub latency_sum: f64,
    pub routed: Vec<Routed>,
    pub partial_commits: u64,
}

/// Statements (and INSERTed rows) sent to one data source for one table.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    pub data_source: String,
    pub table: String,
    pub statements: u64,
    pub rows: u64,
}

/// How a client statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Error,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Metrics {
            statements: counter(
                r,
                "shardgate_statements_total",
                "Client statements by kind (select, insert, ...), outcome (ok, error) and user.",
                &["kind", "outcome", "user"],
            ),
            statement_seconds: histogram(
                r,
                "shardgate_statement_duration_seconds",
                "Time from a client statement's arrival to its reply being flushed.",
                &["kind"],
            ),
            errors: counter(
                r,
                "shardgate_errors_total",
                "Errors sent to clients by type: backend (a data source's own error), deadlock, refused (statements the proxy will not run), client (a bad command or argument), paused, pool_exhausted, backend_unreachable, partial_commit, proxy.",
                &["type"],
            ),
            failed_logins: counter(
                r,
                "shardgate_failed_logins_total",
                "Client connections that did not log in, by reason: access_denied (wrong user or password), refused (bad handshake, unknown database, a login packet over its limit), user_limit (the user has server.max_user_connections sessions open), host_blocked (the host failed to log in server.max_connect_errors times in a row), insecure_transport (a client in the clear under server.require_secure_transport), tls (the TLS handshake failed), aborted (the client went away or did not log in within server.connect_timeout_ms).",
                &["reason"],
            ),
            idle_sessions_closed: counter(
                r,
                "shardgate_idle_sessions_closed_total",
                "Sessions closed after waiting longer than their wait_timeout (server.wait_timeout_ms, or the session's SET wait_timeout) for a command.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            routed_statements: counter(
                r,
                "shardgate_routed_statements_total",
                "Statements sent to a data source for a logical table (unsharded: table \"\").",
                &["data_source", "table"],
            ),
            routed_rows: counter(
                r,
                "shardgate_routed_rows_total",
                "Rows INSERTed into a data source for a logical table.",
                &["data_source", "table"],
            ),
            partial_commits: counter(
                r,
                "shardgate_partial_commits_total",
                "COMMITs that failed on a data source after others had committed.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            alerts: counter(
                r,
                "shardgate_alerts_total",
                "Alerts fired, by alert and pool.",
                &["alert", "pool"],
            ),
            snowflake_ids: gauge(
                r,
                "shardgate_snowflake_ids_issued",
                "Snowflake keys generated since start.",
                &[],
            ),
            pool_acquire_seconds: histogram(
                r,
                "shardgate_pool_acquire_duration_seconds",
                "Time to take a connection from a pool (waiting and connecting included).",
                &["pool"],
            ),
            pool_resizes: counter(
                r,
                "shardgate_pool_resizes_total",
                "Pool size changes, by pool and cause (adaptive, api).",
                &["pool", "cause"],
            ),
            pool_gauges: gauge(
                r,
                "shardgate_pool_connections",
                "Pool state by pool (ds0, ds0.replica1), role and state (max, open, active, idle, waiting, peak).",
                &["pool", "role", "state"],
            ),
            pool_events: counter(
                r,
                "shardgate_pool_events_total",
                "Pool events by pool and event (timeout, connect_error, validation_failed, health_failed, deadlock).",
                &["pool", "event"],
            ),
            replica_transitions: counter(
                r,
                "shardgate_replica_transitions_total",
                "Replicas entering (to=\"in\") or leaving (to=\"out\") the read rotation.",
                &["pool", "to"],
            ),
            replica_gauges: {
                let name = "shardgate_replica";
                let metric = prometheus::GaugeVec::new(
                    Opts::new(name, "Replica state: usable (1/0) and lag_seconds (-1: unknown)."),
                    &["pool", "state"],
                )
                .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
                register(r, &metric, name);
                metric
            },
            paused_tables: gauge(
                r,
                "shardgate_paused_tables",
                "Logical tables paused for a resharding cutover now.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            paused_statements: gauge(
                r,
                "shardgate_paused_statements",
                "Statements waiting now for a paused table to resume.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            pause_refused: counter(
                r,
                "shardgate_pause_refused_total",
                "Statements refused (error 1205) after waiting max_queue_ms for a paused table, by table.",
                &["table"],
            ),
            rules_version: gauge(
                r,
                "shardgate_rules_version",
                "The configuration (rules) version in force: 1 at start, +1 per reload or activation.",
                &[],
            )
            .with_label_values::<&str>(&[]),
            registry,
        }
    }

    /// The counter and latency histogram of statements of `kind` ending
    /// with `outcome` for `user`: sessions keep these handles, so the hot
    /// path does not hash label values per statement.
    pub fn statement_handles(
        &self,
        kind: &str,
        outcome: Outcome,
        user: &str,
    ) -> (IntCounter, prometheus::Histogram) {
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        };
        (
            self.statements.with_label_values(&[kind, outcome, user]),
            self.statement_seconds.with_label_values(&[kind]),
        )
    }

    /// The acquire-latency histogram of pool `pool` (kept by the pool).
    pub fn pool_acquire_histogram(&self, pool: &str) -> prometheus::Histogram {
        self.pool_acquire_seconds.with_label_values(&[pool])
    }

    /// An error reply of the given type.
    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// A client connection that did not log in, for `reason`.
    pub fn failed_login(&self, reason: &str) {
        self.failed_logins.with_label_values(&[reason]).inc();
    }

    /// A session closed for waiting longer than its wait_timeout.
    pub fn idle_session_closed(&self) {
        self.idle_sessions_closed.inc();
    }

    /// A statement sent to `data_source` for `table`, touching `rows` rows.
    pub fn routed(&self, data_source: &str, table: &str, rows: u64) {
        self.routed_statements
            .with_label_values(&[data_source, table])
            .inc();
        if rows > 0 {
            self.routed_rows
                .with_label_values(&[data_source, table])
                .inc_by(rows);
        }
    }

    /// A COMMIT failed after other data sources had committed.
    pub fn partial_commit(&self) {
        self.partial_commits.inc();
        self.error("partial_commit");
    }

    pub fn partial_commits(&self) -> u64 {
        self.partial_commits.get()
    }

    /// An alert fired.
    pub fn alert(&self, alert: &str, data_source: &str) {
        self.alerts.with_label_values(&[alert, data_source]).inc();
    }

    /// Something went wrong in a pool (see the metric's help for events).
    pub fn pool_event(&self, data_source: &str, event: &str) {
        self.pool_events
            .with_label_values(&[data_source, event])
            .inc();
    }

    /// A replica entered or left the read rotation.
    pub fn replica_transition(&self, pool: &str, usable: bool) {
        let to = if usable { "in" } else { "out" };
        self.replica_transitions
            .with_label_values(&[pool, to])
            .inc();
    }

    pub fn pool_resized(&self, data_source: &str, cause: &str) {
        self.pool_resizes
            .with_label_values(&[data_source, cause])
            .inc();
    }

    /// How many tables are paused now.
    pub fn paused_tables(&self, count: usize) {
        self.paused_tables.set(count as i64);
    }

    /// Statements began (+) or stopped (-) waiting for paused tables.
    pub fn paused_statements(&self, delta: i64) {
        self.paused_statements.add(delta);
    }

    /// A statement refused after waiting for paused `table`.
    pub fn pause_refused(&self, table: &str) {
        self.pause_refused.with_label_values(&[table]).inc();
    }

    /// The configuration version now in force.
    pub fn rules_version(&self, version: u64) {
        self.rules_version.set(version as i64);
    }

    /// Counters and the statement latency histogram as plain figures, for
    /// the dashboard (which computes rates from successive snapshots).
    pub fn snapshot(&self) -> Snapshot {
        use prometheus::core::Collector;
        let mut snap = Snapshot::default();
        for family in self.statements.collect() {
            for m in family.get_metric() {
                let label = |name: &str| label_of(m, name);
                let n = m.get_counter().get_value() as u64;
                snap.statements += n;
                if label("outcome") == "error" {
                    snap.errors += n;
                }
                *snap.by_kind.entry(label("kind")).or_default() += n;
            }
        }
        for family in self.errors.collect() {
            for m in family.get_metric() {
                *snap.errors_by_type.entry(label_of(m, "type")).or_default() +=
                    m.get_counter().get_value() as u64;
            }
        }
        for family in self.statement_seconds.collect() {
            for m in family.get_metric() {
                let h = m.get_histogram();
                if snap.latency_buckets.is_empty() {
                    snap.latency_buckets = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), 0))
                        .collect();
                }
                for (i, b) in h.get_bucket().iter().enumerate() {
                    if let Some(slot) = snap.latency_buckets.get_mut(i) {
                        slot.1 += b.cumulative_count();
                    }
                }
                snap.latency_count += h.get_sample_count();
                snap.latency_sum += h.get_sample_sum();
            }
        }
        let mut routed: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for (vec, rows) in [(&self.routed_statements, false), (&self.routed_rows, true)] {
            for family in vec.collect() {
                for m in family.get_metric() {
                    let label = |name: &str| label_of(m, name);
                    let entry = routed
                        .entry((label("data_source"), label("table")))
                        .or_default();
                    let n = m.get_counter().get_value() as u64;
                    if rows {
                        entry.1 += n;
                    } else {
                        entry.0 += n;
                    }
                }
            }
        }
        snap.routed = routed
            .into_iter()
            .map(|((data_source, table), (statements, rows))| Routed {
                data_source,
                table,
                statements,
                rows,
            })
            .collect();
        snap.partial_commits = self.partial_commits.get();
        snap
    }

    /// The text exposition: counters as they are, gauges read from `pools`
    /// now.
    pub fn render<'a, C: Connection>(
        &self,
        pools: impl IntoIterator<Item = &'a std::sync::Arc<Pool<C>>>,
        snowflake_ids: u64,
    ) -> String {
        for pool in pools {
            let s = pool.stats();
            let role = pool.role().label();
            let name = pool.name();
            if let Some(r) = pool.replication() {
                let lag = r.lag.map_or(-1.0, |d| d.as_secs_f64());
                let usable = if r.usable { 1.0 } else { 0.0 };
                for (state, value) in [("usable", usable), ("lag_seconds", lag)] {
                    self.replica_gauges
                        .with_label_values(&[name, state])
                        .set(value);
                }
            }
            for (state, value) in [
                ("max", s.max),
                ("open", s.open),
                ("active", s.active),
                ("idle", s.idle),
                ("waiting", s.waiting),
                ("peak", s.peak),
            ] {
                self.pool_gauges
                    .with_label_values(&[name, role, state])
                    .set(value as i64);
            }
        }
        self.snowflake_ids
            .with_label_values::<&str>(&[])
            .set(snowflake_ids as i64);
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn label_of(metric: &prometheus::proto::Metric, name: &str) -> String {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value().to_owned())
        .unwrap_or_default()
}

/// One session's statement counters: its user (a metric label) and the
/// handles of the counters and histograms it has used, kept so that a
/// statement costs no hashing of label values.
pub struct SessionMetrics {
    user: String,
    handles: foldhash::HashMap<(&'static str, Outcome), (IntCounter, prometheus::Histogram)>,
}

impl SessionMetrics {
    pub fn new(user: impl Into<String>) -> Self {
        SessionMetrics {
            user: user.into(),
            handles: foldhash::HashMap::default(),
        }
    }

    /// Counts a statement of kind `label` that took `elapsed`.
    pub fn count(
        &mut self,
        metrics: &Metrics,
        label: &'static str,
        outcome: Outcome,
        elapsed: std::time::Duration,
    ) {
        let (counter, histogram) = self
            .handles
            .entry((label, outcome))
            .or_insert_with(|| metrics.statement_handles(label, outcome, &self.user));
        counter.inc();
        histogram.observe(elapsed.as_secs_f64());
    }
}
