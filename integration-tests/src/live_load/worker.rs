//! One worker of the live load: its loop of inserts, updates, deletes and
//! reads on one connection, the record of what it wrote, and how a failed
//! statement is classified (refused: nothing changed; ambiguous: unknown).

use super::report::{compare_read, load_row};
use super::{Counters, LoadConfig, LoadRow, WriteOp, WriteOutcome, WriteTiming};
use crate::db_error;
use crate::sharding::{lit, Lcg};
use futures_util::future::{BoxFuture, FutureExt};
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnection, MySqlQueryResult, MySqlRow};
use sqlx::query::Query;
use sqlx::Executor;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// ER_UNKNOWN_ERROR: what ShardGate answers when it lost a backend mid
/// statement, so the write may or may not have happened.
const ER_UNKNOWN_ERROR: u16 = 1105;

/// A worker keeps inserting until it has this many live rows.
const MIN_LIVE_ROWS: usize = 8;

/// Failure messages kept per worker (all are counted).
const FAILURES_KEPT: usize = 100;

/// What one worker did.
#[derive(Default)]
pub(super) struct WorkerRecord {
    pub(super) rows: HashMap<i64, LoadRow>,
    pub(super) deleted: BTreeSet<i64>,
    pub(super) uncertain_keys: BTreeSet<i64>,
    pub(super) uncertain_inserts: BTreeSet<String>,
    pub(super) wrong_answers: Vec<String>,
    pub(super) failures: Vec<String>,
    pub(super) failure_count: u64,
    pub(super) refused: u64,
    pub(super) reconnects: u64,
    pub(super) text_statements: u64,
    pub(super) prepared_statements: u64,
    pub(super) inserted: u64,
    pub(super) updated: u64,
    pub(super) deleted_count: u64,
    pub(super) reads: u64,
    pub(super) writes: Vec<WriteTiming>,
}

/// A failed statement, classified.
#[derive(Debug)]
struct Failed {
    outcome: WriteOutcome,
    /// The connection is unusable and must be replaced.
    lost: bool,
    message: String,
}

/// Classifies a statement's error: an error reply refused it, except the
/// proxy's 1105 (it lost its backend after sending); anything else lost the
/// connection with the statement possibly applied.
fn classify(err: &sqlx::Error) -> Failed {
    match db_error(err) {
        Some((code, _, message)) if code != ER_UNKNOWN_ERROR => Failed {
            outcome: WriteOutcome::Refused,
            lost: false,
            message: format!("ERROR {code}: {message}"),
        },
        Some((code, _, message)) => Failed {
            outcome: WriteOutcome::Ambiguous,
            lost: false,
            message: format!("ERROR {code}: {message}"),
        },
        None => Failed {
            outcome: WriteOutcome::Ambiguous,
            lost: true,
            message: err.to_string(),
        },
    }
}

/// A bound parameter.
enum Bind {
    Int(i64),
    Text(Option<String>),
}

impl Bind {
    fn literal(&self) -> String {
        match self {
            Bind::Int(v) => v.to_string(),
            Bind::Text(Some(s)) => lit(s),
            Bind::Text(None) => "NULL".into(),
        }
    }
}

/// A statement with `?` placeholders: sent prepared with binds, or as text
/// with the values spelled out.
struct Statement {
    sql: String,
    binds: Vec<Bind>,
    prepared: bool,
}

impl Statement {
    /// The text form: each `?` replaced by its value's literal (the
    /// statements here have no `?` inside literals).
    fn text(&self) -> String {
        let mut out = String::with_capacity(self.sql.len() + 32);
        let mut binds = self.binds.iter().peekable();
        for c in self.sql.chars() {
            match (c, binds.next_if(|_| c == '?')) {
                (_, Some(bind)) => out.push_str(&bind.literal()),
                (c, None) => out.push(c),
            }
        }
        out
    }

    fn describe(&self) -> String {
        if self.prepared {
            format!("[prepared] {}", self.text())
        } else {
            format!("[text] {}", self.text())
        }
    }
}

enum Op {
    Insert,
    Update,
    Delete,
    Read,
}

pub(super) struct Worker {
    id: usize,
    config: Arc<LoadConfig>,
    marker_prefix: String,
    rng: Lcg,
    conn: Option<MySqlConnection>,
    /// Keys with a row, for picking one at random.
    live: Vec<i64>,
    next_insert: u64,
    next_value: u64,
    counters: Arc<Counters>,
    record: WorkerRecord,
}

