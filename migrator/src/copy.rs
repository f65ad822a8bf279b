//! The row copy, lock-and-copy style: per source table, in primary-key
//! order, one batch at a time. A batch's keys and sharding values are read
//! with `SELECT ... FOR UPDATE` in a source transaction, which places each
//! row; rows whose new table is on the same data source are copied there by
//! the server itself (`REPLACE INTO ... SELECT` in the same transaction,
//! the way gh-ost copies rows: no row crosses the network twice), the
//! others are read and written to their data source with `REPLACE INTO`
//! (committed), and only then is the source transaction committed. While a
//! copied row's value is on its way it cannot change, so any later change
//! of it reaches the binlog after the copy landed and catch-up applies it
//! on top. The cursor is saved about once a second ([`SAVE_INTERVAL`]).

use crate::backend::Backends;
use crate::error::{DbContext, MigrateError};
use crate::layout::{Layout, Mode, RowRouter};
use crate::progress::Progress;
use crate::retry::retried;
use crate::state::{now_ms, Hold, SourceTable, StateStore};
use crate::throttle::Throttle;
use crate::values::{ident, ident_list, key_list, key_of, key_param, Key};
use futures_util::{StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};
use shardgate_rules::{DataNode, ShardingRules};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// MySQL's limit on the placeholders of one prepared statement.
const MAX_PLACEHOLDERS: usize = 65_535;

/// How often a source table's cursor is saved while its copy runs (and
/// when it ends or fails). Saving after every batch cost two fsyncs a
/// batch; a job resumed after a crash copies at most this much again, which
/// is harmless: the copy is idempotent.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Keys named in one `IN (...)` list (about 20 bytes each), so that a
/// statement stays far below `max_allowed_packet` whatever the batch size.
const KEYS_PER_STATEMENT: usize = 10_000;

/// Everything the copy of one job needs, shared by its workers.
pub struct Copier<'a> {
    pub job: &'a str,
    pub table: &'a str,
    pub store: &'a StateStore,
    pub backends: &'a Backends,
    pub new_rules: &'a ShardingRules,
    pub layout: &'a Layout,
    pub mode: Mode,
    /// The source tables' columns, in order.
    pub columns: Vec<String>,
    /// Position of the integer primary key in `columns`.
    pub key_index: usize,
    /// What places a row: the key first, then the sharding columns.
    pub placing_columns: Vec<String>,
    /// Routes rows of `placing_columns`.
    pub placer: RowRouter,
    pub batch_size: usize,
    pub parallelism: usize,
    pub pause: Duration,
    pub throttle: Throttle,
    pub progress: &'a Progress,
}

/// Rows for one physical table.
type TableRows = (String, Vec<Vec<Value>>);

/// What one batch copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub last_key: Key,
}

