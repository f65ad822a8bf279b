//! Hostile input: statements and packets no well-behaved driver sends,
//! each sent to ShardGate and to MariaDB itself (ds0's primary, the
//! reference), whose answers must agree or stay within a stated bound,
//! and after each of which the proxy must still be serving.
//!
//! The proxy runs as a child process (the `shardgate` binary, as in the
//! `memory` tests), so that its liveness, peak RSS and connections
//! are its own. Its config is the seed's plus `hostile_users`, sharded on
//! `user_id` over ds0..ds3 (4 × 4 physical tables), with reads on the
//! primaries; `hostile_plain` is the same rows in one unsharded table (on
//! ds0), whose answers are the reference for the sharded statements.
//! The packets are written by [`RawConn`], a raw protocol client.
//!
//! The probes, run in turn on one proxy and named in the output
//! (`hostile: [N name] PASS|FAIL ...`):
//! 1. long `user_id = N OR ...` chains (1,000 and 50,000 terms) on the
//!    sharded table answer as on the unsharded one (this aborted the proxy
//!    before commit c314bff), the proxy's peak-RSS growth for the longer
//!    under [`OR_CHAIN_BOUND_FACTOR`] × the statement's size;
//! 2. a 20,000-term `1 + 2 - 3 ...` chain, whole and cut by a syntax
//!    error: a clean error or the right answer;
//! 3. malformed COM_STMT_EXECUTE packets of `SELECT ? + ?`: the codes
//!    MariaDB answers (1835, 1210) measured in the same run;
//! 4. COM_STMT_FETCH of an unknown statement (1243) and of one without a
//!    cursor (1421);
//! 5. an empty command packet (1047);
//! 6. a 200,000-value `IN (...)`: the answer, and the proxy's peak-RSS
//!    growth under [`IN_LIST_BOUND_FACTOR`] × the statement's size; an
//!    UPDATE by the same list changes the rows it changes unsharded;
//! 7. while one session's large sharded statement is in flight, another
//!    session's `SELECT 1`s complete (times printed, never asserted);
//! 8. a canary: the proxy alive, a query answered, and no client
//!    connection left open once the probes' clients have gone;
//! 9. a 20,000-row INSERT into the sharded table leaves the rows the same
//!    INSERT leaves in the unsharded one, the proxy's peak-RSS growth under
//!    [`INSERT_BOUND_FACTOR`] × the statement's size;
//! 10. a 20 MiB UPDATE on every node (no sharding condition), and one on
//!     one node, each matching no row: MariaDB's answer, and the proxy's
//!     peak-RSS growth under
//!     [`FANOUT_UPDATE_BOUND_FACTOR`] × the statement's size;
//! 11. an INSERT of 50,000 rows of expressions, more tokens than the
//!     analysis parses: refused (1235) before the parse, the proxy's
//!     peak-RSS growth under [`FN_INSERT_BOUND_FACTOR`] × its size;
//! 12. an `IN` list of 1,000,000 negative integers on the unsharded table
//!     (three tokens a value, none cut): MariaDB's answer, and the proxy's
//!     peak-RSS growth under [`DENSE_BOUND_FACTOR`] × its size;
//! 13. a 20 MiB UPDATE of the unsharded table, passed through: MariaDB's
//!     answer, and the proxy's peak-RSS growth under
//!     [`PLAIN_UPDATE_BOUND_FACTOR`] × its size;
//! 14. an INSERT of [`GENERATED_ROWS`] rows that name no `user_id`, whose
//!     keys the proxy generates: every row stored once, on the physical
//!     table its key routes to, and the proxy's peak-RSS growth under
//!     [`GENERATED_BOUND_FACTOR`] × its size.
//!
//! Each peak is measured from the peak reset just before its statement
//! ([`ProxyProcess::reset_peak`]), so over the RSS the proxy then holds;
//! probes 9, 1, 6, 11, 14, 10, 13 and 12 run first, in the order of the memory
//! they are expected to take, so that what an earlier one freed hides
//! little of a later one's growth.
//!
//! The test fails at its end, listing every failed probe; a probe after
//! which the proxy is gone fails, and so do those that could not run.
//! Creates and drops `hostile_users` (physical `hostile_users_0..3` on
//! ds0..ds3) and `hostile_plain` (on ds0), and nothing else.

