//! Cutover, rollback and complete through real ShardGate proxies (run in
//! this test process, over the test's own databases) while a client keeps
//! writing through them and records what it did: after each switch the
//! proxy returns exactly the recorded content and every row sits where the
//! rules in force place it; a cutover that fails (a proxy that does not
//! answer, an activation refused after the tables were renamed) leaves the
//! old layout serving with nothing lost, and a later cutover succeeds.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use shardgate_integration_tests::RunningProxy;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Model = BTreeMap<i64, String>;

/// The seeded rows as `users_by_placement` reads them.
fn seeded(count: u64) -> Model {
    (0..count)
        .map(|i| (user_key(i), format!("user {i} ü")))
        .collect()
}

async fn proxy_conn(proxy: &RunningProxy) -> Conn {
    let url = format!("mysql://root@{}/wework", proxy.addr);
    Conn::new(Opts::from_url(&url).unwrap()).await.unwrap()
}

/// Everything the proxy returns for `users`.
async fn read_through(proxy: &RunningProxy) -> Model {
    let mut conn = proxy_conn(proxy).await;
    let rows: Vec<(i64, String)> = conn.query("SELECT user_id, name FROM users").await.unwrap();
    conn.disconnect().await.unwrap();
    rows.into_iter().collect()
}

/// A client writing through a proxy, recording each write the proxy
/// accepted; statements refused while paused (1205) are counted, not
/// applied.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<(Model, u64, u64)>,
}

impl Writer {
    fn start(proxy: &RunningProxy, mut model: Model, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("mysql://root@{}/wework", proxy.addr);
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut conn = Conn::new(Opts::from_url(&url).unwrap()).await.unwrap();
            let mut rng = Lcg(seed);
            let (mut writes, mut refused) = (0, 0);
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("w{seed}-{n}");
                let existing = model
                    .keys()
                    .nth(rng.below(model.len() as u64) as usize)
                    .copied();
                let (sql, change) = match (rng.below(3), existing) {
                    (1, Some(key)) => (
                        format!("UPDATE users SET name = '{name}' WHERE user_id = {key}"),
                        (key, Some(name)),
                    ),
                    (2, Some(key)) => (
                        format!("DELETE FROM users WHERE user_id = {key}"),
                        (key, None),
                    ),
                    _ => {
                        let key = user_key(3_000_000 + seed * 100_000 + n);
                        (
                            format!(
                                "INSERT INTO users (user_id, tenant_id, name, status) \
                                 VALUES ({key}, 't', '{name}', 1)"
                            ),
                            (key, Some(name)),
                        )
                    }
                };
                match conn.query_drop(&sql).await {
                    Ok(()) => {
                        writes += 1;
                        match change {
                            (key, Some(name)) => model.insert(key, name),
                            (key, None) => model.remove(&key),
                        };
                    }
                    Err(mysql_async::Error::Server(e)) if e.code == 1205 => refused += 1,
                    Err(e) => panic!("{sql}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            conn.disconnect().await.unwrap();
            (model, writes, refused)
        });
        Writer { stop, handle }
    }

    async fn stop(self) -> Model {
        self.stop.store(true, Ordering::Relaxed);
        let (model, writes, refused) = self.handle.await.unwrap();
        eprintln!("writer: {writes} writes accepted, {refused} refused while paused");
        assert!(writes > 10, "the writer wrote: {writes}");
        model
    }
}

/// Physical tables of `users` on a data source matching `like`.
async fn tables(fx: &Fixture, source: u32, like: &str) -> Vec<String> {
    table_counts(fx, source, like).await.into_keys().collect()
}

