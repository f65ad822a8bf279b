//! One sharded logical table: its data nodes, the algorithm of each
//! dimension (data source, table), and the routing of values and ranges.

use super::error::RouteError;
use super::node_set::NodeSet;
use crate::algorithm::{
    AlgorithmError, Crc32Modulo, ExpressionAlgorithm, Modulo, Month, ShardKey, ShardValue,
    ShardingAlgorithm, Targets,
};
use crate::config::declared_list;
use crate::config::{
    AlgorithmConfig, ConfigError, DataSourceConfig, Problem, StrategyConfig, TableConfig,
};
use crate::inline::{expand_data_nodes, DataNode};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;

/// What a leaf condition says about one column.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pick<'a> {
    Value(&'a ShardValue),
    Range(Bound<&'a ShardValue>, Bound<&'a ShardValue>),
}

#[derive(Debug)]
pub(super) struct ShardedTable {
    name: String,
    nodes: Vec<DataNode>,
    /// For each node, its position among the data source targets and among
    /// the table targets.
    node_targets: Vec<[usize; 2]>,
    /// `[database, table]`: `None` where the layout makes a choice needless.
    strategies: [Option<Strategy>; 2],
    key_column: Option<String>,
}

#[derive(Debug)]
struct Strategy {
    column: String,
    algorithm: Box<dyn ShardingAlgorithm>,
}

impl ShardedTable {
    /// `key`: where the table stands in the file (`tables.users`).
    pub(super) fn new(
        name: &str,
        key: &str,
        config: &TableConfig,
        data_sources: &BTreeMap<String, DataSourceConfig>,
    ) -> Result<ShardedTable, ConfigError> {
        let nodes_key = format!("{key}.nodes");
        let nodes = expand_data_nodes(&config.nodes)
            .map_err(|error| ConfigError::invalid(&nodes_key, error.into()))?;
        let mut seen = HashSet::new();
        for node in &nodes {
            if !data_sources.contains_key(&node.data_source) {
                let problem = Problem::UnknownDataSource {
                    name: node.data_source.clone(),
                    declared: declared_list(data_sources.keys()),
                };
                return Err(ConfigError::invalid(&nodes_key, problem));
            }
            if !seen.insert(node) {
                return Err(ConfigError::invalid(
                    &nodes_key,
                    Problem::DuplicateNode(node.clone()),
                ));
            }
        }
        let (source_targets, source_of) =
            distinct_in_order(nodes.iter().map(|node| &node.data_source));
        let (table_targets, table_of) = distinct_in_order(nodes.iter().map(|node| &node.table));
        let node_targets = source_of
            .into_iter()
            .zip(table_of)
            .map(|(source, table)| [source, table])
            .collect();
        let database_key = format!("{key}.database");
        let table_key = format!("{key}.table");
        let table = ShardedTable {
            name: name.to_string(),
            strategies: [
                build_strategy(
                    config.database.as_ref(),
                    &source_targets,
                    &database_key,
                    "data sources",
                )?,
                build_strategy(
                    config.table.as_ref(),
                    &table_targets,
                    &table_key,
                    "table names",
                )?,
            ],
            nodes,
            node_targets,
            key_column: config.key.as_ref().map(|key| key.column.clone()),
        };
        table.check_rows_have_one_home(&database_key, &table_key)?;
        Ok(table)
    }

    pub(super) fn nodes(&self) -> &[DataNode] {
        &self.nodes
    }

    pub(super) fn key_column(&self) -> Option<&str> {
        self.key_column.as_deref()
    }

