//! Real drivers, differentially: each scenario runs against ds0's primary
//! directly (database `ds0`) and through an in-process ShardGate (database
//! `wework`); the two transcripts must be identical.
//!
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`. Each driver uses its own table, so the tests
//! run in parallel.

use shardgate_integration_tests::{
    assert_complete, assert_same_transcript, direct_endpoint, sandbox, sandbox_ready,
    sqlx_scenario, start_proxy, test_config, Driver,
};

/// Minimum number of transcript steps per driver: a transcript that stops
/// early is a failure even when both sides stop at the same place.
fn min_steps(driver: &str) -> usize {
    match driver {
        "cli" => 21,
        "pymysql" => 36,
        "jdbc" => 40,
        "node" => 40,
        "sqlx" => 40,
        _ => 1,
    }
}

fn done_marker(driver: &str) -> &'static str {
    if driver == "cli" {
        "step done"
    } else {
        "{\"step\":\"done\"}"
    }
}

async fn differential(driver: Driver) {
    let _sandbox = sandbox::shared().await;
    let name = driver.name();
    let cfg = test_config();
    if !sandbox_ready(&cfg, name) {
        return;
    }
    let direct = direct_endpoint(&cfg);
    let proxy = start_proxy(cfg).await;

    let direct_t = driver
        .run(&direct)
        .await
        .unwrap_or_else(|e| panic!("{name} against ds0 directly: {e}"));
    assert_complete(
        &format!("{name} (direct)"),
        &direct_t,
        min_steps(name),
        done_marker(name),
    );
    let proxied_t = driver
        .run(&proxy.endpoint())
        .await
        .unwrap_or_else(|e| panic!("{name} through shardgate: {e}"));
    assert_same_transcript(name, &direct_t, &proxied_t);
    assert_complete(
        &format!("{name} (through shardgate)"),
        &proxied_t,
        min_steps(name),
        done_marker(name),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_matches_direct() {
    differential(Driver::Cli).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_matches_direct() {
    differential(Driver::PyMySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_connector_j_matches_direct() {
    differential(Driver::Jdbc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mysql2_execute_matches_direct() {
    differential(Driver::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_matches_direct() {
    let _sandbox = sandbox::shared().await;
    let name = "sqlx";
    let cfg = test_config();
    if !sandbox_ready(&cfg, name) {
        return;
    }
    let direct = direct_endpoint(&cfg);
    let proxy = start_proxy(cfg).await;

    let direct_t = sqlx_scenario::run(&direct)
        .await
        .unwrap_or_else(|e| panic!("sqlx against ds0 directly: {e}"));
    assert_complete(
        "sqlx (direct)",
        &direct_t,
        min_steps(name),
        done_marker(name),
    );
    let proxied_t = sqlx_scenario::run(&proxy.endpoint())
        .await
        .unwrap_or_else(|e| panic!("sqlx through shardgate: {e}"));
    assert_same_transcript(name, &direct_t, &proxied_t);
    assert_complete(
        "sqlx (through shardgate)",
        &proxied_t,
        min_steps(name),
        done_marker(name),
    );
}
