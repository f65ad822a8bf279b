//! Running sharded statements for a session: planning them and running a
//! plan's single node here; SELECTs over several nodes in `merge` (their
//! result sets read by `rows`), writes over several in `fanout`, and
//! transaction control across data sources in `transaction`.

use std::sync::Arc;

use shardgate_rules::ColumnKinds;
use tracing::debug;

use super::forward::{forward_part, Answer, Part};
use super::prepared::NodeStatement;
use super::{Failure, Session};
use crate::backend::Pool;
use crate::backend::PooledConn;
use crate::command::COM_QUERY;
use crate::response::{Outcome, ResponseKind};
use crate::row::RowFormat;
use crate::stmt::set_statement_id;
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::execute::columns::{self, with_insert_columns};
use shardgate_core::execute::metadata::metadata_rows;
use shardgate_core::execute::Connections;
use shardgate_sql::classify::Classified;
use shardgate_sql::shard::analyze::{ShardedStatement, StatementKind};
use shardgate_sql::shard::node_sql::NodeSql;
use shardgate_sql::shard::params::ParamValue;
use shardgate_sql::shard::plan::{node_target, plan, PlanContext, Route, Target};
use shardgate_sql::shard::rewrite::with_params_bound;
use shardgate_sql::text::restore;

mod fanout;
mod merge;
mod rows;
mod transaction;

use rows::Header;

use shardgate_core::execute::fanout::FanoutWrite;
use shardgate_sql::dialect::MARIADB;

/// A prepared execution: the client's COM_STMT_EXECUTE (with parameter
/// types, as `retarget_execute` leaves it) to re-target at each node's own
/// statement, in place.
pub struct Execution<'a> {
    pub packet: &'a mut [u8],
}

