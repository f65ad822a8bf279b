//! Running sharded statements for a session: a plan's single node, its
//! concatenated nodes, or its fan-out of writes (in one transaction when the
//! client has none open), and transaction control across data sources.

use std::sync::Arc;

use shardgate_rules::ColumnKinds;
use tracing::{debug, error, warn};

use super::definitions::Ahead;
use super::forward::{forward_part, Answer, Part};
use super::prepared::NodeStatement;
use super::{Failure, Session};
use crate::backend::{Pool, PooledConn};
use crate::databases::TableColumns;
use crate::error::{codes, BackendError};
use crate::merge::column::ColumnInfo;
use crate::merge::engine::{merge, RowSink, RowSource};
use crate::merge::error::MergeError;
use crate::merge::value::{decode_row, encode_row, RowFormat, Value};
use crate::shard::analyze::{ShardedStatement, StatementKind};
use crate::shard::having::Cond as HavingCond;
use crate::shard::params::ParamValue;
use crate::shard::plan::{node_target, plan, Affected, FirstTable, PlanContext, Route, Target};
use crate::shard::rewrite::move_guard;
use crate::shard::scatter::{merge_plan, ScatterSelect};
use crate::sql::classify::{Classified, Savepoint};
use crate::sql::text::restore;
use crate::wire::command::COM_QUERY;
use crate::wire::ok_err::{encode_eof, put_lenenc_int, InfoCounts};
use crate::wire::ok_err::{ErrInfo, OkInfo};
use crate::wire::packet::PacketWriter;
use crate::wire::response::{Outcome, ResponseKind};
use crate::wire::stmt::{set_statement_id, statement_id};
use tokio::net::tcp::OwnedWriteHalf;

/// A prepared execution: the client's COM_STMT_EXECUTE (with parameter
/// types, as `retarget_execute` leaves it) to re-target at each node's own
/// statement, in place.
pub struct Execution<'a> {
    pub packet: &'a mut [u8],
}

