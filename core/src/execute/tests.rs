//! The executor's logic over scripted connections (no server): what each
//! data source is sent, in order, and what the client is told.

use std::sync::{Arc, Mutex};

use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::plan::{Affected, Target};

use super::control::on_every_source;
use super::fanout::{fan_out, FanoutWrite};
use super::{Connections, StatementConn, WriteCounts, WriteDone};
use crate::error::{ConnError, DbError, ErrorKind, ProxyError};
use crate::metrics::Metrics;

/// Every statement sent, as `ds: sql`.
type Log = Arc<Mutex<Vec<String>>>;

/// A connection that answers every statement with `done`, except those
/// starting with `fails` (a server error), and counts 2 rows for a move
/// guard's query when `moves` is set.
struct Scripted {
    ds: String,
    log: Log,
    fails: Option<&'static str>,
    moves: bool,
    done: WriteDone,
    sent: Option<String>,
    broken: bool,
}

impl Scripted {
    fn answer(&mut self, sql: &[u8]) -> Result<WriteDone, ConnError> {
        let sql = String::from_utf8_lossy(sql).into_owned();
        lock(&self.log).push(format!("{}: {sql}", self.ds));
        if self.fails.is_some_and(|f| sql.starts_with(f)) {
            return Err(ConnError::Server {
                ds: self.ds.clone(),
                err: DbError {
                    code: 1062,
                    sqlstate: *b"23000",
                    message: format!("Duplicate entry on {}", self.ds),
                },
            });
        }
        Ok(self.done)
    }
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, Vec<String>> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatementConn for Scripted {
    type Done = WriteDone;

    fn data_source(&self) -> &str {
        &self.ds
    }

    async fn execute(&mut self, sql: &[u8]) -> Result<WriteDone, ConnError> {
        self.answer(sql)
    }

    async fn query_rows(&mut self, sql: &[u8]) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        self.answer(sql)?;
        let count = if self.moves { "2" } else { "0" };
        Ok(vec![vec![Some(count.to_owned())]])
    }

    async fn send(&mut self, sql: &[u8]) -> Result<(), ConnError> {
        self.sent = Some(String::from_utf8_lossy(sql).into_owned());
        Ok(())
    }

    async fn read_done(&mut self) -> Result<WriteDone, ConnError> {
        let sql = self.sent.take().unwrap_or_default();
        self.answer(sql.as_bytes())
    }

    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}

/// A session whose data sources answer as [`Scripted`] does.
struct Session {
    log: Log,
    fails: Option<(&'static str, &'static str)>,
    moves: bool,
    done: WriteDone,
    released: Vec<String>,
}

impl Session {
    fn new() -> Self {
        Session {
            log: Log::default(),
            fails: None,
            moves: false,
            done: WriteDone {
                affected_rows: 1,
                ..WriteDone::default()
            },
            released: Vec::new(),
        }
    }

    fn sent(&self) -> Vec<String> {
        lock(&self.log).clone()
    }
}

impl Connections for Session {
    type Conn = Scripted;
    type Error = ProxyError;

    async fn checkout(&mut self, data_source: &str) -> Result<Scripted, ProxyError> {
        Ok(Scripted {
            ds: data_source.to_owned(),
            log: self.log.clone(),
            fails: self
                .fails
                .filter(|(ds, _)| *ds == data_source)
                .map(|(_, f)| f),
            moves: self.moves,
            done: self.done,
            sent: None,
            broken: false,
        })
    }

    fn release(&mut self, conn: Scripted) {
        self.released.push(conn.ds);
    }
}

fn targets(nodes: &[(&str, &str)]) -> Vec<Target<'static>> {
    nodes
        .iter()
        .map(|(ds, sql)| Target {
            data_source: (*ds).into(),
            sql: (*sql).into(),
        })
        .collect()
}

