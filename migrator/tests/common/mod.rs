//! Sandbox fixtures of the migrator's tests: per-test databases on the
//! sandbox's primaries (never the shared `ds<i>` databases), configurations
//! of `users` / `message_records` over them, seeded rows, and the binary.

#![allow(dead_code)] // each test file uses a part

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use shardgate_integration_tests::{start_proxy_from_file, RunningProxy};
use shardgate_rules::{Config, ShardValue, ShardingRules};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const USERS_DDL: &str = "(user_id BIGINT PRIMARY KEY, tenant_id VARCHAR(64), \
     name VARCHAR(100) CHARACTER SET utf8mb4, email VARCHAR(200) NULL, balance DECIMAL(20,4) NULL, \
     created_at DATETIME NULL, status TINYINT) ENGINE=InnoDB AUTO_INCREMENT=77";

pub const MESSAGES_DDL: &str = "(id BIGINT, tenant_id VARCHAR(64), created_at DATETIME, \
     sender BIGINT, body TEXT, PRIMARY KEY(id, created_at))";

/// Creates message_records_202401..202412 on a data source.
pub async fn create_2024_months(conn: &mut Conn) {
    for m in 1..=12 {
        conn.query_drop(format!(
            "CREATE TABLE message_records_2024{m:02} {MESSAGES_DDL}"
        ))
        .await
        .unwrap();
    }
}

pub fn port(source: u32) -> u16 {
    13306 + source as u16
}

/// True when the primaries ds0..ds<n-1> accept connections; otherwise
/// prints SKIPPED and returns false, or fails under
/// SHARDGATE_REQUIRE_SANDBOX=1.
pub fn sandbox_ready(test: &str, primaries: u32) -> bool {
    let down: Vec<u16> = (0..primaries)
        .map(port)
        .filter(|p| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], *p).into(), Duration::from_secs(2))
                .is_err()
        })
        .collect();
    if down.is_empty() {
        return true;
    }
    let hint = if primaries > 4 {
        "docker/sandbox.sh up --primaries 8"
    } else {
        "docker/sandbox.sh up"
    };
    if std::env::var("SHARDGATE_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        panic!("{test}: sandbox primaries on ports {down:?} are down and SHARDGATE_REQUIRE_SANDBOX=1 (start them: {hint})");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: sandbox primaries on ports {down:?} are down ({test}; start them: {hint})"
    );
    false
}

/// A connection to the sandbox server on `port` (a replica, say).
pub async fn connect_port(port: u16) -> Conn {
    let url = format!("mysql://root@127.0.0.1:{port}");
    Conn::new(Opts::from_url(&url).unwrap()).await.unwrap()
}

pub async fn connect(source: u32, database: Option<&str>) -> Conn {
    let db = database.map(|d| format!("/{d}")).unwrap_or_default();
    let url = format!("mysql://root@127.0.0.1:{}{db}", port(source));
    Conn::new(Opts::from_url(&url).unwrap()).await.unwrap()
}

/// A test's own databases `<prefix>_ds<i>` on the primaries ds0..ds<n-1>.
pub struct Fixture {
    pub prefix: String,
    pub sources: u32,
    pub dir: PathBuf,
}

impl Fixture {
    /// Drops what an earlier run may have left, creates the databases and
    /// a scratch directory.
    pub async fn new(prefix: &str, sources: u32) -> Fixture {
        let fixture = Fixture {
            prefix: prefix.to_string(),
            sources,
            dir: std::env::temp_dir().join(format!("{prefix}-{}", std::process::id())),
        };
        fixture.drop_databases().await;
        for i in 0..sources {
            let mut conn = connect(i, None).await;
            conn.query_drop(format!("CREATE DATABASE `{}`", fixture.database(i)))
                .await
                .unwrap();
            conn.disconnect().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&fixture.dir);
        std::fs::create_dir_all(&fixture.dir).unwrap();
        fixture
    }

    pub fn database(&self, source: u32) -> String {
        format!("{}_ds{source}", self.prefix)
    }

    pub async fn conn(&self, source: u32) -> Conn {
        connect(source, Some(&self.database(source))).await
    }

