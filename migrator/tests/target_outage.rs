//! A target primary stopped during the copy: `users` moves from ds0..ds3
//! onto ds0..ds7 and ds5 (a data source only the new layout uses) is shut
//! down while rows are being copied. The migrator must end with an error
//! naming ds5 and the phase, keeping the job resumable (the error and the
//! copy cursors in its state); once `docker/sandbox.sh up` has started ds5
//! again (and its replicas follow it again), `resume` finishes with a clean
//! verification and every row in its new place, and `cancel` instead
//! (begun while ds5 is still down, finished once it is back) leaves no
//! table of the job behind and the source tables as they were.
//!
//! Its own test binary: no other migrator test runs while ds5 is down, and
//! the two scenarios here take turns. ds0..ds3 and their replicas are never
//! stopped (other tests use them); ds5 is started again whatever happens.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Rows in the old layout: enough, at the copy pace below, for a copy of
/// about fifteen seconds.
const SEEDED: u64 = 16_000;

/// The target-only data source the test stops.
const STOPPED: u32 = 5;

/// One outage at a time (the two tests of this binary run in parallel
/// otherwise).
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The sandbox ds5 runs in, found from the server itself.
struct Sandbox {
    /// `$SANDBOX_DIR`: ds5's folder is `<dir>/ds5`.
    dir: PathBuf,
    primaries: u32,
    replicas: u32,
}

