//! Read/write splitting against the sandbox's real GTID replication
//! (issue 4, "Proof"): where each kind of statement goes, the read
//! distribution of every strategy measured from the servers' own
//! `Com_select` counters, a lagging replica leaving the rotation while
//! sessions still read their own writes, the fallback when no replica is
//! usable, broadcast reads over every node's replicas, a replica killed
//! under a 16-session read load, a killed primary (and a read right after a
//! write whose primary then died), and a reload that
//! points a data source at a promoted replica.
//!
//! Every read names the server that answered it (`SELECT @@port, ...`).
//! Destructive steps touch only ds1's and ds2's servers and are undone by
//! guards even when an assertion fails. The tests have the sandbox to
//! themselves ([`sandbox::exclusive`]) so that one's counters or outages
//! never show in another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardgate_integration_tests::fixtures::{
    admin_request as http, connect, drop_table, pool, start_with_table,
};
use shardgate_integration_tests::replication::*;
use shardgate_integration_tests::{
    db_error, sandbox, sandbox_ready, start_proxy, start_proxy_from_file, write_config_file,
    Config, RunningProxy,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Executor};
use tokio::sync::RwLockWriteGuard;

/// A config of [`config_text`]'s.
fn config(text: &str) -> Config {
    Config::from_toml_str(text).expect("config")
}

/// The sandbox to itself and the config of `text`; None when the sandbox
/// is not running (the test is skipped).
async fn begin(test: &str, text: &str) -> Option<(Config, RwLockWriteGuard<'static, ()>)> {
    let sandbox = sandbox::exclusive().await;
    let cfg = config(text);
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    Some((cfg, sandbox))
}

/// As [`begin`], then ShardGate on the config with `table` (rows id = v =
/// 0..40, as `fixtures::start_with_table` makes it), every replica of the
/// data sources `dss` caught up and in the proxy's rotation.
async fn start(
    test: &str,
    text: &str,
    table: &str,
    dss: &[&str],
) -> Option<(Config, RunningProxy, RwLockWriteGuard<'static, ()>)> {
    let (cfg, sandbox) = begin(test, text).await?;
    let proxy = start_with_table(cfg.clone(), table).await;
    caught_up(&cfg, dss).await;
    in_rotation(&proxy, dss).await;
    Some((cfg, proxy, sandbox))
}

