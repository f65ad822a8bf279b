//! Protocol behaviour of ShardGate itself, with sqlx and the mariadb CLI:
//! authentication errors, unknown databases, max_allowed_packet, multiple
//! result sets, packets over 16 MiB, session state under pool churn and
//! transactions pinning their backend connection.
//!
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use futures_util::TryStreamExt;
use serde_json::{json, Value};
use shardgate_integration_tests::fixtures::admin_request;
use shardgate_integration_tests::sqlx_scenario::{render_rows, render_value, sha256_hex};
use shardgate_integration_tests::{
    assert_same_transcript, db_error, direct_endpoint, mariadb_cli, sandbox, sandbox_ready,
    start_proxy, test_config, Config, Endpoint, RunningProxy,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Either, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A small pool for ds0, so that sessions keep landing on each other's
/// backend connections.
fn small_pool(cfg: &mut Config) {
    let ds = cfg.server.default_data_source.clone();
    cfg.data_sources
        .get_mut(&ds)
        .expect("default data source")
        .pool
        .max_size = 3;
}

/// The sandbox check, then ShardGate on the test config after `tweak`.
async fn setup(test: &str, tweak: impl FnOnce(&mut Config)) -> Option<(Endpoint, RunningProxy)> {
    let mut cfg = test_config();
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    tweak(&mut cfg);
    let direct = direct_endpoint(&cfg);
    let proxy = start_proxy(cfg).await;
    Some((direct, proxy))
}

fn ok<T>(r: Result<T, sqlx::Error>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn exec(conn: &mut MySqlConnection, sql: &str) {
    ok(sqlx::raw_sql(sql).execute(&mut *conn).await, sql);
}

/// Expects a server error; returns (number, sqlstate, message).
fn server_error<T: std::fmt::Debug>(
    r: Result<T, sqlx::Error>,
    what: &str,
) -> (u16, Option<String>, String) {
    match r {
        Ok(v) => panic!("{what}: expected a server error, got {v:?}"),
        Err(e) => db_error(&e)
            .unwrap_or_else(|| panic!("{what}: expected a server error (ERR packet), got {e}")),
    }
}

// ------------------------------------------------------------ authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_access_denied_1045() {
    let _sandbox = sandbox::shared().await;
    let Some((_direct, proxy)) = setup("wrong_password_is_access_denied_1045", |_| {}).await else {
        return;
    };
    let ep = proxy.endpoint();

    let (code, state, msg) = server_error(
        ep.with_password("definitely-wrong")
            .connect()
            .await
            .map(drop),
        "wrong password",
    );
    assert_eq!(code, 1045, "wrong password: {msg}");
    assert_eq!(state.as_deref(), Some("28000"), "wrong password: {msg}");
    assert!(
        msg.contains("Access denied for user"),
        "wrong password: {msg}"
    );

    let (code, _, msg) = server_error(
        ep.with_user("no_such_user").connect().await.map(drop),
        "unknown user",
    );
    assert_eq!(code, 1045, "unknown user: {msg}");
    assert!(
        msg.contains("Access denied for user"),
        "unknown user: {msg}"
    );

    let out = mariadb_cli(&ep.with_password("definitely-wrong"), "SELECT 1;\n", &[])
        .await
        .unwrap();
    assert!(
        out.contains("ERROR 1045 (28000)") && out.contains("Access denied for user"),
        "mariadb CLI, wrong password:\n{out}"
    );

    // Each of the three is counted.
    assert_eq!(
        failed_logins(&proxy, "access_denied").await,
        3,
        "shardgate_failed_logins_total"
    );

    // and the right password still works
    let mut conn = ok(ep.connect().await, "connect with the right password");
    let one: i64 = ok(
        sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await,
        "SELECT 1",
    );
    assert_eq!(one, 1);
}

/// `shardgate_failed_logins_total{reason}` from the proxy's `/metrics`.
pub(crate) async fn failed_logins(proxy: &RunningProxy, reason: &str) -> u64 {
    metric(
        proxy,
        &format!("shardgate_failed_logins_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// A metric's value in `/metrics` (0 when absent); `series` is its name
/// with labels, as the exposition writes them.
async fn metric(proxy: &RunningProxy, series: &str) -> u64 {
    let (_, metrics) = admin_request(proxy, "GET", "/metrics", "").await;
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A session that waits longer than `server.wait_timeout_ms` for its next
/// command is closed, as MariaDB closes it after `wait_timeout`: its open
/// transaction is rolled back. A session's own `SET wait_timeout` (seconds)
/// replaces the configured value for it (COM_RESET_CONNECTION brings the
/// configured value back: `wire::reset_connection_brings_back_the_configured_wait_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_wait_timeout() {
    let _sandbox = sandbox::shared().await;
    let test = "idle_sessions_are_closed_after_wait_timeout";
    let Some((_direct, proxy)) = setup(test, |cfg| cfg.server.wait_timeout_ms = 1500).await else {
        return;
    };
    let ep = proxy.endpoint();
    let mut setup_conn = ok(ep.connect().await, "connect");
    exec(&mut setup_conn, "DROP TABLE IF EXISTS it_idle").await;
    exec(&mut setup_conn, "CREATE TABLE it_idle (id INT PRIMARY KEY)").await;
    drop(setup_conn);
    let mut in_transaction = ok(ep.connect().await, "connect");
    exec(&mut in_transaction, "BEGIN").await;
    exec(&mut in_transaction, "INSERT INTO it_idle VALUES (1)").await;
    let mut longer = ok(ep.connect().await, "connect");
    exec(&mut longer, "SET SESSION wait_timeout = 30").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    let closed = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&mut in_transaction)
        .await;
    assert!(closed.is_err(), "the idle session was closed: {closed:?}");
    let one: i64 = ok(
        sqlx::query_scalar("SELECT 1").fetch_one(&mut longer).await,
        "the session with a longer wait_timeout",
    );
    assert_eq!(one, 1);
    let mut check = ok(ep.connect().await, "connect");
    let rows: i64 = ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM it_idle")
            .fetch_one(&mut check)
            .await,
        "count",
    );
    assert_eq!(rows, 0, "the idle session's transaction was rolled back");
    exec(&mut check, "DROP TABLE it_idle").await;
    assert_eq!(
        metric(&proxy, "shardgate_idle_sessions_closed_total").await,
        1,
        "counted in /metrics"
    );
}

/// A user has at most `server.max_user_connections` sessions open, or its
/// own `max_connections` (one more gets MariaDB's 1203 after the password
/// check); a host whose logins fail `server.max_connect_errors` times in a
/// row (a success starts the count again) is refused with 1129 before the
/// greeting, even with the right password, until `server.host_block_ms`
/// has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_bounded_and_failing_hosts_blocked() {
    let _sandbox = sandbox::shared().await;
    let test = "sessions_per_user_are_bounded_and_failing_hosts_blocked";
    let Some((_direct, proxy)) = setup(test, |cfg| {
        cfg.server.max_user_connections = 2;
        cfg.server.max_connect_errors = 3;
        cfg.server.host_block_ms = 1500;
        let mut limited = shardgate_rules::config::UserConfig::with_password("limited", "pw");
        limited.max_connections = Some(1);
        cfg.server.users.push(limited);
    })
    .await
    else {
        return;
    };
    let root = proxy.endpoint();
    let limited = Endpoint {
        user: "limited".into(),
        password: "pw".into(),
        ..root.clone()
    };
    let wrong = Endpoint {
        password: "not the password".into(),
        ..root.clone()
    };
    let mut first = ok(root.connect().await, "root's first session");
    let _second = ok(root.connect().await, "root's second session");
    let (code, state, msg) = server_error(root.connect().await.map(drop), "root's third");
    assert_eq!((code, state.as_deref()), (1203, Some("42000")), "{msg}");
    assert!(
        msg.starts_with(
            "User root already has more than 'max_user_connections' active connections"
        ),
        "{msg}"
    );
    let only = ok(limited.connect().await, "limited's session");
    let (code, _, _) = server_error(limited.connect().await.map(drop), "limited's second");
    assert_eq!(code, 1203, "the user's own limit of 1");
    drop(only);
    let one: i64 = ok(
        sqlx::query_scalar("SELECT 1").fetch_one(&mut first).await,
        "a session within the limit",
    );
    assert_eq!(one, 1);
    drop(first);
    // Until the proxy has seen the close: each try before it is one more
    // refusal for the user's limit.
    let (mut again, mut refused_while_closing) = (None, 0);
    for _ in 0..50 {
        match root.connect().await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => {
                refused_while_closing += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
        }
    }
    drop(again.expect("a place once root's first session closed"));

    // Two failures, a success: the count starts again.
    for _ in 0..2 {
        let (code, _, _) = server_error(wrong.connect().await.map(drop), "a wrong password");
        assert_eq!(code, 1045);
    }
    drop(ok(root.connect().await, "a success in between"));
    for _ in 0..2 {
        let (code, _, _) = server_error(wrong.connect().await.map(drop), "a wrong password");
        assert_eq!(code, 1045, "not blocked: the success cleared the count");
    }
    let (code, _, _) = server_error(wrong.connect().await.map(drop), "the third in a row");
    assert_eq!(code, 1045);
    let (code, state, msg) = server_error(root.connect().await.map(drop), "blocked");
    assert_eq!((code, state.as_deref()), (1129, Some("HY000")), "{msg}");
    assert!(
        msg.starts_with("Host '127.0.0.1' is blocked because of many connection errors"),
        "{msg}"
    );
    // At least this test's refusal: while the host is blocked, a client of
    // another test in this process (its proxy's old port handed to this
    // one) may be refused here too.
    assert!(failed_logins(&proxy, "host_blocked").await >= 1);
    assert_eq!(
        failed_logins(&proxy, "user_limit").await,
        2 + refused_while_closing
    );
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    drop(ok(root.connect().await, "the block ran out"));
}

/// `server.max_connections` counts every open client connection, logged in
/// or not: one more is refused with 1040 (Too many connections) as MariaDB
/// refuses it, through sqlx and the mariadb CLI; a closed one frees its
/// place. A connection that does not log in within
/// `server.connect_timeout_ms` is closed, and frees its place too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_1040_and_silent_ones_are_closed() {
    let _sandbox = sandbox::shared().await;
    let test = "connections_over_the_limit_get_1040_and_silent_ones_are_closed";
    let Some((_direct, proxy)) = setup(test, |cfg| {
        cfg.server.max_connections = 3;
        cfg.server.connect_timeout_ms = 500;
    })
    .await
    else {
        return;
    };
    let ep = proxy.endpoint();
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(ok(ep.connect().await, &format!("connection {i}")));
    }
    // The third place is taken by a client that connects and says nothing.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (code, state, msg) = server_error(ep.connect().await.map(drop), "a fourth connection");
    assert_eq!(
        (code, state.as_deref(), msg.as_str()),
        (1040, Some("08004"), "Too many connections")
    );
    let out = mariadb_cli(&ep, "SELECT 1;\n", &[]).await.unwrap();
    // The CLI names the error (as "received before the TLS handshake"
    // when it would negotiate TLS, as with a MariaDB server).
    assert!(
        out.contains("1040") && out.contains("Too many connections"),
        "mariadb CLI over the limit:\n{out}"
    );

    // The silent one is closed after connect_timeout_ms: its greeting, then
    // the end of the stream.
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut bytes),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "a client that never logs in is closed: {read:?}"
    );
    assert_eq!(bytes.get(4), Some(&10), "it was greeted first");
    assert_eq!(failed_logins(&proxy, "aborted").await, 1, "the silent one");
    let mut third = ok(ep.connect().await, "a connection in the silent one's place");
    let (code, _, _) = server_error(ep.connect().await.map(drop), "over the limit again");
    assert_eq!(code, 1040);
    drop(held.pop());
    // The place of a closed session is free once the proxy has seen it go.
    let mut again = None;
    for _ in 0..50 {
        match ep.connect().await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let mut again = again.expect("a connection once another closed");
    for conn in [&mut third, &mut again] {
        let one: i64 = ok(
            sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await,
            "SELECT 1",
        );
        assert_eq!(one, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_1049() {
    let _sandbox = sandbox::shared().await;
    let Some((_direct, proxy)) = setup("unknown_database_is_1049", |_| {}).await else {
        return;
    };
    let ep = proxy.endpoint();

    let (code, state, msg) = server_error(
        ep.with_database("no_such_db_it").connect().await.map(drop),
        "connect to an unknown database",
    );
    assert_eq!(code, 1049, "{msg}");
    assert_eq!(state.as_deref(), Some("42000"), "{msg}");
    assert!(
        msg.contains("Unknown database") && msg.contains("no_such_db_it"),
        "{msg}"
    );

    // COM_INIT_DB (the CLI's USE): refused, and the session goes on
    let out = mariadb_cli(
        &ep,
        "USE no_such_db_it\nSELECT 'still here' AS alive;\nUSE wework\nSELECT 2 AS again;\n",
        &[],
    )
    .await
    .unwrap();
    assert!(
        out.contains("ERROR 1049 (42000)") && out.contains("Unknown database 'no_such_db_it'"),
        "USE no_such_db_it:\n{out}"
    );
    assert!(
        out.contains("alive\nstill here\n"),
        "the session must survive a failed USE:\n{out}"
    );
    assert!(
        out.contains("again\n2\n"),
        "USE of the logical database must work:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_the_logical_database_name() {
    let _sandbox = sandbox::shared().await;
    let Some((_direct, proxy)) = setup("clients_see_the_logical_database_name", |_| {}).await
    else {
        return;
    };
    let ep = proxy.endpoint();
    let mut conn = ok(ep.connect().await, "connect");
    let text: Option<String> = ok(
        sqlx::raw_sql("SELECT DATABASE()")
            .fetch_one(&mut conn)
            .await,
        "SELECT DATABASE()",
    )
    .try_get_unchecked(0)
    .unwrap();
    assert_eq!(
        text.as_deref(),
        Some(ep.database.as_str()),
        "SELECT DATABASE() (text protocol) through shardgate"
    );
    let bin: Option<String> = ok(
        sqlx::query_scalar("SELECT DATABASE()")
            .fetch_one(&mut conn)
            .await,
        "SELECT DATABASE()",
    );
    assert_eq!(
        bin.as_deref(),
        Some(ep.database.as_str()),
        "SELECT DATABASE() (prepared) through shardgate"
    );
}

// ------------------------------------------------------- max_allowed_packet

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_over_max_allowed_packet_is_refused_and_session_survives() {
    let _sandbox = sandbox::shared().await;
    const LIMIT: usize = 1 << 20;
    let Some((_direct, proxy)) = setup(
        "statement_over_max_allowed_packet_is_refused_and_session_survives",
        |cfg| cfg.server.max_allowed_packet = LIMIT,
    )
    .await
    else {
        return;
    };
    let mut conn = ok(proxy.endpoint().connect().await, "connect");

    // just under the limit: fine
    let under = format!("SELECT LENGTH('{}')", "u".repeat(LIMIT - 64 * 1024));
    let n: i64 = ok(
        sqlx::raw_sql(&under).fetch_one(&mut conn).await,
        "statement under the limit",
    )
    .try_get(0)
    .unwrap();
    assert_eq!(n as usize, LIMIT - 64 * 1024);

    // text protocol: a 2 MiB COM_QUERY
    let over = format!("SELECT LENGTH('{}') AS n", "o".repeat(2 * LIMIT));
    let (code, _state, msg) = server_error(
        sqlx::raw_sql(&over).fetch_all(&mut conn).await,
        "2 MiB COM_QUERY with a 1 MiB limit",
    );
    assert!(
        msg.to_lowercase().contains("max_allowed_packet"),
        "the error must name max_allowed_packet: {code}: {msg}"
    );
    assert_eq!(code, 1153, "ER_NET_PACKET_TOO_LARGE expected: {msg}");
    let after: i64 = ok(
        sqlx::query_scalar("SELECT 41 + 1")
            .fetch_one(&mut conn)
            .await,
        "a statement after the refusal",
    );
    assert_eq!(after, 42);

    // binary protocol: a 2 MiB parameter in COM_STMT_EXECUTE
    let r = sqlx::query("SELECT LENGTH(?)")
        .bind(vec![7u8; 2 * LIMIT])
        .fetch_all(&mut conn)
        .await;
    let (code, _state, msg) = server_error(r, "2 MiB COM_STMT_EXECUTE with a 1 MiB limit");
    assert!(
        msg.to_lowercase().contains("max_allowed_packet"),
        "the error must name max_allowed_packet: {code}: {msg}"
    );
    let after: i64 = ok(
        sqlx::query_scalar("SELECT ?")
            .bind(43i64)
            .fetch_one(&mut conn)
            .await,
        "a prepared statement after the refusal",
    );
    assert_eq!(after, 43);
    ok(conn.ping().await, "ping after the refusals");
}

// ------------------------------------------------------ multiple result sets

/// Every result of a (possibly multi-result) text query: rows, then the OK.
#[allow(deprecated)] // Query::fetch_many: a prepared CALL does return several results on MySQL
async fn all_results(conn: &mut MySqlConnection, sql: &str, prepared: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rows = Vec::new();
    let mut stream = if prepared {
        sqlx::query(sql).fetch_many(&mut *conn)
    } else {
        sqlx::raw_sql(sql).fetch_many(&mut *conn)
    };
    while let Some(item) = ok(stream.try_next().await, sql) {
        match item {
            Either::Right(row) => rows.push(row),
            Either::Left(done) => {
                let (columns, values) = render_rows(&rows);
                rows.clear();
                out.push(
                    json!({"columns": columns, "rows": values, "affected": done.rows_affected()}),
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_result_sets_come_through_whole() {
    let _sandbox = sandbox::shared().await;
    let Some((direct, proxy)) = setup("multiple_result_sets_come_through_whole", |_| {}).await
    else {
        return;
    };
    let mut setup_conn = ok(direct.connect().await, "connect to ds0");
    exec(&mut setup_conn, "DROP PROCEDURE IF EXISTS it_proto_two").await;
    exec(
        &mut setup_conn,
        "CREATE PROCEDURE it_proto_two() BEGIN \
           SELECT 1 AS a, 'x' AS b; \
           SELECT 2 AS c UNION ALL SELECT 3 UNION ALL SELECT 4; \
         END",
    )
    .await;

    // the mariadb CLI: a CALL, and a multi-statement COM_QUERY (DELIMITER keeps it one packet)
    let sql = "CALL it_proto_two();\n\
               DELIMITER //\n\
               SELECT 10 AS m1; SELECT 20 AS m2, 'y' AS m3; SELECT 30 AS m4 //\n\
               DELIMITER ;\n\
               SELECT 'after' AS tail;\n";
    let cli_direct = mariadb_cli(&direct, sql, &[]).await.unwrap();
    let cli_proxy = mariadb_cli(&proxy.endpoint(), sql, &[]).await.unwrap();
    assert_same_transcript("multi_result_cli", &cli_direct, &cli_proxy);
    for needle in [
        "a\tb\n1\tx\n",
        "c\n2\n3\n4\n",
        "m1\n10\n",
        "m2\tm3\n20\ty\n",
        "m4\n30\n",
        "tail\nafter\n",
    ] {
        assert!(
            cli_proxy.contains(needle),
            "missing {needle:?} through shardgate:\n{cli_proxy}"
        );
    }

    // sqlx: text multi-statement, text CALL, prepared CALL
    let mut transcripts = Vec::new();
    for ep in [&direct, &proxy.endpoint()] {
        let mut conn = ok(ep.connect().await, "connect");
        let mut t = Vec::new();
        t.push(json!({"multi": all_results(&mut conn, "SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; DO 1; SELECT 3 AS d", false).await}));
        t.push(json!({"call_text": all_results(&mut conn, "CALL it_proto_two()", false).await}));
        t.push(json!({"call_prepared": all_results(&mut conn, "CALL it_proto_two()", true).await}));
        // Again: the same statement, whose result sets the data source may
        // now send without column definitions (MariaDB metadata caching).
        t.push(json!({"call_prepared_again": all_results(&mut conn, "CALL it_proto_two()", true).await}));
        let after: i64 = ok(
            sqlx::query_scalar("SELECT 5").fetch_one(&mut conn).await,
            "after the multi-results",
        );
        t.push(json!({"after": after}));
        transcripts.push(t.iter().map(|v| v.to_string() + "\n").collect::<String>());
    }
    assert_same_transcript("multi_result_sqlx", &transcripts[0], &transcripts[1]);
    let t = &transcripts[1];
    for needle in [
        "\"i64:1\"",
        "\"two\"",
        "\"i64:3\"",
        "\"i64:4\"",
        "\"after\":5",
    ] {
        assert!(
            t.contains(needle),
            "missing {needle} through shardgate:\n{t}"
        );
    }
}

// -------------------------------------------------- packets over 16 MiB

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_over_16_mib_both_ways() {
    let _sandbox = sandbox::exclusive().await;
    const SIZE: usize = 20 << 20;
    const MAX_PAYLOAD: usize = 0xFF_FFFF;
    let Some((direct, proxy)) = setup("packets_over_16_mib_both_ways", |cfg| {
        cfg.server.max_allowed_packet = 64 << 20
    })
    .await
    else {
        return;
    };
    // the backend must accept 40 MiB statements (the sandbox allows 1 GiB)
    let mut admin = ok(direct.connect().await, "connect to ds0");
    let backend_max: u64 = ok(
        sqlx::query_scalar("SELECT @@global.max_allowed_packet")
            .fetch_one(&mut admin)
            .await,
        "max_allowed_packet",
    );
    if backend_max < (64 << 20) {
        exec(&mut admin, "SET GLOBAL max_allowed_packet = 1073741824").await;
    }
    exec(&mut admin, "DROP TABLE IF EXISTS it_bigpacket").await;
    exec(
        &mut admin,
        "CREATE TABLE it_bigpacket (id INT PRIMARY KEY, data LONGBLOB NOT NULL) ENGINE=InnoDB",
    )
    .await;
    drop(admin);

    let blob: Vec<u8> = (0..SIZE).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    let want = sha256_hex(&blob);
    let mut conn = ok(
        proxy.endpoint().connect().await,
        "connect through shardgate",
    );
    let clock = std::time::Instant::now();
    let lap = |what: &str| {
        if std::env::var_os("SHARDGATE_IT_VERBOSE").is_some() {
            shardgate_integration_tests::say(&format!(
                "packets_over_16_mib: {what} at {:?}",
                clock.elapsed()
            ));
        }
    };

    // client -> server, binary protocol: one COM_STMT_EXECUTE of ~20 MiB
    let done = ok(
        sqlx::query("INSERT INTO it_bigpacket (id, data) VALUES (?, ?)")
            .bind(1i32)
            .bind(&blob)
            .execute(&mut conn)
            .await,
        "20 MiB prepared INSERT",
    );
    lap("20 MiB prepared INSERT");
    assert_eq!(done.rows_affected(), 1);
    // client -> server, text protocol: a ~40 MiB COM_QUERY (hex literal)
    let mut sql = String::with_capacity(SIZE * 2 + 64);
    sql.push_str("INSERT INTO it_bigpacket (id, data) VALUES (2, X'");
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in &blob {
        sql.push(HEX[(b >> 4) as usize] as char);
        sql.push(HEX[(b & 15) as usize] as char);
    }
    sql.push_str("')");
    ok(
        sqlx::raw_sql(&sql).execute(&mut conn).await,
        "40 MiB text INSERT",
    );
    lap("40 MiB text INSERT");
    drop(sql);

    // the server got them whole
    for id in [1, 2] {
        let row = ok(
            sqlx::query("SELECT LENGTH(data), SHA2(data, 256) FROM it_bigpacket WHERE id = ?")
                .bind(id)
                .fetch_one(&mut conn)
                .await,
            "server-side check",
        );
        let len: i64 = row.try_get(0).unwrap();
        let sha: String = row.try_get_unchecked(1).unwrap();
        assert_eq!(
            (len as usize, sha.as_str()),
            (SIZE, want.as_str()),
            "row {id} as stored by the server"
        );
    }
    // server -> client: 20 MiB rows, binary and text protocol
    let back: Vec<u8> = ok(
        sqlx::query_scalar("SELECT data FROM it_bigpacket WHERE id = ?")
            .bind(1i32)
            .fetch_one(&mut conn)
            .await,
        "binary SELECT",
    );
    lap("binary SELECT");
    assert!(
        back.len() == SIZE && sha256_hex(&back) == want,
        "20 MiB binary row: got {} bytes",
        back.len()
    );
    let row = ok(
        sqlx::raw_sql("SELECT data FROM it_bigpacket WHERE id = 2")
            .fetch_one(&mut conn)
            .await,
        "text SELECT",
    );
    lap("text SELECT");
    let back: Vec<u8> = row.try_get(0).unwrap();
    assert!(
        back.len() == SIZE && sha256_hex(&back) == want,
        "20 MiB text row: got {} bytes",
        back.len()
    );

    // payloads of exactly 0xFFFFFF bytes must be followed by an empty packet
    // COM_QUERY: 1 command byte + the statement
    let prefix = "SELECT LENGTH('";
    let suffix = "') AS n";
    let pad = MAX_PAYLOAD - 1 - prefix.len() - suffix.len();
    let exact = format!("{prefix}{}{suffix}", "e".repeat(pad));
    assert_eq!(exact.len() + 1, MAX_PAYLOAD);
    let n: i64 = ok(
        sqlx::raw_sql(&exact).fetch_one(&mut conn).await,
        "COM_QUERY of exactly 0xFFFFFF bytes",
    )
    .try_get(0)
    .unwrap();
    lap("COM_QUERY of exactly 0xFFFFFF bytes");
    assert_eq!(n as usize, pad);
    // text row: lenenc prefix (4 bytes) + value
    let row = ok(
        sqlx::raw_sql(&format!("SELECT REPEAT('a', {})", MAX_PAYLOAD - 4))
            .fetch_one(&mut conn)
            .await,
        "text row of exactly 0xFFFFFF bytes",
    );
    lap("text row of exactly 0xFFFFFF bytes");
    let v: Vec<u8> = row.try_get_unchecked(0).unwrap();
    assert!(
        v.len() == MAX_PAYLOAD - 4 && v.iter().all(|&b| b == b'a'),
        "text row of 0xFFFFFF bytes: got {} bytes",
        v.len()
    );
    // binary row: 0x00 header + 1-byte null bitmap + lenenc prefix (4) + value
    let v: Vec<u8> = ok(
        sqlx::query_scalar("SELECT CAST(REPEAT('b', ?) AS BINARY)")
            .bind((MAX_PAYLOAD - 6) as i64)
            .fetch_one(&mut conn)
            .await,
        "binary row of exactly 0xFFFFFF bytes",
    );
    lap("binary row of exactly 0xFFFFFF bytes");
    assert!(
        v.len() == MAX_PAYLOAD - 6 && v.iter().all(|&b| b == b'b'),
        "binary row of 0xFFFFFF bytes: got {} bytes",
        v.len()
    );

    // and the session is still in sync
    let after: i64 = ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM it_bigpacket")
            .fetch_one(&mut conn)
            .await,
        "after big packets",
    );
    assert_eq!(after, 2);
    drop(conn);
    // 40 MiB of rows have no business staying in the sandbox (and its replicas)
    let mut admin = ok(direct.connect().await, "connect to ds0");
    exec(&mut admin, "DROP TABLE IF EXISTS it_bigpacket").await;
}

// ------------------------------------------------------------ session state

const STATE_QUERY: &str = "SELECT @@character_set_client, @@character_set_connection, @@character_set_results, \
                           @@sql_mode, @@time_zone, @v, CAST(FROM_UNIXTIME(0) AS CHAR), CHAR_LENGTH('é')";

fn state_of(row: &sqlx::mysql::MySqlRow) -> Vec<Value> {
    (0..row.len()).map(|i| render_value(row, i)).collect()
}

/// Each iteration reads the session's variables, alternately through the
/// text and the binary protocol; `check` returns a complaint, if any.
async fn read_state(conn: &mut MySqlConnection, i: usize) -> Result<Vec<Value>, sqlx::Error> {
    let row = if i % 2 == 0 {
        sqlx::raw_sql(STATE_QUERY).fetch_one(&mut *conn).await?
    } else {
        sqlx::query(STATE_QUERY).fetch_one(&mut *conn).await?
    };
    Ok(state_of(&row))
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_is_replayed_under_pool_churn() {
    let _sandbox = sandbox::shared().await;
    let Some((_direct, proxy)) =
        setup("session_state_is_replayed_under_pool_churn", small_pool).await
    else {
        return;
    };
    let ep = proxy.endpoint();
    let stop = Arc::new(AtomicBool::new(false));

    // sessions with their own state, reconnecting every few statements
    // (joined on this task rather than spawned: sqlx's executor bounds are not
    // general enough for tokio::spawn here)
    let mut churners = Vec::new();
    for k in 1..=6usize {
        let ep = ep.clone();
        let stop = stop.clone();
        churners.push(async move {
            let mut bad = Vec::new();
            let tz = format!("-0{k}:00");
            let mut conn: Option<MySqlConnection> = None;
            for i in 0..400usize {
                if stop.load(Ordering::Relaxed) && i >= 30 {
                    break;
                }
                if i % 8 == 0 {
                    if let Some(c) = conn.take() {
                        let _ = c.close().await;
                    }
                }
                if conn.is_none() {
                    let mut c = ep
                        .connect()
                        .await
                        .map_err(|e| format!("churner {k}: connect: {e}"))?;
                    sqlx::raw_sql(&format!("SET time_zone = '{tz}', @v = {}", 1000 + k))
                        .execute(&mut c)
                        .await
                        .map_err(|e| format!("churner {k}: SET: {e}"))?;
                    conn = Some(c);
                }
                let c = conn.as_mut().unwrap();
                let s = read_state(c, i + k)
                    .await
                    .map_err(|e| format!("churner {k}: {e}"))?;
                let want_v = format!("i64:{}", 1000 + k);
                if text(&s[0]) != "utf8mb4"
                    || text(&s[3]).contains("ANSI_QUOTES")
                    || text(&s[4]) != tz
                    || text(&s[5]) != want_v
                {
                    bad.push(format!("churner {k} iteration {i}: {s:?}"));
                }
            }
            Ok::<Vec<String>, String>(bad)
        });
    }
    // fresh sessions must start clean: no state leaked from pooled backend connections
    let fresh = {
        let ep = ep.clone();
        async move {
            let mut bad = Vec::new();
            for i in 0..40usize {
                let mut c = ep
                    .connect()
                    .await
                    .map_err(|e| format!("fresh: connect: {e}"))?;
                let s = read_state(&mut c, i)
                    .await
                    .map_err(|e| format!("fresh: {e}"))?;
                // sqlx itself sets NAMES utf8mb4 and time_zone '+00:00' on connect
                if text(&s[0]) != "utf8mb4"
                    || text(&s[3]).contains("ANSI_QUOTES")
                    || text(&s[4]) != "+00:00"
                    || !s[5].is_null()
                {
                    bad.push(format!("fresh session {i}: {s:?}"));
                }
                let _ = c.close().await;
            }
            Ok::<Vec<String>, String>(bad)
        }
    };

    // the session under test
    let main = async {
        let mut conn = ok(ep.connect().await, "connect");
        for set in [
            "SET NAMES latin1",
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET time_zone = '+05:00'",
            "SET @v = 42",
        ] {
            exec(&mut conn, set).await;
        }
        let want = vec![
            json!("latin1"),
            json!("latin1"),
            json!("latin1"),
            json!("ANSI_QUOTES"),
            json!("+05:00"),
            json!("i64:42"),
            json!("1970-01-01 05:00:00"),
            json!("i64:2"), // 'é' sent as UTF-8 is two latin1 characters
        ];
        let mut bad = Vec::new();
        for i in 0..200usize {
            let s = ok(read_state(&mut conn, i).await, "state query");
            if s != want {
                bad.push(format!("iteration {i}: got {s:?}"));
            }
            if i % 25 == 7 {
                // ANSI_QUOTES: "abc" is an identifier, and the error leaves the state alone
                let (code, _, msg) = server_error(
                    sqlx::raw_sql("SELECT \"abc\"").fetch_all(&mut conn).await,
                    "ANSI_QUOTES",
                );
                if code != 1054 {
                    bad.push(format!(
                        "iteration {i}: SELECT \"abc\" under ANSI_QUOTES gave {code}: {msg}"
                    ));
                }
            }
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        bad
    };

    let (mut bad, churned, fresh) =
        tokio::join!(main, futures_util::future::join_all(churners), fresh);
    for r in churned {
        bad.extend(r.unwrap_or_else(|e| panic!("{e}")));
    }
    bad.extend(fresh.unwrap_or_else(|e| panic!("{e}")));
    assert!(
        bad.is_empty(),
        "{} state mismatches through shardgate, first ones:\n{}",
        bad.len(),
        bad[..bad.len().min(15)].join("\n")
    );
}

// ------------------------------------------------------------- transactions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_pin_their_backend_connection() {
    let _sandbox = sandbox::shared().await;
    let Some((direct, proxy)) =
        setup("transactions_pin_their_backend_connection", small_pool).await
    else {
        return;
    };
    let mut admin = ok(direct.connect().await, "connect to ds0");
    exec(&mut admin, "DROP TABLE IF EXISTS it_txn_pin").await;
    exec(
        &mut admin,
        "CREATE TABLE it_txn_pin (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB",
    )
    .await;
    drop(admin);

    let ep = proxy.endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    // background sessions keep the pool's connections moving
    let mut churn = Vec::new();
    for k in 0..4 {
        let ep = ep.clone();
        let stop = stop.clone();
        churn.push(tokio::spawn(async move {
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut c = ep.connect().await.map_err(|e| format!("churn {k}: {e}"))?;
                for _ in 0..5 {
                    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM it_txn_pin")
                        .fetch_one(&mut c)
                        .await
                        .map_err(|e| format!("churn {k}/{i}: {e}"))?;
                }
                let _ = c.close().await;
            }
            Ok::<(), String>(())
        }));
    }

    let mut a = ok(ep.connect().await, "connect a");
    let mut b = ok(ep.connect().await, "connect b");
    async fn count(c: &mut MySqlConnection, id: i32, prepared: bool) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM it_txn_pin WHERE id = {id}");
        if prepared {
            ok(sqlx::query_scalar(&sql).fetch_one(&mut *c).await, &sql)
        } else {
            ok(sqlx::raw_sql(&sql).fetch_one(&mut *c).await, &sql)
                .try_get(0)
                .unwrap()
        }
    }
    async fn in_txn(c: &mut MySqlConnection) -> u64 {
        ok(
            sqlx::query_scalar("SELECT @@in_transaction")
                .fetch_one(&mut *c)
                .await,
            "@@in_transaction",
        )
    }

    // BEGIN ... COMMIT
    exec(&mut a, "BEGIN").await;
    ok(
        sqlx::query("INSERT INTO it_txn_pin VALUES (?, ?)")
            .bind(1)
            .bind("begin-commit")
            .execute(&mut a)
            .await,
        "insert 1",
    );
    for i in 0..30 {
        assert_eq!(
            count(&mut a, 1, i % 2 == 0).await,
            1,
            "BEGIN: the writer must read its own row (iteration {i})"
        );
        assert_eq!(
            in_txn(&mut a).await,
            1,
            "BEGIN: @@in_transaction in the writer (iteration {i})"
        );
        assert_eq!(
            count(&mut b, 1, i % 2 == 1).await,
            0,
            "BEGIN: another session must not see the row before COMMIT"
        );
        tokio::task::yield_now().await;
    }
    exec(&mut a, "COMMIT").await;
    assert_eq!(in_txn(&mut a).await, 0, "after COMMIT");
    assert_eq!(
        count(&mut b, 1, true).await,
        1,
        "another session sees the row after COMMIT"
    );

    // SET autocommit = 0 ... ROLLBACK
    exec(&mut a, "SET autocommit = 0").await;
    ok(
        sqlx::query("INSERT INTO it_txn_pin VALUES (?, ?)")
            .bind(2)
            .bind("autocommit-0")
            .execute(&mut a)
            .await,
        "insert 2",
    );
    for i in 0..30 {
        assert_eq!(
            count(&mut a, 2, i % 2 == 0).await,
            1,
            "autocommit=0: the writer must read its own row (iteration {i})"
        );
        assert_eq!(
            count(&mut b, 2, i % 2 == 1).await,
            0,
            "autocommit=0: another session must not see the row"
        );
        tokio::task::yield_now().await;
    }
    exec(&mut a, "ROLLBACK").await;
    assert_eq!(
        count(&mut a, 2, true).await,
        0,
        "after ROLLBACK the writer does not see the row"
    );
    assert_eq!(
        count(&mut b, 2, false).await,
        0,
        "after ROLLBACK nobody sees the row"
    );
    // still autocommit=0: the next statement opens a new transaction
    ok(
        sqlx::query("INSERT INTO it_txn_pin VALUES (?, ?)")
            .bind(3)
            .bind("autocommit-0-commit")
            .execute(&mut a)
            .await,
        "insert 3",
    );
    assert_eq!(
        count(&mut b, 3, true).await,
        0,
        "autocommit=0: not visible before COMMIT"
    );
    exec(&mut a, "COMMIT").await;
    assert_eq!(
        count(&mut b, 3, true).await,
        1,
        "autocommit=0: visible after COMMIT"
    );
    exec(&mut a, "SET autocommit = 1").await;

    // sqlx's transaction API (BEGIN / prepared statements / ROLLBACK)
    {
        let mut tx = ok(a.begin().await, "begin");
        ok(
            sqlx::query("INSERT INTO it_txn_pin VALUES (?, ?)")
                .bind(4)
                .bind("sqlx-tx")
                .execute(&mut *tx)
                .await,
            "insert 4",
        );
        for i in 0..10 {
            assert_eq!(
                count(&mut tx, 4, i % 2 == 0).await,
                1,
                "sqlx tx: own row visible (iteration {i})"
            );
            assert_eq!(
                count(&mut b, 4, true).await,
                0,
                "sqlx tx: not visible to others"
            );
        }
        ok(tx.rollback().await, "rollback");
    }
    assert_eq!(count(&mut a, 4, true).await, 0, "sqlx tx rolled back");

    // a session that disconnects mid-transaction: its work is rolled back
    {
        let mut c = ok(ep.connect().await, "connect c");
        exec(&mut c, "BEGIN").await;
        ok(
            sqlx::query("INSERT INTO it_txn_pin VALUES (?, ?)")
                .bind(5)
                .bind("abandoned")
                .execute(&mut c)
                .await,
            "insert 5",
        );
        ok(c.close().await, "close mid-transaction");
    }
    let mut seen = 1;
    for _ in 0..50 {
        seen = count(&mut b, 5, true).await;
        if seen == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 0, "a transaction abandoned by its client must be rolled back, not committed or left to a pooled connection");

    stop.store(true, Ordering::Relaxed);
    for h in churn {
        h.await
            .expect("churn task")
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
