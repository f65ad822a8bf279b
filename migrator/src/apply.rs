//! Applying captured row changes of a source physical table at the rows'
//! new locations, idempotently: an insert or update `REPLACE`s the after
//! image where the new rules place it (and deletes the before image's key
//! where that was placed, when the row moved or its key changed); a delete
//! deletes the before image's key at its place. Replaying a suffix of the
//! stream converges every key to its last image, so a resumed catch-up may
//! start from its last saved position. Changes of tables that are not the
//! job's source tables (the new tables, other tables) are ignored, so the
//! migrator's own writes never come back to it.

use crate::backend::Backends;
use crate::copy::replace_rows;
use crate::error::{DbContext, MigrateError};
use crate::job::JobContext;
use crate::layout::{retired_name, Mode, RowRouteError, RowRouter};
use crate::retry::retried;
use crate::state::{Direction, StateStore};
use crate::values::ident;
use mysql_async::prelude::Queryable;
use mysql_async::{TxOpts, Value};
use shardgate_cdc::{BinlogPosition, Change, Row, TableChange, Transaction};
use shardgate_rules::{ColumnKinds, DataNode, ShardingRules};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("a row of {node} cannot be placed: {source}")]
    Route {
        node: String,
        #[source]
        source: Box<RowRouteError>,
    },
    #[error("a row image of {node} has no primary key column `{column}`")]
    NoKey { node: String, column: String },
    #[error("the new rules place a row of {node} on {to}, which the job has no table for")]
    NoPlacement { node: String, to: String },
}

/// One write at a row's new location.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `REPLACE INTO at` this image.
    Upsert { at: DataNode, row: Row },
    /// `DELETE FROM at WHERE key = value`.
    Delete { at: DataNode, key: Value },
}

impl Action {
    /// Where the action writes.
    pub fn at(&self) -> &DataNode {
        match self {
            Action::Upsert { at, .. } | Action::Delete { at, .. } => at,
        }
    }
}

/// What an applier needs of the logical table's columns.
#[derive(Debug, Clone)]
pub struct AppliedColumns {
    /// The integer primary key, which names a row's copy in the target.
    pub key: String,
    /// The columns' kinds: a sharding column's type decides where its
    /// values place a row.
    pub kinds: ColumnKinds,
}

/// Applies changes of one job's source tables to its target tables.
pub struct Applier<'a> {
    table: String,
    key_column: String,
    sharding_columns: Vec<String>,
    kinds: ColumnKinds,
    target_rules: &'a ShardingRules,
    /// Source physical tables, by data source.
    sources: HashSet<DataNode>,
    /// Each data source's database (row events name it as their schema).
    databases: HashMap<String, String>,
    /// Where each node of the target layout is written.
    placement: HashMap<DataNode, DataNode>,
}

