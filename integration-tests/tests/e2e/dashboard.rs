//! The admin dashboard (`GET /` of the admin listener) in headless Chromium.
//!
//! ShardGate runs in-process on the seed's topology plus a small sharded
//! table of this test's own (`it_dashboard`, on ds0..ds3, so that no other
//! test's rows are touched). `drivers/browser/dashboard.js` (playwright-core
//! driving Debian's `/usr/bin/chromium`) opens the page and reports what it
//! shows; the test checks the four primaries and their replicas are there,
//! then puts load on the proxy's MySQL port (INSERTs and point SELECTs on
//! `it_dashboard`, `SELECT 1`) and checks that the figures follow:
//! statements/s above zero, the total grown, a p99 latency, the heat strip
//! lit for `it_dashboard` on every node, and no page error or request
//! leaving the proxy (the page must work offline).
//!
//! Artifacts: `integration-tests/artifacts/dashboard.png` (full-page
//! screenshot taken under load) and `dashboard.driver.txt` (the driver's
//! reports). Skipped (with a `SKIPPED` line) when the sandbox, Chromium,
//! node or playwright-core is missing, unless `SHARDGATE_REQUIRE_SANDBOX=1`,
//! where that fails the test.

use serde_json::Value;
use shardgate_integration_tests::fixtures::table_section;
use shardgate_integration_tests::{
    crate_dir, db_error, sandbox, sandbox_ready, say, skip, start_proxy, Config, Endpoint,
    SEED_CONFIG,
};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const TEST: &str = "dashboard";

/// How long the browser may take for everything (its own limits are lower).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(150);
/// The load's bounds: it stops when the driver is done, or at these.
const LOAD_MAX: Duration = Duration::from_secs(90);
const LOAD_CONNECTIONS: i64 = 4;
const LOAD_ROUNDS: i64 = 3000;
/// Rows each load connection inserts before it only reads.
const LOAD_ROWS: i64 = 100;