impl Session {
    pub(super) fn plan_context(&self) -> PlanContext<'_> {
        PlanContext {
            dialect: &MARIADB,
            rules: &self.db.rules,
            default_data_source: &self.db.default_data_source,
            keys: &self.shared.keys,
            kinds: ColumnKinds::none(),
        }
    }

    /// The pool of a data source's primary.
    pub(super) fn primary_pool(&self, data_source: &str) -> Result<Arc<Pool>, Failure> {
        primary_pool_of(&self.shared, data_source)
    }

    /// The statement of the prepared statement the execute `payload` names
    /// for its node at `position`, built on first use and kept with the
    /// prepared statement. None when there is no such node.
    pub(super) fn node_statement(
        &mut self,
        id: u32,
        position: usize,
    ) -> Result<Option<NodeStatement>, Failure> {
        let (shared, db) = (&self.shared, &self.db);
        let Some(prepared) = self
            .statements
            .get_mut(id)
            .and_then(|stmt| stmt.sharded.as_mut())
        else {
            return Ok(None);
        };
        if let Some(node) = prepared.node(position) {
            return Ok(Some(node.clone()));
        }
        let ctx = PlanContext {
            dialect: &MARIADB,
            rules: &db.rules,
            default_data_source: &db.default_data_source,
            keys: &shared.keys,
            kinds: ColumnKinds::none(),
        };
        let Some(target) = node_target(&prepared.statement, &prepared.text, position, &ctx) else {
            return Ok(None);
        };
        let node = NodeStatement {
            pool: primary_pool_of(shared, &target.data_source)?,
            sql: Arc::from(target.sql.to_bytes()),
        };
        prepared.keep_node(position, node.clone());
        Ok(Some(node))
    }

    /// Plans and runs a statement on sharded or broadcast tables.
    pub(super) async fn run_sharded(
        &mut self,
        st: &ShardedStatement,
        sql: &str,
        params: &[ParamValue],
        execution: Option<Execution<'_>>,
    ) -> Result<(), Failure> {
        let binary_rows = execution.is_some();
        let filled;
        let st = match self.insert_columns(st).await? {
            Some(with_columns) => {
                filled = with_columns;
                &filled
            }
            None => st,
        };
        if st.kind == StatementKind::Ddl {
            self.db.forget_columns(&st.tables);
        }
        let kinds = self.column_kinds(st).await?;
        let ctx = PlanContext {
            kinds: &kinds,
            ..self.plan_context()
        };
        let mut route = plan(st, sql, params, true, &ctx).map_err(|e| Failure::Reply(e.into()))?;
        if let Route::One(target) = &mut route {
            if let Some(ds) = self.broadcast_read_source(st) {
                target.data_source = ds;
            }
        }
        debug!(?route, "routed");
        if !self.current.read_back_vars.is_empty() && !matches!(route, Route::One(_)) {
            return Err(Failure::Reply(ProxyError::new(ErrorKind::NotSupported, format!(
                "assigning user variables (@{}) in a statement that runs on several data nodes is not supported: each node would assign its own value; select the rows first, then SET the variable",
                self.current.read_back_vars.join(", @")
            ))));
        }
        self.count_routed(st, &route);
        match route {
            Route::One(target) => match execution {
                Some(exec) if st.returns_rows() => {
                    let pool = self.pool_of(&target.data_source)?;
                    let node_sql: Arc<[u8]> = Arc::from(target.sql.to_bytes());
                    self.execute_on(&pool, node_sql, exec.packet).await
                }
                _ if binary_rows && !params.is_empty() => {
                    let bound = with_params_bound(&MARIADB, &target.sql.text(), params);
                    self.query_on(&target.data_source, &NodeSql::from(bound))
                        .await
                }
                _ => self.query_on(&target.data_source, &target.sql).await,
            },
            Route::Concat(targets) => self.concat(targets, params, execution).await,
            Route::Merge {
                targets,
                first_table,
                scatter,
                offset,
                limit,
                having,
            } => {
                let format = if binary_rows {
                    RowFormat::Binary
                } else {
                    RowFormat::Text
                };
                self.merge_select(
                    targets,
                    first_table.as_ref(),
                    &scatter,
                    offset,
                    limit,
                    having.as_ref(),
                    format,
                )
                .await
            }
            Route::Fanout {
                targets,
                generated_id,
                insert_rows,
                returning: Some(returning),
                ..
            } => {
                let format = if binary_rows {
                    RowFormat::Binary
                } else {
                    RowFormat::Text
                };
                self.fanout_returning(&targets, &returning, &insert_rows, generated_id, format)
                    .await
            }
            Route::Fanout {
                targets,
                affected,
                transactional,
                generated_id,
                insert_rows,
                returning: None,
                guarded_columns,
            } => {
                let write = FanoutWrite {
                    affected,
                    transactional,
                    own_transaction: self.autocommit() && !self.in_transaction(),
                    generated_id,
                    insert_rows: &insert_rows,
                    guarded_columns: &guarded_columns,
                };
                self.fanout(&targets, write).await
            }
        }
    }

    /// Counts the statements sent to each data source, by logical table.
    fn count_routed(&self, st: &ShardedStatement, route: &Route) {
        let table = st.tables.first().map_or("", String::as_str);
        let metrics = &self.shared.metrics;
        match route {
            Route::One(target) => metrics.routed(&target.data_source, table, 0),
            Route::Concat(targets) | Route::Merge { targets, .. } => {
                for target in targets {
                    metrics.routed(&target.data_source, table, 0);
                }
            }
            Route::Fanout {
                targets,
                insert_rows,
                ..
            } => {
                for (n, target) in targets.iter().enumerate() {
                    let rows = insert_rows.get(n).map_or(0, |rows| rows.len()) as u64;
                    metrics.routed(&target.data_source, table, rows);
                }
            }
        }
    }

    /// An INSERT without a column list with its table's columns (see
    /// [`with_insert_columns`]).
    async fn insert_columns(
        &mut self,
        st: &ShardedStatement,
    ) -> Result<Option<ShardedStatement>, Failure> {
        let db = Arc::clone(&self.db);
        with_insert_columns(self, &db, st).await
    }

    /// The kinds of `st`'s sharding columns that place rows by type (see
    /// [`columns::column_kinds`]).
    pub(super) async fn column_kinds(
        &mut self,
        st: &ShardedStatement,
    ) -> Result<ColumnKinds, Failure> {
        let db = Arc::clone(&self.db);
        columns::column_kinds(self, &db, st).await
    }

    /// Runs one COM_QUERY `payload` on a data source, forwarding the reply.
    async fn query_on(&mut self, data_source: &str, sql: &NodeSql<'_>) -> Result<(), Failure> {
        let pool = self.pool_of(data_source)?;
        let classified = Classified::default();
        let mut conn = self.checkout_on(&pool, &classified).await?;
        // Streamed when long: never built whole, as a fanned-out one's.
        conn.send_node_command(COM_QUERY, sql).await?;
        let outcome = self
            .forward_to_client(&mut conn, ResponseKind::ResultSets, Answer::Plain)
            .await?;
        if let Outcome::Ok(_) = outcome {
            self.remember_user_vars(&mut conn).await?;
        }
        self.release(conn, &classified);
        Ok(())
    }

    /// A metadata query on the default data source, its physical names
    /// mapped to logical ones and the rows of a sharded table's physical
    /// tables folded into one.
    /// `format`: the client's protocol (a prepared statement's execution
    /// gets binary rows).
    pub(super) async fn metadata_query(
        &mut self,
        sql: &str,
        format: RowFormat,
    ) -> Result<(), Failure> {
        let physical = self.db.metadata.to_physical_sql(sql);
        let classified = Classified::default();
        let pool = self.db.default_pool.clone();
        let mut conn = self.checkout_on(&pool, &classified).await?;
        let db = self.db.clone();
        let mut result = self.client_result(format, Header::Metadata);
        let outcome =
            metadata_rows(&mut conn, &db.metadata, &restore(&physical), &mut result).await;
        self.release(conn, &classified);
        outcome?;
        self.push_end_of_result();
        Ok(())
    }

    /// Executes a node's statement (prepared there on first use) with the
    /// client's parameters, forwarding the whole reply.
    pub(super) async fn execute_on(
        &mut self,
        pool: &Arc<Pool>,
        node_sql: Arc<[u8]>,
        packet: &mut [u8],
    ) -> Result<(), Failure> {
        let part = Part {
            first: true,
            last: true,
        };
        self.execute_part(pool, node_sql, packet, part).await?;
        Ok(())
    }

    /// Executes a node's statement with the client's parameters: `packet`
    /// (an [`Execution`]'s) is re-targeted in place at the node's statement.
    async fn execute_part(
        &mut self,
        pool: &Arc<Pool>,
        node_sql: Arc<[u8]>,
        packet: &mut [u8],
        part: Part,
    ) -> Result<Outcome, Failure> {
        let classified = Classified::default();
        let mut conn = self.checkout_on(pool, &classified).await?;
        let backend = match super::ensure_prepared(&mut conn, &node_sql).await? {
            Ok(b) => b,
            Err(err) => {
                self.release(conn, &classified);
                return Err(Failure::Reply(err));
            }
        };
        // The packet already carries its parameter types: only the
        // statement id differs from node to node. Cursors are not kept (see
        // `Session::execute`): flags 0.
        set_statement_id(packet, backend.id);
        if let Some(flags) = packet.get_mut(5) {
            *flags = 0;
        }
        conn.send_command(packet).await?;
        let fix = self.status_fix();
        let outcome = if part.first && part.last {
            let stream_end = self.reply_may_stream();
            super::forward::forward_reply(
                &mut conn,
                &mut self.writer,
                ResponseKind::ResultSets,
                Answer::Execute {
                    backend_id: backend.id,
                },
                Some(&self.db.metadata),
                fix,
                stream_end,
            )
            .await?
        } else {
            forward_part(
                &mut conn,
                &mut self.writer,
                part,
                Some(backend.id),
                Some(&self.db.metadata),
                fix,
            )
            .await?
        };
        self.note_outcome(&outcome);
        if let Outcome::Ok(ok) = &outcome {
            self.status = ok.status;
            self.remember_user_vars(&mut conn).await?;
        }
        self.release(conn, &classified);
        Ok(outcome)
    }
}