use shardgate_integration_tests::binary::{
    scratch_dir, shardgate_binary, write_child_config, ProxyProcess,
};
use shardgate_integration_tests::raw_mysql::{
    query_payload, Prepared, RawConn, Reply, COM_STMT_EXECUTE, COM_STMT_FETCH,
};
use shardgate_integration_tests::{
    data_source_endpoint, proxy_endpoint, sandbox, sandbox_ready, say, test_config, Endpoint,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDED: &str = "hostile_users";
const PLAIN: &str = "hostile_plain";
/// Rows `user_id` 1..=ROWS, in both tables.
const ROWS: u64 = 2_000;
const COLUMNS: &str = "(user_id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL)";
const RULES: &str = r#"
[tables.hostile_users]
nodes = "ds${0..3}.hostile_users_${0..3}"
database = { column = "user_id", algorithm = "mod", count = 4 }
table = { column = "user_id", expression = "hostile_users_${(user_id / 4) % 4}" }
key = { column = "user_id", generator = "snowflake" }
"#;
const DATA_SOURCES: [&str; 4] = ["ds0", "ds1", "ds2", "ds3"];
const TABLES_PER_NODE: u32 = 4;

/// Probe 1: the OR chains' lengths.
const OR_CHAINS: [usize; 2] = [1_000, 50_000];
/// Probe 1: the proxy's peak-RSS growth allowed for the longer chain,
/// times the statement's size. Measured 2.4 x here (3.7 x in a release
/// build for 1,000,000 terms, 19 MiB) with the run's tokens left out of
/// the session's and its values held as their text; 17.8 x before, 128 x
/// before runs of equalities were cut before the parse.
const OR_CHAIN_BOUND_FACTOR: u64 = 8;
/// Probe 9: the INSERT's rows, and the first row's `user_id`.
const INSERT_ROWS: u64 = 20_000;
const INSERT_FIRST_ID: u64 = 1_000_001;
/// Probe 9: the proxy's peak-RSS growth allowed, times the statement's
/// size. Measured 3.2 x here (3.8 x in a release build for 1,500,000
/// rows, 20 MB) with the rows' tokens left out of the session's and
/// only their sharding values kept, 8 bytes each, and each node's rows
/// listed in 4 bytes a row; 3.7 x (4.9 x) with 16 and 8, 15.8 x before,
/// 90 x before rows after the first were cut before the parse.
const INSERT_BOUND_FACTOR: u64 = 5;
/// Probe 11: the rows of the INSERT of expressions.
const FN_INSERT_ROWS: u64 = 50_000;
/// Probe 11: the proxy's peak-RSS growth allowed, times the statement's
/// size: the statement is refused before it is parsed. What remains is the
/// session's tokens of it (11 a row, their starts only, about a byte and
/// a quarter each, in a `lex::TokenList`): 1.0 x measured here; 1.3 x at
/// 4 bytes a token, 2.6 x at 8, 25.5 x at 40, 219 x when the statement
/// was parsed.
const FN_INSERT_BOUND_FACTOR: u64 = 2;
/// Probe 14: the rows of the INSERT whose keys the proxy generates.
const GENERATED_ROWS: usize = 400_000;
/// Probe 14: the proxy's peak-RSS growth allowed, times the statement's
/// size (7 bytes a row, `('g'), `). Each node's rows are kept as their
/// indexes and written out, keys and all, as the node's statement is
/// sent; built whole, each node's statement took 28 bytes a row, and the
/// keys 8 more (9.4 x for 20 MB in a release build, 3.4 x now).
const GENERATED_BOUND_FACTOR: u64 = 5;
/// Probe 10: the fanned-out UPDATE's string literal, in MiB.
const FANOUT_UPDATE_MIB: usize = 20;
/// Probe 10: the proxy's peak-RSS growth allowed, times the statement's
/// size. Measured 1.24 x here with each node's statement streamed to its
/// data source; 7.2 x (release) when each was built whole before it was
/// sent.
const FANOUT_UPDATE_BOUND_FACTOR: u64 = 4;
/// Probe 10 on one node: the same, for one node's statement. Measured 2.0 x
/// here (1.4 x on a fresh release proxy), streamed as a fanned-out one's;
/// 4.8 x here when its command was built whole and then copied into the
/// send buffer.
const ONE_NODE_UPDATE_BOUND_FACTOR: u64 = 3;
/// Probe 13: the proxy's peak-RSS growth allowed, times the statement's
/// size, for a 20 MiB UPDATE of the unsharded table. Measured 1.2 x in a
/// release build with the statement streamed to its data source from the
/// client's text; 3.2 x when it was copied into a command and then into
/// the send buffer.
const PLAIN_UPDATE_BOUND_FACTOR: u64 = 2;
/// Probe 12: the values of the `IN` list of negative integers.
const DENSE_VALUES: u64 = 1_000_000;
/// Probe 12: the proxy's peak-RSS growth allowed, times the statement's
/// size. A list of negative integers is not cut (`shard::condensed` cuts
/// digits, commas and spaces only): its three tokens a value are all in
/// the session's tokens, their starts only, about a byte and a quarter
/// each (`lex::TokenList` of a long statement of short tokens), and the
/// statement streamed to its data source. Measured 1.0 x here; 2.5 x with
/// 4 bytes a token, 4.5 x when the statement was copied twice to be sent,
/// 5.8 x with 8 bytes a token, some 16 x with 40.
const DENSE_BOUND_FACTOR: u64 = 2;
/// Probe 2: the arithmetic chain's terms.
const ARITH_TERMS: usize = 20_000;
/// Probe 6: the `IN (...)` list's values.
const IN_LIST_VALUES: u64 = 200_000;
/// Probe 6: the proxy's peak-RSS growth allowed, times the statement's size.
/// Measured 2.1 x here (5.8 x on a fresh release proxy, whose fixed costs
/// weigh more; 3.2 x for 2,600,000 values, 20 MB) with the list's tokens
/// left out of the session's and its values held as their text, one per
/// set of nodes; 25.6 x before, 111 x before long lists were cut before
/// the parse.
const IN_LIST_BOUND_FACTOR: u64 = 10;
/// Probe 7: the string literal of the first large statement, in MiB.
const LITERAL_MIB: usize = 5;
/// Probe 7: the terms of the second large statement's OR chain.
const BIG_OR_TERMS: usize = 100_000;

/// The name every row of `user_id` has.
fn name_of(id: u64) -> String {
    format!("user-{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_and_packets_get_mariadbs_answers_and_leave_the_proxy_serving() {
    let _sandbox = sandbox::shared().await;
    const TEST: &str =
        "hostile_statements_and_packets_get_mariadbs_answers_and_leave_the_proxy_serving";
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let tmp = scratch_dir("hostile");
    let (config_path, cfg) = write_child_config(&tmp, RULES);
    let proxy = ProxyProcess::start(&shardgate_binary(), &config_path, &tmp);
    let mut ctx = Ctx {
        proxy_ep: proxy_endpoint(&cfg, proxy.addr),
        direct_ep: data_source_endpoint(&cfg, "ds0").expect("ds0 is configured"),
        nodes: DATA_SOURCES
            .iter()
            .map(|ds| data_source_endpoint(&cfg, ds).expect("the data source is configured"))
            .collect(),
        proxy,
        results: Vec::new(),
    };
    say(&format!(
        "hostile: shardgate pid {} on {}, reference MariaDB {} (database {})",
        ctx.proxy.pid(),
        ctx.proxy.addr,
        ctx.direct_ep.addr(),
        ctx.direct_ep.database
    ));

    let outcome = match setup(&ctx).await {
        Ok(()) => run_probes(&mut ctx).await,
        Err(e) => Err(format!("setup: {e}")),
    };
    cleanup(&ctx).await;
    let log = ctx.proxy.stop();
    let _ = std::fs::remove_dir_all(&tmp);

    let failed: Vec<String> = ctx
        .results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("[{name}] {e}")))
        .collect();
    say(&format!(
        "hostile: {} probes, {} passed, {} failed",
        ctx.results.len(),
        ctx.results.len() - failed.len(),
        failed.len()
    ));
    if let Err(e) = outcome {
        panic!("{e}\n--- shardgate log (tail) ---\n{log}");
    }
    assert!(
        failed.is_empty(),
        "hostile probes failed:\n{}\n--- shardgate log (tail) ---\n{log}",
        failed.join("\n")
    );
}

/// The proxy under test, where to reach it and the reference, and the
/// probes' outcomes so far.
struct Ctx {
    proxy: ProxyProcess,
    proxy_ep: Endpoint,
    /// ds0's primary, database ds0: the reference MariaDB.
    direct_ep: Endpoint,
    /// The primaries of ds0..ds3 (for the cleanup).
    nodes: Vec<Endpoint>,
    /// Each probe's name and outcome (a summary, or why it failed).
    results: Vec<(String, Result<String, String>)>,
}

