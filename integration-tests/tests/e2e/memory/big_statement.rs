//! Peak memory of one large statement on a sharded table (issue 15,
//! "Resources": statement analysis takes memory linear in the statement's
//! size with a small constant; the bound is 4 × its size).
//!
//! `SELECT id, name FROM mem_big WHERE id = 1 OR name = '<20 MiB>'` cannot
//! be routed by its condition, so it goes to all 64 physical tables of
//! `mem_big` (16 on each of ds0..ds3). Built as 64 whole strings, that
//! statement once took 2.6 GB of the proxy; the proxy's peak RSS may now
//! grow by less than [`BOUND_MIB`] (4 × 20 MiB), and the answer must be
//! the one the same statement gets from an unsharded table holding the
//! same rows. The proxy runs as a child process, as in the deep page test.
//! The time is printed, never asserted.
//!
//! Creates and drops `mem_big` (physical `mem_big_0..15` on ds0..ds3) and
//! `mem_big_plain` (on ds0).

use super::{exec, ProcessMemory, ProxyProcess, ProxyRun};
use shardgate_integration_tests::{proxy_endpoint, sandbox, sandbox_ready, say, test_config};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};
use std::time::Instant;

/// The statement's size, in MiB.
const STATEMENT_MIB: u64 = 20;
/// Peak-RSS growth allowed while the statement runs, in MiB.
const BOUND_MIB: u64 = 4 * STATEMENT_MIB;
const COLUMNS: &str = "(id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL)";
const ROWS: &str = "(1, 'one'), (2, 'two'), (6, 'six'), (17, 'seventeen')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_statement_on_a_sharded_table_keeps_proxy_memory_bounded() {
    let _sandbox = sandbox::exclusive().await;
    const TEST: &str = "a_large_statement_on_a_sharded_table_keeps_proxy_memory_bounded";
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let mut proxy = ProxyRun::start();
    let ep = proxy_endpoint(&proxy.cfg, proxy.proxy.addr);
    let mut conn = ep
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to shardgate at {}: {e}", ep.addr()));

    let outcome = run(&mut conn, &mut proxy.proxy).await;

    for table in ["mem_big", "mem_big_plain"] {
        let _ = exec(&mut conn, &format!("DROP TABLE IF EXISTS {table}")).await;
    }
    let _ = conn.close().await;
    let log = proxy.end();
    match outcome {
        Ok(growth_kib) => {
            let growth_mib = growth_kib as f64 / 1024.0;
            assert!(
                growth_kib < BOUND_MIB * 1024,
                "the proxy's peak RSS grew by {growth_mib:.1} MiB for a {STATEMENT_MIB} MiB \
                 statement on 64 physical tables (bound {BOUND_MIB} MiB)"
            );
        }
        Err(e) => panic!("{e}\n--- shardgate log (tail) ---\n{log}"),
    }
}

/// Sets the tables up, runs the statement on both, compares the answers;
/// the peak-RSS growth (KiB) of the sharded run.
async fn run(conn: &mut MySqlConnection, proxy: &mut ProxyProcess) -> Result<u64, String> {
    for table in ["mem_big", "mem_big_plain"] {
        exec(conn, &format!("DROP TABLE IF EXISTS {table}")).await?;
        exec(conn, &format!("CREATE TABLE {table} {COLUMNS}")).await?;
        exec(
            conn,
            &format!("INSERT INTO {table} (id, name) VALUES {ROWS}"),
        )
        .await?;
    }
    let literal = "a".repeat((STATEMENT_MIB * 1024 * 1024) as usize);
    let statement =
        |table: &str| format!("SELECT id, name FROM {table} WHERE id = 1 OR name = '{literal}'");
    // The same statement, small: connections to every data source are
    // open and the table's columns known before the peak is measured.
    let small = |table: &str| format!("SELECT id, name FROM {table} WHERE id = 1 OR name = 'a'");
    let warm = rows(conn, &small("mem_big")).await?;

    let before = proxy.memory()?;
    let started = Instant::now();
    let sharded = rows(conn, &statement("mem_big")).await?;
    let elapsed = started.elapsed();
    let after = proxy.memory()?;
    let growth = after.hwm_kib.saturating_sub(before.hwm_kib);
    say(&format!(
        "memory: {STATEMENT_MIB} MiB SELECT on the 64 tables of mem_big: {:.2}s, VmHWM {} KiB -> {} KiB \
         (+{:.1} MiB, bound {BOUND_MIB} MiB)",
        elapsed.as_secs_f64(),
        before.hwm_kib,
        after.hwm_kib,
        growth as f64 / 1024.0
    ));

    let unsharded = rows(conn, &statement("mem_big_plain")).await?;
    if sharded != unsharded || sharded != warm || sharded.is_empty() {
        return Err(format!(
            "the {STATEMENT_MIB} MiB statement answered {sharded:?} on mem_big, {unsharded:?} on \
             mem_big_plain (small statement: {warm:?})"
        ));
    }
    Ok(growth)
}

/// The rows of a text query, in id order (a concatenation of nodes comes
/// in node order).
async fn rows(conn: &mut MySqlConnection, sql: &str) -> Result<Vec<(i64, String)>, String> {
    let head: String = sql.chars().take(60).collect();
    let mut got = Vec::new();
    for row in sqlx::raw_sql(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("{head}...: {e}"))?
    {
        let id: i64 = row.try_get(0).map_err(|e| format!("{head}...: id: {e}"))?;
        let name: String = row
            .try_get(1)
            .map_err(|e| format!("{head}...: name: {e}"))?;
        got.push((id, name));
    }
    got.sort();
    Ok(got)
}
