//! A write fanned out to several data nodes: all-or-nothing as one
//! server's statement would be — in a transaction per data source when the
//! client has none open, behind a savepoint inside the client's — with the
//! guard that refuses an UPDATE moving rows to another node.

use std::sync::Arc;

use shardgate_sql::dialect::Dialect;
use shardgate_sql::shard::plan::{Affected, Target};
use shardgate_sql::shard::rewrite::move_guard;
use shardgate_sql::text::restore;
use tracing::warn;

use super::{listed, Connections, StatementConn, WriteCounts, WriteDone};
use crate::error::{ErrorKind, ProxyError};

/// The savepoint that makes a statement all-or-nothing inside the client's
/// transaction.
const STATEMENT_SAVEPOINT: &str = "__shardgate_statement";

/// The statement that sets the savepoint a write over several nodes
/// inside the client's transaction goes back to when it fails.
fn set_statement_savepoint(dialect: &dyn Dialect) -> String {
    format!("SAVEPOINT {}", dialect.quoted(STATEMENT_SAVEPOINT))
}

/// The statement that undoes such a write: back to its savepoint.
pub(super) fn undo_to_statement_savepoint(dialect: &dyn Dialect) -> String {
    format!(
        "ROLLBACK TO SAVEPOINT {}",
        dialect.quoted(STATEMENT_SAVEPOINT)
    )
}

/// The statement each node of a write over several nodes runs first: a
/// transaction the proxy opens (`implicit`), or the statement savepoint
/// inside the client's; None when the write is not undone as a whole.
pub(super) fn opening_statement(
    dialect: &dyn Dialect,
    implicit: bool,
    savepoint: bool,
) -> Option<String> {
    if implicit {
        Some("START TRANSACTION".to_owned())
    } else if savepoint {
        Some(set_statement_savepoint(dialect))
    } else {
        None
    }
}

/// What a fanned-out write needs besides its targets.
#[derive(Debug, Clone, Copy)]
pub struct FanoutWrite<'a> {
    pub affected: Affected,
    /// Whether it must apply on every node or on none (DML; not DDL,
    /// which no transaction undoes).
    pub transactional: bool,
    /// Whether the proxy opens a transaction for it (autocommit on, no
    /// transaction open); otherwise a transactional write runs inside the
    /// client's, behind a savepoint.
    pub own_transaction: bool,
    /// The key the proxy generated for an INSERT, reported as its insert id.
    pub generated_id: Option<u64>,
    /// For each target, the INSERT's rows (their positions in the
    /// statement) it got.
    pub insert_rows: &'a [Arc<[u32]>],
    /// Sharding columns an UPDATE sets: rows whose value would change
    /// are refused.
    pub guarded_columns: &'a [String],
}

/// Runs `targets` (several nodes' statements) for a session; the combined
/// outcome, or the first failure with where it happened and what was undone.
pub async fn fan_out<S: Connections>(
    session: &mut S,
    dialect: &dyn Dialect,
    targets: &[Target<'_>],
    write: FanoutWrite<'_>,
) -> Result<WriteDone, S::Error> {
    let implicit = write.transactional && write.own_transaction;
    let savepoint = write.transactional && !implicit;
    let mut run = Run::new(&write);
    let mut conns: Vec<S::Conn> = Vec::new();
    let mut failure: Option<(String, ProxyError)> = None;
    let opening = opening_statement(dialect, implicit, savepoint);
    for (n, target) in targets.iter().enumerate() {
        let at = conns
            .iter()
            .position(|c| c.data_source() == target.data_source);
        let conn = match at {
            Some(i) => &mut conns[i],
            None => {
                let mut conn = match session.checkout(&target.data_source).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Undo what the others did before passing it on.
                        finish(&mut conns, dialect, implicit, savepoint, true).await;
                        for conn in conns {
                            session.release(conn);
                        }
                        return Err(e);
                    }
                };
                if let Some(opening) = &opening {
                    if let Err(e) = conn.execute(opening.as_bytes()).await {
                        failure = Some((target.data_source.clone(), e.into()));
                        conns.push(conn);
                        break;
                    }
                }
                conns.push(conn);
                let last = conns.len() - 1;
                &mut conns[last]
            }
        };
        if let Err(err) = run.apply(conn, dialect, n, target).await {
            failure = Some((target.data_source.clone(), err));
            break;
        }
    }
    let end_error = finish(&mut conns, dialect, implicit, savepoint, failure.is_some()).await;
    for conn in conns {
        session.release(conn);
    }
    if let Some((ds, err)) = failure {
        let undone = if implicit || savepoint {
            "nothing was applied".to_owned()
        } else if run.applied.is_empty() {
            "no data node was changed".to_owned()
        } else {
            format!("already applied on: {}", run.applied.join(", "))
        };
        return Err(err
            .in_context(format_args!("on data source {ds}; {undone}"))
            .into());
    }
    if let Some(err) = end_error {
        return Err(err.into());
    }
    Ok(run.done(&write))
}

