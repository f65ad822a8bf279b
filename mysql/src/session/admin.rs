//! Answers to the SQL admin statements (`sql::admin`) from the proxy's own
//! state — sharding rules, pools, counters, route previews — as text
//! result sets, for people who live in a SQL client rather than in the
//! admin API. Column names follow ShardingSphere's DistSQL where it has the
//! statement, with ShardGate's own columns after them where ShardGate
//! knows more.

use std::sync::Arc;

use shardgate_rules::config::{AlgorithmConfig, Config, DatabaseRules, StrategyConfig};
use shardgate_rules::ShardingRules;

use super::{auth, CommandResult, Failure, Flow, Session};
use crate::backend::LogicalDatabase;
use crate::backend::Pool;
use crate::backend::Shared;
use crate::column::{flags, types, ColumnInfo, BINARY_CHARSET};
use crate::ok_err::{encode_eof, put_lenenc_int, put_lenenc_str};
use crate::row::{decode_row, encode_row, RowFormat};
use shardgate_core::backend::pool::HealthCheck;
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::metrics::Snapshot;
use shardgate_sql::admin::{AdminSqlError, AdminStatement};
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::plan::PlanContext;
use shardgate_sql::shard::preview::{preview, MergePlan, Preview};

/// How a column's values are typed for the client (sent as text rows
/// either way): drivers map INT and DOUBLE columns to numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Text,
    /// An unsigned count.
    Count,
    /// Milliseconds with three decimals.
    Millis,
}

/// A result set the proxy builds itself. `None` is SQL NULL.
#[derive(Debug, Default)]
struct ResultTable {
    columns: Vec<(String, Type)>,
    rows: Vec<Vec<Option<String>>>,
}

