//! A Django program (`drivers/django/`: Django 5.2's ORM on its MySQL
//! backend with mysqlclient, default settings) run twice — against one
//! plain MariaDB database (`django_ref` on ds0's server, 127.0.0.1:13306)
//! and through ShardGate on `examples/wework.toml` as shipped (ds0..ds3 with
//! their replicas, read/write splitting on, only the listen addresses
//! replaced) — and the two transcripts must be equal.
//!
//! The program runs Django's `migrate` first, which creates its tables:
//! through ShardGate the sharded `users` and `message_records` by DDL fanned
//! out to every physical table, Django's own tables and the unsharded
//! `sgapp_tenant` on the default data source. Then models over those tables:
//! creates with and without keys (ShardGate's snowflake keys against
//! MariaDB's AUTO_INCREMENT; the program prints generated keys as `gen:N`),
//! `bulk_create`, queryset `update()`/`delete()` over several nodes,
//! aggregates and `annotate` + `values` group by, ordering and slicing,
//! `transaction.atomic` (commit, rollback by exception, nested = savepoints),
//! `select_for_update`, `get_or_create`, each on a connection with history
//! and on a new one. After the main part every physical row of `users` and
//! `message_records` is checked against the rules; then a second part runs
//! Django's `flush` (TRUNCATE of every table).
//!
//! Before each run the program's tables are dropped (the reference database
//! recreated; through ShardGate, every physical table of the two sharded
//! tables and Django's tables on ds0, directly); after the run through
//! ShardGate they are dropped again. The physical tables are those of the
//! seed's config, which the sharding tests load too: this test has the
//! sandbox to itself ([`sandbox::exclusive`]), and the sharding harness
//! loads its tables anew after it.
//!
//! Artifacts: `artifacts/django.{reference,proxy}.txt` (the transcripts)
//! and `artifacts/django.{reference,proxy}.{main,flush}.sql.jsonl` (per
//! step: the SQL Django sent, the statements that failed, the full error
//! message, the time taken). On a difference the test
//! prints, per differing step, both results, ShardGate's error message and
//! the statement that failed.
//!
//! Needs Django and mysqlclient in the repository's `.venv` (as
//! `scripts/install-deps.sh` installs them), or the Python named by
//! `SHARDGATE_IT_DJANGO_PYTHON`. Skipped (with a `SKIPPED` line) when the
//! sandbox is not running or Django is missing, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use serde_json::Value;
use shardgate_integration_tests::sharding::{misplaced_rows, read_physical_tables};
use shardgate_integration_tests::{
    crate_dir, data_source_endpoint, direct_endpoint, first_difference, run_command, sandbox,
    sandbox_ready, say, skip, start_proxy, Config, Endpoint, SEED_CONFIG,
};
use shardgate_rules::ShardingRules;
use sqlx::Row;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

const TEST: &str = "django_orm_through_shardgate_matches_plain_mariadb";
/// The plain reference database, on ds0's server.
const REF_DB: &str = "django_ref";
/// The sharded tables the program's models map onto.
const SHARDED: [&str; 2] = ["users", "message_records"];
/// The unsharded tables `migrate` creates (on the default data source).
const UNSHARDED: [&str; 3] = ["django_migrations", "django_content_type", "sgapp_tenant"];
/// Fewer steps than this in the reference transcript: the program stopped early.
const MIN_STEPS: usize = 100;
const DONE: &str = "{\"step\": \"done\"}";
const FLUSH_DONE: &str = "{\"step\": \"flush.done\"}";

/// examples/wework.toml as shipped, on ephemeral loopback ports.
fn config() -> Config {
    let mut cfg = Config::from_toml_str(SEED_CONFIG).expect("examples/wework.toml loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

fn python() -> PathBuf {
    match std::env::var("SHARDGATE_IT_DJANGO_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate_dir()
            .parent()
            .expect("the repository")
            .join(".venv/bin/python"),
    }
}

/// Django's and mysqlclient's versions, or why they cannot be imported.
fn django_versions(python: &Path) -> Result<String, String> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import django, MySQLdb; print('Django', django.get_version(), 'mysqlclient', '.'.join(map(str, MySQLdb.version_info[:3])))",
        ])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{} cannot import django and MySQLdb: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn execute(ep: &Endpoint, sql: &str) -> Result<(), String> {
    let mut conn = ep
        .connect()
        .await
        .map_err(|e| format!("connect to {}/{}: {e}", ep.addr(), ep.database))?;
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(|e| format!("{}/{}: {sql}: {e}", ep.addr(), ep.database))
}

