//! Statement execution that does not depend on the client's protocol:
//! writes fanned out to several data nodes ([`fanout`], with RETURNING:
//! [`returning`]), SELECTs merged from several ([`merge`]), metadata
//! queries answered in logical terms ([`metadata`]), transaction control
//! across the data sources a transaction touched ([`control`]).
//! A front end lends its session's connections through [`Connections`],
//! runs statements on them through [`StatementConn`], and tells the client
//! the outcome ([`WriteDone`]) in its own protocol.

use std::future::Future;

use crate::backend::pool::PooledConn;
use crate::backend::Connection;
use shardgate_sql::shard::node_sql::NodeSql;
use shardgate_sql::shard::plan::Target;

use crate::error::{ConnError, ProxyError};

pub mod columns;
pub mod control;
pub mod fanout;
pub mod merge;
pub mod metadata;
pub mod returning;

/// A backend connection the executor runs statements on: one of the
/// session's, checked out of a pool or held for its transaction.
pub trait StatementConn: Send {
    /// What the server answers to a statement that returns no rows (the
    /// protocol's own form: the front end may need more of it than
    /// [`WriteDone`] keeps, such as MySQL's status flags).
    type Done: Into<WriteDone> + Default + Send;

    /// The data source it is connected to, for errors and logs.
    fn data_source(&self) -> &str;

    /// Runs a statement that returns no rows (the client's bytes, its
    /// character set kept).
    fn execute(&mut self, sql: &[u8])
        -> impl Future<Output = Result<Self::Done, ConnError>> + Send;

    /// Runs a node's statement that returns no rows. By default built
    /// whole and run as [`execute`](StatementConn::execute); a connection
    /// may write it out in pieces instead (a long statement spliced for
    /// its node is then never copied whole).
    fn execute_node(
        &mut self,
        sql: &NodeSql<'_>,
    ) -> impl Future<Output = Result<Self::Done, ConnError>> + Send {
        let bytes = sql.to_bytes();
        async move { self.execute(&bytes).await }
    }

    /// Runs a query whose rows are read whole, as text (NULL as None):
    /// the proxy's own small queries.
    fn query_rows(
        &mut self,
        sql: &[u8],
    ) -> impl Future<Output = Result<Vec<Vec<Option<String>>>, ConnError>> + Send;

    /// Sends a statement without waiting for its reply, so that the same
    /// statement reaches several servers in one round trip; [`read_done`]
    /// reads the reply.
    ///
    /// [`read_done`]: StatementConn::read_done
    fn send(&mut self, sql: &[u8]) -> impl Future<Output = Result<(), ConnError>> + Send;

    /// The reply to the statement [`send`](StatementConn::send) sent.
    fn read_done(&mut self) -> impl Future<Output = Result<Self::Done, ConnError>> + Send;

    /// Marks the connection unfit for reuse (a reply unread, a failure
    /// midway), or fit again once its reply was read whole.
    fn set_broken(&mut self, broken: bool);
}

/// Where a session's statements get their connections: the one it holds
/// for the data source (inside a transaction), or one from the pool
/// brought to the session's state.
pub trait Connections: Send {
    type Conn: StatementConn;
    /// The front end's failure: a checkout's own is passed on as it is
    /// (a lost data source, a pool deadlock); a statement's is a
    /// [`ProxyError`], a connection's a [`ConnError`].
    type Error: From<ProxyError> + From<ConnError> + Send;

    /// A connection to the primary of `data_source`.
    fn checkout(
        &mut self,
        data_source: &str,
    ) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Gives a connection back: held by the session while its transaction
    /// needs it, to the pool otherwise (closed when not reusable).
    fn release(&mut self, conn: Self::Conn);
}

/// The connections of a statement over several targets: one per data
/// source (its tables' statements share it), and each target's.
pub struct TargetConns<C> {
    pub conns: Vec<C>,
    /// For each target, its connection in `conns`.
    pub conn_of: Vec<usize>,
}

