//! A SELECT over several nodes whose rows merge as they stream in
//! (sorted, grouped, aggregated, limited): the nodes' queries started by
//! the front end, their column definitions read here, the merge planned and
//! run from the nodes' connections into the client's result, and each
//! connection left fit for reuse or not.

use std::future::Future;

use shardgate_merge::{merge, ColumnMeta, MergeError, MergeStats, RowSink, RowSource, Value};
use shardgate_sql::shard::having::Cond as HavingCond;
use shardgate_sql::shard::node_sql::NodeSql;
use shardgate_sql::shard::scatter::{merge_plan, ScatterSelect};
use tracing::debug;

use super::StatementConn;
use crate::backend::pool::PooledConn;
use crate::backend::Connection;
use crate::error::{ConnError, ErrorKind, ProxyError};

/// A connection a merge reads a query's rows from.
pub trait RowConn: StatementConn {
    /// The protocol's definition of a result column.
    type Column: Clone + Send + Sync;

    /// Sends a query whose reply is read later; until it is read to its
    /// end the connection is marked broken (an early return closes it).
    fn start_query(&mut self, sql: &[u8]) -> impl Future<Output = Result<(), ConnError>> + Send;

    /// [`start_query`](RowConn::start_query) of a node's statement. By
    /// default built whole; a connection may write it out in pieces
    /// instead (a long statement spliced for its node is then never
    /// copied whole).
    fn start_node_query(
        &mut self,
        sql: &NodeSql<'_>,
    ) -> impl Future<Output = Result<(), ConnError>> + Send {
        let bytes = sql.to_bytes();
        async move { self.start_query(&bytes).await }
    }

    /// The column definitions of the reply (a node's error reply as
    /// [`ConnError::Server`]).
    fn read_columns(&mut self)
        -> impl Future<Output = Result<Vec<Self::Column>, ConnError>> + Send;

    /// The reply's next row, decoded; None after its last. A node's error
    /// reply ends the rows as [`ConnError::Server`].
    fn next_row(
        &mut self,
        columns: &[Self::Column],
    ) -> impl Future<Output = Result<Option<Vec<Value>>, ConnError>> + Send;

    /// Reads past the next row without decoding it; false after the last.
    fn skip_row(&mut self) -> impl Future<Output = Result<bool, ConnError>> + Send;

    /// Whether the connection is inside the client's transaction (it must
    /// survive a merge that ends early).
    fn in_transaction(&self) -> bool;

    /// What the merge needs to know of a column.
    fn column_meta(column: &Self::Column) -> ColumnMeta;
}

/// The client's side of a merged result, in its protocol: where the
/// merged rows go once it has begun.
pub trait MergedResult<Column>: RowSink {
    /// Starts the result set with the columns the client sees (`shown`);
    /// the rows that follow have the `visible` columns of the nodes'
    /// results (the same columns, as the nodes describe them).
    fn begin(&mut self, shown: &[Column], visible: &[Column]);
}

/// The merge's shape, from the statement's scatter plan.
#[derive(Debug, Clone, Copy)]
pub struct MergeShape<'a> {
    pub scatter: &'a ScatterSelect,
    pub offset: u64,
    pub limit: Option<u64>,
    pub having: Option<&'a HavingCond>,
}

/// Why a merge did not complete.
#[derive(Debug)]
pub enum MergeFailure {
    /// A node's connection failed before the rows began (a lost one may be
    /// retried elsewhere by the front end).
    Node(ConnError),
    /// The connection to `data_source` was lost while rows were merged.
    Lost {
        data_source: String,
        err: ProxyError,
    },
    /// The client is told this error.
    Reply(ProxyError),
    /// The client went away while rows were sent.
    ClientGone,
}