/// The pool of a data source the rules name.
fn primary_pool_of(
    shared: &crate::backend::Shared,
    data_source: &str,
) -> Result<Arc<Pool>, Failure> {
    shared.pool(data_source).cloned().ok_or_else(|| {
        Failure::Reply(ProxyError::new(
            ErrorKind::Internal,
            format!("the rules name data source {data_source}, which is not configured"),
        ))
    })
}

/// The COM_QUERY payload of a node statement into `out` (cleared first),
/// its parameter markers bound to `params` (a prepared statement's
/// execution run as text) when there are any. Built when it is sent: see
/// [`shardgate_sql::shard::node_sql`].
fn query_command(target: &Target<'_>, params: &[ParamValue], out: &mut Vec<u8>) {
    if params.is_empty() {
        target.sql.write_command(COM_QUERY, out);
    } else {
        let bound = with_params_bound(&MARIADB, &target.sql.text(), params);
        NodeSql::from(bound).write_command(COM_QUERY, out);
    }
}

/// The session lends the core's execution its connections to the data
/// sources: those its transaction holds, else pooled ones in its state
/// (a replica's when the statement reads and may go to one).
impl Connections for Session {
    type Conn = PooledConn;
    type Error = Failure;

    async fn checkout(&mut self, data_source: &str) -> Result<PooledConn, Failure> {
        let pool = self.pool_of(data_source)?;
        self.checkout_on(&pool, &Classified::default()).await
    }

    fn release(&mut self, conn: PooledConn) {
        Session::release(self, conn, &Classified::default());
    }
}
