//! Writes with RETURNING (`INSERT | REPLACE | DELETE ... RETURNING`) over
//! several data nodes: each node's statement answers with rows, and the
//! client gets the rows one server would return — an INSERT's in the order
//! of its VALUES, a DELETE's from every node, a broadcast table's once —
//! all or nothing as any fanned-out write.

use std::sync::Arc;

use shardgate_merge::{RowSink, Value};
use shardgate_sql::dialect::Dialect;
use shardgate_sql::shard::plan::{Returning, Target};
use tracing::warn;

use super::fanout::{opening_statement, undo_to_statement_savepoint};
use super::merge::{MergeFailure, MergedResult, RowConn};
use super::TargetConns;
use crate::error::{ConnError, ErrorKind, ProxyError};

/// What a write with RETURNING needs besides its targets.
#[derive(Debug, Clone, Copy)]
pub struct ReturningWrite<'a> {
    pub returning: &'a Returning,
    /// For each target, the INSERT's rows (their positions in the
    /// statement) it got.
    pub insert_rows: &'a [Arc<[u32]>],
    /// Whether the proxy opens a transaction for it (autocommit on, no
    /// transaction open); otherwise it runs inside the client's, behind a
    /// savepoint.
    pub own_transaction: bool,
}

/// Runs `targets` on `conns` (checked out for them) and sends their rows
/// to `result` (begun with the nodes' columns; its end is the caller's).
/// On failure nothing was applied; each connection is left broken exactly
/// when its reply was not read to its end.
pub async fn fan_out_returning<C, R>(
    conns: &mut TargetConns<C>,
    dialect: &dyn Dialect,
    targets: &[Target<'_>],
    write: ReturningWrite<'_>,
    result: &mut R,
) -> Result<(), MergeFailure>
where
    C: RowConn,
    R: MergedResult<C::Column>,
{
    let several = targets.len() > 1;
    let implicit = several && write.own_transaction;
    let savepoint = several && !implicit;
    let TargetConns { conns, conn_of } = conns;
    // Connections whose reply was not read to its end: nothing more is
    // sent on them, and they are closed.
    let mut unread = vec![false; conns.len()];
    let opening = opening_statement(dialect, implicit, savepoint);
    let mut outcome: Result<(), Failed> = Ok(());
    if let Some(opening) = &opening {
        for conn in conns.iter_mut() {
            if let Err(e) = conn.execute(opening.as_bytes()).await {
                outcome = Err(Failed::Conn(e));
                break;
            }
        }
    }
    if outcome.is_ok() {
        let mut run = Run {
            conns,
            conn_of,
            unread: &mut unread,
        };
        outcome = run.answer(targets, &write, result).await;
    }
    let finish = match (&outcome, implicit, savepoint) {
        (Ok(()), true, _) => Some("COMMIT".to_owned()),
        (Err(_), true, _) => Some("ROLLBACK".to_owned()),
        (Err(_), _, true) => Some(undo_to_statement_savepoint(dialect)),
        _ => None,
    };
    for (conn, &unread) in conns.iter_mut().zip(&unread) {
        conn.set_broken(unread);
        if unread {
            continue;
        }
        let Some(finish) = &finish else { continue };
        if let Err(e) = conn.execute(finish.as_bytes()).await {
            warn!(
                ds = conn.data_source(),
                "{finish} after a write with RETURNING failed: {e}"
            );
            conn.set_broken(true);
            if outcome.is_ok() {
                outcome = Err(Failed::Conn(e));
            }
        }
    }
    outcome.map_err(|failed| match failed {
        Failed::Conn(e) => MergeFailure::Node(e),
        Failed::Reply(e) => MergeFailure::Reply(e),
        Failed::ClientGone => MergeFailure::ClientGone,
    })
}

/// Why the rows did not all reach the client.
enum Failed {
    Conn(ConnError),
    Reply(ProxyError),
    ClientGone,
}

/// The statement's connections while its rows are read.
struct Run<'a, C> {
    conns: &'a mut [C],
    /// The connection each target runs on.
    conn_of: &'a [usize],
    unread: &'a mut [bool],
}

impl<C: RowConn> Run<'_, C> {
    /// Runs each target's statement and sends its rows on.
    async fn answer<R: MergedResult<C::Column>>(
        &mut self,
        targets: &[Target<'_>],
        write: &ReturningWrite<'_>,
        result: &mut R,
    ) -> Result<(), Failed> {
        let ordered = *write.returning == Returning::InsertedRows;
        let mut columns: Option<Vec<C::Column>> = None;
        // INSERT: every target's rows, until all are in, to answer in order.
        let mut inserted: Vec<Vec<Vec<Value>>> = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let at = self.conn_of[i];
            let conn = &mut self.conns[at];
            let unread = &mut self.unread[at];
            *unread = true;
            conn.start_node_query(&target.sql)
                .await
                .map_err(Failed::Conn)?;
            let node_columns = conn.read_columns().await.map_err(|e| failed(unread, e))?;
            let first = columns.is_none();
            let columns = columns.get_or_insert(node_columns);
            if first && !ordered {
                result.begin(columns, columns);
            }
            let wanted = match write.returning {
                Returning::OneCopy => i == 0,
                _ => true,
            };
            let mut rows = Vec::new();
            loop {
                if !wanted {
                    match conn.skip_row().await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => return Err(failed(unread, e)),
                    }
                }
                match conn.next_row(columns).await {
                    Ok(Some(row)) if ordered => rows.push(row),
                    Ok(Some(row)) => send(result, &row).await?,
                    Ok(None) => break,
                    Err(e) => return Err(failed(unread, e)),
                }
            }
            *unread = false;
            inserted.push(rows);
        }
        let (true, Some(columns)) = (ordered, &columns) else {
            return Ok(());
        };
        // Each target's rows are its rows of the statement, in order.
        let total: usize = write.insert_rows.iter().map(|rows| rows.len()).sum();
        let mut order: Vec<Option<(usize, usize)>> = vec![None; total];
        for (t, (rows, got)) in write.insert_rows.iter().zip(&inserted).enumerate() {
            if rows.len() != got.len() {
                return Err(Failed::Reply(ProxyError::new(ErrorKind::NotSupported, format!(
                    "a node returned {} rows for the {} rows it inserted, so the rows of RETURNING cannot be put in the statement's order; nothing was written",
                    got.len(),
                    rows.len()
                ))));
            }
            for (k, &row) in rows.iter().enumerate() {
                if let Some(slot) = order.get_mut(row as usize) {
                    *slot = Some((t, k));
                }
            }
        }
        result.begin(columns, columns);
        for (t, k) in order.into_iter().flatten() {
            send(result, &inserted[t][k]).await?;
        }
        Ok(())
    }
}

/// A read failed: a node's error reply was read whole (its connection
/// stays fit), any other failure leaves the reply `unread`.
fn failed(unread: &mut bool, e: ConnError) -> Failed {
    if matches!(e, ConnError::Server { .. }) {
        *unread = false;
        Failed::Reply(e.into())
    } else {
        Failed::Conn(e)
    }
}

async fn send<R: RowSink>(result: &mut R, row: &[Value]) -> Result<(), Failed> {
    result.push_row(row).await.map_err(|_| Failed::ClientGone)
}