    pub(super) fn sharding_columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = self
            .strategies
            .iter()
            .flatten()
            .map(|strategy| strategy.column.as_str())
            .collect();
        columns.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        columns
    }

    /// The sharding columns whose values route by the column's type
    /// (see [`crate::algorithm::ShardingAlgorithm::places_by_column_type`]).
    pub(super) fn columns_placed_by_type(&self) -> Vec<&str> {
        self.strategies
            .iter()
            .flatten()
            .filter(|strategy| strategy.algorithm.places_by_column_type())
            .map(|strategy| strategy.column.as_str())
            .collect()
    }

    /// Positions into [`ShardedTable::nodes`]: all of them.
    pub(super) fn all_nodes(&self) -> NodeSet {
        NodeSet::all(self.nodes.len())
    }

    /// The nodes that can hold rows where `column` matches `pick`. An
    /// equality that names a node not declared is an error, not a guess.
    pub(super) fn route_leaf(&self, column: &str, pick: Pick<'_>) -> Result<NodeSet, RouteError> {
        if let Pick::Value(value) = pick {
            // The common case (`col = value`, once per routed statement): one
            // target per dimension at most, so no target sets are built.
            let [database, table] = [0, 1].map(|dimension| self.target(dimension, column, value));
            let (database, table) = (database?, table?);
            let admits =
                |target: Option<usize>, position: usize| target.is_none_or(|t| t == position);
            let matching = NodeSet::from_ascending((0..self.nodes.len()).filter(|&node| {
                let [source_position, table_position] = self.node_targets[node];
                admits(database, source_position) && admits(table, table_position)
            }));
            if matching.is_empty() {
                return Err(self.no_node(column, value));
            }
            return Ok(matching);
        }
        let [database, table] = [0, 1].map(|dimension| self.targets(dimension, column, pick));
        let matching = self.nodes_matching(&database?, &table?);
        match pick {
            Pick::Value(value) if matching.is_empty() => Err(self.no_node(column, value)),
            _ => Ok(matching),
        }
    }

    /// The one node an inserted row belongs to.
    pub(super) fn route_row(&self, row: &[(&str, ShardValue)]) -> Result<&DataNode, RouteError> {
        let mut matching = self.all_nodes();
        for strategy in self.strategies.iter().flatten() {
            let value = row
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(&strategy.column))
                .map(|(_, value)| value)
                .ok_or_else(|| RouteError::MissingShardingColumn {
                    table: self.name.clone(),
                    column: strategy.column.clone(),
                })?;
            // An integer column stores text as the integer MariaDB makes of it.
            let stored;
            let value = match value {
                ShardValue::Text(text) if strategy.algorithm.takes_integers() => {
                    stored = ShardValue::Int(crate::algorithm::stored_integer(text));
                    &stored
                }
                _ => value,
            };
            let on_column = self.route_leaf(&strategy.column, Pick::Value(value))?;
            matching.intersect(&on_column);
            if matching.is_empty() {
                return Err(self.no_node(&strategy.column, value));
            }
        }
        // Nodes are never empty and `check_rows_have_one_home` leaves exactly
        // one here; the fallback only keeps this total without a panic.
        matching
            .first()
            .map(|node| &self.nodes[node])
            .ok_or_else(|| RouteError::NoNode {
                table: self.name.clone(),
                column: self.sharding_columns().join(", "),
                value: ShardValue::Null,
            })
    }

    /// The one target of `dimension` that holds rows where `column` equals
    /// `value`; None when the dimension does not go by `column` (any target).
    /// The same answer as [`Self::targets`] with `Pick::Value`.
    fn target(
        &self,
        dimension: usize,
        column: &str,
        value: &ShardValue,
    ) -> Result<Option<usize>, RouteError> {
        let Some(strategy) = self.strategies[dimension]
            .as_ref()
            .filter(|s| s.column.eq_ignore_ascii_case(column))
        else {
            return Ok(None);
        };
        let position = strategy.algorithm.target(self.key_of(column, value)?);
        position
            .map(Some)
            .map_err(|error| self.value_error(column, value, error))
    }

    fn targets(
        &self,
        dimension: usize,
        column: &str,
        pick: Pick<'_>,
    ) -> Result<Targets, RouteError> {
        let Some(strategy) = self.strategies[dimension]
            .as_ref()
            .filter(|s| s.column.eq_ignore_ascii_case(column))
        else {
            return Ok(Targets::All);
        };
        let key_of = |value| self.key_of(column, value);
        match pick {
            Pick::Value(value) => {
                let position = strategy.algorithm.target(key_of(value)?);
                Ok(Targets::Only(BTreeSet::from([position.map_err(
                    |error| self.value_error(column, value, error),
                )?])))
            }
            Pick::Range(lower, upper) => {
                let lower_key = map_bound(lower, key_of)?;
                let upper_key = map_bound(upper, key_of)?;
                strategy
                    .algorithm
                    .targets_in_range(lower_key, upper_key)
                    .map_err(|error| {
                        let culprit = [lower, upper].into_iter().find_map(|bound| match bound {
                            Bound::Included(value) | Bound::Excluded(value) => Some(value),
                            Bound::Unbounded => None,
                        });
                        self.value_error(column, culprit.unwrap_or(&ShardValue::Null), error)
                    })
            }
        }
    }

    fn nodes_matching(&self, database: &Targets, table: &Targets) -> NodeSet {
        let admits = |targets: &Targets, position: usize| match targets {
            Targets::All => true,
            Targets::Only(positions) => positions.contains(&position),
        };
        NodeSet::from_ascending((0..self.nodes.len()).filter(|&node| {
            let [source_position, table_position] = self.node_targets[node];
            admits(database, source_position) && admits(table, table_position)
        }))
    }

    /// Without a strategy for a dimension, the other must already single out
    /// one node for every row; refuse layouts where it cannot.
    fn check_rows_have_one_home(
        &self,
        database_key: &str,
        table_key: &str,
    ) -> Result<(), ConfigError> {
        let [database, table] = [0, 1].map(|dimension| self.strategies[dimension].is_some());
        let (settled, key, reason) = match (database, table) {
            (true, true) => return Ok(()),
            (false, true) => (
                self.is_one_node_per(1),
                database_key,
                "a table name is on several data sources",
            ),
            (true, false) => (
                self.is_one_node_per(0),
                table_key,
                "a data source holds several of the nodes",
            ),
            (false, false) => (
                self.nodes.len() == 1,
                database_key,
                "there are several nodes",
            ),
        };
        if settled {
            Ok(())
        } else {
            Err(ConfigError::invalid(key, Problem::StrategyRequired(reason)))
        }
    }

    /// True when no two nodes share a target in `dimension`.
    fn is_one_node_per(&self, dimension: usize) -> bool {
        let mut seen = HashSet::new();
        self.node_targets
            .iter()
            .all(|targets| seen.insert(targets[dimension]))
    }

    fn key_of<'v>(&self, column: &str, value: &'v ShardValue) -> Result<ShardKey<'v>, RouteError> {
        value.as_key().ok_or_else(|| RouteError::NullValue {
            table: self.name.clone(),
            column: column.to_string(),
        })
    }

    fn no_node(&self, column: &str, value: &ShardValue) -> RouteError {
        RouteError::NoNode {
            table: self.name.clone(),
            column: column.to_string(),
            value: value.clone(),
        }
    }

    fn value_error(&self, column: &str, value: &ShardValue, error: AlgorithmError) -> RouteError {
        match error {
            AlgorithmError::NoTarget(_) => self.no_node(column, value),
            reason => RouteError::InvalidValue {
                table: self.name.clone(),
                column: column.to_string(),
                value: value.clone(),
                reason,
            },
        }
    }
}

