//! SQLAlchemy's dialect compliance suite (`sqlalchemy.testing.suite`, shipped
//! in SQLAlchemy's wheel) with PyMySQL, run twice in one test: straight at
//! MariaDB (databases `test`, `test_schema`, `test_schema_2` on ds1's primary)
//! and through ShardGate started in-process on
//! `integration-tests/configs/sqlalchemy.toml` (the seed's topology with
//! physical databases of its own; logical databases `test`, `test_schema`,
//! `test_schema_2`). The pytest side is `integration-tests/drivers/sqlalchemy/`
//! (conftest, requirements class, result plugin).
//!
//! The test fails when a test that passes straight at MariaDB does not pass
//! through ShardGate, unless `drivers/sqlalchemy/known_differences.txt`
//! lists it with a reason. Both runs' outcomes, logs and JUnit reports, and
//! the differences, are written to `integration-tests/artifacts/sqlalchemy.*`.
//!
//! Environment: `SHARDGATE_SQLA_ONE_DATABASE=1` drops the config's
//! `[databases.*]` sections (the further logical databases) before loading
//! it, for a proxy that does not know them yet; `SHARDGATE_IT_SQLA_PYTHON`
//! names the Python to run pytest with (default: the repository's `.venv`,
//! where `scripts/install-deps.sh` installs SQLAlchemy, pytest and PyMySQL).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardgate_integration_tests::{
    crate_dir, data_source_endpoint, sandbox, sandbox_ready, say, start_proxy, Config, Endpoint,
};
use sqlx::Connection as _;

/// The proxy's configuration, as checked in.
const CONFIG_TEXT: &str = include_str!("../../configs/sqlalchemy.toml");
/// Set to 1: the config without its `[databases.*]` sections.
const ONE_DATABASE_ENV: &str = "SHARDGATE_SQLA_ONE_DATABASE";
/// The data source whose primary's server holds the direct run's databases.
const DIRECT_DATA_SOURCE: &str = "ds1";
/// The databases the suite uses: its default one and the two it names
/// (`config.test_schema`, `config.test_schema_2`), in both runs.
const SUITE_DATABASES: [&str; 3] = ["test", "test_schema", "test_schema_2"];
/// How long one pytest run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// Fewer passes straight at MariaDB means the suite did not really run
/// (SQLAlchemy 2.0.x with the requirements class passes about 1400).
const MIN_DIRECT_PASSED: usize = 1000;
/// How long a replica may take to show a database created on its primary.
const REPLICATION_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_suite_through_shardgate_matches_mariadb() {
    let _sandbox = sandbox::shared().await;
    let test = "sqlalchemy_suite_through_shardgate_matches_mariadb";
    let one_database = std::env::var(ONE_DATABASE_ENV).as_deref() == Ok("1");
    let cfg = load_config(one_database);
    if !sandbox_ready(&cfg, test) {
        return;
    }
    let python = python();
    let versions = check_python(&python);

    let artifacts = crate_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("integration-tests/artifacts");

    // No database of the suite's names on the proxy's servers, where a
    // statement ShardGate passes through unchanged would find it.
    drop_suite_databases(&cfg).await;

    // (a) straight at MariaDB
    let direct_server = data_source_endpoint(&cfg, DIRECT_DATA_SOURCE)
        .unwrap_or_else(|| panic!("the config has no data source {DIRECT_DATA_SOURCE}"));
    recreate_suite_databases(&direct_server).await;
    let direct = run_suite("direct", &python, &direct_server.with_database("test")).await;
    drop_suite_databases(&cfg).await;

    // (b) through ShardGate
    create_physical_databases(&cfg).await;
    let proxy = start_proxy(cfg.clone()).await;
    let proxied = run_suite("proxy", &python, &proxy.endpoint()).await;
    drop(proxy);
    drop_physical_databases(&cfg).await;

    let known = KnownDifferences::load();
    let report = compare(&direct, &proxied, &known);
    let mut summary = format!(
        "SQLAlchemy suite ({versions}; proxy config {}):\n  {}\n  {}\n",
        if one_database {
            "without [databases.*]"
        } else {
            "as checked in"
        },
        direct.summary(),
        proxied.summary(),
    );
    let _ = writeln!(
        summary,
        "  {} pass straight at MariaDB but not through ShardGate ({} of them documented in {})",
        report.differing.len() + report.documented.len(),
        report.documented.len(),
        KnownDifferences::path().display()
    );
    if !report.proxy_only.is_empty() {
        let _ = writeln!(
            summary,
            "  {} pass through ShardGate but not straight at MariaDB: {}",
            report.proxy_only.len(),
            report.proxy_only.join(", ")
        );
    }
    let stale = known.unused(&report.documented);
    if !stale.is_empty() {
        let _ = writeln!(
            summary,
            "  documented differences that no longer differ (remove them): {}",
            stale.join(", ")
        );
    }
    let details = report.describe(&direct, &proxied);
    let _ = std::fs::write(
        artifacts.join("sqlalchemy.differences.txt"),
        format!("{summary}\n{details}"),
    );
    say(&summary);
    assert!(
        direct.count("passed") >= MIN_DIRECT_PASSED,
        "the run straight at MariaDB passed only {} tests (want >= {MIN_DIRECT_PASSED}): \
         the suite did not really run; see {}",
        direct.count("passed"),
        direct.log.display()
    );
    assert!(
        report.differing.is_empty(),
        "{} tests pass straight at MariaDB but not through ShardGate and are not in {} \
         (all outcomes in {}/sqlalchemy.*):\n{summary}\n{details}",
        report.differing.len(),
        KnownDifferences::path().display(),
        artifacts.display()
    );
}

