//! The admin endpoints a migrator drives during a resharding cutover
//! (issue 6), end to end against the sandbox: pausing statements per
//! logical table (queued writes, reads by scope, the 1205 refusal after
//! `max_queue_ms`, in-flight transactions, the lease), staging and
//! activating a rules version (routing switches, a session in a
//! transaction keeps its version, the config file follows), and queued
//! statements running under a version activated during the pause.
//!
//! Each test has its own logical table (`cutover_*`), physical tables
//! `<table>_0/_1` on ds0..ds3 (data source = id % 4, table = id / 4 % 2),
//! and drops them at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardgate_integration_tests::fixtures::{admin_request, connect, drop_table, table_section};
use shardgate_integration_tests::http;
use shardgate_integration_tests::{
    data_source_endpoint, db_error, sandbox, sandbox_ready, seed_config_text,
    start_proxy_from_file, test_config, write_config_file, RunningProxy,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Executor, Row};
use tokio::task::JoinHandle;

/// How long a test waits to see that a statement is held, and the most a
/// woken statement may take to finish after its pause lifts.
const HELD_FOR: Duration = Duration::from_millis(400);
const WAKE_WITHIN: Duration = Duration::from_millis(500);

/// The seed config plus `table`, sharded by `id` over physical tables
/// `<physical>_0/_1` on ds0..ds3.
fn config_text(table: &str, physical: &str) -> String {
    format!("{}{}", seed_config_text(), table_section(table, physical))
}

/// A proxy started from its own config file, with `table` created.
async fn start(table: &str) -> (RunningProxy, PathBuf) {
    let path = write_config_file(table, &config_text(table, table));
    let proxy = start_proxy_from_file(&path).await;
    let mut conn = connect(&proxy).await;
    for sql in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, v INT)"),
    ] {
        conn.execute(sql.as_str()).await.expect(&sql);
    }
    (proxy, path)
}