impl Copier<'_> {
    /// Copies every source table not done yet, `parallelism` at a time;
    /// stops at the first error (the state keeps every finished batch).
    pub async fn copy_all(&self, sources: Vec<SourceTable>) -> Result<(), MigrateError> {
        futures_util::stream::iter(sources.into_iter().filter(|s| !s.done).map(Ok))
            .try_for_each_concurrent(self.parallelism.max(1), |source| self.copy_table(source))
            .await
    }

    async fn copy_table(&self, source: SourceTable) -> Result<(), MigrateError> {
        let node = DataNode::new(&source.data_source, &source.table);
        let mut cursor = source.cursor;
        let mut unsaved_rows = 0u64;
        let mut saved_at = Instant::now();
        loop {
            self.throttle
                .wait(self.backends, &node.data_source, |reason| {
                    self.hold(&node.data_source, reason)
                })
                .await;
            // A deadlock with a change stream writing the same new table
            // rolls the whole batch back; copying it again is idempotent.
            let batch = match retried(|| self.copy_batch(&node, cursor)).await {
                Ok(batch) => batch,
                Err(error) => {
                    // Keep what was copied, so that a resumed job goes on
                    // from there; the copy's own error is the one to report.
                    if let Err(saving) = self.save_progress(&node, cursor, unsaved_rows, false) {
                        tracing::warn!(job = self.job, source = %node, error = %saving,
                            "cannot record the copy's progress");
                    }
                    return Err(error);
                }
            };
            let rows = batch.map_or(0, |b| b.rows);
            let done = rows < self.batch_size;
            if let Some(batch) = batch {
                cursor = Some(batch.last_key);
            }
            unsaved_rows += rows as u64;
            self.progress.add(rows as u64);
            if done || saved_at.elapsed() >= SAVE_INTERVAL {
                self.save_progress(&node, cursor, unsaved_rows, done)?;
                unsaved_rows = 0;
                saved_at = Instant::now();
            }
            if done {
                tracing::info!(job = self.job, source = %node, "source table copied");
                return Ok(());
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
    }

    /// Records a source table's cursor and the rows copied since the last
    /// save in the job's state.
    fn save_progress(
        &self,
        node: &DataNode,
        cursor: Option<Key>,
        rows: u64,
        done: bool,
    ) -> Result<(), MigrateError> {
        self.store.update(self.job, |state| {
            if let Some(s) = state.source_mut(&node.data_source, &node.table) {
                s.cursor = cursor;
                s.rows_copied += rows;
                s.done = done;
            }
            if let Some(run) = state.copy_run.as_mut() {
                run.last_batch_at_ms = Some(now_ms());
            }
        })?;
        Ok(())
    }

    /// Records what holds the copy from `data_source` back (None: it goes
    /// on), in the job's state and its progress line.
    fn hold(&self, data_source: &str, reason: Option<String>) {
        self.progress.hold(reason.as_deref());
        let recorded = self.store.update(self.job, |state| match reason {
            Some(reason) => {
                state.held = Some(Hold {
                    source: data_source.to_string(),
                    reason,
                    since_ms: now_ms(),
                })
            }
            // Another data source's hold stays.
            None if state.held.as_ref().is_some_and(|h| h.source == data_source) => {
                state.held = None
            }
            None => {}
        });
        if let Err(error) = recorded {
            tracing::warn!(%error, "cannot record what holds the copy");
        }
    }

    /// Copies the batch after `cursor`; None when no row is left.
    pub async fn copy_batch(
        &self,
        node: &DataNode,
        cursor: Option<Key>,
    ) -> Result<Option<Batch>, MigrateError> {
        let key = ident(&self.columns[self.key_index]);
        let (condition, params) = match cursor {
            Some(after) => (format!("WHERE {key} > ?"), vec![key_param(after)]),
            None => (String::new(), vec![]),
        };
        let select = format!(
            "SELECT {} FROM {} {condition} ORDER BY {key} LIMIT {} FOR UPDATE",
            ident_list(&self.placing_columns),
            ident(&node.table),
            self.batch_size
        );
        let context = || format!("copying from {node}");
        let mut source = self.backends.conn(&node.data_source).await?;
        let mut locked = source
            .start_transaction(TxOpts::default())
            .await
            .context(context)?;
        let rows: Vec<mysql_async::Row> = locked.exec(select, params).await.context(context)?;
        let count = rows.len();
        let mut last_key = None;
        let mut kept: BTreeMap<DataNode, Vec<Key>> = BTreeMap::new();
        // Rows for other data sources, each with its new place.
        let mut moved: HashMap<Key, DataNode> = HashMap::new();
        for row in rows {
            let values = row.unwrap();
            let row_key = values
                .first()
                .and_then(key_of)
                .ok_or_else(|| MigrateError::Table {
                    node: node.to_string(),
                    problem: "a primary key value is not an integer".into(),
                })?;
            let to = self
                .placer
                .route(self.new_rules, &values)
                .map_err(|source| MigrateError::route(node, row_key.to_string(), source))?;
            let to = self.layout.staging(&to, self.mode);
            if to.data_source == node.data_source {
                kept.entry(to).or_default().push(row_key);
            } else {
                moved.insert(row_key, to);
            }
            last_key = Some(row_key);
        }
        let Some(last_key) = last_key else {
            locked.commit().await.context(context)?;
            return Ok(None);
        };
        let columns = ident_list(&self.columns);
        for (to, keys) in &kept {
            for keys in keys.chunks(KEYS_PER_STATEMENT) {
                let copy = format!(
                    "REPLACE INTO {} ({columns}) SELECT {columns} FROM {} WHERE {key} IN ({})",
                    ident(&to.table),
                    ident(&node.table),
                    key_list(keys)
                );
                locked
                    .query_drop(copy)
                    .await
                    .context(|| format!("copying rows from {node} to {to}"))?;
            }
        }
        if !moved.is_empty() {
            let mut by_target: BTreeMap<DataNode, Vec<Vec<Value>>> = BTreeMap::new();
            let keys: Vec<Key> = moved.keys().copied().collect();
            for keys in keys.chunks(KEYS_PER_STATEMENT) {
                let read = format!(
                    "SELECT {columns} FROM {} WHERE {key} IN ({})",
                    ident(&node.table),
                    key_list(keys)
                );
                let rows: Vec<mysql_async::Row> = locked.query(read).await.context(context)?;
                for row in rows {
                    let values = row.unwrap();
                    // Locked: each row is the one placed above.
                    let to = values
                        .get(self.key_index)
                        .and_then(key_of)
                        .and_then(|k| moved.get(&k))
                        .ok_or_else(|| MigrateError::Table {
                            node: node.to_string(),
                            problem: "a locked row changed its key during the copy".into(),
                        })?;
                    by_target.entry(to.clone()).or_default().push(values);
                }
            }
            self.write(by_target).await?;
        }
        // Only now may the source rows change again.
        locked.commit().await.context(context)?;
        Ok(Some(Batch {
            rows: count,
            last_key,
        }))
    }

    /// `REPLACE INTO` each target table, one transaction per data source.
    async fn write(
        &self,
        by_target: BTreeMap<DataNode, Vec<Vec<Value>>>,
    ) -> Result<(), MigrateError> {
        let mut by_source: BTreeMap<String, Vec<TableRows>> = BTreeMap::new();
        for (node, rows) in by_target {
            by_source
                .entry(node.data_source)
                .or_default()
                .push((node.table, rows));
        }
        let writes = by_source
            .into_iter()
            .map(|(data_source, tables)| async move {
                // The source rows stay locked meanwhile: running the
                // target transaction again after a conflict copies the
                // same values.
                retried(|| self.write_to(&data_source, &tables)).await
            });
        futures_util::stream::iter(writes)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// One target data source's share of a batch, in one transaction.
    async fn write_to(&self, data_source: &str, tables: &[TableRows]) -> Result<(), MigrateError> {
        let context = || format!("writing copied rows to {data_source}");
        let mut conn = self.backends.conn(data_source).await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .context(context)?;
        for (table, rows) in tables {
            replace_rows(&mut tx, table, &self.columns, rows.clone())
                .await
                .context(|| format!("writing copied rows to {data_source}.{table}"))?;
        }
        tx.commit().await.context(context)
    }
}

/// `REPLACE INTO table (columns) VALUES (...), ...`, in as few statements
/// as the placeholder limit allows.
pub async fn replace_rows<Q: Queryable>(
    conn: &mut Q,
    table: &str,
    columns: &[String],
    rows: Vec<Vec<Value>>,
) -> Result<(), mysql_async::Error> {
    let per_statement = (MAX_PLACEHOLDERS / columns.len().max(1)).max(1);
    let one_row = format!("({})", vec!["?"; columns.len()].join(", "));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
        let sql = format!(
            "REPLACE INTO {} ({}) VALUES {}",
            ident(table),
            ident_list(columns),
            vec![one_row.as_str(); chunk.len()].join(", ")
        );
        let params: Vec<Value> = chunk.into_iter().flatten().collect();
        conn.exec_drop(sql, Params::Positional(params)).await?;
    }
    Ok(())
}
