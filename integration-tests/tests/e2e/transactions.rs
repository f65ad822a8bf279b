//! The transaction-shape matrix, differentially: every cell runs through
//! ShardGate (logical database `wework` on `examples/wework.toml` as
//! shipped: 4 primaries with 2 replicas each, read/write splitting on,
//! `transaction_reads = "primary"`) and
//! against one plain MariaDB database, and the outcomes must be equal: rows,
//! column labels and types, affected counts, last insert ids, error numbers.
//!
//! The logical tables are the seed's `users` and `message_records` (same
//! DDL, same sharding algorithms as `src/sharding.rs` loads them), a
//! broadcast table and an unsharded AUTO_INCREMENT table; their physical
//! tables (`txu_*`, `txm_*`, `txn_configs`, `txn_events`) and the reference
//! database (`wework_txn_ref`) are these tests' own, made anew by each test,
//! so that other tests loading the seed's tables and these tests leave each
//! other alone.
//!
//! A cell is one of
//! - how the transaction opens: autocommit on (no transaction), autocommit
//!   off by a driver's flag (`SET autocommit=0` alone right after connect,
//!   what PyMySQL and Connector/J send), `SET autocommit=0` in a session
//!   with a past, `BEGIN`, `START TRANSACTION READ ONLY` (also through a
//!   second ShardGate with `transaction_reads = "replica"`), `START
//!   TRANSACTION READ WRITE`;
//! - what it does: read first, write first, a scatter read then writes
//!   over several data sources, locking reads (`FOR UPDATE`, `LOCK IN
//!   SHARE MODE`, probed from another session with `NOWAIT`), INSERT then
//!   read back (with `LAST_INSERT_ID()` of the unsharded AUTO_INCREMENT
//!   table), user variables (`SELECT ... INTO @v`, `@v := ...`,
//!   `SET @v = expr`, used by later statements on other data sources);
//! - how it ends: COMMIT, ROLLBACK, ROLLBACK TO SAVEPOINT then COMMIT, and
//!   for autocommit off `SET autocommit=1` (which commits);
//! - text protocol or prepared (binds), each statement alone or the
//!   statements as multi-statement strings (prepared multi-statement is
//!   skipped, explicitly: MariaDB refuses it, which is checked once).
//!
//! Each cell works on rows of its own (users and message_records on all
//! four data sources, a broadcast `txn_configs` row, `txn_events` rows),
//! seeded before the matrix and applied by every replica before it starts.
//! Besides each statement, a cell checks:
//! - read-your-writes inside the transaction (reads after its writes) and
//!   repeatable read (another session changes a row the transaction read;
//!   every replica applies it; the transaction reads it again);
//! - the same session right after the end (autocommit on again, so reads
//!   may go to replicas): must equal the reference at once — with
//!   `read_consistency = "session"` or `"proxy"` a session never reads
//!   older than its own writes;
//! - a new session: with `read_consistency = "proxy"` (the default) it must
//!   see the end state at once (a read never sees data older than a write
//!   the proxy acknowledged before it began); with `"session"` it has no
//!   writes of its own, so replicas may lag behind, and it must reach the
//!   end state within 10 s; the time it needed is printed;
//! - afterwards nothing is left open: the reference session is out of any
//!   transaction, and ShardGate's pools have no connection in use
//!   (`GET /api/pools`) while every session is idle.
//!
//! The PyMySQL column runs the autocommit-off cells through PyMySQL with
//! `autocommit=False`, ending with the driver's commit() / rollback() /
//! autocommit(True), and also compares the server status flags
//! (IN_TRANS, AUTOCOMMIT, MORE_RESULTS, IN_TRANS_READONLY) the driver saw.
//!
//! Further tests: hand-written edge cases of the same kind; metadata locks
//! (DDL from another session waits while a `SET autocommit=0` session has
//! read a table, and not after it ended, disconnected, or turned autocommit
//! back on); 60 idle sessions that only ran `SET autocommit=0` hold no
//! backend connection (`GET /api/pools`).
//!
//! One line per cell on stderr (`ok`, `FAIL` with the statements and both
//! outcomes, `skip` with the reason); a failing test lists every failing
//! cell. `TXN_FILTER=<text>` runs the matrix cells whose title contains it.
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use futures_util::TryStreamExt;
use shardgate_integration_tests::http;
use shardgate_integration_tests::sharding::{
    columns_of, compare, lit, outcome, render_row, summary, Arg, Mode, Outcome, Stmt, MESSAGES_DDL,
    USERS_DDL,
};
use shardgate_integration_tests::{
    data_source_endpoint, direct_endpoint, sandbox, sandbox_ready, say, start_proxy, Config,
    Driver, Endpoint, RunningProxy, SEED_CONFIG,
};
use shardgate_rules::config::{ReadConsistency, TransactionReads};
use shardgate_rules::{ShardValue, ShardingRules};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Either};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The rows of cell `n` have ids `BASE_ID + n * CELL_SPAN ..`: far from the
/// seed's and other tests' (a multiple of 4, so `lo + k` is on ds`k`).
const BASE_ID: i64 = 7_300_000_000;
const CELL_SPAN: i64 = 100;
/// Cell numbers of each test (disjoint, so that their rows are).
const MATRIX_CELLS: usize = 0;
const PYMYSQL_CELLS: usize = 2000;
const EDGE_CELLS: usize = 3000;

/// How long one statement may take before the cell fails.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a new session may take to see a cell's end state.
const CONVERGE: Duration = Duration::from_secs(10);

// ================================================================ set-up

/// The reference database of these tests (on ds0's server), apart from the
/// sharding tests' `wework_ref`.
const TXN_REF_DB: &str = "wework_txn_ref";

/// `examples/wework.toml` as shipped — the same logical tables, sharding
/// algorithms, replicas and read settings — with physical tables of these
/// tests' own (`txu_*` for users, `txm_*` for message_records, the
/// broadcast `txn_configs`), so that other tests loading the seed's
/// tables (which drop and recreate `users_*`, `message_records_*`,
/// `sys_configs` and `wework_ref`) and these tests leave each other alone.
fn txn_config() -> Config {
    let mut text = SEED_CONFIG.to_string();
    for (from, to) in [
        ("users_${0..15}", "txu_${0..15}"),
        ("users_${(user_id / 4) % 16}", "txu_${(user_id / 4) % 16}"),
        ("message_records_${202401..202412}", "txm_${202401..202412}"),
        (
            r#"tables = ["sys_configs", "sys_dictionaries", "sys_permissions"]"#,
            r#"tables = ["txn_configs"]"#,
        ),
    ] {
        assert!(text.contains(from), "the seed config has {from}");
        text = text.replace(from, to);
    }
    let mut cfg = Config::from_toml_str(&text).expect("the transaction tests' config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

/// ShardGate on [`txn_config`] (in this test's runtime) and the reference.
struct Env {
    cfg: Config,
    rules: ShardingRules,
    admin_addr: std::net::SocketAddr,
    running: RunningProxy,
}

impl Env {
    fn proxy(&self) -> Endpoint {
        self.running.endpoint()
    }

    fn reference(&self) -> Endpoint {
        direct_endpoint(&self.cfg).with_database(TXN_REF_DB)
    }

    fn data_source(&self, name: &str) -> Endpoint {
        data_source_endpoint(&self.cfg, name).expect("a configured data source")
    }
}

const TXN_CONFIGS_DDL: &str =
    "CREATE TABLE txn_configs (k VARCHAR(64) PRIMARY KEY, v VARCHAR(255))";
const TXN_EVENTS_DDL: &str = "CREATE TABLE txn_events (id BIGINT AUTO_INCREMENT PRIMARY KEY, cell VARCHAR(32), note VARCHAR(64))";

/// Starts ShardGate and makes the tables anew: dropped directly on every
/// data source, the reference database recreated, then created through
/// ShardGate and in the reference alike. None when the sandbox is not
/// running (the test is skipped).
async fn env(test: &str) -> Option<&'static Env> {
    let cfg = txn_config();
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    let rules = ShardingRules::new(&cfg).expect("the rules build");
    let running = start_proxy(cfg.clone()).await;
    let env: &'static Env = Box::leak(Box::new(Env {
        admin_addr: running.admin_addr,
        cfg,
        rules,
        running,
    }));
    let started = Instant::now();
    let mut physical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in ["users", "message_records", "txn_configs"] {
        for node in env.rules.nodes(table) {
            physical
                .entry(node.data_source)
                .or_default()
                .push(node.table);
        }
    }
    let default = env.cfg.server.default_data_source.clone();
    physical
        .entry(default)
        .or_default()
        .extend(["txn_events", "txn_mdl", "txn_mdl_renamed", "txn_ddl_probe"].map(String::from));
    for (ds, tables) in &physical {
        let mut conn = env
            .data_source(ds)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{test}: connect to {ds}: {e}"));
        let list: Vec<String> = tables.iter().map(|t| format!("`{t}`")).collect();
        let sql = format!("DROP TABLE IF EXISTS {}", list.join(", "));
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{test}: {ds}: {sql}: {e}"));
    }
    let mut admin = direct_endpoint(&env.cfg)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{test}: connect to ds0: {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {TXN_REF_DB}"),
        format!("CREATE DATABASE {TXN_REF_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
    ] {
        sqlx::raw_sql(&sql)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{test}: {sql}: {e}"));
    }
    let mut pair = Pair::open(&env.proxy(), &env.reference())
        .await
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    for sql in [USERS_DDL, MESSAGES_DDL, TXN_CONFIGS_DDL, TXN_EVENTS_DDL] {
        pair.setup(sql)
            .await
            .unwrap_or_else(|e| panic!("{test}: creating the tables: {e}"));
    }
    say(&format!(
        "{test}: tables created through shardgate and in {TXN_REF_DB} in {:?}",
        started.elapsed()
    ));
    Some(env)
}

// ================================================================ cells

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TxMode {
    AutocommitOn,
    DriverFlag,
    SetAutocommit0,
    Begin,
    ReadOnly,
    ReadWrite,
    /// `START TRANSACTION READ ONLY` through a ShardGate with
    /// `transaction_reads = "replica"`.
    ReadOnlyOnReplicas,
    /// PyMySQL's `autocommit=False` (the PyMySQL column only).
    PyMySql,
}

impl TxMode {
    const MATRIX: [TxMode; 7] = [
        TxMode::AutocommitOn,
        TxMode::DriverFlag,
        TxMode::SetAutocommit0,
        TxMode::Begin,
        TxMode::ReadOnly,
        TxMode::ReadWrite,
        TxMode::ReadOnlyOnReplicas,
    ];