impl Worker {
    pub(super) fn new(
        id: usize,
        config: Arc<LoadConfig>,
        marker_prefix: &str,
        conn: MySqlConnection,
        counters: Arc<Counters>,
    ) -> Worker {
        let seed = config
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(id as u64 + 1);
        Worker {
            id,
            config,
            marker_prefix: marker_prefix.to_string(),
            rng: Lcg::new(seed),
            conn: Some(conn),
            live: Vec::new(),
            next_insert: 0,
            next_value: 0,
            counters,
            record: WorkerRecord::default(),
        }
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> WorkerRecord {
        while !told_to_stop(&stop) {
            if self.conn.is_none() && !self.reconnect().await {
                pause(&mut stop, Duration::from_millis(200)).await;
                continue;
            }
            match self.choose() {
                Op::Insert => self.insert().await,
                Op::Update => self.update().await,
                Op::Delete => self.delete().await,
                Op::Read => self.read().await,
            }
            if let Some(pace) = self.config.pace {
                pause(&mut stop, pace).await;
            }
        }
        self.record
    }

    fn choose(&mut self) -> Op {
        if self.live.len() < MIN_LIVE_ROWS {
            return Op::Insert;
        }
        match self.rng.below(100) {
            0..30 => Op::Insert,
            30..60 => Op::Update,
            60..72 => Op::Delete,
            _ => Op::Read,
        }
    }

    async fn reconnect(&mut self) -> bool {
        match tokio::time::timeout(self.config.statement_timeout, self.config.proxy.connect()).await
        {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                self.record.reconnects += 1;
                true
            }
            Ok(Err(e)) => {
                self.failure(format!("reconnect: {e}"));
                false
            }
            Err(_) => {
                self.failure(format!(
                    "reconnect: no answer within {:?}",
                    self.config.statement_timeout
                ));
                false
            }
        }
    }

    fn failure(&mut self, message: String) {
        Counters::add(&self.counters.failures);
        self.record.failure_count += 1;
        if self.record.failures.len() < FAILURES_KEPT {
            self.record
                .failures
                .push(format!("worker {}: {message}", self.id));
        }
    }

    fn wrong(&mut self, message: String) {
        Counters::add(&self.counters.wrong_answers);
        self.record
            .wrong_answers
            .push(format!("worker {}: {message}", self.id));
    }

    fn statement(&mut self, sql: String, binds: Vec<Bind>) -> Statement {
        let prepared = self.rng.below(2) == 0;
        if prepared {
            self.record.prepared_statements += 1;
        } else {
            self.record.text_statements += 1;
        }
        Statement {
            sql,
            binds,
            prepared,
        }
    }

    fn new_value(&mut self, old: Option<&str>) -> Option<String> {
        self.next_value += 1;
        // NULL now and then (never NULL twice, so that an update always
        // changes the row), and a quote to exercise literal escaping.
        match self.rng.below(8) {
            0 if old.is_some() => None,
            1 => Some(format!("o'v{}-{}", self.id, self.next_value)),
            _ => Some(format!("v{}-{}", self.id, self.next_value)),
        }
    }

    fn pick_live(&mut self) -> Option<i64> {
        if self.live.is_empty() {
            return None;
        }
        let at = self.rng.below(self.live.len() as u64) as usize;
        Some(self.live[at])
    }

    fn remove_live(&mut self, key: i64) {
        if let Some(at) = self.live.iter().position(|k| *k == key) {
            self.live.swap_remove(at);
        }
    }

    /// The key leaves the exact record: its row's state is unknown.
    fn make_uncertain(&mut self, key: i64) {
        self.remove_live(key);
        self.record.rows.remove(&key);
        self.record.deleted.remove(&key);
        self.record.uncertain_keys.insert(key);
    }

    /// Runs a write, timing it; a lost connection is dropped.
    async fn execute(
        &mut self,
        statement: &Statement,
        op: WriteOp,
        key: Option<i64>,
    ) -> Result<MySqlQueryResult, Failed> {
        let started = Instant::now();
        let result = self.send(statement).await;
        let latency = started.elapsed();
        let outcome = match &result {
            Ok(_) => WriteOutcome::Done,
            Err(failed) => failed.outcome,
        };
        self.record.writes.push(WriteTiming {
            started,
            latency,
            op,
            worker: self.id,
            key,
            outcome,
        });
        result
    }

    async fn send(&mut self, statement: &Statement) -> Result<MySqlQueryResult, Failed> {
        let timeout = self.config.statement_timeout;
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let result = if statement.prepared {
            guarded(timeout, prepared(statement).execute(conn).boxed()).await
        } else {
            let text = statement.text();
            guarded(timeout, conn.execute(text.as_str())).await
        };
        self.forget_lost_connection(result)
    }

