//! The merge's execution over scripted nodes (no server): rows merged from
//! the nodes as planned, and each connection left fit for reuse exactly
//! when its reply was read to its end.

use std::collections::VecDeque;

use shardgate_merge::{ColumnMeta, MergeError, RowSink, TypeClass, Value};
use shardgate_rules::{ColumnKinds, Config, ShardingRules, SnowflakeGenerator, SystemClock};
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::analyze::{analyze, Analysis};
use shardgate_sql::shard::plan::{plan, PlanContext, Route};

use super::merge::{merge_started, MergeFailure, MergeShape, MergedResult, RowConn};
use super::{StatementConn, WriteDone};
use crate::error::{ConnError, DbError};

/// What a scripted node's reply holds next.
pub(super) enum Reply {
    Row(i64),
    /// A row of these values, as they are.
    Cells(Vec<Value>),
    /// The connection drops.
    Lost,
}

pub(super) struct Node {
    pub(super) ds: &'static str,
    /// Columns the plan derives (sort keys), each row's value's bytes.
    derived: usize,
    pub(super) columns: Result<Vec<ColumnMeta>, DbError>,
    pub(super) rows: VecDeque<Reply>,
    pub(super) in_transaction: bool,
    pub(super) broken: bool,
    /// The statements it ran that return no rows.
    pub(super) executed: Vec<String>,
}

impl Node {
    pub(super) fn new(ds: &'static str, rows: &[i64]) -> Self {
        Node {
            ds,
            derived: 0,
            columns: Ok(vec![ColumnMeta::new(
                "user_id",
                TypeClass::Int { width: 8 },
            )]),
            rows: rows.iter().map(|&v| Reply::Row(v)).collect(),
            in_transaction: false,
            broken: true,
            executed: Vec::new(),
        }
    }

    fn next(&mut self) -> Result<Option<Vec<Value>>, ConnError> {
        match self.rows.pop_front() {
            Some(Reply::Row(v)) => {
                let mut row = vec![Value::Int(v)];
                row.extend((0..self.derived).map(|_| Value::Bytes(v.to_be_bytes().to_vec())));
                Ok(Some(row))
            }
            Some(Reply::Cells(row)) => Ok(Some(row)),
            Some(Reply::Lost) => Err(ConnError::lost(self.ds, "connection reset")),
            None => Ok(None),
        }
    }
}

impl StatementConn for Node {
    type Done = WriteDone;

    fn data_source(&self) -> &str {
        self.ds
    }

    async fn execute(&mut self, sql: &[u8]) -> Result<WriteDone, ConnError> {
        self.executed
            .push(String::from_utf8_lossy(sql).into_owned());
        Ok(WriteDone::default())
    }

    async fn query_rows(&mut self, _: &[u8]) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        Ok(Vec::new())
    }

    async fn send(&mut self, _: &[u8]) -> Result<(), ConnError> {
        Ok(())
    }

    async fn read_done(&mut self) -> Result<WriteDone, ConnError> {
        Ok(WriteDone::default())
    }

    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}

impl RowConn for Node {
    type Column = ColumnMeta;

    async fn start_query(&mut self, _: &[u8]) -> Result<(), ConnError> {
        Ok(())
    }

    async fn read_columns(&mut self) -> Result<Vec<ColumnMeta>, ConnError> {
        let mut columns = self.columns.clone().map_err(|err| ConnError::Server {
            ds: self.ds.into(),
            err,
        })?;
        for n in 0..self.derived {
            columns.push(ColumnMeta::new(&format!("__sg_{n}"), TypeClass::Bytes));
        }
        Ok(columns)
    }

    async fn next_row(&mut self, _: &[ColumnMeta]) -> Result<Option<Vec<Value>>, ConnError> {
        self.next()
    }

    async fn skip_row(&mut self) -> Result<bool, ConnError> {
        Ok(self.next()?.is_some())
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn column_meta(column: &ColumnMeta) -> ColumnMeta {
        column.clone()
    }
}

/// The client's result: its header's column names and its rows.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) shown: Vec<String>,
    /// The first value of each row, when an integer.
    pub(super) rows: Vec<i64>,
    pub(super) cells: Vec<Vec<Value>>,
}

impl MergedResult<ColumnMeta> for Collected {
    fn begin(&mut self, shown: &[ColumnMeta], _visible: &[ColumnMeta]) {
        self.shown = shown.iter().map(|c| c.name.clone()).collect();
    }
}

