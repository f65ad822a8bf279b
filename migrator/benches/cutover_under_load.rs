//! Benchmark, not a test: a whole `users` expansion (4 × 16 → 4 × 32
//! tables, `start --cutover`) under a live write load through an
//! in-process ShardGate that records every write (the integration tests'
//! `LiveLoad`: inserts with generated keys, updates, deletes and reads),
//! at each write rate asked for. Per rate it prints the write rate reached
//! before and during the job, the job's phases (copy and verification
//! rates), the cutover's write pause as the migrator measured it and the
//! slowest write the load saw during the job, the cutover attempts, and
//! every failed, lost, wrong or misplaced write (checked through the proxy
//! and on the new layout's physical tables).
//!
//! `cargo bench -p shardgate-migrator --bench cutover_under_load -- [RATE ...]`
//! (writes/s, default 600 2000; `BENCH_ROWS` seeded rows, default 200000;
//! `BENCH_BATCH` and `BENCH_PARALLELISM` the copy's `--batch-size` and
//! `--parallelism`, default the migrator's),
//! with the sandbox up (`docker/sandbox.sh up`). `bench/migrate.sh` runs it.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use shardgate_integration_tests::live_load::{LiveLoad, LoadConfig, LoadProgress};
use shardgate_integration_tests::{start_proxy_from_file, RunningProxy};
use std::time::{Duration, Instant};

/// Share of the load's operations that write (30% inserts, 30% updates,
/// 12% deletes; the rest reads).
const WRITE_SHARE: f64 = 0.72;

fn writes(p: &LoadProgress) -> u64 {
    p.inserted + p.updated + p.deleted
}

/// Writes per second between two progress readings.
fn rate(from: &LoadProgress, to: &LoadProgress, over: Duration) -> f64 {
    writes(to).saturating_sub(writes(from)) as f64 / over.as_secs_f64().max(1e-3)
}

/// A load of `workers` paced to about `target` writes/s in all.
fn load_config(proxy: &RunningProxy, target: f64, workers: usize, seed: u64) -> LoadConfig {
    let mut load = LoadConfig::new(proxy.endpoint(), "users", "user_id");
    load.workers = workers;
    load.seed = seed;
    let per_worker_ops = target / WRITE_SHARE / workers as f64;
    load.pace = Some(Duration::from_secs_f64(1.0 / per_worker_ops));
    load
}

/// Starts a load and measures what it reaches over `window`; the pace is
/// corrected once for the proxy's own latency.
async fn paced_load(proxy: &RunningProxy, target: f64) -> (LiveLoad, f64) {
    let workers = ((target / 100.0).ceil() as usize).clamp(4, 64);
    let window = Duration::from_secs(3);
    let trial = LiveLoad::start(load_config(proxy, target, workers, 7))
        .await
        .expect("load starts");
    let before = trial.progress();
    tokio::time::sleep(window).await;
    let reached = rate(&before, &trial.progress(), window);
    let _ = trial.stop().await;
    // Ask for more where the latency ate into the pace.
    let asked = target * (target / reached.max(1.0)).clamp(1.0, 4.0);
    let load = LiveLoad::start(load_config(proxy, asked, workers, 11))
        .await
        .expect("load starts");
    let before = load.progress();
    tokio::time::sleep(window).await;
    let reached = rate(&before, &load.progress(), window);
    (load, reached)
}

/// Source rows the first verification compared and how long the job was
/// in its `verifying` phase (from the job's phase history).
fn verification_rate(state: &serde_json::Value) -> Option<(u64, f64)> {
    let phases = state["phases"].as_array()?;
    let at = phases.iter().position(|p| p["phase"] == "verifying")?;
    let from = phases[at]["at_ms"].as_u64()?;
    let to = phases.get(at + 1)?["at_ms"].as_u64()?;
    let rows = state["verification"]["source_rows"].as_u64()?;
    Some((rows, to.saturating_sub(from) as f64 / 1000.0))
}