fn admin_url(proxy: &RunningProxy) -> String {
    format!("http://{}", proxy.admin_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_then_rollback_through_a_proxy_under_writes() {
    if !sandbox_ready("cutover_then_rollback", 4) {
        return;
    }
    let fx = Fixture::new("orch_cutover", 4).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, 3000).await;
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &proxy_ready(&fx.config(4, &users_rules(4, 32))));
    let proxy = proxy_from(&fx.dir.join("proxy/shardgate.toml"), &from_text).await;
    let admin = admin_url(&proxy);
    assert_eq!(read_through(&proxy).await, seeded(3000));

    // start: copy, catch up, verify, cut over, all while the client writes.
    let writer = Writer::start(&proxy, seeded(3000), 1);
    let start = migrator_async(
        &fx,
        &[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "users",
            "--batch-size",
            "200",
            "--proxy",
            &admin,
            "--cutover",
        ],
    )
    .await;
    let model = writer.stop().await;
    let out = stdout(&start);
    assert!(start.status.success(), "{out}");
    assert!(out.contains("verified clean"), "{out}");
    assert!(
        out.contains("cut over to the new layout; longest write pause "),
        "{out}"
    );
    let job = fx.job();
    let state = fx.state(&job);
    assert_eq!(state["phase"], "cut_over");
    let pause = state["cutover"]["longest_pause_ms"].as_u64().unwrap();
    eprintln!("longest write pause during cutover: {pause} ms");
    assert!(pause < 1000, "{pause}");
    assert_eq!(state["proxies"][0], admin.as_str());
    assert_eq!(state["reverse"].as_array().unwrap().len(), 4);

    // The proxy serves the new layout: same content, rows in 32 tables.
    assert_eq!(read_through(&proxy).await, model);
    assert_eq!(users_by_placement(&fx, 4, 32).await, model);
    for s in 0..4 {
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgnew").await.len(), 0);
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgold").await.len(), 16);
    }
    let status = stdout(&fx.migrator(&["status", &job]));
    assert!(
        status.contains("reverse stream ds1: not running since the cutover"),
        "{status}"
    );
    assert!(
        status.contains(&format!("cutover: longest write pause {pause} ms")),
        "{status}"
    );

    // Writes through the new layout, the reverse stream brought up to
    // date by resume, then a rollback under writes.
    let writer = Writer::start(&proxy, model, 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let resume = migrator_async(&fx, &["resume", &job]).await;
    assert!(resume.status.success());
    // After the cutover, verify compares the old layout's tables (kept by
    // the reverse stream it runs) with the new, live ones, under writes.
    let verify = migrator_async(&fx, &["verify", &job]).await;
    let out = stdout(&verify);
    assert!(verify.status.success(), "{out}");
    assert!(
        out.contains("rows of the new, live layout against the old layout's tables")
            && out.contains("result: no differences"),
        "{out}"
    );
    let status = stdout(&fx.migrator(&["status", &job]));
    assert!(
        status.contains("(after the cutover: the old layout's tables against the new)"),
        "{status}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rollback = migrator_async(&fx, &["rollback", &job]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let model = writer.stop().await;
    let out = stdout(&rollback);
    assert!(rollback.status.success(), "{out}");
    assert!(
        out.contains("rolled back to the old layout; longest write pause"),
        "{out}"
    );
    assert_eq!(fx.state(&job)["phase"], "rolled_back");

    // Back on the old layout with nothing lost.
    assert_eq!(read_through(&proxy).await, model);
    assert_eq!(users_by_placement(&fx, 4, 16).await, model);
    for s in 0..4 {
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgold").await.len(), 0);
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgnew").await.len(), 16);
    }

    // After a rollback, verify runs the forward streams again and shows
    // the rollback lost nothing: the new tables, caught up with the old,
    // live ones, hold the same rows.
    let verify = migrator_async(&fx, &["verify", &job]).await;
    let out = stdout(&verify);
    assert!(verify.status.success(), "{out}");
    assert!(out.contains("result: no differences"), "{out}");

    // Cancel (which would drop the new tables behind the job's back) and a
    // second cutover are refused with the way on.
    for command in ["cancel", "cutover"] {
        let refused = migrator_async(&fx, &[command, &job]).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("is in phase rolled_back: cannot")
                && stderr.contains("`complete` drops them, then start a new job"),
            "{command}: {stderr}"
        );
    }
    assert_eq!(fx.state(&job)["phase"], "rolled_back");

    // complete drops what the rolled-back new layout left.
    let complete = migrator_async(&fx, &["complete", &job]).await;
    assert!(complete.status.success());
    assert_eq!(fx.state(&job)["phase"], "completed");
    for s in 0..4 {
        assert_eq!(tables(&fx, s, "users\\_%").await.len(), 16);
    }
    assert_eq!(read_through(&proxy).await, model);
    drop(proxy);
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_cutover_leaves_the_old_layout_serving_with_nothing_lost() {
    if !sandbox_ready("a_failed_cutover", 4) {
        return;
    }
    let fx = Fixture::new("orch_failcut", 4).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, 2000).await;
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &proxy_ready(&fx.config(4, &users_rules(4, 32))));
    let a_file = fx.dir.join("a/shardgate.toml");
    let a = proxy_from(&a_file, &from_text).await;
    let b_dir = fx.dir.join("b");
    let b = proxy_from(&b_dir.join("shardgate.toml"), &from_text).await;
    let start = migrator_async(
        &fx,
        &["start", "--from", &from, "--to", &to, "--table", "users"],
    )
    .await;
    assert!(start.status.success());
    let job = fx.job();

    // A proxy that does not answer: the stage step fails, nothing paused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{dead}");
    let writer = Writer::start(&a, seeded(2000), 3);
    let failed = migrator_async(
        &fx,
        &[
            "cutover",
            &job,
            "--proxy",
            &admin_url(&a),
            "--proxy",
            &dead,
            "--retries",
            "0",
        ],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("failed and was undone"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert_eq!(fx.state(&job)["phase"], "ready");

    // Activation refused on the second proxy (its configuration folder is
    // gone, so it cannot write the activated file) after the first one
    // activated and the tables were renamed: all undone.
    std::fs::remove_dir_all(&b_dir).unwrap();
    let failed = migrator_async(
        &fx,
        &[
            "cutover",
            &job,
            "--proxy",
            &admin_url(&a),
            "--proxy",
            &admin_url(&b),
            "--retries",
            "0",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let model = writer.stop().await;
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("failed and was undone"), "{stderr}");
    assert!(stderr.contains("/api/rules/activate"), "{stderr}");
    let state = fx.state(&job);
    assert_eq!(state["phase"], "ready");
    assert!(state["errors"].as_array().unwrap().len() >= 2);
    for s in 0..4 {
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgold").await.len(), 0);
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgnew").await.len(), 16);
    }
    assert_eq!(read_through(&a).await, model);
    assert_eq!(read_through(&b).await, model);
    assert_eq!(users_by_placement(&fx, 4, 16).await, model);
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), from_text);

    // A transaction that wrote the table before the pause and stays open
    // keeps the cutover waiting, but no longer than the pause bound.
    let mut model = model;
    let mut open = proxy_conn(&a).await;
    let key = user_key(4_000_000);
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop(format!(
        "INSERT INTO users (user_id, tenant_id, name, status) VALUES ({key}, 't', 'in flight', 1)"
    ))
    .await
    .unwrap();
    let failed = migrator_async(
        &fx,
        &[
            "cutover",
            &job,
            "--proxy",
            &admin_url(&a),
            "--max-pause-ms",
            "400",
            "--retries",
            "1",
        ],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("near its bound of 400 ms"), "{stderr}");
    assert!(stderr.contains("raise --max-pause-ms"), "{stderr}");
    let out = stdout(&failed);
    assert!(
        out.contains("cutover attempt 1 of 2 failed: cutover of job"),
        "{out}"
    );
    open.query_drop("COMMIT").await.unwrap();
    open.disconnect().await.unwrap();
    model.insert(key, "in flight".into());
    assert_eq!(read_through(&a).await, model);

    // What was written meanwhile reaches the new layout: a later cutover
    // (the broken proxy retired) succeeds with everything in it. Its
    // bound is generous: on a busy shared sandbox the renames alone can
    // take most of a second, and this cutover must not give up.
    drop(b);
    let cutover = migrator_async(
        &fx,
        &[
            "cutover",
            &job,
            "--proxy",
            &admin_url(&a),
            "--max-pause-ms",
            "5000",
        ],
    )
    .await;
    assert!(cutover.status.success(), "{}", stdout(&cutover));
    assert_eq!(fx.state(&job)["phase"], "cut_over");
    assert_eq!(read_through(&a).await, model);
    assert_eq!(users_by_placement(&fx, 4, 32).await, model);
    let complete = migrator_async(&fx, &["complete", &job]).await;
    assert!(complete.status.success());
    for s in 0..4 {
        assert_eq!(tables(&fx, s, "users\\_%\\_\\_sgold").await.len(), 0);
    }
    drop(a);
    fx.cleanup().await;
}

/// Change streams that cannot catch up (their target tables locked): the
/// cutover waits for them no longer than `--catch-up-secs`, never pauses
/// writes, and says why and what to do; once they can, it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cutover_waits_for_the_streams_to_converge_before_pausing() {
    if !sandbox_ready("a_cutover_waits_for_the_streams", 4) {
        return;
    }
    let fx = Fixture::new("orch_converge", 4).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, 2000).await;
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &proxy_ready(&fx.config(4, &users_rules(4, 32))));
    let a = proxy_from(&fx.dir.join("a/shardgate.toml"), &from_text).await;
    let start = migrator_async(
        &fx,
        &["start", "--from", &from, "--to", &to, "--table", "users"],
    )
    .await;
    assert!(start.status.success());
    let job = fx.job();

    let writer = Writer::start(&a, seeded(2000), 3);
    let mut lock = fx.conn(0).await;
    let shadows = tables(&fx, 0, "users\\_%\\_\\_sgnew").await;
    let locked: Vec<String> = shadows.iter().map(|t| format!("`{t}` WRITE")).collect();
    lock.query_drop(format!("LOCK TABLES {}", locked.join(", ")))
        .await
        .unwrap();
    let unlock = async {
        tokio::time::sleep(Duration::from_secs(6)).await;
        lock.query_drop("UNLOCK TABLES").await.unwrap();
    };
    let url = admin_url(&a);
    let args = [
        "cutover",
        &job,
        "--proxy",
        &url,
        "--catch-up-secs",
        "3",
        "--retries",
        "0",
    ];
    let (failed, ()) = tokio::join!(migrator_async(&fx, &args), unlock);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("did not converge before the pause")
            && stderr.contains("Writes were not paused")
            && stderr.contains("lower the write rate"),
        "{stderr}"
    );
    assert!(!stdout(&failed).contains("longest write pause"));
    assert_eq!(fx.state(&job)["phase"], "ready");
    lock.disconnect().await.unwrap();

    // Unlocked, the streams converge and the cutover goes through with
    // every write in the new layout.
    let cutover = migrator_async(&fx, &["cutover", &job, "--proxy", &admin_url(&a)]).await;
    let model = writer.stop().await;
    assert!(cutover.status.success(), "{}", stdout(&cutover));
    assert_eq!(fx.state(&job)["phase"], "cut_over");
    assert_eq!(read_through(&a).await, model);
    assert_eq!(users_by_placement(&fx, 4, 32).await, model);
    drop(a);
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extend_cuts_over_without_moving_rows() {
    if !sandbox_ready("an_extend_cuts_over", 4) {
        return;
    }
    let fx = Fixture::new("orch_extend", 4).await;
    for s in 0..4 {
        let mut conn = fx.conn(s).await;
        create_2024_months(&mut conn).await;
        conn.disconnect().await.unwrap();
    }
    let from_text = proxy_ready(&fx.config(4, &messages_rules(2024)));
    let to_text = proxy_ready(&fx.config(4, &messages_rules(2025)));
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &to_text);
    let proxy = proxy_from(&fx.dir.join("proxy/shardgate.toml"), &from_text).await;
    let start = migrator_async(
        &fx,
        &[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "message_records",
            "--proxy",
            &admin_url(&proxy),
            "--cutover",
        ],
    )
    .await;
    assert!(start.status.success(), "{}", stdout(&start));
    let job = fx.job();
    let state = fx.state(&job);
    assert_eq!(state["phase"], "cut_over");
    assert!(state["cutover"]["longest_pause_ms"].as_u64().unwrap() < 1000);
    assert!(state["reverse"].as_array().unwrap().is_empty());

    // The proxy now routes March 2025 to its new table.
    let mut conn = proxy_conn(&proxy).await;
    conn.query_drop(
        "INSERT INTO message_records (id, tenant_id, created_at, sender, body) \
         VALUES (1, 'acme', '2025-03-04 10:00:00', 7, 'new month')",
    )
    .await
    .unwrap();
    conn.disconnect().await.unwrap();
    let mut in_march = 0;
    for s in 0..4 {
        in_march += table_counts(&fx, s, "message\\_records\\_202503")
            .await
            .values()
            .sum::<u64>();
    }
    assert_eq!(in_march, 1);

    // The old rules have no place for that row: rollback is refused.
    let rollback = migrator_async(&fx, &["rollback", &job]).await;
    assert_eq!(rollback.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&rollback.stderr);
    assert!(stderr.contains("cannot roll back"), "{stderr}");
    assert_eq!(fx.state(&job)["phase"], "cut_over");
    let complete = migrator_async(&fx, &["complete", &job]).await;
    assert!(complete.status.success());
    assert_eq!(fx.state(&job)["phase"], "completed");
    drop(proxy);
    fx.cleanup().await;
}