/// The seed config plus this test's own sharded table, `it_dashboard`: ids
/// spread over ds0..ds3 by `id % 4`.
fn config() -> Config {
    let text = format!(
        "{SEED_CONFIG}{}",
        table_section("it_dashboard", "it_dashboard")
    );
    let mut cfg = Config::from_toml_str(&text).expect("the dashboard test config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

fn browser_dir() -> PathBuf {
    crate_dir().join("drivers").join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("SHARDGATE_IT_CHROMIUM")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser driver needs; the error says what is missing and how
/// to install it.
fn browser_ready() -> Result<(), String> {
    let chromium = chromium();
    if !chromium.is_file() {
        return Err(format!(
            "{} is missing (apt-get install -y chromium, or set SHARDGATE_IT_CHROMIUM)",
            chromium.display()
        ));
    }
    let resolves = std::process::Command::new("node")
        .args(["-e", "require.resolve('playwright-core')"])
        .current_dir(browser_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match resolves {
        Err(e) => Err(format!(
            "node cannot run ({e}): apt-get install -y nodejs npm"
        )),
        Ok(s) if !s.success() => Err(format!(
            "playwright-core is not installed in {} (scripts/install-deps.sh, or npm ci there)",
            browser_dir().display()
        )),
        Ok(_) => Ok(()),
    }
}

/// A line `<word> <json>` of the driver.
fn report(line: &str, word: &str) -> Option<Value> {
    let json = line.strip_prefix(word)?.strip_prefix(' ')?;
    serde_json::from_str(json).ok()
}

fn figure(report: &Value, name: &str) -> Option<f64> {
    report["figures"][name].as_f64()
}

/// Load statements that failed, and the first failure.
#[derive(Default)]
struct LoadErrors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl LoadErrors {
    fn record(&self, what: &str, err: &sqlx::Error) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| {
            let detail = db_error(err).map_or_else(|| err.to_string(), |e| format!("{e:?}"));
            format!("{what}: {detail}")
        });
    }
}

/// One load connection: inserts its rows, then point reads and `SELECT 1`
/// until told to stop (or its bounds are reached). Returns its statements.
async fn load(ep: Endpoint, worker: i64, stop: Arc<AtomicBool>, errors: Arc<LoadErrors>) -> u64 {
    let mut conn = match ep.connect().await {
        Ok(c) => c,
        Err(e) => {
            errors.record("connect", &e);
            return 0;
        }
    };
    let started = Instant::now();
    let base = 1_000_000 * (worker + 1);
    let mut sent = 0;
    for round in 0..LOAD_ROUNDS {
        if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_MAX {
            break;
        }
        if round < LOAD_ROWS {
            let insert = sqlx::query("INSERT INTO it_dashboard (id, n) VALUES (?, ?)")
                .bind(base + round)
                .bind(round)
                .execute(&mut conn)
                .await;
            if let Err(e) = insert {
                errors.record("INSERT INTO it_dashboard", &e);
            }
            sent += 1;
        }
        // Reads skewed 4:3:2:1 over ds0..ds3 (`id % 4`), so the heat strip
        // shows a gradient rather than one flat colour.
        let node = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3][(round % 10) as usize];
        let id = base + 4 * (round % (LOAD_ROWS / 4)) + node;
        if let Err(e) = sqlx::query("SELECT id, n FROM it_dashboard WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut conn)
            .await
        {
            errors.record("SELECT ... FROM it_dashboard", &e);
        }
        if let Err(e) = sqlx::query("SELECT 1").fetch_one(&mut conn).await {
            errors.record("SELECT 1", &e);
        }
        sent += 2;
        // Paced, so the load spans several of the page's 2 s refreshes.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    sent
}

/// Runs one statement through the proxy; the test fails when it does.
async fn exec(ep: &Endpoint, sql: &str) {
    let mut conn = ep.connect().await.expect("connect to shardgate");
    if let Err(e) = sqlx::raw_sql(sql).execute(&mut conn).await {
        panic!("{TEST}: {sql}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_pools_and_follows_load() {
    let _sandbox = sandbox::shared().await;
    let cfg = config();
    if !sandbox_ready(&cfg, TEST) {
        return;
    }
    if let Err(missing) = browser_ready() {
        skip(TEST, &missing);
        return;
    }
    let proxy = start_proxy(cfg.clone()).await;
    let ep = proxy.endpoint();
    exec(&ep, "DROP TABLE IF EXISTS it_dashboard").await;
    exec(
        &ep,
        "CREATE TABLE it_dashboard (id BIGINT PRIMARY KEY, n INT)",
    )
    .await;

    let artifacts = crate_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("create integration-tests/artifacts");
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}/", proxy.admin_addr);

    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir().join("dashboard.js"))
        .arg(&url)
        .arg(&screenshot)
        .current_dir(browser_dir())
        .env("SHARDGATE_IT_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("start node drivers/browser/dashboard.js");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(LoadErrors::default());
    let mut transcript = String::new();
    let mut ready = None;
    let mut last = None;
    let mut load_tasks = Vec::new();
    let deadline = tokio::time::Instant::now() + DRIVER_TIMEOUT;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "{TEST}: the browser driver did not finish in {DRIVER_TIMEOUT:?}\n{transcript}"
                );
            }
        };
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some(r) = report(&line, "ready") {
            // The page is up with its first rates: now the load.
            for worker in 0..LOAD_CONNECTIONS {
                load_tasks.push(tokio::spawn(load(
                    ep.clone(),
                    worker,
                    stop.clone(),
                    errors.clone(),
                )));
            }
            ready = Some(r);
        } else if let Some(r) = report(&line, "done").or_else(|| report(&line, "timeout")) {
            last = Some((line.starts_with("done"), r));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut statements = 0;
    for task in load_tasks {
        statements += task.await.unwrap_or(0);
    }
    let status = child.wait().await.expect("wait for the browser driver");
    let stderr = stderr.await.unwrap_or_default();
    let _ = std::fs::write(
        artifacts.join("dashboard.driver.txt"),
        format!("{transcript}--- stderr ---\n{stderr}"),
    );
    exec(&ep, "DROP TABLE IF EXISTS it_dashboard").await;
    say(&format!(
        "{TEST}: {statements} load statements; screenshot: {}",
        screenshot.display()
    ));

    let Some(ready) = ready else {
        panic!(
            "{TEST}: the page never became ready ({status})\n{transcript}--- stderr ---\n{stderr}"
        );
    };
    let Some((changed, after)) = last else {
        panic!("{TEST}: the driver stopped early ({status})\n{transcript}--- stderr ---\n{stderr}");
    };

    // The four primaries, each with its replicas, in their own cards.
    let shown: Vec<(String, String)> = ready["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["visible"].as_bool() == Some(true))
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("role"))
        })
        .collect();
    let cards: Vec<&str> = ready["data_sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (ds, source) in &cfg.data_sources {
        assert!(
            cards.contains(&ds.as_str()),
            "{TEST}: no card for {ds}: {cards:?}"
        );
        let primary = (ds.clone(), "primary".to_string());
        assert!(
            shown.contains(&primary),
            "{TEST}: {ds}'s primary is not shown: {shown:?}"
        );
        for i in 1..=source.replicas.len() {
            let replica = (format!("{ds}.replica{i}"), "replica".to_string());
            assert!(
                shown.contains(&replica),
                "{TEST}: {ds}.replica{i} is not shown: {shown:?}"
            );
        }
    }
    assert_eq!(
        cards,
        ["ds0", "ds1", "ds2", "ds3"],
        "{TEST}: the seed's data sources"
    );
    assert_eq!(
        shown.len(),
        12,
        "{TEST}: 4 primaries and 8 replicas: {shown:?}"
    );
    for pool in ready["pools"].as_array().into_iter().flatten() {
        if pool["role"] == "replica" {
            let lag = pool["lag"].as_str().unwrap_or_default();
            assert!(
                lag.starts_with("lag "),
                "{TEST}: a replica's lag column: {pool}"
            );
        }
    }

    // The figures follow the load.
    let load_errors = errors.count.load(Ordering::Relaxed);
    assert_eq!(
        load_errors,
        0,
        "{TEST}: {load_errors} load statements failed; the first: {:?}",
        errors.first.lock().unwrap_or_else(|e| e.into_inner())
    );
    assert!(
        changed,
        "{TEST}: the figures did not change under load\nbefore: {}\nafter: {}",
        ready["figures"], after["figures"]
    );
    let (rate_before, rate_after) = (figure(&ready, "rate"), figure(&after, "rate"));
    let (total_before, total_after) = (figure(&ready, "total"), figure(&after, "total"));
    say(&format!(
        "{TEST}: statements/s {rate_before:?} -> {rate_after:?} ({}), total {total_before:?} -> {total_after:?}, p99 {}",
        after["figures"]["rate_text"], after["figures"]["p99_text"]
    ));
    assert!(rate_after.is_some_and(|r| r > 0.0) && rate_after != rate_before);
    assert!(total_after > total_before);
    assert!(figure(&after, "p99").is_some_and(|p| p > 0.0));
    let lit: Vec<&str> = after["figures"]["heat"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["table"] == "it_dashboard" && c["total"].as_f64() > Some(0.0))
        .filter_map(|c| c["ds"].as_str())
        .collect();
    assert_eq!(
        lit,
        ["ds0", "ds1", "ds2", "ds3"],
        "{TEST}: it_dashboard's statements on every node in the heat strip: {}",
        after["figures"]["heat"]
    );
    let page_errors = after["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        page_errors.is_empty(),
        "{TEST}: the page reported {page_errors:?}"
    );
    assert!(
        status.success(),
        "{TEST}: the browser driver exited with {status}\n{stderr}"
    );
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "{TEST}: no screenshot at {}",
        screenshot.display()
    );
}
