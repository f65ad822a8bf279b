//! The logical databases one proxy serves (`server.database` and each
//! `[databases.<name>]`): their rules, the data source their unsharded
//! tables live on, and how their metadata names map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shardgate_rules::config::DatabaseRules;
use shardgate_rules::{ColumnKind, ColumnKinds, Config, ConfigError, ShardingRules};

use crate::backend::{Backend, Pool};
use shardgate_sql::shard::metadata::MetadataNames;

/// One logical database clients see.
pub struct LogicalDatabase<B: Backend> {
    pub name: String,
    pub rules: ShardingRules,
    /// Where its tables named by no rule live.
    pub default_data_source: String,
    pub default_pool: Arc<Pool<B::Conn>>,
    pub metadata: MetadataNames,
    /// The columns of its sharded tables, learnt from a node when first
    /// needed; forgotten when DDL changes the table.
    pub table_columns: Mutex<HashMap<String, Arc<TableColumns>>>,
}

/// A sharded table's columns as `SHOW COLUMNS` lists them.
#[derive(Debug, Default)]
pub struct TableColumns {
    /// In table order, lower case: an INSERT without a column list gives
    /// its values in this order.
    pub names: Vec<String>,
    pub kinds: Vec<ColumnKind>,
}

impl TableColumns {
    /// From `SHOW COLUMNS` rows (Field, Type, ...).
    pub fn from_rows(rows: Vec<Vec<Option<String>>>) -> TableColumns {
        let mut columns = TableColumns::default();
        for row in rows {
            let mut fields = row.into_iter();
            let (Some(Some(name)), Some(sql_type)) = (fields.next(), fields.next()) else {
                continue;
            };
            columns.names.push(name.to_ascii_lowercase());
            columns.kinds.push(ColumnKind::of_sql_type(
                sql_type.as_deref().unwrap_or_default(),
            ));
        }
        columns
    }

    fn kind_of(&self, column: &str) -> ColumnKind {
        self.names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(column))
            .and_then(|i| self.kinds.get(i).copied())
            .unwrap_or_default()
    }

    /// Adds the kinds of these `columns` of the table to `kinds`.
    pub fn add_kinds(&self, columns: &[&str], kinds: &mut ColumnKinds) {
        for column in columns {
            kinds.add(column, self.kind_of(column));
        }
    }
}

impl<B: Backend> LogicalDatabase<B> {
    /// Builds one database of `config` on the primaries' `pools`.
    pub fn new(
        config: &Config,
        db: &DatabaseRules<'_>,
        pools: &std::collections::BTreeMap<String, Arc<Pool<B::Conn>>>,
    ) -> Result<Option<LogicalDatabase<B>>, ConfigError> {
        let rules = ShardingRules::for_database(config, db)?;
        let Some(default_pool) = pools.get(db.default_data_source).cloned() else {
            return Ok(None);
        };
        Ok(Some(LogicalDatabase {
            name: db.name.to_owned(),
            metadata: MetadataNames::new(config, db, &rules, B::dialect()),
            rules,
            default_data_source: db.default_data_source.to_owned(),
            default_pool,
            table_columns: Mutex::default(),
        }))
    }

    /// The learnt columns of `table`, if any.
    pub fn columns_of(&self, table: &str) -> Option<Arc<TableColumns>> {
        self.table_columns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned()
    }

    /// The tables whose columns are learnt.
    pub fn table_columns_learnt(&self) -> Vec<String> {
        self.table_columns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn learn_columns(&self, table: &str, columns: Arc<TableColumns>) {
        self.table_columns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_owned(), columns);
    }

    /// The kinds of `tables`' sharding columns that place values by their
    /// type, as far as their columns are learnt.
    pub fn known_kinds<'t>(&self, tables: impl IntoIterator<Item = &'t str>) -> ColumnKinds {
        let mut kinds = ColumnKinds::default();
        for table in tables {
            let placed = self.rules.columns_placed_by_type(table);
            if placed.is_empty() {
                continue;
            }
            if let Some(columns) = self.columns_of(table) {
                columns.add_kinds(&placed, &mut kinds);
            }
        }
        kinds
    }

    /// Forgets what it learnt of `tables` (DDL changed them).
    pub fn forget_columns<'t>(&self, tables: impl IntoIterator<Item = &'t String>) {
        let mut cache = self.table_columns.lock().unwrap_or_else(|e| e.into_inner());
        for t in tables {
            cache.remove(t);
        }
    }
}