/// The nodes' answers so far.
struct Run<'w> {
    guarded: Vec<&'w str>,
    insert_rows: &'w [Arc<[u32]>],
    /// Whether the nodes' counts add up (each changed its own rows) or
    /// the first stands for all (each holds a copy).
    sum: bool,
    multi_row_insert: bool,
    /// The target that got the statement's last row: its insert id is the
    /// statement's, as one server reports the last row's.
    last_row_target: Option<usize>,
    total: u64,
    one_copy: Option<u64>,
    explicit_id: u64,
    warnings: u64,
    counts: Option<WriteCounts>,
    applied: Vec<String>,
}

impl<'w> Run<'w> {
    fn new(write: &FanoutWrite<'w>) -> Self {
        let row_count: usize = write.insert_rows.iter().map(|rows| rows.len()).sum();
        let last_row_target = row_count.checked_sub(1).and_then(|last| {
            write
                .insert_rows
                .iter()
                .position(|rows| rows.last().is_some_and(|&row| row as usize == last))
        });
        Run {
            guarded: write.guarded_columns.iter().map(String::as_str).collect(),
            insert_rows: write.insert_rows,
            sum: write.affected == Affected::Sum,
            multi_row_insert: row_count > 1,
            last_row_target,
            total: 0,
            one_copy: None,
            explicit_id: 0,
            warnings: 0,
            counts: None,
            applied: Vec::new(),
        }
    }

    /// Runs target `n` on `conn` (after the move guard's check).
    async fn apply<C: StatementConn>(
        &mut self,
        conn: &mut C,
        dialect: &dyn Dialect,
        n: usize,
        target: &Target<'_>,
    ) -> Result<(), ProxyError> {
        // Only an UPDATE of sharding columns has a guard: other statements
        // are not built whole (nor lexed again) for it.
        let guard = if self.guarded.is_empty() {
            None
        } else {
            move_guard(dialect, &target.sql.text(), &self.guarded)
        };
        if let Some(guard) = guard {
            let rows = conn.query_rows(&restore(&guard)).await?;
            let moving: u64 = rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if moving > 0 {
                return Err(ProxyError::new(ErrorKind::NotSupported, format!(
                    "this UPDATE changes the sharding column(s) {} of {moving} row(s), which would have to move to another data node; DELETE them and INSERT them again",
                    self.guarded.join(", ")
                )));
            }
        }
        let done: WriteDone = conn.execute_node(&target.sql).await?.into();
        self.total = self.total.saturating_add(done.affected_rows);
        self.warnings = self.warnings.saturating_add(done.warnings);
        if Some(n) == self.last_row_target {
            self.explicit_id = done.last_insert_id;
        }
        // A single-row INSERT has no counts; in a multi-row one its row
        // still counts (a duplicate unless it changed exactly one row).
        let node_counts = done.counts.or_else(|| {
            let rows = self.insert_rows.get(n)?.len();
            (self.multi_row_insert && rows == 1).then_some(WriteCounts::Insert {
                records: 1,
                duplicates: u64::from(done.affected_rows != 1),
                warnings: done.warnings,
            })
        });
        self.counts = match (self.counts, node_counts) {
            (Some(a), Some(b)) if self.sum => Some(a.sum_with(b)),
            (None, b) => b,
            (a, _) => a,
        };
        self.one_copy.get_or_insert(done.affected_rows);
        self.applied.push(target.data_source.clone());
        Ok(())
    }

    fn done(self, write: &FanoutWrite<'_>) -> WriteDone {
        WriteDone {
            affected_rows: match write.affected {
                Affected::Sum => self.total,
                Affected::OneCopy => self.one_copy.unwrap_or(0),
            },
            last_insert_id: write.generated_id.unwrap_or(self.explicit_id),
            warnings: self.warnings,
            counts: self.counts,
        }
    }
}

/// Ends the statement on every connection: rolls back to the savepoint
/// after a failure; commits (or rolls back after a failure) the
/// transaction the proxy opened. The error of a COMMIT that failed after
/// others committed.
async fn finish<C: StatementConn>(
    conns: &mut [C],
    dialect: &dyn Dialect,
    implicit: bool,
    savepoint: bool,
    failed: bool,
) -> Option<ProxyError> {
    if savepoint && failed {
        let undo = undo_to_statement_savepoint(dialect);
        for conn in conns.iter_mut() {
            if let Err(e) = conn.execute(undo.as_bytes()).await {
                warn!(
                    ds = conn.data_source(),
                    "cannot undo a failed statement: {e}"
                );
                conn.set_broken(true);
            }
        }
    }
    if !implicit {
        return None;
    }
    let end: &[u8] = if failed { b"ROLLBACK" } else { b"COMMIT" };
    let mut committed = Vec::new();
    let mut end_error = None;
    for conn in conns.iter_mut() {
        match conn.execute(end).await {
            Ok(_) => committed.push(conn.data_source().to_owned()),
            Err(e) if !failed => {
                warn!(
                    ds = conn.data_source(),
                    "commit failed after others committed: {e}"
                );
                end_error.get_or_insert_with(|| {
                    ProxyError::new(
                        ErrorKind::Internal,
                        format!(
                            "COMMIT failed on data source {} ({e}); already committed on: {}",
                            conn.data_source(),
                            listed(&committed)
                        ),
                    )
                });
            }
            Err(e) => {
                warn!(ds = conn.data_source(), "rollback failed: {e}");
                conn.set_broken(true);
            }
        }
    }
    end_error
}