fn write(own_transaction: bool) -> FanoutWrite<'static> {
    FanoutWrite {
        affected: Affected::Sum,
        transactional: true,
        own_transaction,
        generated_id: None,
        insert_rows: &[],
        guarded_columns: &[],
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map(|rt| rt.block_on(f))
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

#[test]
fn a_write_under_autocommit_commits_on_every_node_and_adds_up() {
    let mut session = Session::new();
    let nodes = targets(&[
        ("ds0", "DELETE FROM t_0"),
        ("ds1", "DELETE FROM t_1"),
        ("ds0", "DELETE FROM t_2"),
    ]);
    let done = run(fan_out(&mut session, &MARIADB, &nodes, write(true)));
    assert_eq!(done.map(|d| d.affected_rows).ok(), Some(3));
    assert_eq!(
        session.sent(),
        [
            "ds0: START TRANSACTION",
            "ds0: DELETE FROM t_0",
            "ds1: START TRANSACTION",
            "ds1: DELETE FROM t_1",
            "ds0: DELETE FROM t_2",
            "ds0: COMMIT",
            "ds1: COMMIT",
        ]
    );
    assert_eq!(session.released, ["ds0", "ds1"]);
}

#[test]
fn a_failed_node_rolls_every_node_back_and_says_where() {
    let mut session = Session::new();
    session.fails = Some(("ds1", "INSERT"));
    let nodes = targets(&[
        ("ds0", "INSERT INTO t_0 VALUES (1)"),
        ("ds1", "INSERT INTO t_1 VALUES (2)"),
    ]);
    let err = run(fan_out(&mut session, &MARIADB, &nodes, write(true)))
        .err()
        .unwrap_or_else(|| panic!("the write succeeded"));
    assert_eq!(
        err.kind,
        ErrorKind::Server {
            code: 1062,
            sqlstate: *b"23000"
        }
    );
    assert!(
        err.message
            .ends_with("(on data source ds1; nothing was applied)"),
        "{}",
        err.message
    );
    assert_eq!(session.sent()[4..], ["ds0: ROLLBACK", "ds1: ROLLBACK"]);
}

#[test]
fn inside_the_clients_transaction_a_failed_write_goes_back_to_its_savepoint() {
    let mut session = Session::new();
    session.fails = Some(("ds1", "UPDATE"));
    let nodes = targets(&[
        ("ds0", "UPDATE t_0 SET a = 1"),
        ("ds1", "UPDATE t_1 SET a = 1"),
    ]);
    let err = run(fan_out(&mut session, &MARIADB, &nodes, write(false))).err();
    assert!(err.is_some());
    assert_eq!(
        session.sent(),
        [
            "ds0: SAVEPOINT `__shardgate_statement`",
            "ds0: UPDATE t_0 SET a = 1",
            "ds1: SAVEPOINT `__shardgate_statement`",
            "ds1: UPDATE t_1 SET a = 1",
            "ds0: ROLLBACK TO SAVEPOINT `__shardgate_statement`",
            "ds1: ROLLBACK TO SAVEPOINT `__shardgate_statement`",
        ]
    );
}

#[test]
fn ddl_is_not_undone_and_the_error_lists_the_nodes_it_changed() {
    let mut session = Session::new();
    session.fails = Some(("ds1", "ALTER"));
    let nodes = targets(&[
        ("ds0", "ALTER TABLE t_0 ADD c INT"),
        ("ds1", "ALTER TABLE t_1 ADD c INT"),
    ]);
    let ddl = FanoutWrite {
        affected: Affected::OneCopy,
        transactional: false,
        ..write(true)
    };
    let err = run(fan_out(&mut session, &MARIADB, &nodes, ddl))
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(
        err.ends_with("(on data source ds1; already applied on: ds0)"),
        "{err}"
    );
    assert_eq!(session.sent().len(), 2);
}

#[test]
fn an_update_that_would_move_rows_is_refused_before_it_runs() {
    let mut session = Session::new();
    session.moves = true;
    let nodes = targets(&[("ds0", "UPDATE t_0 SET user_id = 9 WHERE a = 1")]);
    let columns = ["user_id".to_owned()];
    let guarded = FanoutWrite {
        guarded_columns: &columns,
        ..write(true)
    };
    let err = run(fan_out(&mut session, &MARIADB, &nodes, guarded))
        .err()
        .unwrap_or_else(|| panic!("the update ran"));
    assert_eq!(err.kind, ErrorKind::NotSupported);
    assert!(err.message.contains("of 2 row(s)"), "{}", err.message);
    let sent = session.sent();
    assert!(sent[1].starts_with("ds0: SELECT COUNT(*)"), "{sent:?}");
    assert_eq!(sent[2..], ["ds0: ROLLBACK"]);
}

#[test]
fn counts_add_up_and_the_last_rows_node_gives_the_insert_id() {
    let mut session = Session::new();
    session.done = WriteDone {
        affected_rows: 2,
        last_insert_id: 40,
        warnings: 1,
        counts: Some(WriteCounts::Insert {
            records: 2,
            duplicates: 0,
            warnings: 1,
        }),
    };
    let nodes = targets(&[
        ("ds0", "INSERT INTO t_0 VALUES (1), (4)"),
        ("ds1", "INSERT INTO t_1 VALUES (2), (3)"),
    ]);
    let rows: [std::sync::Arc<[u32]>; 2] = [[0, 3].into(), [1, 2].into()];
    let insert = FanoutWrite {
        insert_rows: &rows,
        ..write(true)
    };
    let done = run(fan_out(&mut session, &MARIADB, &nodes, insert));
    assert_eq!(
        done.ok(),
        Some(WriteDone {
            affected_rows: 4,
            last_insert_id: 40,
            warnings: 2,
            counts: Some(WriteCounts::Insert {
                records: 4,
                duplicates: 0,
                warnings: 2,
            }),
        })
    );
}

#[test]
fn control_statements_reach_every_source_and_a_partial_commit_is_counted() {
    let session = Session::new();
    let metrics = Metrics::new();
    let mut conns: Vec<Scripted> = ["ds0", "ds1", "ds2"]
        .iter()
        .map(|ds| Scripted {
            ds: (*ds).into(),
            log: session.log.clone(),
            fails: (*ds == "ds1").then_some("COMMIT"),
            moves: false,
            done: WriteDone::default(),
            sent: None,
            broken: false,
        })
        .collect();
    let err = run(on_every_source(&mut conns, b"COMMIT", &metrics))
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(err.ends_with("(on data source ds1; done on: ds0)"), "{err}");
    assert_eq!(
        session.sent(),
        ["ds0: COMMIT", "ds1: COMMIT", "ds2: COMMIT"]
    );
    assert_eq!(metrics.partial_commits(), 1);
    // A server's error was read whole: every connection is reusable.
    assert!(conns.iter().all(|c| !c.broken));

    let rollback = run(on_every_source(&mut conns, b"ROLLBACK", &metrics));
    assert!(rollback.is_ok());
    assert_eq!(metrics.partial_commits(), 1);
}