/// Drops, directly on each primary, every physical table of the sharded
/// tables (and their logical names), and Django's tables on the default
/// data source.
async fn drop_proxied_tables(cfg: &Config, rules: &ShardingRules) -> Result<(), String> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in SHARDED {
        for node in rules.nodes(table) {
            tables.entry(node.data_source).or_default().push(node.table);
        }
    }
    for ds in cfg.data_sources.keys() {
        let list = tables.entry(ds.clone()).or_default();
        list.extend(SHARDED.iter().map(|t| t.to_string()));
        if *ds == cfg.server.default_data_source {
            list.extend(UNSHARDED.iter().map(|t| t.to_string()));
        }
    }
    for (ds, list) in tables {
        let ep = data_source_endpoint(cfg, &ds).expect("a configured data source");
        let names: Vec<String> = list.iter().map(|t| format!("`{t}`")).collect();
        execute(&ep, &format!("DROP TABLE IF EXISTS {}", names.join(", "))).await?;
    }
    Ok(())
}

/// Runs one part of the program against `ep`; its stdout.
async fn run_program(python: &Path, ep: &Endpoint, side: &str, part: &str) -> String {
    let script = crate_dir().join("drivers/django/run.py");
    let detail = crate_dir()
        .join("artifacts")
        .join(format!("django.{side}.{part}.sql.jsonl"));
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script)
        .args(ep.args())
        .arg(part)
        .env("SG_DJANGO_DETAIL", &detail)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8");
    let what = format!(
        "the Django program ({part}) against {}/{}",
        ep.addr(),
        ep.database
    );
    run_command(cmd, &what)
        .await
        .unwrap_or_else(|e| panic!("{TEST}: {e}"))
}

/// Where each row of the sharded tables is, checked against the rules, and
/// rows the program did not write (its tenants are all `dj-*`).
async fn placement(cfg: &Config, rules: &ShardingRules) -> Vec<String> {
    let mut problems = Vec::new();
    for table in SHARDED {
        let (tables, found) = read_physical_tables(cfg, rules, table).await;
        problems.extend(found);
        problems.extend(misplaced_rows(rules, table, &tables));
        let foreign: usize = tables
            .iter()
            .flat_map(|physical| &physical.rows)
            .filter(|row| {
                let tenant: Option<String> = row.try_get("tenant_id").ok().flatten();
                !tenant.is_some_and(|t| t.starts_with("dj-"))
            })
            .count();
        if foreign > 0 {
            problems.push(format!(
                "{foreign} row(s) of {table} the program did not write (no dj-* tenant): \
                 did another test write to the seed's tables during this one?"
            ));
        }
    }
    problems
}

/// The step's line of a detail file (`sql` and `error`), by step name.
fn details(side: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for part in ["main", "flush"] {
        let path = crate_dir()
            .join("artifacts")
            .join(format!("django.{side}.{part}.sql.jsonl"));
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if let Some(step) = v.get("step").and_then(Value::as_str) {
                    out.insert(step.to_string(), v.clone());
                }
            }
        }
    }
    out
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(width).collect::<String>())
    }
}