    async fn fetch(&mut self, statement: &Statement) -> Result<Vec<MySqlRow>, Failed> {
        let timeout = self.config.statement_timeout;
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let result = if statement.prepared {
            guarded(timeout, prepared(statement).fetch_all(conn).boxed()).await
        } else {
            let text = statement.text();
            guarded(timeout, conn.fetch_all(text.as_str())).await
        };
        self.forget_lost_connection(result)
    }

    fn forget_lost_connection<T>(&mut self, result: Result<T, Failed>) -> Result<T, Failed> {
        if matches!(&result, Err(failed) if failed.lost) {
            self.conn = None;
        }
        result
    }

    fn failed(&mut self, statement: &Statement, failed: &Failed) {
        if failed.outcome == WriteOutcome::Refused {
            self.record.refused += 1;
        }
        self.failure(format!(
            "{} -> {:?}: {}",
            statement.describe(),
            failed.outcome,
            failed.message
        ));
    }

    async fn insert(&mut self) {
        self.next_insert += 1;
        let marker = format!("{}w{}-i{}", self.marker_prefix, self.id, self.next_insert);
        let value = self.new_value(None);
        let sql = format!(
            "INSERT INTO `{}` (`{}`, `{}`) VALUES (?, ?)",
            self.config.table, self.config.marker_column, self.config.value_column
        );
        let statement = self.statement(
            sql,
            vec![Bind::Text(Some(marker.clone())), Bind::Text(value.clone())],
        );
        let done = match self.execute(&statement, WriteOp::Insert, None).await {
            Ok(done) => done,
            Err(failed) => {
                self.failed(&statement, &failed);
                if failed.outcome == WriteOutcome::Ambiguous {
                    self.record.uncertain_inserts.insert(marker);
                }
                return;
            }
        };
        let Ok(key) = i64::try_from(done.last_insert_id()) else {
            self.wrong(format!(
                "{}: generated key {} does not fit BIGINT",
                statement.describe(),
                done.last_insert_id()
            ));
            self.record.uncertain_inserts.insert(marker);
            return;
        };
        if let Some(timing) = self.record.writes.last_mut() {
            timing.key = Some(key);
        }
        if key == 0 || done.rows_affected() != 1 {
            self.wrong(format!(
                "{}: {} row(s) affected, generated key {key} (want 1 row and a key)",
                statement.describe(),
                done.rows_affected()
            ));
            self.record.uncertain_inserts.insert(marker);
            return;
        }
        if self.record.rows.contains_key(&key)
            || self.record.deleted.contains(&key)
            || self.record.uncertain_keys.contains(&key)
        {
            self.wrong(format!(
                "{}: generated key {key} was generated before",
                statement.describe()
            ));
            self.make_uncertain(key);
            self.record.uncertain_inserts.insert(marker);
            return;
        }
        self.record.rows.insert(key, LoadRow { marker, value });
        self.live.push(key);
        self.record.inserted += 1;
        Counters::add(&self.counters.inserted);
    }

    async fn update(&mut self) {
        let Some(key) = self.pick_live() else {
            return;
        };
        let Some(old) = self.record.rows.get(&key).cloned() else {
            return;
        };
        let value = self.new_value(old.value.as_deref());
        let sql = format!(
            "UPDATE `{}` SET `{}` = ? WHERE `{}` = ?",
            self.config.table, self.config.value_column, self.config.key_column
        );
        let statement = self.statement(sql, vec![Bind::Text(value.clone()), Bind::Int(key)]);
        match self.execute(&statement, WriteOp::Update, Some(key)).await {
            Ok(done) => {
                if done.rows_affected() != 1 {
                    self.wrong(format!(
                        "{}: {} row(s) affected, want 1 (the row holds {old})",
                        statement.describe(),
                        done.rows_affected()
                    ));
                }
                self.record.rows.insert(
                    key,
                    LoadRow {
                        marker: old.marker,
                        value,
                    },
                );
                self.record.updated += 1;
                Counters::add(&self.counters.updated);
            }
            Err(failed) => {
                self.failed(&statement, &failed);
                if failed.outcome == WriteOutcome::Ambiguous {
                    self.make_uncertain(key);
                }
            }
        }
    }