/// A data source's primary, straight.
async fn backend(proxy: &RunningProxy, ds: &str) -> MySqlConnection {
    data_source_endpoint(&proxy.cfg, ds)
        .unwrap_or_else(|| panic!("{ds} is not configured"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{ds} directly: {e}"))
}

/// Rows with `id` in physical table `physical` of data source `ds`.
async fn rows_on(proxy: &RunningProxy, ds: &str, physical: &str, id: i64) -> i64 {
    let mut conn = backend(proxy, ds).await;
    let row = conn
        .fetch_one(format!("SELECT COUNT(*) FROM {physical} WHERE id = {id}").as_str())
        .await
        .unwrap_or_else(|e| panic!("count on {ds}.{physical}: {e}"));
    row.get::<i64, _>(0)
}

async fn admin(proxy: &RunningProxy, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = admin_request(proxy, method, path, body).await;
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, json)
}

/// `POST /api/pauses`, expecting 200.
async fn pause(proxy: &RunningProxy, body: &str) -> Value {
    let (status, reply) = admin(proxy, "POST", "/api/pauses", body).await;
    assert_eq!(status, 200, "pause {body}: {reply}");
    reply
}

/// Lifts the pause of `table`; returns when the request was sent (a woken
/// statement may finish before the answer arrives).
async fn resume(proxy: &RunningProxy, table: &str) -> Instant {
    let sent = Instant::now();
    let (status, reply) = admin(
        proxy,
        "POST",
        "/api/pauses/resume",
        &format!(r#"{{"tables": ["{table}"]}}"#),
    )
    .await;
    assert_eq!(status, 200, "resume: {reply}");
    sent
}

/// The pause of `table` as `GET /api/pauses` shows it (Null when none).
async fn pause_of(proxy: &RunningProxy, table: &str) -> Value {
    let (status, list) = admin(proxy, "GET", "/api/pauses", "").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("GET /api/pauses is an array")
        .iter()
        .find(|p| p["table"] == table)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Runs `sql` on a connection of its own in the background: its result and
/// when it finished.
async fn in_background(
    proxy: &RunningProxy,
    sql: String,
) -> JoinHandle<(Result<(), sqlx::Error>, Instant)> {
    let mut conn = connect(proxy).await;
    tokio::spawn(async move {
        let result = conn.execute(sql.as_str()).await.map(|_| ());
        (result, Instant::now())
    })
}

/// Waits until `GET /api/pauses` counts `queued` statements for `table`.
async fn wait_queued(proxy: &RunningProxy, table: &str, queued: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if pause_of(proxy, table).await["queued"] == queued {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table}: never {queued} queued: {}",
            pause_of(proxy, table).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A statement's result once its pause lifted at `resumed`: it must not
/// have finished before, and must finish soon after.
async fn finished_after(
    task: JoinHandle<(Result<(), sqlx::Error>, Instant)>,
    resumed: Instant,
    what: &str,
) {
    let (result, finished) = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting 5 s after the resume"))
        .expect("task");
    result.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(finished >= resumed, "{what} finished before the resume");
    assert!(
        finished - resumed < WAKE_WITHIN,
        "{what} took {:?} after the resume",
        finished - resumed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_while_paused_and_run_after_resume_reads_by_scope() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover writes_wait_while_paused") {
        return;
    }
    const T: &str = "cutover_q";
    let (proxy, _) = start(T).await;
    let mut conn = connect(&proxy).await;
    conn.execute(format!("INSERT INTO {T} VALUES (1, 1)").as_str())
        .await
        .expect("insert before the pause");

    let paused = pause(&proxy, &format!(r#"{{"tables": ["{T}"]}}"#)).await;
    let shown = &paused[0];
    assert_eq!(shown["table"], T, "{paused}");
    assert_eq!(shown["scope"], "writes", "the default scope: {paused}");
    assert_eq!(shown["max_queue_ms"], 1000, "{paused}");
    assert!(shown["lease_remaining_ms"].as_u64().unwrap() > 59_000);
    assert_eq!(shown["in_flight_transactions"], 0);

    // Longer than the pause lasts: this test resumes it.
    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "max_queue_ms": 10000}}"#),
    )
    .await;
    let text_write = in_background(&proxy, format!("INSERT INTO {T} VALUES (2, 2)")).await;
    let prepared_write = {
        let mut conn = connect(&proxy).await;
        tokio::spawn(async move {
            let result = sqlx::query(&format!("UPDATE {T} SET v = ? WHERE id = ?"))
                .bind(10)
                .bind(1)
                .execute(&mut conn)
                .await
                .map(|_| ());
            (result, Instant::now())
        })
    };
    wait_queued(&proxy, T, 2).await;

    // Reads pass under scope writes, and other tables are not held.
    let started = Instant::now();
    let row = conn
        .fetch_one(format!("SELECT COUNT(*) FROM {T}").as_str())
        .await
        .expect("a read while writes are paused");
    assert_eq!(row.get::<i64, _>(0), 1, "the queued insert did not run");
    conn.execute("SELECT 1").await.expect("unrelated statement");
    assert!(started.elapsed() < HELD_FOR, "reads were held");

    tokio::time::sleep(HELD_FOR).await;
    assert!(!text_write.is_finished() && !prepared_write.is_finished());
    assert_eq!(rows_on(&proxy, "ds2", &format!("{T}_0"), 2).await, 0);
    let metrics = http::get(proxy.admin_addr, "/metrics").await.text();
    assert!(
        metrics.contains("shardgate_paused_tables 1")
            && metrics.contains("shardgate_paused_statements 2"),
        "{metrics}"
    );

    let resumed = resume(&proxy, T).await;
    finished_after(text_write, resumed, "the queued INSERT").await;
    finished_after(prepared_write, resumed, "the queued prepared UPDATE").await;
    assert_eq!(rows_on(&proxy, "ds2", &format!("{T}_0"), 2).await, 1);
    assert_eq!(pause_of(&proxy, T).await, Value::Null);

    // Scope all holds reads too.
    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "scope": "all", "max_queue_ms": 10000}}"#),
    )
    .await;
    let read = in_background(&proxy, format!("SELECT * FROM {T} WHERE id = 1")).await;
    wait_queued(&proxy, T, 1).await;
    tokio::time::sleep(HELD_FOR).await;
    assert!(!read.is_finished(), "a read ran under scope all");
    let resumed = resume(&proxy, T).await;
    finished_after(read, resumed, "the queued SELECT").await;

    drop_table(&proxy, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_queued_longer_than_max_queue_ms_is_refused_with_1205() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover refused") {
        return;
    }
    const T: &str = "cutover_refuse";
    let (proxy, _) = start(T).await;
    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "max_queue_ms": 300}}"#),
    )
    .await;
    let mut conn = connect(&proxy).await;
    let started = Instant::now();
    let err = conn
        .execute(format!("INSERT INTO {T} VALUES (3, 3)").as_str())
        .await
        .expect_err("refused");
    let waited = started.elapsed();
    let (code, state, message) = db_error(&err).expect("a server error");
    assert_eq!(code, 1205, "{message}");
    assert_eq!(state.as_deref(), Some("HY000"));
    assert_eq!(
        message,
        format!("writes to table `{T}` are paused for a resharding cutover and did not resume within 300 ms; retry the statement")
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let shown = pause_of(&proxy, T).await;
    assert_eq!(
        (&shown["refused"], &shown["queued"]),
        (&1.into(), &0.into())
    );
    let metrics = http::get(proxy.admin_addr, "/metrics").await.text();
    assert!(
        metrics.contains(&format!("shardgate_pause_refused_total{{table=\"{T}\"}} 1")),
        "{metrics}"
    );
    // The session goes on after the refusal.
    resume(&proxy, T).await;
    conn.execute(format!("INSERT INTO {T} VALUES (3, 3)").as_str())
        .await
        .expect("the retried insert");
    assert_eq!(rows_on(&proxy, "ds3", &format!("{T}_0"), 3).await, 1);

    // An unknown table is not paused.
    let (status, reply) = admin(
        &proxy,
        "POST",
        "/api/pauses",
        r#"{"tables": ["no_such_cutover_table"]}"#,
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no_such_cutover_table"),
        "{reply}"
    );
    let (status, reply) = admin(
        &proxy,
        "POST",
        "/api/pauses",
        &format!(r#"{{"tables": ["{T}"], "scope": "reads"}}"#),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    drop_table(&proxy, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_transaction_is_not_queued_and_counted_until_commit() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover in flight") {
        return;
    }
    const T: &str = "cutover_flight";
    let (proxy, _) = start(T).await;
    let mut writer = connect(&proxy).await;
    let mut reader_in_txn = connect(&proxy).await;
    writer.execute("BEGIN").await.expect("begin");
    writer
        .execute(format!("INSERT INTO {T} VALUES (4, 4)").as_str())
        .await
        .expect("write before the pause");
    // Only read the table: not in flight.
    reader_in_txn.execute("BEGIN").await.expect("begin");
    reader_in_txn
        .execute(format!("SELECT * FROM {T} WHERE id = 4").as_str())
        .await
        .expect("read before the pause");

    let paused = pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "max_queue_ms": 10000}}"#),
    )
    .await;
    assert_eq!(paused[0]["in_flight_transactions"], 1, "{paused}");

    // The transaction goes on (it must be able to finish) ...
    let started = Instant::now();
    writer
        .execute(format!("INSERT INTO {T} VALUES (5, 5)").as_str())
        .await
        .expect("an in-flight transaction writes on");
    assert!(started.elapsed() < HELD_FOR, "{:?}", started.elapsed());
    // ... while a new writer waits.
    let other = in_background(&proxy, format!("INSERT INTO {T} VALUES (6, 6)")).await;
    wait_queued(&proxy, T, 1).await;
    assert_eq!(pause_of(&proxy, T).await["in_flight_transactions"], 1);

    writer.execute("COMMIT").await.expect("commit");
    assert_eq!(pause_of(&proxy, T).await["in_flight_transactions"], 0);
    reader_in_txn.execute("COMMIT").await.expect("commit");
    tokio::time::sleep(HELD_FOR).await;
    assert!(!other.is_finished(), "the new writer ran during the pause");

    let resumed = resume(&proxy, T).await;
    finished_after(other, resumed, "the queued INSERT").await;
    assert_eq!(rows_on(&proxy, "ds1", &format!("{T}_1"), 5).await, 1);
    drop_table(&proxy, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_lifts_a_forgotten_pause_with_an_alert() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover lease") {
        return;
    }
    const T: &str = "cutover_lease";
    let (proxy, _) = start(T).await;
    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "max_queue_ms": 20000, "lease_ms": 800}}"#),
    )
    .await;
    let paused_at = Instant::now();
    let write = in_background(&proxy, format!("INSERT INTO {T} VALUES (7, 7)")).await;
    let (result, finished) = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the lease lifted the pause")
        .expect("task");
    result.expect("the insert ran once the lease ended");
    let held = finished - paused_at;
    assert!(
        held >= Duration::from_millis(700) && held < Duration::from_secs(3),
        "held {held:?} under an 800 ms lease"
    );
    assert_eq!(pause_of(&proxy, T).await, Value::Null);
    let (_, alerts) = admin(&proxy, "GET", "/api/alerts", "").await;
    let fired = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .any(|a| a["alert"] == "pause_lease_expired" && a["data_source"] == T);
    assert!(fired, "{alerts}");
    drop_table(&proxy, T).await;
}