impl Session {
    pub(super) fn plan_context(&self) -> PlanContext<'_> {
        PlanContext {
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
        payload: &[u8],
        position: usize,
    ) -> Result<Option<NodeStatement>, Failure> {
        let (shared, db) = (&self.shared, &self.db);
        let Some(prepared) = statement_id(payload)
            .and_then(|id| self.statements.get_mut(id))
            .and_then(|stmt| stmt.sharded.as_mut())
        else {
            return Ok(None);
        };
        if let Some(node) = prepared.node(position) {
            return Ok(Some(node.clone()));
        }
        let ctx = PlanContext {
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
            sql: Arc::from(restore(&target.sql).as_ref()),
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
        if !self.read_back_vars.is_empty() && !matches!(route, Route::One(_)) {
            return Err(Failure::Reply(crate::error::not_supported(format!(
                "assigning user variables (@{}) in a statement that runs on several data nodes is not supported: each node would assign its own value; select the rows first, then SET the variable",
                self.read_back_vars.join(", @")
            ))));
        }
        self.count_routed(st, &route);
        match route {
            Route::One(target) => match execution {
                Some(exec) if st.returns_rows() => {
                    let pool = self.pool_of(&target.data_source)?;
                    let node_sql: Arc<[u8]> = Arc::from(restore(&target.sql).as_ref());
                    self.execute_on(&pool, node_sql, exec.packet).await
                }
                _ => {
                    let text = if binary_rows {
                        bind_for_text(&target, params)
                    } else {
                        target.sql.clone()
                    };
                    self.query_on(&target.data_source, &text).await
                }
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
                self.fanout_returning(targets, returning, &insert_rows, generated_id, format)
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
                    generated_id,
                    insert_rows: &insert_rows,
                    guarded_columns: &guarded_columns,
                };
                self.fanout(targets, write).await
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
                    let rows = insert_rows.get(n).map_or(0, Vec::len) as u64;
                    metrics.routed(&target.data_source, table, rows);
                }
            }
        }
    }

    /// For an INSERT without a column list into a sharded table: the
    /// statement with the table's columns (learnt once from its first node),
    /// so its sharding columns can be found.
    async fn insert_columns(
        &mut self,
        st: &ShardedStatement,
    ) -> Result<Option<ShardedStatement>, Failure> {
        if !st.insert.as_ref().is_some_and(|s| s.implicit_columns) {
            return Ok(None);
        };
        let Some(table) = st
            .tables
            .iter()
            .find(|t| self.db.rules.table_kind(t) == shardgate_rules::TableKind::Sharded)
        else {
            return Ok(None);
        };
        let Some(columns) = self.table_columns(table).await? else {
            return Ok(None);
        };
        let mut with_columns = st.clone();
        if let Some(insert) = with_columns.insert.as_mut() {
            insert.columns = columns.names.clone();
        }
        Ok(Some(with_columns))
    }

    /// The kinds of the sharding columns of `st`'s tables whose values
    /// place rows by the column's type, learnt from a node when first
    /// needed. A table the node cannot describe (not created yet) leaves
    /// its columns unknown: the statement then meets the node's own error.
    pub(super) async fn column_kinds(
        &mut self,
        st: &ShardedStatement,
    ) -> Result<ColumnKinds, Failure> {
        if !matches!(
            st.kind,
            StatementKind::Select
                | StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
        ) {
            return Ok(ColumnKinds::default());
        }
        let db = Arc::clone(&self.db);
        let mut kinds = ColumnKinds::default();
        for table in &st.tables {
            let placed = db.rules.columns_placed_by_type(table);
            if placed.is_empty() {
                continue;
            }
            match self.table_columns(table).await {
                Ok(Some(columns)) => columns.add_kinds(&placed, &mut kinds),
                Ok(None) => {}
                // Unknown kinds route values as written, as before.
                Err(_) => debug!(table, "columns not learnt: values route as written"),
            }
        }
        Ok(kinds)
    }

    /// `table`'s columns, learnt once from its first node; None for a
    /// table with no nodes.
    async fn table_columns(&mut self, table: &str) -> Result<Option<Arc<TableColumns>>, Failure> {
        if let Some(columns) = self.db.columns_of(table) {
            return Ok(Some(columns));
        }
        let Some(node) = self.db.rules.nodes(table).into_iter().next() else {
            return Ok(None);
        };
        let pool = self.pool_of(&node.data_source)?;
        let classified = Classified::default();
        let mut conn = self.checkout_on(&pool, &classified).await?;
        let rows = conn
            .query_text(&format!(
                "SHOW COLUMNS FROM `{}`",
                node.table.replace('`', "``")
            ))
            .await;
        self.release(conn, &classified);
        let columns = Arc::new(TableColumns::from_rows(rows?));
        self.db.learn_columns(table, columns.clone());
        Ok(Some(columns))
    }

    /// Runs one text statement on a data source, forwarding the reply.
    async fn query_on(&mut self, data_source: &str, sql: &str) -> Result<(), Failure> {
        let pool = self.pool_of(data_source)?;
        let classified = Classified::default();
        let mut conn = self.checkout_on(&pool, &classified).await?;
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(&restore(sql));
        let outcome = self
            .run_on(&mut conn, &payload, ResponseKind::ResultSets, Answer::Plain)
            .await?;
        if let Outcome::Ok(_) = outcome {
            self.remember_user_vars(&mut conn).await?;
        }
        self.release(conn, &classified);
        Ok(())
    }

    /// Rows of several nodes, one after the other, as one result set.
    /// Every node's statement is sent before any reply is read (one
    /// connection per data source, its tables' statements pipelined on
    /// it), so the nodes work at once and a data source with four tables
    /// costs one round trip, not four. The replies are forwarded in node
    /// order.
    async fn concat(
        &mut self,
        targets: Vec<Target>,
        params: &[ParamValue],
        execution: Option<Execution<'_>>,
    ) -> Result<(), Failure> {
        let classified = Classified::default();
        let count = targets.len();
        let mut conns: Vec<PooledConn> = Vec::new();
        let mut conn_of: Vec<usize> = Vec::with_capacity(count);
        for target in &targets {
            let pool = self.pool_of(&target.data_source)?;
            let at = match conns.iter().position(|c| Arc::ptr_eq(c.pool(), &pool)) {
                Some(at) => at,
                None => {
                    conns.push(self.checkout_on(&pool, &classified).await?);
                    conns.len() - 1
                }
            };
            conn_of.push(at);
        }
        // Each node's command. Prepared on first use: before anything is
        // pipelined on the connection, whose replies must come in order.
        let mut commands: Vec<Vec<u8>> = Vec::with_capacity(count);
        // The backend statement each node executes (None: a query).
        let mut executed: Vec<Option<u32>> = Vec::with_capacity(count);
        for (target, &at) in targets.iter().zip(&conn_of) {
            let command = match &execution {
                None => {
                    let sql = if params.is_empty() {
                        target.sql.clone()
                    } else {
                        bind_for_text(target, params)
                    };
                    let mut payload = Vec::with_capacity(sql.len() + 1);
                    payload.push(COM_QUERY);
                    payload.extend_from_slice(&restore(&sql));
                    executed.push(None);
                    payload
                }
                Some(exec) => {
                    let node_sql: Arc<[u8]> = Arc::from(restore(&target.sql).as_ref());
                    let backend = match super::ensure_prepared(&mut conns[at], &node_sql).await? {
                        Ok(b) => b,
                        Err(err) => {
                            for conn in conns {
                                self.release(conn, &classified);
                            }
                            return Err(Failure::Reply(err));
                        }
                    };
                    // The packet carries its parameter types: only the
                    // statement id differs from node to node. Cursors are
                    // not kept (see `Session::execute`): flags 0.
                    let mut packet = exec.packet.to_vec();
                    set_statement_id(&mut packet, backend.id);
                    if let Some(flags) = packet.get_mut(5) {
                        *flags = 0;
                    }
                    executed.push(Some(backend.id));
                    packet
                }
            };
            commands.push(command);
        }
        let mut unread: Vec<usize> = vec![0; conns.len()];
        for (command, &at) in commands.iter().zip(&conn_of) {
            // Until its replies are read, a connection cannot be reused:
            // an early return closes it.
            conns[at].broken = true;
            unread[at] += 1;
            conns[at].send_command(command).await?;
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
    async fn merge_select(
        &mut self,
        targets: Vec<Target>,
        first_table: Option<&FirstTable>,
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
            && self.held.is_empty()
            && self.pinned.is_none()
            && !self.in_transaction()
            && self.autocommit();
        let mut conns: Vec<PooledConn> = Vec::with_capacity(targets.len() + 1);
        let mut ahead = None;
        for (i, target) in targets.iter().enumerate() {
            let pool = self.pool_of(&target.data_source)?;
            let mut conn = self.checkout_on(&pool, &classified).await?;
            let mut sql = target.sql.as_str();
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
                        start_query(&mut spare, &first.sql).await?;
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
                        conn.queue_command(&how.command(&first.sql));
                        ahead = Some(how);
                    }
                }
            }
            // Every node starts at once; rows are read as the merge needs them.
            start_query(&mut conn, sql).await?;
            conns.push(conn);
        }
        let mut shown: Option<Vec<ColumnInfo>> = None;
        let mut failure: Option<Failure> = None;
        if let (Some(how), Some(conn)) = (ahead, conns.first_mut()) {
            match how.read(conn).await? {
                Ok(columns) => shown = columns,
                Err(err) => failure = Some(Failure::Reply(err)),
            }
        }
        let mut columns: Option<Vec<ColumnInfo>> = None;
        for conn in &mut conns {
            match read_columns(conn).await {
                Ok(Ok(c)) => {
                    columns.get_or_insert(c);
                }
                Ok(Err(err)) => {
                    failure.get_or_insert(Failure::Reply(err));
                }
                Err(e) => {
                    // Kept as a backend failure: a lost replica may be retried.
                    failure.get_or_insert(e.into());
                }
            }
        }
        let plan = match (failure, columns) {
            (None, Some(columns)) => {
                merge_plan(scatter, columns, offset, limit, having).map_err(|e| {
                    Failure::Reply(ErrInfo::new(
                        codes::ER_UNKNOWN_ERROR,
                        "HY000",
                        format!("cannot merge node results: {e}"),
                    ))
                })
            }
            (Some(failure), _) => Err(failure),
            (None, None) => Err(Failure::Reply(ErrInfo::new(
                codes::ER_UNKNOWN_ERROR,
                "HY000",
                "no data node answered",
            ))),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(failure) => {
                for mut conn in conns {
                    // Replies not read to their end: these connections are closed.
                    conn.broken = true;
                    self.release(conn, &classified);
                }
                return Err(failure);
            }
        };
        let deprecate_eof = self.flavor.deprecate_eof();
        let mut count = Vec::new();
        put_lenenc_int(&mut count, plan.visible as u64);
        self.writer.push(&count);
        let shown = shown
            .filter(|c| c.len() == plan.columns.len())
            .unwrap_or_else(|| plan.columns.clone());
        for column in &shown[..plan.visible] {
            match self.db.metadata.logical_column(&column.raw) {
                Some(logical) => self.writer.push(&logical),
                None => self.writer.push(&column.raw),
            }
        }
        if !deprecate_eof {
            self.writer.push(&encode_eof(0, self.reply_status()));
        }
        let visible: Vec<ColumnInfo> = plan.columns[..plan.visible].to_vec();
        let mut sources: Vec<NodeRows<'_>> = conns
            .iter_mut()
            .map(|conn| NodeRows {
                conn,
                columns: &plan.columns,
                deprecate_eof,
                done: false,
                lost: false,
            })
            .collect();
        let mut sink = ClientRows {
            writer: &mut self.writer,
            columns: &visible,
            format,
            buf: Vec::new(),
        };
        let result = merge(
            &plan,
            sources.iter_mut().map(SourceRef).collect(),
            &mut sink,
        )
        .await;
        // A connection in the client's transaction must survive an early
        // end (LIMIT reached): read the rest of its reply. Others are closed.
        for source in &mut sources {
            if !source.done && source.conn.in_transaction() {
                while let Ok(Some(())) = source.skip().await {}
            }
        }
        let unfinished: Vec<bool> = sources.iter().map(|s| !s.done).collect();
        let lost = sources
            .iter()
            .find(|s| s.lost)
            .map(|s| s.conn.ds.to_string());
        drop(sources);
        for (mut conn, unfinished) in conns.into_iter().zip(unfinished) {
            conn.broken = unfinished;
            self.release(conn, &classified);
        }
        match result {
            Ok(stats) => {
                debug!(
                    rows_in = stats.rows_in,
                    rows_out = stats.rows_out,
                    peak = stats.peak_buffered,
                    "merged"
                );
                self.push_end_of_result();
                Ok(())
            }
            Err(MergeError::Source(message)) if message.starts_with("client:") => {
                Err(Failure::ClientGone)
            }
            Err(MergeError::Plan(message)) => {
                Err(Failure::Reply(crate::error::not_supported(message)))
            }
            Err(e) => {
                let err = ErrInfo::new(
                    codes::ER_UNKNOWN_ERROR,
                    "HY000",
                    format!("merging node results failed: {e}"),
                );
                Err(match lost {
                    Some(server) => Failure::Lost { server, err },
                    None => Failure::Reply(err),
                })
            }
        }
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
        let mut payload = Vec::with_capacity(physical.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(&restore(&physical));
        conn.send_command(&payload).await?;
        let columns = match read_columns(&mut conn).await? {
            Ok(columns) => columns,
            Err(err) => {
                // Not a result set (or an error): nothing to map.
                self.release(conn, &classified);
                return Err(Failure::Reply(err));
            }
        };
        let names = &self.db.metadata;
        let deprecate_eof = self.flavor.deprecate_eof();
        let mut count = Vec::new();
        put_lenenc_int(&mut count, columns.len() as u64);
        self.writer.push(&count);
        for column in &columns {
            let mut mapped = column.clone();
            if let Some(label) = names.logical_label(&column.name) {
                mapped.name = label;
            }
            if let Some(schema) = names.logical_cell(column.schema.as_bytes()) {
                mapped.schema = String::from_utf8_lossy(&schema).into_owned();
            }
            self.writer.push(&mapped.encode());
        }
        if !deprecate_eof {
            self.writer.push(&encode_eof(0, self.reply_status()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut source = NodeRows {
            conn: &mut conn,
            columns: &columns,
            deprecate_eof,
            done: false,
            lost: false,
        };
        let mut buf = Vec::new();
        let result = loop {
            match source.next().await {
                Ok(Some(mut row)) => {
                    for value in &mut row {
                        if let Value::Bytes(b) = value {
                            if let Some(mapped) = names.logical_cell(b) {
                                *b = mapped;
                            }
                        }
                    }
                    buf.clear();
                    encode_row(&row, &columns, RowFormat::Text, &mut buf);
                    // One row per logical table: its physical tables' rows fold.
                    if !seen.insert(buf.clone()) {
                        continue;
                    }
                    if format == RowFormat::Binary {
                        buf.clear();
                        encode_row(&row, &columns, format, &mut buf);
                    }
                    self.writer.push(&buf);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let finished = source.done;
        if !finished {
            conn.broken = true;
        }
        self.release(conn, &classified);
        if let Err(e) = result {
            return Err(Failure::Reply(ErrInfo::new(
                codes::ER_UNKNOWN_ERROR,
                "HY000",
                e.to_string(),
            )));
        }
        self.push_end_of_result();
        Ok(())
    }

    /// Writes on several nodes; one OK with the combined count.
    async fn fanout(
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
        let mut failure: Option<(String, ErrInfo)> = None;
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
                            failure = Some((target.data_source.clone(), e.to_client()));
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
                        let err = crate::error::not_supported(format!(
                            "this UPDATE changes the sharding column(s) {} of {n} row(s), which would have to move to another data node; DELETE them and INSERT them again",
                            guarded.join(", ")
                        ));
                        failure = Some((target.data_source.clone(), err));
                        break;
                    }
                    Err(e) => {
                        failure = Some((target.data_source.clone(), e.to_client()));
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
                    failure = Some((target.data_source.clone(), e.to_client()));
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
                            ErrInfo::new(
                                codes::ER_UNKNOWN_ERROR,
                                "HY000",
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
            return Err(Failure::Reply(ErrInfo {
                message: format!("{} (on data source {ds}; {undone})", err.message),
                ..err
            }));
        }
        if let Some(err) = end_error {
            return Err(Failure::Reply(err));
        }
        if let Some(id) = generated_id {
            self.last_insert = Some(super::LastInsert { id, conn_uid: 0 });
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

    /// COMMIT / ROLLBACK / SAVEPOINT ... on every data source of the
    /// transaction. With one (or none) it is an ordinary statement.
    pub(super) async fn transaction_control(
        &mut self,
        payload: &[u8],
        sql: &str,
        ends: bool,
        savepoint: Option<&Savepoint>,
        classified: &Classified,
    ) -> Result<(), Failure> {
        if ends {
            self.savepoints.clear();
        }
        if self.held.is_empty() && ends && self.transaction.is_some() {
            // A transaction that never reached a data source.
            self.transaction = None;
            self.reply_ok();
            return Ok(());
        }
        if self.held.len() <= 1 {
            let mut conn = match self.held.pop() {
                Some(conn) => conn,
                None => self.checkout(classified).await?,
            };
            if ends {
                // The reply shows the transaction ended.
                self.transaction = None;
            }
            let outcome = self
                .run_on(&mut conn, payload, ResponseKind::ResultSets, Answer::Plain)
                .await?;
            // A savepoint outside a transaction ends with its statement.
            if let (Some(op), Outcome::Ok(_), true) = (savepoint, outcome, conn.in_transaction()) {
                self.track_savepoint(op);
            }
            self.release(conn, classified);
            return Ok(());
        }
        // Every data source gets the statement whatever the others answer
        // (LOCAL mode), so it is sent to all before any reply is read: one
        // round trip, not one per data source.
        let mut command = Vec::with_capacity(sql.len() + 1);
        command.push(COM_QUERY);
        command.extend_from_slice(&restore(sql));
        let mut sent = Vec::with_capacity(self.held.len());
        for conn in &mut self.held {
            // Until its reply is read, a connection cannot be reused.
            conn.broken = true;
            sent.push(conn.send_command(&command).await);
        }
        let mut done = Vec::new();
        let mut failed: Option<ErrInfo> = None;
        let mut last = OkInfo::default();
        for (conn, sent) in self.held.iter_mut().zip(sent) {
            let reply = match sent {
                Ok(()) => conn.read_ok().await,
                Err(e) => Err(e),
            };
            // An error reply was read whole: the connection stays usable
            // (and keeps its transaction, for a failed SAVEPOINT command).
            conn.broken = !matches!(reply, Ok(_) | Err(BackendError::Server { .. }));
            match reply {
                Ok(ok) => {
                    last = ok;
                    done.push(conn.ds.to_string());
                }
                Err(e) => {
                    let err = e.to_client();
                    warn!(ds = %conn.ds, "{sql} failed: {}", err.message);
                    failed.get_or_insert(ErrInfo {
                        message: format!(
                            "{} (on data source {}; done on: {})",
                            err.message,
                            conn.ds,
                            if done.is_empty() {
                                "none".into()
                            } else {
                                done.join(", ")
                            }
                        ),
                        ..err
                    });
                }
            }
        }
        if ends {
            self.transaction = None;
        }
        for conn in std::mem::take(&mut self.held) {
            self.release(conn, classified);
        }
        if let Some(err) = failed {
            let commit =
                crate::sql::label::first_word(sql.as_bytes()).eq_ignore_ascii_case(b"commit");
            if commit && !done.is_empty() {
                error!(committed = %done.join(", "), "COMMIT failed after other data sources committed: {}", err.message);
                self.shared.metrics.partial_commit();
            }
            return Err(Failure::Reply(err));
        }
        if let Some(op) = savepoint {
            self.track_savepoint(op);
        }
        self.status = last.status;
        self.writer.push(
            &OkInfo {
                status: self.reply_status(),
                ..last
            }
            .encode(),
        );
        Ok(())
    }

    /// Follows a savepoint statement that succeeded, as the server keeps
    /// its savepoints: setting one again moves it last, rolling back to one
    /// forgets those after it, releasing one forgets it and those after.
    fn track_savepoint(&mut self, op: &Savepoint) {
        let position = |name: &str| {
            self.savepoints
                .iter()
                .position(|s| s.eq_ignore_ascii_case(name))
        };
        match op {
            Savepoint::Set(name) => {
                if let Some(i) = position(name) {
                    self.savepoints.remove(i);
                }
                self.savepoints.push(name.clone());
            }
            Savepoint::RollbackTo(name) => {
                if let Some(i) = position(name) {
                    self.savepoints.truncate(i + 1);
                }
            }
            Savepoint::Release(name) => {
                if let Some(i) = position(name) {
                    self.savepoints.truncate(i);
                }
            }
        }
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
            super::forward::forward_reply(
                &mut conn,
                &mut self.writer,
                ResponseKind::ResultSets,
                Answer::Execute {
                    backend_id: backend.id,
                },
                Some(&self.db.metadata),
                fix,
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

/// What a fanned-out write needs besides its targets.
struct FanoutWrite<'a> {
    affected: Affected,
    transactional: bool,
    generated_id: Option<u64>,
    insert_rows: &'a [Vec<usize>],
    guarded_columns: &'a [String],
}

/// The count a [`move_guard`] query answers.
async fn moving_rows(conn: &mut PooledConn, guard: &str) -> Result<u64, BackendError> {
    let rows = conn.query_text_bytes(&restore(guard)).await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The pool of a data source the rules name.
fn primary_pool_of(
    shared: &crate::server::Shared,
    data_source: &str,
) -> Result<Arc<Pool>, Failure> {
    shared.pool(data_source).cloned().ok_or_else(|| {
        Failure::Reply(ErrInfo::new(
            codes::ER_UNKNOWN_ERROR,
            "HY000",
            format!("the rules name data source {data_source}, which is not configured"),
        ))
    })
}

/// Sends a query whose reply is read later. Until it is read to the end
/// the connection cannot go back to the pool: an early return closes it.
pub(super) async fn start_query(
    conn: &mut PooledConn,
    sql: &str,
) -> Result<(), crate::error::BackendError> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(COM_QUERY);
    payload.extend_from_slice(&restore(sql));
    conn.send_command(&payload).await?;
    conn.broken = true;
    Ok(())
}

/// Reads a result set's column definitions; a node's error is the inner error.
pub(super) async fn read_columns(
    conn: &mut PooledConn,
) -> Result<Result<Vec<ColumnInfo>, ErrInfo>, crate::error::BackendError> {
    let ds = conn.ds.to_string();
    let lost = |e| crate::error::BackendError::from_read(&ds, e);
    let (_, first) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    match first.first() {
        Some(0xFF) => {
            return Ok(Err(ErrInfo::parse(&first).unwrap_or_else(|| {
                ErrInfo::new(codes::ER_UNKNOWN_ERROR, "HY000", "node error")
            })));
        }
        Some(0x00) | None => {
            return Ok(Err(ErrInfo::new(
                codes::ER_UNKNOWN_ERROR,
                "HY000",
                "a node answered a SELECT without rows",
            )));
        }
        _ => {}
    }
    let mut rest = &first[..];
    let n = crate::wire::ok_err::take_lenenc_int(&mut rest).unwrap_or(0);
    // A query's result always comes with its definitions.
    if conn.cache_metadata && rest.first() == Some(&0) {
        conn.broken = true;
        return Err(crate::error::BackendError::Protocol {
            ds,
            what: "a query's result came without column definitions".into(),
        });
    }
    let mut columns = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (_, def) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
        match ColumnInfo::parse(&def) {
            Ok(c) => columns.push(c),
            Err(e) => {
                return Ok(Err(ErrInfo::new(
                    codes::ER_UNKNOWN_ERROR,
                    "HY000",
                    format!("bad column definition: {e}"),
                )))
            }
        }
    }
    if !conn.flavor.deprecate_eof() {
        conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    }
    Ok(Ok(columns))
}

/// One node's rows, decoded as the merge pulls them.
struct NodeRows<'a> {
    conn: &'a mut PooledConn,
    columns: &'a [ColumnInfo],
    deprecate_eof: bool,
    done: bool,
    /// The connection failed (not a node's error reply).
    lost: bool,
}

impl NodeRows<'_> {
    /// The next row packet; None at the end of the rows. A node's error
    /// ends them too and comes back as the error.
    async fn next_packet(&mut self) -> Result<Option<bytes::BytesMut>, MergeError> {
        if self.done {
            return Ok(None);
        }
        let (_, payload) = match self.conn.reader.read_packet(usize::MAX).await {
            Ok(packet) => packet,
            Err(e) => {
                self.lost = true;
                return Err(MergeError::Source(format!(
                    "data source {}: {e}",
                    self.conn.ds
                )));
            }
        };
        match payload.first() {
            Some(0xFF) => {
                self.done = true;
                let err = ErrInfo::parse(&payload)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                Err(MergeError::Source(format!(
                    "data source {}: {err}",
                    self.conn.ds
                )))
            }
            Some(0xFE) if payload.len() < if self.deprecate_eof { 0xFF_FFFF } else { 9 } => {
                self.done = true;
                Ok(None)
            }
            _ => Ok(Some(payload)),
        }
    }

    /// Reads past one row without decoding it; None at the end.
    async fn skip(&mut self) -> Result<Option<()>, MergeError> {
        Ok(self.next_packet().await?.map(drop))
    }

    async fn next(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        match self.next_packet().await? {
            Some(payload) => decode_row(&payload, self.columns, RowFormat::Text).map(Some),
            None => Ok(None),
        }
    }
}

/// A mutable borrow of a node source, so the session can still inspect it after the merge.
struct SourceRef<'s, 'a>(&'s mut NodeRows<'a>);

impl RowSource for SourceRef<'_, '_> {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        self.0.next().await
    }
}

/// Merged rows to the client, in the client's protocol.
struct ClientRows<'a> {
    writer: &'a mut PacketWriter<OwnedWriteHalf>,
    columns: &'a [ColumnInfo],
    format: RowFormat,
    buf: Vec<u8>,
}

impl RowSink for ClientRows<'_> {
    async fn push_row(&mut self, row: &[Value]) -> Result<(), MergeError> {
        self.buf.clear();
        encode_row(row, self.columns, self.format, &mut self.buf);
        self.writer.push(&self.buf);
        if self.writer.pending() >= 256 * 1024 {
            self.writer
                .flush()
                .await
                .map_err(|e| MergeError::Source(format!("client: {e}")))?;
        }
        Ok(())
    }
}

/// The text form of a node statement with `?` parameters (parameters bound).
fn bind_for_text(target: &Target, params: &[ParamValue]) -> String {
    let placeholders: Vec<usize> = crate::sql::lex::Lexer::new(&target.sql)
        .filter(|s| s.token == crate::sql::lex::Token::Punct(b'?'))
        .map(|s| s.start)
        .collect();
    crate::shard::rewrite::bind_params(&target.sql, &placeholders, params)
}