async fn one_rate(target: f64, rows: u64) {
    let prefix = format!("bench_cut{}", target as u64);
    let fx = Fixture::new(&prefix, 4).await;
    let from_text = proxy_ready(&fx.config(4, &users_rules(4, 16)));
    seed_users(&fx, &from_text, 4, 16, rows).await;
    let from = fx.write("from.toml", &from_text);
    let to_text = proxy_ready(&fx.config(4, &users_rules(4, 32)));
    let to = fx.write("to.toml", &to_text);
    let path = fx.dir.join("proxy/shardgate.toml");
    std::fs::create_dir_all(fx.dir.join("proxy")).expect("scratch directory");
    std::fs::write(&path, &from_text).expect("config written");
    let proxy = start_proxy_from_file(&path).await;

    let (load, before_rate) = paced_load(&proxy, target).await;
    let at_start = load.progress();
    let started = Instant::now();
    let admin = format!("http://{}", proxy.admin_addr);
    let mut args = vec![
        "start",
        "--from",
        &from,
        "--to",
        &to,
        "--table",
        "users",
        "--proxy",
        &admin,
        "--cutover",
    ];
    let batch = std::env::var("BENCH_BATCH").ok();
    let parallelism = std::env::var("BENCH_PARALLELISM").ok();
    if let Some(batch) = &batch {
        args.extend(["--batch-size", batch]);
    }
    if let Some(parallelism) = &parallelism {
        args.extend(["--parallelism", parallelism]);
    }
    let job_run = migrator_async(&fx, &args).await;
    let ended = Instant::now();
    let during_rate = rate(&at_start, &load.progress(), ended - started);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    let out = String::from_utf8_lossy(&job_run.stdout).into_owned();
    let ok = job_run.status.success();
    let job = fx.job();
    let state = fx.state(&job);
    let pause = state["cutover"]["longest_pause_ms"].as_u64();
    let verification = verification_rate(&state);
    let attempts = 1 + out.matches("failed and was undone").count();
    let slowest = report
        .longest_write_overlapping(started, ended)
        .map_or(Duration::ZERO, |w| w.latency);
    let mut conn = proxy.endpoint().connect().await.expect("proxy connects");
    let lost = report.check_content(&mut conn).await;
    let to_config = shardgate_rules::Config::from_toml_str(&to_text).expect("to config");
    let misplaced = if ok {
        report.check_backends(&to_config).await
    } else {
        Vec::new()
    };
    let phases: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("rows/s") || l.contains("verified") || l.contains("cut over"))
        .collect();

    println!("== {target} writes/s asked, {rows} seeded rows");
    println!(
        "   load before the job {before_rate:.0} writes/s, during it {during_rate:.0} writes/s"
    );
    println!(
        "   job {}: {:.1} s; cutover attempts {attempts}; write pause {} (migrator), slowest \
         write during the job {} ms (load)",
        if ok { "cut over" } else { "FAILED" },
        (ended - started).as_secs_f64(),
        pause.map_or_else(|| "-".to_string(), |p| format!("{p} ms")),
        slowest.as_millis()
    );
    for line in phases {
        println!("   | {line}");
    }
    if let Some((rows, seconds)) = verification {
        println!(
            "   | verifying phase: {seconds:.1} s for {rows} source rows ({:.0} rows/s)",
            rows as f64 / seconds.max(1e-3)
        );
    }
    println!(
        "   writes: {} inserted, {} updated, {} deleted; failed statements {}, refused {}, wrong \
         answers {}, lost or extra rows {}, misplaced rows {}",
        report.inserted,
        report.updated,
        report.deleted,
        report.failure_count,
        report.refused,
        report.wrong_answers.len(),
        lost.len(),
        misplaced.len()
    );
    for problem in lost.iter().chain(&misplaced).take(10) {
        println!("   ! {problem}");
    }
    if !ok {
        println!("{out}{}", String::from_utf8_lossy(&job_run.stderr));
    }
    drop(proxy);
    fx.cleanup().await;
}

fn main() {
    if !sandbox_ready("cutover_under_load", 4) {
        std::process::exit(1);
    }
    // `cargo bench` passes `--bench`; numbers are rates.
    let mut rates: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if rates.is_empty() {
        rates = vec![600.0, 2000.0];
    }
    let rows = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for target in rates {
        runtime.block_on(one_rate(target, rows));
    }
}
