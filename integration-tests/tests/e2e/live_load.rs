//! The live load of the migration tests (`live_load` module), against the
//! sandbox through an in-process ShardGate: a load leaves exactly what it
//! recorded, with every row where the rules say; a refused write keeps the
//! record exact; and the checks fail when they should — rows changed,
//! deleted, added or copied behind the load's back are named by key, and a
//! row changed under a running load makes its reads wrong.

use shardgate_integration_tests::live_load::{LiveLoad, LoadConfig, LoadReport};
use shardgate_integration_tests::{
    data_source_endpoint, sandbox, sandbox_ready, say, start_proxy, Config, RunningProxy,
    SEED_CONFIG,
};
use shardgate_rules::{DataNode, ShardValue, ShardingRules};
use sqlx::Executor;
use std::time::Duration;

/// The seed config plus `table`, sharded by a snowflake `user_id` over
/// ds0..ds3, four tables each.
fn config(table: &str) -> Config {
    let text = format!(
        "{SEED_CONFIG}\n[tables.{table}]\nnodes = \"ds${{0..3}}.{table}_${{0..3}}\"\n\
         database = {{ column = \"user_id\", algorithm = \"mod\", count = 4 }}\n\
         table = {{ column = \"user_id\", expression = \"{table}_${{(user_id / 4) % 4}}\" }}\n\
         key = {{ column = \"user_id\", generator = \"snowflake\" }}\n"
    );
    let mut cfg = Config::from_toml_str(&text).expect("test config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg.server.read_write_splitting = false;
    cfg
}

/// ShardGate with `table` (re)created empty, `users`-like.
async fn start(table: &str) -> Option<RunningProxy> {
    let cfg = config(table);
    if !sandbox_ready(&cfg, table) {
        return None;
    }
    let proxy = start_proxy(cfg).await;
    let mut conn = proxy.endpoint().connect().await.expect("connect");
    for sql in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (user_id BIGINT PRIMARY KEY, tenant_id VARCHAR(64), \
             name VARCHAR(100) CHARACTER SET utf8mb4, email VARCHAR(200) NULL, status TINYINT)"
        ),
    ] {
        conn.execute(sql.as_str()).await.expect(&sql);
    }
    Some(proxy)
}

async fn drop_table(proxy: &RunningProxy, table: &str) {
    let mut conn = proxy.endpoint().connect().await.expect("connect");
    conn.execute(format!("DROP TABLE {table}").as_str())
        .await
        .expect("drop");
}

/// Runs `sql` directly on every physical table of `table` (`{t}` names it).
async fn on_every_physical_table(cfg: &Config, table: &str, sql: &str) {
    let rules = ShardingRules::new(cfg).expect("rules");
    for node in rules.nodes(table) {
        let mut conn = ds_connection(cfg, &node.data_source).await;
        let sql = sql.replace("{t}", &node.table);
        conn.execute(sql.as_str()).await.expect(&sql);
    }
}

async fn ds_connection(cfg: &Config, ds: &str) -> sqlx::MySqlConnection {
    data_source_endpoint(cfg, ds)
        .expect("data source")
        .connect()
        .await
        .expect("connect to the data source directly")
}

fn home(cfg: &Config, table: &str, key: i64) -> DataNode {
    ShardingRules::new(cfg)
        .expect("rules")
        .route_row(table, &[("user_id", ShardValue::Int(key))])
        .expect("a home")
}

