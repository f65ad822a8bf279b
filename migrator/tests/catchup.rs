//! Catch-up against the sandbox: the application's writes made straight on
//! the source primaries while the copy runs (inserts, updates, deletes,
//! updates that move a row to another new table) all reach the new layout;
//! a migrator killed while catching up and while verifying resumes to a
//! clean verification; `complete` is refused before cutover.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the direct writer did (rows actually changed).
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    inserts: u64,
    updates: u64,
    deletes: u64,
    moves: u64,
}

/// Writes straight into the old layout's tables (as the application
/// would without the proxy) until `stop`: inserts of new keys, updates and
/// deletes of seeded keys, and key changes that keep a row in its old
/// table but move it to another table of the new layout (key + 64: same
/// `users_<(k/4)%16>`, `users_<(k/4)%32>` 16 further).
async fn direct_writer(fx: &Fixture, seeded: u64, stop: Arc<AtomicBool>, seed: u64) -> Done {
    let mut conns = Vec::new();
    for s in 0..4 {
        conns.push(fx.conn(s).await);
    }
    let mut rng = Lcg(seed);
    let mut done = Done::default();
    let mut n = 0u64;
    let place = |key: i64| (key.rem_euclid(4) as usize, (key / 4).rem_euclid(16));
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let existing = user_key(rng.below(seeded));
        let (ds, table) = place(existing);
        let conn = &mut conns[ds];
        match rng.below(4) {
            0 => {
                let key = user_key(1_000_000 + seed * 100_000 + n);
                let (ds, table) = place(key);
                conns[ds]
                    .query_drop(format!(
                        "INSERT INTO users_{table} ({USER_COLUMNS}) VALUES \
                         ({key}, 't', 'inserted {n}', NULL, NULL, NOW(), 1)"
                    ))
                    .await
                    .unwrap();
                done.inserts += 1;
            }
            1 => {
                conn.query_drop(format!(
                    "UPDATE users_{table} SET name = 'updated {n}', status = status + 1 \
                     WHERE user_id = {existing}"
                ))
                .await
                .unwrap();
                done.updates += conn.affected_rows();
            }
            2 => {
                conn.query_drop(format!(
                    "DELETE FROM users_{table} WHERE user_id = {existing}"
                ))
                .await
                .unwrap();
                done.deletes += conn.affected_rows();
            }
            _ => {
                conn.query_drop(format!(
                    "UPDATE users_{table} SET user_id = user_id + 64, name = 'moved {n}' \
                     WHERE user_id = {existing}"
                ))
                .await
                .unwrap();
                done.moves += conn.affected_rows();
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
    done
}

fn phase(fx: &Fixture) -> String {
    try_state(fx)
        .and_then(|s| s["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_made_during_the_copy_reach_the_new_layout() {
    if !sandbox_ready("writes_made_during_the_copy", 4) {
        return;
    }
    let fx = Arc::new(Fixture::new("orch_copywrites", 4).await);
    let (from, to) = fx.users_expansion(4000, 4, 32).await;
    let child = fx
        .command(&[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "users",
            "--batch-size",
            "25",
            "--parallelism",
            "2",
            "--pause-ms",
            "15",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fx, stop) = (fx.clone(), stop.clone());
        tokio::spawn(async move { direct_writer(&fx, 4000, stop, 1).await })
    };
    // The writer runs as long as the copy does.
    let deadline = Instant::now() + Duration::from_secs(120);
    while phase(&fx) != "copying" {
        assert!(Instant::now() < deadline, "the copy never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while phase(&fx) == "copying" {
        assert!(Instant::now() < deadline, "the copy never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let done = writer.await.unwrap();
    eprintln!("direct writes during the copy: {done:?}");
    assert!(
        done.inserts > 5 && done.updates > 5 && done.deletes > 5 && done.moves > 5,
        "{done:?}"
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let out = stdout(&output);
    eprintln!("{out}");
    assert!(output.status.success(), "{out}");
    assert!(out.contains("verified clean"), "{out}");
    let job = fx.job();
    let state = fx.state(&job);
    assert_eq!(state["phase"], "ready");
    assert!(state["primaries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["applied"]["file"].is_string()));

    let verify = migrator_async(&fx, &["verify", &job, "--json"]).await;
    assert!(verify.status.success(), "{}", stdout(&verify));
    let report = json(&verify);
    assert_eq!(
        report["target_rows"],
        4000 + done.inserts - done.deletes,
        "{report}"
    );
    // A ready job's streams are not running; `verify` runs them, so rows
    // written before and while it compares are not differences.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fx, stop) = (fx.clone(), stop.clone());
        tokio::spawn(async move { direct_writer(&fx, 4000, stop, 2).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let verify = migrator_async(&fx, &["verify", &job]).await;
    stop.store(true, Ordering::Relaxed);
    let more = writer.await.unwrap();
    assert!(more.inserts + more.updates + more.deletes > 5, "{more:?}");
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("result: no differences"));

    let status = stdout(&migrator_async(&fx, &["status", &job]).await);
    assert!(
        status.contains("catch-up ds2: from mariadb-bin."),
        "{status}"
    );
    assert!(status.contains(", lag "), "{status}");

    // A migrator killed during a cutover before any rename: resume goes
    // back to ready (and verifies again); after a rename it refuses.
    let set_phase = |phase: &str| {
        let mut state = fx.state(&job);
        state["phase"] = phase.into();
        let path = format!("{}/{job}.json", fx.state_dir());
        std::fs::write(path, serde_json::to_vec(&state).unwrap()).unwrap();
    };
    set_phase("cutting_over");
    let resume = migrator_async(&fx, &["resume", &job]).await;
    let out = stdout(&resume);
    assert!(resume.status.success(), "{out}");
    assert!(
        out.contains("cutover was interrupted before any table was renamed: back to ready"),
        "{out}"
    );
    assert!(out.contains("verified clean"), "{out}");
    let mut ds0 = fx.conn(0).await;
    ds0.query_drop("CREATE TABLE users_0__sgold LIKE users_0")
        .await
        .unwrap();
    set_phase("cutting_over");
    let resume = migrator_async(&fx, &["resume", &job]).await;
    assert_eq!(resume.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&resume.stderr);
    assert!(
        stderr.contains("ds0 already renamed its tables (users_0__sgold exists)"),
        "{stderr}"
    );
    ds0.query_drop("DROP TABLE users_0__sgold").await.unwrap();
    ds0.disconnect().await.unwrap();
    set_phase("ready");

    // Before cutover the old tables are live: complete is refused.
    let complete = migrator_async(&fx, &["complete", &job]).await;
    assert_eq!(complete.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&complete.stderr);
    assert!(
        stderr.contains("until a cutover the old layout's tables are the live ones"),
        "{stderr}"
    );
    assert!(migrator_async(&fx, &["cancel", &job])
        .await
        .status
        .success());
    Arc::into_inner(fx).unwrap().cleanup().await;
}

/// Kills the child (SIGKILL) once the job's phase is `phase`.
async fn kill_in_phase(fx: &Fixture, child: &mut std::process::Child, phase_name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = phase(fx);
        if now == phase_name {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migrator ended in phase {now} before reaching {phase_name}"
        );
        assert!(Instant::now() < deadline, "never reached {phase_name}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migrator_killed_catching_up_and_verifying_resumes_clean() {
    if !sandbox_ready("a_migrator_killed_catching_up", 4) {
        return;
    }
    let fx = Arc::new(Fixture::new("orch_kill", 4).await);
    let (from, to) = fx.users_expansion(20_000, 4, 32).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fx, stop) = (fx.clone(), stop.clone());
        tokio::spawn(async move { direct_writer(&fx, 20_000, stop, 2).await })
    };

    // Killed while following the binlogs (ready, catching up with --follow).
    let mut child = fx
        .command(&[
            "start", "--from", &from, "--to", &to, "--table", "users", "--follow",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kill_in_phase(&fx, &mut child, "ready").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let job = fx.job();
    let applied_before = fx.state(&job)["primaries"].clone();

    // Killed while verifying.
    let mut child = fx
        .command(&["resume", &job])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kill_in_phase(&fx, &mut child, "verifying").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let done = writer.await.unwrap();
    eprintln!("direct writes: {done:?}");

    let resume = migrator_async(&fx, &["resume", &job]).await;
    assert!(resume.status.success(), "{}", stdout(&resume));
    assert!(stdout(&resume).contains("verified clean"));
    assert_eq!(fx.state(&job)["phase"], "ready");
    // The resumed runs went on from the positions the killed one saved
    // (the writer kept writing: they are newer). Not checked between the
    // two kills: a run killed within its first save interval (200 ms)
    // rightly saved nothing yet.
    assert_ne!(
        fx.state(&job)["primaries"],
        applied_before,
        "the resumed catch-up saved newer positions"
    );
    let verify = migrator_async(&fx, &["verify", &job, "--json"]).await;
    assert!(verify.status.success(), "{}", stdout(&verify));
    let report = json(&verify);
    assert_eq!(report["target_rows"], 20_000 + done.inserts - done.deletes);
    Arc::into_inner(fx).unwrap().cleanup().await;
}
