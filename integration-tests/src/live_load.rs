//! A live load for the online-migration tests, and its checker.
//!
//! [`LiveLoad::start`] spawns workers that keep writing one logical table
//! through ShardGate while something else (a migration, a cutover) happens:
//! each inserts rows without their key (the proxy generates it; the worker
//! reads it from the OK packet), updates and deletes rows it created, and
//! reads them back by key — text and prepared statements mixed. Every
//! worker only touches keys it created, so it knows exactly what each of
//! its rows must hold; a read that disagrees is a wrong answer. Each write's
//! latency is recorded, so the longest pause (a cutover's) can be printed.
//!
//! [`LiveLoad::stop`] returns a [`LoadReport`]: the record of what was
//! written, which [`LoadReport::check_content`] compares with the table as
//! the proxy serves it and [`LoadReport::check_backends`] with the physical
//! tables of a rules config (placement included). The load's rows carry a
//! marker column value starting with [`LoadReport::marker_prefix`], so rows
//! it did not account for (duplicated, resurrected) are found too.
//!
//! A statement the server refuses (an error reply) changed nothing; one
//! whose outcome is unknown (connection lost, the proxy's 1105 after losing
//! its backend, a timeout) makes its key *uncertain*: left out of the exact
//! check and reported.

mod report;
mod worker;

pub use report::{compare_read, FoundRow, LoadReport};

use crate::Endpoint;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worker::{Worker, WorkerRecord};

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// ShardGate, with the logical database.
    pub proxy: Endpoint,
    /// The logical table, e.g. `users`.
    pub table: String,
    /// The key the proxy generates when an INSERT omits it (snowflake).
    pub key_column: String,
    /// A character column the load sets once per row to a unique marker
    /// (starting with the run's prefix) and never changes.
    pub marker_column: String,
    /// A nullable character column the load updates.
    pub value_column: String,
    pub workers: usize,
    /// Pause between two operations of one worker (none: as fast as the
    /// proxy answers).
    pub pace: Option<Duration>,
    /// Seeds the operation mix; also part of the marker prefix.
    pub seed: u64,
    /// A statement that takes longer counts as lost (its outcome unknown)
    /// and the worker reconnects. Longer than any pause bound being tested.
    pub statement_timeout: Duration,
}

impl LoadConfig {
    /// Four workers, no pace, seed 1, markers in `name` and values in
    /// `email` (the `users` table's columns), 30 s statement timeout.
    pub fn new(proxy: Endpoint, table: &str, key_column: &str) -> LoadConfig {
        LoadConfig {
            proxy,
            table: table.to_string(),
            key_column: key_column.to_string(),
            marker_column: "name".into(),
            value_column: "email".into(),
            workers: 4,
            pace: None,
            seed: 1,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a load cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("live load: at least one worker is needed")]
    NoWorkers,
    #[error("live load: worker {worker} cannot connect to ShardGate at {addr}: {source}")]
    Connect {
        worker: usize,
        addr: String,
        source: sqlx::Error,
    },
}

/// The columns of one load row the load sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadRow {
    pub marker: String,
    pub value: Option<String>,
}

impl fmt::Display for LoadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "({:?}, {v:?})", self.marker),
            None => write!(f, "({:?}, NULL)", self.marker),
        }
    }
}

/// A kind of write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp {
    Insert,
    Update,
    Delete,
}

/// How a statement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// An error reply: the statement changed nothing.
    Refused,
    /// Unknown: the connection was lost, the proxy lost its backend, or the
    /// statement timed out.
    Ambiguous,
}

/// One write, timed.
#[derive(Clone, Debug)]
pub struct WriteTiming {
    /// When it was sent.
    pub started: Instant,
    pub latency: Duration,
    pub op: WriteOp,
    pub worker: usize,
    /// The row's key (None for an insert without a reply).
    pub key: Option<i64>,
    pub outcome: WriteOutcome,
}

impl WriteTiming {
    fn ended(&self) -> Instant {
        self.started + self.latency
    }
}

