//! The differential harness of the sharded-SQL tests (`tests/e2e/sharding.rs`).
//!
//! The same schema and data are loaded (1) through ShardGate into the logical
//! database `wework` (which fans out to the physical tables of
//! `examples/wework.toml` on ds0..ds3) and (2) into one plain MariaDB
//! database, `wework_ref`, on the ds0 primary's server. Every statement then
//! runs through both, and the outcomes must be equal: result rows (as a
//! multiset, or as a sequence when the statement has a total ORDER BY),
//! column labels and types, affected-row counts, last insert ids, and for
//! errors the error number. A statement ShardGate refuses with 1235
//! (`ER_NOT_SUPPORTED_YET`) is reported as *refused*, distinct from a *wrong*
//! answer. Placement checks read every physical table directly and check
//! each row against the rules (`shardgate_rules::ShardingRules`).
//!
//! ShardGate runs on a runtime of its own in a background thread, so that
//! every `#[tokio::test]` can use it; it starts, and the schema and data
//! are loaded (dropped and recreated first), for the first test that needs
//! them, and again after any test that had the sandbox to itself (see
//! [`crate::sandbox::epoch`]). Read-only tests hold [`STATE`] for reading
//! ([`reader`]); tests that write hold it for writing ([`writer`]).

use crate::sqlx_scenario::render_value;
use crate::{db_error, sandbox_ready, say, Config, Endpoint};
use chrono::NaiveDateTime;
use futures_util::TryStreamExt;
use serde_json::Value;
use shardgate_rules::{DataNode, ShardValue, ShardingRules, TableKind};
use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlRow};
use sqlx::{Column, Either, Executor, Row, TypeInfo, ValueRef};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use tokio::sync::{oneshot, RwLockReadGuard, RwLockWriteGuard};

/// The plain reference database, on the ds0 primary's server.
pub const REF_DB: &str = "wework_ref";

/// ER_NOT_SUPPORTED_YET: what ShardGate answers for what it cannot do correctly.
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;

/// Extra logical tables of the test config: a scratch sharded table for DDL
/// tests, so that they do not touch the seed's tables.
pub const EXTRA_RULES: &str = r#"
[tables.it_orders]
nodes = "ds${0..3}.it_orders_${0..1}"
database = { column = "order_id", algorithm = "mod", count = 4 }
table = { column = "order_id", expression = "it_orders_${(order_id / 4) % 2}" }
"#;

pub const USERS_DDL: &str =
    "CREATE TABLE users (user_id BIGINT PRIMARY KEY, tenant_id VARCHAR(64), \
     name VARCHAR(100) CHARACTER SET utf8mb4, email VARCHAR(200) NULL, balance DECIMAL(20,4) NULL, \
     created_at DATETIME NULL, status TINYINT)";
pub const MESSAGES_DDL: &str = "CREATE TABLE message_records (id BIGINT, tenant_id VARCHAR(64), \
     created_at DATETIME, sender BIGINT, body TEXT, PRIMARY KEY(id, created_at))";
pub const SYS_CONFIGS_DDL: &str =
    "CREATE TABLE sys_configs (k VARCHAR(64) PRIMARY KEY, v VARCHAR(255))";
pub const SYS_PERMISSIONS_DDL: &str =
    "CREATE TABLE sys_permissions (id INT PRIMARY KEY, name VARCHAR(64))";

pub const USER_COUNT: usize = 3000;
pub const MESSAGE_COUNT: usize = 3000;

/// What the harness's tests share: the config, its rules and the proxy.
pub struct Shared {
    pub cfg: Config,
    pub rules: ShardingRules,
    pub proxy_addr: SocketAddr,
}

impl Shared {
    pub fn proxy(&self) -> Endpoint {
        crate::proxy_endpoint(&self.cfg, self.proxy_addr)
    }

    /// The reference database (plain, unsharded) on ds0's server.
    pub fn reference(&self) -> Endpoint {
        crate::direct_endpoint(&self.cfg).with_database(REF_DB)
    }

    /// A data source's primary, directly, with its physical database.
    pub fn data_source(&self, name: &str) -> Endpoint {
        crate::data_source_endpoint(&self.cfg, name).expect("a configured data source")
    }

    pub fn data_source_names(&self) -> Vec<String> {
        self.cfg.data_sources.keys().cloned().collect()
    }
}

