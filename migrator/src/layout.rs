//! Old and new layouts of one logical table: its physical nodes under each
//! set of rules, the names new-layout tables are written under until
//! cutover (shadow names where the old layout already uses the name), and
//! the routing of a row to its node.

use crate::values::shard_value;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use shardgate_rules::config::{Config, TableConfig};
use shardgate_rules::{ColumnKind, ColumnKinds, DataNode, RouteError, ShardValue, ShardingRules};
use std::collections::HashSet;
use thiserror::Error;

/// Suffix of a new-layout table created beside an old one of the same name.
pub const SHADOW_SUFFIX: &str = "__sgnew";
/// Suffix an old-layout table is renamed to at cutover.
pub const RETIRED_SUFFIX: &str = "__sgold";

/// How a job moves a table to its new layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every old node stays and every row keeps its place: only new tables
    /// are created.
    Extend,
    /// Every row is copied into the new layout.
    Rebuild,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Extend => "extend",
            Mode::Rebuild => "rebuild",
        })
    }
}

/// The shadow name of a new-layout table (`users_5__sgnew`).
pub fn shadow_name(table: &str) -> String {
    format!("{table}{SHADOW_SUFFIX}")
}

/// The name an old-layout table keeps after cutover (`users_5__sgold`).
pub fn retired_name(table: &str) -> String {
    format!("{table}{RETIRED_SUFFIX}")
}

/// How a logical table differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableDiff {
    /// Its nodes or sharding strategies differ.
    Changed(String),
    /// Sharded only in the new configuration: nothing to migrate.
    Added(String),
    /// Sharded only in the old configuration.
    Removed(String),
}

/// Whether two table configurations place rows alike (same nodes, same
/// strategies); the key generator does not matter.
pub fn same_layout(a: &TableConfig, b: &TableConfig) -> bool {
    a.nodes == b.nodes && a.database == b.database && a.table == b.table
}

/// The sharded tables whose layout differs between the configurations, in
/// name order. A changed key generator alone is not a layout change.
pub fn table_diffs(from: &Config, to: &Config) -> Vec<TableDiff> {
    let mut diffs = Vec::new();
    for (name, old) in &from.tables {
        match to.tables.get(name) {
            Some(new) if same_layout(old, new) => {}
            Some(_) => diffs.push(TableDiff::Changed(name.clone())),
            None => diffs.push(TableDiff::Removed(name.clone())),
        }
    }
    for name in to.tables.keys() {
        if !from.tables.contains_key(name) {
            diffs.push(TableDiff::Added(name.clone()));
        }
    }
    diffs
}

/// One logical table's nodes under the old and the new rules.
#[derive(Debug, Clone)]
pub struct Layout {
    pub table: String,
    pub old: Vec<DataNode>,
    pub new: Vec<DataNode>,
    old_set: HashSet<DataNode>,
}

impl Layout {
    pub fn new(table: &str, old_rules: &ShardingRules, new_rules: &ShardingRules) -> Layout {
        let old = old_rules.nodes(table);
        Layout {
            table: table.to_string(),
            old_set: old.iter().cloned().collect(),
            old,
            new: new_rules.nodes(table),
        }
    }

    /// Whether every old node is also a node of the new layout.
    pub fn keeps_old_nodes(&self) -> bool {
        self.new
            .iter()
            .filter(|n| self.old_set.contains(*n))
            .count()
            == self.old.len()
    }

    pub fn is_old_node(&self, node: &DataNode) -> bool {
        self.old_set.contains(node)
    }

    /// The physical table a new-layout node is written under until cutover:
    /// in a rebuild, the shadow name when the old layout has a table of that
    /// name on that data source; otherwise its own name.
    pub fn staging(&self, node: &DataNode, mode: Mode) -> DataNode {
        match mode {
            Mode::Rebuild if self.is_old_node(node) => {
                DataNode::new(&node.data_source, shadow_name(&node.table))
            }
            _ => node.clone(),
        }
    }

    /// Where an old-layout node's table lives after a rebuild's cutover:
    /// under its retired name when the new layout took its name.
    pub fn retired(&self, node: &DataNode) -> DataNode {
        if self.new.contains(node) {
            DataNode::new(&node.data_source, retired_name(&node.table))
        } else {
            node.clone()
        }
    }

    /// The tables a job creates, in new-node order: in an extend, the new
    /// nodes the old layout lacks; in a rebuild, every new node under its
    /// staging name.
    pub fn tables_to_create(&self, mode: Mode) -> Vec<DataNode> {
        self.new
            .iter()
            .filter(|node| mode == Mode::Rebuild || !self.is_old_node(node))
            .map(|node| self.staging(node, mode))
            .collect()
    }
}

/// Why a row could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowRouteError {
    #[error("the row has no column `{0}`")]
    MissingColumn(String),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Routes rows of one logical table given as values in a known column
/// order: finds the sharding columns once, then each row's node.
#[derive(Debug, Clone)]
pub struct RowRouter {
    table: String,
    /// Each sharding column, its position in the row and its kind.
    sharding: Vec<(String, usize, ColumnKind)>,
}

