//! A COMMIT that fails on one data source after others committed (issue 3,
//! "Transactions": the error says so and which nodes, the event is logged
//! and counted in a metric).
//!
//! The session's connection to ds2 is killed behind the proxy's back (KILL
//! on ds2 directly, with the backend thread id the session itself reads
//! through the proxy) before COMMIT: ds0 and ds1 commit first (the order
//! in which the transaction reached them), ds2 cannot.

use shardgate_integration_tests::fixtures::{
    admin_request, config_with_table, connect, drop_table, start_with_table,
};
use shardgate_integration_tests::{data_source_endpoint, db_error, sandbox, sandbox_ready};
use sqlx::{Connection, Executor, Row};

const TABLE: &str = "commit_partial";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failing_after_others_committed_names_them_and_is_counted() {
    let _sandbox = sandbox::shared().await;
    let cfg = config_with_table(TABLE, |_| {});
    if !sandbox_ready(&cfg, "a_commit_failing_after_others_committed") {
        return;
    }
    let ds2 = data_source_endpoint(&cfg, "ds2").expect("ds2 is configured");
    let proxy = start_with_table(cfg, TABLE).await;
    let mut conn = connect(&proxy).await;
    conn.execute("BEGIN").await.expect("begin");
    // ids 0, 1, 2 live on ds0, ds1, ds2 (data source = id % 4).
    for id in 0..3 {
        conn.execute(format!("UPDATE {TABLE} SET v = 100 + {id} WHERE id = {id}").as_str())
            .await
            .expect("update");
    }
    let thread: u64 = conn
        .fetch_one(format!("SELECT CONNECTION_ID() FROM {TABLE} WHERE id = 2").as_str())
        .await
        .expect("ds2's backend thread")
        .get(0);
    let mut direct = ds2.connect().await.expect("ds2 directly");
    direct
        .execute(format!("KILL {thread}").as_str())
        .await
        .expect("kill the session's ds2 connection");
    direct.close().await.ok();

    let err = conn.execute("COMMIT").await.expect_err("ds2 cannot commit");
    let (_, _, message) = db_error(&err).expect("a server error");
    assert!(
        message.contains("on data source ds2") && message.contains("done on: ds0, ds1"),
        "{message}"
    );
    // What the error said: ds0 and ds1 committed, ds2 did not.
    let rows: Vec<(i64, i32)> = sqlx::query_as(&format!(
        "SELECT id, v FROM {TABLE} WHERE id IN (0, 1, 2) ORDER BY id"
    ))
    .fetch_all(&mut conn)
    .await
    .expect("the session goes on");
    assert_eq!(rows, vec![(0, 100), (1, 101), (2, 2)]);
    let (_, metrics) = admin_request(&proxy, "GET", "/metrics", "").await;
    assert!(
        metrics.contains("shardgate_partial_commits_total 1"),
        "{metrics}"
    );
    drop_table(&proxy, TABLE).await;
}