    async fn drop_databases(&self) {
        for i in 0..self.sources {
            let mut conn = connect(i, None).await;
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.database(i)))
                .await
                .unwrap();
            conn.disconnect().await.unwrap();
        }
    }

    pub async fn cleanup(self) {
        self.drop_databases().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The config text: data sources ds0..ds<sources-1> over this
    /// fixture's databases (with the sandbox's replicas), plus `tables`.
    pub fn config(&self, sources: u32, tables: &str) -> String {
        let mut toml =
            String::from("[server]\ndatabase = \"wework\"\n[[server.users]]\nname = \"root\"\n");
        for i in 0..sources {
            let db = self.database(i);
            toml.push_str(&format!(
                "[data_sources.ds{i}]\nurl = \"mysql://root@127.0.0.1:{}/{db}\"\n\
                 replicas = [\"mysql://root@127.0.0.1:{}/{db}\", \"mysql://root@127.0.0.1:{}/{db}\"]\n",
                port(i),
                port(i) + 10,
                port(i) + 20
            ));
        }
        toml.push_str(tables);
        toml
    }

    /// The usual job of these tests: `rows` users seeded in the old layout
    /// (ds0..ds3, 16 tables each) and the config files of the move to
    /// `to_sources` data sources of `to_tables` tables: (from, to) paths.
    pub async fn users_expansion(
        &self,
        rows: u64,
        to_sources: u32,
        to_tables: u32,
    ) -> (String, String) {
        let from = self.config(4, &users_rules(4, 16));
        seed_users(self, &from, 4, 16, rows).await;
        let from = self.write("from.toml", &from);
        let to = self.write(
            "to.toml",
            &self.config(to_sources, &users_rules(to_sources, to_tables)),
        );
        (from, to)
    }

    /// Writes a config file in the scratch directory.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    pub fn state_dir(&self) -> String {
        self.dir.join("state").display().to_string()
    }

    /// Runs the migrator with `--state-dir` set.
    pub fn migrator(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        eprintln!(
            "$ shardgate-migrator {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardgate-migrator"));
        command.arg("--state-dir").arg(self.state_dir()).args(args);
        command.env(
            "RUST_LOG",
            std::env::var("MIGRATOR_LOG").unwrap_or("warn".into()),
        );
        command
    }

    /// The one job in the state directory.
    pub fn job(&self) -> String {
        let mut jobs: Vec<String> = std::fs::read_dir(self.state_dir())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        jobs.pop().unwrap()
    }

    pub fn state(&self, job: &str) -> serde_json::Value {
        let text =
            std::fs::read_to_string(PathBuf::from(self.state_dir()).join(format!("{job}.json")))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// `[tables.message_records]` by `tenant_id` (crc32_mod) over ds0..ds3,
/// then by the month of `created_at`, from 2024-01 to the end of
/// `last_year`.
pub fn messages_rules(last_year: u32) -> String {
    let nodes: Vec<String> = (2024..=last_year)
        .map(|year| format!("ds${{0..3}}.message_records_${{{year}01..{year}12}}"))
        .collect();
    format!(
        "[tables.message_records]\nnodes = \"{}\"\n\
         database = {{ column = \"tenant_id\", algorithm = \"crc32_mod\", count = 4 }}\n\
         table = {{ column = \"created_at\", algorithm = \"month\", format = \"%Y%m\" }}\n",
        nodes.join(", ")
    )
}

/// `[tables.users]` over `sources` data sources with `tables` tables each.
pub fn users_rules(sources: u32, tables: u32) -> String {
    format!(
        "[tables.users]\nnodes = \"ds${{0..{}}}.users_${{0..{}}}\"\n\
         database = {{ column = \"user_id\", algorithm = \"mod\", count = {sources} }}\n\
         table = {{ column = \"user_id\", expression = \"users_${{(user_id / {sources}) % {tables}}}\" }}\n\
         key = {{ column = \"user_id\", generator = \"snowflake\" }}\n",
        sources - 1,
        tables - 1
    )
}

/// Sparse 64-bit keys like snowflake ids.
pub fn user_key(i: u64) -> i64 {
    (1_700_000_000_000_000_000u64 / 4 + i * 7_919_000_003 + (i * i) % 1_013) as i64
}

/// One user row's values in column order.
pub fn user_row(i: u64) -> Vec<Value> {
    vec![
        Value::Int(user_key(i)),
        Value::Bytes(format!("tenant_{}", i % 7).into_bytes()),
        Value::Bytes(format!("user {i} ü").into_bytes()),
        if i % 5 == 0 {
            Value::NULL
        } else {
            Value::Bytes(format!("u{i}@example.com").into_bytes())
        },
        if i % 3 == 0 {
            Value::NULL
        } else {
            Value::Bytes(format!("{}.{:04}", i * 3, i % 10_000).into_bytes())
        },
        Value::Date(
            2024,
            (i % 12 + 1) as u8,
            (i % 28 + 1) as u8,
            (i % 24) as u8,
            5,
            9,
            0,
        ),
        Value::Int((i % 3) as i64),
    ]
}

pub const USER_COLUMNS: &str = "user_id, tenant_id, name, email, balance, created_at, status";

/// Creates the old layout's users tables and inserts `count` rows, each in
/// the table `config` places it.
pub async fn seed_users(fixture: &Fixture, config: &str, sources: u32, tables: u32, count: u64) {
    for s in 0..sources {
        let mut conn = fixture.conn(s).await;
        for t in 0..tables {
            conn.query_drop(format!("CREATE TABLE users_{t} {USERS_DDL}"))
                .await
                .unwrap();
        }
        conn.disconnect().await.unwrap();
    }
    let rules = ShardingRules::new(&Config::from_toml_str(config).unwrap()).unwrap();
    let mut by_node: BTreeMap<(String, String), Vec<Vec<Value>>> = BTreeMap::new();
    for i in 0..count {
        let row = user_row(i);
        let node = rules
            .route_row("users", &[("user_id", ShardValue::Int(user_key(i)))])
            .unwrap();
        by_node
            .entry((node.data_source, node.table))
            .or_default()
            .push(row);
    }
    for ((ds, table), rows) in by_node {
        let source: u32 = ds.trim_start_matches("ds").parse().unwrap();
        let mut conn = fixture.conn(source).await;
        for chunk in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO {table} ({USER_COLUMNS}) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            conn.exec_drop(sql, params).await.unwrap();
        }
        conn.disconnect().await.unwrap();
    }
}

