//! What holds a job back is in `status`: a replica of a source data source
//! that cannot apply its primary's binlog (here: a global read lock taken on
//! it, as a client's long transaction or metadata lock would) pauses the
//! copy from that data source, and `status` names the replica, how far
//! behind it is and what to do; once it catches up the hold is gone and the
//! job finishes.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_holds_the_copy_and_status_says_so() {
    if !sandbox_ready("a_lagging_replica_holds_the_copy", 4) {
        return;
    }
    let fx = Fixture::new("hold_lag", 4).await;
    let (from, to) = fx.users_expansion(4000, 4, 32).await;

    // ds0's first replica stops applying: it waits for the read lock, and
    // a write on its primary after that gives it something to wait with.
    let replica = port(0) + 10;
    let mut lock = connect_port(replica).await;
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .unwrap();
    let mut ds0 = fx.conn(0).await;
    ds0.query_drop("CREATE TABLE hold_marker (id INT PRIMARY KEY)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut job = fx
        .command(&[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "users",
            "--max-replica-lag-secs",
            "1",
            "--batch-size",
            "100",
        ])
        .spawn()
        .unwrap();
    let held = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = stdout(&fx.migrator(&["status"]));
            if status.contains("held for") || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    .await;
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    lock.disconnect().await.unwrap();
    let finished = tokio::task::spawn_blocking(move || job.wait().unwrap())
        .await
        .unwrap();
    assert!(
        held.contains(&format!(
            "the copy from ds0 waits: its replica 127.0.0.1:{replica} is"
        )) && held.contains("--max-replica-lag-secs")
            && held.contains("SHOW PROCESSLIST"),
        "{held}"
    );
    assert!(finished.success());
    let job = fx.job();
    let status = stdout(&fx.migrator(&["status", &job]));
    assert!(status.contains("phase ready"), "{status}");
    assert!(!status.contains("held for"), "{status}");
    ds0.disconnect().await.unwrap();
    fx.cleanup().await;
}
