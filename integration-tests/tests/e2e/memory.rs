//! Peak memory of a deep scatter page (issue 3, "Reads": memory stays bounded
//! by the rows in flight, not by the result size).
//!
//! `SELECT * FROM mem_rows ORDER BY id LIMIT <N-10>, 10` over a table sharded
//! on ds0..ds3 (4 × 4 physical tables) makes every data node return all of its
//! rows (`LIMIT 0, N`): ShardGate must k-way merge them and skip the offset as
//! the rows stream past, never holding the result. The test runs the proxy as
//! a child process (the `shardgate` binary, so that its memory is its own, not
//! the test's), loads N rows straight into the 16 physical tables, runs the
//! query through the text protocol and as a prepared statement, checks the 10
//! rows, and compares the proxy's peak RSS (`VmHWM` in /proc/<pid>/status)
//! before and after: the growth must stay under [`BOUND_MIB`], while merely
//! holding the rows' wire bytes would take ~130 MB at N = 1,000,000.
//!
//! Settings (environment):
//! - `SHARDGATE_MEM_ROWS`: N (default 1,000,000; at least 1,000);
//! - `SHARDGATE_BIN`: the proxy binary to run; by default the test builds
//!   `shardgate` with `cargo build -p shardgate-proxy --bin shardgate` into
//!   the target dir and profile it was itself built with.
//!
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`. Creates and drops `mem_rows` (physical
//! `mem_rows_0..3` in ds0..ds3) and nothing else.
//!
//! `big_statement` measures one large statement the same way, `long_data`
//! a client's long data, `login` clients announcing huge login packets.

mod big_statement;
mod login;
mod long_data;

use shardgate_integration_tests::binary::{
    scratch_dir, shardgate_binary, write_child_config, ProxyProcess,
};
use shardgate_integration_tests::{
    data_source_endpoint, proxy_endpoint, sandbox, sandbox_ready, say, test_config, Config,
    Endpoint,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};
use std::path::PathBuf;
use std::time::Instant;

/// Peak-RSS growth allowed during the deep page, in MiB.
const BOUND_MIB: u64 = 64;
const DEFAULT_ROWS: u64 = 1_000_000;
/// Each row: id (BIGINT) + a 120-character `pad` (the id, zero-padded, then 'x's).
const PAD_LEN: usize = 120;

const MEM_RULES: &str = r#"
[tables.mem_rows]
nodes = "ds${0..3}.mem_rows_${0..3}"
database = { column = "id", algorithm = "mod", count = 4 }
table = { column = "id", expression = "mem_rows_${(id / 4) % 4}" }

[tables.mem_big]
nodes = "ds${0..3}.mem_big_${0..15}"
database = { column = "id", algorithm = "mod", count = 4 }
table = { column = "id", expression = "mem_big_${(id / 4) % 16}" }
"#;
const DATA_SOURCES: [&str; 4] = ["ds0", "ds1", "ds2", "ds3"];
const TABLES_PER_NODE: u64 = 4;

fn pad_of(id: u64) -> String {
    let mut s = format!("{id:010}");
    s.push_str(&"x".repeat(PAD_LEN - 10));
    s
}
/// The same value, computed by MariaDB.
const PAD_SQL: &str = "CONCAT(LPAD(seq, 10, '0'), REPEAT('x', 110))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_scatter_page_keeps_proxy_memory_bounded() {
    let _sandbox = sandbox::exclusive().await;
    const TEST: &str = "deep_scatter_page_keeps_proxy_memory_bounded";
    let base = test_config();
    if !sandbox_ready(&base, TEST) {
        return;
    }
    let rows: u64 = std::env::var("SHARDGATE_MEM_ROWS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("SHARDGATE_MEM_ROWS is a number"))
        .unwrap_or(DEFAULT_ROWS);
    assert!(rows >= 1000, "SHARDGATE_MEM_ROWS must be at least 1000");

    let started = Instant::now();
    let mut proxy = ProxyRun::start();
    let cfg = &proxy.cfg;
    let nodes: Vec<Endpoint> = DATA_SOURCES
        .iter()
        .map(|ds| data_source_endpoint(cfg, ds).expect("the data source is configured"))
        .collect();
    let ep = proxy_endpoint(cfg, proxy.proxy.addr);
    say(&format!(
        "memory: shardgate pid {} on {}, {} rows",
        proxy.proxy.pid(),
        proxy.proxy.addr,
        rows
    ));

    let outcome = run(&ep, &nodes, &mut proxy.proxy, rows).await;

    // Cleanup whatever happened: through the proxy, then directly (idempotent).
    if let Ok(mut c) = ep.connect().await {
        let _ = sqlx::raw_sql("DROP TABLE IF EXISTS mem_rows")
            .execute(&mut c)
            .await;
        let _ = c.close().await;
    }
    drop_physical(&nodes).await;
    let log = proxy.end();

    match outcome {
        Ok(report) => {
            for line in &report.lines {
                say(line);
            }
            say(&format!(
                "memory: done in {:.1}s, proxy build included (budget 60s at N = 1,000,000)",
                started.elapsed().as_secs_f64()
            ));
            let growth_mib = report.worst_growth_kib as f64 / 1024.0;
            assert!(
                report.worst_growth_kib < BOUND_MIB * 1024,
                "the proxy's peak RSS grew by {growth_mib:.1} MiB during the deep page \
                 (bound {BOUND_MIB} MiB; {} MiB of row data went through it)\n{}",
                report.data_mib,
                report.lines.join("\n")
            );
        }
        Err(e) => panic!("{e}\n--- shardgate log (tail) ---\n{log}"),
    }
}

struct Report {
    lines: Vec<String>,
    worst_growth_kib: u64,
    data_mib: u64,
}

async fn run(
    ep: &Endpoint,
    nodes: &[Endpoint],
    proxy: &mut ProxyProcess,
    rows: u64,
) -> Result<Report, String> {
    let mut lines = Vec::new();
    let mut conn = ep
        .connect()
        .await
        .map_err(|e| format!("connect to shardgate at {}: {e}", ep.addr()))?;

    // Schema: through the proxy (DDL fans out to the 16 physical tables),
    // after removing any leftover of an earlier run directly.
    drop_physical(nodes).await;
    exec(&mut conn, "DROP TABLE IF EXISTS mem_rows").await?;
    exec(
        &mut conn,
        "CREATE TABLE mem_rows (id BIGINT NOT NULL PRIMARY KEY, pad VARCHAR(120) NOT NULL)",
    )
    .await?;

    // Data: straight into the physical tables, all nodes at once.
    let t = Instant::now();
    let loads = nodes
        .iter()
        .enumerate()
        .map(|(ds, node)| load_node(node.clone(), ds as u64, rows));
    for r in futures_util::future::join_all(loads).await {
        r?;
    }
    lines.push(format!(
        "memory: loaded {rows} rows into 16 physical tables in {:.1}s",
        t.elapsed().as_secs_f64()
    ));

    // The data is where the rules say: the count, and point selects routed by id.
    let count: i64 = sqlx::raw_sql("SELECT COUNT(*) FROM mem_rows")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("SELECT COUNT(*) FROM mem_rows: {e}"))?
        .try_get(0)
        .map_err(|e| e.to_string())?;
    if count != rows as i64 {
        return Err(format!(
            "SELECT COUNT(*) FROM mem_rows gave {count}, want {rows}"
        ));
    }
    for id in [1, 2, 3, 4, 5, 17, rows / 2, rows - 1, rows] {
        let got = sqlx::query("SELECT id, pad FROM mem_rows WHERE id = ?")
            .bind(id as i64)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| format!("SELECT ... WHERE id = {id}: {e}"))?;
        if got.len() != 1 || got[0].try_get::<String, _>(1).ok() != Some(pad_of(id)) {
            return Err(format!(
                "SELECT id, pad FROM mem_rows WHERE id = {id} through shardgate gave {} rows, want the row",
                got.len()
            ));
        }
    }

    let offset = rows - 10;
    let sql = format!("SELECT * FROM mem_rows ORDER BY id LIMIT {offset}, 10");
    let data_mib = rows * (PAD_LEN as u64 + 8) / (1024 * 1024);
    let before = proxy.memory()?;
    lines.push(format!(
        "memory: before:   VmHWM {} KiB, VmRSS {} KiB",
        before.hwm_kib, before.rss_kib
    ));
    let mut worst = 0u64;

    // 1. text protocol
    let sent0 = bytes_sent(nodes).await?;
    let t = Instant::now();
    let got = sqlx::raw_sql(&sql)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let elapsed = t.elapsed();
    check_page(&got, offset, &sql)?;
    let after = proxy.memory()?;
    let growth = after.hwm_kib.saturating_sub(before.hwm_kib);
    worst = worst.max(growth);
    let sent1 = bytes_sent(nodes).await?;
    let read_mib = sent1.saturating_sub(sent0) / (1024 * 1024);
    lines.push(format!(
        "memory: text      `{sql}`: {:.2}s, data sources sent {read_mib} MiB, VmHWM {} KiB (+{:.1} MiB), VmRSS {} KiB",
        elapsed.as_secs_f64(),
        after.hwm_kib,
        growth as f64 / 1024.0,
        after.rss_kib
    ));
    // The premise of the test: the rows did go through the proxy (each node
    // returns all its rows, LIMIT 0, offset+10), as the four servers'
    // Bytes_sent shows (global counters: other clients of the shared sandbox
    // can only add to it). If this ever fails because the proxy found a
    // cheaper plan, the test needs a query that still streams the rows.
    if read_mib < data_mib / 2 {
        return Err(format!(
            "{sql}: the data sources sent only {read_mib} MiB during the query, less than half of \
             the ~{data_mib} MiB of rows: the query no longer streams the rows through the merge"
        ));
    }

    // 2. prepared statement, offset and count as parameters
    let psql = "SELECT * FROM mem_rows ORDER BY id LIMIT ?, ?";
    let t = Instant::now();
    let got = sqlx::query(psql)
        .bind(offset as i64)
        .bind(10i64)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("{psql} [{offset}, 10]: {e}"))?;
    let elapsed = t.elapsed();
    check_page(&got, offset, psql)?;
    let after2 = proxy.memory()?;
    let growth = after2.hwm_kib.saturating_sub(before.hwm_kib);
    worst = worst.max(growth);
    lines.push(format!(
        "memory: prepared  `{psql}` [{offset}, 10]: {:.2}s, data sources sent {} MiB, VmHWM {} KiB (+{:.1} MiB since before), VmRSS {} KiB",
        elapsed.as_secs_f64(),
        bytes_sent(nodes).await?.saturating_sub(sent1) / (1024 * 1024),
        after2.hwm_kib,
        growth as f64 / 1024.0,
        after2.rss_kib
    ));
    lines.push(format!(
        "memory: peak RSS growth {:.1} MiB, bound {BOUND_MIB} MiB; the merged rows were ~{data_mib} MiB of data \
         (~{} MiB on the wire)",
        worst as f64 / 1024.0,
        rows * (PAD_LEN as u64 + 4 + 2 + 8) / (1024 * 1024)
    ));

    exec(&mut conn, "DROP TABLE mem_rows").await?;
    let _ = conn.close().await;
    Ok(Report {
        lines,
        worst_growth_kib: worst,
        data_mib,
    })
}

/// The 10 rows must be ids offset+1 ..= offset+10, in order, with their pads.
fn check_page(got: &[sqlx::mysql::MySqlRow], offset: u64, sql: &str) -> Result<(), String> {
    let mut seen = Vec::new();
    for row in got {
        let id: i64 = row.try_get(0).map_err(|e| format!("{sql}: id: {e}"))?;
        let pad: String = row.try_get(1).map_err(|e| format!("{sql}: pad: {e}"))?;
        seen.push((id as u64, pad));
    }
    let want: Vec<(u64, String)> = (offset + 1..=offset + 10)
        .map(|id| (id, pad_of(id)))
        .collect();
    if seen != want {
        let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
        return Err(format!(
            "{sql}: got ids {ids:?} (pads equal: {}), want {}..={}",
            seen.iter().zip(&want).all(|(a, b)| a.1 == b.1),
            offset + 1,
            offset + 10
        ));
    }
    Ok(())
}

/// Loads ds<ds>'s share of ids 1..=rows: id % 4 = ds, table (id DIV 4) % 4.
/// Without binary logging (the replicas keep the empty tables; the DROP at
/// the end still reaches them), to spare the shared machine 1M replicated rows.
async fn load_node(node: Endpoint, ds: u64, rows: u64) -> Result<(), String> {
    let mut c = node
        .connect()
        .await
        .map_err(|e| format!("connect to {}/{}: {e}", node.addr(), node.database))?;
    let _ = sqlx::raw_sql("SET SESSION sql_log_bin = 0")
        .execute(&mut c)
        .await;
    for t in 0..TABLES_PER_NODE {
        let sql = format!(
            "INSERT INTO mem_rows_{t} (id, pad) SELECT seq, {PAD_SQL} FROM seq_1_to_{rows} \
             WHERE seq % 4 = {ds} AND (seq DIV 4) % {TABLES_PER_NODE} = {t}"
        );
        sqlx::raw_sql(&sql)
            .execute(&mut c)
            .await
            .map_err(|e| format!("{} on {}/{}: {e}", sql, node.addr(), node.database))?;
    }
    let _ = c.close().await;
    Ok(())
}

/// The sum of the data sources' `Bytes_sent` status counters.
async fn bytes_sent(nodes: &[Endpoint]) -> Result<u64, String> {
    let mut total = 0u64;
    for node in nodes {
        let mut c = node
            .connect()
            .await
            .map_err(|e| format!("connect to {}: {e}", node.addr()))?;
        let row = sqlx::raw_sql("SHOW GLOBAL STATUS LIKE 'Bytes_sent'")
            .fetch_one(&mut c)
            .await
            .map_err(|e| format!("SHOW GLOBAL STATUS on {}: {e}", node.addr()))?;
        let v: String = row.try_get(1).map_err(|e| e.to_string())?;
        total += v
            .parse::<u64>()
            .map_err(|e| format!("Bytes_sent {v:?}: {e}"))?;
        let _ = c.close().await;
    }
    Ok(total)
}

async fn drop_physical(nodes: &[Endpoint]) {
    for node in nodes {
        if let Ok(mut c) = node.connect().await {
            for t in 0..TABLES_PER_NODE {
                let _ = sqlx::raw_sql(&format!("DROP TABLE IF EXISTS mem_rows_{t}"))
                    .execute(&mut c)
                    .await;
            }
            let _ = c.close().await;
        }
    }
}

async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<(), String> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("{sql} (through shardgate): {e}"))
}

// ------------------------------------------------------------ config ----

/// The proxy binary running on the memory tests' config in a scratch
/// folder of its own (removed by [`ProxyRun::end`]).
struct ProxyRun {
    proxy: ProxyProcess,
    cfg: Config,
    tmp: PathBuf,
}

impl ProxyRun {
    fn start() -> ProxyRun {
        let tmp = scratch_dir("memtest");
        let (config_path, cfg) = write_child_config(&tmp, MEM_RULES);
        let proxy = ProxyProcess::start(&shardgate_binary(), &config_path, &tmp);
        ProxyRun { proxy, cfg, tmp }
    }

    /// Stops the proxy; its log's tail.
    fn end(mut self) -> String {
        let log = self.proxy.stop();
        let _ = std::fs::remove_dir_all(&self.tmp);
        log
    }
}

// ------------------------------------------------------------- proxy ----

struct Memory {
    hwm_kib: u64,
    rss_kib: u64,
}

/// The proxy's peak and current resident memory.
trait ProcessMemory {
    fn memory(&mut self) -> Result<Memory, String>;
}

impl ProcessMemory for ProxyProcess {
    fn memory(&mut self) -> Result<Memory, String> {
        if let Some(status) = self.exited() {
            return Err(format!("shardgate exited ({status})"));
        }
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let field = |name: &str| -> Result<u64, String> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            hwm_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }
}
