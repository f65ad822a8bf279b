//! Verification beside a writer that keeps changing the same rows (its own
//! test binary, so that its load does not slow the catch-up tests).

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Updates the same few rows, one after the other, each about every 30 ms
/// (a rate the change streams keep up with), until `stop`; returns how
/// many updates it made.
async fn hot_rows_writer(fx: &Fixture, keys: Vec<i64>, stop: Arc<AtomicBool>) -> u64 {
    let mut conns = Vec::new();
    for s in 0..4 {
        conns.push(fx.conn(s).await);
    }
    let mut updates = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for &key in &keys {
            let (ds, table) = (key.rem_euclid(4) as usize, (key / 4).rem_euclid(16));
            conns[ds]
                .query_drop(format!(
                    "UPDATE users_{table} SET name = 'hot {updates}' WHERE user_id = {key}"
                ))
                .await
                .unwrap();
            updates += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
    updates
}

/// Rows updated all through `verify` differ between the
/// layouts at almost any moment the two are read apart (the change stream
/// applies each update a little later): compared again with the source
/// rows locked once the stream applied everything before, they are equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_changing_all_through_a_verification_are_not_differences() {
    if !sandbox_ready("rows_changing_through_verify", 4) {
        return;
    }
    let fx = Arc::new(Fixture::new("orch_hotrows", 4).await);
    let (from, to) = fx.users_expansion(4000, 4, 32).await;
    let start = migrator_async(
        &fx,
        &["start", "--from", &from, "--to", &to, "--table", "users"],
    )
    .await;
    assert!(start.status.success(), "{}", stdout(&start));
    let job = fx.job();
    assert_eq!(fx.state(&job)["phase"], "ready");

    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<i64> = (0..16).map(|i| user_key(i * 250)).collect();
    let writer = {
        let (fx, stop) = (fx.clone(), stop.clone());
        tokio::spawn(async move { hot_rows_writer(&fx, keys, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let verify = migrator_async(&fx, &["verify", &job, "--json"]).await;
    stop.store(true, Ordering::Relaxed);
    let updates = writer.await.unwrap();
    let out = stdout(&verify);
    assert!(updates > 200, "{updates} updates");
    assert!(verify.status.success(), "{out}");
    let report = json(&verify);
    for field in ["missing", "extra", "different", "misplaced"] {
        assert_eq!(report[field], serde_json::json!([]), "{field}: {report}");
    }
    Arc::into_inner(fx).unwrap().cleanup().await;
}