fn build_strategy(
    config: Option<&StrategyConfig>,
    targets: &[String],
    key: &str,
    what: &'static str,
) -> Result<Option<Strategy>, ConfigError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let count_matches = |count: u32| {
        if usize::try_from(count).is_ok_and(|count| count == targets.len()) {
            Ok(())
        } else {
            let problem = Problem::CountMismatch {
                count,
                targets: targets.len(),
                what,
            };
            Err(ConfigError::invalid(format!("{key}.count"), problem))
        }
    };
    let algorithm: Box<dyn ShardingAlgorithm> = match &config.algorithm {
        AlgorithmConfig::Mod { count } => {
            count_matches(count.get())?;
            Box::new(Modulo::new(*count))
        }
        AlgorithmConfig::Crc32Mod { count } => {
            count_matches(count.get())?;
            Box::new(Crc32Modulo::new(*count))
        }
        AlgorithmConfig::Month => {
            Box::new(Month::new(targets).map_err(|error| ConfigError::invalid(key, error.into()))?)
        }
        AlgorithmConfig::Expression(template) => {
            Box::new(ExpressionAlgorithm::new(template.clone(), targets))
        }
    };
    Ok(Some(Strategy {
        column: config.column.clone(),
        algorithm,
    }))
}

fn map_bound<'a>(
    bound: Bound<&'a ShardValue>,
    key_of: impl Fn(&'a ShardValue) -> Result<ShardKey<'a>, RouteError>,
) -> Result<Bound<ShardKey<'a>>, RouteError> {
    Ok(match bound {
        Bound::Included(value) => Bound::Included(key_of(value)?),
        Bound::Excluded(value) => Bound::Excluded(key_of(value)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}

/// The distinct names in order of first appearance, and the position of
/// each name among them (in one pass: a layout may have 65,536 nodes).
fn distinct_in_order<'a>(names: impl Iterator<Item = &'a String>) -> (Vec<String>, Vec<usize>) {
    let mut distinct = Vec::new();
    let mut position_of: HashMap<&String, usize> = HashMap::new();
    let positions = names
        .map(|name| {
            *position_of.entry(name).or_insert_with(|| {
                distinct.push(name.clone());
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, positions)
}