impl ResultTable {
    fn new(columns: &[(&str, Type)]) -> Self {
        ResultTable {
            columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// A row of a two-column name/value table.
    fn pair(&mut self, name: impl Into<String>, value: impl ToString) {
        self.push(vec![Some(name.into()), Some(value.to_string())]);
    }
}

impl Session {
    /// Answers an admin statement, or sends its syntax error.
    pub(super) fn admin(&mut self, parsed: Result<AdminStatement, AdminSqlError>) -> CommandResult {
        let statement = parsed
            .map_err(|e| Failure::Reply(ProxyError::new(ErrorKind::AdminSyntax, e.to_string())))?;
        if let Some(name) = statement.database() {
            self.access.check_database(name)?;
        }
        let table = answer(&self.shared, &self.db, &statement).map_err(Failure::Reply)?;
        self.push_table(&table, RowFormat::Text);
        Ok(Flow::Continue)
    }

    /// `SHOW DATABASES | SCHEMAS [LIKE 'pattern']`: the logical databases
    /// the user may use (and information_schema), sorted, as a server
    /// lists those a user has grants on.
    pub(super) fn show_databases(&mut self, like: Option<&str>, format: RowFormat) {
        let header = match like {
            Some(pattern) => format!("Database ({pattern})"),
            None => "Database".to_owned(),
        };
        let mut names: Vec<&str> = std::iter::once("information_schema")
            .chain(
                self.shared
                    .databases
                    .iter()
                    .map(|d| d.name.as_str())
                    .filter(|name| self.access.may_use(name)),
            )
            .filter(|name| like.is_none_or(|p| like_matches(p, name)))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut table = ResultTable::new(&[(&header, Type::Text)]);
        for name in names {
            table.push(vec![Some(name.to_owned())]);
        }
        self.push_table(&table, format);
    }

    /// Column count, definitions, EOF (unless CLIENT_DEPRECATE_EOF), rows
    /// in the client's protocol (`format`) and the end of the result, as a
    /// server sends a result set.
    fn push_table(&mut self, table: &ResultTable, format: RowFormat) {
        let text_charset = u16::from(self.flavor.collation);
        let mut count = Vec::new();
        put_lenenc_int(&mut count, table.columns.len() as u64);
        self.writer.push(&count);
        let columns: Vec<ColumnInfo> = table
            .columns
            .iter()
            .map(|(name, ty)| match ty {
                Type::Text => ColumnInfo::synthetic(name, types::VAR_STRING, 0, 0, text_charset),
                Type::Count => {
                    ColumnInfo::synthetic(name, types::LONGLONG, flags::UNSIGNED, 0, BINARY_CHARSET)
                }
                Type::Millis => ColumnInfo::synthetic(name, types::DOUBLE, 0, 3, BINARY_CHARSET),
            })
            .collect();
        for column in &columns {
            self.writer.push(&column.raw);
        }
        if !self.flavor.deprecate_eof() {
            self.writer.push(&encode_eof(0, self.reply_status()));
        }
        let mut buf = Vec::new();
        for row in &table.rows {
            buf.clear();
            for value in row {
                match value {
                    None => buf.push(0xFB),
                    Some(text) => put_lenenc_str(&mut buf, text.as_bytes()),
                }
            }
            if format == RowFormat::Binary {
                // The proxy's own cells always decode.
                if let Ok(values) = decode_row(&buf, &columns, RowFormat::Text) {
                    buf.clear();
                    encode_row(&values, &columns, RowFormat::Binary, &mut buf);
                }
            }
            self.writer.push(&buf);
        }
        self.push_end_of_result();
    }
}

/// The answer to `statement` from the proxy's state; the rules are those
/// of the session's logical database `db`, or of the one it names.
fn answer(
    shared: &Shared,
    db: &LogicalDatabase,
    statement: &AdminStatement,
) -> Result<ResultTable, ProxyError> {
    let config = &shared.config;
    let rules_of = |database: &Option<String>| -> Result<DatabaseRules<'_>, ProxyError> {
        let name = database.as_deref().unwrap_or(&db.name);
        config
            .logical_databases()
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| auth::unknown_database(name))
    };
    let logical_db = |database: &Option<String>| -> Result<&LogicalDatabase, ProxyError> {
        match database {
            Some(name) => shared
                .database(name)
                .map(|d| d.as_ref())
                .ok_or_else(|| auth::unknown_database(name)),
            None => Ok(db),
        }
    };
    match statement {
        AdminStatement::ShardingTableRules { table, database } => sharding_table_rules(
            config,
            &rules_of(database)?,
            &logical_db(database)?.rules,
            table.as_deref(),
        ),
        AdminStatement::ShardingTableNodes { table, database } => sharding_table_nodes(
            &rules_of(database)?,
            &logical_db(database)?.rules,
            table.as_deref(),
        ),
        AdminStatement::BroadcastTableRules { database } => Ok(broadcast_table_rules(
            &rules_of(database)?,
            &logical_db(database)?.rules,
        )),
        AdminStatement::StorageUnits { database } => {
            logical_db(database)?;
            Ok(storage_units(shared.all_pools()))
        }
        AdminStatement::Pools => Ok(pools(shared.all_pools())),
        AdminStatement::Stats => {
            let unhealthy = shared
                .all_pools()
                .filter(|p| health(&p.stats().last_health_check) == "down")
                .count();
            Ok(stats(
                &shared.metrics.snapshot(),
                shared.keys.issued(),
                shared.alerts.recent().len(),
                unhealthy,
            ))
        }
        AdminStatement::Preview(sql) => {
            let kinds = db.known_kinds(db.table_columns_learnt().iter().map(String::as_str));
            let ctx = PlanContext {
                dialect: &MARIADB,
                rules: &db.rules,
                default_data_source: &db.default_data_source,
                keys: &shared.keys,
                kinds: &kinds,
            };
            Ok(preview_table(&preview(sql, &db.name, &ctx)?))
        }
    }
}

/// The configured sharded tables `table` selects (all of them when None),
/// as (name as configured, its config); a name that is no sharded table
/// is the server's "no such table" error, listing what exists.
fn selected_tables<'c>(
    db: &DatabaseRules<'c>,
    rules: &ShardingRules,
    table: Option<&str>,
) -> Result<Vec<(&'c String, &'c shardgate_rules::config::TableConfig)>, ProxyError> {
    let Some(wanted) = table else {
        return Ok(db.tables.iter().collect());
    };
    if let Some(found) = db
        .tables
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
    {
        return Ok(vec![found]);
    }
    let sharded: Vec<&str> = db.tables.keys().map(String::as_str).collect();
    let sharded = if sharded.is_empty() {
        "none are configured".to_owned()
    } else {
        format!("the sharded tables are {}", sharded.join(", "))
    };
    let database = db.name;
    let message = if rules.table_kind(wanted) == shardgate_rules::TableKind::Broadcast {
        format!(
            "Table '{database}.{wanted}' is a broadcast table, not a sharded one ({sharded}); SHOW BROADCAST TABLE RULES lists broadcast tables"
        )
    } else {
        format!("Table '{database}.{wanted}' doesn't exist in the sharding rules; {sharded}")
    };
    Err(ProxyError::new(ErrorKind::UnknownTable, message))
}