    fn name(self) -> &'static str {
        match self {
            TxMode::AutocommitOn => "autocommit=1",
            TxMode::DriverFlag => "driver flag (SET autocommit=0 at connect)",
            TxMode::SetAutocommit0 => "SET autocommit=0",
            TxMode::Begin => "BEGIN",
            TxMode::ReadOnly => "START TRANSACTION READ ONLY",
            TxMode::ReadWrite => "START TRANSACTION READ WRITE",
            TxMode::ReadOnlyOnReplicas => "START TRANSACTION READ ONLY [transaction_reads=replica]",
            TxMode::PyMySql => "PyMySQL autocommit=False",
        }
    }

    fn autocommit_off(self) -> bool {
        matches!(
            self,
            TxMode::DriverFlag | TxMode::SetAutocommit0 | TxMode::PyMySql
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    ReadFirst,
    WriteFirst,
    ScatterThenMultiWrite,
    LockingReads,
    InsertReadBack,
    UserVars,
}

impl Shape {
    const ALL: [Shape; 6] = [
        Shape::ReadFirst,
        Shape::WriteFirst,
        Shape::ScatterThenMultiWrite,
        Shape::LockingReads,
        Shape::InsertReadBack,
        Shape::UserVars,
    ];

    fn name(self) -> &'static str {
        match self {
            Shape::ReadFirst => "read first",
            Shape::WriteFirst => "write first",
            Shape::ScatterThenMultiWrite => "scatter read, multi-node write",
            Shape::LockingReads => "FOR UPDATE / LOCK IN SHARE MODE",
            Shape::InsertReadBack => "INSERT, read back",
            Shape::UserVars => "user variables",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
    SavepointCommit,
    /// `SET autocommit=1` with autocommit off: commits.
    AutocommitOn,
}

impl End {
    const ALL: [End; 4] = [
        End::Commit,
        End::Rollback,
        End::SavepointCommit,
        End::AutocommitOn,
    ];

    fn name(self) -> &'static str {
        match self {
            End::Commit => "COMMIT",
            End::Rollback => "ROLLBACK",
            End::SavepointCommit => "ROLLBACK TO SAVEPOINT, COMMIT",
            End::AutocommitOn => "SET autocommit=1 (commits)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Proto {
    Text,
    Prepared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Grouping {
    Single,
    Multi,
}

/// What a statement of a cell is there for (it names a failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Plain,
    /// Reads the transaction's own writes.
    Ryw,
    /// Reads again what the transaction read before another session changed it.
    Snapshot,
    /// The same session, after the end.
    After,
    /// The session's own write read back, autocommit on.
    Own,
}

#[derive(Clone, Debug)]
struct Step {
    /// With `?` for each of `args` (no `?` anywhere else).
    sql: String,
    args: Vec<Arg>,
    ordered: bool,
    tag: Tag,
}

fn st(sql: &str, args: Vec<Arg>) -> Step {
    Step {
        sql: sql.to_string(),
        args,
        ordered: false,
        tag: Tag::Plain,
    }
}

fn tagged(tag: Tag, sql: &str, args: Vec<Arg>) -> Step {
    Step {
        tag,
        ..st(sql, args)
    }
}

impl Step {
    fn ordered(mut self) -> Step {
        self.ordered = true;
        self
    }

    /// The statement with its arguments as literals.
    fn text(&self) -> String {
        let mut args = self.args.iter();
        let mut out = String::with_capacity(self.sql.len() + 16);
        for c in self.sql.chars() {
            if c == '?' {
                match args.next() {
                    Some(Arg::I64(v)) => out.push_str(&v.to_string()),
                    Some(Arg::Str(s)) => out.push_str(&lit(s)),
                    Some(Arg::Null) | None => out.push_str("NULL"),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn stmt(&self, proto: Proto) -> Stmt {
        match proto {
            Proto::Text => Stmt::text(&self.text()),
            Proto::Prepared => Stmt::prepared(&self.sql, self.args.clone()),
        }
    }

    fn mode(&self) -> Mode {
        if self.ordered {
            Mode::Ordered
        } else {
            Mode::Multiset
        }
    }

    fn describe(&self, proto: Proto) -> String {
        match proto {
            Proto::Text => self.text(),
            Proto::Prepared if self.args.is_empty() => format!("{} (prepared)", self.sql),
            Proto::Prepared => format!("{} (prepared, binds {:?})", self.sql, self.args),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum DriverCall {
    Commit,
    Rollback,
    AutocommitOn,
}

#[derive(Clone, Debug)]
enum Chunk {
    /// The first statement of a new connection, alone, as text (what a
    /// driver sends right after connecting).
    Connect(Step),
    /// Statements of the cell's session: one by one, or one multi-statement string.
    Session(Vec<Step>),
    /// Statements of another session (autocommit on, text, one by one);
    /// `writes`: replicas are then waited for.
    Other { steps: Vec<Step>, writes: bool },
    /// A call of the driver's own (the PyMySQL column only).
    Driver(DriverCall),
}

/// The rows a cell owns.
#[derive(Clone, Debug)]
struct CellData {
    lo: i64,
    tenant: String,
    /// Tenants of message_records on ds0..ds3.
    msg_tenants: [String; 4],
}

impl CellData {
    fn new(n: usize, msg_tenants: &[String; 4]) -> CellData {
        CellData {
            lo: BASE_ID + n as i64 * CELL_SPAN,
            tenant: format!("txc{n}"),
            msg_tenants: msg_tenants.clone(),
        }
    }

    /// A user id on data source ds`k` (k < 4) — or on ds`k % 4`.
    fn u(&self, k: i64) -> Arg {
        Arg::I64(self.lo + k)
    }

    fn t(&self) -> Arg {
        Arg::Str(self.tenant.clone())
    }

    fn key(&self, name: &str) -> Arg {
        Arg::Str(format!("{}.{name}", self.tenant))
    }

    fn keys(&self) -> Arg {
        Arg::Str(format!("{}.%", self.tenant))
    }

    fn lo(&self) -> Arg {
        Arg::I64(self.lo)
    }

    fn hi(&self) -> Arg {
        Arg::I64(self.lo + CELL_SPAN - 1)
    }
}

fn s(v: &str) -> Arg {
    Arg::Str(v.to_string())
}

/// A shape's statements around the savepoint, the other session's
/// between them, and the reads that end it.
struct Body {
    part1: Vec<Step>,
    other1: Vec<Step>,
    other1_writes: bool,
    part2: Vec<Step>,
    other2: Vec<Step>,
    /// Read again after `ROLLBACK TO SAVEPOINT`.
    final_reads: Vec<Step>,
}

fn body(shape: Shape, d: &CellData) -> Body {
    let snapshot = |sql: &str, args| tagged(Tag::Snapshot, sql, args);
    let ryw = |sql: &str, args| tagged(Tag::Ryw, sql, args);
    match shape {
        Shape::ReadFirst => {
            let again = snapshot(
                "SELECT user_id, name, email, balance FROM users WHERE user_id = ?",
                vec![d.u(1)],
            );
            let check = ryw(
                "SELECT user_id, balance, status FROM users WHERE user_id IN (?, ?, ?)",
                vec![d.u(1), d.u(2), d.u(3)],
            );
            Body {
                part1: vec![
                    st(
                        "SELECT user_id, name, email, balance FROM users WHERE user_id = ?",
                        vec![d.u(1)],
                    ),
                    st(
                        "UPDATE users SET balance = balance + 10 WHERE user_id = ?",
                        vec![d.u(2)],
                    ),
                ],
                other1: vec![st(
                    "UPDATE users SET email = ? WHERE user_id = ?",
                    vec![s("other"), d.u(1)],
                )],
                other1_writes: true,
                part2: vec![
                    again.clone(),
                    st(
                        "UPDATE users SET status = 5 WHERE user_id = ?",
                        vec![d.u(3)],
                    ),
                    check.clone(),
                ],
                other2: vec![],
                final_reads: vec![again, check],
            }
        }
        Shape::WriteFirst => {
            let reads = vec![
                ryw(
                    "SELECT user_id, name FROM users WHERE tenant_id = ?",
                    vec![d.t()],
                ),
                ryw(
                    "SELECT k, v FROM txn_configs WHERE k LIKE ?",
                    vec![d.keys()],
                ),
            ];
            let mut part2 = vec![st("DELETE FROM users WHERE user_id = ?", vec![d.u(0)])];
            part2.extend(reads.clone());
            Body {
                part1: vec![
                    st(
                        "UPDATE users SET name = ? WHERE user_id = ?",
                        vec![s("w-first"), d.u(3)],
                    ),
                    st(
                        "INSERT INTO txn_configs (k, v) VALUES (?, ?)",
                        vec![d.key("k2"), s("x")],
                    ),
                ],
                other1: vec![],
                other1_writes: false,
                part2,
                other2: vec![],
                final_reads: reads,
            }
        }
        Shape::ScatterThenMultiWrite => {
            let again = snapshot(
                "SELECT id, body FROM message_records WHERE id BETWEEN ? AND ?",
                vec![d.lo(), d.hi()],
            );
            let reads = vec![
                ryw(
                    "SELECT user_id, balance FROM users WHERE tenant_id = ? ORDER BY user_id",
                    vec![d.t()],
                )
                .ordered(),
                ryw(
                    "SELECT id, body FROM message_records WHERE id BETWEEN ? AND ?",
                    vec![d.lo(), d.hi()],
                ),
                ryw(
                    "SELECT k, v FROM txn_configs WHERE k LIKE ?",
                    vec![d.keys()],
                ),
            ];
            let mut part2 = vec![
                again.clone(),
                st(
                    "UPDATE users SET balance = balance * 2 WHERE tenant_id = ?",
                    vec![d.t()],
                ),
                st(
                    "DELETE FROM message_records WHERE id BETWEEN ? AND ?",
                    vec![d.lo(), Arg::I64(d.lo + 1)],
                ),
                st(
                    "UPDATE txn_configs SET v = ? WHERE k = ?",
                    vec![s("scatter"), d.key("k")],
                ),
            ];
            part2.extend(reads.clone());
            let mut final_reads = vec![again];
            final_reads.extend(reads);
            Body {
                part1: vec![
                    st(
                        "SELECT COUNT(*), SUM(balance) FROM users WHERE tenant_id = ?",
                        vec![d.t()],
                    ),
                    st(
                        "SELECT id, tenant_id, body FROM message_records WHERE id BETWEEN ? AND ?",
                        vec![d.lo(), d.hi()],
                    ),
                ],
                other1: vec![st(
                    "UPDATE message_records SET body = ? WHERE id = ?",
                    vec![s("other"), Arg::I64(d.lo + 2)],
                )],
                other1_writes: true,
                part2,
                other2: vec![],
                final_reads,
            }
        }
        Shape::LockingReads => {
            let check = ryw(
                "SELECT user_id, status FROM users WHERE tenant_id = ?",
                vec![d.t()],
            );
            Body {
                part1: vec![
                    st(
                        "SELECT user_id, status FROM users WHERE user_id = ? FOR UPDATE",
                        vec![d.u(0)],
                    ),
                    st(
                        "SELECT user_id, status FROM users WHERE tenant_id = ? LOCK IN SHARE MODE",
                        vec![d.t()],
                    ),
                    st(
                        "UPDATE users SET status = 7 WHERE user_id = ?",
                        vec![d.u(0)],
                    ),
                ],
                // what the transaction holds, seen from another session
                other1: vec![
                    st(
                        "SELECT user_id FROM users WHERE user_id = ? FOR UPDATE NOWAIT",
                        vec![d.u(0)],
                    ),
                    st(
                        "SELECT user_id FROM users WHERE user_id = ? LOCK IN SHARE MODE NOWAIT",
                        vec![d.u(1)],
                    ),
                    st(
                        "SELECT user_id FROM users WHERE user_id = ? FOR UPDATE NOWAIT",
                        vec![d.u(2)],
                    ),
                ],
                other1_writes: false,
                part2: vec![
                    st(
                        "SELECT k, v FROM txn_configs WHERE k = ? FOR UPDATE",
                        vec![d.key("k")],
                    ),
                    st(
                        "UPDATE users SET status = 8 WHERE user_id = ?",
                        vec![d.u(3)],
                    ),
                    check.clone(),
                ],
                other2: vec![
                    st(
                        "SELECT k FROM txn_configs WHERE k = ? FOR UPDATE NOWAIT",
                        vec![d.key("k")],
                    ),
                    st(
                        "SELECT user_id FROM users WHERE user_id = ? FOR UPDATE NOWAIT",
                        vec![d.u(3)],
                    ),
                ],
                final_reads: vec![check],
            }
        }
        Shape::InsertReadBack => {
            let reads = vec![
                ryw("SELECT LAST_INSERT_ID()", vec![]),
                ryw(
                    "SELECT user_id, name FROM users WHERE tenant_id = ?",
                    vec![d.t()],
                ),
                ryw(
                    "SELECT id, cell, note FROM txn_events WHERE cell = ?",
                    vec![d.t()],
                ),
                ryw(
                    "SELECT id, tenant_id, body FROM message_records WHERE id BETWEEN ? AND ?",
                    vec![d.lo(), d.hi()],
                ),
            ];
            let mut part2 = vec![
                st(
                    "INSERT INTO message_records (id, tenant_id, created_at, sender, body) VALUES (?, ?, ?, ?, ?)",
                    vec![
                        Arg::I64(d.lo + 10),
                        s(&d.msg_tenants[1]),
                        s("2024-03-05 10:00:00"),
                        Arg::I64(1),
                        s("new"),
                    ],
                ),
                st(
                    "INSERT INTO txn_events (cell, note) VALUES (?, ?), (?, ?)",
                    vec![d.t(), s("b"), d.t(), s("c")],
                ),
            ];
            part2.extend(reads.clone());
            Body {
                part1: vec![
                    st(
                        "INSERT INTO users (user_id, tenant_id, name, balance, status) VALUES (?, ?, ?, ?, 0), (?, ?, ?, ?, 0)",
                        vec![
                            d.u(10),
                            d.t(),
                            s("new10"),
                            Arg::I64(1),
                            d.u(11),
                            d.t(),
                            s("new11"),
                            Arg::I64(2),
                        ],
                    ),
                    ryw(
                        "SELECT user_id, name, balance FROM users WHERE user_id = ?",
                        vec![d.u(10)],
                    ),
                    st(
                        "INSERT INTO txn_events (cell, note) VALUES (?, ?)",
                        vec![d.t(), s("a")],
                    ),
                    ryw("SELECT LAST_INSERT_ID()", vec![]),
                ],
                other1: vec![],
                other1_writes: false,
                part2,
                other2: vec![],
                final_reads: reads,
            }
        }
        Shape::UserVars => {
            let vars = st("SELECT @tx_name, @tx_bal, @tx_note", vec![]);
            let reads = vec![
                ryw(
                    "SELECT user_id, name, balance FROM users WHERE tenant_id = ?",
                    vec![d.t()],
                ),
                ryw(
                    "SELECT k, v FROM txn_configs WHERE k LIKE ?",
                    vec![d.keys()],
                ),
            ];
            let mut part2 = vec![
                st(
                    "INSERT INTO txn_configs (k, v) VALUES (?, @tx_note)",
                    vec![d.key("var")],
                ),
                vars.clone(),
                st(
                    "UPDATE users SET balance = @tx_bal + 1 WHERE tenant_id = ?",
                    vec![d.t()],
                ),
            ];
            part2.extend(reads.clone());
            let mut final_reads = vec![vars];
            final_reads.extend(reads);
            Body {
                part1: vec![
                    st(
                        "SET @tx_name = NULL, @tx_bal = NULL, @tx_note = NULL",
                        vec![],
                    ),
                    st(
                        "SELECT name INTO @tx_name FROM users WHERE user_id = ?",
                        vec![d.u(1)],
                    ),
                    st(
                        "SELECT @tx_bal := balance FROM users WHERE user_id = ?",
                        vec![d.u(2)],
                    ),
                    st("SET @tx_note = CONCAT(@tx_name, '/', @tx_bal)", vec![]),
                    st(
                        "UPDATE users SET name = CONCAT(@tx_name, '+') WHERE user_id = ?",
                        vec![d.u(3)],
                    ),
                ],
                other1: vec![],
                other1_writes: false,
                part2,
                other2: vec![],
                final_reads,
            }
        }
    }
}

/// The touched rows, read after the end (the same session, then a new one).
fn end_state(d: &CellData) -> Vec<Step> {
    let after = |sql: &str, args| tagged(Tag::After, sql, args);
    vec![
        after(
            "SELECT user_id, tenant_id, name, email, balance, status FROM users WHERE tenant_id = ?",
            vec![d.t()],
        ),
        after(
            "SELECT id, tenant_id, created_at, sender, body FROM message_records WHERE id BETWEEN ? AND ?",
            vec![d.lo(), d.hi()],
        ),
        after("SELECT k, v FROM txn_configs WHERE k LIKE ?", vec![d.keys()]),
        after(
            "SELECT id, cell, note FROM txn_events WHERE cell = ?",
            vec![d.t()],
        ),
    ]
}

/// The chunks of one cell.
fn script(mode: TxMode, shape: Shape, end: End, d: &CellData) -> Vec<Chunk> {
    let py = mode == TxMode::PyMySql;
    let mut chunks = Vec::new();
    let mut first = Vec::new();
    match mode {
        TxMode::DriverFlag => chunks.push(Chunk::Connect(st("SET autocommit=0", vec![]))),
        TxMode::SetAutocommit0 => first.push(st("SET autocommit=0", vec![])),
        TxMode::Begin => first.push(st("BEGIN", vec![])),
        TxMode::ReadWrite => first.push(st("START TRANSACTION READ WRITE", vec![])),
        TxMode::ReadOnly | TxMode::ReadOnlyOnReplicas => {
            // a write of the session's own first: the read-only
            // transaction's reads (on replicas, when configured) must see it
            first.push(st(
                "UPDATE users SET email = ? WHERE user_id IN (?, ?)",
                vec![s("pre-ro"), d.u(1), d.u(2)],
            ));
            first.push(st("START TRANSACTION READ ONLY", vec![]));
        }
        TxMode::AutocommitOn | TxMode::PyMySql => {}
    }
    let b = body(shape, d);
    first.extend(b.part1);
    if end == End::SavepointCommit {
        first.push(st("SAVEPOINT sp", vec![]));
    }
    chunks.push(Chunk::Session(first));
    if !b.other1.is_empty() {
        chunks.push(Chunk::Other {
            steps: b.other1,
            writes: b.other1_writes,
        });
    }
    chunks.push(Chunk::Session(b.part2));
    if !b.other2.is_empty() {
        chunks.push(Chunk::Other {
            steps: b.other2,
            writes: false,
        });
    }
    match (end, py) {
        (End::Commit, false) => chunks.push(Chunk::Session(vec![st("COMMIT", vec![])])),
        (End::Rollback, false) => chunks.push(Chunk::Session(vec![st("ROLLBACK", vec![])])),
        (End::AutocommitOn, false) => {
            chunks.push(Chunk::Session(vec![st("SET autocommit=1", vec![])]))
        }
        (End::Commit, true) => chunks.push(Chunk::Driver(DriverCall::Commit)),
        (End::Rollback, true) => chunks.push(Chunk::Driver(DriverCall::Rollback)),
        (End::AutocommitOn, true) => chunks.push(Chunk::Driver(DriverCall::AutocommitOn)),
        (End::SavepointCommit, _) => {
            let mut steps = vec![st("ROLLBACK TO SAVEPOINT sp", vec![])];
            steps.extend(b.final_reads);
            // COMMIT on its own: in a multi-statement string a failing
            // ROLLBACK TO (no such savepoint) would end the string before it
            chunks.push(Chunk::Session(steps));
            if py {
                chunks.push(Chunk::Driver(DriverCall::Commit));
            } else {
                chunks.push(Chunk::Session(vec![st("COMMIT", vec![])]));
            }
        }
    }
    // the same session afterwards, autocommit on: its reads may use replicas
    let mut after = Vec::new();
    if mode.autocommit_off() && end != End::AutocommitOn {
        if py {
            chunks.push(Chunk::Driver(DriverCall::AutocommitOn));
        } else {
            after.push(st("SET autocommit=1", vec![]));
        }
    }
    after.extend(end_state(d));
    chunks.push(Chunk::Session(after));
    chunks
}

/// One cell to run.
struct Cell {
    n: usize,
    title: String,
    /// Through the ShardGate with `transaction_reads = "replica"`.
    on_replica_proxy: bool,
    proto: Proto,
    grouping: Grouping,
    /// A new session for this cell alone (else the session of its
    /// (mode, protocol, grouping) goes on from the cell before).
    fresh_session: bool,
    /// The session every cell of this key shares.
    session_key: (TxMode, Proto, Grouping),
    /// Sets `txn_events`' AUTO_INCREMENT first (both sides alike).
    auto_increment: bool,
    data: CellData,
    chunks: Vec<Chunk>,
}

impl Cell {
    /// The statements in order, for a repro.
    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "    -- {:?} protocol, {}",
            self.proto,
            match self.grouping {
                Grouping::Single => "one statement per command",
                Grouping::Multi => "each group below is ONE multi-statement string",
            }
        );
        if self.on_replica_proxy {
            let _ = writeln!(
                out,
                "    -- through ShardGate with transaction_reads = \"replica\""
            );
        }
        for chunk in &self.chunks {
            match chunk {
                Chunk::Connect(step) => {
                    let _ = writeln!(
                        out,
                        "    {};    -- alone, right after connecting",
                        step.text()
                    );
                }
                Chunk::Session(steps) => {
                    if self.grouping == Grouping::Multi {
                        let joined: Vec<String> = steps.iter().map(Step::text).collect();
                        let _ = writeln!(out, "    \"{}\"", joined.join("; "));
                    } else {
                        for step in steps {
                            let _ = writeln!(out, "    {};", step.describe(self.proto));
                        }
                    }
                }
                Chunk::Other { steps, writes } => {
                    for step in steps {
                        let _ = writeln!(out, "    [another session] {};", step.text());
                    }
                    if *writes {
                        let _ = writeln!(out, "    [every replica applies that]");
                    }
                }
                Chunk::Driver(call) => {
                    let _ = writeln!(out, "    [driver] {call:?}");
                }
            }
        }
        out
    }
}

// ============================================================ running

/// A session through ShardGate and one against the reference.
struct Pair {
    px: MySqlConnection,
    rf: MySqlConnection,
}

impl Pair {
    async fn open(px: &Endpoint, rf: &Endpoint) -> Result<Pair, String> {
        let (p, r) = tokio::join!(px.connect(), rf.connect());
        Ok(Pair {
            px: p.map_err(|e| format!("connect to shardgate: {e}"))?,
            rf: r.map_err(|e| format!("connect to {TXN_REF_DB}: {e}"))?,
        })
    }

    /// One statement on both sides at once.
    async fn both(&mut self, stmt: &Stmt) -> (Outcome, Outcome) {
        tokio::join!(timed(&mut self.rf, stmt), timed(&mut self.px, stmt))
    }

    /// Set-up on both sides: an error is the harness's.
    async fn setup(&mut self, sql: &str) -> Result<(), String> {
        let (r, p) = self.both(&Stmt::text(sql)).await;
        for (who, o) in [("reference", r), ("shardgate", p)] {
            if !matches!(o, Outcome::Done { .. }) {
                return Err(format!(
                    "set-up on {who}: {}: {}",
                    clip(sql, 200),
                    summary(&o)
                ));
            }
        }
        Ok(())
    }
}

async fn timed(conn: &mut MySqlConnection, stmt: &Stmt) -> Outcome {
    match tokio::time::timeout(STATEMENT_TIMEOUT, outcome(conn, stmt)).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!("no answer within {STATEMENT_TIMEOUT:?}")),
    }
}

/// A multi-statement string: one outcome per statement, up to and with the
/// first error.
async fn multi(conn: &mut MySqlConnection, sql: &str) -> Vec<Outcome> {
    let run = async {
        let mut out = Vec::new();
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        let mut stream = sqlx::raw_sql(sql).fetch_many(&mut *conn);
        loop {
            match stream.try_next().await {
                Ok(Some(Either::Left(done))) => out.push(Outcome::Done {
                    columns: std::mem::take(&mut columns),
                    rows: std::mem::take(&mut rows),
                    affected: done.rows_affected(),
                    last_insert_id: done.last_insert_id(),
                }),
                Ok(Some(Either::Right(row))) => {
                    if columns.is_empty() {
                        columns = columns_of(&row);
                    }
                    rows.push(render_row(&row));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(match shardgate_integration_tests::db_error(&e) {
                        Some((code, _, message)) => Outcome::Error { code, message },
                        None => Outcome::Failure(e.to_string()),
                    });
                    break;
                }
            }
        }
        out
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
        Ok(o) => o,
        Err(_) => vec![Outcome::Failure(format!(
            "no answer within {STATEMENT_TIMEOUT:?}"
        ))],
    }
}

/// One side's outcomes of a run of the session's chunks, per chunk: each
/// statement alone (text or prepared), or each chunk as one
/// multi-statement string (up to and with its first error).
async fn run_segment(
    conn: &mut MySqlConnection,
    chunks: &[Chunk],
    proto: Proto,
    grouping: Grouping,
) -> Vec<Vec<Outcome>> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.push(match chunk {
            Chunk::Connect(step) => vec![timed(conn, &Stmt::text(&step.text())).await],
            Chunk::Session(steps) if grouping == Grouping::Multi => {
                let joined: Vec<String> = steps.iter().map(Step::text).collect();
                multi(conn, &joined.join(";\n")).await
            }
            Chunk::Session(steps) => {
                let mut outcomes = Vec::new();
                for step in steps {
                    outcomes.push(timed(conn, &step.stmt(proto)).await);
                }
                outcomes
            }
            Chunk::Other { .. } | Chunk::Driver(_) => Vec::new(),
        });
    }
    out
}

/// A data source's primary and replicas (port, connection), connected directly.
struct Source {
    name: String,
    primary: MySqlConnection,
    replicas: Vec<(u16, MySqlConnection)>,
}

/// Every replica has applied what its primary committed so far (persistent
/// direct connections).
struct Barrier {
    servers: Vec<Source>,
}

impl Barrier {
    async fn new(shared: &Env) -> Result<Barrier, String> {
        let mut servers = Vec::new();
        for (name, ds) in &shared.cfg.data_sources {
            let primary = shared
                .data_source(name)
                .connect()
                .await
                .map_err(|e| format!("connect to {name}: {e}"))?;
            let mut replicas = Vec::new();
            for url in &ds.replicas {
                let ep = Endpoint {
                    host: url.host.clone(),
                    port: url.port,
                    user: url.user.clone(),
                    password: url.password.clone(),
                    database: url.database.clone(),
                };
                let conn = ep
                    .connect()
                    .await
                    .map_err(|e| format!("connect to replica {}: {e}", url.port))?;
                replicas.push((url.port, conn));
            }
            servers.push(Source {
                name: name.clone(),
                primary,
                replicas,
            });
        }
        Ok(Barrier { servers })
    }

    async fn wait(&mut self) -> Result<(), String> {
        for Source {
            name,
            primary,
            replicas,
        } in &mut self.servers
        {
            let pos: String = sqlx::query_scalar("SELECT CAST(@@gtid_binlog_pos AS CHAR)")
                .fetch_one(&mut *primary)
                .await
                .map_err(|e| format!("{name}: @@gtid_binlog_pos: {e}"))?;
            for (port, replica) in replicas.iter_mut() {
                let waited: String =
                    sqlx::query_scalar("SELECT CAST(MASTER_GTID_WAIT(?, 30) AS CHAR)")
                        .bind(&pos)
                        .fetch_one(&mut *replica)
                        .await
                        .map_err(|e| format!("replica {port} of {name}: {e}"))?;
                if waited != "0" {
                    return Err(format!(
                        "replica {port} of {name} did not apply {pos} within 30 s"
                    ));
                }
            }
        }
        Ok(())
    }

    /// When the tables and the reference were created: another process
    /// running these tests meanwhile (it drops and recreates them) changes
    /// it, and the cells' rows are gone.
    async fn tables_created(&mut self) -> String {
        let mut out = String::new();
        for Source { name, primary, .. } in &mut self.servers {
            let created: Result<Option<String>, _> = sqlx::query_scalar(
                "SELECT CAST(GROUP_CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, '@', CREATE_TIME ORDER BY 1) AS CHAR) \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (DATABASE(), 'wework_txn_ref') \
                 AND TABLE_NAME IN ('txu_0', 'users', 'txm_202401', 'message_records', 'txn_configs')",
            )
            .fetch_one(&mut *primary)
            .await;
            let _ = write!(out, "{name}: {created:?}; ");
        }
        out
    }

    /// The transactions open on the primaries (a diagnosis).
    async fn open_transactions(&mut self) -> String {
        let mut out = String::from("open transactions on the primaries:\n");
        for Source { name, primary, .. } in &mut self.servers {
            let rows = sqlx::raw_sql(
                "SELECT t.trx_mysql_thread_id, CAST(t.trx_started AS CHAR), t.trx_is_read_only, \
                 CAST(p.HOST AS CHAR), CAST(p.DB AS CHAR), CAST(p.COMMAND AS CHAR), p.TIME, CAST(LEFT(p.INFO, 120) AS CHAR) \
                 FROM information_schema.INNODB_TRX t LEFT JOIN information_schema.PROCESSLIST p \
                 ON p.ID = t.trx_mysql_thread_id",
            )
            .fetch_all(&mut *primary)
            .await;
            match rows {
                Ok(rows) => {
                    for row in rows {
                        let _ = writeln!(out, "{name}: {}", render_row(&row));
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "{name}: {e}");
                }
            }
        }
        out
    }

    fn ports(&self, shared: &Env) -> Vec<(u16, Vec<u16>)> {
        self.servers
            .iter()
            .map(|source| {
                (
                    shared.cfg.data_sources[&source.name].url.port,
                    source.replicas.iter().map(|(p, _)| *p).collect(),
                )
            })
            .collect()
    }
}

/// One difference a cell found.
struct Diff {
    what: String,
    statement: String,
    reference: String,
    shardgate: String,
    detail: String,
}

struct CellFailure {
    title: String,
    script: String,
    diffs: Vec<Diff>,
}

impl CellFailure {
    /// The statements, then each difference with both outcomes.
    fn render(&self) -> String {
        let mut out = format!("  statements:\n{}  differences:\n", self.script);
        for d in &self.diffs {
            let _ = writeln!(
                out,
                "  - {}: {}\n      reference: {}\n      shardgate: {}",
                d.what,
                clip(&d.statement, 400),
                d.reference,
                d.shardgate,
            );
            if !d.detail.is_empty() {
                let _ = writeln!(out, "{}", indent(&d.detail));
            }
        }
        out
    }
}

/// What the whole run found.
#[derive(Default)]
struct Findings {
    ran: usize,
    skipped: Vec<String>,
    failures: Vec<CellFailure>,
    /// Cells whose new session needed replicas to catch up, and the longest wait.
    lagged: usize,
    longest_lag: Duration,
    /// Failing cells that ran while another process recreated the tables.
    interference: usize,
}

impl Findings {
    fn skip(&mut self, title: String, why: &str) {
        say(&format!("skip {title}: {why}"));
        self.skipped.push(format!("{title}: {why}"));
    }

    fn report(&self, test: &str, started: Instant) {
        say(&format!(
            "{test}: {} cells run, {} skipped, {} failing ({} of them during interference); {} new sessions waited for replicas (longest {:?}); {:?}",
            self.ran,
            self.skipped.len(),
            self.failures.len(),
            self.interference,
            self.lagged,
            self.longest_lag,
            started.elapsed()
        ));
        if self.failures.is_empty() {
            return;
        }
        let mut msg = format!(
            "{test}: {} of {} cells differ from the reference:\n",
            self.failures.len(),
            self.ran
        );
        for f in &self.failures {
            let _ = writeln!(msg, "\n=== {}\n{}", f.title, f.render());
        }
        panic!("{msg}");
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn what_of(tag: Tag, other: bool) -> &'static str {
    if other {
        return "another session during the transaction";
    }
    match tag {
        Tag::Plain => "statement",
        Tag::Ryw => "read-your-writes inside the transaction",
        Tag::Snapshot => "repeatable read inside the transaction",
        Tag::After => "the same session right after the end",
        Tag::Own => "STALE READ: the session's own write read back (autocommit on)",
    }
}

/// Compares one statement's outcomes; a difference is pushed to `diffs`.
fn check(diffs: &mut Vec<Diff>, step: &Step, proto: Proto, other: bool, r: &Outcome, p: &Outcome) {
    if let Some(detail) = compare(r, p, step.mode(), true) {
        diffs.push(Diff {
            what: what_of(step.tag, other).to_string(),
            statement: step.describe(proto),
            reference: summary(r),
            shardgate: summary(p),
            detail,
        });
    }
}

/// The shared machinery of a run: the endpoints, the set-up and "other"
/// sessions, the reference observer, the replica barrier.
struct Runner {
    shared: &'static Env,
    /// The ShardGate with `transaction_reads = "replica"` (when started).
    replica_proxy: Option<Endpoint>,
    replica_admin: Option<std::net::SocketAddr>,
    setup: Pair,
    other: Pair,
    observer: MySqlConnection,
    barrier: Barrier,
    sessions: BTreeMap<(TxMode, Proto, Grouping), Pair>,
    findings: Findings,
    /// [`Barrier::tables_created`] after seeding.
    tables_created: String,
}

impl Runner {
    async fn new(shared: &'static Env) -> Runner {
        let px = shared.proxy();
        let rf = shared.reference();
        let mut setup = Pair::open(&px, &rf).await.expect("set-up sessions");
        setup
            .setup("SET SESSION lock_wait_timeout = 5")
            .await
            .expect("set-up");
        let mut other = Pair::open(&px, &rf).await.expect("the other sessions");
        other
            .setup("SET SESSION innodb_lock_wait_timeout = 5")
            .await
            .expect("set-up");
        let observer = rf.connect().await.expect("the reference observer");
        let barrier = Barrier::new(shared).await.expect("the replica barrier");
        Runner {
            shared,
            replica_proxy: None,
            replica_admin: None,
            setup,
            other,
            observer,
            barrier,
            sessions: BTreeMap::new(),
            findings: Findings::default(),
            tables_created: String::new(),
        }
    }

    fn proxy_of(&self, cell: &Cell) -> Endpoint {
        if cell.on_replica_proxy {
            self.replica_proxy
                .clone()
                .expect("the replica proxy is started for its cells")
        } else {
            self.shared.proxy()
        }
    }

    /// Inserts every cell's rows on both sides, then waits for the replicas.
    async fn seed(&mut self, cells: &[CellData]) {
        let mut users = Vec::new();
        let mut messages = Vec::new();
        let mut configs = Vec::new();
        for d in cells {
            for k in 0..4 {
                users.push(format!(
                    "({}, {}, {}, NULL, {}, NULL, 0)",
                    d.lo + k,
                    lit(&d.tenant),
                    lit(&format!("u{k}")),
                    100 + k
                ));
                messages.push(format!(
                    "({}, {}, '2024-{:02}-15 10:00:00', {}, {})",
                    d.lo + k,
                    lit(&d.msg_tenants[k as usize]),
                    k + 1,
                    100 + k,
                    lit(&format!("m{k}"))
                ));
            }
            configs.push(format!("({}, 'v0')", lit(&format!("{}.k", d.tenant))));
        }
        for (table, columns, rows) in [
            (
                "users",
                "user_id, tenant_id, name, email, balance, created_at, status",
                &users,
            ),
            (
                "message_records",
                "id, tenant_id, created_at, sender, body",
                &messages,
            ),
            ("txn_configs", "k, v", &configs),
        ] {
            for chunk in rows.chunks(400) {
                let sql = format!(
                    "INSERT INTO {table} ({columns}) VALUES {}",
                    chunk.join(", ")
                );
                self.setup
                    .setup(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("seeding the cells' rows: {e}"));
            }
        }
        self.barrier
            .wait()
            .await
            .unwrap_or_else(|e| panic!("replicas after seeding: {e}"));
        self.tables_created = self.barrier.tables_created().await;
    }

    /// Runs one cell and prints its line.
    async fn run(&mut self, cell: &Cell) {
        let started = Instant::now();
        let mut diffs = Vec::new();
        let mut harness = Vec::new();
        if cell.auto_increment {
            // both sides' next id alike, whatever cells before did
            let sql = format!(
                "ALTER TABLE txn_events AUTO_INCREMENT = {}",
                1_000_000 + cell.n * 100
            );
            if let Err(e) = self.setup.setup(&sql).await {
                // blocked by a metadata lock some session still holds
                diffs.push(Diff {
                    what: "set-up DDL on the unsharded table (waits for metadata locks)".into(),
                    statement: sql,
                    reference: String::new(),
                    shardgate: e,
                    detail: self.barrier.open_transactions().await,
                });
            }
        }
        let px = self.proxy_of(cell);
        let rf = self.shared.reference();
        let key = cell.session_key;
        let pair = if cell.fresh_session {
            Pair::open(&px, &rf).await
        } else {
            match self.sessions.remove(&key) {
                Some(p) => Ok(p),
                None => Pair::open(&px, &rf).await,
            }
        };
        let mut pair = match pair {
            Ok(p) => p,
            Err(e) => {
                self.fail(cell, vec![harness_diff(e)], started).await;
                return;
            }
        };
        let mut statements = 0;
        let mut i = 0;
        while i < cell.chunks.len() {
            match &cell.chunks[i] {
                Chunk::Other { steps, writes } => {
                    for step in steps {
                        let (r, p) = self.other.both(&Stmt::text(&step.text())).await;
                        statements += 1;
                        check(&mut diffs, step, Proto::Text, true, &r, &p);
                    }
                    if *writes {
                        if let Err(e) = self.barrier.wait().await {
                            harness.push(e);
                        }
                    }
                    i += 1;
                }
                Chunk::Driver(call) => {
                    harness.push(format!("a driver call ({call:?}) in an sqlx cell"));
                    i += 1;
                }
                Chunk::Connect(_) | Chunk::Session(_) => {
                    // the session's chunks up to the next other-session
                    // chunk: each side runs them back to back (so that the
                    // proxy's next statement never waits for the reference,
                    // which would give replicas time to catch up)
                    let end = cell.chunks[i..]
                        .iter()
                        .position(|c| matches!(c, Chunk::Other { .. } | Chunk::Driver(_)))
                        .map_or(cell.chunks.len(), |k| i + k);
                    let segment = &cell.chunks[i..end];
                    let (r, p) = tokio::join!(
                        run_segment(&mut pair.rf, segment, cell.proto, cell.grouping),
                        run_segment(&mut pair.px, segment, cell.proto, cell.grouping)
                    );
                    for ((chunk, r), p) in segment.iter().zip(&r).zip(&p) {
                        let (steps, proto) = match chunk {
                            Chunk::Connect(step) => (std::slice::from_ref(step), Proto::Text),
                            Chunk::Session(steps) if cell.grouping == Grouping::Multi => {
                                (steps.as_slice(), Proto::Text)
                            }
                            Chunk::Session(steps) => (steps.as_slice(), cell.proto),
                            _ => unreachable!("a segment holds the session's chunks"),
                        };
                        statements += steps.len();
                        for k in 0..r.len().max(p.len()) {
                            let not_run = Outcome::Failure("(not run: the string ended)".into());
                            let rk = r.get(k).unwrap_or(&not_run);
                            let pk = p.get(k).unwrap_or(&not_run);
                            match steps.get(k) {
                                Some(step) => check(&mut diffs, step, proto, false, rk, pk),
                                None => diffs.push(Diff {
                                    what: "multi-statement string: more results than statements"
                                        .into(),
                                    statement: steps
                                        .iter()
                                        .map(Step::text)
                                        .collect::<Vec<_>>()
                                        .join("; "),
                                    reference: summary(rk),
                                    shardgate: summary(pk),
                                    detail: String::new(),
                                }),
                            }
                        }
                    }
                    i = end;
                }
            }
        }
        // a new session: the end state, at once when read_consistency =
        // "proxy" (every write acknowledged before a read began), else once
        // replicas have it
        let fresh = self.fresh_session_reads(&px, &cell.data).await;
        let lag = match fresh {
            Ok((first, Ok(lag))) => {
                if !lag.is_zero()
                    && self.shared.cfg.server.read_consistency == ReadConsistency::Proxy
                {
                    for mut d in first {
                        d.what = format!(
                            "STALE READ in a new session after the end (read_consistency = \"proxy\"; it saw the end state after {lag:?})"
                        );
                        diffs.push(d);
                    }
                }
                Some(lag)
            }
            Ok((_, Err(fresh_diffs))) => {
                diffs.extend(fresh_diffs);
                None
            }
            Err(e) => {
                harness.push(e);
                None
            }
        };
        // an "after" difference while the new session converged: the same
        // session read older data than its own writes
        if lag.is_some() {
            for d in &mut diffs {
                if d.what == what_of(Tag::After, false) {
                    d.what = "STALE READ in the same session right after the end (a new session saw the right rows)".into();
                }
            }
        }
        // nothing may stay open: the reference session is out of any
        // transaction (else the cell itself is wrong), and ShardGate holds
        // no backend connection for the (idle) sessions
        match timed(&mut pair.rf, &Stmt::text("SELECT @@in_transaction")).await {
            Outcome::Done { rows, .. }
                if rows.len() == 1 && (rows[0] == "[\"u64:0\"]" || rows[0] == "[\"i64:0\"]") => {}
            other => {
                harness.push(format!(
                    "the reference session is still in a transaction after the cell: {}",
                    summary(&other)
                ));
                let _ = pair.both(&Stmt::text("ROLLBACK")).await;
            }
        }
        let admin = if cell.on_replica_proxy {
            self.replica_admin
        } else {
            Some(self.shared.admin_addr)
        };
        if let Some(admin) = admin {
            if let Some(held) = connections_in_use(admin).await {
                diffs.push(Diff {
                    what: "backend connections still in use after the cell ended (every session is idle, outside a transaction)".into(),
                    statement: "GET /api/pools".into(),
                    reference: "(one server: nothing held)".into(),
                    shardgate: held,
                    detail: self.barrier.open_transactions().await,
                });
            }
        }
        diffs.extend(harness.into_iter().map(harness_diff));
        self.findings.ran += 1;
        if diffs.is_empty() {
            let lag = lag.unwrap_or_default();
            let waited = if lag.is_zero() {
                "at once".to_string()
            } else {
                self.findings.lagged += 1;
                self.findings.longest_lag = self.findings.longest_lag.max(lag);
                format!("after {lag:?}")
            };
            say(&format!(
                "ok   [{}] {}: {statements} statements equal; a new session saw the end state {waited} ({:?})",
                cell.n,
                cell.title,
                started.elapsed()
            ));
            if !cell.fresh_session {
                self.sessions.insert(key, pair);
            }
        } else {
            // the next cell of this key starts on new sessions
            drop(pair);
            self.fail(cell, diffs, started).await;
        }
    }

    async fn fail(&mut self, cell: &Cell, mut diffs: Vec<Diff>, started: Instant) {
        let now = self.barrier.tables_created().await;
        if now != self.tables_created {
            diffs.insert(
                0,
                harness_diff(format!(
                    "INTERFERENCE: the tables were dropped and recreated during the run \
                     (another process ran these tests); this cell's result means nothing, rerun. \
                     before: {}; now: {now}",
                    self.tables_created
                )),
            );
            self.findings.interference += 1;
        }
        let failure = CellFailure {
            title: format!("[{}] {}", cell.n, cell.title),
            script: cell.render(),
            diffs,
        };
        say(&format!(
            "FAIL {} ({:?})\n{}",
            failure.title,
            started.elapsed(),
            failure.render()
        ));
        self.findings.failures.push(failure);
    }

    /// Reads the end state in a new session until it equals the
    /// reference's: Ok((differences of the first reading, Ok(time it
    /// took))), Ok((.., Err(differences))) after [`CONVERGE`], Err for the
    /// harness's own trouble.
    async fn fresh_session_reads(
        &mut self,
        px: &Endpoint,
        d: &CellData,
    ) -> Result<(Vec<Diff>, Result<Duration, Vec<Diff>>), String> {
        let reads = end_state(d);
        let mut reference = Vec::new();
        for step in &reads {
            reference.push(timed(&mut self.observer, &Stmt::text(&step.text())).await);
        }
        let mut conn = px
            .connect()
            .await
            .map_err(|e| format!("connect a new session: {e}"))?;
        let started = Instant::now();
        let mut first = None;
        loop {
            let mut diffs = Vec::new();
            for (step, r) in reads.iter().zip(&reference) {
                let p = timed(&mut conn, &Stmt::text(&step.text())).await;
                if let Some(detail) = compare(r, &p, step.mode(), true) {
                    diffs.push(Diff {
                        what: format!(
                            "a NEW session after the end (still different after {CONVERGE:?})"
                        ),
                        statement: step.text(),
                        reference: summary(r),
                        shardgate: summary(&p),
                        detail,
                    });
                }
            }
            if diffs.is_empty() {
                return Ok(match first {
                    None => (Vec::new(), Ok(Duration::ZERO)),
                    Some(first) => (first, Ok(started.elapsed())),
                });
            }
            if started.elapsed() > CONVERGE {
                return Ok((first.unwrap_or_default(), Err(diffs)));
            }
            if first.is_none() {
                first = Some(diffs);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The pools with connections in use (`GET /api/pools`), once that
/// stays so for a second; None when none are.
async fn connections_in_use(admin: std::net::SocketAddr) -> Option<String> {
    let started = Instant::now();
    loop {
        let held = match http::request(admin, "GET", "/api/pools", &[], None).await {
            Ok(r) => {
                let pools = r.json();
                let busy: Vec<String> = pools["pools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["active"].as_u64().unwrap_or(0) > 0)
                    .map(|p| format!("{} active={}", p["name"], p["active"]))
                    .collect();
                (!busy.is_empty()).then(|| busy.join(", "))
            }
            Err(e) => Some(format!("GET /api/pools: {e}")),
        };
        match held {
            None => return None,
            Some(h) if started.elapsed() > Duration::from_secs(1) => return Some(h),
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn harness_diff(e: String) -> Diff {
    Diff {
        what: "HARNESS".into(),
        statement: String::new(),
        reference: String::new(),
        shardgate: e,
        detail: String::new(),
    }
}

// ============================================================ set-up

/// Tenants of message_records whose rows land on ds0, ds1, ds2, ds3.
fn message_tenants(shared: &Env) -> [String; 4] {
    let mut found: [Option<String>; 4] = Default::default();
    for j in 0..1000 {
        let tenant = format!("txm{j}");
        let node = shared
            .rules
            .route_row(
                "message_records",
                &[
                    ("tenant_id", ShardValue::Text(tenant.clone())),
                    ("created_at", ShardValue::Text("2024-01-15 10:00:00".into())),
                ],
            )
            .expect("message_records routes");
        let k: usize = node.data_source.trim_start_matches("ds").parse().unwrap();
        if k < 4 && found[k].is_none() {
            found[k] = Some(tenant);
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.map(|t| t.expect("a tenant for every data source"))
}

// ============================================================ the matrix

fn title(mode: TxMode, shape: Shape, end: End, proto: Proto, grouping: Grouping) -> String {
    format!(
        "{} | {} | {} | {:?} | {}",
        mode.name(),
        shape.name(),
        end.name(),
        proto,
        match grouping {
            Grouping::Single => "single statements",
            Grouping::Multi => "multi-statement strings",
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_matrix() {
    let test = "transaction_matrix";
    let _sandbox = sandbox::exclusive().await;
    let Some(shared) = env(test).await else {
        return;
    };
    let started = Instant::now();
    let tenants = message_tenants(shared);
    let mut runner = Runner::new(shared).await;

    // the second ShardGate: read-only transactions on replicas
    let mut cfg = shared.cfg.clone();
    cfg.server.transaction_reads = TransactionReads::Replica;
    let replica_proxy = start_proxy(cfg).await;
    runner.replica_proxy = Some(replica_proxy.endpoint());
    runner.replica_admin = Some(replica_proxy.admin_addr);

    // MariaDB refuses to prepare several statements at once: checked once,
    // then the prepared multi-statement cells are skipped
    {
        let stmt = Stmt::prepared("SELECT 1; SELECT 2", vec![]);
        let (r, p) = runner.other.both(&stmt).await;
        let refused = |o: &Outcome| matches!(o, Outcome::Error { code: 1064, .. });
        assert!(
            refused(&r) && refused(&p),
            "a prepared multi-statement is refused with 1064 on both sides: reference {}, shardgate {}",
            summary(&r),
            summary(&p)
        );
    }

    let mut cells = Vec::new();
    let mut n = MATRIX_CELLS;
    for mode in TxMode::MATRIX {
        for proto in [Proto::Text, Proto::Prepared] {
            for grouping in [Grouping::Single, Grouping::Multi] {
                for shape in Shape::ALL {
                    for end in End::ALL {
                        let t = title(mode, shape, end, proto, grouping);
                        if proto == Proto::Prepared && grouping == Grouping::Multi {
                            runner.findings.skip(
                                t,
                                "prepared multi-statement: MariaDB refuses to prepare several statements (1064, checked above)",
                            );
                            continue;
                        }
                        if end == End::AutocommitOn && !mode.autocommit_off() {
                            runner.findings.skip(
                                t,
                                "SET autocommit=1 ends only the transactions of autocommit off",
                            );
                            continue;
                        }
                        let data = CellData::new(n, &tenants);
                        cells.push(Cell {
                            n,
                            title: t,
                            on_replica_proxy: mode == TxMode::ReadOnlyOnReplicas,
                            proto,
                            grouping,
                            fresh_session: mode == TxMode::DriverFlag,
                            session_key: (mode, proto, grouping),
                            auto_increment: shape == Shape::InsertReadBack,
                            chunks: script(mode, shape, end, &data),
                            data,
                        });
                        n += 1;
                    }
                }
            }
        }
    }
    let data: Vec<CellData> = cells.iter().map(|c| c.data.clone()).collect();
    runner.seed(&data).await;
    say(&format!(
        "{test}: {} cells seeded in {:?}",
        cells.len(),
        started.elapsed()
    ));
    let filter = std::env::var("TXN_FILTER").unwrap_or_default();
    for cell in &cells {
        if !filter.is_empty() && !cell.title.contains(&filter) {
            continue;
        }
        runner.run(cell).await;
    }
    print_replica_use(shared, replica_proxy.admin_addr).await;
    runner.findings.report(test, started);
}

/// How often each proxy's replica pools were used (that the cells did read
/// replicas at all).
async fn print_replica_use(shared: &Env, replica_admin: std::net::SocketAddr) {
    for (who, addr) in [
        ("shardgate", shared.admin_addr),
        ("shardgate (transaction_reads=replica)", replica_admin),
    ] {
        let pools = match http::request(addr, "GET", "/api/pools", &[], None).await {
            Ok(r) => r.json(),
            Err(e) => {
                say(&format!("{who}: GET /api/pools: {e}"));
                continue;
            }
        };
        let mut line = format!("{who}: connections handed out:");
        for p in pools["pools"].as_array().into_iter().flatten() {
            let _ = write!(
                line,
                " {}={}",
                p["name"].as_str().unwrap_or("?"),
                p["acquired"]
            );
        }
        say(&line);
    }
}

// ============================================================ PyMySQL

/// The autocommit-off cells through PyMySQL with `autocommit=False` (the
/// driver sends `SET AUTOCOMMIT = 0` itself when the handshake says
/// autocommit is on, and `commit()`, `rollback()`, `autocommit(True)`
/// decide by the status flags it saw), text protocol, each statement alone
/// or as multi-statement strings; the transcripts, status flags included,
/// must be equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_autocommit_false() {
    let test = "pymysql_autocommit_false";
    let _sandbox = sandbox::exclusive().await;
    let Some(shared) = env(test).await else {
        return;
    };
    let started = Instant::now();
    let tenants = message_tenants(shared);
    let mut runner = Runner::new(shared).await;
    let mut cells = Vec::new();
    let mut n = PYMYSQL_CELLS;
    for grouping in [Grouping::Single, Grouping::Multi] {
        for shape in Shape::ALL {
            for end in End::ALL {
                let data = CellData::new(n, &tenants);
                cells.push((
                    n,
                    title(TxMode::PyMySql, shape, end, Proto::Text, grouping),
                    grouping,
                    script(TxMode::PyMySql, shape, end, &data),
                    data,
                ));
                n += 1;
            }
        }
    }
    let data: Vec<CellData> = cells.iter().map(|c| c.4.clone()).collect();
    runner.seed(&data).await;
    runner
        .setup
        .setup("ALTER TABLE txn_events AUTO_INCREMENT = 5000000")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let step_json = |s: &Step| serde_json::json!({"sql": s.text(), "ordered": s.ordered});
    let spec = serde_json::json!({
        "barrier": runner.barrier.ports(shared),
        "cells": cells.iter().map(|(n, title, grouping, chunks, _)| serde_json::json!({
            "name": format!("[{n}] {title}"),
            "multi": *grouping == Grouping::Multi,
            "chunks": chunks.iter().map(|c| match c {
                Chunk::Session(steps) => serde_json::json!({"kind": "session", "steps": steps.iter().map(step_json).collect::<Vec<_>>()}),
                Chunk::Other { steps, writes } => serde_json::json!({"kind": "other", "writes": writes, "steps": steps.iter().map(step_json).collect::<Vec<_>>()}),
                Chunk::Driver(DriverCall::Commit) => serde_json::json!({"kind": "commit"}),
                Chunk::Driver(DriverCall::Rollback) => serde_json::json!({"kind": "rollback"}),
                Chunk::Driver(DriverCall::AutocommitOn) => serde_json::json!({"kind": "autocommit_on"}),
                Chunk::Connect(_) => unreachable!("PyMySQL connects by itself"),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let path =
        std::env::temp_dir().join(format!("shardgate-txn-cells-{}.json", std::process::id()));
    std::fs::write(&path, spec.to_string()).expect("write the cells");
    let env = [("TXN_CELLS", path.to_str().expect("utf-8 path"))];
    // both at once: they touch different databases
    let (px, rf) = (shared.proxy(), shared.reference());
    let (proxied, reference) = tokio::join!(
        Driver::PyMySql.run_file_env("txn_matrix.py", &px, &env),
        Driver::PyMySql.run_file_env("txn_matrix.py", &rf, &env)
    );
    let (proxied, reference) = match (proxied, reference) {
        (Ok(p), Ok(r)) => (p, r),
        (p, r) => panic!(
            "{test}: the PyMySQL script failed (a harness problem unless only one side failed):\n\
             through shardgate: {}\nreference: {}",
            p.err().unwrap_or_else(|| "ok".into()),
            r.err().unwrap_or_else(|| "ok".into())
        ),
    };
    let _ = std::fs::remove_file(&path);
    // per cell: its lines on both sides
    let by_cell = |transcript: &str| {
        let mut cells: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in transcript.lines() {
            let cell = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["cell"].as_str().map(str::to_string))
                .unwrap_or_else(|| "(end)".into());
            cells.entry(cell).or_default().push(line.to_string());
        }
        cells
    };
    let (p_cells, r_cells) = (by_cell(&proxied), by_cell(&reference));
    let mut findings = Findings::default();
    for (n, title, grouping, chunks, _) in &cells {
        let name = format!("[{n}] {title}");
        let empty = Vec::new();
        let p = p_cells.get(&name).unwrap_or(&empty);
        let r = r_cells.get(&name).unwrap_or(&empty);
        findings.ran += 1;
        if p == r && !r.is_empty() {
            say(&format!("ok   {name}: {} driver steps equal", r.len()));
            continue;
        }
        let mut diffs = Vec::new();
        for i in 0..p.len().max(r.len()) {
            let (pl, rl) = (
                p.get(i).map(String::as_str).unwrap_or("(none)"),
                r.get(i).map(String::as_str).unwrap_or("(none)"),
            );
            if pl != rl {
                diffs.push(Diff {
                    what: format!("PyMySQL step {i}"),
                    statement: String::new(),
                    reference: rl.to_string(),
                    shardgate: pl.to_string(),
                    detail: String::new(),
                });
            }
        }
        let cell = Cell {
            n: *n,
            title: title.clone(),
            on_replica_proxy: false,
            proto: Proto::Text,
            grouping: *grouping,
            fresh_session: true,
            session_key: (TxMode::PyMySql, Proto::Text, *grouping),
            auto_increment: false,
            data: CellData::new(*n, &tenants),
            chunks: chunks.clone(),
        };
        let failure = CellFailure {
            title: name,
            script: cell.render(),
            diffs,
        };
        say(&format!("FAIL {}\n{}", failure.title, failure.render()));
        findings.failures.push(failure);
    }
    if p_cells.get("(end)") != r_cells.get("(end)") {
        findings.failures.push(CellFailure {
            title: "the end of the PyMySQL transcript".into(),
            script: String::new(),
            diffs: vec![harness_diff(format!(
                "reference {:?}, shardgate {:?}",
                r_cells.get("(end)"),
                p_cells.get("(end)")
            ))],
        });
    }
    if let Some(held) = connections_in_use(shared.admin_addr).await {
        findings.failures.push(CellFailure {
            title: "after the PyMySQL cells".into(),
            script: String::new(),
            diffs: vec![Diff {
                what: "backend connections still in use".into(),
                statement: "GET /api/pools".into(),
                reference: String::new(),
                shardgate: held,
                detail: String::new(),
            }],
        });
    }
    findings.report(test, started);
}

// ============================================================ edge cases

/// A hand-written cell: its title, how its statements are sent, its chunks.
type EdgeCell = (&'static str, Proto, Grouping, Vec<Chunk>);

fn session(steps: Vec<Step>) -> Chunk {
    Chunk::Session(steps)
}

fn other_writes(steps: Vec<Step>) -> Chunk {
    Chunk::Other {
        steps,
        writes: true,
    }
}

/// The end state read by the same session (autocommit on) after the cell.
fn after(d: &CellData) -> Chunk {
    Chunk::Session(end_state(d))
}

fn edge_cells(d: &CellData) -> Vec<EdgeCell> {
    let status_of = |k: i64| {
        tagged(
            Tag::Ryw,
            "SELECT user_id, status FROM users WHERE user_id = ?",
            vec![d.u(k)],
        )
    };
    let set_status = |k: i64, v: i64| {
        st(
            "UPDATE users SET status = ? WHERE user_id = ?",
            vec![Arg::I64(v), d.u(k)],
        )
    };
    let mut cells: Vec<EdgeCell> = vec![
        (
            "a SAVEPOINT set with autocommit on is gone when a transaction begins",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("SAVEPOINT x", vec![]),
                    st("BEGIN", vec![]),
                    set_status(1, 42),
                    st("ROLLBACK TO SAVEPOINT x", vec![]),
                    status_of(1),
                    st("COMMIT", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "START TRANSACTION WITH CONSISTENT SNAPSHOT takes its snapshot when it starts",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![st(
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                    vec![],
                )]),
                other_writes(vec![st(
                    "UPDATE users SET email = ? WHERE user_id = ?",
                    vec![s("other"), d.u(1)],
                )]),
                session(vec![
                    tagged(
                        Tag::Snapshot,
                        "SELECT user_id, email FROM users WHERE user_id = ?",
                        vec![d.u(1)],
                    ),
                    st("COMMIT", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "BEGIN with autocommit off commits the implicit transaction first",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("SET autocommit=0", vec![]),
                    set_status(1, 1),
                    set_status(2, 1),
                    st("BEGIN", vec![]),
                    set_status(2, 2),
                    set_status(3, 2),
                    st("ROLLBACK", vec![]),
                    st("SET autocommit=1", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "DDL with autocommit off commits the writes before it",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("SET autocommit=0", vec![]),
                    set_status(0, 3),
                    set_status(3, 3),
                    st("CREATE TABLE IF NOT EXISTS txn_ddl_probe (id INT)", vec![]),
                    set_status(1, 3),
                    st("ROLLBACK", vec![]),
                    st("SET autocommit=1", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "BEGIN inside a transaction commits it",
            Proto::Prepared,
            Grouping::Single,
            vec![
                session(vec![
                    st("BEGIN", vec![]),
                    set_status(1, 4),
                    st("BEGIN", vec![]),
                    set_status(2, 4),
                    st("ROLLBACK", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "RELEASE SAVEPOINT forgets it and the later ones; ROLLBACK TO the earlier one",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("BEGIN", vec![]),
                    set_status(0, 5),
                    st("SAVEPOINT a", vec![]),
                    set_status(1, 5),
                    st("SAVEPOINT b", vec![]),
                    set_status(2, 5),
                    st("SAVEPOINT c", vec![]),
                    set_status(3, 5),
                    st("RELEASE SAVEPOINT b", vec![]),
                    st("ROLLBACK TO SAVEPOINT c", vec![]),
                    st("ROLLBACK TO SAVEPOINT a", vec![]),
                    st("COMMIT", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "COMMIT AND CHAIN keeps the transaction read-only",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("START TRANSACTION READ ONLY", vec![]),
                    status_of(1),
                    st("COMMIT AND CHAIN", vec![]),
                    set_status(1, 6),
                    status_of(2),
                    st("ROLLBACK", vec![]),
                    set_status(1, 6),
                ]),
                after(d),
            ],
        ),
        (
            "SET TRANSACTION READ ONLY applies to the next transaction only",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("SET TRANSACTION READ ONLY", vec![]),
                    st("BEGIN", vec![]),
                    set_status(3, 7),
                    st("COMMIT", vec![]),
                    st("BEGIN", vec![]),
                    set_status(3, 7),
                    st("COMMIT", vec![]),
                ]),
                after(d),
            ],
        ),
        (
            "SET autocommit=1 with autocommit already on does not end BEGIN's transaction",
            Proto::Text,
            Grouping::Single,
            vec![
                session(vec![
                    st("BEGIN", vec![]),
                    set_status(0, 8),
                    st("SET autocommit=1", vec![]),
                    set_status(2, 8),
                    st("ROLLBACK", vec![]),
                ]),
                after(d),
            ],
        ),
    ];
    // read-your-writes of the same session, 200 times over: a write in a
    // multi-statement string that begins with a read, then a read alone
    let status_of = |k: i64| {
        tagged(
            Tag::Own,
            "SELECT user_id, status FROM users WHERE user_id = ?",
            vec![d.u(k)],
        )
    };
    let mut chunks = Vec::new();
    for i in 0..200 {
        chunks.push(session(vec![
            st("SELECT 1", vec![]),
            set_status(3, i % 100),
        ]));
        chunks.push(session(vec![status_of(3)]));
    }
    chunks.push(after(d));
    cells.push((
        "read-your-writes after 'SELECT 1; UPDATE ...' (x200, each read a command of its own)",
        Proto::Text,
        Grouping::Multi,
        chunks,
    ));
    let mut chunks = Vec::new();
    for i in 0..200 {
        chunks.push(session(vec![
            st("SET autocommit=0", vec![]),
            set_status(2, i % 100),
            st("SET autocommit=1", vec![]),
            status_of(2),
        ]));
    }
    chunks.push(after(d));
    cells.push((
        "read-your-writes after SET autocommit=0; UPDATE; SET autocommit=1 (x200)",
        Proto::Text,
        Grouping::Single,
        chunks,
    ));
    cells
}

/// Runs hand-written cells (each on new sessions) from cell number `first`.
async fn run_edge_cells(
    test: &str,
    first: usize,
    build: fn(&CellData) -> Vec<EdgeCell>,
    before: &[&str],
) {
    let _sandbox = sandbox::exclusive().await;
    let Some(shared) = env(test).await else {
        return;
    };
    let started = Instant::now();
    let tenants = message_tenants(shared);
    let mut runner = Runner::new(shared).await;
    for sql in before {
        runner
            .setup
            .setup(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let count = build(&CellData::new(first, &tenants)).len();
    let data: Vec<CellData> = (first..first + count)
        .map(|n| CellData::new(n, &tenants))
        .collect();
    runner.seed(&data).await;
    for (i, d) in data.iter().enumerate() {
        let n = first + i;
        let (title, proto, grouping, chunks) = build(d).swap_remove(i);
        let cell = Cell {
            n,
            title: format!("{title} ({proto:?})"),
            on_replica_proxy: false,
            proto,
            grouping,
            fresh_session: true,
            session_key: (TxMode::AutocommitOn, proto, grouping),
            auto_increment: false,
            data: d.clone(),
            chunks,
        };
        runner.run(&cell).await;
    }
    runner.findings.report(test, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_edge_cases() {
    run_edge_cells(
        "transaction_edge_cases",
        EDGE_CELLS,
        edge_cells,
        &["DROP TABLE IF EXISTS txn_ddl_probe"],
    )
    .await;
}

fn cross_source_snapshot_cells(d: &CellData) -> Vec<EdgeCell> {
    vec![(
        "one read view for the whole transaction: a data source first reached after another session's commit",
        Proto::Text,
        Grouping::Single,
        vec![
            session(vec![
                st("BEGIN", vec![]),
                st("SELECT user_id, email FROM users WHERE user_id = ?", vec![d.u(0)]),
            ]),
            other_writes(vec![st(
                "UPDATE users SET email = ? WHERE user_id = ?",
                vec![s("other"), d.u(2)],
            )]),
            session(vec![
                tagged(
                    Tag::Snapshot,
                    "SELECT user_id, email FROM users WHERE user_id = ?",
                    vec![d.u(2)],
                ),
                st("COMMIT", vec![]),
            ]),
            after(d),
        ],
    )]
}

/// One server gives a transaction one read view, taken at its first read,
/// for every table; ShardGate opens the transaction on each data source
/// when a statement first reaches it, so a data source reached after
/// another session committed there shows that commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a known gap of per-data-source transactions: no read view across data sources (repeatable read differs from one server)"]
async fn transaction_read_view_across_data_sources() {
    run_edge_cells(
        "transaction_read_view_across_data_sources",
        EDGE_CELLS + 100,
        cross_source_snapshot_cells,
        &[],
    )
    .await;
}

// ============================================================ metadata locks

/// Statements of two sessions on both sides, compared: `a` reads, `b` runs
/// DDL with `lock_wait_timeout = 1`.
struct LockScene {
    shared: &'static Env,
    a: Pair,
    b: Pair,
    diffs: Vec<Diff>,
    log: Vec<String>,
}

impl LockScene {
    async fn new(shared: &'static Env) -> LockScene {
        let (px, rf) = (shared.proxy(), shared.reference());
        let a = Pair::open(&px, &rf).await.expect("session a");
        let mut b = Pair::open(&px, &rf).await.expect("session b");
        b.setup("SET SESSION lock_wait_timeout = 1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        LockScene {
            shared,
            a,
            b,
            diffs: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Runs `sql` as session `who` ('a' or 'b') on both sides at once.
    async fn step(&mut self, who: char, sql: &str, proto: Proto) -> (Outcome, Outcome, Duration) {
        let step = st(sql, vec![]);
        let stmt = step.stmt(proto);
        let started = Instant::now();
        let pair = if who == 'a' { &mut self.a } else { &mut self.b };
        let (r, p) = pair.both(&stmt).await;
        let took = started.elapsed();
        self.log.push(format!(
            "    [session {who}] {};    -- reference: {}; shardgate: {} ({took:?})",
            step.describe(proto),
            summary(&r),
            summary(&p)
        ));
        check(&mut self.diffs, &step, proto, false, &r, &p);
        (r, p, took)
    }

    /// DDL by `b` that one server lets through at once.
    async fn ddl_goes_through(&mut self, sql: &str) {
        let (r, p, took) = self.step('b', sql, Proto::Text).await;
        if !matches!(r, Outcome::Done { .. }) {
            self.diffs.push(harness_diff(format!(
                "the reference refused {sql}: {}",
                summary(&r)
            )));
        }
        if matches!(p, Outcome::Done { .. }) && took > Duration::from_millis(900) {
            self.diffs.push(Diff {
                what: "DDL waited (a metadata lock was held)".into(),
                statement: sql.into(),
                reference: summary(&r),
                shardgate: format!("{} after {took:?}", summary(&p)),
                detail: String::new(),
            });
        }
    }

    /// DDL by `b` that waits for `a` on one server (error 1205 after 1 s).
    async fn ddl_waits(&mut self, sql: &str) {
        let (r, _, _) = self.step('b', sql, Proto::Text).await;
        if !matches!(r, Outcome::Error { code: 1205, .. }) {
            self.diffs.push(harness_diff(format!(
                "the reference did not wait for session a's metadata lock on {sql}: {}",
                summary(&r)
            )));
        }
    }

    async fn reconnect_a(&mut self) {
        self.a = Pair::open(&self.shared.proxy(), &self.shared.reference())
            .await
            .expect("session a");
    }
}

/// With autocommit off, a read keeps a metadata lock on its table until the
/// transaction ends — COMMIT, ROLLBACK, SET autocommit=1, disconnecting —
/// and not a moment longer: DDL from another session waits before, and goes
/// through at once after (the old bug: a connection went back to the pool
/// inside the implicit transaction and kept the lock for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_locks_end_with_the_transaction() {
    let test = "metadata_locks_end_with_the_transaction";
    let _sandbox = sandbox::exclusive().await;
    let Some(shared) = env(test).await else {
        return;
    };
    let started = Instant::now();
    let mut setup = Pair::open(&shared.proxy(), &shared.reference())
        .await
        .expect("connect");
    for sql in [
        "DROP TABLE IF EXISTS txn_mdl, txn_mdl_renamed",
        "CREATE TABLE txn_mdl (id INT PRIMARY KEY, v INT)",
        "INSERT INTO txn_mdl VALUES (1, 1), (2, 2)",
    ] {
        setup.setup(sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let mut x = LockScene::new(shared).await;
    let read = "SELECT id, v FROM txn_mdl";

    // COMMIT ends it; RENAME TABLE and ALTER TABLE go through
    x.log.push("  -- COMMIT".into());
    x.step('a', "SET autocommit=0", Proto::Text).await;
    x.step('a', read, Proto::Text).await;
    x.ddl_waits("ALTER TABLE txn_mdl ADD COLUMN c1 INT").await;
    x.step('a', "COMMIT", Proto::Text).await;
    x.ddl_goes_through("RENAME TABLE txn_mdl TO txn_mdl_renamed")
        .await;
    x.ddl_goes_through("RENAME TABLE txn_mdl_renamed TO txn_mdl")
        .await;
    x.ddl_goes_through("ALTER TABLE txn_mdl ADD COLUMN c1 INT")
        .await;

    // a read again (autocommit still off), ROLLBACK
    x.log.push("  -- ROLLBACK".into());
    x.step('a', read, Proto::Text).await;
    x.ddl_waits("ALTER TABLE txn_mdl ADD COLUMN c2 INT").await;
    x.step('a', "ROLLBACK", Proto::Text).await;
    x.ddl_goes_through("ALTER TABLE txn_mdl ADD COLUMN c2 INT")
        .await;

    // prepared statements; SET autocommit=1 ends it
    x.log.push("  -- prepared, SET autocommit=1".into());
    x.step('a', "SELECT id FROM txn_mdl WHERE id = 1", Proto::Prepared)
        .await;
    x.ddl_waits("ALTER TABLE txn_mdl ADD COLUMN c3 INT").await;
    x.step('a', "SET autocommit=1", Proto::Prepared).await;
    x.ddl_goes_through("ALTER TABLE txn_mdl ADD COLUMN c3 INT")
        .await;

    // SET autocommit=0 alone takes no lock
    x.log.push("  -- SET autocommit=0 alone".into());
    x.step('a', "SET autocommit=0", Proto::Text).await;
    x.ddl_goes_through("ALTER TABLE txn_mdl ADD COLUMN c4 INT")
        .await;

    // disconnecting ends it
    x.log.push("  -- disconnect".into());
    x.step('a', read, Proto::Text).await;
    x.ddl_waits("ALTER TABLE txn_mdl ADD COLUMN c5 INT").await;
    x.reconnect_a().await;
    x.log
        .push("    [session a] (disconnected; a new session a)".into());
    // the proxy rolls a closed session's connections back as it notices
    // the close: a short grace before the DDL must go through
    tokio::time::sleep(Duration::from_millis(300)).await;
    x.ddl_goes_through("ALTER TABLE txn_mdl ADD COLUMN c5 INT")
        .await;

    // many short autocommit-off sessions through the pool, then DDL
    x.log
        .push("  -- 25 sessions: SET autocommit=0, read, COMMIT, close".into());
    for _ in 0..25 {
        let mut c = shared.proxy().connect().await.expect("connect");
        for sql in ["SET autocommit=0", read, "COMMIT"] {
            if let Outcome::Error { code, message } = timed(&mut c, &Stmt::text(sql)).await {
                x.diffs
                    .push(harness_diff(format!("{sql}: {code} {message}")));
            }
        }
        let _ = c.close().await;
    }
    x.ddl_goes_through("RENAME TABLE txn_mdl TO txn_mdl_renamed")
        .await;
    x.ddl_goes_through("DROP TABLE txn_mdl_renamed").await;

    let mut findings = Findings {
        ran: 1,
        ..Findings::default()
    };
    if let Some(held) = connections_in_use(shared.admin_addr).await {
        x.diffs.push(Diff {
            what: "backend connections still in use at the end".into(),
            statement: "GET /api/pools".into(),
            reference: String::new(),
            shardgate: held,
            detail: String::new(),
        });
    }
    let script = x.log.join("\n") + "\n";
    if x.diffs.is_empty() {
        say(&format!("{test}: every step equal\n{script}"));
    } else {
        findings.failures.push(CellFailure {
            title: test.into(),
            script,
            diffs: x.diffs,
        });
    }
    findings.report(test, started);
}

// ============================================================ idle sessions

/// The `/api/sessions` entries (id, in_transaction).
async fn sessions(admin: std::net::SocketAddr) -> Vec<serde_json::Value> {
    http::request(admin, "GET", "/api/sessions", &[], None)
        .await
        .map(|r| r.json())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The `active` count of every pool.
async fn active(admin: std::net::SocketAddr) -> BTreeMap<String, u64> {
    let pools = http::request(admin, "GET", "/api/pools", &[], None)
        .await
        .expect("GET /api/pools")
        .json();
    pools["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("?").to_string(),
                p["active"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// 60 sessions that only ran `SET autocommit=0` (what drivers send on
/// connect) hold no backend connection; 10 of them reading a row hold one
/// each, on the row's primary, until they COMMIT; one reading rows merged
/// from four data sources holds one on each until it COMMITs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_autocommit_off_sessions_hold_no_connection() {
    let test = "idle_autocommit_off_sessions_hold_no_connection";
    let _sandbox = sandbox::exclusive().await;
    let Some(shared) = env(test).await else {
        return;
    };
    let admin = shared.admin_addr;
    let mut problems = Vec::new();
    let mut conns = Vec::new();
    for i in 0..60 {
        let mut c = shared.proxy().connect().await.expect("connect");
        let o = timed(&mut c, &Stmt::text("SET autocommit=0")).await;
        if !matches!(o, Outcome::Done { .. }) {
            problems.push(format!("session {i}: SET autocommit=0: {}", summary(&o)));
        }
        conns.push(c);
    }
    let listed = sessions(admin).await;
    let in_transaction = listed
        .iter()
        .filter(|s| s["in_transaction"] == true)
        .count();
    say(&format!(
        "{test}: 60 sessions after SET autocommit=0: /api/sessions lists {}, {in_transaction} in a transaction",
        listed.len()
    ));
    if in_transaction > 0 {
        problems.push(format!(
            "{in_transaction} sessions shown in a transaction after SET autocommit=0 alone (one server: @@in_transaction = 0)"
        ));
    }
    if let Some(held) = connections_in_use(admin).await {
        problems.push(format!(
            "60 sessions that only ran SET autocommit=0 hold backend connections: {held}"
        ));
    }
    // a row on ds1 (user_id % 4 == 1)
    let id: i64 = BASE_ID + 5_000_001;
    {
        let mut c = shared.proxy().connect().await.expect("connect");
        let sql = format!(
            "INSERT INTO users (user_id, tenant_id, name, status) VALUES ({id}, 'idle', 'idle', 0)"
        );
        let o = timed(&mut c, &Stmt::text(&sql)).await;
        assert!(matches!(o, Outcome::Done { .. }), "{sql}: {}", summary(&o));
    }
    let read = format!("SELECT user_id FROM users WHERE user_id = {id}");
    for c in conns.iter_mut().take(10) {
        let o = timed(c, &Stmt::text(&read)).await;
        if o.rows().len() != 1 {
            problems.push(format!("{read}: {}", summary(&o)));
        }
    }
    let busy = active(admin).await;
    let expected: BTreeMap<String, u64> = [("ds1".to_string(), 10)].into();
    let busy_now: BTreeMap<String, u64> = busy.into_iter().filter(|(_, n)| *n > 0).collect();
    say(&format!(
        "{test}: after 10 of them read a ds1 row (autocommit off): connections in use {busy_now:?}"
    ));
    if busy_now != expected {
        problems.push(format!(
            "10 autocommit-off sessions that read a ds1 row: connections in use {busy_now:?}, expected {expected:?} (each keeps its ds1 primary connection until COMMIT, as one server keeps the transaction)"
        ));
    }
    for c in conns.iter_mut().take(10) {
        let o = timed(c, &Stmt::text("COMMIT")).await;
        if !matches!(o, Outcome::Done { .. }) {
            problems.push(format!("COMMIT: {}", summary(&o)));
        }
    }
    if let Some(held) = connections_in_use(admin).await {
        problems.push(format!("after COMMIT: connections still in use: {held}"));
    }
    // A read merged from the four data sources (an aggregate) opens the
    // implicit transaction on each: the session keeps all four connections.
    let merged = format!(
        "SELECT COUNT(*) FROM users WHERE user_id IN ({id}, {}, {}, {})",
        id + 1,
        id + 2,
        id + 3
    );
    let o = timed(&mut conns[10], &Stmt::text(&merged)).await;
    if o.rows().len() != 1 {
        problems.push(format!("{merged}: {}", summary(&o)));
    }
    let busy_now: BTreeMap<String, u64> = active(admin)
        .await
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let expected: BTreeMap<String, u64> = ["ds0", "ds1", "ds2", "ds3"]
        .map(|ds| (ds.to_string(), 1))
        .into();
    say(&format!(
        "{test}: after a merged read over four data sources (autocommit off): connections in use {busy_now:?}"
    ));
    if busy_now != expected {
        problems.push(format!(
            "an autocommit-off session after a read merged from four data sources: connections in use {busy_now:?}, expected {expected:?} (its implicit transaction is open on each)"
        ));
    }
    let o = timed(&mut conns[10], &Stmt::text("COMMIT")).await;
    if !matches!(o, Outcome::Done { .. }) {
        problems.push(format!("COMMIT: {}", summary(&o)));
    }
    if let Some(held) = connections_in_use(admin).await {
        problems.push(format!(
            "after the merged read's COMMIT: connections still in use: {held}"
        ));
    }
    for c in conns {
        let _ = c.close().await;
    }
    if let Some(held) = connections_in_use(admin).await {
        problems.push(format!("after closing: connections still in use: {held}"));
    }
    assert!(problems.is_empty(), "{test}:\n- {}", problems.join("\n- "));
    say(&format!("{test}: ok"));
}