/// Both checks, each in a task of its own (so they must be `Send`).
async fn checks(
    report: LoadReport,
    proxy: &RunningProxy,
) -> (LoadReport, Vec<String>, Vec<String>) {
    let mut conn = proxy.endpoint().connect().await.expect("connect");
    let cfg = proxy.cfg.clone();
    let report = std::sync::Arc::new(report);
    let for_content = std::sync::Arc::clone(&report);
    let content = tokio::spawn(async move { for_content.check_content(&mut conn).await })
        .await
        .expect("check_content runs");
    let for_backends = std::sync::Arc::clone(&report);
    let backends = tokio::spawn(async move { for_backends.check_backends(&cfg).await })
        .await
        .expect("check_backends runs");
    let report = std::sync::Arc::into_inner(report).expect("the checks are done");
    (report, content, backends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_through_shardgate_leaves_exactly_what_it_recorded() {
    let _sandbox = sandbox::shared().await;
    let table = "liveload_clean";
    let Some(proxy) = start(table).await else {
        return;
    };
    let mut config = LoadConfig::new(proxy.endpoint(), table, "user_id");
    config.seed = 11;
    let load = LiveLoad::start(config).await.expect("the load starts");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;
    say(&report.summary());

    assert!(
        report.inserted >= 100 && report.updated > 0 && report.deleted > 0 && report.reads > 0,
        "{}",
        report.summary()
    );
    assert!(
        report.text_statements > 0 && report.prepared_statements > 0,
        "{}",
        report.summary()
    );
    assert!(
        report.wrong_answers.is_empty(),
        "{:#?}",
        report.wrong_answers
    );
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.uncertain_keys.is_empty() && report.uncertain_inserts.is_empty());
    assert!(report.longest_write().is_some());

    let (report, content, backends) = checks(report, &proxy).await;
    assert!(content.is_empty(), "{content:#?}");
    assert!(backends.is_empty(), "{backends:#?}");
    // The snowflake keys spread the rows over every data source.
    let sources: std::collections::BTreeSet<String> = report
        .expected
        .keys()
        .map(|key| home(&proxy.cfg, table, *key).data_source)
        .collect();
    assert_eq!(sources.len(), 4, "{sources:?}");
    drop_table(&proxy, table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_changes_nothing_in_the_record() {
    let _sandbox = sandbox::shared().await;
    let table = "liveload_refuse";
    let Some(proxy) = start(table).await else {
        return;
    };
    // Every physical table refuses the values with a quote (one in eight).
    on_every_physical_table(
        &proxy.cfg,
        table,
        "ALTER TABLE {t} ADD CONSTRAINT no_quote CHECK (email NOT LIKE '%''%')",
    )
    .await;
    let mut config = LoadConfig::new(proxy.endpoint(), table, "user_id");
    config.workers = 2;
    config.seed = 12;
    let load = LiveLoad::start(config).await.expect("the load starts");
    let progress = load
        .wait_for(Duration::from_secs(20), |p| {
            p.failures >= 5 && p.reads >= 50
        })
        .await;
    let report = load.stop().await;
    say(&report.summary());
    assert!(progress.failures >= 5, "{}", report.summary());
    assert_eq!(
        report.refused, report.failure_count,
        "{:#?}",
        report.failures
    );
    assert!(
        report.failures.iter().all(|f| f.contains("ERROR 4025")),
        "{:#?}",
        report.failures
    );
    assert!(
        report.wrong_answers.is_empty(),
        "{:#?}",
        report.wrong_answers
    );
    assert!(report.uncertain_keys.is_empty() && report.uncertain_inserts.is_empty());
    let (_, content, backends) = checks(report, &proxy).await;
    assert!(content.is_empty(), "{content:#?}");
    assert!(backends.is_empty(), "{backends:#?}");
    drop_table(&proxy, table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_name_rows_changed_behind_the_loads_back() {
    let _sandbox = sandbox::shared().await;
    let table = "liveload_tamper";
    let Some(proxy) = start(table).await else {
        return;
    };
    let cfg = proxy.cfg.clone();
    let mut config = LoadConfig::new(proxy.endpoint(), table, "user_id");
    config.workers = 2;
    config.seed = 13;
    let load = LiveLoad::start(config).await.expect("the load starts");
    load.wait_for(Duration::from_secs(20), |p| {
        p.inserted >= 60 && p.deleted >= 3
    })
    .await;
    let report = load.stop().await;
    say(&report.summary());
    let (report, content, backends) = checks(report, &proxy).await;
    assert!(
        content.is_empty() && backends.is_empty(),
        "{content:#?}\n{backends:#?}"
    );

    let keys: Vec<i64> = report.expected.keys().copied().collect();
    let (stale, missing, duplicated) = (keys[0], keys[1], keys[2]);
    let zombie = *report.deleted_keys.first().expect("a deleted key");
    let extra = keys.iter().max().expect("keys") + 4 * 16;
    // changed, deleted, copied to a table of another data source, brought
    // back after its delete, and added: all straight on the backends
    let at = home(&cfg, table, stale);
    ds_connection(&cfg, &at.data_source)
        .await
        .execute(
            format!(
                "UPDATE {} SET email = 'tampered' WHERE user_id = {stale}",
                at.table
            )
            .as_str(),
        )
        .await
        .expect("update behind the load");
    let at = home(&cfg, table, missing);
    ds_connection(&cfg, &at.data_source)
        .await
        .execute(format!("DELETE FROM {} WHERE user_id = {missing}", at.table).as_str())
        .await
        .expect("delete behind the load");
    let at = home(&cfg, table, duplicated);
    let elsewhere = ShardingRules::new(&cfg)
        .expect("rules")
        .nodes(table)
        .into_iter()
        .find(|node| node.data_source != at.data_source)
        .expect("another node");
    let row = &report.expected[&duplicated];
    ds_connection(&cfg, &elsewhere.data_source)
        .await
        .execute(
            format!(
                "INSERT INTO {} (user_id, name, email) VALUES ({duplicated}, '{}', {})",
                elsewhere.table,
                row.marker,
                row.value.as_ref().map_or("NULL".to_string(), |v| format!(
                    "'{}'",
                    v.replace('\'', "''")
                ))
            )
            .as_str(),
        )
        .await
        .expect("copy behind the load");
    for (key, marker) in [
        (zombie, format!("{}zombie", report.marker_prefix)),
        (extra, format!("{}forged", report.marker_prefix)),
    ] {
        let at = home(&cfg, table, key);
        ds_connection(&cfg, &at.data_source)
            .await
            .execute(
                format!(
                    "INSERT INTO {} (user_id, name, email) VALUES ({key}, '{marker}', NULL)",
                    at.table
                )
                .as_str(),
            )
            .await
            .expect("insert behind the load");
    }

    let (_, content, backends) = checks(report, &proxy).await;
    say(&format!(
        "through shardgate:\n{}\non the backends:\n{}",
        content.join("\n"),
        backends.join("\n")
    ));
    for (problems, which) in [(&content, "check_content"), (&backends, "check_backends")] {
        let names = |label: &str, key: i64| {
            let start = format!("{label} key {key}:");
            problems.iter().any(|p| p.starts_with(&start))
        };
        assert!(names("STALE", stale), "{which}: {problems:#?}");
        assert!(names("MISSING", missing), "{which}: {problems:#?}");
        assert!(names("DUPLICATED", duplicated), "{which}: {problems:#?}");
        assert!(names("ZOMBIE", zombie), "{which}: {problems:#?}");
        assert!(names("EXTRA", extra), "{which}: {problems:#?}");
    }
    // Only the point read through ShardGate sees the deleted row missing and
    // the changed one stale; the copy is where the proxy does not look.
    assert_eq!(content.len(), 7, "{content:#?}");
    let misplaced = format!(
        "MISPLACED row of {table} on {}.{}",
        elsewhere.data_source, elsewhere.table
    );
    assert!(
        backends
            .iter()
            .any(|p| p.starts_with(&misplaced) && p.contains(&duplicated.to_string())),
        "{backends:#?}"
    );
    assert_eq!(backends.len(), 6, "{backends:#?}");
    drop_table(&proxy, table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_under_a_running_load_makes_its_reads_wrong() {
    let _sandbox = sandbox::shared().await;
    let table = "liveload_wrong";
    let Some(proxy) = start(table).await else {
        return;
    };
    let mut config = LoadConfig::new(proxy.endpoint(), table, "user_id");
    config.workers = 1;
    config.pace = Some(Duration::from_millis(2));
    config.seed = 14;
    let load = LiveLoad::start(config).await.expect("the load starts");
    load.wait_for(Duration::from_secs(20), |p| p.inserted >= 40)
        .await;
    let before = load.progress();
    assert_eq!(before.wrong_answers, 0);
    on_every_physical_table(
        &proxy.cfg,
        table,
        &format!(
            "UPDATE {{t}} SET email = 'tampered' WHERE name LIKE '{}%'",
            load.marker_prefix()
        ),
    )
    .await;
    load.wait_for(Duration::from_secs(20), |p| p.reads >= before.reads + 30)
        .await;
    let report = load.stop().await;
    say(&report.summary());
    assert!(
        report
            .wrong_answers
            .iter()
            .any(|w| w.contains("got (") && w.contains("\"tampered\"")),
        "{:#?}",
        report.wrong_answers
    );
    drop_table(&proxy, table).await;
}