/// DistSQL's `SHOW SHARDING TABLE RULES` columns that fit ShardGate's model
/// (no strategy types, auditors or hints here), then ShardGate's own.
const SHARDING_RULE_COLUMNS: &[(&str, Type)] = &[
    ("table", Type::Text),
    ("actual_data_nodes", Type::Text),
    ("actual_data_sources", Type::Text),
    ("database_sharding_column", Type::Text),
    ("database_sharding_algorithm_type", Type::Text),
    ("database_sharding_algorithm_props", Type::Text),
    ("table_sharding_column", Type::Text),
    ("table_sharding_algorithm_type", Type::Text),
    ("table_sharding_algorithm_props", Type::Text),
    ("key_generate_column", Type::Text),
    ("key_generator_type", Type::Text),
    ("key_generator_props", Type::Text),
    ("binding_tables", Type::Text),
    ("node_count", Type::Count),
];

fn sharding_table_rules(
    config: &Config,
    db: &DatabaseRules<'_>,
    rules: &ShardingRules,
    table: Option<&str>,
) -> Result<ResultTable, ProxyError> {
    let mut out = ResultTable::new(SHARDING_RULE_COLUMNS);
    for (name, t) in selected_tables(db, rules, table)? {
        let nodes = rules.nodes(name);
        let mut sources: Vec<&str> = Vec::new();
        for node in &nodes {
            if !sources.contains(&node.data_source.as_str()) {
                sources.push(&node.data_source);
            }
        }
        let (db_column, db_type, db_props) = strategy_cells(&t.database);
        let (tb_column, tb_type, tb_props) = strategy_cells(&t.table);
        let snowflake = &config.snowflake;
        let binding = db
            .binding
            .iter()
            .find(|b| b.tables.iter().any(|b| b.eq_ignore_ascii_case(name)))
            .map(|b| b.tables.join(","));
        out.push(vec![
            Some(name.clone()),
            Some(t.nodes.clone()),
            Some(sources.join(",")),
            db_column,
            db_type,
            db_props,
            tb_column,
            tb_type,
            tb_props,
            t.key.as_ref().map(|k| k.column.clone()),
            t.key.as_ref().map(|_| "snowflake".to_owned()),
            t.key.as_ref().map(|_| {
                format!(
                    "worker_id={},epoch_ms={}",
                    snowflake.worker_id.get(),
                    snowflake.epoch.unix_millis()
                )
            }),
            binding,
            Some(nodes.len().to_string()),
        ]);
    }
    Ok(out)
}

/// Column, algorithm type and properties of a strategy, as the config
/// file spells them; NULLs when the table has no such strategy.
fn strategy_cells(
    strategy: &Option<StrategyConfig>,
) -> (Option<String>, Option<String>, Option<String>) {
    let Some(s) = strategy else {
        return (None, None, None);
    };
    let (kind, props) = match &s.algorithm {
        AlgorithmConfig::Mod { count } => ("mod", format!("count={count}")),
        AlgorithmConfig::Crc32Mod { count } => ("crc32_mod", format!("count={count}")),
        AlgorithmConfig::Month => ("month", "format=%Y%m".to_owned()),
        AlgorithmConfig::Expression(template) => {
            ("expression", format!("expression={}", template.text()))
        }
    };
    (Some(s.column.clone()), Some(kind.to_owned()), Some(props))
}

/// DistSQL's `SHOW SHARDING TABLE NODES`: one row per table, its nodes in
/// routing order.
fn sharding_table_nodes(
    db: &DatabaseRules<'_>,
    rules: &ShardingRules,
    table: Option<&str>,
) -> Result<ResultTable, ProxyError> {
    let mut out = ResultTable::new(&[("name", Type::Text), ("nodes", Type::Text)]);
    for (name, _) in selected_tables(db, rules, table)? {
        let nodes: Vec<String> = rules.nodes(name).iter().map(ToString::to_string).collect();
        out.push(vec![Some(name.clone()), Some(nodes.join(", "))]);
    }
    Ok(out)
}