    async fn delete(&mut self) {
        let Some(key) = self.pick_live() else {
            return;
        };
        let sql = format!(
            "DELETE FROM `{}` WHERE `{}` = ?",
            self.config.table, self.config.key_column
        );
        let statement = self.statement(sql, vec![Bind::Int(key)]);
        match self.execute(&statement, WriteOp::Delete, Some(key)).await {
            Ok(done) => {
                if done.rows_affected() != 1 {
                    self.wrong(format!(
                        "{}: {} row(s) affected, want 1",
                        statement.describe(),
                        done.rows_affected()
                    ));
                }
                self.remove_live(key);
                self.record.rows.remove(&key);
                self.record.deleted.insert(key);
                self.record.deleted_count += 1;
                Counters::add(&self.counters.deleted);
            }
            Err(failed) => {
                self.failed(&statement, &failed);
                if failed.outcome == WriteOutcome::Ambiguous {
                    self.make_uncertain(key);
                }
            }
        }
    }

    /// Reads one of the worker's rows by key (now and then a deleted one,
    /// which must stay gone) and compares it with the last write.
    async fn read(&mut self) {
        let key = if !self.record.deleted.is_empty() && self.rng.below(5) == 0 {
            let n = self.rng.below(self.record.deleted.len() as u64) as usize;
            self.record.deleted.iter().nth(n).copied()
        } else {
            self.pick_live()
        };
        let Some(key) = key else {
            return;
        };
        let sql = format!(
            "SELECT `{}`, `{}` FROM `{}` WHERE `{}` = ?",
            self.config.marker_column,
            self.config.value_column,
            self.config.table,
            self.config.key_column
        );
        let statement = self.statement(sql, vec![Bind::Int(key)]);
        let rows = match self.fetch(&statement).await {
            Ok(rows) => rows,
            Err(failed) => {
                self.failed(&statement, &failed);
                return;
            }
        };
        self.record.reads += 1;
        Counters::add(&self.counters.reads);
        let got: Result<Vec<LoadRow>, String> = rows
            .iter()
            .map(|row| load_row(row, &self.config.marker_column, &self.config.value_column))
            .collect();
        match got {
            Ok(got) => {
                let expected = self.record.rows.get(&key).cloned();
                if let Some(wrong) = compare_read(key, expected.as_ref(), &got) {
                    self.wrong(format!("{}: {wrong}", statement.describe()));
                }
            }
            Err(e) => self.failure(format!("{}: {e}", statement.describe())),
        }
    }
}

/// Nothing was sent: the worker has no connection.
fn not_connected() -> Failed {
    Failed {
        outcome: WriteOutcome::Refused,
        lost: true,
        message: "not connected".into(),
    }
}

/// The statement `statement` names, to be sent prepared with its binds.
fn prepared(statement: &Statement) -> Query<'_, MySql, MySqlArguments> {
    statement
        .binds
        .iter()
        .fold(sqlx::query(&statement.sql), |query, bind| match bind {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(s) => query.bind(s.clone()),
        })
}

/// Runs a statement with a time limit and classifies its failure.
async fn guarded<T>(
    timeout: Duration,
    run: BoxFuture<'_, Result<T, sqlx::Error>>,
) -> Result<T, Failed> {
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(Failed {
            outcome: WriteOutcome::Ambiguous,
            lost: true,
            message: format!("no answer within {timeout:?}"),
        }),
    }
}

/// True once the load is stopped, or dropped without `stop` (its sender gone).
fn told_to_stop(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps `how_long`, or less when the load is told to stop.
async fn pause(stop: &mut watch::Receiver<bool>, how_long: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(how_long) => {}
        _ = stop.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Error replies (refused) are covered against the sandbox by
    // tests/e2e/live_load.rs: sqlx's database errors cannot be built here.
    #[test]
    fn a_lost_connection_leaves_the_write_ambiguous() {
        let lost = classify(&sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(lost.outcome, WriteOutcome::Ambiguous);
        assert!(lost.lost);
        let closed = classify(&sqlx::Error::PoolClosed);
        assert_eq!(closed.outcome, WriteOutcome::Ambiguous);
    }

    #[test]
    fn text_statements_spell_out_their_binds() {
        let statement = Statement {
            sql: "UPDATE `t` SET `v` = ? WHERE `k` = ?".into(),
            binds: vec![Bind::Text(Some("o'v1".into())), Bind::Int(-5)],
            prepared: false,
        };
        assert_eq!(
            statement.text(),
            "UPDATE `t` SET `v` = 'o\\'v1' WHERE `k` = -5"
        );
        let null = Statement {
            sql: "INSERT INTO `t` (`m`, `v`) VALUES (?, ?)".into(),
            binds: vec![Bind::Text(Some("m".into())), Bind::Text(None)],
            prepared: true,
        };
        assert_eq!(null.text(), "INSERT INTO `t` (`m`, `v`) VALUES ('m', NULL)");
        assert!(null.describe().starts_with("[prepared]"));
    }
}
