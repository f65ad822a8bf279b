//! The SQL admin statements on the MySQL port (`SHOW SHARDING TABLE RULES`,
//! `SHOW SHARDING TABLE NODES`, `SHOW BROADCAST TABLE RULES`, `SHOW STORAGE
//! UNITS`, `SHOW POOLS`, `SHOW STATS`, `PREVIEW`), through the real mariadb
//! CLI and sqlx, against the seed's rules (`examples/wework.toml`): column
//! names, key rows, errors, and that every other SHOW still reaches the
//! backend. sqlx asks for CLIENT_DEPRECATE_EOF and the mariadb CLI does
//! not, so both endings of a result set are exercised.
//!
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use shardgate_integration_tests::{
    db_error, mariadb_cli, sandbox, sandbox_ready, start_proxy, test_config, Endpoint, RunningProxy,
};
use sqlx::{Column, Connection, Row};

async fn setup(test: &str) -> Option<RunningProxy> {
    let cfg = test_config();
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    Some(start_proxy(cfg).await)
}

/// One statement's result through the CLI (`--batch`): header and rows,
/// tab-separated; panics with the output when the CLI reports an error.
async fn cli_table(ep: &Endpoint, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let out = cli(ep, sql).await;
    assert!(!out.contains("ERROR "), "{sql}: {out}");
    let mut lines = out
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect());
    let header: Vec<String> = lines.next().unwrap_or_else(|| panic!("{sql}: no output"));
    (header, lines.collect())
}