impl Sandbox {
    /// ds5's `@@datadir` is `<sandbox>/ds5/data/`; the sandbox's
    /// `topology.env` says how many primaries and replicas its last `up`
    /// started. None (the test skips) when ds5 was not started by
    /// `docker/sandbox.sh`: the test could not start it again.
    async fn locate() -> Option<Sandbox> {
        let mut conn = connect(STOPPED, None).await;
        let datadir: String = conn.query_first("SELECT @@datadir").await.unwrap()?;
        conn.disconnect().await.unwrap();
        let server_dir = Path::new(&datadir).parent()?;
        let dir = server_dir.parent()?.to_path_buf();
        let topology = std::fs::read_to_string(dir.join("topology.env")).ok()?;
        if !server_dir.join("my.cnf").is_file() || !dir.join(".shardgate-sandbox").is_file() {
            return None;
        }
        let setting = |key: &str| -> Option<u32> {
            topology
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))?
                .trim()
                .parse()
                .ok()
        };
        Some(Sandbox {
            primaries: setting("SANDBOX_PRIMARIES")?,
            replicas: setting("SANDBOX_REPLICAS")?,
            dir,
        })
    }

    /// `docker/sandbox.sh up --from-primary 4` with the sandbox's topology:
    /// starts what is missing of ds4.. and their replicas, and leaves
    /// ds0..ds3 alone.
    fn up_from_ds4(&self) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/sandbox.sh");
        let output = Command::new(&script)
            .env("SANDBOX_DIR", &self.dir)
            .args(["up", "--primaries", &self.primaries.to_string()])
            .args([
                "--replicas",
                &self.replicas.to_string(),
                "--from-primary",
                "4",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let shown = format!(
            "SANDBOX_DIR={} {} up --primaries {} --replicas {} --from-primary 4: {}\n{}{}",
            self.dir.display(),
            script.display(),
            self.primaries,
            self.replicas,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("{shown}");
        if output.status.success() {
            Ok(())
        } else {
            Err(shown)
        }
    }

    /// The pids of ds0..ds3's primaries. (Their replicas are left out: the
    /// sandbox's other users may stop and start ds1's and ds2's meanwhile.)
    fn first_four_primary_pids(&self) -> BTreeMap<String, String> {
        (0..4)
            .map(|i| {
                let name = format!("ds{i}");
                let pid = std::fs::read_to_string(self.dir.join(&name).join("mariadbd.pid"))
                    .unwrap_or_else(|e| panic!("{name}'s pid file: {e}"));
                (name, pid.trim().to_string())
            })
            .collect()
    }
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

/// ds5 stopped; starts it again when dropped (after a failed assertion
/// too) unless [`Outage::end`] did.
struct Outage<'a> {
    sandbox: &'a Sandbox,
    ended: bool,
}

impl<'a> Outage<'a> {
    /// Shuts ds5 down cleanly (what it committed stays) and waits until
    /// it is gone.
    fn begin(sandbox: &'a Sandbox) -> Outage<'a> {
        let outage = Outage {
            sandbox,
            ended: false,
        };
        let output = Command::new("mariadb-admin")
            .args(["--no-defaults", "--protocol=TCP", "-h127.0.0.1", "-uroot"])
            .arg(format!("-P{}", port(STOPPED)))
            .arg("shutdown")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mariadb-admin shutdown of ds5: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepts(port(STOPPED)) {
            assert!(Instant::now() < deadline, "ds5 still accepts connections");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("ds5 stopped");
        outage
    }

    /// Starts ds5 again with the sandbox script; fails the test if that
    /// fails.
    fn end(mut self) {
        self.ended = true;
        self.sandbox.up_from_ds4().unwrap();
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if !self.ended {
            if let Err(shown) = self.sandbox.up_from_ds4() {
                eprintln!("COULD NOT START ds5 AGAIN: {shown}");
            }
        }
    }
}

/// `CHECKSUM TABLE` of every old-layout table on ds0..ds3.
async fn source_checksums(fx: &Fixture) -> BTreeMap<String, Option<u64>> {
    let mut sums = BTreeMap::new();
    for s in 0..4 {
        let mut conn = fx.conn(s).await;
        let tables: Vec<String> = (0..16).map(|t| format!("users_{t}")).collect();
        let rows: Vec<(String, Option<u64>)> = conn
            .query(format!("CHECKSUM TABLE {}", tables.join(", ")))
            .await
            .unwrap();
        for (table, sum) in rows {
            sums.insert(format!("ds{s}.{table}"), sum);
        }
        conn.disconnect().await.unwrap();
    }
    sums
}

/// The tables of a data source's test database.
async fn tables_of(fx: &Fixture, source: u32) -> Vec<String> {
    let mut conn = fx.conn(source).await;
    let mut tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    conn.disconnect().await.unwrap();
    tables.sort();
    tables
}

/// A job that failed because ds5 stopped during its copy.
struct Failed {
    job: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Seeds the old layout; returns the configuration files to move from
/// and to, and the source tables' checksums.
async fn seed(fx: &Fixture) -> (String, String, BTreeMap<String, Option<u64>>) {
    let from = fx.config(4, &users_rules(4, 16));
    seed_users(fx, &from, 4, 16, SEEDED).await;
    let from = fx.write("from.toml", &from);
    let to = fx.write("to.toml", &fx.config(8, &users_rules(8, 16)));
    (from, to, source_checksums(fx).await)
}

/// Starts the job onto eight data sources, stops ds5 once rows are being
/// copied and waits for the migrator to end.
async fn copy_until_ds5_stops<'a>(
    fx: &Fixture,
    sandbox: &'a Sandbox,
    from: &str,
    to: &str,
) -> (Failed, Outage<'a>) {
    let mut child = fx
        .command(&[
            "start",
            "--from",
            from,
            "--to",
            to,
            "--table",
            "users",
            "--batch-size",
            "40",
            "--parallelism",
            "2",
            "--pause-ms",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(state) = try_state(fx) {
            let copied = sum_of(&state, "rows_copied");
            if state["phase"] == "copying" && copied > 0 {
                assert!(
                    copied < sum_of(&state, "rows_total"),
                    "the copy ended before ds5 could be stopped: {state}"
                );
                eprintln!("stopping ds5 with {copied} rows copied");
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migrator ended before the copy began"
        );
        assert!(Instant::now() < deadline, "the copy never began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outage = Outage::begin(sandbox);

    // It must end by itself, neither hanging nor waiting for ds5.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the migrator still runs two minutes after ds5 stopped");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("$ shardgate-migrator start ... ({status})\n{stdout}{stderr}");
    let failed = Failed {
        job: fx.job(),
        status,
        stdout,
        stderr,
    };
    (failed, outage)
}

/// The migrator failed with a clear error and kept the job resumable.
fn assert_failed_resumably(fx: &Fixture, failed: &Failed) {
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stdout);
    let stderr = &failed.stderr;
    assert!(
        stderr.contains(&format!(
            "error: job {} stopped in phase copying: ",
            failed.job
        )),
        "{stderr}"
    );
    assert!(stderr.contains("to ds5"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`resume {}` continues from the last saved batch",
            failed.job
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let state = fx.state(&failed.job);
    assert_eq!(state["phase"], "copying", "{state}");
    let errors = state["errors"].as_array().unwrap();
    let last = errors.last().unwrap()["message"].as_str().unwrap();
    assert!(last.contains("stopped in phase copying"), "{last}");
    assert!(last.contains("ds5"), "{last}");
    let copied = sum_of(&state, "rows_copied");
    assert!(copied > 0 && copied < SEEDED, "{copied} rows copied");
    let sources = state["sources"].as_array().unwrap();
    assert!(
        sources.iter().any(|s| s["cursor"].is_number()),
        "no copy cursor saved: {state}"
    );
    assert!(sources.iter().any(|s| s["done"] == false), "{state}");
    for source in sources {
        assert_eq!(
            source["cursor"].is_null(),
            source["rows_copied"] == 0,
            "{source}"
        );
    }
    let status = stdout(&fx.migrator(&["status", &failed.job]));
    assert!(status.contains("phase copying"), "{status}");
    assert!(
        status.contains("  last error (")
            && status.contains(&format!("job {} stopped in phase copying", failed.job)),
        "{status}"
    );
}

/// ds5 answers again, its replicas replicate it and have caught up, and
/// no primary of ds0..ds3 was restarted.
async fn assert_ds5_back(sandbox: &Sandbox, pids_before: &BTreeMap<String, String>) {
    assert_eq!(&sandbox.first_four_primary_pids(), pids_before);
    let mut primary = connect(STOPPED, None).await;
    let position: String = primary
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    primary.disconnect().await.unwrap();
    for r in 0..sandbox.replicas {
        let replica_port = port(STOPPED) + 10 * (r as u16 + 1);
        let url = format!("mysql://root@127.0.0.1:{replica_port}");
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap();
        let status: mysql_async::Row = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("ds5-replica{r} is not attached"));
        let running = |field: &str| status.get::<String, _>(field).unwrap_or_default();
        assert_eq!(running("Slave_IO_Running"), "Yes", "ds5-replica{r}");
        assert_eq!(running("Slave_SQL_Running"), "Yes", "ds5-replica{r}");
        let waited: Option<i64> = conn
            .query_first(format!("SELECT MASTER_GTID_WAIT('{position}', 30)"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(waited, Some(0), "ds5-replica{r} did not catch up");
        conn.disconnect().await.unwrap();
    }
}

/// Every seeded row sits exactly once where `users_rules(8, 16)` puts it:
/// in `users_<t>__sgnew` on ds0..ds3 (the old layout still holds the
/// plain names there until cutover) and in `users_<t>` on ds4..ds7.
async fn assert_placed_on_eight(fx: &Fixture) {
    let mut found: BTreeMap<i64, String> = BTreeMap::new();
    for s in 0..8u32 {
        let mut conn = fx.conn(s).await;
        for t in 0..16 {
            let table = if s < 4 {
                format!("users_{t}__sgnew")
            } else {
                format!("users_{t}")
            };
            let rows: Vec<(i64, String)> = conn
                .query(format!("SELECT user_id, name FROM {table}"))
                .await
                .unwrap();
            for (key, name) in rows {
                assert_eq!(
                    (key.rem_euclid(8), (key / 8).rem_euclid(16)),
                    (i64::from(s), t),
                    "key {key} sits in ds{s}.{table}"
                );
                assert!(found.insert(key, name).is_none(), "key {key} twice");
            }
        }
        conn.disconnect().await.unwrap();
    }
    let expected: BTreeMap<i64, String> = (0..SEEDED)
        .map(|i| (user_key(i), format!("user {i} ü")))
        .collect();
    assert_eq!(found.len(), expected.len());
    assert!(
        found == expected,
        "the new layout's rows differ from the seeded ones"
    );
}

/// Skips (or fails under SHARDGATE_REQUIRE_SANDBOX=1) when ds0..ds7 are
/// not all up or ds5 is not a server the sandbox script can start again.
async fn sandbox_for(test: &str) -> Option<Sandbox> {
    if !sandbox_ready(test, 8) {
        return None;
    }
    let sandbox = Sandbox::locate().await;
    if sandbox.is_none() {
        let message = format!(
            "{test}: ds5 (port {}) was not started by docker/sandbox.sh, so it could not be \
             started again after the outage",
            port(STOPPED)
        );
        if std::env::var("SHARDGATE_REQUIRE_SANDBOX").as_deref() == Ok("1") {
            panic!("{message}");
        }
        eprintln!("SKIPPED: {message}");
    }
    sandbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_primary_stopped_during_the_copy_fails_the_job_and_resume_finishes_it() {
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
    let Some(sandbox) = sandbox_for("a_target_primary_stopped_then_resume").await else {
        return;
    };
    let fx = Fixture::new("outage_resume", 8).await;
    let pids_before = sandbox.first_four_primary_pids();
    let (from, to, sums_before) = seed(&fx).await;
    let (failed, outage) = copy_until_ds5_stops(&fx, &sandbox, &from, &to).await;
    assert_failed_resumably(&fx, &failed);
    let job = failed.job;

    outage.end();
    assert_ds5_back(&sandbox, &pids_before).await;

    let resume = migrator_async(&fx, &["resume", &job]).await;
    let out = stdout(&resume);
    assert!(resume.status.success(), "{out}");
    assert!(out.contains("copy complete; catching up"), "{out}");
    assert!(out.contains("verified clean"), "{out}");
    let state = fx.state(&job);
    assert_eq!(state["phase"], "ready");
    assert_eq!(sum_of(&state, "rows_copied"), SEEDED, "{state}");

    let verify = migrator_async(&fx, &["verify", &job, "--json"]).await;
    assert!(verify.status.success(), "{}", stdout(&verify));
    let report = json(&verify);
    assert_eq!(report["source_rows"], SEEDED, "{report}");
    assert_eq!(report["target_rows"], SEEDED, "{report}");
    for differences in ["missing", "extra", "different", "misplaced"] {
        assert_eq!(report[differences], serde_json::json!([]), "{report}");
    }
    assert_placed_on_eight(&fx).await;
    assert_eq!(source_checksums(&fx).await, sums_before);

    assert!(migrator_async(&fx, &["cancel", &job])
        .await
        .status
        .success());
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_primary_stopped_during_the_copy_fails_the_job_and_cancel_undoes_it() {
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
    let Some(sandbox) = sandbox_for("a_target_primary_stopped_then_cancel").await else {
        return;
    };
    let fx = Fixture::new("outage_cancel", 8).await;
    let pids_before = sandbox.first_four_primary_pids();
    let (from, to, sums_before) = seed(&fx).await;
    let (failed, outage) = copy_until_ds5_stops(&fx, &sandbox, &from, &to).await;
    assert_failed_resumably(&fx, &failed);
    let job = failed.job;

    // Cancelled while ds5 is still down: the job is cancelled at once (no
    // resume into a half-dropped layout), its tables elsewhere dropped,
    // and the error says which are left and how to drop them.
    let early = migrator_async(&fx, &["cancel", &job]).await;
    assert_eq!(early.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(
        stderr.contains(&format!(
            "job {job} is cancelled, but not all of its tables are dropped: connecting to ds5"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`cancel {job}` again drops the rest")),
        "{stderr}"
    );
    let state = fx.state(&job);
    assert_eq!(state["phase"], "cancelled");
    let still_created = |ds: &str| {
        state["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["data_source"] == ds && t["created"] == true)
            .count()
    };
    assert_eq!(still_created("ds4"), 0, "{state}");
    assert_eq!(still_created("ds5"), 16, "{state}");
    assert_eq!(tables_of(&fx, 4).await, Vec::<String>::new());
    let resume = migrator_async(&fx, &["resume", &job]).await;
    assert_eq!(resume.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&resume.stderr);
    assert!(
        stderr.contains("phase cancelled: cannot resume; start a new job"),
        "{stderr}"
    );

    outage.end();
    assert_ds5_back(&sandbox, &pids_before).await;

    let cancel = migrator_async(&fx, &["cancel", &job]).await;
    assert!(cancel.status.success(), "{}", stdout(&cancel));
    assert_eq!(fx.state(&job)["phase"], "cancelled");
    let old: Vec<String> = {
        let mut names: Vec<String> = (0..16).map(|t| format!("users_{t}")).collect();
        names.sort();
        names
    };
    for s in 0..4 {
        assert_eq!(tables_of(&fx, s).await, old, "ds{s}");
    }
    for s in 4..8 {
        assert_eq!(tables_of(&fx, s).await, Vec::<String>::new(), "ds{s}");
    }
    assert_eq!(source_checksums(&fx).await, sums_before);
    let mut seeded = 0;
    for s in 0..4 {
        seeded += table_counts(&fx, s, "users\\_%")
            .await
            .values()
            .sum::<u64>();
    }
    assert_eq!(seeded, SEEDED);
    fx.cleanup().await;
}