// ------------------------------------------------------------ configuration

/// The checked-in config, listening on ephemeral loopback ports; without its
/// `[databases.*]` sections when `one_database`.
fn load_config(one_database: bool) -> Config {
    let text = if one_database {
        without_databases_sections(CONFIG_TEXT)
    } else {
        CONFIG_TEXT.to_string()
    };
    let mut cfg = Config::from_toml_str(&text).unwrap_or_else(|e| {
        let hint = if one_database {
            String::new()
        } else {
            format!(
                " (its [databases.*] sections declare the logical databases test_schema and \
                 test_schema_2; {ONE_DATABASE_ENV}=1 runs without them, for a ShardGate that \
                 has one logical database only)"
            )
        };
        panic!("integration-tests/configs/sqlalchemy.toml does not load: {e}{hint}")
    });
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

/// `text` without the tables `[databases...]` and `[[databases...]]` and
/// everything in them.
fn without_databases_sections(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            skipping = name == "databases" || name.starts_with("databases.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ------------------------------------------------------------ databases

/// Connects to the server of `ep` (whatever its database).
async fn admin_connection(ep: &Endpoint) -> sqlx::MySqlConnection {
    ep.with_database("information_schema")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", ep.addr()))
}

/// Runs `statements` (text protocol) on the server of `ep`, foreign keys
/// unchecked (a table of test_schema's database may refer to one of test's).
async fn execute(ep: &Endpoint, statements: &[String]) {
    let mut conn = admin_connection(ep).await;
    let unchecked = "SET SESSION foreign_key_checks = 0".to_string();
    for sql in std::iter::once(&unchecked).chain(statements) {
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", ep.addr()));
    }
    let _ = conn.close().await;
}

fn drop_database(db: &str) -> String {
    format!("DROP DATABASE IF EXISTS `{db}`")
}

fn create_database(db: &str) -> String {
    format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
}

/// Drops and creates the suite's databases on the server of `ep`.
async fn recreate_suite_databases(ep: &Endpoint) {
    let mut statements = Vec::new();
    for db in SUITE_DATABASES {
        statements.extend([drop_database(db), create_database(db)]);
    }
    execute(ep, &statements).await;
}

/// Drops the databases named like the suite's on every primary of `cfg`.
async fn drop_suite_databases(cfg: &Config) {
    let mut servers = BTreeMap::new();
    for name in cfg.data_sources.keys() {
        let ep = data_source_endpoint(cfg, name).expect("a configured data source");
        servers.entry(ep.addr()).or_insert(ep);
    }
    let statements: Vec<String> = SUITE_DATABASES.iter().map(|db| drop_database(db)).collect();
    for ep in servers.values() {
        execute(ep, &statements).await;
    }
}

/// Every data source's physical database, new and empty on its primary, and
/// there on its replicas before the proxy reads from them.
async fn create_physical_databases(cfg: &Config) {
    for (name, ds) in &cfg.data_sources {
        let primary = data_source_endpoint(cfg, name).expect("a configured data source");
        let db = &primary.database;
        execute(&primary, &[drop_database(db), create_database(db)]).await;
        for url in &ds.replicas {
            let replica = Endpoint {
                host: url.host.clone(),
                port: url.port,
                user: url.user.clone(),
                password: url.password.clone(),
                database: url.database.clone(),
            };
            wait_for_database(&replica).await;
        }
    }
}

/// Drops every data source's physical database (the replicas follow).
async fn drop_physical_databases(cfg: &Config) {
    for name in cfg.data_sources.keys() {
        let ep = data_source_endpoint(cfg, name).expect("a configured data source");
        execute(&ep, &[drop_database(&ep.database)]).await;
    }
}

/// Waits until the server of `ep` has the database `ep.database`, with no tables.
async fn wait_for_database(ep: &Endpoint) {
    let deadline = Instant::now() + REPLICATION_WAIT;
    let mut conn = admin_connection(ep).await;
    loop {
        let found: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?), \
                    (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?)",
        )
        .bind(&ep.database)
        .bind(&ep.database)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ep.addr()));
        if found == (1, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica {} does not show a new, empty database {} after {REPLICATION_WAIT:?}",
            ep.addr(),
            ep.database
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = conn.close().await;
}

// ------------------------------------------------------------ pytest

/// The Python with SQLAlchemy, pytest and PyMySQL.
fn python() -> PathBuf {
    match std::env::var("SHARDGATE_IT_SQLA_PYTHON") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_dir().join(".venv").join("bin").join("python"),
    }
}