/// Another ShardGate, on `text`, with every replica of `dss` in its rotation.
async fn proxy_in_rotation(text: &str, dss: &[&str]) -> RunningProxy {
    let proxy = start_proxy(config(text)).await;
    in_rotation(&proxy, dss).await;
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_statement_goes_where_it_may() {
    const TABLE: &str = "rwsplit_route";
    let text = config_text(
        TABLE,
        "",
        &read_section("ds3", "strategy = \"round_robin\""),
    );
    let test = "each_statement_goes_where_it_may";
    let Some((cfg, proxy, _sandbox)) = start(test, &text, TABLE, &["ds0", "ds3"]).await else {
        return;
    };
    let (_, r0) = servers(&cfg, "ds0");
    let (p3, r3) = servers(&cfg, "ds3");
    let mut c = connect(&proxy).await;
    let at = |suffix: &str| format!("SELECT @@port, v FROM {TABLE} WHERE id = 3{suffix}");

    // Plain reads outside a transaction: the replicas, in turn.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        seen.insert(port(&mut c, &at("")).await);
    }
    let dss = ["ds0", "ds3"];
    assert_eq!(
        seen,
        r3.iter().copied().collect(),
        "plain reads of ds3 ({})",
        rotation(&proxy, &dss).await
    );
    let prepared = format!("SELECT @@port, v FROM {TABLE} WHERE id = ?");
    let read = port_prepared(&mut c, &prepared, 3).await;
    assert!(
        r3.contains(&read),
        "{read} ({})",
        rotation(&proxy, &dss).await
    );
    // A statement on no table goes to the default data source's replicas.
    let read = port(&mut c, "SELECT @@port").await;
    assert!(
        r0.contains(&read),
        "{read} ({})",
        rotation(&proxy, &dss).await
    );

    // Locking reads, the primary's own functions and the hint: the primary.
    for sql in [
        at(" FOR UPDATE"),
        at(" LOCK IN SHARE MODE"),
        format!("SELECT @@port, LAST_INSERT_ID() FROM {TABLE} WHERE id = 3"),
        format!("SELECT /* shardgate:primary */ @@port, v FROM {TABLE} WHERE id = 3"),
    ] {
        assert_eq!(port(&mut c, &sql).await, p3, "{sql}");
    }
    let locking = format!("SELECT @@port, v FROM {TABLE} WHERE id = ? FOR UPDATE");
    assert_eq!(port_prepared(&mut c, &locking, 3).await, p3, "{locking}");
    {
        // GET_LOCK pins its session to the connection: a session of its own.
        let mut l = connect(&proxy).await;
        let sql = format!(
            "SELECT @@port, GET_LOCK('rwsplit_route', 0), RELEASE_LOCK('rwsplit_route') FROM {TABLE} WHERE id = 3"
        );
        assert_eq!(port(&mut l, &sql).await, p3, "{sql}");
    }

    // Inside a transaction (transaction_reads = "primary", the default),
    // even a read-only one: the primary.
    for begin in ["BEGIN", "START TRANSACTION READ ONLY"] {
        c.execute(begin).await.expect(begin);
        assert_eq!(port(&mut c, &at("")).await, p3, "{begin}; SELECT");
        assert_eq!(port_prepared(&mut c, &prepared, 3).await, p3);
        c.execute("COMMIT").await.expect("commit");
    }

    // Writes and DDL: the primaries (a replica refuses them: read_only).
    c.execute(format!("UPDATE {TABLE} SET v = 333 WHERE id = 3").as_str())
        .await
        .expect("update");
    let mut direct3 = direct(p3).await;
    let physical = format!("ds3.{TABLE}_0");
    assert_eq!(
        scalar(
            &mut direct3,
            &format!("SELECT v FROM {physical} WHERE id = 3")
        )
        .await,
        "333"
    );
    // Read-your-writes: the same session reads its write at once.
    let row = c.fetch_one(at("").as_str()).await.expect("read");
    assert_eq!(int(&row, 1), 333);
    c.execute(format!("ALTER TABLE {TABLE} ADD COLUMN w INT").as_str())
        .await
        .expect("DDL");
    assert_eq!(
        scalar(
            &mut direct3,
            &format!(
                "SELECT COUNT(*) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = 'ds3' AND TABLE_NAME = '{TABLE}_0' AND COLUMN_NAME = 'w'"
            )
        )
        .await,
        "1"
    );
    direct3.close().await.ok();
    drop(c);
    drop(proxy);
    // The replicas have applied the DDL before the next proxy counts on them.
    caught_up(&cfg, &dss).await;

    // transaction_reads = "replica": a read-only transaction reads one
    // replica per data source from start to end; the next transaction may
    // take another.
    let text = config_text(
        TABLE,
        "transaction_reads = \"replica\"\n",
        &(read_section("ds3", "strategy = \"round_robin\"")
            + &read_section("ds0", "strategy = \"round_robin\"")),
    );
    let proxy = proxy_in_rotation(&text, &dss).await;
    let mut c = connect(&proxy).await;
    let mut fixed = BTreeSet::new();
    for _ in 0..4 {
        c.execute("START TRANSACTION READ ONLY")
            .await
            .expect("begin");
        let first = port(&mut c, &at("")).await;
        assert!(
            r3.contains(&first),
            "{first} is a replica of ds3 ({})",
            rotation(&proxy, &dss).await
        );
        for id in [7, 3, 11] {
            let sql = format!("SELECT @@port FROM {TABLE} WHERE id = {id}");
            assert_eq!(port(&mut c, &sql).await, first, "same replica all along");
        }
        assert_eq!(port_prepared(&mut c, &prepared, 3).await, first);
        let other = port(&mut c, &format!("SELECT @@port FROM {TABLE} WHERE id = 0")).await;
        assert!(
            r0.contains(&other),
            "ds0 in the same transaction: its replica ({})",
            rotation(&proxy, &dss).await
        );
        let again = port(&mut c, &format!("SELECT @@port FROM {TABLE} WHERE id = 4")).await;
        assert_eq!(again, other);
        c.execute("COMMIT").await.expect("commit");
        fixed.insert(first);
    }
    assert_eq!(
        fixed.len(),
        2,
        "round robin: transactions take turns ({})",
        rotation(&proxy, &dss).await
    );
    for begin in ["BEGIN", "START TRANSACTION"] {
        c.execute(begin).await.expect(begin);
        assert_eq!(port(&mut c, &at("")).await, p3, "{begin} (read-write)");
        c.execute("ROLLBACK").await.expect("rollback");
    }
    eprintln!("ds3 primary {p3}, replicas {r3:?}: reads, locking reads, transactions and writes went where they may");
    drop_table(&proxy, TABLE).await;
}

/// Point reads of `ids` from `sessions` sessions, `per_session` each (text
/// and prepared protocol alternating); the answering server of each read.
async fn read_load(
    proxy: &RunningProxy,
    sql: &str,
    ids: &[i64],
    sessions: usize,
    per_session: usize,
) -> BTreeMap<u16, u64> {
    let answers = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let mut c = connect(proxy).await;
        let answers = answers.clone();
        let ids = ids.to_vec();
        let sql = sql.to_owned();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_session {
                let id = ids[(s + n) % ids.len()];
                let p = if n % 2 == 0 {
                    port(&mut c, &sql.replace('?', &id.to_string())).await
                } else {
                    port_prepared(&mut c, &sql, id).await
                };
                *answers.lock().expect("answers").entry(p).or_insert(0) += 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("reader");
    }
    let answers = answers.lock().expect("answers").clone();
    answers
}

/// `Com_select` of each server, and the proxy's acquisitions of each pool.
async fn counters(proxy: &RunningProxy, ports: &[u16], pools: &[&str]) -> (Vec<u64>, Vec<u64>) {
    let mut selects = Vec::new();
    for p in ports {
        selects.push(com_select(*p).await);
    }
    let mut acquired = Vec::new();
    for name in pools {
        acquired.push(pool(proxy, name).await["acquired"].as_u64().unwrap_or(0));
    }
    (selects, acquired)
}

