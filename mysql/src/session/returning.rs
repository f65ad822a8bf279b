//! Writes with RETURNING (`INSERT | REPLACE | DELETE ... RETURNING`) over
//! several data nodes: each node's statement answers with rows, and the
//! client gets the rows one server would return — an INSERT's in the order
//! of its VALUES, a DELETE's from every node, a broadcast table's once — in
//! its own protocol, all or nothing as any fanned-out write.

use shardgate_core::execute::fanout::{set_statement_savepoint, undo_to_statement_savepoint};
use shardgate_sql::dialect::MARIADB;
use tracing::warn;

use super::sharded::{push_result_header, start_query};
use super::{Failure, Session};
use crate::backend::result_set::RowPacket;
use crate::backend::{ConnError, PooledConn};
use crate::column::ColumnInfo;
use crate::ok_err::OkInfo;
use crate::response::Outcome;
use crate::row::{decode_row, encode_row, RowFormat};
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_sql::classify::Classified;
use shardgate_sql::shard::plan::{Returning, Target};

impl Session {
    /// Runs a write with RETURNING on `targets` and answers with its rows.
    pub(super) async fn fanout_returning(
        &mut self,
        targets: Vec<Target>,
        returning: Returning,
        rows_of: &[Vec<usize>],
        generated_id: Option<u64>,
        format: RowFormat,
    ) -> Result<(), Failure> {
        let classified = Classified::default();
        let several = targets.len() > 1;
        let implicit = several && self.autocommit() && !self.in_transaction();
        let savepoint = several && !implicit;
        let mut conns: Vec<PooledConn> = Vec::new();
        let mut conn_of = Vec::with_capacity(targets.len());
        for target in &targets {
            let pool = self.pool_of(&target.data_source)?;
            match conns
                .iter()
                .position(|c| std::sync::Arc::ptr_eq(c.pool(), &pool))
            {
                Some(at) => conn_of.push(at),
                None => {
                    let conn = self.checkout_on(&pool, &classified).await?;
                    conns.push(conn);
                    conn_of.push(conns.len() - 1);
                }
            }
        }
        let opening = if implicit {
            Some("START TRANSACTION".to_owned())
        } else if savepoint {
            Some(set_statement_savepoint(&MARIADB))
        } else {
            None
        };
        let mut outcome = Ok(());
        if let Some(opening) = &opening {
            for conn in &mut conns {
                if let Err(e) = conn.execute_internal(opening).await {
                    outcome = Err(e.into());
                    break;
                }
            }
        }
        if outcome.is_ok() {
            outcome = self
                .answer_rows(&targets, &conn_of, &mut conns, &returning, rows_of, format)
                .await;
        }
        let finish = match (&outcome, implicit, savepoint) {
            (Ok(()), true, _) => Some("COMMIT".to_owned()),
            (Err(_), true, _) => Some("ROLLBACK".to_owned()),
            (Err(_), _, true) => Some(undo_to_statement_savepoint(&MARIADB)),
            _ => None,
        };
        if let Some(finish) = &finish {
            for conn in &mut conns {
                if conn.broken {
                    continue;
                }
                if let Err(e) = conn.execute_internal(finish).await {
                    warn!(ds = %conn.ds, "{finish} after a write with RETURNING failed: {e}");
                    conn.broken = true;
                    if outcome.is_ok() {
                        outcome = Err(e.into());
                    }
                }
            }
        }
        for conn in conns {
            self.release(conn, &classified);
        }
        outcome?;
        if let Some(id) = generated_id {
            self.last_insert = Some(super::LastInsert { id, conn_uid: 0 });
        }
        self.push_end_of_result();
        Ok(())
    }

    /// Runs each target's statement and sends the client the answer's
    /// column definitions and rows (not its end).
    async fn answer_rows(
        &mut self,
        targets: &[Target],
        conn_of: &[usize],
        conns: &mut [PooledConn],
        returning: &Returning,
        rows_of: &[Vec<usize>],
        format: RowFormat,
    ) -> Result<(), Failure> {
        let mut columns: Option<Vec<ColumnInfo>> = None;
        // INSERT: every target's rows, until all are in, to answer in order.
        let mut inserted: Vec<Vec<bytes::BytesMut>> = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let conn = &mut conns[conn_of[i]];
            start_query(conn, &target.sql).await?;
            let node_columns = match conn.read_columns().await {
                Ok(c) => c,
                Err(err @ ConnError::Server { .. }) => {
                    // The node's error reply was read whole.
                    conn.broken = false;
                    return Err(err.into());
                }
                Err(err) => return Err(err.into()),
            };
            let first = columns.is_none();
            let columns = columns.get_or_insert(node_columns);
            if first && *returning != Returning::InsertedRows {
                self.send_columns(columns);
            }
            let wanted = match returning {
                Returning::OneCopy => i == 0,
                _ => true,
            };
            let mut rows = Vec::new();
            loop {
                match conn.read_row().await? {
                    RowPacket::Row(row) if !wanted => drop(row),
                    RowPacket::Row(row) if *returning == Returning::InsertedRows => rows.push(row),
                    RowPacket::Row(row) => self.send_row(&row, columns, format)?,
                    RowPacket::End { status } => {
                        conn.note_outcome(&Outcome::Ok(OkInfo {
                            status,
                            ..OkInfo::default()
                        }));
                        break;
                    }
                    RowPacket::Err(err) => {
                        conn.broken = false;
                        return Err(Failure::Reply(err.into()));
                    }
                }
            }
            conn.broken = false;
            inserted.push(rows);
        }
        let (Returning::InsertedRows, Some(columns)) = (returning, &columns) else {
            return Ok(());
        };
        // Each target's rows are its rows of the statement, in order.
        let total: usize = rows_of.iter().map(Vec::len).sum();
        let mut order: Vec<Option<(usize, usize)>> = vec![None; total];
        for (t, (rows, got)) in rows_of.iter().zip(&inserted).enumerate() {
            if rows.len() != got.len() {
                return Err(Failure::Reply(ProxyError::new(ErrorKind::NotSupported, format!(
                    "a node returned {} rows for the {} rows it inserted, so the rows of RETURNING cannot be put in the statement's order; nothing was written",
                    got.len(),
                    rows.len()
                ))));
            }
            for (k, &row) in rows.iter().enumerate() {
                if let Some(slot) = order.get_mut(row) {
                    *slot = Some((t, k));
                }
            }
        }
        self.send_columns(columns);
        for (t, k) in order.into_iter().flatten() {
            self.send_row(&inserted[t][k], columns, format)?;
        }
        Ok(())
    }

    /// The column count and definitions of the answer, under logical names.
    fn send_columns(&mut self, columns: &[ColumnInfo]) {
        let eof_status = (!self.flavor.deprecate_eof()).then(|| self.reply_status());
        push_result_header(&mut self.writer, &self.db.metadata, columns, eof_status);
    }

    /// One row of a node's text result, in the client's protocol.
    fn send_row(
        &mut self,
        row: &[u8],
        columns: &[ColumnInfo],
        format: RowFormat,
    ) -> Result<(), Failure> {
        match format {
            RowFormat::Text => self.writer.push(row),
            RowFormat::Binary => {
                let values = decode_row(row, columns, RowFormat::Text).map_err(|e| {
                    Failure::Reply(ProxyError::new(
                        ErrorKind::DataSourceLost,
                        format!("a node's RETURNING row could not be read: {e}"),
                    ))
                })?;
                let mut out = Vec::new();
                encode_row(&values, columns, RowFormat::Binary, &mut out);
                self.writer.push(&out);
            }
        }
        Ok(())
    }
}