fn repo_dir() -> PathBuf {
    crate_dir()
        .parent()
        .expect("integration-tests/ is in the repository")
        .to_path_buf()
}

fn suite_dir() -> PathBuf {
    crate_dir().join("drivers").join("sqlalchemy")
}

/// The versions of SQLAlchemy, pytest and PyMySQL `python` has; fails
/// saying how to install them when it has not.
fn check_python(python: &Path) -> String {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sqlalchemy, pytest, pymysql; from importlib.metadata import version as v; \
             print(', '.join(p + ' ' + v(p) for p in ('SQLAlchemy', 'pytest', 'PyMySQL')))",
        ])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "{} lacks SQLAlchemy, pytest or PyMySQL, which the SQLAlchemy suite needs: \
             run scripts/install-deps.sh (or set SHARDGATE_IT_SQLA_PYTHON)\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {} ({e}), which the SQLAlchemy suite needs with SQLAlchemy, pytest and \
             PyMySQL: run scripts/install-deps.sh (or set SHARDGATE_IT_SQLA_PYTHON)",
            python.display()
        ),
    }
}

/// One test's outcome in one run.
#[derive(Debug, Clone)]
struct Outcome {
    /// passed, failed, error, skipped, xfailed or xpassed
    outcome: String,
    /// The failure's (or skip's) message: the exception and its SQL.
    message: String,
}

/// One pytest run of the suite.
struct SuiteRun {
    name: &'static str,
    target: String,
    /// By test id (the node id without the backend in its class name).
    tests: BTreeMap<String, Outcome>,
    elapsed: Duration,
    /// pytest's closing line.
    closing: String,
    log: PathBuf,
}

impl SuiteRun {
    fn count(&self, outcome: &str) -> usize {
        self.tests.values().filter(|t| t.outcome == outcome).count()
    }

    fn summary(&self) -> String {
        format!(
            "{:<6} {:<24} {} passed, {} failed, {} errors, {} skipped in {:.1} s (pytest: {})",
            self.name,
            self.target,
            self.count("passed"),
            self.count("failed"),
            self.count("error"),
            self.count("skipped"),
            self.elapsed.as_secs_f64(),
            self.closing
        )
    }
}

/// Runs the suite against `ep` (its database is the suite's default one);
/// writes `artifacts/sqlalchemy.<name>.{log,jsonl,xml}`.
async fn run_suite(name: &'static str, python: &Path, ep: &Endpoint) -> SuiteRun {
    let artifacts = crate_dir().join("artifacts");
    let results = artifacts.join(format!("sqlalchemy.{name}.jsonl"));
    let junit = artifacts.join(format!("sqlalchemy.{name}.xml"));
    let log = artifacts.join(format!("sqlalchemy.{name}.log"));
    let _ = std::fs::remove_file(&results);
    let auth = if ep.password.is_empty() {
        ep.user.clone()
    } else {
        format!("{}:{}", ep.user, ep.password)
    };
    let dburi = format!(
        "mysql+pymysql://{auth}@{}:{}/{}",
        ep.host, ep.port, ep.database
    );
    let mut cmd = tokio::process::Command::new(python);
    cmd.current_dir(suite_dir())
        .args(["-m", "pytest", "--dburi", &dburi])
        // --tb=line: a full traceback costs pytest a third of a second per
        // failure, minutes when a class's fixture fails for all its tests;
        // the results file keeps each failure's message (exception and SQL).
        .args(["-p", "no:cacheprovider", "--tb=line", "-q", "-rN"])
        .arg(format!("--junitxml={}", junit.display()))
        .env("SG_SQLA_RESULTS", &results)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let out = match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("pytest ({name}): {e}"),
        Err(_) => panic!("pytest ({name}, {dburi}) did not finish within {RUN_TIMEOUT:?}"),
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::write(
        &log,
        format!("$ pytest --dburi {dburi}\n{stdout}\n{stderr}"),
    );
    // 0: all passed; 1: some failed. Anything else: pytest itself failed.
    if !matches!(out.status.code(), Some(0) | Some(1)) {
        panic!(
            "pytest ({name}, {dburi}) failed to run the suite ({}); log in {}:\n{}\n{}",
            out.status,
            log.display(),
            last_lines(&stdout, 40),
            last_lines(&stderr, 40)
        );
    }
    let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        panic!(
            "pytest ({name}) wrote no results {}: {e}",
            results.display()
        )
    });
    let mut tests = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", results.display()));
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        tests.insert(
            field("id"),
            Outcome {
                outcome: field("outcome"),
                message: field("message"),
            },
        );
    }
    let closing = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" in ") && (l.contains("passed") || l.contains("failed")))
        .unwrap_or("")
        .trim()
        .to_string();
    SuiteRun {
        name,
        target: ep.addr(),
        tests,
        elapsed,
        closing,
        log,
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ------------------------------------------------------------ comparison

/// `drivers/sqlalchemy/known_differences.txt`: one test id a line (a
/// trailing `*` matches every id it starts), then `#` and the reason.
struct KnownDifferences {
    entries: Vec<(String, String)>,
}

impl KnownDifferences {
    fn path() -> PathBuf {
        suite_dir().join("known_differences.txt")
    }

    fn load() -> KnownDifferences {
        let path = Self::path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, reason) = line.split_once(" #").unwrap_or((line, ""));
            let (id, reason) = (id.trim(), reason.trim());
            assert!(
                !reason.is_empty(),
                "{}:{}: `{id}` has no reason (write `<test id>  # <why it differs>`)",
                path.display(),
                i + 1
            );
            entries.push((id.to_string(), reason.to_string()));
        }
        KnownDifferences { entries }
    }

    /// The reason `id` is listed for, if it is.
    fn reason(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => id == pattern,
            })
            .map(|(_, reason)| reason.as_str())
    }

    /// The entries that matched none of `documented`.
    fn unused(&self, documented: &[String]) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(pattern, _)| {
                !documented.iter().any(|id| match pattern.strip_suffix('*') {
                    Some(prefix) => id.starts_with(prefix),
                    None => id == pattern,
                })
            })
            .map(|(pattern, _)| pattern.clone())
            .collect()
    }
}