impl Ctx {
    async fn proxy_conn(&self) -> Result<RawConn, String> {
        connect(&self.proxy_ep).await
    }

    async fn direct_conn(&self) -> Result<RawConn, String> {
        connect(&self.direct_ep).await
    }

    /// Records a probe's outcome, failing it too when the proxy has gone.
    fn record(&mut self, name: &str, outcome: Result<String, String>) {
        let outcome = match (outcome, self.proxy.exited()) {
            (Ok(s), None) => Ok(s),
            (Ok(s), Some(status)) => Err(format!("{s}; but the proxy exited: {status}")),
            (Err(e), None) => Err(e),
            (Err(e), Some(status)) => Err(format!("{e}; the proxy exited: {status}")),
        };
        match &outcome {
            Ok(s) => say(&format!("hostile: [{name}] PASS: {s}")),
            Err(e) => say(&format!("hostile: [{name}] FAIL: {e}")),
        }
        self.results.push((name.to_string(), outcome));
    }
}

async fn connect(ep: &Endpoint) -> Result<RawConn, String> {
    RawConn::connect(&ep.addr(), &ep.user, &ep.password, &ep.database).await
}

/// Runs the probes in turn; stops early (an error) only when the proxy is
/// gone, after recording the probe that saw it.
async fn run_probes(ctx: &mut Ctx) -> Result<(), String> {
    let clients_before = warm_up(ctx).await?;
    say(&format!(
        "hostile: after warm-up the proxy has {clients_before} client connections open, VmHWM {} KiB",
        ctx.proxy.status_kib("VmHWM:")?
    ));

    // The measured probes in the order of what they are expected to take:
    // each is measured over the RSS the proxy holds when it starts, and
    // memory an earlier one freed (kept by malloc) would hide part of a
    // larger later one's growth.
    let r = probe_insert(ctx).await;
    ctx.record(&format!("9 INSERT of {INSERT_ROWS} rows"), r);
    alive(ctx)?;

    for terms in OR_CHAINS {
        let r = probe_or_chain(ctx, terms).await;
        ctx.record(&format!("1 OR chain of {terms} terms"), r);
        alive(ctx)?;
    }

    let r = probe_in_list(ctx).await;
    ctx.record(&format!("6 IN list of {IN_LIST_VALUES} values"), r);
    alive(ctx)?;

    let r = probe_unparsed_insert(ctx).await;
    ctx.record(
        &format!("11 INSERT of {FN_INSERT_ROWS} rows of expressions"),
        r,
    );
    alive(ctx)?;

    let r = probe_generated_keys(ctx).await;
    ctx.record(
        &format!("14 INSERT of {GENERATED_ROWS} rows taking generated keys"),
        r,
    );
    alive(ctx)?;

    let r = probe_large_update(ctx, "name = 'nobody'", FANOUT_UPDATE_BOUND_FACTOR).await;
    let on = DATA_SOURCES.len() as u32 * TABLES_PER_NODE;
    ctx.record(
        &format!("10 UPDATE of {FANOUT_UPDATE_MIB} MiB fanned out to {on} tables"),
        r,
    );
    alive(ctx)?;

    let r = probe_plain_update(ctx).await;
    ctx.record(
        &format!("13 UPDATE of {FANOUT_UPDATE_MIB} MiB on the unsharded table"),
        r,
    );
    alive(ctx)?;

    let r = probe_dense_tokens(ctx).await;
    ctx.record(
        &format!("12 IN list of {DENSE_VALUES} negative integers, unsharded"),
        r,
    );
    alive(ctx)?;

    let r = probe_large_update(
        ctx,
        "user_id = 1 AND name = 'nobody'",
        ONE_NODE_UPDATE_BOUND_FACTOR,
    )
    .await;
    ctx.record(
        &format!("10 UPDATE of {FANOUT_UPDATE_MIB} MiB on one node"),
        r,
    );
    alive(ctx)?;

    let r = probe_arith_chain(ctx, false).await;
    ctx.record(&format!("2 arithmetic chain of {ARITH_TERMS} terms"), r);
    alive(ctx)?;
    let r = probe_arith_chain(ctx, true).await;
    ctx.record(
        &format!("2 arithmetic chain of {ARITH_TERMS} terms cut by `+ (`"),
        r,
    );
    alive(ctx)?;

    for case in ExecCase::ALL {
        let r = probe_malformed_execute(ctx, case).await;
        ctx.record(
            &format!("3{} COM_STMT_EXECUTE {}", case.letter(), case.what()),
            r,
        );
        alive(ctx)?;
    }

    let r = probe_fetch(ctx, false).await;
    ctx.record("4a COM_STMT_FETCH of an unknown statement", r);
    alive(ctx)?;
    let r = probe_fetch(ctx, true).await;
    ctx.record("4b COM_STMT_FETCH of a statement without a cursor", r);
    alive(ctx)?;

    let r = probe_empty_packet(ctx).await;
    ctx.record("5 zero-length command packet", r);
    alive(ctx)?;

    let literal = "a".repeat(LITERAL_MIB * 1024 * 1024);
    let r = probe_progress(ctx, &|t| {
        format!("SELECT user_id, name FROM {t} WHERE user_id = 1 OR name = '{literal}'")
    })
    .await;
    ctx.record(
        &format!("7a other sessions served during a {LITERAL_MIB} MiB sharded statement"),
        r,
    );
    alive(ctx)?;
    let ids: Vec<u64> = (1..=BIG_OR_TERMS as u64).collect();
    let r = probe_progress(ctx, &|t| or_chain_sql(t, &ids)).await;
    ctx.record(
        &format!("7b other sessions served during a {BIG_OR_TERMS}-term OR chain"),
        r,
    );
    alive(ctx)?;

    let r = probe_canary(ctx, clients_before).await;
    ctx.record("8 canary: alive, answering, client connections released", r);
    Ok(())
}

fn alive(ctx: &mut Ctx) -> Result<(), String> {
    match ctx.proxy.exited() {
        None => Ok(()),
        Some(status) => Err(format!(
            "the proxy exited ({status}); the remaining probes did not run"
        )),
    }
}

// ------------------------------------------------------------- setup ----