impl<'a> Applier<'a> {
    /// Before cutover: changes of the old layout's tables go to the new
    /// layout's tables under their staging names.
    pub fn forward(context: &'a JobContext, mode: Mode, columns: &AppliedColumns) -> Applier<'a> {
        let placement = context
            .layout
            .new
            .iter()
            .map(|node| (node.clone(), context.layout.staging(node, mode)))
            .collect();
        Applier::new(
            context,
            &context.new_rules,
            columns,
            context.layout.old.iter().cloned().collect(),
            placement,
        )
    }

    /// After cutover (the reverse stream that keeps rollback possible):
    /// changes of the new layout's tables go to the old layout's tables,
    /// which live on as `<name>__sgold` where the new layout took the name.
    pub fn reverse(context: &'a JobContext, columns: &AppliedColumns) -> Applier<'a> {
        let new_nodes: HashSet<&DataNode> = context.layout.new.iter().collect();
        let placement = context
            .layout
            .old
            .iter()
            .map(|node| {
                let at = if new_nodes.contains(node) {
                    DataNode::new(&node.data_source, retired_name(&node.table))
                } else {
                    node.clone()
                };
                (node.clone(), at)
            })
            .collect();
        Applier::new(
            context,
            &context.old_rules,
            columns,
            context.layout.new.iter().cloned().collect(),
            placement,
        )
    }

    fn new(
        context: &JobContext,
        target_rules: &'a ShardingRules,
        columns: &AppliedColumns,
        sources: HashSet<DataNode>,
        placement: HashMap<DataNode, DataNode>,
    ) -> Applier<'a> {
        let databases = context
            .from
            .data_sources
            .iter()
            .chain(&context.to.data_sources)
            .map(|(name, source)| (name.clone(), source.url.database.clone()))
            .collect();
        Applier {
            table: context.layout.table.clone(),
            key_column: columns.key.clone(),
            kinds: columns.kinds.clone(),
            sharding_columns: target_rules
                .sharding_columns(&context.layout.table)
                .iter()
                .map(|c| c.to_string())
                .collect(),
            target_rules,
            sources,
            databases,
            placement,
        }
    }

    /// The source node a change belongs to, if it is one of the job's.
    fn source_of(&self, data_source: &str, change: &TableChange) -> Option<DataNode> {
        let database = self.databases.get(data_source)?;
        if *database != change.schema {
            return None;
        }
        let node = DataNode::new(data_source, &change.table);
        self.sources.contains(&node).then_some(node)
    }

    fn place(&self, source: &DataNode, row: &Row) -> Result<DataNode, ApplyError> {
        let columns: Vec<&str> = self.sharding_columns.iter().map(String::as_str).collect();
        let route = |source_error| ApplyError::Route {
            node: source.to_string(),
            source: Box::new(source_error),
        };
        let router =
            RowRouter::new(&self.table, &columns, &row.columns, &self.kinds).map_err(route)?;
        let node = router
            .route(self.target_rules, &row.values)
            .map_err(route)?;
        self.placement
            .get(&node)
            .cloned()
            .ok_or_else(|| ApplyError::NoPlacement {
                node: source.to_string(),
                to: node.to_string(),
            })
    }

    fn key(&self, source: &DataNode, row: &Row) -> Result<Value, ApplyError> {
        row.get(&self.key_column)
            .cloned()
            .ok_or_else(|| ApplyError::NoKey {
                node: source.to_string(),
                column: self.key_column.clone(),
            })
    }

    /// What a change of a table on `data_source` means for the target
    /// tables; empty when the table is not one of the job's sources.
    pub fn actions(
        &self,
        data_source: &str,
        change: &TableChange,
    ) -> Result<Vec<Action>, ApplyError> {
        let Some(source) = self.source_of(data_source, change) else {
            return Ok(vec![]);
        };
        Ok(match &change.change {
            Change::Insert { after } => vec![Action::Upsert {
                at: self.place(&source, after)?,
                row: after.clone(),
            }],
            Change::Update { before, after } => {
                let (from, to) = (self.place(&source, before)?, self.place(&source, after)?);
                let (old_key, new_key) = (self.key(&source, before)?, self.key(&source, after)?);
                let mut actions = Vec::new();
                if from != to || old_key != new_key {
                    actions.push(Action::Delete {
                        at: from,
                        key: old_key,
                    });
                }
                actions.push(Action::Upsert {
                    at: to,
                    row: after.clone(),
                });
                actions
            }
            Change::Delete { before } => vec![Action::Delete {
                at: self.place(&source, before)?,
                key: self.key(&source, before)?,
            }],
        })
    }

    /// Applies one captured transaction from `data_source`'s binlog, in
    /// order, in one transaction per target data source (committed at the
    /// end). Returns the number of writes. The caller then saves
    /// `transaction.end` (see [`record_applied`]).
    pub async fn apply_transaction(
        &self,
        backends: &Backends,
        data_source: &str,
        transaction: &Transaction,
    ) -> Result<usize, MigrateError> {
        self.apply_transactions(backends, data_source, std::slice::from_ref(transaction))
            .await
    }

    /// Applies consecutive captured transactions of `data_source`'s binlog
    /// together, in order, in one transaction per target data source: a
    /// stream that fell behind catches up with one commit per batch
    /// instead of one per source transaction. Returns the number of writes.
    pub async fn apply_transactions(
        &self,
        backends: &Backends,
        data_source: &str,
        transactions: &[Transaction],
    ) -> Result<usize, MigrateError> {
        let mut actions = Vec::new();
        for change in transactions.iter().flat_map(|t| &t.changes) {
            let more = self
                .actions(data_source, change)
                .map_err(|error| MigrateError::Table {
                    node: format!("{data_source}.{}", change.table),
                    problem: error.to_string(),
                })?;
            actions.extend(more);
        }
        retried(|| self.write(backends, &actions)).await?;
        Ok(actions.len())
    }

    /// Writes the actions in one transaction per target data source.
    async fn write(&self, backends: &Backends, actions: &[Action]) -> Result<(), MigrateError> {
        // One connection and transaction per target data source.
        let targets: BTreeSet<&str> = actions
            .iter()
            .map(|a| a.at().data_source.as_str())
            .collect();
        let mut conns = Vec::new();
        for data_source in &targets {
            conns.push(backends.conn(data_source).await?);
        }
        let mut open: BTreeMap<&str, mysql_async::Transaction<'_>> = BTreeMap::new();
        for (data_source, conn) in targets.iter().zip(conns.iter_mut()) {
            let tx = conn
                .start_transaction(TxOpts::default())
                .await
                .context(|| format!("applying changes on {data_source}"))?;
            open.insert(data_source, tx);
        }
        for action in actions {
            let at = action.at();
            let Some(tx) = open.get_mut(at.data_source.as_str()) else {
                continue;
            };
            let context = || format!("applying a change at {at}");
            match action {
                Action::Upsert { at, row } => {
                    let columns: Vec<String> = row.columns.to_vec();
                    replace_rows(tx, &at.table, &columns, vec![row.values.clone()])
                        .await
                        .context(context)?;
                }
                Action::Delete { at, key } => {
                    let sql = format!(
                        "DELETE FROM {} WHERE {} = ?",
                        ident(&at.table),
                        ident(&self.key_column)
                    );
                    tx.exec_drop(sql, (key.clone(),)).await.context(context)?;
                }
            }
        }
        for (data_source, tx) in open {
            tx.commit()
                .await
                .context(|| format!("committing applied changes on {data_source}"))?;
        }
        Ok(())
    }
}

/// Saves how far a change stream has applied a source primary's binlog.
pub fn record_applied(
    store: &StateStore,
    job: &str,
    direction: Direction,
    data_source: &str,
    position: BinlogPosition,
) -> Result<(), MigrateError> {
    store.update(job, |s| {
        if let Some(p) = s.stream_source_mut(direction, data_source) {
            p.applied = Some(position);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::users_config;
    use std::sync::Arc;

    fn keyed_by(key: &str) -> AppliedColumns {
        AppliedColumns {
            key: key.into(),
            kinds: ColumnKinds::default(),
        }
    }

    fn context(sources: u32, tables: u32) -> JobContext {
        JobContext::new(users_config(4, 16), users_config(sources, tables), "users").unwrap()
    }

    fn row(user_id: i64, name: &str) -> Row {
        Row {
            columns: Arc::from(vec!["user_id".to_string(), "name".to_string()]),
            values: vec![Value::Int(user_id), Value::Bytes(name.as_bytes().to_vec())],
        }
    }

    fn change(schema: &str, table: &str, change: Change) -> TableChange {
        TableChange {
            schema: schema.into(),
            table: table.into(),
            change,
        }
    }

    fn node(ds: &str, table: &str) -> DataNode {
        DataNode::new(ds, table)
    }

    #[test]
    fn inserts_go_to_the_shadow_or_new_table_the_new_rules_name() {
        let context = context(4, 32);
        let applier = Applier::forward(&context, Mode::Rebuild, &keyed_by("user_id"));
        // 81: ds1, old users_4, new users_20 (a new name: no shadow).
        let insert = change(
            "ds1",
            "users_4",
            Change::Insert {
                after: row(81, "a"),
            },
        );
        assert_eq!(
            applier.actions("ds1", &insert).unwrap(),
            vec![Action::Upsert {
                at: node("ds1", "users_20"),
                row: row(81, "a")
            }]
        );
        // 17: ds1, old users_4, new users_4 (a name in use: the shadow).
        let insert = change(
            "ds1",
            "users_4",
            Change::Insert {
                after: row(17, "b"),
            },
        );
        assert_eq!(
            applier.actions("ds1", &insert).unwrap()[0].at(),
            &node("ds1", "users_4__sgnew")
        );
    }

    #[test]
    fn updates_delete_the_old_place_only_when_the_row_moves_or_its_key_changes() {
        let context = context(4, 32);
        let applier = Applier::forward(&context, Mode::Rebuild, &keyed_by("user_id"));
        let same_place = change(
            "ds1",
            "users_4",
            Change::Update {
                before: row(81, "a"),
                after: row(81, "b"),
            },
        );
        assert_eq!(
            applier.actions("ds1", &same_place).unwrap(),
            vec![Action::Upsert {
                at: node("ds1", "users_20"),
                row: row(81, "b")
            }]
        );
        // Key 81 -> 17: from users_20 to users_4__sgnew.
        let moved = change(
            "ds1",
            "users_4",
            Change::Update {
                before: row(81, "a"),
                after: row(17, "a"),
            },
        );
        assert_eq!(
            applier.actions("ds1", &moved).unwrap(),
            vec![
                Action::Delete {
                    at: node("ds1", "users_20"),
                    key: Value::Int(81)
                },
                Action::Upsert {
                    at: node("ds1", "users_4__sgnew"),
                    row: row(17, "a")
                }
            ]
        );
        let delete = change(
            "ds1",
            "users_4",
            Change::Delete {
                before: row(81, "a"),
            },
        );
        assert_eq!(
            applier.actions("ds1", &delete).unwrap(),
            vec![Action::Delete {
                at: node("ds1", "users_20"),
                key: Value::Int(81)
            }]
        );
    }

    #[test]
    fn changes_outside_the_source_tables_are_ignored() {
        let context = context(4, 32);
        let applier = Applier::forward(&context, Mode::Rebuild, &keyed_by("user_id"));
        let insert = |schema: &str, table: &str| {
            change(
                schema,
                table,
                Change::Insert {
                    after: row(81, "a"),
                },
            )
        };
        // The migrator's own writes, another table, another database.
        assert!(applier
            .actions("ds1", &insert("ds1", "users_20"))
            .unwrap()
            .is_empty());
        assert!(applier
            .actions("ds1", &insert("ds1", "users_4__sgnew"))
            .unwrap()
            .is_empty());
        assert!(applier
            .actions("ds1", &insert("ds1", "orders"))
            .unwrap()
            .is_empty());
        assert!(applier
            .actions("ds1", &insert("other", "users_4"))
            .unwrap()
            .is_empty());
        // users_4 of ds1 is a source, not users_4 of a data source that has none.
        assert!(applier
            .actions("ds5", &insert("ds1", "users_4"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn new_data_sources_and_the_reverse_stream() {
        let context = context(8, 16);
        let forward = Applier::forward(&context, Mode::Rebuild, &keyed_by("user_id"));
        // 13: old ds1.users_3, new ds5.users_1.
        let insert = change(
            "ds1",
            "users_3",
            Change::Insert {
                after: row(13, "a"),
            },
        );
        assert_eq!(
            forward.actions("ds1", &insert).unwrap()[0].at(),
            &node("ds5", "users_1")
        );
        // After cutover, a change of ds5.users_1 goes back to the old
        // ds1.users_3, renamed users_3__sgold (ds1 keeps a users_3).
        let reverse = Applier::reverse(&context, &keyed_by("user_id"));
        let insert = change(
            "ds5",
            "users_1",
            Change::Insert {
                after: row(13, "a"),
            },
        );
        assert_eq!(
            reverse.actions("ds5", &insert).unwrap()[0].at(),
            &node("ds1", "users_3__sgold")
        );
    }
}