impl RowRouter {
    /// `columns`: the rows' column names, in order; `kinds`: the sharding
    /// columns' types, which decide how a value places its row.
    pub fn new<S: AsRef<str>>(
        table: &str,
        sharding_columns: &[&str],
        columns: &[S],
        kinds: &ColumnKinds,
    ) -> Result<RowRouter, RowRouteError> {
        let sharding = sharding_columns
            .iter()
            .map(|column| {
                columns
                    .iter()
                    .position(|c| c.as_ref().eq_ignore_ascii_case(column))
                    .map(|i| (column.to_string(), i, kinds.of(column)))
                    .ok_or_else(|| RowRouteError::MissingColumn(column.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(RowRouter {
            table: table.to_string(),
            sharding,
        })
    }

    /// The node `rules` name for a row.
    pub fn route(&self, rules: &ShardingRules, row: &[Value]) -> Result<DataNode, RowRouteError> {
        let values: Vec<(&str, ShardValue)> = self
            .sharding
            .iter()
            .map(|(column, i, kind)| {
                row.get(*i)
                    .map(|v| (column.as_str(), shard_value(v, *kind)))
                    .ok_or_else(|| RowRouteError::MissingColumn(column.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(rules.route_row(&self.table, &values)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration of `users` (by `user_id`) over `nodes`, with
    /// `sources` data sources, sharded as the seed shards it.
    pub fn users_config(sources: u32, tables: u32) -> Config {
        let mut toml =
            String::from("[server]\ndatabase = \"wework\"\n[[server.users]]\nname = \"root\"\n");
        for i in 0..sources {
            toml.push_str(&format!(
                "[data_sources.ds{i}]\nurl = \"mysql://root@127.0.0.1:{}/ds{i}\"\n",
                13306 + i
            ));
        }
        toml.push_str(&format!(
            "[tables.users]\nnodes = \"ds${{0..{}}}.users_${{0..{}}}\"\n\
             database = {{ column = \"user_id\", algorithm = \"mod\", count = {sources} }}\n\
             table = {{ column = \"user_id\", expression = \"users_${{(user_id / {sources}) % {tables}}}\" }}\n",
            sources - 1,
            tables - 1
        ));
        Config::from_toml_str(&toml).unwrap()
    }

    pub fn rules(config: &Config) -> ShardingRules {
        ShardingRules::new(config).unwrap()
    }

    #[test]
    fn more_tables_per_source_shadow_the_names_in_use() {
        let (old, new) = (rules(&users_config(4, 16)), rules(&users_config(4, 32)));
        let layout = Layout::new("users", &old, &new);
        assert!(layout.keeps_old_nodes());
        let created = layout.tables_to_create(Mode::Rebuild);
        assert_eq!(created.len(), 128);
        assert_eq!(created[5], DataNode::new("ds0", "users_5__sgnew"));
        assert_eq!(created[20], DataNode::new("ds0", "users_20"));
        let extend = layout.tables_to_create(Mode::Extend);
        assert_eq!(extend.len(), 64);
        assert_eq!(extend[0], DataNode::new("ds0", "users_16"));
        assert_eq!(
            layout.staging(&DataNode::new("ds3", "users_1"), Mode::Extend),
            DataNode::new("ds3", "users_1")
        );
    }

    #[test]
    fn new_data_sources_get_final_names() {
        let (old, new) = (rules(&users_config(4, 16)), rules(&users_config(8, 16)));
        let layout = Layout::new("users", &old, &new);
        let created = layout.tables_to_create(Mode::Rebuild);
        assert!(created.contains(&DataNode::new("ds2", "users_3__sgnew")));
        assert!(created.contains(&DataNode::new("ds7", "users_15")));
        assert!(!created
            .iter()
            .any(|n| n.data_source == "ds7" && n.table.ends_with(SHADOW_SUFFIX)));
    }

    #[test]
    fn rows_route_by_their_sharding_column_wherever_it_sits() {
        let (old, new) = (rules(&users_config(4, 16)), rules(&users_config(4, 32)));
        let none = ColumnKinds::default();
        let router = RowRouter::new("users", &["user_id"], &["name", "USER_ID"], &none).unwrap();
        let row = [Value::Bytes(b"ann".to_vec()), Value::Int(4 * 20 + 1)];
        assert_eq!(
            router.route(&old, &row).unwrap(),
            DataNode::new("ds1", "users_4")
        );
        assert_eq!(
            router.route(&new, &row).unwrap(),
            DataNode::new("ds1", "users_20")
        );
        assert_eq!(
            RowRouter::new("users", &["user_id"], &["name"], &none).unwrap_err(),
            RowRouteError::MissingColumn("user_id".into())
        );
    }

    #[test]
    fn table_diffs_name_changed_added_and_removed_tables() {
        let old = users_config(4, 16);
        assert_eq!(table_diffs(&old, &old), vec![]);
        assert_eq!(
            table_diffs(&old, &users_config(4, 32)),
            vec![TableDiff::Changed("users".into())]
        );
        let mut none = old.clone();
        none.tables.clear();
        assert_eq!(
            table_diffs(&old, &none),
            vec![TableDiff::Removed("users".into())]
        );
        assert_eq!(
            table_diffs(&none, &old),
            vec![TableDiff::Added("users".into())]
        );
    }
}
