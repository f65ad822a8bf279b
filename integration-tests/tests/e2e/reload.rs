//! Reloading the configuration while serving (issue 5, `POST /api/reload`):
//! a broken file is refused with its errors and the old configuration keeps
//! serving; a good one takes effect for new statements — sessions between
//! transactions follow it at once, a session inside a transaction finishes
//! on the old one — without a restart and without dropping a session.

use shardgate_integration_tests::fixtures::{admin_request, table_section};
use shardgate_integration_tests::{
    data_source_endpoint, sandbox, sandbox_ready, seed_config_text, start_proxy_from_file,
    test_config, write_config_file,
};
use sqlx::{Executor, Row};

const TABLE: &str = "reload_added";

/// The seed config plus `reload_added`, sharded by `id` over ds0..ds3 when
/// `sharded`, and ds2's pool at `ds2_pool`.
fn config_text(sharded: bool, ds2_pool: usize) -> String {
    let mut text = seed_config_text().replace(
        "[data_sources.ds2]\n",
        &format!("[data_sources.ds2]\npool = {{ max_size = {ds2_pool} }}\n"),
    );
    if sharded {
        text.push_str(&table_section(TABLE, TABLE));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_refused_and_a_good_one_applies_without_dropping_sessions() {
    let _sandbox = sandbox::shared().await;
    if !sandbox_ready(&test_config(), "reload") {
        return;
    }
    let path = write_config_file("reload", &config_text(false, 20));
    let proxy = start_proxy_from_file(&path).await;
    let mut idle = proxy.endpoint().connect().await.expect("connect");
    let mut in_txn = proxy.endpoint().connect().await.expect("connect");
    idle.execute("SELECT 1").await.expect("works");

    // Broken: a table whose nodes name an unknown data source.
    let broken = config_text(true, 20).replace("ds${0..3}.reload_added", "ds${0..9}.reload_added");
    std::fs::write(&path, broken).expect("write");
    let (status, body) = admin_request(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 422, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(reply["reloaded"], false);
    assert_eq!(reply["version"], 1);
    assert!(
        reply["error"].as_str().unwrap_or("").contains("ds4"),
        "the error names what is wrong: {reply}"
    );
    let (_, rules) = admin_request(&proxy, "GET", "/api/rules", "").await;
    assert!(
        rules.contains("\"version\":1") && !rules.contains(TABLE),
        "{rules}"
    );
    idle.execute("SELECT 1")
        .await
        .expect("the old config serves");

    // A session in a transaction when the good file lands.
    in_txn.execute("BEGIN").await.expect("begin");
    // Joins the transaction on the default data source (it needs no table).
    in_txn.execute("SELECT 1").await.expect("read in txn");

    std::fs::write(&path, config_text(true, 7)).expect("write");
    let (status, body) = admin_request(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(reply["version"], 2, "{reply}");
    let changes = reply["changes"].to_string();
    assert!(
        changes.contains("sharded table reload_added added")
            && changes.contains("ds2: pool settings changed"),
        "{changes}"
    );
    let (_, pools) = admin_request(&proxy, "GET", "/api/pools", "").await;
    let pools: serde_json::Value = serde_json::from_str(&pools).expect("json");
    let ds2 = pools["pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "ds2").cloned())
        .expect("ds2");
    assert_eq!(ds2["max"], 7, "{ds2}");

    // The idle session follows at once: the new table is sharded for it.
    idle.execute(format!("DROP TABLE IF EXISTS {TABLE}").as_str())
        .await
        .expect("drop");
    idle.execute(format!("CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, v INT)").as_str())
        .await
        .expect("create on all 8 nodes");
    idle.execute(format!("INSERT INTO {TABLE} VALUES (1, 1), (2, 2), (7, 7)").as_str())
        .await
        .expect("insert");
    let ds3 = data_source_endpoint(&test_config(), "ds3").expect("ds3 is configured");
    let mut ds3 = ds3.connect().await.expect("ds3 directly");
    let row = ds3
        .fetch_one(format!("SELECT v FROM {TABLE}_1 WHERE id = 7").as_str())
        .await
        .expect("id 7 sits on ds3, table _1 (7 % 4 = 3, 7 / 4 % 2 = 1)");
    assert_eq!(row.get::<i32, _>(0), 7);

    // The session in a transaction finishes on version 1, then follows.
    in_txn
        .execute("SELECT 1")
        .await
        .expect("still in its transaction");
    in_txn.execute("COMMIT").await.expect("commit");
    let row = in_txn
        .fetch_one(format!("SELECT COUNT(*) FROM {TABLE}").as_str())
        .await
        .expect("after COMMIT it reads the new table through the new rules");
    assert_eq!(row.get::<i64, _>(0), 3);

    idle.execute(format!("DROP TABLE {TABLE}").as_str())
        .await
        .expect("drop");
}
