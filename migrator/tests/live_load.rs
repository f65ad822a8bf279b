//! Whole `users` jobs (`start --cutover` through an in-process ShardGate)
//! under the integration tests' live load: generated keys, inserts,
//! updates, deletes and reads checked as they go. After the cutover no
//! read was wrong, the proxy's content and the new layout's physical
//! tables equal the load's record with every row where the new rules
//! place it, the seeded rows are intact, and the longest write pause is
//! printed. The two jobs run one after the other: each is a heavy load on
//! a shared sandbox, and a migrator starved of CPU falls behind the load.

mod common;

use common::*;
use shardgate_integration_tests::live_load::{LiveLoad, LoadConfig};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One live-load job at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A whole `users` job (seeded rows, `start --cutover`) under the live
/// load: no wrong answer during the job, the proxy's content and the new
/// layout's physical tables equal the load's record, the seeded rows are
/// intact, and the longest write pause is printed.
async fn users_job_under_live_load(prefix: &str, to_sources: u32, to_tables: u32) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new(prefix, to_sources).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, 3000).await;
    let from = fx.write("from.toml", &from_text);
    let to_text = proxy_ready(&fx.config(to_sources, &users_rules(to_sources, to_tables)));
    let to = fx.write("to.toml", &to_text);
    let proxy = proxy_from(&fx.dir.join("proxy/shardgate.toml"), &from_text).await;
    let mut load = LoadConfig::new(proxy.endpoint(), "users", "user_id");
    load.workers = 2;
    load.pace = Some(Duration::from_millis(5));
    let load = LiveLoad::start(load).await.unwrap();
    load.wait_for(Duration::from_secs(30), |p| p.inserted >= 100)
        .await;

    let started = Instant::now();
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
            "500",
            "--proxy",
            &format!("http://{}", proxy.admin_addr),
            "--cutover",
        ],
    )
    .await;
    let ended = Instant::now();
    assert!(start.status.success(), "{}", stdout(&start));
    let job = fx.job();
    let state = fx.state(&job);
    assert_eq!(state["phase"], "cut_over");
    let pause = state["cutover"]["longest_pause_ms"].as_u64().unwrap();
    let during = load.progress();
    load.wait_for(Duration::from_secs(30), |p| {
        p.inserted >= during.inserted + 100
    })
    .await;
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    let slowest = report
        .longest_write_overlapping(started, ended)
        .map_or_else(|| "none".to_string(), |w| w.to_string());
    eprintln!(
        "{prefix}: longest write pause during cutover {pause} ms (migrator); slowest write of \
         the load during the job: {slowest}"
    );
    assert!(pause < 1000, "{pause}");
    assert!(
        report.wrong_answers.is_empty(),
        "{:?}",
        report.wrong_answers
    );
    assert!(report.inserted > 200 && report.updated > 0 && report.deleted > 0);
    let mut conn = proxy.endpoint().connect().await.unwrap();
    let problems = report.check_content(&mut conn).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let to_config = shardgate_rules::Config::from_toml_str(&to_text).unwrap();
    let problems = report.check_backends(&to_config).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let placed = users_by_placement(&fx, to_sources, to_tables).await;
    for i in 0..3000 {
        let name = format!("user {i} ü");
        assert_eq!(placed.get(&user_key(i)), Some(&name), "seeded key {i}");
    }
    drop(proxy);
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_16_to_32_tables_under_live_load() {
    if !sandbox_ready("users_16_to_32_tables_under_live_load", 4) {
        return;
    }
    users_job_under_live_load("orch_live32", 4, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_onto_eight_data_sources_under_live_load() {
    if !sandbox_ready("users_onto_eight_data_sources_under_live_load", 8) {
        return;
    }
    users_job_under_live_load("orch_live8", 8, 16).await;
}
