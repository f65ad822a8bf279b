//! What can hold a job back, said before it does: a replica of a source
//! data source that cannot apply its primary's binlog (here: a global read
//! lock taken on it, as a client's long transaction or metadata lock would)
//! pauses the copy from that data source, and `status` names the replica,
//! how far behind it is and what to do; once it catches up the hold is gone
//! and the job finishes. A source primary that purges its binlogs sooner
//! than the job needs them is a warning at `start`, with the figures.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One at a time: each changes a sandbox server's state the other's job sees.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_holds_the_copy_and_status_says_so() {
    if !sandbox_ready("a_lagging_replica_holds_the_copy", 4) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_binlog_retention_is_a_warning_at_start() {
    if !sandbox_ready("a_short_binlog_retention", 4) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new("hold_binlogs", 4).await;
    let (from, to) = fx.users_expansion(400, 4, 32).await;
    let mut ds3 = connect(3, None).await;
    let before: u64 = ds3
        .query_first("SELECT @@GLOBAL.binlog_expire_logs_seconds")
        .await
        .unwrap()
        .unwrap();
    ds3.query_drop("SET GLOBAL binlog_expire_logs_seconds = 600")
        .await
        .unwrap();
    let start = migrator_async(
        &fx,
        &["start", "--from", &from, "--to", &to, "--table", "users"],
    )
    .await;
    ds3.query_drop(format!("SET GLOBAL binlog_expire_logs_seconds = {before}"))
        .await
        .unwrap();
    ds3.disconnect().await.unwrap();
    assert!(start.status.success());
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(
        stderr.contains("warning: ds3's primary purges its binlogs after 600 s")
            && stderr.contains("SET GLOBAL binlog_expire_logs_seconds ="),
        "{stderr}"
    );
    assert!(!stderr.contains("warning: ds0"), "{stderr}");
    assert!(
        stdout(&start).contains("ds3 kept 600 s"),
        "{}",
        stdout(&start)
    );
    fx.cleanup().await;
}

/// A transaction that read a table being swapped holds a metadata lock the
/// RENAME waits for. Through ShardGate, a session with autocommit off that
/// read the table (as PEP 249 drivers leave it) holds its transaction on
/// the primary, never on a replica: the cutover cannot take the lock within
/// its pause bound, undoes itself and names the transaction to end; once
/// it ended, the cutover goes through and every replica applies the swap.
/// A client straight on a replica can hold one there: the rollback goes
/// through on the primaries, then says which replica has not applied the
/// swap, why, and which connection to end; once it ends, the replica
/// catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_a_replica_holding_the_swap_is_named() {
    if !sandbox_ready("a_transaction_on_a_replica_holding_the_swap", 4) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new("hold_mdl", 4).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, 400).await;
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &proxy_ready(&fx.config(4, &users_rules(4, 32))));
    let proxy = proxy_from(&fx.dir.join("proxy/shardgate.toml"), &from_text).await;
    let start = migrator_async(
        &fx,
        &["start", "--from", &from, "--to", &to, "--table", "users"],
    )
    .await;
    assert!(start.status.success());
    let job = fx.job();
    let admin = format!("http://{}", proxy.admin_addr);

    // A PEP 249 driver's session through ShardGate: autocommit off, one
    // read of the table, then idle across the cutover.
    let mut session = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&format!("mysql://root@{}/wework", proxy.addr)).unwrap(),
    )
    .await
    .unwrap();
    session.query_drop("SET autocommit = 0").await.unwrap();
    let _: Option<u64> = session
        .query_first("SELECT COUNT(*) FROM users")
        .await
        .unwrap();
    let blocked =
        migrator_async(&fx, &["cutover", &job, "--proxy", &admin, "--retries", "0"]).await;
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert_eq!(blocked.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed and was undone")
            && stderr.contains("transactions open on ds")
            && stderr.contains("KILL <id>"),
        "{stderr}"
    );
    assert_eq!(fx.state(&job)["phase"], "ready");
    session.query_drop("COMMIT").await.unwrap();
    let cutover = migrator_async(&fx, &["cutover", &job, "--proxy", &admin]).await;
    let out = stdout(&cutover);
    assert!(cutover.status.success(), "{out}");
    assert!(!out.contains("has not applied the table swap"), "{out}");
    // The session goes on, on the new layout.
    let count: Option<u64> = session
        .query_first("SELECT COUNT(*) FROM users")
        .await
        .unwrap();
    assert_eq!(count, Some(400));
    session.disconnect().await.unwrap();

    let replica = port(0) + 10;
    let mut holder = connect_port(replica).await;
    holder
        .query_drop(format!("USE `{}`", fx.database(0)))
        .await
        .unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    let _: Option<u64> = holder
        .query_first("SELECT COUNT(*) FROM users_0")
        .await
        .unwrap();
    let holder_id = holder.id();
    let rollback = migrator_async(&fx, &["rollback", &job, "--proxy", &admin]).await;
    holder.query_drop("COMMIT").await.unwrap();
    holder.disconnect().await.unwrap();
    let out = stdout(&rollback);
    assert!(rollback.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "warning: replica 127.0.0.1:{replica} of ds0 has not applied the table swap"
        )) && out.contains("metadata lock")
            && out.contains(&format!("connection {holder_id} (")),
        "{out}"
    );
    assert_eq!(fx.state(&job)["phase"], "rolled_back");
    let status = stdout(&fx.migrator(&["status", &job]));
    assert!(
        status.contains("after the rollback: replica 127.0.0.1:"),
        "{status}"
    );
    // Its transaction ended, the replica applies the swap back.
    let mut check = connect_port(replica).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let swapped: Option<u64> = check
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = 'users_0__sgnew'",
                (fx.database(0),),
            )
            .await
            .unwrap();
        if swapped.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never applied the swap"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check.disconnect().await.unwrap();
    assert!(migrator_async(&fx, &["complete", &job])
        .await
        .status
        .success());
    drop(proxy);
    fx.cleanup().await;
}