/// DistSQL's `broadcast_table`, and where the copies are.
fn broadcast_table_rules(db: &DatabaseRules<'_>, rules: &ShardingRules) -> ResultTable {
    let mut out = ResultTable::new(&[
        ("broadcast_table", Type::Text),
        ("actual_data_sources", Type::Text),
    ]);
    for name in &db.broadcast.tables {
        let sources: Vec<String> = rules
            .nodes(name)
            .into_iter()
            .map(|n| n.data_source)
            .collect();
        out.push(vec![Some(name.clone()), Some(sources.join(","))]);
    }
    out
}

/// SQL's `LIKE` as SHOW uses it: `%` any run, `_` one character, `\`
/// escapes, letter case ignored.
fn like_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('%', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('_', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                n.first() == Some(&rest[0]) && go(&rest[1..], &n[1..])
            }
            Some((c, rest)) => {
                n.first()
                    .is_some_and(|m| m.to_lowercase().eq(c.to_lowercase()))
                    && go(rest, &n[1..])
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// `up`, `down`, or `unknown` before the first health check.
fn health(check: &Option<HealthCheck>) -> &'static str {
    match check {
        None => "unknown",
        Some(c) if c.ok => "up",
        Some(_) => "down",
    }
}

fn millis(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// DistSQL's storage unit columns that fit (host, port, db, the pool's
/// timeout and sizes), one row per primary and replica, then ShardGate's:
/// which data source and role, and the last health check.
fn storage_units<'a>(pools: impl Iterator<Item = &'a Arc<Pool>>) -> ResultTable {
    let mut out = ResultTable::new(&[
        ("name", Type::Text),
        ("data_source", Type::Text),
        ("role", Type::Text),
        ("host", Type::Text),
        ("port", Type::Count),
        ("db", Type::Text),
        ("connection_timeout_milliseconds", Type::Count),
        ("max_pool_size", Type::Count),
        ("min_pool_size", Type::Count),
        ("health", Type::Text),
        ("health_latency_ms", Type::Millis),
        ("health_error", Type::Text),
        ("other_attributes", Type::Text),
    ]);
    for pool in pools {
        let url = pool.url();
        let config = pool.config();
        let check = pool.stats().last_health_check;
        let other = serde_json::json!({
            "adaptive": config.adaptive,
            "min_size": config.min_size,
            "max_bound": config.max_bound,
            "resize_interval_ms": config.resize_interval_ms,
            "validate_idle_ms": config.validate_idle_ms,
            "validation_timeout_ms": config.validation_timeout_ms,
            "health_check_interval_ms": config.health_check_interval_ms,
        });
        out.push(vec![
            Some(pool.name().to_owned()),
            Some(pool.data_source().to_owned()),
            Some(pool.role().label().to_owned()),
            Some(url.host.clone()),
            Some(url.port.to_string()),
            Some(url.database.clone()),
            Some(config.acquire_timeout_ms.to_string()),
            Some(config.max_size.to_string()),
            Some(config.min_idle().to_string()),
            Some(health(&check).to_owned()),
            check.as_ref().map(|c| millis(c.latency)),
            check.as_ref().and_then(|c| c.error.clone()),
            Some(other.to_string()),
        ]);
    }
    out
}

/// The pools as `GET /api/pools` shows them (`max`: connections in use at
/// most now; `size`: open now).
fn pools<'a>(pools: impl Iterator<Item = &'a Arc<Pool>>) -> ResultTable {
    let mut out = ResultTable::new(&[
        ("name", Type::Text),
        ("data_source", Type::Text),
        ("role", Type::Text),
        ("max", Type::Count),
        ("size", Type::Count),
        ("active", Type::Count),
        ("idle", Type::Count),
        ("waiting", Type::Count),
        ("peak", Type::Count),
        ("acquired", Type::Count),
        ("timeouts", Type::Count),
        ("errors", Type::Count),
        ("acquire_p50_ms", Type::Millis),
        ("acquire_p99_ms", Type::Millis),
        ("health", Type::Text),
    ]);
    for pool in pools {
        let s = pool.stats();
        let count = |n: usize| Some(n.to_string());
        out.push(vec![
            Some(pool.name().to_owned()),
            Some(pool.data_source().to_owned()),
            Some(pool.role().label().to_owned()),
            count(s.max),
            count(s.open),
            count(s.active),
            count(s.idle),
            count(s.waiting),
            count(s.peak),
            Some(s.acquired.to_string()),
            Some(s.timeouts.to_string()),
            Some(s.errors.to_string()),
            Some(millis(s.acquire_p50)),
            Some(millis(s.acquire_p99)),
            Some(health(&s.last_health_check).to_owned()),
        ]);
    }
    out
}