/// Creates both tables through the proxy and fills them with the same rows.
async fn setup(ctx: &Ctx) -> Result<(), String> {
    drop_physical(&ctx.nodes).await;
    let mut c = ctx.proxy_conn().await?;
    for table in [SHARDED, PLAIN] {
        expect_ok(&mut c, &format!("DROP TABLE IF EXISTS {table}")).await?;
        expect_ok(&mut c, &format!("CREATE TABLE {table} {COLUMNS}")).await?;
        let ids: Vec<u64> = (1..=ROWS).collect();
        for chunk in ids.chunks(250) {
            let values: Vec<String> = chunk
                .iter()
                .map(|id| format!("({id}, '{}')", name_of(*id)))
                .collect();
            expect_ok(
                &mut c,
                &format!(
                    "INSERT INTO {table} (user_id, name) VALUES {}",
                    values.join(", ")
                ),
            )
            .await?;
        }
        let count = c
            .query(&format!("SELECT COUNT(*) FROM {table}"))
            .await?
            .text_rows()?;
        if count != vec![vec![Some(ROWS.to_string())]] {
            return Err(format!("SELECT COUNT(*) FROM {table} gave {count:?}"));
        }
    }
    Ok(())
}

/// Three sessions at once run a sharded and a plain statement, so that the
/// pools hold what the probes will use; the client connections the proxy holds once
/// they have closed.
async fn warm_up(ctx: &mut Ctx) -> Result<usize, String> {
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let ep = ctx.proxy_ep.clone();
        sessions.push(tokio::spawn(async move {
            let mut c = connect(&ep).await?;
            for sql in [
                format!("SELECT user_id, name FROM {SHARDED} WHERE user_id IN (1, 2, 3, 4, 5)"),
                format!("SELECT user_id, name FROM {PLAIN} WHERE user_id = 1"),
                "SELECT 1".to_string(),
            ] {
                match c.query(&sql).await? {
                    Reply::ResultSet { .. } => {}
                    other => return Err(format!("warm-up `{sql}`: {other}")),
                }
            }
            Ok::<(), String>(())
        }));
    }
    for s in sessions {
        s.await.map_err(|e| format!("warm-up session: {e}"))??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.proxy.client_connections()
}

/// Drops both tables through the proxy, then their physical tables
/// straight (idempotent; the proxy may be gone).
async fn cleanup(ctx: &Ctx) {
    if let Ok(mut c) = ctx.proxy_conn().await {
        for table in [SHARDED, PLAIN] {
            let _ = c.query(&format!("DROP TABLE IF EXISTS {table}")).await;
        }
    }
    drop_physical(&ctx.nodes).await;
}

async fn drop_physical(nodes: &[Endpoint]) {
    for (i, node) in nodes.iter().enumerate() {
        if let Ok(mut c) = connect(node).await {
            for t in 0..TABLES_PER_NODE {
                let _ = c
                    .query(&format!("DROP TABLE IF EXISTS {SHARDED}_{t}"))
                    .await;
            }
            if i == 0 {
                let _ = c.query(&format!("DROP TABLE IF EXISTS {PLAIN}")).await;
            }
        }
    }
}

async fn expect_ok(c: &mut RawConn, sql: &str) -> Result<(), String> {
    match c.query(sql).await? {
        Reply::Ok => Ok(()),
        other => Err(format!("{}: {other}", head(sql))),
    }
}

/// The start of a statement, for messages.
fn head(sql: &str) -> String {
    if sql.len() <= 80 {
        return sql.to_string();
    }
    let cut: String = sql.chars().take(80).collect();
    format!("{cut}... ({} bytes)", sql.len())
}

/// Two answers agree: the same rows (in any order), or the same error code.
fn same_answer(a: &Reply, b: &Reply) -> bool {
    match (a, b) {
        (Reply::ResultSet { .. }, Reply::ResultSet { .. }) => {
            matches!((a.text_rows(), b.text_rows()), (Ok(x), Ok(y)) if x == y)
        }
        (Reply::Err { code: x, .. }, Reply::Err { code: y, .. }) => x == y,
        (x, y) => x == y,
    }
}

/// The expected rows of `user_id`s `ids` (those that exist), sorted as
/// [`Reply::text_rows`] sorts.
fn rows_of(ids: impl IntoIterator<Item = u64>) -> Vec<Vec<Option<String>>> {
    let mut rows: Vec<Vec<Option<String>>> = ids
        .into_iter()
        .filter(|id| (1..=ROWS).contains(id))
        .map(|id| vec![Some(id.to_string()), Some(name_of(id))])
        .collect();
    rows.sort();
    rows.dedup();
    rows
}

// ------------------------------------------------------------ probes ----

fn or_chain_sql(table: &str, ids: &[u64]) -> String {
    let terms: Vec<String> = ids.iter().map(|id| format!("user_id = {id}")).collect();
    format!(
        "SELECT user_id, name FROM {table} WHERE {}",
        terms.join(" OR ")
    )
}

