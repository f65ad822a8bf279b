//! SELECTs over several nodes: their rows concatenated, or merged in
//! order (sorted, grouped, aggregated, limited) as they stream in.

use crate::backend::PooledConn;
use crate::column::ColumnInfo;
use crate::command::COM_QUERY;
use crate::response::Outcome;
use crate::row::RowFormat;
use crate::session::definitions::Ahead;
use crate::session::forward::{forward_part, Part};
use crate::session::{Failure, Session};
use crate::stmt::set_statement_id;
use shardgate_core::execute::merge::{merge_started, MergeShape, RowConn};
use shardgate_core::execute::TargetConns;
use shardgate_sql::classify::Classified;
use shardgate_sql::shard::having::Cond as HavingCond;
use shardgate_sql::shard::params::ParamValue;
use shardgate_sql::shard::plan::{FirstTable, Target};
use shardgate_sql::shard::scatter::ScatterSelect;
use std::sync::Arc;
use tracing::debug;

use super::rows::Header;
use super::{query_command, Execution};

impl Session {
    /// Rows of several nodes, one after the other, as one result set.
    /// Every node's statement is sent before any reply is read (one
    /// connection per data source, its tables' statements pipelined on
    /// it), so the nodes work at once and a data source with four tables
    /// costs one round trip, not four. The replies are forwarded in node
    /// order.
    pub(super) async fn concat(
        &mut self,
        targets: Vec<Target<'_>>,
        params: &[ParamValue],
        execution: Option<Execution<'_>>,
    ) -> Result<(), Failure> {
        let classified = Classified::default();
        let count = targets.len();
        let TargetConns { mut conns, conn_of } =
            TargetConns::<PooledConn>::checkout(self, &targets).await?;
        // The backend statement each node executes (None: a query),
        // prepared on first use: before anything is pipelined on the
        // connection, whose replies must come in order.
        let mut executed: Vec<Option<u32>> = Vec::with_capacity(count);
        for (target, &at) in targets.iter().zip(&conn_of) {
            if execution.is_none() {
                executed.push(None);
                continue;
            }
            let node_sql: Arc<[u8]> = Arc::from(target.sql.to_bytes());
            match crate::session::ensure_prepared(&mut conns[at], &node_sql).await? {
                Ok(backend) => executed.push(Some(backend.id)),
                Err(err) => {
                    for conn in conns {
                        self.release(conn, &classified);
                    }
                    return Err(Failure::Reply(err));
                }
            }
        }
        let mut unread: Vec<usize> = vec![0; conns.len()];
        // Each command is built as it is sent, in this one buffer: one
        // node's copy of the statement in memory at a time, not one per
        // node (a statement on 64 tables would take 64 copies); a long
        // query is streamed, without a copy.
        let mut command = Vec::new();
        for ((target, &at), backend_id) in targets.iter().zip(&conn_of).zip(&executed) {
            match (&execution, backend_id) {
                (Some(exec), Some(id)) => {
                    // The packet carries its parameter types: only the
                    // statement id differs from node to node. Cursors are
                    // not kept (see `Session::execute`): flags 0.
                    command.clear();
                    command.extend_from_slice(exec.packet);
                    set_statement_id(&mut command, *id);
                    if let Some(flags) = command.get_mut(5) {
                        *flags = 0;
                    }
                }
                _ if params.is_empty() => {
                    conns[at].broken = true;
                    unread[at] += 1;
                    conns[at].send_node_command(COM_QUERY, &target.sql).await?;
                    continue;
                }
                _ => query_command(target, params, &mut command),
            }
            // Until its replies are read, a connection cannot be reused:
            // an early return closes it.
            conns[at].broken = true;
            unread[at] += 1;
            conns[at].send_command(&command).await?;
        }
        for (i, &at) in conn_of.iter().enumerate() {
            let part = Part {
                first: i == 0,
                last: i + 1 == count,
            };
            let fix = self.status_fix();
            let outcome = forward_part(
                &mut conns[at],
                &mut self.writer,
                part,
                executed[i],
                Some(&self.db.metadata),
                fix,
            )
            .await?;
            unread[at] -= 1;
            if unread[at] == 0 {
                conns[at].broken = false;
            }
            self.note_outcome(&outcome);
            if let Outcome::Err(_) = outcome {
                break;
            }
            if let Outcome::Ok(ok) = &outcome {
                self.status = ok.status;
            }
        }
        for conn in conns {
            self.release(conn, &classified);
        }
        Ok(())
    }

    /// A SELECT over several data sources, their sorted rows merged.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn merge_select(
        &mut self,
        targets: Vec<Target<'_>>,
        first_table: Option<&FirstTable<'_>>,
        scatter: &ScatterSelect,
        offset: u64,
        limit: Option<u64>,
        having: Option<&HavingCond>,
        format: RowFormat,
    ) -> Result<(), Failure> {
        let classified = Classified::default();
        // A second connection of a data source sees what the first one
        // does only when no transaction (or pinned state) ties the session
        // to one connection.
        let may_split = first_table.is_some()
            && self.conns.held().is_empty()
            && self.conns.pinned().is_none()
            && !self.in_transaction()
            && self.autocommit();
        let mut conns: Vec<PooledConn> = Vec::with_capacity(targets.len() + 1);
        let mut ahead = None;
        for (i, target) in targets.iter().enumerate() {
            let pool = self.pool_of(&target.data_source)?;
            let mut conn = self.checkout_on(&pool, &classified).await?;
            let mut sql = &target.sql;
            if let (0, Some(first)) = (i, first_table) {
                // The column definitions the client sees: see `definitions`.
                let spare = if may_split {
                    pool.try_acquire_ready(self.flavor, self.vars.fingerprint(), &self.holder)
                        .await
                } else {
                    None
                };
                match spare {
                    Some(mut spare) => {
                        debug!("first table runs as a source of its own");
                        spare.start_node_query(&first.sql).await?;
                        conns.push(spare);
                        sql = &first.rest;
                    }
                    None => {
                        let how = if first.repeatable {
                            Ahead::Run
                        } else {
                            Ahead::Prepare
                        };
                        debug!(?how, "first table's definitions from a command ahead");
                        conn.queue_node_command(how.command_code(), &first.sql)
                            .await?;
                        ahead = Some(how);
                    }
                }
            }
            // Every node starts at once; rows are read as the merge needs
            // them. Each statement is written out as it is sent, never
            // built whole when long (a data source's UNION of its tables
            // repeats the client's text once per table).
            conn.start_node_query(sql).await?;
            conns.push(conn);
        }
        let mut shown: Option<Vec<ColumnInfo>> = None;
        if let (Some(how), Some(conn)) = (ahead, conns.first_mut()) {
            match how.read(conn).await {
                Ok(columns) => shown = columns,
                Err(e) => {
                    for mut conn in conns {
                        // Replies not read to their end: these connections are closed.
                        conn.broken = true;
                        self.release(conn, &classified);
                    }
                    return Err(e.into());
                }
            }
        }
        let shape = MergeShape {
            scatter,
            offset,
            limit,
            having,
        };
        let mut result = self.client_result(format, Header::Tables);
        let merged = merge_started(&mut conns, shown, shape, &mut result).await;
        for conn in conns {
            self.release(conn, &classified);
        }
        merged?;
        self.push_end_of_result();
        Ok(())
    }
}