/// Measures one load: the share of the first replica of each pair, from
/// `Com_select` deltas, and prints all three views.
async fn measure(
    proxy: &RunningProxy,
    what: &str,
    sql: &str,
    ids: &[i64],
    ports: &[u16],
    pools: &[&str],
) -> Vec<f64> {
    let before = counters(proxy, ports, pools).await;
    let answers = read_load(proxy, sql, ids, 8, 100).await;
    let after = counters(proxy, ports, pools).await;
    let selects: Vec<u64> = after.0.iter().zip(&before.0).map(|(a, b)| a - b).collect();
    let acquired: Vec<u64> = after.1.iter().zip(&before.1).map(|(a, b)| a - b).collect();
    eprintln!("{what}:");
    for (i, p) in ports.iter().enumerate() {
        eprintln!(
            "  {:<13} port {p}: Com_select +{:<4} answered {:<4} proxy acquisitions +{}",
            pools[i],
            selects[i],
            answers.get(p).copied().unwrap_or(0),
            acquired[i]
        );
    }
    selects
        .chunks(2)
        .map(|pair| pair[0] as f64 / (pair[0] + pair[1]).max(1) as f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_spread_by_strategy_as_the_servers_count_them() {
    const TABLE: &str = "rwsplit_dist";
    let text = config_text(
        TABLE,
        "",
        &(read_section(
            "ds0",
            "strategy = \"weighted_round_robin\"\nweights = [3, 1]",
        ) + &read_section("ds3", "strategy = \"round_robin\"")),
    );
    let test = "reads_spread_by_strategy";
    let Some((cfg, proxy, _sandbox)) = start(test, &text, TABLE, &["ds0", "ds3"]).await else {
        return;
    };
    let (_, r0) = servers(&cfg, "ds0");
    let (_, r3) = servers(&cfg, "ds3");
    let ports = [r0[0], r0[1], r3[0], r3[1]];
    let pools = [
        "ds0.replica1",
        "ds0.replica2",
        "ds3.replica1",
        "ds3.replica2",
    ];
    // ids on ds0 (id % 4 = 0) and ds3 (id % 4 = 3), taken in turn.
    let ids: Vec<i64> = (0..10).flat_map(|k| [4 * k, 4 * k + 3]).collect();
    let sql = format!("SELECT @@port, v FROM {TABLE} WHERE id = ?");
    let shares = measure(
        &proxy,
        "ds0 weighted_round_robin 3:1, ds3 round_robin (8 sessions x 100 reads)",
        &sql,
        &ids,
        &ports,
        &pools,
    )
    .await;
    assert!(
        (0.65..=0.85).contains(&shares[0]),
        "weights 3:1 give ds0.replica1 about 3/4 of the reads: {:.2}",
        shares[0]
    );
    assert!(
        (0.40..=0.60).contains(&shares[1]),
        "round robin gives each replica of ds3 about half: {:.2}",
        shares[1]
    );
    drop(proxy);

    // The second replica of each node made slow on purpose: the workload
    // sleeps 50 ms on it (and only on it) per read.
    let text = config_text(
        TABLE,
        "",
        &(read_section("ds0", "strategy = \"response_time\"")
            + &read_section("ds3", "strategy = \"least_connections\"")),
    );
    let proxy = proxy_in_rotation(&text, &["ds0", "ds3"]).await;
    let slow = format!(
        "SELECT @@port, v, SLEEP(IF(@@port IN ({}, {}), 0.05, 0)) FROM {TABLE} WHERE id = ?",
        r0[1], r3[1]
    );
    let shares = measure(
        &proxy,
        &format!(
            "ds0 response_time, ds3 least_connections; ports {} and {} sleep 50 ms per read",
            r0[1], r3[1]
        ),
        &slow,
        &ids,
        &ports,
        &pools,
    )
    .await;
    assert!(
        shares[0] >= 0.75,
        "response_time prefers ds0's fast replica: {:.2}",
        shares[0]
    );
    assert!(
        shares[1] >= 0.75,
        "least_connections prefers ds3's fast replica: {:.2}",
        shares[1]
    );
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_replica_leaves_the_rotation_and_a_session_reads_its_writes() {
    const TABLE: &str = "rwsplit_lag";
    const INTERVAL_MS: u64 = 200;
    let reads = format!("strategy = \"round_robin\"\nmonitor_interval_ms = {INTERVAL_MS}");
    let text = config_text(TABLE, "", &read_section("ds1", &reads));
    let test = "a_lagging_replica_leaves_the_rotation";
    let Some((cfg, proxy, _sandbox)) = start(test, &text, TABLE, &["ds1"]).await else {
        return;
    };
    let (p1, r1) = servers(&cfg, "ds1");
    let (lagging, other) = (r1[0], r1[1]);
    // A second proxy: replicas may lag 1 s at most, and no reading the
    // primary instead.
    let strict = config_text(
        TABLE,
        "",
        &read_section(
            "ds1",
            &format!("{reads}\nmax_replica_lag_ms = 1000\nfallback = \"error\""),
        ),
    );
    let strict = proxy_in_rotation(&strict, &["ds1"]).await;
    // A third: read-your-writes for each session only.
    let per_session = config_text(
        TABLE,
        "read_consistency = \"session\"\n",
        &read_section("ds1", &reads),
    );
    let per_session = proxy_in_rotation(&per_session, &["ds1"]).await;
    let read1 = format!("SELECT @@port, v FROM {TABLE} WHERE id = 1");
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;

    // 1. The SQL thread of ds1.replica1 stops: out within the interval.
    let stopped = Undo::run(lagging, "STOP SLAVE SQL_THREAD", "START SLAVE SQL_THREAD");
    let left = wait_for("ds1.replica1 leaves the rotation", 5, || {
        usable_is(&proxy, "ds1.replica1", false)
    })
    .await;
    let state = pool(&proxy, "ds1.replica1").await;
    eprintln!(
        "SQL thread of {lagging} stopped: out of the rotation after {left:?} (monitor interval {INTERVAL_MS} ms): {}",
        state["replication"]["reason"]
    );
    assert!(
        left <= Duration::from_millis(INTERVAL_MS + 400),
        "left after {left:?}"
    );
    assert!(state["replication"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("SQL thread"));
    for _ in 0..10 {
        assert_eq!(
            port(&mut b, &read1).await,
            other,
            "only ds1.replica2 serves"
        );
    }
    // Session consistency: a write followed at once by a read sees it.
    let mut served = BTreeSet::new();
    for k in 0..20 {
        a.execute(format!("UPDATE {TABLE} SET v = {k} WHERE id = 1").as_str())
            .await
            .expect("write");
        let row = a.fetch_one(read1.as_str()).await.expect("read");
        assert_eq!(int(&row, 1), k, "a session reads its own write");
        served.insert(int(&row, 0) as u16);
    }
    assert!(!served.contains(&lagging), "{served:?}");
    eprintln!("20 writes each read back at once, answered by {served:?}");

    // 2. Both replicas stopped: reads fall back to the primary, or fail
    //    clearly where the config says fallback = "error".
    let both = Undo::run(other, "STOP SLAVE SQL_THREAD", "START SLAVE SQL_THREAD");
    wait_for("ds1.replica2 leaves the rotation", 5, || {
        usable_is(&proxy, "ds1.replica2", false)
    })
    .await;
    let st = &strict;
    wait_for("both out for the strict proxy", 5, || async move {
        usable_is(st, "ds1.replica1", false).await && usable_is(st, "ds1.replica2", false).await
    })
    .await;
    assert_eq!(
        port(&mut b, &read1).await,
        p1,
        "no usable replica: the primary"
    );
    let mut s = connect(&strict).await;
    let err = s
        .fetch_one(read1.as_str())
        .await
        .expect_err("fallback = error");
    let (code, _, message) = db_error(&err).expect("a server error");
    eprintln!("fallback = \"error\": {code} {message}");
    assert_eq!(code, 1429, "{message}");
    assert!(
        message.contains("no usable replica for reads on ds1")
            && message.contains("ds1.replica1: replication SQL thread is No")
            && message.contains("fallback = \"error\""),
        "{message}"
    );
    drop(both);
    drop(stopped);
    let px = &proxy;
    let back = wait_for("both replicas back in the rotation", 10, || async move {
        usable_is(px, "ds1.replica1", true).await && usable_is(px, "ds1.replica2", true).await
    })
    .await;
    eprintln!("SQL threads started again: both back in the rotation after {back:?}");
    let metrics = http(&proxy, "GET", "/metrics", "").await.1;
    for line in [
        "shardgate_replica_transitions_total{pool=\"ds1.replica1\",to=\"out\"} 1",
        "shardgate_replica_transitions_total{pool=\"ds1.replica1\",to=\"in\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    caught_up(&cfg, &["ds1"]).await;

    // 3. ds1.replica1 applies events 4 s late (MASTER_DELAY): it stays in
    //    the rotation of `proxy` (lag <= 5 s), yet no session of it reads
    //    old data there (read_consistency = "proxy", the default); with
    //    "session", another session may, while the writing session never
    //    does. `strict` takes it out once it lags more than 1 s, and back
    //    when it has caught up.
    let delayed = Undo::run(
        lagging,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 4; START SLAVE",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
    );
    wait_for(
        "the delayed replica is in the rotation",
        10,
        || async move {
            usable_is(px, "ds1.replica1", true).await && usable_is(st, "ds1.replica1", true).await
        },
    )
    .await;
    wait_for(
        "the delayed replica is in the per-session rotation",
        10,
        || async { usable_is(&per_session, "ds1.replica1", true).await },
    )
    .await;
    let written_at = Instant::now();
    a.execute(format!("UPDATE {TABLE} SET v = 5000 WHERE id = 1").as_str())
        .await
        .expect("write");
    for _ in 0..10 {
        let row = b.fetch_one(read1.as_str()).await.expect("read");
        assert_eq!(
            int(&row, 1),
            5000,
            "another session of the proxy reads the write"
        );
    }
    let mut sa = connect(&per_session).await;
    let mut sb = connect(&per_session).await;
    sa.execute(format!("UPDATE {TABLE} SET v = 4999 WHERE id = 1").as_str())
        .await
        .expect("write");
    let mut stale = 0;
    for _ in 0..10 {
        let row = sb.fetch_one(read1.as_str()).await.expect("read");
        if int(&row, 0) as u16 == lagging && int(&row, 1) != 4999 {
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "with \"session\", the other session read the delayed replica"
    );
    drop((sa, sb));
    for k in 5001..5011 {
        a.execute(format!("UPDATE {TABLE} SET v = {k} WHERE id = 1").as_str())
            .await
            .expect("write");
        let row = a.fetch_one(read1.as_str()).await.expect("read");
        assert_eq!(int(&row, 1), k, "the writer reads its write");
        assert_ne!(
            int(&row, 0) as u16,
            lagging,
            "never from the delayed replica"
        );
    }
    eprintln!("MASTER_DELAY = 4: the writing session read all its 11 writes; the other read {stale} stale rows on {lagging}");
    wait_for("the delayed replica leaves the strict rotation", 8, || {
        usable_is(&strict, "ds1.replica1", false)
    })
    .await;
    let out_after = written_at.elapsed();
    let state = pool(&strict, "ds1.replica1").await;
    let reason = state["replication"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        reason.contains("more than max_replica_lag_ms = 1000"),
        "{reason}"
    );
    assert_eq!(
        usable(&proxy, "ds1.replica1").await,
        Some(true),
        "max_replica_lag_ms = 5000 keeps it"
    );
    // Without the delay it catches up and comes back (with the delay it
    // would lag for as long as ds1 takes writes).
    drop(delayed);
    let back = wait_for("the replica comes back once caught up", 10, || {
        usable_is(&strict, "ds1.replica1", true)
    })
    .await;
    eprintln!(
        "lag > 1 s: out of the strict rotation {out_after:?} after the write ({reason}); back {back:?} after MASTER_DELAY = 0"
    );
    caught_up(&cfg, &["ds1"]).await;
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_usable_replica_reads_use_the_primary_or_fail_clearly() {
    const TABLE: &str = "rwsplit_fallback";
    // Replicas nobody listens for: never usable.
    let text = set_key(
        &set_key(
            &config_text(TABLE, "", &read_section("ds3", "fallback = \"error\"")),
            "data_sources.ds0",
            "replicas",
            "[\"mysql://root@127.0.0.1:1/ds0\"]",
        ),
        "data_sources.ds3",
        "replicas",
        "[\"mysql://root@127.0.0.1:1/ds3\"]",
    );
    let Some((cfg, proxy, _sandbox)) = start("without_a_usable_replica", &text, TABLE, &[]).await
    else {
        return;
    };
    let (p0, _) = servers(&cfg, "ds0");
    let (p3, _) = servers(&cfg, "ds3");
    for name in ["ds0.replica1", "ds3.replica1"] {
        wait_for("the monitor finds the replica unreachable", 5, || {
            usable_is(&proxy, name, false)
        })
        .await;
    }
    let mut c = connect(&proxy).await;
    let sql = |id: i64| format!("SELECT @@port, v FROM {TABLE} WHERE id = {id}");
    assert_eq!(port(&mut c, &sql(0)).await, p0, "fallback = primary");
    let err = c
        .fetch_one(sql(3).as_str())
        .await
        .expect_err("fallback = error");
    let (code, _, message) = db_error(&err).expect("a server error");
    eprintln!("ds3 without a usable replica: {code} {message}");
    assert_eq!(code, 1429, "{message}");
    assert!(
        message.contains("no usable replica for reads on ds3 (ds3.replica1: not answering")
            && message.contains("data_sources.ds3.read.fallback = \"error\""),
        "{message}"
    );
    // Statements for the primary are unaffected, and the session goes on.
    assert_eq!(port(&mut c, &format!("{} FOR UPDATE", sql(3))).await, p3);
    c.execute(format!("UPDATE {TABLE} SET v = 7 WHERE id = 3").as_str())
        .await
        .expect("write");
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_reads_spread_over_every_nodes_replicas() {
    const TABLE: &str = "rwsplit_bcast";
    let rr = "strategy = \"round_robin\"";
    let reads: String = ["ds0", "ds1", "ds2", "ds3"]
        .iter()
        .map(|ds| read_section(ds, rr))
        .collect();
    let text = config_text("rwsplit_bcast_unused", "", &reads).replace(
        "tables = [\"sys_configs\",",
        &format!("tables = [\"{TABLE}\", \"sys_configs\","),
    );
    assert!(config(&text).broadcast.tables.iter().any(|t| t == TABLE));
    let Some((cfg, _sandbox)) = begin("broadcast_reads_spread", &text).await else {
        return;
    };
    let all = ["ds0", "ds1", "ds2", "ds3"];
    let replicas: BTreeSet<u16> = all.iter().flat_map(|ds| servers(&cfg, ds).1).collect();
    let proxy = start_proxy(cfg.clone()).await;
    let mut w = connect(&proxy).await;
    for sql in [
        format!("DROP TABLE IF EXISTS {TABLE}"),
        format!("CREATE TABLE {TABLE} (k INT PRIMARY KEY, v INT)"),
        format!("INSERT INTO {TABLE} VALUES (1, 10), (2, 20)"),
    ] {
        w.execute(sql.as_str()).await.expect(&sql);
    }
    caught_up(&cfg, &all).await;
    in_rotation(&proxy, &all).await;
    // A session that wrote nothing, so no read waits for a write.
    let mut c = connect(&proxy).await;
    let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
    let sql = format!("SELECT @@port, COUNT(*) FROM {TABLE}");
    let prepared = format!("SELECT @@port, v FROM {TABLE} WHERE k = ?");
    for n in 0..80 {
        let p = if n % 4 == 3 {
            port_prepared(&mut c, &prepared, 1).await
        } else {
            port(&mut c, &sql).await
        };
        *answers.entry(p).or_insert(0) += 1;
    }
    eprintln!("80 reads of broadcast table {TABLE}, by answering server: {answers:?}");
    assert_eq!(
        answers.keys().copied().collect::<BTreeSet<_>>(),
        replicas,
        "every replica of every node, and no primary"
    );
    assert!(answers.values().all(|n| *n >= 5), "{answers:?}");
    // In a transaction the read stays on the default data source's primary.
    c.execute("BEGIN").await.expect("begin");
    assert_eq!(port(&mut c, &sql).await, servers(&cfg, "ds0").0);
    c.execute("COMMIT").await.expect("commit");
    w.execute(format!("DROP TABLE {TABLE}").as_str())
        .await
        .expect("drop");
}

/// Reads from `sessions` sessions until `stop`: every answering server,
/// and every failure (a wrong value among them: rows have v = id, and only
/// the rows `written` may have more).
struct Load {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, u16)>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Load {
    async fn start(
        proxy: &RunningProxy,
        table: &str,
        ids: &[i64],
        written: &[i64],
        sessions: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let mut c: MySqlConnection = connect(proxy).await;
            let (stop, answers, failures) = (stop.clone(), answers.clone(), failures.clone());
            let (ids, written) = (ids.to_vec(), written.to_vec());
            let sql = format!("SELECT @@port, v FROM {table} WHERE id = ?");
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = ids[(s + n) % ids.len()];
                    // Half the sessions use the text protocol, half prepare.
                    let result = if s % 2 == 0 {
                        let text = sql.replace('?', &id.to_string());
                        c.fetch_one(sqlx::raw_sql(&text)).await
                    } else {
                        c.fetch_one(sqlx::query(&sql).bind(id)).await
                    };
                    match result {
                        Ok(row) => {
                            let v = int(&row, 1);
                            if v < id || (v != id && !written.contains(&id)) {
                                failures
                                    .lock()
                                    .expect("failures")
                                    .push(format!("a wrong answer: row {id} has v = {v}"));
                            }
                            answers
                                .lock()
                                .expect("answers")
                                .push((Instant::now(), int(&row, 0) as u16))
                        }
                        Err(e) => failures.lock().expect("failures").push(e.to_string()),
                    }
                    n += 1;
                }
            }));
        }
        Load {
            tasks,
            stop,
            answers,
            failures,
        }
    }

    /// Reads answered by `port` since `since`.
    fn answered_by(&self, port: u16, since: Instant) -> usize {
        self.answers
            .lock()
            .expect("answers")
            .iter()
            .filter(|(at, p)| *p == port && *at >= since)
            .count()
    }

    fn answered_between(&self, from: Instant, to: Instant) -> usize {
        let answers = self.answers.lock().expect("answers");
        answers
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .count()
    }

    /// Stops the sessions: (reads by answering server, failures).
    async fn finish(mut self) -> (BTreeMap<u16, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            task.await.expect("reader");
        }
        let mut by_port = BTreeMap::new();
        for (_, p) in self.answers.lock().expect("answers").iter() {
            *by_port.entry(*p).or_insert(0) += 1;
        }
        let failures = self.failures.lock().expect("failures").clone();
        (by_port, failures)
    }
}

/// A test that fails mid-load leaves no session reading.
impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_fails_no_read_and_comes_back() {
    const TABLE: &str = "rwsplit_kill";
    let text = config_text(
        TABLE,
        "",
        &read_section(
            "ds2",
            "strategy = \"round_robin\"\nmonitor_interval_ms = 200",
        ),
    );
    let test = "a_replica_killed_under_load";
    let Some((cfg, proxy, _sandbox)) = start(test, &text, TABLE, &["ds2"]).await else {
        return;
    };
    let (_, r2) = servers(&cfg, "ds2");
    let (victim, other) = (r2[0], r2[1]);
    let server = blocking(move || Server::locate(victim)).await;
    assert!(server.replica, "{victim} is a replica");
    // A proxy whose monitor will not notice the kill for a minute and
    // whose balancer sends (nearly) every read to the victim: its reads
    // can only succeed by being retried elsewhere.
    let blind = config_text(
        TABLE,
        "",
        &read_section(
            "ds2",
            "strategy = \"weighted_round_robin\"\nweights = [1000, 1]\nmonitor_interval_ms = 60000",
        ),
    );
    let blind = proxy_in_rotation(&blind, &["ds2"]).await;
    let read = |id: i64| format!("SELECT @@port, v FROM {TABLE} WHERE id = {id}");
    let mut idle = connect(&blind).await;
    assert_eq!(port(&mut idle, &read(2)).await, victim, "weights 1000:1");
    let mut busy = connect(&blind).await;
    let in_flight = tokio::spawn(async move {
        let sql = format!("SELECT @@port, v, SLEEP(1) FROM {TABLE} WHERE id = 6");
        let started = Instant::now();
        let row = busy.fetch_one(sql.as_str()).await;
        (row.map(|r| int(&r, 0) as u16), started.elapsed())
    });
    let ids: Vec<i64> = (0..10).map(|k| 4 * k + 2).collect();
    let load = Load::start(&proxy, TABLE, &ids, &[], 16).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    let restart = blocking({
        let server = server.clone();
        move || server.kill()
    })
    .await;
    eprintln!(
        "killed {} (port {victim}) under a load of 16 sessions",
        server.name
    );
    // The loaded proxy's monitor takes the victim out, meanwhile the
    // statement that was running there and the next read that takes one
    // of its dead pooled connections are answered by the other replica.
    let (left, (answered, took)) = tokio::join!(
        wait_for("the victim leaves the rotation", 5, || {
            usable_is(&proxy, "ds2.replica1", false)
        }),
        async { in_flight.await.expect("in-flight read") }
    );
    eprintln!(
        "out of the rotation of the loaded proxy (monitor every 200 ms) {left:?} after the kill"
    );
    let answered = answered.expect("the read in flight during the kill succeeds");
    eprintln!("the read running on {victim} when it died: answered by {answered} after {took:?}");
    assert_eq!(answered, other, "retried on the other replica");
    assert_eq!(
        usable(&blind, "ds2.replica1").await,
        Some(true),
        "the blind proxy still counts on the victim"
    );
    let next = port(&mut idle, &read(2)).await;
    assert_ne!(next, victim, "the next read went elsewhere");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let restarted_at = Instant::now();
    blocking({
        let server = server.clone();
        move || server.start().expect("restart the replica")
    })
    .await;
    drop(restart);
    eprintln!(
        "restarted {} and replicating again after {:?}",
        server.name,
        restarted_at.elapsed()
    );
    wait_for("the victim returns to the rotation", 10, || {
        usable_is(&proxy, "ds2.replica1", true)
    })
    .await;
    let l = &load;
    wait_for("the victim answers reads again", 10, || async move {
        l.answered_by(victim, restarted_at) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = load.answered_between(killed_at, restarted_at);
    let (by_port, failures) = load.finish().await;
    let total: u64 = by_port.values().sum();
    eprintln!("{total} reads by answering server: {by_port:?}; {during} of them while the victim was down; {} failed", failures.len());
    assert!(failures.is_empty(), "failed reads: {failures:?}");
    assert!(during > 0);
    caught_up(&cfg, &["ds2"]).await;
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_fails_writes_fast_and_reads_go_on() {
    const TABLE: &str = "rwsplit_primary";
    let text = config_text(
        TABLE,
        "",
        &read_section(
            "ds2",
            "strategy = \"round_robin\"\nmonitor_interval_ms = 200",
        ),
    );
    let Some((cfg, proxy, _sandbox)) = start("a_killed_primary", &text, TABLE, &["ds2"]).await
    else {
        return;
    };
    let (p2, r2) = servers(&cfg, "ds2");
    let server = blocking(move || Server::locate(p2)).await;
    assert!(!server.replica, "{p2} is a primary");
    let ids: Vec<i64> = (0..10).map(|k| 4 * k + 2).collect();
    let load = Load::start(&proxy, TABLE, &ids, &[2], 16).await;
    // One session writes every 50 ms: each write's outcome and duration.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let mut w = connect(&proxy).await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = w
                    .execute(format!("UPDATE {TABLE} SET v = v + 1 WHERE id = 2").as_str())
                    .await
                    .map(drop)
                    .map_err(|e| db_error(&e).map_or(e.to_string(), |(_, _, m)| m));
                writes
                    .lock()
                    .expect("writes")
                    .push((started, started.elapsed(), result));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    let restart = blocking({
        let server = server.clone();
        move || server.kill()
    })
    .await;
    eprintln!(
        "killed {} (port {p2}) under 16 reading sessions and a writer",
        server.name
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for name in ["ds2.replica1", "ds2.replica2"] {
        let state = pool(&proxy, name).await;
        assert_eq!(
            state["replication"]["usable"], true,
            "{name} keeps serving while its primary is down: {state}"
        );
    }
    let restarted_at = Instant::now();
    restart_primary(&server, restart, &r2).await;
    eprintln!(
        "restarted {}; its replicas reconnected after {:?}",
        server.name,
        restarted_at.elapsed()
    );
    let wr = &writes;
    wait_for("a write succeeds again", 10, || async move {
        wr.lock()
            .expect("writes")
            .iter()
            .any(|(at, _, r)| *at > restarted_at && r.is_ok())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let during = load.answered_between(killed_at, restarted_at);
    let (by_port, failures) = load.finish().await;
    let writes = writes.lock().expect("writes").clone();
    let failed: Vec<&(Instant, Duration, Result<(), String>)> = writes
        .iter()
        .filter(|(at, _, r)| *at >= killed_at && *at < restarted_at && r.is_err())
        .collect();
    eprintln!(
        "reads by answering server: {by_port:?}; {during} while the primary was down; {} failed",
        failures.len()
    );
    eprintln!(
        "{} writes failed while the primary was down, the slowest in {:?}; first error: {:?}; last: {:?}",
        failed.len(),
        failed.iter().map(|w| w.1).max().unwrap_or_default(),
        failed.first().map(|w| &w.2),
        failed.last().map(|w| &w.2)
    );
    assert!(failures.is_empty(), "failed reads: {failures:?}");
    assert!(during > 100, "reads went on: {during}");
    assert!(failed.len() >= 5, "writes were refused while ds2 was down");
    for (_, took, result) in &failed {
        let message = result.as_ref().err().cloned().unwrap_or_default();
        assert!(
            *took < Duration::from_secs(1),
            "fails fast: {took:?} {message}"
        );
        assert!(message.contains("data source ds2"), "{message}");
    }
    caught_up(&cfg, &["ds2"]).await;
    drop_table(&proxy, TABLE).await;
}

/// The read right after a write, with the primary killed before anyone
/// learnt the write's position: the replicas received the write before the
/// primary died, and one that applied all it received serves the read —
/// for another session (`read_consistency = "proxy"`, the default) and for
/// the writing session itself (`"session"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_then_a_dead_primary_still_reads_from_a_replica() {
    const TABLE: &str = "rwsplit_dead_primary";
    let text = config_text(TABLE, "", "");
    let test = "a_write_then_a_dead_primary";
    let Some((cfg, proxy, _sandbox)) = start(test, &text, TABLE, &["ds2"]).await else {
        return;
    };
    let session_text = text.replacen(
        "[server]\n",
        "[server]\nread_consistency = \"session\"\n",
        1,
    );
    let session_proxy = proxy_in_rotation(&session_text, &["ds2"]).await;
    let (p2, r2) = servers(&cfg, "ds2");
    let server = blocking(move || Server::locate(p2)).await;
    assert!(!server.replica, "{p2} is a primary");
    // Ids 2 and 6 live on ds2.
    let mut writer = connect(&proxy).await;
    let mut reader = connect(&proxy).await;
    let mut own = connect(&session_proxy).await;
    writer
        .execute(format!("UPDATE {TABLE} SET v = 102 WHERE id = 2").as_str())
        .await
        .expect("write through the default proxy");
    own.execute(format!("UPDATE {TABLE} SET v = 106 WHERE id = 6").as_str())
        .await
        .expect("write through the session-consistency proxy");
    let restart = blocking({
        let server = server.clone();
        move || server.kill()
    })
    .await;
    let read = |id: i64| format!("SELECT @@port, v FROM {TABLE} WHERE id = {id}");
    for (name, conn, id, written) in [
        ("another session (proxy)", &mut reader, 2, 102),
        ("the writing session (session)", &mut own, 6, 106),
    ] {
        let row = conn
            .fetch_one(sqlx::raw_sql(&read(id)))
            .await
            .unwrap_or_else(|e| panic!("{name}: the read failed with ds2's primary down: {e}"));
        let port = int(&row, 0) as u16;
        assert!(
            r2.contains(&port),
            "{name}: read by {port}, not a replica of ds2"
        );
        assert_eq!(int(&row, 1), written, "{name}: the read sees the write");
    }
    restart_primary(&server, restart, &r2).await;
    caught_up(&cfg, &["ds2"]).await;
    drop_table(&proxy, TABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_to_a_promoted_replica_moves_new_statements_and_keeps_sessions() {
    const TABLE: &str = "rwsplit_promote";
    let before = config_text(
        TABLE,
        "",
        &read_section("ds1", "strategy = \"round_robin\""),
    );
    let Some((cfg, _sandbox)) = begin("a_reload_to_a_promoted_replica", &before).await else {
        return;
    };
    let (p1, r1) = servers(&cfg, "ds1");
    let promoted = r1[0];
    // ds1.replica1 becomes ds1's primary; ds1.replica2 still follows the
    // old primary, so it is left out until someone re-points it.
    let after = set_key(
        &set_key(
            &before,
            "data_sources.ds1",
            "url",
            &format!("\"mysql://root@127.0.0.1:{promoted}/ds1\""),
        ),
        "data_sources.ds1",
        "replicas",
        "[]",
    );
    Config::from_toml_str(&after).expect("promoted config");
    let path = write_config_file("rwsplit_promote", &before);
    let proxy = start_proxy_from_file(&path).await;
    create_table(&proxy, TABLE).await;
    caught_up(&cfg, &["ds1"]).await;
    in_rotation(&proxy, &["ds1"]).await;
    let server = blocking(move || Server::locate(promoted)).await;
    let writable = Undo::admin(
        &server,
        "SET GLOBAL read_only = 0",
        "SET GLOBAL read_only = 1",
    );
    let at = |id: i64| format!("SELECT @@port, v FROM {TABLE} WHERE id = {id}");
    let mut idle = connect(&proxy).await;
    assert!(r1.contains(&port(&mut idle, &at(1)).await));
    let mut busy = connect(&proxy).await;
    busy.execute("BEGIN").await.expect("begin");
    busy.execute(format!("UPDATE {TABLE} SET v = 55 WHERE id = 5").as_str())
        .await
        .expect("update in a transaction");

    std::fs::write(&path, &after).expect("write the promoted config");
    let (status, body) = http(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{body}");
    eprintln!("reloaded: {body}");

    // The transaction finishes where it began.
    assert_eq!(
        port(&mut busy, &at(5)).await,
        p1,
        "mid-transaction: the old primary"
    );
    busy.execute("COMMIT").await.expect("commit");
    // New statements of the idle session go to the promoted server.
    idle.execute(format!("INSERT INTO {TABLE} VALUES (101, 7)").as_str())
        .await
        .expect("a write after the reload");
    let physical = format!("ds1.{TABLE}_1");
    let mut on_promoted = direct(promoted).await;
    let mut on_old = direct(p1).await;
    assert_eq!(
        scalar(
            &mut on_promoted,
            &format!("SELECT COUNT(*) FROM {physical} WHERE id = 101")
        )
        .await,
        "1",
        "the write landed on the promoted replica"
    );
    assert_eq!(
        scalar(
            &mut on_old,
            &format!("SELECT COUNT(*) FROM {physical} WHERE id = 101")
        )
        .await,
        "0",
        "and not on the old primary"
    );
    assert_eq!(port(&mut idle, &at(101)).await, promoted);
    // The transaction's commit reached the promoted server by replication;
    // after it, that session follows the new configuration too.
    let pos = scalar(&mut on_old, "SELECT @@gtid_binlog_pos").await;
    assert_eq!(
        scalar(
            &mut on_promoted,
            &format!("SELECT MASTER_GTID_WAIT('{pos}', 10)")
        )
        .await,
        "0"
    );
    let row = busy.fetch_one(at(5).as_str()).await.expect("read");
    assert_eq!((int(&row, 0) as u16, int(&row, 1)), (promoted, 55));
    let mut fresh = connect(&proxy).await;
    assert_eq!(port(&mut fresh, &at(1)).await, promoted);
    // Other nodes are untouched.
    let (_, r0) = servers(&cfg, "ds0");
    assert!(r0.contains(&port(&mut idle, &at(0)).await));
    eprintln!("after the reload: ds1 statements on {promoted}; the idle and the mid-transaction sessions went on");

    // Back: the old primary, read_only again, the diverged row gone with
    // the table (the DROP replicates from the old primary).
    drop(writable);
    std::fs::write(&path, &before).expect("write the config back");
    let (status, body) = http(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{body}");
    on_promoted.close().await.ok();
    on_old.close().await.ok();
    drop(idle);
    drop(busy);
    drop(fresh);
    drop_table(&proxy, TABLE).await;
    caught_up(&cfg, &["ds1"]).await;
    blocking(move || wait_replicating(promoted, Duration::from_secs(10))).await;
}