impl fmt::Display for WriteTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} by worker {} (key {}) took {:?}: {:?}",
            self.op,
            self.worker,
            self.key.map_or_else(|| "?".to_string(), |k| k.to_string()),
            self.latency,
            self.outcome
        )
    }
}

/// Counts while the load runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadProgress {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub reads: u64,
    pub failures: u64,
    pub wrong_answers: u64,
}

#[derive(Default)]
struct Counters {
    inserted: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
    reads: AtomicU64,
    failures: AtomicU64,
    wrong_answers: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LoadProgress {
        LoadProgress {
            inserted: self.inserted.load(Ordering::Relaxed),
            updated: self.updated.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            wrong_answers: self.wrong_answers.load(Ordering::Relaxed),
        }
    }
}

/// The running load.
pub struct LiveLoad {
    config: Arc<LoadConfig>,
    marker_prefix: String,
    started: Instant,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    workers: Vec<JoinHandle<WorkerRecord>>,
}

impl LiveLoad {
    /// Connects every worker (so that a proxy that is not there fails here),
    /// then starts them.
    pub async fn start(config: LoadConfig) -> Result<LiveLoad, LoadError> {
        if config.workers == 0 {
            return Err(LoadError::NoWorkers);
        }
        let mut conns = Vec::with_capacity(config.workers);
        for worker in 0..config.workers {
            let conn = config
                .proxy
                .connect()
                .await
                .map_err(|source| LoadError::Connect {
                    worker,
                    addr: config.proxy.addr(),
                    source,
                })?;
            conns.push(conn);
        }
        let config = Arc::new(config);
        let marker_prefix = marker_prefix(config.seed);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let workers = conns
            .into_iter()
            .enumerate()
            .map(|(id, conn)| {
                let worker = Worker::new(
                    id,
                    Arc::clone(&config),
                    &marker_prefix,
                    conn,
                    Arc::clone(&counters),
                );
                tokio::spawn(worker.run(stopped.clone()))
            })
            .collect();
        Ok(LiveLoad {
            config,
            marker_prefix,
            started: Instant::now(),
            stop,
            counters,
            workers,
        })
    }

    /// The counts so far.
    pub fn progress(&self) -> LoadProgress {
        self.counters.snapshot()
    }

    /// What every marker of this run starts with.
    pub fn marker_prefix(&self) -> &str {
        &self.marker_prefix
    }

    /// Waits until `enough` says the progress suffices, or `limit` passes;
    /// returns the last progress seen.
    pub async fn wait_for(
        &self,
        limit: Duration,
        enough: impl Fn(&LoadProgress) -> bool,
    ) -> LoadProgress {
        let deadline = Instant::now() + limit;
        loop {
            let progress = self.progress();
            if enough(&progress) || Instant::now() >= deadline {
                return progress;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets every worker finish its current statement, then collects what
    /// they did.
    pub async fn stop(self) -> LoadReport {
        // Workers that already ended dropped their receiver: nothing to tell them.
        let _ = self.stop.send(true);
        let mut records = Vec::with_capacity(self.workers.len());
        let mut failures = Vec::new();
        for (id, handle) in self.workers.into_iter().enumerate() {
            match handle.await {
                Ok(record) => records.push(record),
                Err(e) => failures.push(format!("worker {id} ended abnormally: {e}")),
            }
        }
        LoadReport::merge(
            &self.config,
            self.marker_prefix,
            self.started,
            records,
            failures,
        )
    }
}

/// Loads started by this process so far.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// `ll<seed>-<millis>-<run>-`: the start's milliseconds (base 36) and the
/// process's run count keep two runs with one seed apart, even across the
/// test processes sharing a sandbox. Only letters, digits and `-`, so that
/// it is its own `LIKE` pattern.
fn marker_prefix(seed: u64) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("ll{seed}-{}-{run}-", base36(millis))
}

fn base36(mut n: u128) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_prefixes_are_their_own_like_pattern() {
        let prefix = marker_prefix(42);
        assert!(prefix.starts_with("ll42-") && prefix.ends_with('-'));
        assert_ne!(prefix, marker_prefix(42), "two runs, two prefixes");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
        assert!(prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