struct Comparison {
    /// Passed straight at MariaDB, not through ShardGate, not documented.
    differing: Vec<String>,
    /// As `differing`, but listed in the known differences.
    documented: Vec<String>,
    /// Passed through ShardGate only.
    proxy_only: Vec<String>,
}

fn compare(direct: &SuiteRun, proxied: &SuiteRun, known: &KnownDifferences) -> Comparison {
    let passed = |run: &SuiteRun, id: &str| {
        run.tests
            .get(id)
            .is_some_and(|t| t.outcome == "passed" || t.outcome == "xpassed")
    };
    let mut differing = Vec::new();
    let mut documented = Vec::new();
    for id in direct.tests.keys() {
        if passed(direct, id) && !passed(proxied, id) {
            if known.reason(id).is_some() {
                documented.push(id.clone());
            } else {
                differing.push(id.clone());
            }
        }
    }
    let proxy_only = proxied
        .tests
        .keys()
        .filter(|id| passed(proxied, id) && !passed(direct, id))
        .cloned()
        .collect();
    Comparison {
        differing,
        documented,
        proxy_only,
    }
}

impl Comparison {
    /// The differing tests grouped by the first line of their failure
    /// through ShardGate: the group's first lines, then each test with its
    /// outcome and the next line of its message (often the SQL).
    fn describe(&self, direct: &SuiteRun, proxied: &SuiteRun) -> String {
        let missing = Outcome {
            outcome: "missing".into(),
            message: "(not run through ShardGate)".into(),
        };
        let mut groups: BTreeMap<String, Vec<(&String, &Outcome)>> = BTreeMap::new();
        for id in &self.differing {
            let outcome = proxied.tests.get(id).unwrap_or(&missing);
            let first = outcome.message.lines().next().unwrap_or("").to_string();
            groups.entry(first).or_default().push((id, outcome));
        }
        let mut by_size: Vec<_> = groups.into_iter().collect();
        by_size.sort_by_key(|(_, tests)| std::cmp::Reverse(tests.len()));
        let mut out = String::new();
        for (first, tests) in &by_size {
            let _ = writeln!(out, "\n{} tests: {}", tests.len(), clip(first, 300));
            for (id, outcome) in tests {
                let next = outcome
                    .message
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = writeln!(out, "  {id} [{}] {}", outcome.outcome, clip(&next, 200));
            }
        }
        let direct_failures: BTreeSet<&String> = direct
            .tests
            .iter()
            .filter(|(_, t)| t.outcome == "failed" || t.outcome == "error")
            .map(|(id, _)| id)
            .collect();
        if !direct_failures.is_empty() {
            let _ = writeln!(
                out,
                "\n(not compared) {} tests fail straight at MariaDB too; see {}",
                direct_failures.len(),
                direct.log.display()
            );
        }
        out
    }
}

/// At most `width` characters of `s`.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(width).collect();
        cut.push('…');
        cut
    }
}