/// The test config: the seed's rules plus [`EXTRA_RULES`], on an ephemeral port.
pub fn sharding_config() -> Config {
    let text = format!("{}\n{}", crate::SEED_CONFIG, EXTRA_RULES);
    let mut cfg = Config::from_toml_str(&text).expect("the sharding test config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

/// Readers: tests that only read the seed data. Writer: tests that change it.
pub static STATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The proxy and the data of one sandbox epoch.
struct Harness {
    epoch: u64,
    shared: &'static Shared,
    loaded: Result<(), String>,
    /// Stops the proxy when dropped.
    _stop: oneshot::Sender<()>,
}

static HARNESS: tokio::sync::Mutex<Option<Harness>> = tokio::sync::Mutex::const_new(None);

/// ShardGate and the loaded data, started and loaded anew when an exclusive
/// test ran since they were; `None` when the sandbox is not running (the
/// test is then skipped). To be called under the sandbox guard
/// ([`crate::sandbox`]), before [`STATE`].
pub async fn harness(test: &str) -> Option<&'static Shared> {
    let cfg = sharding_config();
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    let mut current = HARNESS.lock().await;
    let epoch = crate::sandbox::epoch();
    if current.as_ref().is_none_or(|h| h.epoch != epoch) {
        // the previous epoch's proxy is told to stop (its sender dropped)
        *current = None;
        let (shared, stop) = start_shared(cfg);
        let shared: &'static Shared = Box::leak(Box::new(shared));
        let loaded = load(shared).await;
        *current = Some(Harness {
            epoch,
            shared,
            loaded,
            _stop: stop,
        });
    }
    let current = current.as_ref().expect("the harness of this epoch");
    if let Err(e) = &current.loaded {
        panic!("{test}: loading the schema and data failed:\n{e}");
    }
    Some(current.shared)
}

/// What a harness test holds to its end: the sandbox's guard, then
/// [`STATE`]'s.
pub type Held<G> = (RwLockReadGuard<'static, ()>, G);

/// A read-only test: the sandbox (shared), the harness, [`STATE`] shared
/// and the connections.
pub async fn reader(name: &str) -> Option<(Ctx, Held<RwLockReadGuard<'static, ()>>)> {
    let sandbox = crate::sandbox::shared().await;
    let shared = harness(name).await?;
    let state = STATE.read().await;
    Some((Ctx::new(name, shared).await, (sandbox, state)))
}

/// A test that writes: the sandbox (shared), the harness, [`STATE`]
/// exclusively and the connections.
pub async fn writer(name: &str) -> Option<(Ctx, Held<RwLockWriteGuard<'static, ()>>)> {
    let sandbox = crate::sandbox::shared().await;
    let shared = harness(name).await?;
    let state = STATE.write().await;
    Some((Ctx::new(name, shared).await, (sandbox, state)))
}

/// Starts ShardGate on a runtime of its own; it stops when the sender is
/// dropped.
fn start_shared(cfg: Config) -> (Shared, oneshot::Sender<()>) {
    let rules = ShardingRules::new(&cfg).expect("the rules build");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy_cfg = cfg.clone();
    std::thread::Builder::new()
        .name("shardgate-it-proxy".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the proxy's runtime starts");
            rt.block_on(async move {
                match shardgate_proxy::start(proxy_cfg).await {
                    Ok(proxy) => {
                        let _ = tx.send(Ok(proxy.mysql_addr()));
                        let _ = stopped.await;
                        drop(proxy);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .expect("the proxy thread starts");
    let proxy_addr = rx
        .recv()
        .expect("the proxy thread answers")
        .unwrap_or_else(|e| panic!("shardgate does not start: {e}"));
    (
        Shared {
            cfg,
            rules,
            proxy_addr,
        },
        stop,
    )
}

// ------------------------------------------------------------------ data

/// A small deterministic LCG (no rand crate).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub fn opt_lit(s: &Option<String>) -> String {
    s.as_deref().map(lit).unwrap_or_else(|| "NULL".into())
}

#[derive(Clone, Debug)]
pub struct UserRow {
    pub user_id: i64,
    pub tenant_id: String,
    pub name: String,
    pub email: Option<String>,
    pub balance: Option<String>,
    pub created_at: Option<String>,
    pub status: i64,
}

impl UserRow {
    pub fn values(&self) -> String {
        format!(
            "({}, {}, {}, {}, {}, {}, {})",
            self.user_id,
            lit(&self.tenant_id),
            lit(&self.name),
            opt_lit(&self.email),
            self.balance.clone().unwrap_or_else(|| "NULL".into()),
            opt_lit(&self.created_at),
            self.status
        )
    }
}

pub const USER_COLUMNS: &str = "user_id, tenant_id, name, email, balance, created_at, status";

fn datetime_2024(rng: &mut Lcg) -> String {
    let month = 1 + rng.below(12) as u32;
    let days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
    let day = 1 + rng.below(days) as u32;
    format!(
        "2024-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// Users with ids 1..=~111000 (spread, distinct) plus a few large ids.
pub fn users(n: usize, first_id: i64, seed: u64) -> Vec<UserRow> {
    let mut rng = Lcg::new(seed);
    let names = [
        "alice",
        "Bob",
        "carol",
        "Dave",
        "ève",
        "Zoë",
        "漢字",
        "中文名字",
        "日本語",
        "한국어",
        "🦀 crab",
        "emoji 😀🎉",
        "O'Brien",
        "back\\slash",
        "",
    ];
    (0..n)
        .map(|i| {
            let user_id = if i % 500 == 499 {
                // a few large ids (snowflake-sized)
                1_700_000_000_000_000_000 + (i as i64) * 1_000_003
            } else {
                first_id + (i as i64) * 37 + rng.below(37) as i64
            };
            let base = names[rng.below(names.len() as u64) as usize];
            let name = if i % 4 == 0 {
                base.to_string()
            } else {
                format!("{base} {}", rng.below(1000))
            };
            let balance = if i % 11 == 0 {
                None
            } else {
                let cents = rng.below(2_000_000_000) as i64 - 500_000_000;
                let sign = if cents < 0 { "-" } else { "" };
                Some(format!(
                    "{sign}{}.{:04}",
                    cents.abs() / 10_000,
                    cents.abs() % 10_000
                ))
            };
            UserRow {
                user_id,
                tenant_id: format!("t{}", rng.below(40)),
                name,
                email: (i % 7 != 0).then(|| format!("user{i}@example.com")),
                balance,
                created_at: (i % 13 != 0).then(|| datetime_2024(&mut rng)),
                status: rng.below(3) as i64,
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct MessageRow {
    pub id: i64,
    pub tenant_id: String,
    pub created_at: String,
    pub sender: Option<i64>,
    pub body: String,
}

impl MessageRow {
    pub fn values(&self) -> String {
        format!(
            "({}, {}, {}, {}, {})",
            self.id,
            lit(&self.tenant_id),
            lit(&self.created_at),
            self.sender
                .map(|s| s.to_string())
                .unwrap_or_else(|| "NULL".into()),
            lit(&self.body)
        )
    }
}

pub const MESSAGE_COLUMNS: &str = "id, tenant_id, created_at, sender, body";

/// Month boundaries every run includes.
pub const BOUNDARY_TIMES: &[&str] = &[
    "2024-01-01 00:00:00",
    "2024-01-31 23:59:59",
    "2024-02-01 00:00:00",
    "2024-02-29 23:59:59",
    "2024-03-01 00:00:00",
    "2024-06-30 23:59:59",
    "2024-07-01 00:00:00",
    "2024-11-30 23:59:59",
    "2024-12-01 00:00:00",
    "2024-12-31 23:59:59",
];

pub fn messages(n: usize, first_id: i64, seed: u64) -> Vec<MessageRow> {
    let mut rng = Lcg::new(seed);
    let bodies = [
        "hello",
        "你好，世界",
        "🦀🦀 rust",
        "it's \"quoted\"",
        "line1\nline2",
        "tab\there",
        "",
    ];
    (0..n)
        .map(|i| {
            let created_at = if i < BOUNDARY_TIMES.len() * 3 {
                BOUNDARY_TIMES[i % BOUNDARY_TIMES.len()].to_string()
            } else {
                datetime_2024(&mut rng)
            };
            MessageRow {
                id: first_id + i as i64,
                tenant_id: format!("t{}", rng.below(40)),
                created_at,
                sender: (i % 9 != 0).then(|| 1 + rng.below(100_000) as i64),
                body: format!("{} #{i}", bodies[rng.below(bodies.len() as u64) as usize]),
            }
        })
        .collect()
}

pub fn users_insert(rows: &[UserRow]) -> String {
    let values: Vec<String> = rows.iter().map(UserRow::values).collect();
    format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES {}",
        values.join(", ")
    )
}

pub fn messages_insert(rows: &[MessageRow]) -> String {
    let values: Vec<String> = rows.iter().map(MessageRow::values).collect();
    format!(
        "INSERT INTO message_records ({MESSAGE_COLUMNS}) VALUES {}",
        values.join(", ")
    )
}

/// Drops every physical table of the config directly, recreates the
/// reference database, creates the schema through ShardGate and in the
/// reference, and loads the same data into both.
async fn load(shared: &Shared) -> Result<(), String> {
    let started = std::time::Instant::now();
    // 1. a clean slate, directly on each primary
    let mut stale: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in [
        "users",
        "message_records",
        "sys_configs",
        "sys_permissions",
        "it_orders",
    ] {
        for node in shared.rules.nodes(table) {
            stale.entry(node.data_source).or_default().push(node.table);
        }
    }
    for ds in shared.data_source_names() {
        let tables = stale.entry(ds.clone()).or_default();
        // logical names left by earlier pass-through runs
        for t in ["users", "message_records", "it_orders"] {
            if !tables.iter().any(|x| x == t) {
                tables.push(t.to_string());
            }
        }
        let mut conn = shared
            .data_source(&ds)
            .connect()
            .await
            .map_err(|e| format!("connect to {ds}: {e}"))?;
        let list: Vec<String> = tables.iter().map(|t| format!("`{t}`")).collect();
        run(
            &mut conn,
            &format!("DROP TABLE IF EXISTS {}", list.join(", ")),
        )
        .await
        .map_err(|e| format!("{ds}: {e}"))?;
    }
    let mut admin = crate::direct_endpoint(&shared.cfg)
        .connect()
        .await
        .map_err(|e| format!("connect to ds0: {e}"))?;
    run(&mut admin, &format!("DROP DATABASE IF EXISTS {REF_DB}")).await?;
    run(
        &mut admin,
        &format!("CREATE DATABASE {REF_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
    )
    .await?;

    // 2. the schema, through both
    let mut px = shared
        .proxy()
        .connect()
        .await
        .map_err(|e| format!("connect to shardgate: {e}"))?;
    let mut rf = shared
        .reference()
        .connect()
        .await
        .map_err(|e| format!("connect to {REF_DB}: {e}"))?;
    let mut problems = Vec::new();
    let mut statements: Vec<String> = vec![
        USERS_DDL.into(),
        MESSAGES_DDL.into(),
        SYS_CONFIGS_DDL.into(),
        SYS_PERMISSIONS_DDL.into(),
    ];
    // 3. the data: multi-row INSERTs whose rows land on many nodes
    let users = users(USER_COUNT, 1, 0x5eed_0001);
    for chunk in users.chunks(250) {
        statements.push(users_insert(chunk));
    }
    let messages = messages(MESSAGE_COUNT, 1, 0x5eed_0002);
    for chunk in messages.chunks(250) {
        statements.push(messages_insert(chunk));
    }
    statements.push(
        "INSERT INTO sys_configs (k, v) VALUES ('site.name', 'WeWork 漢字'), ('site.emoji', '🦀'), \
         ('limits.max_users', '100000'), ('feature.x', NULL), ('quote''s', 'it''s')"
            .into(),
    );
    let perms: Vec<String> = (1..=25)
        .map(|i| format!("({i}, {})", lit(&format!("perm.{i}"))))
        .collect();
    statements.push(format!(
        "INSERT INTO sys_permissions (id, name) VALUES {}",
        perms.join(", ")
    ));
    for sql in &statements {
        let p = outcome(&mut px, &Stmt::text(sql)).await;
        let r = outcome(&mut rf, &Stmt::text(sql)).await;
        if let Some(diff) = compare(&r, &p, Mode::Multiset, true) {
            problems.push(format!("{}\n{diff}", clip_sql(sql)));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n\n"));
    }
    say(&format!(
        "sharding tests: schema and data loaded through shardgate and into {REF_DB} in {:?}",
        started.elapsed()
    ));
    Ok(())
}

async fn run(conn: &mut MySqlConnection, sql: &str) -> Result<(), String> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| format!("{}: {e}", clip_sql(sql)))
}

pub fn clip_sql(sql: &str) -> String {
    if sql.chars().count() <= 300 {
        sql.to_string()
    } else {
        let head: String = sql.chars().take(300).collect();
        format!("{head}… ({} chars)", sql.len())
    }
}

// ------------------------------------------------------------ statements

/// A bound parameter of a prepared statement.
#[derive(Clone, Debug)]
pub enum Arg {
    I64(i64),
    Str(String),
    Null,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I64(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Str(v.to_string())
    }
}

/// A statement and the protocol to send it with.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub sql: String,
    /// `None`: text protocol (COM_QUERY). `Some`: prepared (COM_STMT_PREPARE
    /// and COM_STMT_EXECUTE) with these parameters.
    pub binds: Option<Vec<Arg>>,
}

impl Stmt {
    pub fn text(sql: &str) -> Stmt {
        Stmt {
            sql: sql.to_string(),
            binds: None,
        }
    }
    pub fn prepared(sql: &str, binds: Vec<Arg>) -> Stmt {
        Stmt {
            sql: sql.to_string(),
            binds: Some(binds),
        }
    }
    fn describe(&self) -> String {
        match &self.binds {
            None => format!("[text] {}", clip_sql(&self.sql)),
            Some(b) => format!("[prepared] {} -- binds {:?}", clip_sql(&self.sql), b),
        }
    }
}

/// What a statement produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done {
        /// `label:TYPE` of each column (from the first row; empty without rows).
        columns: Vec<String>,
        /// Rows, each value rendered canonically.
        rows: Vec<String>,
        affected: u64,
        last_insert_id: u64,
    },
    Error {
        code: u16,
        message: String,
    },
    /// Not a server error: I/O, protocol or decoding.
    Failure(String),
}

impl Outcome {
    pub fn rows(&self) -> &[String] {
        match self {
            Outcome::Done { rows, .. } => rows,
            _ => &[],
        }
    }
    pub fn affected(&self) -> Option<u64> {
        match self {
            Outcome::Done { affected, .. } => Some(*affected),
            _ => None,
        }
    }
    pub fn is_refused(&self) -> bool {
        matches!(self, Outcome::Error { code, .. } if *code == ER_NOT_SUPPORTED_YET)
    }
}

pub fn render_row(row: &MySqlRow) -> String {
    let values: Vec<Value> = (0..row.len()).map(|i| render_value(row, i)).collect();
    Value::Array(values).to_string()
}

/// `label:TYPE` of each column of a row.
pub fn columns_of(row: &MySqlRow) -> Vec<String> {
    row.columns()
        .iter()
        .map(|c| format!("{}:{}", c.name(), c.type_info().name()))
        .collect()
}

/// Runs one statement and records what it produced.
pub async fn outcome(conn: &mut MySqlConnection, stmt: &Stmt) -> Outcome {
    let stream = match &stmt.binds {
        None => sqlx::raw_sql(&stmt.sql).fetch_many(&mut *conn),
        Some(binds) => {
            let mut q = sqlx::query::<sqlx::MySql>(&stmt.sql);
            for b in binds {
                q = match b {
                    Arg::I64(v) => q.bind(*v),
                    Arg::Str(s) => q.bind(s.clone()),
                    Arg::Null => q.bind(None::<i64>),
                };
            }
            let q: sqlx::query::Query<'_, sqlx::MySql, MySqlArguments> = q;
            // one statement per prepare: the deprecation is about several
            #[allow(deprecated)]
            q.fetch_many(&mut *conn)
        }
    };
    let items: Result<Vec<_>, sqlx::Error> = stream.try_collect().await;
    match items {
        Err(e) => match db_error(&e) {
            Some((code, _, message)) => Outcome::Error { code, message },
            None => Outcome::Failure(e.to_string()),
        },
        Ok(items) => {
            let mut columns = Vec::new();
            let mut rows = Vec::new();
            let mut affected = 0;
            let mut last_insert_id = 0;
            for item in items {
                match item {
                    Either::Left(done) => {
                        affected += done.rows_affected();
                        if done.last_insert_id() != 0 {
                            last_insert_id = done.last_insert_id();
                        }
                    }
                    Either::Right(row) => {
                        if columns.is_empty() {
                            columns = columns_of(&row);
                        }
                        rows.push(render_row(&row));
                    }
                }
            }
            Outcome::Done {
                columns,
                rows,
                affected,
                last_insert_id,
            }
        }
    }
}

/// How result rows compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No ORDER BY (or a partial one): rows as a multiset.
    Multiset,
    /// A total ORDER BY: rows as a sequence.
    Ordered,
}

/// `None` when equal; else a readable difference (reference vs ShardGate).
pub fn compare(
    reference: &Outcome,
    proxied: &Outcome,
    mode: Mode,
    check_last_id: bool,
) -> Option<String> {
    match (reference, proxied) {
        (
            Outcome::Done {
                columns: c1,
                rows: r1,
                affected: a1,
                last_insert_id: l1,
            },
            Outcome::Done {
                columns: c2,
                rows: r2,
                affected: a2,
                last_insert_id: l2,
            },
        ) => {
            let mut out = String::new();
            if !c1.is_empty() && !c2.is_empty() && c1 != c2 {
                let _ = writeln!(
                    out,
                    "  columns: reference {c1:?}\n           shardgate {c2:?}"
                );
            }
            if a1 != a2 {
                let _ = writeln!(out, "  affected rows: reference {a1}, shardgate {a2}");
            }
            if check_last_id && l1 != l2 {
                let _ = writeln!(out, "  last insert id: reference {l1}, shardgate {l2}");
            }
            if let Some(d) = row_diff(r1, r2, mode) {
                out.push_str(&d);
            }
            (!out.is_empty()).then_some(out)
        }
        (Outcome::Error { code: e1, .. }, Outcome::Error { code: e2, .. }) if e1 == e2 => None,
        _ => Some(format!(
            "  reference: {}\n  shardgate: {}",
            summary(reference),
            summary(proxied)
        )),
    }
}

pub fn summary(o: &Outcome) -> String {
    match o {
        Outcome::Done {
            rows,
            affected,
            last_insert_id,
            ..
        } => format!(
            "{} row(s), {affected} affected, last insert id {last_insert_id}{}",
            rows.len(),
            rows.first()
                .map(|r| format!(", first {}", clip_sql(r)))
                .unwrap_or_default()
        ),
        Outcome::Error { code, message } => format!("ERROR {code}: {message}"),
        Outcome::Failure(e) => format!("client failure: {e}"),
    }
}

fn row_diff(reference: &[String], proxied: &[String], mode: Mode) -> Option<String> {
    match mode {
        Mode::Ordered => {
            if reference == proxied {
                return None;
            }
            let at = reference
                .iter()
                .zip(proxied)
                .position(|(a, b)| a != b)
                .unwrap_or(reference.len().min(proxied.len()));
            let mut out = format!(
                "  rows: reference {} row(s), shardgate {}; first difference at row {at}\n",
                reference.len(),
                proxied.len()
            );
            for i in at..(at + 3) {
                let a = reference.get(i).map(String::as_str).unwrap_or("(none)");
                let b = proxied.get(i).map(String::as_str).unwrap_or("(none)");
                let _ = writeln!(
                    out,
                    "   [{i}] reference {}\n   [{i}] shardgate {}",
                    clip_sql(a),
                    clip_sql(b)
                );
            }
            Some(out)
        }
        Mode::Multiset => {
            let mut count: HashMap<&str, i64> = HashMap::new();
            for r in reference {
                *count.entry(r).or_default() += 1;
            }
            for r in proxied {
                *count.entry(r).or_default() -= 1;
            }
            if count.values().all(|&c| c == 0) {
                return None;
            }
            let mut only_ref: Vec<&str> = count
                .iter()
                .filter(|(_, &c)| c > 0)
                .map(|(r, _)| *r)
                .collect();
            let mut only_px: Vec<&str> = count
                .iter()
                .filter(|(_, &c)| c < 0)
                .map(|(r, _)| *r)
                .collect();
            only_ref.sort();
            only_px.sort();
            let mut out = format!(
                "  rows (as multisets): reference {} row(s), shardgate {}; {} only in the reference, {} only through shardgate\n",
                reference.len(),
                proxied.len(),
                only_ref.len(),
                only_px.len()
            );
            for r in only_ref.iter().take(4) {
                let _ = writeln!(out, "   - {}", clip_sql(r));
            }
            for r in only_px.iter().take(4) {
                let _ = writeln!(out, "   + {}", clip_sql(r));
            }
            Some(out)
        }
    }
}

// --------------------------------------------------------------- a test

/// One test's connections and findings. Call [`Ctx::finish`] at the end: it
/// fails the test listing every wrong answer and every refusal.
pub struct Ctx {
    pub name: String,
    pub shared: &'static Shared,
    /// Through ShardGate, database `wework`.
    pub px: MySqlConnection,
    /// The reference database.
    pub rf: MySqlConnection,
    wrong: Vec<String>,
    refused: Vec<String>,
    pub checked: usize,
}

impl Ctx {
    pub async fn new(name: &str, shared: &'static Shared) -> Ctx {
        let px = shared
            .proxy()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name}: connect to shardgate: {e}"));
        let rf = shared
            .reference()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name}: connect to {REF_DB}: {e}"));
        Ctx {
            name: name.to_string(),
            shared,
            px,
            rf,
            wrong: Vec::new(),
            refused: Vec::new(),
            checked: 0,
        }
    }

    /// Runs `stmt` through both and records a difference. Returns both outcomes.
    pub async fn check(
        &mut self,
        stmt: Stmt,
        mode: Mode,
        check_last_id: bool,
    ) -> (Outcome, Outcome) {
        self.checked += 1;
        let p = outcome(&mut self.px, &stmt).await;
        if p.is_refused() {
            // not run on the reference either, so that both stay alike
            self.refused
                .push(format!("{}\n  {}", stmt.describe(), summary(&p)));
            return (p.clone(), p);
        }
        let r = outcome(&mut self.rf, &stmt).await;
        if let Some(diff) = compare(&r, &p, mode, check_last_id) {
            self.wrong.push(format!("{}\n{diff}", stmt.describe()));
        }
        (r, p)
    }

    /// Text protocol, rows as a multiset.
    pub async fn same(&mut self, sql: &str) -> (Outcome, Outcome) {
        self.check(Stmt::text(sql), Mode::Multiset, true).await
    }

    /// Text protocol, rows in order (the statement has a total ORDER BY).
    pub async fn same_ordered(&mut self, sql: &str) -> (Outcome, Outcome) {
        self.check(Stmt::text(sql), Mode::Ordered, true).await
    }

    /// Prepared, rows as a multiset.
    pub async fn same_prep(&mut self, sql: &str, binds: Vec<Arg>) -> (Outcome, Outcome) {
        self.check(Stmt::prepared(sql, binds), Mode::Multiset, true)
            .await
    }

    /// Prepared, rows in order.
    pub async fn same_prep_ordered(&mut self, sql: &str, binds: Vec<Arg>) -> (Outcome, Outcome) {
        self.check(Stmt::prepared(sql, binds), Mode::Ordered, true)
            .await
    }

    /// For statements ShardGate may legitimately refuse (cross-node joins,
    /// multi-node UPDATE ... ORDER BY ... LIMIT): a refusal with 1235 whose
    /// message names every table of `tables` passes (the reference is then
    /// not run, so that both stay alike); anything else must equal the
    /// reference. Returns true when refused.
    pub async fn same_or_refused(&mut self, sql: &str, tables: &[&str]) -> bool {
        self.checked += 1;
        let p = outcome(&mut self.px, &Stmt::text(sql)).await;
        if let Outcome::Error {
            code: ER_NOT_SUPPORTED_YET,
            message,
        } = &p
        {
            let unnamed: Vec<&&str> = tables.iter().filter(|t| !message.contains(**t)).collect();
            if !unnamed.is_empty() {
                self.wrong.push(format!(
                    "[text] {}\n  refused with 1235, but the message does not name {unnamed:?}: {message}",
                    clip_sql(sql)
                ));
            } else {
                say(&format!(
                    "{}: refused as allowed: {}: {message}",
                    self.name,
                    clip_sql(sql)
                ));
            }
            return true;
        }
        let r = outcome(&mut self.rf, &Stmt::text(sql)).await;
        if let Some(diff) = compare(&r, &p, Mode::Multiset, true) {
            self.wrong.push(format!("[text] {}\n{diff}", clip_sql(sql)));
        }
        false
    }

    /// Both sides, no comparison (set-up and clean-up); failures are recorded.
    pub async fn both(&mut self, sql: &str) {
        let p = outcome(&mut self.px, &Stmt::text(sql)).await;
        let r = outcome(&mut self.rf, &Stmt::text(sql)).await;
        for (who, o) in [("shardgate", &p), ("reference", &r)] {
            if !matches!(o, Outcome::Done { .. }) {
                self.wrong.push(format!(
                    "[setup, {who}] {}\n  {}",
                    clip_sql(sql),
                    summary(o)
                ));
            }
        }
    }

    /// Through ShardGate only.
    pub async fn proxy(&mut self, stmt: Stmt) -> Outcome {
        outcome(&mut self.px, &stmt).await
    }

    /// In the reference only.
    pub async fn reference(&mut self, sql: &str) -> Outcome {
        outcome(&mut self.rf, &Stmt::text(sql)).await
    }

    /// Records a wrong answer found by the test itself.
    pub fn wrong(&mut self, what: String) {
        self.wrong.push(what);
    }

    /// Records a refusal found by the test itself.
    pub fn refused(&mut self, what: String) {
        self.refused.push(what);
    }

    /// Checks placement of every row of `table` against the rules and the
    /// union of its physical rows against the reference table.
    pub async fn placement(&mut self, table: &str) {
        let problems = check_placement(self.shared, table).await;
        self.wrong.extend(problems);
    }

    /// Fails the test with every wrong answer (first) and refusal.
    pub fn finish(self) {
        if self.wrong.is_empty() && self.refused.is_empty() {
            say(&format!(
                "{}: {} statements equal to the reference",
                self.name, self.checked
            ));
            return;
        }
        let mut msg = format!("{}: ", self.name);
        if !self.wrong.is_empty() {
            let _ = writeln!(
                msg,
                "WRONG: {} answer(s) differ from the reference",
                self.wrong.len()
            );
            for w in &self.wrong {
                let _ = writeln!(msg, "- {w}");
            }
        }
        if !self.refused.is_empty() {
            let _ = writeln!(
                msg,
                "REFUSED (1235, not supported yet): {} statement(s)",
                self.refused.len()
            );
            for r in &self.refused {
                let _ = writeln!(msg, "- {r}");
            }
        }
        panic!("{msg}");
    }
}

// ------------------------------------------------------------- placement

/// The value of a sharding column as the rules take it.
fn shard_value(row: &MySqlRow, column: &str) -> Result<ShardValue, String> {
    let raw = row
        .try_get_raw(column)
        .map_err(|e| format!("column {column}: {e}"))?;
    if raw.is_null() {
        return Ok(ShardValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    match ty.as_str() {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => row
            .try_get::<i64, _>(column)
            .map(ShardValue::Int)
            .map_err(|e| e.to_string()),
        "DATETIME" | "TIMESTAMP" => row
            .try_get::<NaiveDateTime, _>(column)
            .map(|d| ShardValue::Text(d.format("%Y-%m-%d %H:%M:%S").to_string()))
            .map_err(|e| e.to_string()),
        _ => row
            .try_get::<String, _>(column)
            .map(ShardValue::Text)
            .map_err(|e| e.to_string()),
    }
}

/// The rows of one physical table of a logical table, read directly from
/// its data source's primary.
pub struct PhysicalRows {
    pub node: DataNode,
    pub rows: Vec<MySqlRow>,
}

/// Every physical table the rules name for `table` (`cfg` says where each
/// data source is), read directly with `SELECT *`. Returns the tables read
/// and the problems met: a data source that cannot be reached, a physical
/// table missing or unreadable.
pub async fn read_physical_tables(
    cfg: &Config,
    rules: &ShardingRules,
    table: &str,
) -> (Vec<PhysicalRows>, Vec<String>) {
    let mut problems = Vec::new();
    let mut tables = Vec::new();
    let mut conns: BTreeMap<String, MySqlConnection> = BTreeMap::new();
    let mut missing: Vec<String> = Vec::new();
    for node in rules.nodes(table) {
        let ds = node.data_source.clone();
        if !conns.contains_key(&ds) {
            let Some(endpoint) = crate::data_source_endpoint(cfg, &ds) else {
                problems.push(format!(
                    "placement of {table}: data source {ds} is not in the config"
                ));
                continue;
            };
            match endpoint.connect().await {
                Ok(c) => {
                    conns.insert(ds.clone(), c);
                }
                Err(e) => {
                    problems.push(format!("placement of {table}: connect to {ds}: {e}"));
                    continue;
                }
            }
        }
        let conn = conns.get_mut(&ds).expect("connected");
        // Text protocol, through `Executor` rather than `raw_sql`, whose
        // future is not `Send` for every lifetime: callers spawn this.
        let sql = format!("SELECT * FROM `{}`", node.table);
        match conn.fetch_all(sql.as_str()).await {
            Ok(rows) => tables.push(PhysicalRows {
                node: node.clone(),
                rows,
            }),
            Err(e) => {
                if db_error(&e).map(|(code, _, _)| code) == Some(1146) {
                    missing.push(format!("{ds}.{}", node.table));
                } else {
                    problems.push(format!(
                        "placement of {table}: reading physical table {}.{}: {e}",
                        ds, node.table
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "placement of {table}: {} physical table(s) missing: {}{}",
            missing.len(),
            missing
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() > 6 { ", …" } else { "" }
        ));
    }
    (tables, problems)
}

/// The rows of a sharded `table` that do not sit on the node the rules name
/// for them (the first five, then a count).
pub fn misplaced_rows(rules: &ShardingRules, table: &str, tables: &[PhysicalRows]) -> Vec<String> {
    let columns: Vec<&str> = rules.sharding_columns(table);
    let mut problems = Vec::new();
    let mut misplaced = 0usize;
    for physical in tables {
        for row in &physical.rows {
            let values: Result<Vec<(&str, ShardValue)>, String> = columns
                .iter()
                .map(|c| shard_value(row, c).map(|v| (*c, v)))
                .collect();
            let home =
                values.and_then(|pairs| rules.route_row(table, &pairs).map_err(|e| e.to_string()));
            if !matches!(&home, Ok(h) if *h == physical.node) {
                misplaced += 1;
                if misplaced <= 5 {
                    problems.push(format!(
                        "MISPLACED row of {table} on {}.{}: rules say {:?}: {}",
                        physical.node.data_source,
                        physical.node.table,
                        home,
                        clip_sql(&render_row(row))
                    ));
                }
            }
        }
    }
    if misplaced > 5 {
        problems.push(format!("… {misplaced} misplaced rows of {table} in all"));
    }
    problems
}

/// Every physical copy of `table`, read directly: rows where the rules say
/// (sharded) or identical copies (broadcast), and the union (or each copy)
/// equal to the reference table. Returns the problems found.
pub async fn check_placement(shared: &Shared, table: &str) -> Vec<String> {
    let reference = {
        let mut rf = match shared.reference().connect().await {
            Ok(c) => c,
            Err(e) => return vec![format!("placement of {table}: connect to {REF_DB}: {e}")],
        };
        match sqlx::raw_sql(&format!("SELECT * FROM `{table}`"))
            .fetch_all(&mut rf)
            .await
        {
            Ok(rows) => rows.iter().map(render_row).collect::<Vec<_>>(),
            Err(e) => {
                return vec![format!(
                    "placement of {table}: reading {REF_DB}.{table}: {e}"
                )]
            }
        }
    };
    let (tables, mut problems) = read_physical_tables(&shared.cfg, &shared.rules, table).await;
    if shared.rules.table_kind(table) == TableKind::Broadcast {
        for physical in &tables {
            let copy: Vec<String> = physical.rows.iter().map(render_row).collect();
            if let Some(d) = row_diff(&reference, &copy, Mode::Multiset) {
                problems.push(format!(
                    "broadcast table {table}: the copy on {} differs from the reference\n{d}",
                    physical.node.data_source
                ));
            }
        }
        return problems;
    }
    problems.extend(misplaced_rows(&shared.rules, table, &tables));
    let union: Vec<String> = tables
        .iter()
        .flat_map(|physical| physical.rows.iter().map(render_row))
        .collect();
    if let Some(d) = row_diff(&reference, &union, Mode::Multiset) {
        problems.push(format!(
            "{table}: the union of the physical tables differs from the reference table\n{d}"
        ));
    }
    problems
}

/// Deletes rows directly from every physical table of `table` and from the
/// reference (clean-up that does not depend on ShardGate).
pub async fn delete_directly(shared: &Shared, table: &str, condition: &str) -> Result<(), String> {
    let mut conns: BTreeMap<String, MySqlConnection> = BTreeMap::new();
    for node in shared.rules.nodes(table) {
        if !conns.contains_key(&node.data_source) {
            let c = shared
                .data_source(&node.data_source)
                .connect()
                .await
                .map_err(|e| format!("connect to {}: {e}", node.data_source))?;
            conns.insert(node.data_source.clone(), c);
        }
        let conn = conns.get_mut(&node.data_source).expect("connected");
        // a table missing (e.g. not created yet) is not this helper's problem
        let _ = sqlx::raw_sql(&format!("DELETE FROM `{}` WHERE {condition}", node.table))
            .execute(&mut *conn)
            .await;
    }
    // rows a misrouting proxy may have left under the logical name
    for ds in shared.data_source_names() {
        if let Ok(mut conn) = shared.data_source(&ds).connect().await {
            let _ = sqlx::raw_sql(&format!("DELETE FROM `{table}` WHERE {condition}"))
                .execute(&mut conn)
                .await;
        }
    }
    let mut rf = shared
        .reference()
        .connect()
        .await
        .map_err(|e| format!("connect to {REF_DB}: {e}"))?;
    run(&mut rf, &format!("DELETE FROM `{table}` WHERE {condition}")).await
}

/// The physical tables (per data source, lower-case) that exist now.
pub async fn physical_tables(shared: &Shared) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for ds in shared.data_source_names() {
        let ep = shared.data_source(&ds);
        let mut conn = ep
            .connect()
            .await
            .map_err(|e| format!("connect to {ds}: {e}"))?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
        )
        .bind(&ep.database)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("{ds}: {e}"))?;
        out.insert(ds, names.into_iter().map(|n| n.to_lowercase()).collect());
    }
    Ok(out)
}

/// Directly on a data source: one scalar.
pub async fn direct_scalar_i64(
    shared: &Shared,
    ds: &str,
    sql: &str,
) -> Result<Option<i64>, String> {
    let mut conn = shared
        .data_source(ds)
        .connect()
        .await
        .map_err(|e| format!("connect to {ds}: {e}"))?;
    sqlx::raw_sql(sql)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("{ds}: {sql}: {e}"))
        .map(|rows| {
            rows.first()
                .and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten())
        })
}