impl<C: StatementConn> TargetConns<C> {
    /// Checks out a connection for each data source of `targets`; on a
    /// failure, those already checked out go back.
    pub async fn checkout<S: Connections<Conn = C>>(
        session: &mut S,
        targets: &[Target<'_>],
    ) -> Result<Self, S::Error> {
        let mut checked: TargetConns<C> = TargetConns {
            conns: Vec::new(),
            conn_of: Vec::with_capacity(targets.len()),
        };
        for target in targets {
            let at = checked
                .conns
                .iter()
                .position(|c| c.data_source() == target.data_source);
            let at = match at {
                Some(at) => at,
                None => match session.checkout(&target.data_source).await {
                    Ok(conn) => {
                        checked.conns.push(conn);
                        checked.conns.len() - 1
                    }
                    Err(e) => {
                        checked.release(session);
                        return Err(e);
                    }
                },
            };
            checked.conn_of.push(at);
        }
        Ok(checked)
    }

    /// Gives every connection back to the session.
    pub fn release<S: Connections<Conn = C>>(self, session: &mut S) {
        for conn in self.conns {
            session.release(conn);
        }
    }
}

/// What a statement that returns no rows did, in any protocol's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteDone {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub warnings: u64,
    /// The counts a server reports beside the affected rows, when it did.
    pub counts: Option<WriteCounts>,
}

/// The counts a server reports for an UPDATE or a multi-row INSERT, so
/// that the answers of several nodes add up into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCounts {
    /// UPDATE: rows matched, rows changed.
    Update {
        matched: u64,
        changed: u64,
        warnings: u64,
    },
    /// Multi-row INSERT / REPLACE / LOAD: rows given, duplicates.
    Insert {
        records: u64,
        duplicates: u64,
        warnings: u64,
    },
}

impl WriteCounts {
    /// The sum of two nodes' counts; of different kinds, the first.
    pub fn sum_with(self, other: WriteCounts) -> WriteCounts {
        use WriteCounts::{Insert, Update};
        match (self, other) {
            (
                Update {
                    matched,
                    changed,
                    warnings,
                },
                Update {
                    matched: m,
                    changed: c,
                    warnings: w,
                },
            ) => Update {
                matched: matched.saturating_add(m),
                changed: changed.saturating_add(c),
                warnings: warnings.saturating_add(w),
            },
            (
                Insert {
                    records,
                    duplicates,
                    warnings,
                },
                Insert {
                    records: r,
                    duplicates: d,
                    warnings: w,
                },
            ) => Insert {
                records: records.saturating_add(r),
                duplicates: duplicates.saturating_add(d),
                warnings: warnings.saturating_add(w),
            },
            (first, _) => first,
        }
    }
}

/// The data sources named in a "done on" part of an error.
fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A pooled connection runs statements as the connection it lends.
impl<C: StatementConn + Connection> StatementConn for PooledConn<C> {
    type Done = C::Done;

    fn data_source(&self) -> &str {
        (**self).data_source()
    }

    fn execute(
        &mut self,
        sql: &[u8],
    ) -> impl Future<Output = Result<Self::Done, ConnError>> + Send {
        (**self).execute(sql)
    }

    fn execute_node(
        &mut self,
        sql: &NodeSql<'_>,
    ) -> impl Future<Output = Result<Self::Done, ConnError>> + Send {
        (**self).execute_node(sql)
    }

    fn query_rows(
        &mut self,
        sql: &[u8],
    ) -> impl Future<Output = Result<Vec<Vec<Option<String>>>, ConnError>> + Send {
        (**self).query_rows(sql)
    }

    fn send(&mut self, sql: &[u8]) -> impl Future<Output = Result<(), ConnError>> + Send {
        (**self).send(sql)
    }

    fn read_done(&mut self) -> impl Future<Output = Result<Self::Done, ConnError>> + Send {
        (**self).read_done()
    }

    fn set_broken(&mut self, broken: bool) {
        (**self).set_broken(broken)
    }
}

#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod metadata_tests;
#[cfg(test)]
mod returning_tests;
#[cfg(test)]
mod tests;
