//! The logical databases one proxy serves (`server.database` and each
//! `[databases.<name>]`): their rules, the data source their unsharded
//! tables live on, and how their metadata names map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shardgate_rules::config::DatabaseRules;
use shardgate_rules::{Config, ConfigError, ShardingRules};

use crate::backend::Pool;
use crate::shard::metadata::MetadataNames;

/// One logical database clients see.
pub struct LogicalDatabase {
    pub name: String,
    pub rules: ShardingRules,
    /// Where its tables named by no rule live.
    pub default_data_source: String,
    pub default_pool: Arc<Pool>,
    pub metadata: MetadataNames,
    /// Column order of its sharded tables, learnt for INSERTs without a
    /// column list; forgotten when DDL changes the table.
    pub table_columns: Mutex<HashMap<String, Arc<Vec<String>>>>,
}

impl LogicalDatabase {
    /// Builds one database of `config` on the primaries' `pools`.
    pub fn new(
        config: &Config,
        db: &DatabaseRules<'_>,
        pools: &std::collections::BTreeMap<String, Arc<Pool>>,
    ) -> Result<Option<LogicalDatabase>, ConfigError> {
        let rules = ShardingRules::for_database(config, db)?;
        let Some(default_pool) = pools.get(db.default_data_source).cloned() else {
            return Ok(None);
        };
        Ok(Some(LogicalDatabase {
            name: db.name.to_owned(),
            metadata: MetadataNames::new(config, db, &rules),
            rules,
            default_data_source: db.default_data_source.to_owned(),
            default_pool,
            table_columns: Mutex::default(),
        }))
    }

    /// Forgets what it learnt of `tables` (DDL changed them).
    pub fn forget_columns<'t>(&self, tables: impl IntoIterator<Item = &'t String>) {
        let mut cache = self.table_columns.lock().unwrap_or_else(|e| e.into_inner());
        for t in tables {
            cache.remove(t);
        }
    }
}