/// Step by step (the program prints one line a step, in a fixed order):
/// both lines from their first difference, and ShardGate's error message
/// and the statement it failed on.
fn step_diff(reference: &str, proxied: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (reference.lines().collect(), proxied.lines().collect());
    let proxy_details = details("proxy");
    let step_of = |line: Option<&&str>| {
        line.and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v.get("step").and_then(Value::as_str).map(str::to_string))
    };
    let mut differing = Vec::new();
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(""),
            b.get(i).copied().unwrap_or(""),
        );
        if x == y {
            continue;
        }
        let step = step_of(a.get(i))
            .or_else(|| step_of(b.get(i)))
            .unwrap_or_else(|| format!("line {}", i + 1));
        let at = first_difference(x, y);
        let _ = writeln!(out, "- {step}");
        let _ = writeln!(
            out,
            "    mariadb:   {}",
            shardgate_integration_tests::clip(x, at, 220)
        );
        let _ = writeln!(
            out,
            "    shardgate: {}",
            shardgate_integration_tests::clip(y, at, 220)
        );
        if let Some(detail) = proxy_details.get(&step) {
            let error = detail.get("error").and_then(Value::as_str);
            if let Some(err) = error {
                let _ = writeln!(out, "    shardgate's error: {}", clip(err, 300));
            }
            // the statement that failed (also one the program caught), else
            // the last one of a step that failed
            let failed = detail
                .get("failed")
                .and_then(Value::as_array)
                .and_then(|f| f.first())
                .map(|sql| ("failed statement", sql))
                .or_else(|| {
                    error?;
                    let sql = detail.get("sql").and_then(Value::as_array)?;
                    sql.last().map(|sql| ("last statement", sql))
                });
            if let Some((label, sql)) = failed {
                let sql = sql.as_str().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {label}: {}",
                    clip(&sql.split_whitespace().collect::<Vec<_>>().join(" "), 300)
                );
            }
        }
        differing.push(step);
    }
    format!(
        "{} of {} steps differ\n{out}",
        differing.len(),
        a.len().max(b.len())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_orm_through_shardgate_matches_plain_mariadb() {
    let _sandbox = sandbox::exclusive().await;
    let cfg = config();
    if !sandbox_ready(&cfg, TEST) {
        return;
    }
    let python = python();
    let versions = match django_versions(&python) {
        Ok(v) => v,
        Err(e) => {
            skip(
                TEST,
                &format!("{e} (scripts/install-deps.sh installs them in .venv)"),
            );
            return;
        }
    };
    let started = Instant::now();
    let rules = ShardingRules::new(&cfg).expect("the seed's rules build");
    let artifacts = crate_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("integration-tests/artifacts");

    // (a) one plain database
    let server = direct_endpoint(&cfg);
    for sql in [
        format!("DROP DATABASE IF EXISTS {REF_DB}"),
        format!("CREATE DATABASE {REF_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
    ] {
        execute(&server, &sql)
            .await
            .unwrap_or_else(|e| panic!("{TEST}: {e}"));
    }
    let reference_ep = server.with_database(REF_DB);
    let mut reference = run_program(&python, &reference_ep, "reference", "main").await;
    reference += &run_program(&python, &reference_ep, "reference", "flush").await;
    let reference_time = started.elapsed();

    // (b) through ShardGate
    drop_proxied_tables(&cfg, &rules)
        .await
        .unwrap_or_else(|e| panic!("{TEST}: {e}"));
    let proxy = start_proxy(cfg.clone()).await;
    let proxy_started = Instant::now();
    let mut proxied = run_program(&python, &proxy.endpoint(), "proxy", "main").await;
    let main_time = proxy_started.elapsed();
    let misplaced = placement(&cfg, &rules).await;
    let placement_time = proxy_started.elapsed() - main_time;
    proxied += &run_program(&python, &proxy.endpoint(), "proxy", "flush").await;
    let proxy_time = proxy_started.elapsed();
    drop(proxy);
    drop_proxied_tables(&cfg, &rules)
        .await
        .unwrap_or_else(|e| panic!("{TEST}: {e}"));

    let _ = std::fs::write(artifacts.join("django.reference.txt"), &reference);
    let _ = std::fs::write(artifacts.join("django.proxy.txt"), &proxied);
    say(&format!(
        "{TEST}: {versions}; reference run {reference_time:.1?}, through ShardGate {proxy_time:.1?} \
         (main part {main_time:.1?}, placement check {placement_time:.1?}), {:.1?} in all; \
         transcripts in {}/django.{{reference,proxy}}.txt",
        started.elapsed(),
        artifacts.display()
    ));

    let steps = reference.lines().count();
    assert!(
        steps >= MIN_STEPS
            && reference.lines().any(|l| l == DONE)
            && reference.lines().last() == Some(FLUSH_DONE),
        "{TEST}: incomplete transcript against {REF_DB}: {steps} lines (want >= {MIN_STEPS}) \
         or no done markers:\n{}",
        reference
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut failures = Vec::new();
    if reference != proxied {
        failures.push(format!(
            "the transcript through ShardGate differs from plain MariaDB ({REF_DB}); \
             transcripts and SQL in {}/django.*\n{}",
            artifacts.display(),
            step_diff(&reference, &proxied)
        ));
    }
    if !misplaced.is_empty() {
        failures.push(format!(
            "placement after the main part:\n{}",
            misplaced.join("\n")
        ));
    }
    assert!(failures.is_empty(), "{TEST}: {}", failures.join("\n"));
}