/// The counters as `name`/`value` rows, like the server's SHOW STATUS.
fn stats(snap: &Snapshot, snowflake_ids: u64, alerts: usize, unhealthy: usize) -> ResultTable {
    let mut out = ResultTable::new(&[("name", Type::Text), ("value", Type::Text)]);
    out.pair("statements", snap.statements);
    for (kind, n) in &snap.by_kind {
        out.pair(format!("statements.{kind}"), n);
    }
    out.pair("statements_failed", snap.errors);
    for (kind, n) in &snap.errors_by_type {
        out.pair(format!("errors.{kind}"), n);
    }
    out.pair("partial_commits", snap.partial_commits);
    out.pair("snowflake_ids", snowflake_ids);
    let average = if snap.latency_count == 0 {
        0.0
    } else {
        snap.latency_sum / snap.latency_count as f64
    };
    out.pair("statement_latency_avg_ms", format!("{:.3}", average * 1e3));
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        let bound = bucket_quantile(&snap.latency_buckets, snap.latency_count, q);
        // NULL before any statement (or past the last finite bucket).
        out.push(vec![
            Some(format!("statement_latency_{name}_ms_at_most")),
            bound.map(|b| format!("{:.3}", b * 1e3)),
        ]);
    }
    for r in &snap.routed {
        let table = if r.table.is_empty() {
            "(unsharded)"
        } else {
            &r.table
        };
        out.pair(format!("routed.{}.{table}", r.data_source), r.statements);
        if r.rows > 0 {
            out.pair(format!("inserted_rows.{}.{table}", r.data_source), r.rows);
        }
    }
    out.pair("alerts_recent", alerts);
    out.pair("pools_down", unhealthy);
    out
}

/// The upper bound (seconds) of the histogram bucket holding quantile `q`:
/// what a histogram can say about a percentile. None before any statement
/// or when it falls past the last finite bucket.
fn bucket_quantile(buckets: &[(f64, u64)], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = (q * count as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(bound, cumulative)| *cumulative >= rank && bound.is_finite())
        .map(|(bound, _)| *bound)
}

/// DistSQL's `PREVIEW` columns — one row per statement a node would get —
/// then how ShardGate routes it and, for several nodes, how their answers
/// combine.
fn preview_table(p: &Preview) -> ResultTable {
    let mut out = ResultTable::new(&[
        ("data_source_name", Type::Text),
        ("actual_sql", Type::Text),
        ("route", Type::Text),
        ("plan", Type::Text),
    ]);
    let plan = match (&p.merge, p.transactional) {
        (Some(m), _) => Some(merge_text(m)),
        (None, Some(true)) => Some("one transaction over the nodes".to_owned()),
        (None, Some(false)) => Some("each node on its own".to_owned()),
        (None, None) => None,
    };
    for node in &p.nodes {
        out.push(vec![
            Some(node.data_source.clone()),
            Some(node.sql.clone()),
            Some(p.route.to_owned()),
            plan.clone(),
        ]);
    }
    out
}