/// Probe 1: `user_id = a OR user_id = b ...` of `terms` distinct ids (about
/// half of them existing) on both tables through the proxy.
async fn probe_or_chain(ctx: &mut Ctx, terms: usize) -> Result<String, String> {
    let span = 2 * terms.max(ROWS as usize) as u64;
    let ids: Vec<u64> = (0..terms as u64).map(|i| (i * 7919) % span + 1).collect();
    let mut c = ctx.proxy_conn().await?;
    let sharded_sql = or_chain_sql(SHARDED, &ids);
    let size = sharded_sql.len() as u64;
    let (sharded, took, peak) =
        measured_query(ctx, &mut c, &sharded_sql, OR_CHAIN_BOUND_FACTOR).await?;
    let plain = c.query(&or_chain_sql(PLAIN, &ids)).await?;
    let want = rows_of(ids.iter().copied());
    let summary = format!(
        "{size} bytes; sharded: {sharded} in {:.2}s; unsharded: {plain}; {} rows expected; {peak}",
        took.as_secs_f64(),
        want.len()
    );
    if !same_answer(&sharded, &plain) {
        return Err(format!("the answers differ: {summary}"));
    }
    if sharded.text_rows().ok() != Some(want) {
        return Err(format!("not the expected rows: {summary}"));
    }
    // The short chain's growth is the pools' and buffers' more than its own.
    if terms == OR_CHAINS[1] && peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// What one statement's run through [`measured_query`] found.
struct PeakGrowth {
    text: String,
    over: bool,
}

impl std::fmt::Display for PeakGrowth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Runs `sql` on `c` with the proxy's peak reset to its current RSS just
/// before: its reply, how long it took, and the peak's growth against
/// `factor` × the statement's size.
async fn measured_query(
    ctx: &mut Ctx,
    c: &mut RawConn,
    sql: &str,
    factor: u64,
) -> Result<(Reply, Duration, PeakGrowth), String> {
    ctx.proxy.reset_peak()?;
    let before = ctx.proxy.status_kib("VmHWM:")?;
    let t = Instant::now();
    let reply = c.query(sql).await?;
    let took = t.elapsed();
    let after = ctx.proxy.status_kib("VmHWM:")?;
    let size = sql.len() as u64;
    let growth = after.saturating_sub(before) * 1024;
    let bound = factor * size;
    let peak = PeakGrowth {
        text: format!(
            "VmHWM {before} -> {after} KiB (+{:.1} MiB), {:.1} x the statement's size (bound {factor} x = {:.1} MiB)",
            growth as f64 / 1048576.0,
            growth as f64 / size as f64,
            bound as f64 / 1048576.0
        ),
        over: growth >= bound,
    };
    Ok((reply, took, peak))
}

/// Probe 9: one INSERT of [`INSERT_ROWS`] rows into each table; the rows
/// the sharded one holds afterwards are those the unsharded one holds.
async fn probe_insert(ctx: &mut Ctx) -> Result<String, String> {
    let ids = INSERT_FIRST_ID..INSERT_FIRST_ID + INSERT_ROWS;
    let sql = |t: &str| {
        let rows: Vec<String> = ids
            .clone()
            .map(|id| format!("({id}, 'it''s \\'{id}')"))
            .collect();
        format!("INSERT INTO {t} (user_id, name) VALUES {}", rows.join(", "))
    };
    let sharded_sql = sql(SHARDED);
    let size = sharded_sql.len() as u64;
    let mut c = ctx.proxy_conn().await?;
    let (sharded, took, peak) =
        measured_query(ctx, &mut c, &sharded_sql, INSERT_BOUND_FACTOR).await?;
    let plain = c.query(&sql(PLAIN)).await?;
    let read = |t: &str| {
        format!("SELECT user_id, name FROM {t} WHERE user_id >= {INSERT_FIRST_ID} ORDER BY user_id")
    };
    let sharded_rows = c.query(&read(SHARDED)).await?;
    let plain_rows = c.query(&read(PLAIN)).await?;
    for t in [SHARDED, PLAIN] {
        c.query(&format!(
            "DELETE FROM {t} WHERE user_id >= {INSERT_FIRST_ID}"
        ))
        .await?;
    }
    let summary = format!(
        "statement {size} bytes; sharded: {sharded} in {:.2}s; unsharded: {plain}; read back: {sharded_rows}; {peak}",
        took.as_secs_f64()
    );
    if !same_answer(&sharded, &plain) {
        return Err(format!("the answers differ: {summary}"));
    }
    match (sharded_rows.text_rows(), plain_rows.text_rows()) {
        (Ok(a), Ok(b)) if a == b && a.len() as u64 == INSERT_ROWS => {}
        _ => return Err(format!("the rows differ: {summary}")),
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 14: one INSERT of [`GENERATED_ROWS`] rows without their
/// `user_id`, which the proxy generates: each row is stored once, on the
/// physical table its key routes to (read on the primaries directly).
async fn probe_generated_keys(ctx: &mut Ctx) -> Result<String, String> {
    const NAME: &str = "g";
    let sql = format!(
        "INSERT INTO {SHARDED} (name) VALUES {}",
        vec![format!("('{NAME}')"); GENERATED_ROWS].join(", ")
    );
    let mut c = ctx.proxy_conn().await?;
    let (reply, took, peak) = measured_query(ctx, &mut c, &sql, GENERATED_BOUND_FACTOR).await?;
    let (mut stored, mut misplaced) = (0, Vec::new());
    for (d, node) in ctx.nodes.iter().enumerate() {
        let mut direct = connect(node).await?;
        for t in 0..TABLES_PER_NODE {
            let ids = direct
                .query(&format!(
                    "SELECT user_id FROM {SHARDED}_{t} WHERE name = '{NAME}'"
                ))
                .await?
                .text_rows()?;
            for id in ids.iter().filter_map(|row| row.first()?.as_deref()) {
                stored += 1;
                let id: u64 = id.parse().map_err(|e| format!("user_id {id}: {e}"))?;
                if id % 4 != d as u64 || (id / 4) % 4 != u64::from(t) {
                    misplaced.push(format!("{id} on ds{d}.{SHARDED}_{t}"));
                }
            }
        }
    }
    c.query(&format!("DELETE FROM {SHARDED} WHERE name = '{NAME}'"))
        .await?;
    let summary = format!(
        "statement {} bytes; {reply} in {:.2}s; {stored} rows stored; {peak}",
        sql.len(),
        took.as_secs_f64()
    );
    if reply != Reply::Ok || stored != GENERATED_ROWS {
        return Err(format!("not every row was stored once: {summary}"));
    }
    if !misplaced.is_empty() {
        return Err(format!(
            "rows on another node than their key's: {}; {summary}",
            misplaced[..misplaced.len().min(5)].join(", ")
        ));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 11: an INSERT whose rows hold expressions (`CONCAT('n', id)`),
/// which the analysis would have to parse, of more tokens than it parses
/// (`MAX_PARSED_TOKENS`): refused with 1235 before the parse (it took 321
/// MiB for 1.5 MiB at 50,000 rows), the proxy's peak-RSS growth under
/// [`FN_INSERT_BOUND_FACTOR`] × the statement's size; nothing inserted.
async fn probe_unparsed_insert(ctx: &mut Ctx) -> Result<String, String> {
    let ids = INSERT_FIRST_ID..INSERT_FIRST_ID + FN_INSERT_ROWS;
    let rows: Vec<String> = ids.map(|id| format!("({id}, CONCAT('n', {id}))")).collect();
    let sql = format!(
        "INSERT INTO {SHARDED} (user_id, name) VALUES {}",
        rows.join(", ")
    );
    let mut c = ctx.proxy_conn().await?;
    let (reply, took, peak) = measured_query(ctx, &mut c, &sql, FN_INSERT_BOUND_FACTOR).await?;
    let inserted = c
        .query(&format!(
            "SELECT COUNT(*) FROM {SHARDED} WHERE user_id >= {INSERT_FIRST_ID}"
        ))
        .await?;
    let summary = format!(
        "statement {} bytes; {reply} in {:.2}s; rows inserted: {inserted}; {peak}",
        sql.len(),
        took.as_secs_f64()
    );
    let refused = matches!(&reply, Reply::Err { code: 1235, message, .. }
        if message.contains("tokens") && message.contains("smaller statements"));
    if !refused || inserted.text_rows().ok() != Some(vec![vec![Some("0".to_owned())]]) {
        return Err(format!("not refused as too large: {summary}"));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 12: a statement of short tokens that nothing cuts, on the
/// unsharded table (classified, checked and passed through whole): the
/// answer MariaDB gives, and the proxy's peak-RSS growth under
/// [`DENSE_BOUND_FACTOR`] × its size.
async fn probe_dense_tokens(ctx: &mut Ctx) -> Result<String, String> {
    let values: Vec<String> = (1..=DENSE_VALUES).map(|v| format!("-{v}")).collect();
    let sql = format!(
        "SELECT COUNT(*) FROM {PLAIN} WHERE user_id IN ({}) OR user_id = 7",
        values.join(",")
    );
    let mut c = ctx.proxy_conn().await?;
    let (proxied, took, peak) = measured_query(ctx, &mut c, &sql, DENSE_BOUND_FACTOR).await?;
    let direct = ctx.direct_conn().await?.query(&sql).await?;
    let summary = format!(
        "statement {} bytes; via proxy: {proxied} in {:.2}s; MariaDB direct: {direct}; {peak}",
        sql.len(),
        took.as_secs_f64()
    );
    if !same_answer(&proxied, &direct)
        || proxied.text_rows().ok() != Some(vec![vec![Some("1".to_owned())]])
    {
        return Err(format!("not MariaDB's answer: {summary}"));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 2: `WHERE user_id = 5 + a - a + b - b ...` of [`ARITH_TERMS`]
/// terms (its value computed here), whole (`cut` false: the right row or a
/// clean error) or ending in `+ (` (MariaDB's syntax error, its code and
/// message, as text and prepared).
async fn probe_arith_chain(ctx: &Ctx, cut: bool) -> Result<String, String> {
    let mut expr = String::from("5");
    let mut value: i64 = 5;
    for i in 1..ARITH_TERMS {
        let a = ((i / 2) % 97 + 1) as i64;
        if i % 2 == 1 {
            expr.push_str(&format!(" + {a}"));
            value += a;
        } else {
            expr.push_str(&format!(" - {a}"));
            value -= a;
        }
    }
    if cut {
        expr.push_str(" + (");
    }
    let sql = |t: &str| format!("SELECT user_id, name FROM {t} WHERE user_id = {expr}");
    let mut c = ctx.proxy_conn().await?;
    let t = Instant::now();
    let sharded = c.query(&sql(SHARDED)).await?;
    let took = t.elapsed();
    let plain = c.query(&sql(PLAIN)).await?;
    let direct = ctx.direct_conn().await?.query(&sql(PLAIN)).await?;
    let summary = format!(
        "{} bytes, value {value}; sharded via proxy: {sharded} in {:.2}s; unsharded via proxy: \
         {plain}; MariaDB direct: {direct}",
        sql(SHARDED).len(),
        took.as_secs_f64()
    );
    let summary = match (sharded.code(), direct.code()) {
        (Some(p), Some(m)) if p != m => {
            format!("{summary} [note: the proxy's code {p} is not MariaDB's {m}]")
        }
        _ => summary,
    };
    let value = u64::try_from(value).map_err(|_| format!("a negative chain: {summary}"))?;
    if cut {
        // MariaDB's own syntax error (see `session/syntax.rs`), as text
        // and as a prepared statement.
        let prepared = |r: Result<Prepared, Reply>| r.err().unwrap_or(Reply::Ok);
        let sharded_prepare = prepared(c.prepare(&sql(SHARDED)).await?);
        let direct_prepare = prepared(ctx.direct_conn().await?.prepare(&sql(PLAIN)).await?);
        let same = |a: &Reply, b: &Reply| match (a, b) {
            (
                Reply::Err {
                    code: x,
                    message: m,
                    ..
                },
                Reply::Err {
                    code: y,
                    message: n,
                    ..
                },
            ) => x == y && m == n,
            _ => false,
        };
        if !same(&sharded, &direct) || !same(&sharded_prepare, &direct_prepare) {
            return Err(format!(
                "not MariaDB's syntax error: {summary}; prepared: {sharded_prepare} vs MariaDB's {direct_prepare}"
            ));
        }
    }
    match (&sharded, cut) {
        (Reply::Err { .. }, _) => Ok(summary),
        (Reply::ResultSet { .. }, false) if sharded.text_rows().ok() == Some(rows_of([value])) => {
            Ok(summary)
        }
        (_, true) => Err(format!("a syntax error answered as no error: {summary}")),
        _ => Err(format!("neither a clean error nor the row: {summary}")),
    }
}

/// Probe 3's malformed COM_STMT_EXECUTE packets of `SELECT ? + ?`.
#[derive(Clone, Copy)]
enum ExecCase {
    /// (a) the statement id and flags only (6 bytes).
    IdAndFlags,
    /// (b) the iteration count, then nothing (no NULL bitmap).
    NoNullBitmap,
    /// (c) the NULL bitmap, then nothing (no new-params-bound byte).
    NoBoundByte,
    /// (d) new-params-bound = 0 on the statement's first execution.
    UnboundFirst,
    /// (e) new-params-bound = 1, one type of the two.
    TypesCut,
    /// (f) both types, the second value cut short.
    ValuesCut,
}

impl ExecCase {
    const ALL: [ExecCase; 6] = [
        ExecCase::IdAndFlags,
        ExecCase::NoNullBitmap,
        ExecCase::NoBoundByte,
        ExecCase::UnboundFirst,
        ExecCase::TypesCut,
        ExecCase::ValuesCut,
    ];

    fn letter(self) -> char {
        match self {
            ExecCase::IdAndFlags => 'a',
            ExecCase::NoNullBitmap => 'b',
            ExecCase::NoBoundByte => 'c',
            ExecCase::UnboundFirst => 'd',
            ExecCase::TypesCut => 'e',
            ExecCase::ValuesCut => 'f',
        }
    }

    fn what(self) -> &'static str {
        match self {
            ExecCase::IdAndFlags => "with only id and flags",
            ExecCase::NoNullBitmap => "without a NULL bitmap",
            ExecCase::NoBoundByte => "without the new-params-bound byte",
            ExecCase::UnboundFirst => "with no types bound on the first execution",
            ExecCase::TypesCut => "with its types cut short",
            ExecCase::ValuesCut => "with its values cut short",
        }
    }

    /// What MariaDB 10.11 answers (for the message only: the test
    /// compares with the code measured in the same run).
    fn mariadb_code(self) -> u16 {
        match self {
            ExecCase::IdAndFlags | ExecCase::TypesCut => 1835,
            _ => 1210,
        }
    }

    fn payload(self, id: u32) -> Vec<u8> {
        let mut p = vec![COM_STMT_EXECUTE];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0); // flags: no cursor
        if matches!(self, ExecCase::IdAndFlags) {
            return p;
        }
        p.extend_from_slice(&1u32.to_le_bytes()); // iterations
        if matches!(self, ExecCase::NoNullBitmap) {
            return p;
        }
        p.push(0); // NULL bitmap of 2 parameters: none NULL
        if matches!(self, ExecCase::NoBoundByte) {
            return p;
        }
        if matches!(self, ExecCase::UnboundFirst) {
            p.push(0);
            return p;
        }
        p.push(1);
        p.extend_from_slice(&[0x08, 0x00]); // LONGLONG
        if matches!(self, ExecCase::TypesCut) {
            return p;
        }
        p.extend_from_slice(&[0x08, 0x00]);
        p.extend_from_slice(&1i64.to_le_bytes());
        p.extend_from_slice(&[2, 0, 0]); // 3 of the second value's 8 bytes
        p
    }
}

/// Prepares `sql` on a fresh connection and sends what `payload` makes of
/// the statement's id: the answer.
async fn prepared_then(
    mut c: RawConn,
    sql: &str,
    payload: impl Fn(u32) -> Vec<u8>,
) -> Result<Reply, String> {
    let stmt = c
        .prepare(sql)
        .await?
        .map_err(|r| format!("PREPARE {sql}: {r}"))?;
    c.command(&payload(stmt.id)).await
}

/// Compares a command's error with MariaDB's: both ERR, the same code.
fn same_error(proxy: &Reply, mariadb: &Reply, expected: &str) -> Result<String, String> {
    let summary = format!("ShardGate: {proxy}; MariaDB: {mariadb} (expected {expected})");
    match (proxy.code(), mariadb.code()) {
        (Some(p), Some(m)) if p == m => Ok(summary),
        (_, None) => Err(format!("MariaDB answered no error: {summary}")),
        _ => Err(format!("the codes differ: {summary}")),
    }
}

/// Probe 3: one malformed COM_STMT_EXECUTE, on fresh connections to both.
async fn probe_malformed_execute(ctx: &Ctx, case: ExecCase) -> Result<String, String> {
    const SQL: &str = "SELECT ? + ?";
    let proxy = prepared_then(ctx.proxy_conn().await?, SQL, |id| case.payload(id)).await?;
    let mariadb = prepared_then(ctx.direct_conn().await?, SQL, |id| case.payload(id)).await?;
    same_error(&proxy, &mariadb, &case.mariadb_code().to_string())
}

/// Probe 4: COM_STMT_FETCH of statement 999999 (never prepared), or of a
/// prepared `SELECT 1` never executed (no cursor).
async fn probe_fetch(ctx: &Ctx, known: bool) -> Result<String, String> {
    let fetch = |id: u32| {
        let mut p = vec![COM_STMT_FETCH];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p
    };
    let (proxy, mariadb, expected) = if known {
        (
            prepared_then(ctx.proxy_conn().await?, "SELECT 1", fetch).await?,
            prepared_then(ctx.direct_conn().await?, "SELECT 1", fetch).await?,
            "1421 The statement (N) has no open cursor",
        )
    } else {
        (
            ctx.proxy_conn().await?.command(&fetch(999_999)).await?,
            ctx.direct_conn().await?.command(&fetch(999_999)).await?,
            "1243 Unknown prepared statement handler (999999) given to mysqld_stmt_fetch",
        )
    };
    same_error(&proxy, &mariadb, expected)
}

/// Probe 5: a command packet of length 0.
async fn probe_empty_packet(ctx: &Ctx) -> Result<String, String> {
    let proxy = ctx.proxy_conn().await?.command(&[]).await?;
    let mariadb = ctx.direct_conn().await?.command(&[]).await?;
    same_error(&proxy, &mariadb, "1047 Unknown command")
}

/// Probe 6: `user_id IN (1, 2, ..., 200000)` on the sharded table: the
/// answer of the unsharded table, and the proxy's peak-RSS growth.
async fn probe_in_list(ctx: &mut Ctx) -> Result<String, String> {
    let values: Vec<String> = (1..=IN_LIST_VALUES).map(|v| v.to_string()).collect();
    let sql = |t: &str| {
        format!(
            "SELECT user_id, name FROM {t} WHERE user_id IN ({})",
            values.join(", ")
        )
    };
    let size = sql(SHARDED).len() as u64;
    let mut c = ctx.proxy_conn().await?;
    // The same statement, small: connections open, columns known.
    c.query(&format!(
        "SELECT user_id, name FROM {SHARDED} WHERE user_id IN (1, 2, 3)"
    ))
    .await?;
    let (sharded, took, peak) =
        measured_query(ctx, &mut c, &sql(SHARDED), IN_LIST_BOUND_FACTOR).await?;
    let plain = c.query(&sql(PLAIN)).await?;
    let summary = format!(
        "statement {size} bytes ({:.2} MiB); sharded: {sharded} in {:.2}s; unsharded: {plain}; {peak}",
        size as f64 / 1048576.0,
        took.as_secs_f64(),
    );
    if !same_answer(&sharded, &plain) || sharded.text_rows().ok() != Some(rows_of(1..=ROWS)) {
        return Err(format!("the answers differ: {summary}"));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    // Each node gets only its own values (see `SplitList`): an UPDATE by
    // the list changes the rows it changes on the unsharded table.
    let update = |t: &str, name: &str| {
        format!(
            "UPDATE {t} SET name = {name} WHERE user_id % 3 = 0 AND user_id IN ({})",
            values.join(", ")
        )
    };
    let every_row = |t: &str| format!("SELECT user_id, name FROM {t} ORDER BY user_id");
    for t in [SHARDED, PLAIN] {
        expect_ok(&mut c, &update(t, "CONCAT('u', name)")).await?;
    }
    let (sharded, plain) = (
        c.query(&every_row(SHARDED)).await?,
        c.query(&every_row(PLAIN)).await?,
    );
    for t in [SHARDED, PLAIN] {
        expect_ok(&mut c, &update(t, "SUBSTRING(name, 2)")).await?;
    }
    if !same_answer(&sharded, &plain) || sharded.text_rows().ok() == Some(rows_of(1..=ROWS)) {
        return Err(format!(
            "an UPDATE by the list changed other rows than on the unsharded table: {summary}"
        ));
    }
    Ok(summary)
}

/// Probe 10: `UPDATE ... SET name = '<20 MiB>'` on the sharded table
/// that matches no row, `condition` its WHERE clause: on no sharding column
/// (every node gets it) or on one (one node does). The unsharded table's
/// answer (OK), and the proxy's peak-RSS growth.
async fn probe_large_update(
    ctx: &mut Ctx,
    condition: &str,
    bound_factor: u64,
) -> Result<String, String> {
    let literal = "a".repeat(FANOUT_UPDATE_MIB * 1024 * 1024);
    let sql = |t: &str| format!("UPDATE {t} SET name = '{literal}' WHERE {condition}");
    let mut c = ctx.proxy_conn().await?;
    // The same statement, small: the nodes' connections open.
    expect_ok(
        &mut c,
        &format!("UPDATE {SHARDED} SET name = 'x' WHERE {condition}"),
    )
    .await?;
    let statement = sql(SHARDED);
    let size = statement.len() as u64;
    let (sharded, took, peak) = measured_query(ctx, &mut c, &statement, bound_factor).await?;
    drop(statement);
    let plain = c.query(&sql(PLAIN)).await?;
    let summary = format!(
        "statement {size} bytes; sharded: {sharded} in {:.2}s; unsharded: {plain}; {peak}",
        took.as_secs_f64(),
    );
    if sharded != Reply::Ok || !same_answer(&sharded, &plain) {
        return Err(format!("the answers differ: {summary}"));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 13: a 20 MiB UPDATE of the unsharded table matching no row,
/// passed through to its data source: MariaDB's answer, and the proxy's
/// peak-RSS growth under [`PLAIN_UPDATE_BOUND_FACTOR`] × its size.
async fn probe_plain_update(ctx: &mut Ctx) -> Result<String, String> {
    let literal = "a".repeat(FANOUT_UPDATE_MIB * 1024 * 1024);
    let sql = format!("UPDATE {PLAIN} SET name = '{literal}' WHERE user_id = 0");
    drop(literal);
    let mut c = ctx.proxy_conn().await?;
    expect_ok(
        &mut c,
        &format!("UPDATE {PLAIN} SET name = 'x' WHERE user_id = 0"),
    )
    .await?;
    let (proxied, took, peak) =
        measured_query(ctx, &mut c, &sql, PLAIN_UPDATE_BOUND_FACTOR).await?;
    let direct = ctx.direct_conn().await?.query(&sql).await?;
    let summary = format!(
        "statement {} bytes; via proxy: {proxied} in {:.2}s; MariaDB direct: {direct}; {peak}",
        sql.len(),
        took.as_secs_f64(),
    );
    if proxied != Reply::Ok || !same_answer(&proxied, &direct) {
        return Err(format!("not MariaDB's answer: {summary}"));
    }
    if peak.over {
        return Err(format!("the peak RSS grew past the bound: {summary}"));
    }
    Ok(summary)
}

/// Probe 7: while session A's large statement (`sql` of the sharded
/// table) is in flight — from the moment it is written to the moment its
/// answer has been read — session B's `SELECT 1`s must complete (at least
/// one). A's answer must be the unsharded table's.
async fn probe_progress(ctx: &Ctx, sql: &dyn Fn(&str) -> String) -> Result<String, String> {
    let mut a = ctx.proxy_conn().await?;
    let mut b = ctx.proxy_conn().await?;
    // B is logged in and served before A begins.
    match b.query("SELECT 1").await? {
        Reply::ResultSet { .. } => {}
        other => return Err(format!("SELECT 1 before the large statement: {other}")),
    }
    let in_flight = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let b_task = {
        let (in_flight, done, served) = (in_flight.clone(), done.clone(), served.clone());
        tokio::spawn(async move {
            let mut total = 0u64;
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::SeqCst) {
                let began_in_flight = in_flight.load(Ordering::SeqCst);
                let t = Instant::now();
                match b.query("SELECT 1").await {
                    Ok(Reply::ResultSet { .. }) => {}
                    Ok(other) => return Err(format!("B's SELECT 1: {other}")),
                    Err(e) => return Err(format!("B's SELECT 1: {e}")),
                }
                total += 1;
                if began_in_flight && !done.load(Ordering::SeqCst) {
                    served.fetch_add(1, Ordering::SeqCst);
                    slowest = slowest.max(t.elapsed());
                }
            }
            Ok((total, slowest))
        })
    };
    let statement = sql(SHARDED);
    let t = Instant::now();
    let sent = a.send_command(&query_payload(&statement)).await;
    let written = t.elapsed();
    in_flight.store(true, Ordering::SeqCst);
    let answer = match sent {
        Ok(()) => a.read_reply().await,
        Err(e) => Err(e),
    };
    let served_meanwhile = served.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let took = t.elapsed();
    let (b_total, slowest) = b_task.await.map_err(|e| format!("session B: {e}"))??;
    let answer = answer.map_err(|e| format!("A's statement: {e}"))?;
    let plain = ctx.proxy_conn().await?.query(&sql(PLAIN)).await?;
    let summary = format!(
        "A: {} bytes written in {:.2}s, answered in {:.2}s: {answer}; B: {served_meanwhile} \
         SELECT 1 completed while A was in flight (slowest {:.1} ms), {b_total} in all; \
         unsharded: {plain}",
        statement.len(),
        written.as_secs_f64(),
        took.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
    if !same_answer(&answer, &plain) || !matches!(answer, Reply::ResultSet { .. }) {
        return Err(format!(
            "A's answer differs from the unsharded table's: {summary}"
        ));
    }
    if served_meanwhile == 0 {
        return Err(format!("no other session was served meanwhile: {summary}"));
    }
    Ok(summary)
}

/// Probe 8: the proxy is alive, answers a query, and holds no more client
/// connections than `clients_before` (waiting up to 10 s for closed
/// sessions to go).
async fn probe_canary(ctx: &mut Ctx, clients_before: usize) -> Result<String, String> {
    if let Some(status) = ctx.proxy.exited() {
        return Err(format!("the proxy exited: {status}"));
    }
    let count = {
        let mut c = ctx.proxy_conn().await?;
        c.query(&format!("SELECT COUNT(*) FROM {SHARDED}"))
            .await?
            .text_rows()?
    };
    if count != vec![vec![Some(ROWS.to_string())]] {
        return Err(format!("SELECT COUNT(*) FROM {SHARDED} gave {count:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = ctx.proxy.client_connections()?;
    while clients > clients_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        clients = ctx.proxy.client_connections()?;
    }
    let summary = format!(
        "COUNT(*) = {ROWS}; client connections open {clients_before} after warm-up, \
         {clients} now; VmHWM {} KiB, VmRSS {} KiB",
        ctx.proxy.status_kib("VmHWM:")?,
        ctx.proxy.status_kib("VmRSS:")?
    );
    if clients > clients_before {
        return Err(format!("client connections not released: {summary}"));
    }
    Ok(summary)
}

// ------------------------------------------------------------ config ----