/// Rows per physical table matching `like` on a data source.
pub async fn table_counts(fixture: &Fixture, source: u32, like: &str) -> BTreeMap<String, u64> {
    let mut conn = fixture.conn(source).await;
    let tables: Vec<String> = conn
        .query(format!("SHOW TABLES LIKE '{like}'"))
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for table in tables {
        let n: u64 = conn
            .query_first(format!("SELECT COUNT(*) FROM `{table}`"))
            .await
            .unwrap()
            .unwrap();
        counts.insert(table, n);
    }
    conn.disconnect().await.unwrap();
    counts
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON a migrator command printed.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Starts a proxy from a copy of `config` at `path`.
pub async fn proxy_from(path: &Path, config: &str) -> RunningProxy {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, config).unwrap();
    start_proxy_from_file(path).await
}

/// A configuration a test proxy can run: `config`'s text listening on
/// ephemeral loopback ports, reads on the primaries.
pub fn proxy_ready(config: &str) -> String {
    config.replacen(
        "[server]\n",
        "[server]\nmysql_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         read_write_splitting = false\n",
        1,
    )
}

/// Runs the migrator off the async runtime's threads (a test proxy may be
/// serving it on them).
pub async fn migrator_async(fx: &Fixture, args: &[&str]) -> Output {
    let mut command = fx.command(args);
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    eprintln!(
        "$ shardgate-migrator {shown}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A per-source field of a job's state, summed over its source tables.
pub fn sum_of(state: &serde_json::Value, field: &str) -> u64 {
    state["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

/// The job's state, or None while it has no state file yet.
pub fn try_state(fx: &Fixture) -> Option<serde_json::Value> {
    let entries = std::fs::read_dir(fx.state_dir()).ok()?;
    let job = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .next()?;
    let text = std::fs::read_to_string(format!("{}/{job}.json", fx.state_dir())).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every `users_<t>` table (t < tables) of every data source: each row's
/// key must route there under `users_rules(sources, tables)`. Returns the
/// keys and names.
pub async fn users_by_placement(fx: &Fixture, sources: u32, tables: u32) -> BTreeMap<i64, String> {
    let mut rows = BTreeMap::new();
    for s in 0..sources {
        let mut conn = fx.conn(s).await;
        for t in 0..tables {
            let found: Vec<(i64, String)> = conn
                .query(format!("SELECT user_id, name FROM users_{t}"))
                .await
                .unwrap();
            for (key, name) in found {
                assert_eq!(
                    (
                        key.rem_euclid(i64::from(sources)),
                        (key / i64::from(sources)).rem_euclid(i64::from(tables))
                    ),
                    (i64::from(s), i64::from(t)),
                    "key {key} sits in ds{s}.users_{t}"
                );
                assert!(rows.insert(key, name).is_none(), "key {key} twice");
            }
        }
        conn.disconnect().await.unwrap();
    }
    rows
}

/// A small deterministic pseudo-random sequence for test workloads.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}