/// Merges the rows of queries started on `conns` into `result`. `shown`:
/// the column definitions the client sees, when the front end got them
/// apart from the nodes' own. On return every connection is marked broken
/// exactly when its reply was not read to its end.
pub async fn merge_started<C: RowConn, R: MergedResult<C::Column>>(
    conns: &mut [C],
    shown: Option<Vec<C::Column>>,
    shape: MergeShape<'_>,
    result: &mut R,
) -> Result<MergeStats, MergeFailure> {
    let mut failure: Option<ConnError> = None;
    let mut columns: Option<Vec<C::Column>> = None;
    for conn in conns.iter_mut() {
        match conn.read_columns().await {
            Ok(c) => {
                columns.get_or_insert(c);
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let planned = match (failure, columns) {
        (None, Some(columns)) => merge_plan(
            shape.scatter,
            columns.iter().map(C::column_meta).collect(),
            shape.offset,
            shape.limit,
            shape.having,
        )
        .map(|plan| (plan, columns))
        .map_err(|e| {
            MergeFailure::Reply(ProxyError::new(
                ErrorKind::Internal,
                format!("cannot merge node results: {e}"),
            ))
        }),
        (Some(e), _) => Err(MergeFailure::Node(e)),
        (None, None) => Err(MergeFailure::Reply(ProxyError::new(
            ErrorKind::Internal,
            "no data node answered",
        ))),
    };
    let (plan, columns) = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            // Replies not read to their end: these connections are closed.
            for conn in conns.iter_mut() {
                conn.set_broken(true);
            }
            return Err(failure);
        }
    };
    let shown = shown
        .filter(|c| c.len() == columns.len())
        .unwrap_or_else(|| columns.clone());
    result.begin(&shown[..plan.visible], &columns[..plan.visible]);
    let mut sources: Vec<NodeRows<'_, C>> = conns
        .iter_mut()
        .map(|conn| NodeRows {
            conn,
            columns: &columns,
            done: false,
            lost: false,
        })
        .collect();
    let merged = merge(&plan, sources.iter_mut().map(SourceRef).collect(), result).await;
    // A connection in the client's transaction must survive an early end
    // (LIMIT reached): read the rest of its reply. Others are closed.
    for source in &mut sources {
        if !source.done && source.conn.in_transaction() {
            while let Ok(true) = source.skip().await {}
        }
    }
    let lost = sources
        .iter()
        .find(|s| s.lost)
        .map(|s| s.conn.data_source().to_owned());
    for source in &mut sources {
        let unfinished = !source.done;
        source.conn.set_broken(unfinished);
    }
    match merged {
        Ok(stats) => {
            debug!(
                rows_in = stats.rows_in,
                rows_out = stats.rows_out,
                peak = stats.peak_buffered,
                "merged"
            );
            Ok(stats)
        }
        Err(MergeError::Sink(_)) => Err(MergeFailure::ClientGone),
        Err(MergeError::Plan(message)) => Err(MergeFailure::Reply(ProxyError::new(
            ErrorKind::NotSupported,
            message,
        ))),
        Err(e) => {
            let err = ProxyError::new(
                ErrorKind::Internal,
                format!("merging node results failed: {e}"),
            );
            Err(match lost {
                Some(data_source) => MergeFailure::Lost { data_source, err },
                None => MergeFailure::Reply(err),
            })
        }
    }
}

/// One node's rows, decoded as the merge pulls them.
struct NodeRows<'a, C: RowConn> {
    conn: &'a mut C,
    columns: &'a [C::Column],
    done: bool,
    /// The connection failed (not a node's error reply).
    lost: bool,
}

impl<C: RowConn> NodeRows<'_, C> {
    /// Notes how a read ended: a node's error reply ends its rows (read
    /// whole), any other error loses the connection (its reply unfinished).
    fn failed(&mut self, e: ConnError) -> MergeError {
        let replied = matches!(e, ConnError::Server { .. });
        self.done = replied;
        self.lost = !replied;
        MergeError::Source(format!("data source {}: {e}", self.conn.data_source()))
    }

    async fn next(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        if self.done {
            return Ok(None);
        }
        match self.conn.next_row(self.columns).await {
            Ok(Some(row)) => Ok(Some(row)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn skip(&mut self) -> Result<bool, MergeError> {
        if self.done {
            return Ok(false);
        }
        match self.conn.skip_row().await {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.done = true;
                Ok(false)
            }
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// A borrow of a node's rows, so that they can be looked at after the merge.
struct SourceRef<'s, 'a, C: RowConn>(&'s mut NodeRows<'a, C>);

impl<C: RowConn> RowSource for SourceRef<'_, '_, C> {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        self.0.next().await
    }
}

/// A pooled connection reads rows as the connection it lends.
impl<C: RowConn + Connection> RowConn for PooledConn<C> {
    type Column = C::Column;

    fn start_query(&mut self, sql: &[u8]) -> impl Future<Output = Result<(), ConnError>> + Send {
        (**self).start_query(sql)
    }

    fn start_node_query(
        &mut self,
        sql: &NodeSql<'_>,
    ) -> impl Future<Output = Result<(), ConnError>> + Send {
        (**self).start_node_query(sql)
    }

    fn read_columns(&mut self) -> impl Future<Output = Result<Vec<C::Column>, ConnError>> + Send {
        (**self).read_columns()
    }

    fn next_row(
        &mut self,
        columns: &[C::Column],
    ) -> impl Future<Output = Result<Option<Vec<Value>>, ConnError>> + Send {
        (**self).next_row(columns)
    }

    fn skip_row(&mut self) -> impl Future<Output = Result<bool, ConnError>> + Send {
        (**self).skip_row()
    }

    fn in_transaction(&self) -> bool {
        RowConn::in_transaction(&**self)
    }

    fn column_meta(column: &C::Column) -> ColumnMeta {
        C::column_meta(column)
    }
}
