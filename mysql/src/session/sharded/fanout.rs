//! Writes fanned out to several nodes: in one transaction per data source
//! when the client has none open, with the guard against moving rows.

use crate::backend::PooledConn;
use crate::ok_err::InfoCounts;
use crate::ok_err::OkInfo;
use crate::session::{Failure, Session};
use shardgate_core::error::{BackendError, ErrorKind, ProxyError};
use shardgate_sql::classify::Classified;
use shardgate_sql::shard::plan::{Affected, Target};
use shardgate_sql::shard::rewrite::move_guard;
use shardgate_sql::text::restore;
use std::sync::Arc;
use tracing::warn;

impl Session {
    /// Writes on several nodes; one OK with the combined count.
    pub(super) async fn fanout(
        &mut self,
        targets: Vec<Target>,
        write: FanoutWrite<'_>,
    ) -> Result<(), Failure> {
        let FanoutWrite {
            affected,
            transactional,
            generated_id,
            insert_rows,
            guarded_columns,
        } = write;
        let guarded: Vec<&str> = guarded_columns.iter().map(String::as_str).collect();
        let row_count: usize = insert_rows.iter().map(Vec::len).sum();
        let multi_row_insert = row_count > 1;
        // The insert id of a row the statement gave its key: the one its
        // last row's node reports, as one server reports the last row's.
        let last_row_target = row_count.checked_sub(1).and_then(|last| {
            insert_rows
                .iter()
                .position(|rows| rows.last() == Some(&last))
        });
        let mut explicit_id = 0;
        let mut info: Option<InfoCounts> = None;
        let mut warnings = 0u64;
        // Under autocommit the proxy opens a transaction for the statement;
        // inside the client's transaction a savepoint keeps the statement
        // all-or-nothing, as one server would.
        let implicit = transactional && self.autocommit() && !self.in_transaction();
        let savepoint = transactional && !implicit;
        let classified = Classified::default();
        let mut conns: Vec<PooledConn> = Vec::new();
        let mut total = 0u64;
        let mut one_copy = None;
        let mut applied: Vec<String> = Vec::new();
        let mut failure: Option<(String, ProxyError)> = None;
        for (n, target) in targets.iter().enumerate() {
            let pool = self.pool_of(&target.data_source)?;
            let at = conns.iter().position(|c| Arc::ptr_eq(c.pool(), &pool));
            let conn = match at {
                Some(i) => &mut conns[i],
                None => {
                    let mut conn = self.checkout_on(&pool, &classified).await?;
                    let opening = if implicit {
                        Some("START TRANSACTION")
                    } else if savepoint {
                        Some("SAVEPOINT `__shardgate_statement`")
                    } else {
                        None
                    };
                    if let Some(opening) = opening {
                        if let Err(e) = conn.execute_internal(opening).await {
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
            if let Some(guard) = move_guard(&target.sql, &guarded) {
                match moving_rows(conn, &guard).await {
                    Ok(0) => {}
                    Ok(n) => {
                        let err = ProxyError::new(ErrorKind::NotSupported, format!(
                            "this UPDATE changes the sharding column(s) {} of {n} row(s), which would have to move to another data node; DELETE them and INSERT them again",
                            guarded.join(", ")
                        ));
                        failure = Some((target.data_source.clone(), err));
                        break;
                    }
                    Err(e) => {
                        failure = Some((target.data_source.clone(), e.into()));
                        break;
                    }
                }
            }
            match conn.execute_statement(&restore(&target.sql)).await {
                Ok(ok) => {
                    total += ok.affected_rows;
                    warnings += u64::from(ok.warnings);
                    if Some(n) == last_row_target {
                        explicit_id = ok.last_insert_id;
                    }
                    // A single-row INSERT has no info text; in a multi-row
                    // one its row still counts (a duplicate unless it
                    // changed exactly one row).
                    let node_info = ok.info.or_else(|| {
                        let rows = insert_rows.get(n)?.len();
                        (multi_row_insert && rows == 1).then_some(InfoCounts::Insert {
                            records: 1,
                            duplicates: u64::from(ok.affected_rows != 1),
                            warnings: u64::from(ok.warnings),
                        })
                    });
                    info = match (info, node_info) {
                        (Some(a), Some(b)) if affected == Affected::Sum => Some(a.sum_with(b)),
                        (None, b) => b,
                        (a, _) => a,
                    };
                    one_copy.get_or_insert(ok.affected_rows);
                    applied.push(target.data_source.clone());
                }
                Err(e) => {
                    failure = Some((target.data_source.clone(), e.into()));
                    break;
                }
            }
        }
        let mut end_error = None;
        if savepoint && failure.is_some() {
            for conn in &mut conns {
                if let Err(e) = conn
                    .execute_internal("ROLLBACK TO SAVEPOINT `__shardgate_statement`")
                    .await
                {
                    warn!(ds = %conn.ds, "cannot undo a failed statement: {e}");
                    conn.broken = true;
                }
            }
        }
        if implicit {
            let finish = if failure.is_some() {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            let mut committed = Vec::new();
            for conn in &mut conns {
                match conn.execute_internal(finish).await {
                    Ok(_) => committed.push(conn.ds.to_string()),
                    Err(e) if failure.is_none() => {
                        warn!(ds = %conn.ds, "commit failed after others committed: {e}");
                        end_error.get_or_insert_with(|| {
                            ProxyError::new(
                                ErrorKind::Internal,
                                format!(
                                    "COMMIT failed on data source {} ({e}); already committed on: {}",
                                    conn.ds,
                                    if committed.is_empty() { "none".into() } else { committed.join(", ") }
                                ),
                            )
                        });
                    }
                    Err(e) => {
                        warn!(ds = %conn.ds, "rollback failed: {e}");
                        conn.broken = true;
                    }
                }
            }
        }
        for conn in conns {
            self.release(conn, &classified);
        }
        if let Some((ds, err)) = failure {
            let undone = if implicit || savepoint {
                "nothing was applied".to_owned()
            } else if applied.is_empty() {
                "no data node was changed".to_owned()
            } else {
                format!("already applied on: {}", applied.join(", "))
            };
            return Err(Failure::Reply(
                err.in_context(format_args!("on data source {ds}; {undone}")),
            ));
        }
        if let Some(err) = end_error {
            return Err(Failure::Reply(err));
        }
        if let Some(id) = generated_id {
            self.last_insert = Some(crate::session::LastInsert { id, conn_uid: 0 });
        }
        let affected_rows = match affected {
            Affected::Sum => total,
            Affected::OneCopy => one_copy.unwrap_or(0),
        };
        self.writer.push(
            &OkInfo {
                affected_rows,
                last_insert_id: generated_id.unwrap_or(explicit_id),
                status: self.reply_status(),
                warnings: u16::try_from(warnings).unwrap_or(u16::MAX),
                info,
            }
            .encode(),
        );
        Ok(())
    }
}

/// What a fanned-out write needs besides its targets.
pub(super) struct FanoutWrite<'a> {
    pub(super) affected: Affected,
    pub(super) transactional: bool,
    pub(super) generated_id: Option<u64>,
    pub(super) insert_rows: &'a [Vec<usize>],
    pub(super) guarded_columns: &'a [String],
}

/// The count a [`move_guard`] query answers.
pub(super) async fn moving_rows(conn: &mut PooledConn, guard: &str) -> Result<u64, BackendError> {
    let rows = conn.query_text_bytes(&restore(guard)).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}
