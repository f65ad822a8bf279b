//! Connection pools against the sandbox (issue 5, "Pools"): no deadlock
//! when scatter queries and transactions race tiny pools, the exhaustion
//! error and a session that survives it, resizing under load (by hand and
//! adaptively) without a failed query, and an alert (log, metric, webhook
//! POST) when a replica stops answering.
//!
//! Each test shards its own table over ds0..ds3 (created and dropped
//! through the proxy). The tests have the sandbox to themselves
//! ([`sandbox::exclusive`]): their pools are tiny, their bounds are
//! timings, and one freezes a replica.
//!
//! The fault tests of issue 15 ("Proof") put a fault on ds2's primary under
//! a write load: stopped, killed, a slow then partitioned link, and a link
//! losing packets ([`loss`]); and on one of its replicas under a read load:
//! a partitioned link, and its server stopped. Partitions and loss drop
//! real packets, with nftables in a network namespace the link crosses
//! (`fault_link::lossy`; root, `ip` and `nft`); latency is added by the
//! link's relay, this kernel having no `tc netem`.

mod loss;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_integration_tests::fault_link::lossy::{self, LossyLink};
use shardgate_integration_tests::fault_link::Fault;
use shardgate_integration_tests::fixtures::{
    admin_request as http, config_with_table as config, connect, drop_table, pool as pool_state,
    start_with_table,
};
use shardgate_integration_tests::{
    data_source_endpoint, db_error, sandbox, sandbox_ready, skip, start_proxy, Config, RunningProxy,
};
use sqlx::{Executor, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::RwLockWriteGuard;

/// The sandbox to itself, then ShardGate on `cfg` with `table` (rows id =
/// v = 0..40, as `fixtures::start_with_table` makes it); None when the
/// sandbox is not running (the test is skipped).
async fn start(
    test: &str,
    cfg: Config,
    table: &str,
) -> Option<(Arc<RunningProxy>, RwLockWriteGuard<'static, ()>)> {
    let sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    Some((Arc::new(start_with_table(cfg, table).await), sandbox))
}

/// The state of pool `name` once `settled` holds of it, or after 5 s.
async fn pool_state_when(
    proxy: &RunningProxy,
    name: &str,
    settled: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Generous: on a loaded 2-core machine (CI) a health check every 300 ms
    // can be late by seconds; a state that never comes still fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = pool_state(proxy, name).await;
        if settled(&state) || std::time::Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scatter_queries_racing_a_tiny_pool_all_complete() {
    const TABLE: &str = "pool_scatter";
    let cfg = config(TABLE, |p| {
        p.max_size = 2;
        p.adaptive = false;
        p.min_idle = Some(0);
    });
    let Some((proxy, _sandbox)) = start(
        "scatter_queries_racing_a_tiny_pool_all_complete",
        cfg,
        TABLE,
    )
    .await
    else {
        return;
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&proxy).await;
            for _ in 0..5 {
                let row = conn
                    .fetch_one(format!("SELECT COUNT(*), SUM(v) FROM {TABLE}").as_str())
                    .await
                    .expect("a scatter query over 4 nodes completes");
                let (count, sum): (i64, rust_decimal::Decimal) = (row.get(0), row.get(1));
                assert_eq!((count, sum), (40, rust_decimal::Decimal::from(780)));
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    eprintln!(
        "32 sessions x 5 scatter queries over pools of 2: {:?}",
        started.elapsed()
    );
    for ds in ["ds0", "ds1", "ds2", "ds3"] {
        let state = pool_state(&proxy, ds).await;
        assert_eq!(state["max"], 2, "{state}");
        assert_eq!(state["timeouts"], 0, "{state}");
    }
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_waiting_on_each_other_get_a_deadlock_error_at_once() {
    const TABLE: &str = "pool_deadlock";
    let cfg = config(TABLE, |p| {
        p.max_size = 1;
        p.adaptive = false;
        p.min_idle = Some(0);
        p.acquire_timeout_ms = 30_000;
    });
    let Some((proxy, _sandbox)) = start("transactions_waiting_on_each_other", cfg, TABLE).await
    else {
        return;
    };
    // id 0 lives on ds0, id 1 on ds1 (database = id % 4).
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    a.execute("BEGIN").await.expect("a begins");
    b.execute("BEGIN").await.expect("b begins");
    a.execute(format!("SELECT v FROM {TABLE} WHERE id = 0").as_str())
        .await
        .expect("a holds ds0");
    b.execute(format!("SELECT v FROM {TABLE} WHERE id = 1").as_str())
        .await
        .expect("b holds ds1");
    // a waits for ds1 (held by b) ...
    let a_waits = tokio::spawn(async move {
        let row = a
            .fetch_one(format!("SELECT v FROM {TABLE} WHERE id = 1").as_str())
            .await
            .expect("a gets ds1 once b's transaction is rolled back");
        let v: i32 = row.get(0);
        a.execute("COMMIT").await.expect("a commits");
        v
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ... and b's wait for ds0 would close the cycle.
    let started = Instant::now();
    let err = b
        .execute(format!("SELECT v FROM {TABLE} WHERE id = 0").as_str())
        .await
        .expect_err("b would wait for ever");
    let (code, state, message) = db_error(&err).expect("a server error");
    assert_eq!(code, 1213, "{message}");
    assert_eq!(state.as_deref(), Some("40001"));
    assert!(
        message.contains("Deadlock") && message.contains("ds0"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "detected at once, not after acquire_timeout"
    );
    assert_eq!(a_waits.await.expect("a"), 1);
    // b's transaction was rolled back; the session goes on.
    b.execute("COMMIT").await.expect("b's session survives");
    let row = b
        .fetch_one(format!("SELECT COUNT(*) FROM {TABLE}").as_str())
        .await
        .expect("b reads again");
    assert_eq!(row.get::<i64, _>(0), 40);
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_transactions_over_all_nodes_finish_with_small_pools() {
    const TABLE: &str = "pool_txn_storm";
    let cfg = config(TABLE, |p| {
        p.max_size = 3;
        p.adaptive = false;
        p.min_idle = Some(0);
        p.acquire_timeout_ms = 30_000;
    });
    let Some((proxy, _sandbox)) = start("many_transactions_over_all_nodes", cfg, TABLE).await
    else {
        return;
    };
    let deadlocks = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for session in 0..16u64 {
        let proxy = proxy.clone();
        let deadlocks = deadlocks.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&proxy).await;
            let mut done = 0;
            while done < 5 {
                // Each transaction touches the nodes in its own order, then
                // scans all of them: the pattern of sysbench oltp_read_only.
                let run = async {
                    conn.execute("BEGIN").await?;
                    for k in 0..4u64 {
                        let id = (session + k * 3 + done) % 40;
                        conn.execute(format!("SELECT v FROM {TABLE} WHERE id = {id}").as_str())
                            .await?;
                    }
                    conn.execute(format!("SELECT SUM(v) FROM {TABLE}").as_str())
                        .await?;
                    conn.execute("COMMIT").await?;
                    Ok::<(), sqlx::Error>(())
                };
                match run.await {
                    Ok(()) => done += 1,
                    Err(e) => {
                        let (code, _, message) = db_error(&e).unwrap_or((0, None, e.to_string()));
                        assert_eq!(code, 1213, "only deadlocks may fail: {message}");
                        deadlocks.fetch_add(1, Ordering::Relaxed);
                        let _ = conn.execute("ROLLBACK").await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    eprintln!(
        "16 sessions x 5 transactions over pools of 3: {:?}, {} deadlocks retried",
        started.elapsed(),
        deadlocks.load(Ordering::Relaxed)
    );
    for ds in ["ds0", "ds1", "ds2", "ds3"] {
        let state = pool_state(&proxy, ds).await;
        assert_eq!(state["timeouts"], 0, "{state}");
    }
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exhausted_pool_says_so_and_the_session_survives() {
    const TABLE: &str = "pool_exhaust";
    let cfg = config(TABLE, |p| {
        p.max_size = 1;
        p.adaptive = false;
        p.min_idle = Some(0);
        p.acquire_timeout_ms = 300;
    });
    let Some((proxy, _sandbox)) = start("an_exhausted_pool_says_so", cfg, TABLE).await else {
        return;
    };
    let mut holder = connect(&proxy).await;
    let mut other = connect(&proxy).await;
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute(format!("SELECT v FROM {TABLE} WHERE id = 2").as_str())
        .await
        .expect("holds ds2");
    let err = other
        .execute(format!("SELECT v FROM {TABLE} WHERE id = 2").as_str())
        .await
        .expect_err("ds2's only connection is taken");
    let (code, _, message) = db_error(&err).expect("server error");
    assert_eq!(code, 1040, "{message}");
    assert!(
        message.starts_with("pool for ds2 exhausted (1/1 in use, waited 0.3s)"),
        "{message}"
    );
    holder.execute("COMMIT").await.expect("commit");
    let row = other
        .fetch_one(format!("SELECT v FROM {TABLE} WHERE id = 2").as_str())
        .await
        .expect("the session that got 1040 goes on");
    assert_eq!(row.get::<i32, _>(0), 2);
    let metrics = http(&proxy, "GET", "/metrics", "").await.1;
    assert!(
        metrics.contains("shardgate_pool_events_total{event=\"timeout\",pool=\"ds2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shardgate_errors_total{type=\"pool_exhausted\"} 1"),
        "{metrics}"
    );
    drop_table(&proxy, TABLE).await;
}

/// Runs point selects from `sessions` sessions until `stop`; returns the
/// number of queries and failures.
fn point_select_load(
    proxy: &Arc<RunningProxy>,
    table: &'static str,
    sessions: u64,
    stride: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..sessions)
        .map(|s| {
            let proxy = proxy.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut conn = connect(&proxy).await;
                let (mut queries, mut failures) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    // stride 4 keeps every query on ds0 (database = id % 4).
                    let id = (s + queries) % (40 / stride) * stride;
                    // A short sleep on the server keeps connections busy,
                    // so that demand exceeds a small pool.
                    let sql = format!("SELECT v, SLEEP(0.01) FROM {table} WHERE id = {id}");
                    match conn.fetch_one(sql.as_str()).await {
                        Ok(row) => assert_eq!(row.get::<i32, _>(0) as u64, id),
                        Err(e) => failures.push(e.to_string()),
                    }
                    queries += 1;
                }
                (queries, failures)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resizing_under_load_fails_no_query() {
    const TABLE: &str = "pool_resize";
    let cfg = config(TABLE, |p| {
        p.max_size = 10;
        p.adaptive = false;
        p.min_idle = Some(0);
        p.acquire_timeout_ms = 10_000;
    });
    let Some((proxy, _sandbox)) = start("resizing_under_load_fails_no_query", cfg, TABLE).await
    else {
        return;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = point_select_load(&proxy, TABLE, 16, 1, stop.clone());
    for size in [2, 30, 1, 12] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, body) = http(
            &proxy,
            "POST",
            "/api/pools/ds1/resize",
            &format!("{{\"size\": {size}}}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let state = pool_state(&proxy, "ds1").await;
        assert_eq!(state["max"], size, "{state}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (queries, failures) = task.await.expect("load task");
        assert!(failures.is_empty(), "failed queries: {failures:?}");
        total += queries;
    }
    // A client has its last reply a moment before its session gives the
    // connection back.
    let state = pool_state_when(&proxy, "ds1", |s| s["active"] == 0).await;
    assert!(state["active"].as_u64() == Some(0), "{state}");
    assert!(state["size"].as_u64().unwrap_or(99) <= 12, "{state}");
    eprintln!("{total} queries while ds1 went 10 -> 2 -> 30 -> 1 -> 12: none failed");
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_sizing_follows_peak_demand() {
    const TABLE: &str = "pool_adaptive";
    let cfg = config(TABLE, |p| {
        p.max_size = 4;
        p.adaptive = true;
        p.min_size = 2;
        p.max_bound = 40;
        p.min_idle = Some(0);
        p.resize_interval_ms = 1_000;
        p.acquire_timeout_ms = 10_000;
    });
    let Some((proxy, _sandbox)) = start("adaptive_sizing_follows_peak_demand", cfg, TABLE).await
    else {
        return;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 24 sessions, all on ds0: a demand of 24 wants ceil(24 x 1.2) = 29.
    let load = point_select_load(&proxy, TABLE, 24, 4, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut grown = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        grown = pool_state(&proxy, "ds0").await["max"].as_u64().unwrap_or(0);
        if grown > 10 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let (_, failures) = task.await.expect("load task");
        assert!(failures.is_empty(), "failed queries: {failures:?}");
    }
    assert!(grown > 10, "ds0 grew from 4 under load to {grown}");
    // Idle: the next decisions shrink it back to min_size.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shrunk = grown;
    while Instant::now() < deadline && shrunk > 2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        shrunk = pool_state(&proxy, "ds0").await["max"].as_u64().unwrap_or(0);
    }
    assert_eq!(shrunk, 2, "ds0 shrank to min_size when idle");
    eprintln!("ds0: 4 -> {grown} under load -> {shrunk} idle");
    drop_table(&proxy, TABLE).await;
}

/// Stops a process with SIGSTOP and continues it when dropped, so that a
/// failing test never leaves the sandbox's server frozen.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Self {
        signal(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Accepts HTTP POSTs and forwards their bodies.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    if let Ok(json) = serde_json::from_str(body) {
                        let _ = tx.send(json).await;
                    }
                    return;
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_replica_raises_an_alert_with_a_webhook_post() {
    let _sandbox = sandbox::exclusive().await;
    let (url, mut posts) = webhook_receiver().await;
    let mut cfg = config("pool_alert_unused", |p| {
        p.health_check_interval_ms = 300;
        p.validation_timeout_ms = 700;
    });
    cfg.alerts.webhook = Some(url);
    if !sandbox_ready(&cfg, "a_stopped_replica_raises_an_alert") {
        return;
    }
    let replica = cfg.data_sources["ds3"].replicas[1].clone();
    let Some(pid) = shardgate_integration_tests::replication::Server::locate(replica.port).pid()
    else {
        panic!("no sandbox server found on port {}", replica.port);
    };
    let proxy = start_proxy(cfg).await;
    // Healthy first.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = pool_state(&proxy, "ds3.replica2").await;
        if state["last_health_check"]["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ds3.replica2 never healthy: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alert = {
        let _frozen = Frozen::new(pid);
        tokio::time::timeout(Duration::from_secs(10), posts.recv())
            .await
            .expect("an alert is posted within 10 s")
            .expect("receiver open")
    };
    assert_eq!(alert["alert"], "health_check_failed", "{alert}");
    assert_eq!(alert["data_source"], "ds3.replica2", "{alert}");
    let state = pool_state(&proxy, "ds3.replica2").await;
    assert_eq!(state["last_health_check"]["ok"], false, "{state}");
    let metrics = http(&proxy, "GET", "/metrics", "").await.1;
    assert!(
        metrics.contains(
            "shardgate_alerts_total{alert=\"health_check_failed\",pool=\"ds3.replica2\"} 1"
        ),
        "{metrics}"
    );
    let (_, alerts) = http(&proxy, "GET", "/api/alerts", "").await;
    assert!(alerts.contains("ds3.replica2"), "{alerts}");
    // Continued: the pool is healthy again (its broken connection replaced).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = pool_state(&proxy, "ds3.replica2").await;
        if state["last_health_check"]["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ds3.replica2 not healthy again: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_running_hot_raises_an_alert() {
    const TABLE: &str = "pool_hot";
    let (url, mut posts) = webhook_receiver().await;
    let mut cfg = config(TABLE, |p| {
        p.max_size = 2;
        p.adaptive = false;
        p.min_idle = Some(0);
    });
    cfg.alerts.webhook = Some(url);
    cfg.alerts.pool_usage_ratio = 0.9;
    cfg.alerts.pool_usage_sustain_ms = 1_500;
    let Some((proxy, _sandbox)) = start("a_pool_running_hot_raises_an_alert", cfg, TABLE).await
    else {
        return;
    };
    // Two transactions hold both of ds3's connections (ids 3 and 7 live there).
    let mut holders = Vec::new();
    for id in [3, 7] {
        let mut conn = connect(&proxy).await;
        conn.execute("BEGIN").await.expect("begin");
        conn.execute(format!("SELECT v FROM {TABLE} WHERE id = {id}").as_str())
            .await
            .expect("holds a ds3 connection");
        holders.push(conn);
    }
    let alert = loop {
        let post = tokio::time::timeout(Duration::from_secs(10), posts.recv())
            .await
            .expect("an alert within 10 s")
            .expect("receiver open");
        if post["alert"] == "pool_saturated" {
            break post;
        }
    };
    assert_eq!(alert["data_source"], "ds3", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 connections")),
        "{alert}"
    );
    for mut conn in holders {
        conn.execute("COMMIT").await.expect("commit");
    }
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_idle_connections_are_replaced_not_handed_out() {
    const TABLE: &str = "pool_validate";
    let cfg = config(TABLE, |p| {
        p.adaptive = false;
        p.min_idle = Some(0);
        // Validate every connection taken from the idle list.
        p.validate_idle_ms = 0;
    });
    let Some((proxy, _sandbox)) = start("broken_idle_connections_are_replaced", cfg, TABLE).await
    else {
        return;
    };
    let mut conn = connect(&proxy).await;
    // Statements on ds1 (ids 1, 5, 9 ...); the backend threads that served
    // them go back to the pool's idle list.
    let mut threads = Vec::new();
    for id in [1, 5, 9] {
        let thread: u64 = conn
            .fetch_one(format!("SELECT CONNECTION_ID() FROM {TABLE} WHERE id = {id}").as_str())
            .await
            .expect("read")
            .get(0);
        threads.push(thread);
    }
    let before = pool_state(&proxy, "ds1").await["idle"]
        .as_u64()
        .unwrap_or(0);
    assert!(before >= 1, "ds1 has idle connections");
    // Kill them behind the proxy's back (only this proxy's: other tests
    // share the server).
    let direct = data_source_endpoint(&proxy.cfg, "ds1").expect("ds1 is configured");
    let mut admin = direct.connect().await.expect("ds1 directly");
    threads.sort_unstable();
    threads.dedup();
    for id in threads {
        admin
            .execute(format!("KILL {id}").as_str())
            .await
            .expect("kill");
    }
    // The next statements get validated, working connections.
    for id in [1, 5, 9, 13] {
        let row = conn
            .fetch_one(format!("SELECT v FROM {TABLE} WHERE id = {id}").as_str())
            .await
            .expect("a killed idle connection is never handed out");
        assert_eq!(row.get::<i32, _>(0) as i64, id);
    }
    let metrics = http(&proxy, "GET", "/metrics", "").await.1;
    assert!(
        metrics.contains("shardgate_pool_events_total{event=\"validation_failed\",pool=\"ds1\"}"),
        "{metrics}"
    );
    drop_table(&proxy, TABLE).await;
}

/// The shipped config (replicas on) with `table`, every server
/// health-checked every 300 ms within `validation_ms`.
fn fault_config(table: &str, validation_ms: u64) -> Config {
    let mut cfg = config(table, |p| {
        p.health_check_interval_ms = 300;
        p.validation_timeout_ms = validation_ms;
    });
    cfg.server.read_write_splitting = true;
    cfg
}

/// A server's address, to put a fault link in front of it.
fn address(url: &shardgate_rules::config::BackendUrl) -> std::net::SocketAddr {
    format!("{}:{}", url.host, url.port)
        .parse()
        .expect("a server's address")
}

/// When the fault began, and when it ended (None: still on).
type FaultWindow = Arc<std::sync::Mutex<Option<(Instant, Option<Instant>)>>>;

/// What one session of a write load saw.
#[derive(Default)]
struct Outcomes {
    acked: u64,
    /// Acknowledged writes whose answer was wrong: an UPDATE of one row by
    /// its key that did not report one row changed.
    wrong: u64,
    /// Writes acknowledged before the fault began, and while it was on.
    acked_before_fault: u64,
    acked_during_fault: u64,
    errors: u64,
    /// Errors that ended while the fault was on.
    errors_during_fault: u64,
    /// Errors before the fault began (latency alone must cause none).
    errors_before_fault: u64,
    first_error_after_fault: Option<Duration>,
}

/// Sessions each adding 1 to their own row (`id` = the session, on data
/// source id % 4) until stopped, through a fault on `faulty` (a data
/// source): every error must name it.
struct WriteLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    window: FaultWindow,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
}

/// What a write load found at the end.
struct LoadReport {
    failed: u64,
    wrong: u64,
    first_error: Option<Duration>,
    /// Writes to the faulty data source acknowledged before the fault
    /// and during it.
    acked_before_fault: u64,
    acked_during_fault: u64,
}

/// What shows that no session on the faulty data source hung through the
/// fault.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotHung {
    /// Each got an error during the fault (it was cut off or stopped).
    Errors,
    /// Each had writes acknowledged during the fault (it was degraded).
    Writes,
}

impl WriteLoad {
    async fn start(
        proxy: &Arc<RunningProxy>,
        table: &'static str,
        sessions: u64,
        faulty: &'static str,
    ) -> WriteLoad {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let window: FaultWindow = Arc::default();
        let mut tasks = Vec::new();
        for id in 0..sessions {
            let (proxy, stop, window) = (proxy.clone(), stop.clone(), window.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = connect(&proxy).await;
                let mut seen = Outcomes::default();
                let sql = format!("UPDATE {table} SET v = v + 1 WHERE id = {id}");
                while !stop.load(Ordering::Relaxed) {
                    match conn.execute(sql.as_str()).await {
                        Ok(done) => {
                            seen.acked += 1;
                            seen.wrong += u64::from(done.rows_affected() != 1);
                            match *window.lock().unwrap() {
                                None => seen.acked_before_fault += 1,
                                Some((_, None)) => seen.acked_during_fault += 1,
                                Some(_) => {}
                            }
                        }
                        Err(e) => {
                            seen.errors += 1;
                            let (code, _, message) =
                                db_error(&e).unwrap_or((0, None, e.to_string()));
                            assert!(
                                message.contains(faulty),
                                "session {id}: an error that does not name {faulty}: {code} {message}"
                            );
                            let fault = *window.lock().unwrap();
                            match fault {
                                Some((from, None)) => {
                                    seen.errors_during_fault += 1;
                                    seen.first_error_after_fault.get_or_insert(from.elapsed());
                                }
                                None => seen.errors_before_fault += 1,
                                Some(_) => {}
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                seen
            }));
        }
        WriteLoad {
            stop,
            window,
            tasks,
        }
    }

    fn fault_began(&self) -> Instant {
        let now = Instant::now();
        *self.window.lock().unwrap() = Some((now, None));
        now
    }

    fn fault_ended(&self) {
        if let Some(window) = self.window.lock().unwrap().as_mut() {
            window.1 = Some(Instant::now());
        }
    }

    /// Stops the sessions and checks the rows: every acknowledged write is
    /// there (one that failed may have run: the server may have read it
    /// from a connection the proxy had cut), no session on the `faulty_ds`
    /// (by id % 4) hung (as `not_hung` says), the others got no error.
    async fn finish(
        self,
        proxy: &RunningProxy,
        table: &str,
        faulty_ds: i64,
        not_hung: NotHung,
    ) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for task in self.tasks {
            outcomes.push(task.await.expect("a load session"));
        }
        let mut tx = connect(proxy).await;
        tx.execute("BEGIN").await.expect("begin");
        let sessions = outcomes.len();
        let rows = sqlx::query(&format!(
            "SELECT id, v FROM {table} WHERE id < {sessions} ORDER BY id"
        ))
        .fetch_all(&mut tx)
        .await
        .expect("the rows, from the primaries");
        tx.execute("COMMIT").await.expect("commit");
        let mut report = LoadReport {
            failed: 0,
            wrong: 0,
            first_error: None,
            acked_before_fault: 0,
            acked_during_fault: 0,
        };
        for (row, seen) in rows.iter().zip(&outcomes) {
            let id: i64 = row.get(0);
            let v: i64 = row.get(1);
            let applied = u64::try_from(v - id).expect("v only grows");
            report.failed += seen.errors;
            report.wrong += seen.wrong;
            assert_eq!(seen.wrong, 0, "session {id}: wrong answers");
            assert_eq!(
                seen.errors_before_fault, 0,
                "session {id} failed before the fault"
            );
            assert!(
                seen.acked <= applied && applied <= seen.acked + seen.errors,
                "row {id}: {applied} applied, {} acknowledged, {} failed",
                seen.acked,
                seen.errors
            );
            if id % 4 == faulty_ds {
                match not_hung {
                    NotHung::Errors => assert!(
                        seen.errors_during_fault > 0,
                        "session {id} got no error during the fault: it hung"
                    ),
                    NotHung::Writes => assert!(
                        seen.acked_during_fault > 0,
                        "session {id} had no write acknowledged during the fault: it hung"
                    ),
                }
                report.acked_before_fault += seen.acked_before_fault;
                report.acked_during_fault += seen.acked_during_fault;
                report.first_error = match (report.first_error, seen.first_error_after_fault) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else {
                assert_eq!(
                    seen.errors, 0,
                    "session {id} is not on the faulty data source"
                );
            }
        }
        report
    }
}

/// Until `write` succeeds (bounded), how long it took.
async fn until_it_writes(proxy: &RunningProxy, sql: &str) -> Duration {
    let since = Instant::now();
    let mut conn = connect(proxy).await;
    loop {
        let write = conn.execute(sql).await;
        if write.is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "no write 20 s after the fault ended: {write:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// While ds2 is marked down: a write there fails at once with 1429 naming
/// it, and writes to the other data sources go on.
async fn check_down_but_others_serve(proxy: &RunningProxy, table: &str) {
    let mut conn = connect(proxy).await;
    let err = conn
        .execute(format!("UPDATE {table} SET v = v WHERE id = 2").as_str())
        .await
        .expect_err("a write to ds2 while it is down");
    let (code, _, message) = db_error(&err).expect("a server error");
    assert_eq!(code, 1429, "{message}");
    assert!(message.contains("data source ds2 is down"), "{message}");
    let rows = conn
        .execute(format!("UPDATE {table} SET v = v WHERE id IN (0, 1, 3)").as_str())
        .await
        .expect("writes to ds0, ds1 and ds3 while ds2 is down");
    assert_eq!(rows.rows_affected(), 3);
}

/// A fault on ds2's primary under `load`, from `begin` until what it
/// returns is dropped: ds2 is marked down, a write there then fails at once
/// while the others go on, and once the fault ends it takes writes again
/// by itself; then the load's rows are checked.
async fn through_fault<G>(
    proxy: &Arc<RunningProxy>,
    load: WriteLoad,
    table: &str,
    begin: impl FnOnce() -> G,
) -> String {
    let down_after;
    {
        // The window opens first: a fault may take a while to set up (a
        // kill waits for the process to be gone), its errors already come.
        let began = load.fault_began();
        let _fault = begin();
        let state = pool_state_when(proxy, "ds2", |s| !s["down"].is_null()).await;
        assert!(!state["down"].is_null(), "ds2 never marked down: {state}");
        down_after = began.elapsed();
        check_down_but_others_serve(proxy, table).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        load.fault_ended();
    }
    let recovered_after =
        until_it_writes(proxy, &format!("UPDATE {table} SET v = v WHERE id = 2")).await;
    assert!(pool_state(proxy, "ds2").await["down"].is_null());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish(proxy, table, 2, NotHung::Errors).await;
    format!(
        "marked down after {down_after:?}, first error after {:?}, {} failed statements, back {recovered_after:?} after the fault ended, {} wrong answers, 0 acknowledged writes lost",
        report.first_error, report.failed, report.wrong
    )
}

/// A primary that stops answering (SIGSTOP) under a 16-session write load
/// on the shipped config (replicas on): once a health check finds it silent
/// it is marked down; the statements waiting on it end with an error naming
/// it, new ones for it fail at once, the sessions writing to the other data
/// sources go on throughout, and it takes statements again by itself once
/// it answers (SIGCONT). No acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_primary_is_marked_down_and_comes_back_by_itself() {
    const TABLE: &str = "pool_stalled";
    let cfg = fault_config(TABLE, 700);
    let ds2_port = cfg.data_sources["ds2"].url.port;
    let Some((proxy, _sandbox)) = start(
        "a_stopped_primary_is_marked_down_and_comes_back_by_itself",
        cfg,
        TABLE,
    )
    .await
    else {
        return;
    };
    let pid = shardgate_integration_tests::replication::Server::locate(ds2_port)
        .pid()
        .expect("ds2's primary runs in the sandbox");
    let load = WriteLoad::start(&proxy, TABLE, 16, "ds2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let figures = through_fault(&proxy, load, TABLE, || Frozen::new(pid)).await;
    eprintln!("fault: ds2's primary stopped (SIGSTOP), 16 sessions: {figures}");
    drop_table(&proxy, TABLE).await;
}

/// A primary killed (SIGKILL) under a 16-session write load on the
/// shipped config: refused connections mark it down, writes for it fail at
/// once naming it while the other data sources take theirs, and once it is
/// started again it takes writes by itself. No acknowledged write is lost
/// (InnoDB's own recovery, seen through the proxy), and its replicas
/// follow it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_loses_no_acknowledged_write() {
    const TABLE: &str = "pool_killed";
    let cfg = fault_config(TABLE, 700);
    let ds2 = &cfg.data_sources["ds2"];
    let ds2_port = ds2.url.port;
    let replicas: Vec<u16> = ds2.replicas.iter().map(|r| r.port).collect();
    let Some((proxy, _sandbox)) =
        start("a_killed_primary_loses_no_acknowledged_write", cfg, TABLE).await
    else {
        return;
    };
    let server = shardgate_integration_tests::replication::Server::locate(ds2_port);
    let load = WriteLoad::start(&proxy, TABLE, 16, "ds2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The guard starts the server again when the fault ends.
    let figures = through_fault(&proxy, load, TABLE, || server.kill()).await;
    for port in replicas {
        shardgate_integration_tests::replication::blocking(move || {
            shardgate_integration_tests::replication::wait_replicating(
                port,
                Duration::from_secs(30),
            )
        })
        .await;
    }
    eprintln!("fault: ds2's primary killed (SIGKILL), then started again, 16 sessions: {figures}");
    drop_table(&proxy, TABLE).await;
}

/// The link to ds2's primary slowed by 50 ms each way, then partitioned
/// (every packet dropped, nothing refused), then healed, under a
/// 16-session write load on the shipped config: through the latency no
/// statement fails; through the cut the primary is marked down, statements
/// waiting on it fail naming it and new ones fail at once, the other data
/// sources' sessions go on; after the heal it takes statements again by
/// itself. No acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_behind_a_slow_then_cut_link() {
    const TABLE: &str = "pool_link";
    const TEST: &str = "a_primary_behind_a_slow_then_cut_link";
    if let Some(reason) = lossy::unavailable() {
        skip(TEST, &reason);
        return;
    }
    let mut cfg = fault_config(TABLE, 1000);
    let ds2 = &mut cfg.data_sources.get_mut("ds2").expect("ds2").url;
    let link = LossyLink::start(address(ds2));
    ds2.host = link.addr().ip().to_string();
    ds2.port = link.addr().port();
    let Some((proxy, _sandbox)) = start(TEST, cfg, TABLE).await else {
        return;
    };
    let load = WriteLoad::start(&proxy, TABLE, 16, "ds2").await;
    link.set(Fault::Latency(Duration::from_millis(50)));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        pool_state(&proxy, "ds2").await["down"].is_null(),
        "slow is not down"
    );
    link.set(Fault::None);
    // The partition: every packet dropped in the link's namespace.
    let figures = through_fault(&proxy, load, TABLE, || link.lose(100)).await;
    eprintln!(
        "fault: ds2's link +50 ms each way for 2 s (no failure), then partitioned (nftables, netns), 16 sessions: {figures}"
    );
    drop_table(&proxy, TABLE).await;
}

/// The link to one of ds2's replicas partitioned (every packet dropped)
/// under 16 reading sessions on the shipped config: the replica is marked
/// down, reads that were waiting on it are retried elsewhere and new ones
/// go to the other replica or the primary: no read fails; once healed, it
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_go_on_when_a_replica_is_cut_off() {
    reads_go_on_through(
        "reads_go_on_when_a_replica_is_cut_off",
        "pool_replica_cut",
        ReplicaFault::LinkCut,
    )
    .await;
}

/// The same with the replica's server stopped (SIGSTOP): its connections
/// stay open and nothing answers on them; continued (SIGCONT), it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_go_on_when_a_replica_is_stopped() {
    reads_go_on_through(
        "reads_go_on_when_a_replica_is_stopped",
        "pool_replica_stopped",
        ReplicaFault::Stopped,
    )
    .await;
}

/// How ds2's first replica is made silent.
#[derive(Clone, Copy)]
enum ReplicaFault {
    /// Its link partitioned: every packet dropped, nothing refused.
    LinkCut,
    /// Its server stopped with SIGSTOP.
    Stopped,
}

/// 16 sessions read rows of ds2 while its first replica is silent
/// (`fault`), then after it answers again: no read fails or is wrong, the
/// replica is marked down and comes back by itself.
async fn reads_go_on_through(test: &str, table: &'static str, fault: ReplicaFault) {
    let mut cfg = fault_config(table, 1000);
    let replica = &mut cfg.data_sources.get_mut("ds2").expect("ds2").replicas[0];
    let replica_port = replica.port;
    let link = match fault {
        ReplicaFault::LinkCut => {
            if let Some(reason) = lossy::unavailable() {
                skip(test, &reason);
                return;
            }
            let link = LossyLink::start(address(replica));
            replica.host = link.addr().ip().to_string();
            replica.port = link.addr().port();
            Some(link)
        }
        ReplicaFault::Stopped => None,
    };
    let Some((proxy, _sandbox)) = start(test, cfg, table).await else {
        return;
    };
    let pid = match fault {
        ReplicaFault::Stopped => Some(
            shardgate_integration_tests::replication::Server::locate(replica_port)
                .pid()
                .expect("ds2's replica runs in the sandbox"),
        ),
        ReplicaFault::LinkCut => None,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for s in 0..16u64 {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut conn = connect(&proxy).await;
            let (mut answered, mut failed) = (0u64, Vec::new());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Rows 2, 6, 10, ...: all on ds2; v = id.
                let id = 4 * ((s + n) % 10) + 2;
                n += 1;
                let sql = format!("SELECT v FROM {table} WHERE id = {id}");
                match sqlx::query_scalar::<_, i32>(&sql)
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(v) if i64::from(v) == i64::try_from(id).unwrap_or(-1) => answered += 1,
                    Ok(v) => failed.push(format!("row {id}: v = {v}")),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (answered, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down_after;
    {
        // The fault, undone when these are dropped.
        let _cut = link.as_ref().map(|link| link.lose(100));
        let _frozen = pid.map(Frozen::new);
        let began = Instant::now();
        let state = pool_state_when(&proxy, "ds2.replica1", |s| !s["down"].is_null()).await;
        assert!(
            !state["down"].is_null(),
            "the replica never marked down: {state}"
        );
        down_after = began.elapsed();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let healed = Instant::now();
    let state = pool_state_when(&proxy, "ds2.replica1", |s| s["down"].is_null()).await;
    assert!(state["down"].is_null(), "the replica not back: {state}");
    let back_after = healed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut failed) = (0, Vec::new());
    for reader in readers {
        let (a, f) = reader.await.expect("a reader");
        answered += a;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "failed or wrong reads: {failed:?}");
    let what = match fault {
        ReplicaFault::LinkCut => "link partitioned",
        ReplicaFault::Stopped => "server stopped (SIGSTOP)",
    };
    eprintln!(
        "fault: ds2.replica1's {what}, 16 reading sessions: marked down after {down_after:?}, back {back_after:?} after the fault ended, {answered} reads, 0 failed, 0 wrong answers"
    );
    drop_table(&proxy, table).await;
}

/// `query_timeout_ms` bounds how long a statement waits for its data
/// source to answer: a statement on a server that stays silent longer
/// (stopped, or computing) fails with an error naming the data source and
/// its connection is closed, not pooled again; the next statement gets a
/// fresh connection and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_data_source_fails_statements_after_query_timeout_ms() {
    const TABLE: &str = "pool_silent";
    let mut cfg = config(TABLE, |p| {
        // One connection: a timed-out one pooled again would answer the
        // next statement with the late reply of the one before.
        p.max_size = 1;
        p.adaptive = false;
        p.min_idle = Some(0);
        p.query_timeout_ms = 400;
        // No health check during the test: the timeout alone acts.
        p.health_check_interval_ms = 600_000;
    });
    cfg.server.read_write_splitting = true;
    let ds2_port = cfg.data_sources["ds2"].url.port;
    let Some((proxy, _sandbox)) = start(
        "a_silent_data_source_fails_statements_after_query_timeout_ms",
        cfg,
        TABLE,
    )
    .await
    else {
        return;
    };
    let mut conn = connect(&proxy).await;
    let slow = sqlx::query_scalar::<_, i64>("SELECT SLEEP(1)")
        .fetch_one(&mut conn)
        .await;
    let (code, _, message) = db_error(&slow.expect_err("silent for 1 s")).expect("server error");
    assert!(
        message.contains("data source ds0") && message.contains("no answer for 400 ms"),
        "{code} {message}"
    );
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("the session goes on");
    assert_eq!(one, 1, "on a new connection, not SLEEP's late 0");
    let pid = shardgate_integration_tests::replication::Server::locate(ds2_port)
        .pid()
        .expect("ds2's primary runs in the sandbox");
    {
        let _frozen = Frozen::new(pid);
        let err = conn
            .execute(format!("UPDATE {TABLE} SET v = v + 1 WHERE id = 2").as_str())
            .await
            .expect_err("ds2 is stopped");
        let (_, _, message) = db_error(&err).expect("server error");
        assert!(
            message.contains("data source ds2") && message.contains("no answer for 400 ms"),
            "{message}"
        );
    }
    let mut written = None;
    for _ in 0..50 {
        match conn
            .execute(format!("UPDATE {TABLE} SET v = v + 1 WHERE id = 2").as_str())
            .await
        {
            Ok(r) => {
                written = Some(r.rows_affected());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(written, Some(1), "ds2 answers again once continued");
    drop_table(&proxy, TABLE).await;
}