impl RowSink for Collected {
    async fn push_row(&mut self, row: &[Value]) -> Result<(), MergeError> {
        if let Some(Value::Int(v)) = row.first() {
            self.rows.push(*v);
        }
        self.cells.push(row.to_vec());
        Ok(())
    }
}

/// Merges `nodes` for `sql`, a SELECT on `users` over several nodes.
fn merged(sql: &str, nodes: &mut [Node]) -> (Collected, Result<(), MergeFailure>) {
    let config = Config::from_toml_str(include_str!("../../../examples/wework.toml"))
        .unwrap_or_else(|e| panic!("example config: {e}"));
    let rules = ShardingRules::new(&config).unwrap_or_else(|e| panic!("rules: {e}"));
    let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
    let ctx = PlanContext {
        dialect: &MARIADB,
        rules: &rules,
        default_data_source: "ds0",
        keys: &keys,
        kinds: ColumnKinds::none(),
    };
    let Ok(Analysis::Sharded(st)) = analyze(sql, &MARIADB, &rules, "wework") else {
        panic!("{sql} is not sharded");
    };
    let Ok(Route::Merge {
        scatter,
        offset,
        limit,
        having,
        ..
    }) = plan(&st, sql, &[], true, &ctx)
    else {
        panic!("{sql} does not merge");
    };
    let shape = MergeShape {
        scatter: &scatter,
        offset,
        limit,
        having: having.as_ref(),
    };
    for node in nodes.iter_mut() {
        node.derived = scatter.derived.len();
    }
    let mut result = Collected::default();
    let done = tokio::runtime::Builder::new_current_thread()
        .build()
        .map(|rt| rt.block_on(merge_started(nodes, None, shape, &mut result)))
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    (result, done.map(drop))
}

#[test]
fn rows_merge_in_order_and_only_unread_replies_close_their_connection() {
    let mut nodes = [
        Node::new("ds0", &[1, 4, 7]),
        Node::new("ds1", &[2, 3, 9, 10]),
    ];
    nodes[1].in_transaction = true;
    let (result, done) = merged(
        "SELECT user_id FROM users ORDER BY user_id LIMIT 1, 3",
        &mut nodes,
    );
    assert!(done.is_ok());
    assert_eq!(result.shown, ["user_id"]);
    assert_eq!(result.rows, [2, 3, 4]);
    // ds0's reply was left unread (closed); ds1's, in the client's
    // transaction, was read to its end and the connection kept.
    assert!(nodes[0].broken);
    assert!(!nodes[1].broken);
    assert!(nodes[1].rows.is_empty());
}

#[test]
fn a_merge_read_to_its_end_keeps_every_connection() {
    let mut nodes = [Node::new("ds0", &[1, 5]), Node::new("ds1", &[3])];
    let (result, done) = merged("SELECT user_id FROM users ORDER BY user_id", &mut nodes);
    assert!(done.is_ok());
    assert_eq!(result.rows, [1, 3, 5]);
    assert!(nodes.iter().all(|n| !n.broken));
}

#[test]
fn a_nodes_error_before_the_rows_is_passed_on_and_no_header_is_sent() {
    let mut nodes = [Node::new("ds0", &[1]), Node::new("ds1", &[2])];
    nodes[1].columns = Err(DbError {
        code: 1146,
        sqlstate: *b"42S02",
        message: "Table 'ds1.users_1' doesn't exist".into(),
    });
    let (result, done) = merged("SELECT user_id FROM users ORDER BY user_id", &mut nodes);
    assert!(matches!(
        done,
        Err(MergeFailure::Node(ConnError::Server { .. }))
    ));
    assert!(result.shown.is_empty());
    assert!(nodes.iter().all(|n| n.broken));
}

#[test]
fn a_connection_lost_midway_is_named_and_closed() {
    let mut nodes = [Node::new("ds0", &[1, 2]), Node::new("ds1", &[3])];
    nodes[1].rows.push_front(Reply::Lost);
    let (_, done) = merged("SELECT user_id FROM users ORDER BY user_id", &mut nodes);
    match done {
        Err(MergeFailure::Lost { data_source, .. }) => assert_eq!(data_source, "ds1"),
        other => panic!("{other:?}"),
    }
    assert!(nodes[1].broken);
}