async fn cli(ep: &Endpoint, sql: &str) -> String {
    mariadb_cli(ep, &format!("{sql}\n"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn cell<'a, H: AsRef<str> + std::fmt::Debug>(
    header: &[H],
    row: &'a [String],
    column: &str,
) -> &'a str {
    let i = header
        .iter()
        .position(|h| h.as_ref() == column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    &row[i]
}

const RULE_COLUMNS: &[&str] = &[
    "table",
    "actual_data_nodes",
    "actual_data_sources",
    "database_sharding_column",
    "database_sharding_algorithm_type",
    "database_sharding_algorithm_props",
    "table_sharding_column",
    "table_sharding_algorithm_type",
    "table_sharding_algorithm_props",
    "key_generate_column",
    "key_generator_type",
    "key_generator_props",
    "binding_tables",
    "node_count",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharding_and_broadcast_rules_through_the_cli() {
    let _sandbox = sandbox::shared().await;
    let Some(proxy) = setup("sharding_and_broadcast_rules_through_the_cli").await else {
        return;
    };
    let ep = proxy.endpoint();

    let (header, rows) = cli_table(&ep, "SHOW SHARDING TABLE RULES;").await;
    assert_eq!(header, RULE_COLUMNS);
    let tables: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(tables, ["message_records", "users"]);
    let users = &rows[1];
    assert_eq!(
        cell(&header, users, "actual_data_nodes"),
        "ds${0..3}.users_${0..15}"
    );
    assert_eq!(
        cell(&header, users, "actual_data_sources"),
        "ds0,ds1,ds2,ds3"
    );
    assert_eq!(cell(&header, users, "database_sharding_column"), "user_id");
    assert_eq!(
        cell(&header, users, "database_sharding_algorithm_type"),
        "mod"
    );
    assert_eq!(
        cell(&header, users, "database_sharding_algorithm_props"),
        "count=4"
    );
    assert_eq!(
        cell(&header, users, "table_sharding_algorithm_type"),
        "expression"
    );
    assert_eq!(cell(&header, users, "key_generator_type"), "snowflake");
    assert_eq!(cell(&header, users, "binding_tables"), "NULL");
    assert_eq!(cell(&header, users, "node_count"), "64");

    // One table; keywords in any case, FROM the logical database, `;`.
    let (header, rows) = cli_table(&ep, "show Sharding table RULE users from wework;").await;
    assert_eq!(header, RULE_COLUMNS);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "users");
    let (_, rows) = cli_table(&ep, "SHOW SHARDING TABLE RULE message_records").await;
    assert_eq!(
        cell(RULE_COLUMNS, &rows[0], "table_sharding_algorithm_type"),
        "month"
    );

    let (header, rows) = cli_table(&ep, "SHOW SHARDING TABLE NODES users;").await;
    assert_eq!(header, ["name", "nodes"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "users");
    let nodes: Vec<&str> = rows[0][1].split(", ").collect();
    assert_eq!(nodes.len(), 64, "{nodes:?}");
    assert_eq!(nodes[..3], ["ds0.users_0", "ds0.users_1", "ds0.users_2"]);
    assert_eq!(nodes[16], "ds1.users_0");
    assert_eq!(nodes[63], "ds3.users_15");

    let (_, rows) = cli_table(&ep, "SHOW SHARDING TABLE NODES FROM wework").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "message_records");
    assert_eq!(rows[0][1].split(", ").count(), 48);
    assert!(rows[0][1].starts_with("ds0.message_records_202401, "));

    let (header, rows) = cli_table(&ep, "SHOW BROADCAST TABLE RULES").await;
    assert_eq!(header, ["broadcast_table", "actual_data_sources"]);
    let broadcast: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        broadcast,
        ["sys_configs", "sys_dictionaries", "sys_permissions"]
    );
    assert!(rows.iter().all(|r| r[1] == "ds0,ds1,ds2,ds3"), "{rows:?}");

    // Errors, as MariaDB numbers them: no such table, unknown database,
    // a malformed admin statement. --force goes on after each.
    let out = cli(
        &ep,
        "SHOW SHARDING TABLE NODES nope;\nSHOW SHARDING TABLE RULE sys_configs;\nSHOW SHARDING TABLE RULES FROM elsewhere;\nSHOW SHARDING ALGORITHMS;\nSELECT 'still here';",
    )
    .await;
    assert!(
        out.contains("ERROR 1146 (42S02) at line 1: Table 'wework.nope' doesn't exist in the sharding rules; the sharded tables are message_records, users"),
        "{out}"
    );
    assert!(
        out.contains(
            "ERROR 1146 (42S02) at line 2: Table 'wework.sys_configs' is a broadcast table"
        ),
        "{out}"
    );
    assert!(
        out.contains("ERROR 1049 (42000) at line 3: Unknown database 'elsewhere'"),
        "{out}"
    );
    assert!(
        out.contains(
            "ERROR 1064 (42000) at line 4: You have an error in your SQL syntax near 'ALGORITHMS'"
        ),
        "{out}"
    );
    assert!(out.contains("still here"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_units_and_pools_list_every_primary_and_replica() {
    let _sandbox = sandbox::shared().await;
    let Some(proxy) = setup("storage_units_and_pools_list_every_primary_and_replica").await else {
        return;
    };
    let ep = proxy.endpoint();
    let expected_names: Vec<String> = (0..4)
        .flat_map(|i| {
            [
                format!("ds{i}"),
                format!("ds{i}.replica1"),
                format!("ds{i}.replica2"),
            ]
        })
        .collect();

    // Health checks run in the background from the start; wait for them.
    let mut attempts = 0;
    let (header, rows) = loop {
        let (header, rows) = cli_table(&ep, "SHOW STORAGE UNITS;").await;
        let all_up = rows.iter().all(|r| cell(&header, r, "health") == "up");
        attempts += 1;
        if all_up || attempts == 40 {
            break (header, rows);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(
        header,
        [
            "name",
            "data_source",
            "role",
            "host",
            "port",
            "db",
            "connection_timeout_milliseconds",
            "max_pool_size",
            "min_pool_size",
            "health",
            "health_latency_ms",
            "health_error",
            "other_attributes",
        ]
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, expected_names);
    for (i, row) in rows.iter().enumerate() {
        let ds = i / 3;
        let role = if i % 3 == 0 { "primary" } else { "replica" };
        assert_eq!(cell(&header, row, "data_source"), format!("ds{ds}"));
        assert_eq!(cell(&header, row, "role"), role);
        assert_eq!(cell(&header, row, "host"), "127.0.0.1");
        let port = 13306 + ds + 10 * (i % 3);
        assert_eq!(cell(&header, row, "port"), port.to_string());
        assert_eq!(cell(&header, row, "db"), format!("ds{ds}"));
        assert_eq!(cell(&header, row, "health"), "up", "{row:?}");
        assert_eq!(cell(&header, row, "health_error"), "NULL");
        assert!(cell(&header, row, "other_attributes").starts_with('{'));
    }
    let (_, rows) = cli_table(&ep, "show storage units from wework;").await;
    assert_eq!(rows.len(), 12);

    let (header, rows) = cli_table(&ep, "SHOW POOLS").await;
    assert_eq!(
        header,
        [
            "name",
            "data_source",
            "role",
            "max",
            "size",
            "active",
            "idle",
            "waiting",
            "peak",
            "acquired",
            "timeouts",
            "errors",
            "acquire_p50_ms",
            "acquire_p99_ms",
            "health",
        ]
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, expected_names);
    for row in &rows {
        let max: u64 = cell(&header, row, "max").parse().expect("max is a number");
        assert!(max > 0, "{row:?}");
        assert!(
            cell(&header, row, "acquire_p99_ms").parse::<f64>().is_ok(),
            "{row:?}"
        );
    }

    // Through sqlx: typed columns, and the text protocol only.
    let mut conn = ep.connect().await.expect("sqlx connects");
    let rows = sqlx::raw_sql("SHOW POOLS")
        .fetch_all(&mut conn)
        .await
        .expect("SHOW POOLS through sqlx");
    assert_eq!(rows.len(), 12);
    let first = &rows[0];
    assert_eq!(first.column(0).name(), "name");
    assert_eq!(first.get::<String, _>("name"), "ds0");
    assert!(first.get::<u64, _>("max") > 0);
    let _: f64 = first.get("acquire_p50_ms");
    let err = sqlx::query("SHOW POOLS")
        .fetch_all(&mut conn)
        .await
        .expect_err("SHOW POOLS cannot be prepared");
    let (code, state, message) = db_error(&err).expect("a server error");
    assert_eq!((code, state.as_deref()), (1295, Some("HY000")), "{message}");
    // The session goes on after the admin statements.
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("SELECT 1 after the admin statements");
    assert_eq!(one, 1);
    conn.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_each_node_statement() {
    let _sandbox = sandbox::shared().await;
    let Some(proxy) = setup("preview_shows_each_node_statement").await else {
        return;
    };
    let ep = proxy.endpoint();
    let columns = ["data_source_name", "actual_sql", "route", "plan"];

    // user_id 5: data source 5 % 4 = 1, table (5 / 4) % 16 = 1.
    let (header, rows) = cli_table(&ep, "PREVIEW SELECT * FROM users WHERE user_id = 5;").await;
    assert_eq!(header, columns);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "ds1");
    let words: Vec<&str> = rows[0][1]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    assert!(words.contains(&"users_1"), "{rows:?}");
    assert_eq!(rows[0][2], "single");
    assert_eq!(rows[0][3], "NULL");

    // A scatter merged from one statement per data source.
    let (_, rows) = cli_table(&ep, "preview select count(*) from users").await;
    let sources: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(sources, ["ds0", "ds1", "ds2", "ds3"]);
    assert!(
        rows.iter()
            .all(|r| r[2] == "merge" && r[3] == "aggregates=count"),
        "{rows:?}"
    );
    assert!(rows[0][1].contains("UNION ALL"), "{rows:?}");

    // A scatter concatenated node by node: one statement per physical table.
    let (_, rows) = cli_table(&ep, "PREVIEW SELECT * FROM users").await;
    assert_eq!(rows.len(), 64);
    assert!(rows.iter().all(|r| r[2] == "concat"));

    // Unsharded statements go to the default data source unchanged.
    let (_, rows) = cli_table(
        &ep,
        "PREVIEW SELECT * FROM sys_configs_missing WHERE id = 1",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][..3],
        [
            "ds0",
            "SELECT * FROM sys_configs_missing WHERE id = 1",
            "unsharded"
        ]
    );

    // A statement the proxy would refuse is previewed as that refusal.
    let out = cli(
        &ep,
        "PREVIEW UPDATE users SET name = 'x' ORDER BY user_id LIMIT 1;\nPREVIEW;",
    )
    .await;
    assert!(out.contains("ERROR 1235 (42000) at line 1"), "{out}");
    assert!(out.contains("ERROR 1064 (42000) at line 2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_statements_and_other_shows_reach_the_backend() {
    let _sandbox = sandbox::shared().await;
    let Some(proxy) = setup("stats_count_statements_and_other_shows_reach_the_backend").await
    else {
        return;
    };
    let ep = proxy.endpoint();
    let mut conn = ep.connect().await.expect("sqlx connects");
    for _ in 0..3 {
        // Routed (and counted) whether or not another test left `users`
        // in the sandbox: on a fresh one the node answers 1146.
        let _ = sqlx::raw_sql("SELECT * FROM users WHERE user_id = 5")
            .execute(&mut conn)
            .await;
    }
    let err = sqlx::raw_sql("SHOW SHARDING TABLE RULE nope")
        .execute(&mut conn)
        .await
        .expect_err("unknown table");
    let (code, state, message) = db_error(&err).expect("a server error");
    assert_eq!((code, state.as_deref()), (1146, Some("42S02")), "{message}");
    assert!(
        message.contains("'wework.nope'") && message.contains("users"),
        "{message}"
    );

    let rows = sqlx::raw_sql("SHOW STATS")
        .fetch_all(&mut conn)
        .await
        .expect("SHOW STATS");
    let stats: std::collections::HashMap<String, Option<String>> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("name"),
                r.get::<Option<String>, _>("value"),
            )
        })
        .collect();
    let number = |name: &str| -> u64 {
        stats
            .get(name)
            .and_then(|v| v.as_deref())
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert!(number("statements.select") >= 3, "{stats:?}");
    assert!(number("statements") >= 4, "{stats:?}");
    assert!(number("statements_failed") >= 1, "{stats:?}");
    assert!(number("routed.ds1.users") >= 3, "{stats:?}");
    for name in [
        "partial_commits",
        "snowflake_ids",
        "alerts_recent",
        "pools_down",
    ] {
        number(name);
    }
    assert!(
        stats.contains_key("statement_latency_p99_ms_at_most"),
        "{stats:?}"
    );
    conn.close().await.ok();

    // Every other SHOW is the server's, as before.
    let (header, rows) = cli_table(&ep, "SHOW STORAGE ENGINES").await;
    assert_eq!(header[0], "Engine");
    assert!(rows.iter().any(|r| r[0] == "InnoDB"), "{rows:?}");
    let (header, _) = cli_table(&ep, "SHOW STATUS LIKE 'Uptime'").await;
    assert_eq!(header, ["Variable_name", "Value"]);
    let (header, _) = cli_table(&ep, "SHOW VARIABLES LIKE 'version'").await;
    assert_eq!(header, ["Variable_name", "Value"]);
    let (header, rows) = cli_table(&ep, "show stats").await;
    assert_eq!(header, ["name", "value"]);
    assert!(!rows.is_empty());
}