/// Creates `<physical>_0/_1` on every data source (as a migrator would
/// before a cutover).
async fn create_physical(proxy: &RunningProxy, physical: &str) {
    for ds in ["ds0", "ds1", "ds2", "ds3"] {
        let mut conn = backend(proxy, ds).await;
        for i in 0..2 {
            conn.execute(
                format!("CREATE TABLE IF NOT EXISTS {physical}_{i} (id BIGINT PRIMARY KEY, v INT)")
                    .as_str(),
            )
            .await
            .expect("create a new-layout table");
        }
    }
}

async fn drop_physical(proxy: &RunningProxy, physical: &str) {
    for ds in ["ds0", "ds1", "ds2", "ds3"] {
        let mut conn = backend(proxy, ds).await;
        for i in 0..2 {
            let _ = conn
                .execute(format!("DROP TABLE IF EXISTS {physical}_{i}").as_str())
                .await;
        }
    }
}

/// `PUT /api/rules/staged` with a TOML body.
async fn stage(proxy: &RunningProxy, text: &str) -> (u16, Value) {
    let response = http::request(
        proxy.admin_addr,
        "PUT",
        "/api/rules/staged",
        &[("Content-Type", "application/toml")],
        Some(text.as_bytes()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (response.status, response.json())
}

/// The sessions as `GET /api/sessions` lists them.
async fn sessions(proxy: &RunningProxy) -> Vec<Value> {
    let (status, list) = admin(proxy, "GET", "/api/sessions", "").await;
    assert_eq!(status, 200, "{list}");
    list.as_array().expect("an array").clone()
}

/// The id of the one session listed now that was not in `before` (the
/// proxy's ids are its own, so the test finds its session by elimination).
async fn new_session_id(proxy: &RunningProxy, before: &[Value]) -> u64 {
    let known: Vec<&Value> = before.iter().map(|s| &s["id"]).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = sessions(proxy).await;
        let fresh: Vec<u64> = now
            .iter()
            .filter(|s| !known.contains(&&s["id"]))
            .filter_map(|s| s["id"].as_u64())
            .collect();
        if let [id] = fresh.as_slice() {
            return *id;
        }
        assert!(Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn session(list: &[Value], id: u64) -> &Value {
    list.iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no session {id} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_version_activates_routing_and_the_config_file_follows() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover staging") {
        return;
    }
    const T: &str = "cutover_act";
    const NEW: &str = "cutover_act_new";
    let (proxy, path) = start(T).await;
    create_physical(&proxy, NEW).await;
    let old_text = std::fs::read_to_string(&path).expect("config file");
    let new_text = config_text(T, NEW);

    let (status, reply) = stage(&proxy, "[server\nbroken = ").await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("TOML"), "{reply}");
    let moved_listener = new_text.replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    let (status, reply) = stage(&proxy, &moved_listener).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("cannot change while running"),
        "{reply}"
    );
    let (_, rules) = admin(&proxy, "GET", "/api/rules", "").await;
    assert_eq!(
        (&rules["version"], &rules["staged_version"]),
        (&1.into(), &Value::Null)
    );

    let (status, reply) = stage(&proxy, &new_text).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["staged_version"], 2);
    assert!(
        reply["changes"]
            .to_string()
            .contains(&format!("sharded table {T} changed")),
        "{reply}"
    );
    let (_, rules) = admin(&proxy, "GET", "/api/rules", "").await;
    assert_eq!(
        (&rules["version"], &rules["staged_version"]),
        (&1.into(), &2.into())
    );
    let (status, reply) = admin(&proxy, "POST", "/api/rules/activate", r#"{"version": 3}"#).await;
    assert_eq!(status, 409, "{reply}");

    // A session in a transaction on version 1, and an idle one.
    let before = sessions(&proxy).await;
    let mut in_txn = connect(&proxy).await;
    let in_txn_id = new_session_id(&proxy, &before).await;
    let mut idle = connect(&proxy).await;
    in_txn.execute("BEGIN").await.expect("begin");
    in_txn
        .execute(format!("INSERT INTO {T} VALUES (8, 8)").as_str())
        .await
        .expect("write on version 1");

    let (status, reply) = admin(&proxy, "POST", "/api/rules/activate", r#"{"version": 2}"#).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["active_version"], 2);
    assert_eq!(reply["sessions_on_older_versions"], 1, "{reply}");
    let listed = sessions(&proxy).await;
    let shown = session(&listed, in_txn_id);
    assert_eq!(
        (&shown["rules_version"], &shown["in_transaction"]),
        (&1.into(), &true.into())
    );
    assert!(listed
        .iter()
        .filter(|s| s["id"] != in_txn_id)
        .all(|s| s["rules_version"] == 2 && s["in_transaction"] == false));
    let (_, rules) = admin(&proxy, "GET", "/api/rules", "").await;
    assert_eq!(
        (&rules["version"], &rules["staged_version"]),
        (&2.into(), &Value::Null)
    );
    assert_eq!(
        rules["tables"][T]["nodes"],
        format!("ds${{0..3}}.{NEW}_${{0..1}}")
    );

    // Rows written after the activation land on the new physical tables.
    idle.execute(format!("INSERT INTO {T} VALUES (7, 7)").as_str())
        .await
        .expect("insert on version 2");
    assert_eq!(rows_on(&proxy, "ds3", &format!("{NEW}_1"), 7).await, 1);
    assert_eq!(rows_on(&proxy, "ds3", &format!("{T}_1"), 7).await, 0);

    // The transaction keeps version 1: the re-ruled table is refused to it
    // rather than routed to the old layout; it commits, then follows.
    let err = in_txn
        .execute(format!("INSERT INTO {T} VALUES (9, 9)").as_str())
        .await
        .expect_err("re-ruled table in an old-version transaction");
    let (code, _, message) = db_error(&err).expect("server error");
    assert_eq!(code, 1412, "{message}");
    assert!(message.contains("roll it back"), "{message}");
    in_txn.execute("COMMIT").await.expect("commit on version 1");
    assert_eq!(rows_on(&proxy, "ds0", &format!("{T}_0"), 8).await, 1);
    let listed = sessions(&proxy).await;
    assert_eq!(session(&listed, in_txn_id)["rules_version"], 2);
    assert_eq!(session(&listed, in_txn_id)["in_transaction"], false);

    // The file holds the activated text; the old one is kept beside it.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new_text);
    let mut kept = path.clone().into_os_string();
    kept.push(".v1");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), old_text);
    // A reload keeps the new rules.
    let (status, reply) = admin(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["version"], 3);
    idle.execute(format!("INSERT INTO {T} VALUES (11, 11)").as_str())
        .await
        .expect("insert on version 3");
    assert_eq!(rows_on(&proxy, "ds3", &format!("{NEW}_0"), 11).await, 1);

    let (status, reply) = admin(&proxy, "DELETE", "/api/rules/staged", "").await;
    assert_eq!((status, &reply["discarded_version"]), (200, &Value::Null));
    drop_physical(&proxy, NEW).await;
    drop_table(&proxy, T).await;
    drop_physical(&proxy, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_queued_during_the_pause_run_under_the_version_activated_then() {
    let _sandbox = sandbox::exclusive().await;
    if !sandbox_ready(&test_config(), "cutover queued under new version") {
        return;
    }
    const T: &str = "cutover_mig";
    const NEW: &str = "cutover_mig_new";
    let (proxy, _) = start(T).await;
    create_physical(&proxy, NEW).await;

    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "max_queue_ms": 10000}}"#),
    )
    .await;
    let write = in_background(&proxy, format!("INSERT INTO {T} VALUES (5, 5)")).await;
    let prepared_read = {
        let mut conn = connect(&proxy).await;
        // Prepared (and its analysis made) on version 1, executed on 2.
        sqlx::query(&format!("SELECT v FROM {T} WHERE id = ?"))
            .bind(13)
            .fetch_optional(&mut conn)
            .await
            .expect("a read before the cutover");
        conn
    };
    wait_queued(&proxy, T, 1).await;
    pause(
        &proxy,
        &format!(r#"{{"tables": ["{T}"], "scope": "all", "max_queue_ms": 10000}}"#),
    )
    .await;
    let (status, reply) = stage(&proxy, &config_text(T, NEW)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = admin(&proxy, "POST", "/api/rules/activate", r#"{"version": 2}"#).await;
    assert_eq!(status, 200, "{reply}");
    assert!(!write.is_finished(), "the write ran during the pause");

    let resumed = resume(&proxy, T).await;
    finished_after(write, resumed, "the queued INSERT").await;
    // id 5: ds1, table 1 — in the new layout, not the old.
    assert_eq!(rows_on(&proxy, "ds1", &format!("{NEW}_1"), 5).await, 1);
    assert_eq!(rows_on(&proxy, "ds1", &format!("{T}_1"), 5).await, 0);

    let mut conn = prepared_read;
    let mut direct = backend(&proxy, "ds1").await;
    direct
        .execute(format!("INSERT INTO {NEW}_1 VALUES (13, 130)").as_str())
        .await
        .expect("a row in the new layout");
    let row = sqlx::query(&format!("SELECT v FROM {T} WHERE id = ?"))
        .bind(13)
        .fetch_one(&mut conn)
        .await
        .expect("the prepared read follows the new rules");
    assert_eq!(row.get::<i32, _>(0), 130);

    drop_physical(&proxy, NEW).await;
    drop_table(&proxy, T).await;
    drop_physical(&proxy, T).await;
}