/// `order_by_keys=1; aggregates=count,sum; limit=10`: the parts of a merge
/// that apply.
fn merge_text(m: &MergePlan) -> String {
    let mut parts = Vec::new();
    if m.order_by_keys > 0 {
        parts.push(format!("order_by_keys={}", m.order_by_keys));
    }
    // Aggregates without GROUP BY are one group of no keys: nothing to say.
    if let Some(n) = m.group_by_keys.filter(|n| *n > 0) {
        parts.push(format!("group_by_keys={n}"));
    }
    if !m.aggregates.is_empty() {
        parts.push(format!("aggregates={}", m.aggregates.join(",")));
    }
    if m.distinct {
        parts.push("distinct".to_owned());
    }
    if m.having {
        parts.push("having".to_owned());
    }
    if m.offset > 0 {
        parts.push(format!("offset={}", m.offset));
    }
    if let Some(n) = m.limit {
        parts.push(format!("limit={n}"));
    }
    if parts.is_empty() {
        "rows concatenated".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PoolContext;
    use crate::backend::Role;
    use shardgate_core::metrics::{Metrics, Routed};
    use shardgate_rules::{SnowflakeGenerator, SystemClock};

    fn seed() -> (Config, ShardingRules) {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml"))
            .expect("the seed config loads");
        let rules = ShardingRules::new(&config).expect("the seed rules build");
        (config, rules)
    }

    fn names(t: &ResultTable) -> Vec<&str> {
        t.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn cell<'t>(t: &'t ResultTable, row: usize, column: &str) -> Option<&'t str> {
        let i = t
            .columns
            .iter()
            .position(|(n, _)| *n == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        t.rows[row][i].as_deref()
    }

    #[test]
    fn sharding_rules_describe_the_seed_tables() {
        let (config, rules) = seed();
        let t =
            sharding_table_rules(&config, &config.logical_databases()[0], &rules, None).unwrap();
        assert_eq!(
            names(&t)[..3],
            ["table", "actual_data_nodes", "actual_data_sources"]
        );
        assert_eq!(t.rows.len(), 2);
        let users = t
            .rows
            .iter()
            .position(|r| r[0].as_deref() == Some("users"))
            .unwrap();
        assert_eq!(
            cell(&t, users, "actual_data_nodes"),
            Some("ds${0..3}.users_${0..15}")
        );
        assert_eq!(
            cell(&t, users, "actual_data_sources"),
            Some("ds0,ds1,ds2,ds3")
        );
        assert_eq!(cell(&t, users, "database_sharding_column"), Some("user_id"));
        assert_eq!(
            cell(&t, users, "database_sharding_algorithm_type"),
            Some("mod")
        );
        assert_eq!(
            cell(&t, users, "database_sharding_algorithm_props"),
            Some("count=4")
        );
        assert_eq!(
            cell(&t, users, "table_sharding_algorithm_type"),
            Some("expression")
        );
        assert_eq!(
            cell(&t, users, "table_sharding_algorithm_props"),
            Some("expression=users_${(user_id / 4) % 16}")
        );
        assert_eq!(cell(&t, users, "key_generate_column"), Some("user_id"));
        assert_eq!(cell(&t, users, "key_generator_type"), Some("snowflake"));
        assert_eq!(cell(&t, users, "node_count"), Some("64"));
        let one = sharding_table_rules(
            &config,
            &config.logical_databases()[0],
            &rules,
            Some("MESSAGE_RECORDS"),
        )
        .unwrap();
        assert_eq!(one.rows.len(), 1);
        assert_eq!(
            cell(&one, 0, "table_sharding_algorithm_type"),
            Some("month")
        );
        assert_eq!(cell(&one, 0, "key_generate_column"), None);
        assert_eq!(cell(&one, 0, "node_count"), Some("48"));
    }

    #[test]
    fn an_unknown_table_is_no_such_table_naming_what_exists() {
        let (config, rules) = seed();
        let e =
            sharding_table_nodes(&config.logical_databases()[0], &rules, Some("nope")).unwrap_err();
        let told = crate::errors::ToClient::to_client(&e);
        assert_eq!((told.code, &told.sqlstate), (1146, b"42S02"));
        assert!(e.message.contains("'wework.nope'"), "{}", e.message);
        assert!(
            e.message.contains("message_records, users"),
            "{}",
            e.message
        );
        let e = sharding_table_rules(
            &config,
            &config.logical_databases()[0],
            &rules,
            Some("sys_configs"),
        )
        .unwrap_err();
        assert!(e.message.contains("broadcast table"), "{}", e.message);
    }

    #[test]
    fn nodes_list_every_physical_table_in_routing_order() {
        let (config, rules) = seed();
        let t =
            sharding_table_nodes(&config.logical_databases()[0], &rules, Some("users")).unwrap();
        assert_eq!(names(&t), ["name", "nodes"]);
        let nodes: Vec<&str> = cell(&t, 0, "nodes").unwrap().split(", ").collect();
        assert_eq!(nodes.len(), 64);
        assert_eq!(nodes[..2], ["ds0.users_0", "ds0.users_1"]);
        assert_eq!(nodes[63], "ds3.users_15");
    }

    #[test]
    fn broadcast_tables_are_on_every_data_source() {
        let (config, rules) = seed();
        let t = broadcast_table_rules(&config.logical_databases()[0], &rules);
        assert_eq!(names(&t), ["broadcast_table", "actual_data_sources"]);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(cell(&t, 0, "actual_data_sources"), Some("ds0,ds1,ds2,ds3"));
    }

    #[test]
    fn storage_units_and_pools_list_primaries_and_replicas() {
        let (config, _) = seed();
        let context = PoolContext::new(Arc::new(Metrics::new()));
        let ds = &config.data_sources["ds1"];
        let all = [
            Pool::new(
                "ds1",
                "ds1",
                Role::Primary,
                ds.url.clone(),
                ds.pool.clone(),
                context.clone(),
            ),
            Pool::new(
                "ds1.replica1",
                "ds1",
                Role::Replica(0),
                ds.replicas[0].clone(),
                ds.pool.clone(),
                context,
            ),
        ];
        let units = storage_units(all.iter());
        assert_eq!(units.rows.len(), 2);
        assert_eq!(cell(&units, 1, "name"), Some("ds1.replica1"));
        assert_eq!(cell(&units, 1, "role"), Some("replica"));
        assert_eq!(cell(&units, 1, "port"), Some("13317"));
        assert_eq!(cell(&units, 0, "health"), Some("unknown"));
        assert_eq!(cell(&units, 0, "health_latency_ms"), None);
        let p = pools(all.iter());
        assert_eq!(
            names(&p),
            [
                "name",
                "data_source",
                "role",
                "max",
                "size",
                "active",
                "idle",
                "waiting",
                "peak",
                "acquired",
                "timeouts",
                "errors",
                "acquire_p50_ms",
                "acquire_p99_ms",
                "health"
            ]
        );
        assert_eq!(cell(&p, 0, "active"), Some("0"));
        assert_eq!(cell(&p, 0, "acquire_p99_ms"), Some("0.000"));
    }

    #[test]
    fn stats_are_name_value_rows() {
        let mut snap = Snapshot {
            statements: 3,
            errors: 1,
            partial_commits: 0,
            latency_buckets: vec![(0.001, 1), (0.01, 3), (f64::INFINITY, 3)],
            latency_count: 3,
            latency_sum: 0.012,
            ..Snapshot::default()
        };
        snap.by_kind.insert("select".into(), 2);
        snap.errors_by_type.insert("refused".into(), 1);
        snap.routed.push(Routed {
            data_source: "ds1".into(),
            table: "users".into(),
            statements: 2,
            rows: 0,
        });
        let t = stats(&snap, 7, 0, 0);
        let get = |name: &str| {
            t.rows
                .iter()
                .find(|r| r[0].as_deref() == Some(name))
                .and_then(|r| r[1].clone())
                .unwrap_or_else(|| panic!("no row {name}"))
        };
        assert_eq!(get("statements"), "3");
        assert_eq!(get("statements.select"), "2");
        assert_eq!(get("statements_failed"), "1");
        assert_eq!(get("errors.refused"), "1");
        assert_eq!(get("snowflake_ids"), "7");
        assert_eq!(get("statement_latency_avg_ms"), "4.000");
        assert_eq!(get("statement_latency_p50_ms_at_most"), "10.000");
        assert_eq!(get("routed.ds1.users"), "2");
    }

    #[test]
    fn like_patterns() {
        use super::like_matches;
        assert!(like_matches("test%", "test_schema"));
        assert!(like_matches("TEST\\_schema", "test_schema"));
        assert!(!like_matches("test\\_", "testx"));
        assert!(like_matches("w_work", "wework"));
        assert!(!like_matches("w_work", "wework2"));
        assert!(like_matches("%", ""));
    }

    #[test]
    fn preview_rows_are_the_node_statements() {
        let (config, rules) = seed();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            dialect: &MARIADB,
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
            kinds: shardgate_rules::ColumnKinds::none(),
        };
        let one = preview_table(
            &preview("SELECT * FROM users WHERE user_id = 5", "wework", &ctx).unwrap(),
        );
        assert_eq!(names(&one)[..2], ["data_source_name", "actual_sql"]);
        assert_eq!(one.rows.len(), 1);
        assert_eq!(cell(&one, 0, "data_source_name"), Some("ds1"));
        assert!(cell(&one, 0, "actual_sql").unwrap().contains("users_1"));
        assert_eq!(cell(&one, 0, "route"), Some("single"));
        let count = preview_table(&preview("SELECT COUNT(*) FROM users", "wework", &ctx).unwrap());
        assert_eq!(count.rows.len(), 4);
        assert_eq!(cell(&count, 0, "route"), Some("merge"));
        assert_eq!(cell(&count, 0, "plan"), Some("aggregates=count"));
    }
}
