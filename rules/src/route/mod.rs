//! Routing: which data nodes a logical table's rows live on, and which of
//! them a condition on the sharding columns can reach.
//!
//! Results are in declared node order (data source, then table as the
//! `nodes` expression lists them), without duplicates.

mod condition;
mod error;
mod node_set;
mod sharded_table;

pub use condition::Condition;
pub use error::RouteError;

use crate::algorithm::ShardValue;
use crate::config::{declared_list, Config, ConfigError, DatabaseRules, Problem};
use crate::inline::DataNode;
use node_set::NodeSet;
use sharded_table::{Pick, ShardedTable};
use std::collections::HashMap;
use std::ops::Bound;

/// How a logical table is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Split over several data nodes by sharding columns.
    Sharded,
    /// A full copy on every data source: write to all, read from any.
    Broadcast,
    /// Named by no rule: lives unsharded on the default data source.
    Single,
}

/// The routing rules of a configuration. Table names and column names
/// compare case-insensitively.
#[derive(Debug)]
pub struct ShardingRules {
    default_data_source: String,
    data_sources: Vec<String>,
    /// Keyed by lower-case logical name.
    sharded: HashMap<String, ShardedTable>,
    /// Lower-case logical name to the name as configured.
    broadcast: HashMap<String, String>,
    /// Lower-case logical name of a bound table to its binding group.
    binding: HashMap<String, usize>,
    /// The lengths and first bytes of the sharded and broadcast names.
    routed_names: NameFilter,
}

/// A quick test that a lower-case name is certainly not one of a set: its
/// length and first byte against theirs. `table_kind` is asked about every
/// word of a statement, and most are keywords or columns.
#[derive(Debug, Default)]
struct NameFilter {
    /// Bit n: a name of n bytes (bit 63: 63 or more).
    lengths: u64,
    /// Bit b: a name starting with byte b.
    first_bytes: [u64; 4],
}

impl NameFilter {
    fn add(&mut self, name: &str) {
        self.lengths |= 1 << name.len().min(63);
        if let Some(&b) = name.as_bytes().first() {
            self.first_bytes[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }

    /// False when no name added has this length and first byte.
    fn admits(&self, name: &str) -> bool {
        let first = name
            .as_bytes()
            .first()
            .is_none_or(|&b| self.first_bytes[usize::from(b >> 6)] & (1 << (b & 63)) != 0);
        first && self.lengths & (1 << name.len().min(63)) != 0
    }
}

impl ShardingRules {
    /// Builds the rules of the first logical database (`server.database`),
    /// refusing a configuration they could not route.
    pub fn new(config: &Config) -> Result<ShardingRules, ConfigError> {
        let first = config.logical_databases().swap_remove(0);
        Self::for_database(config, &first)
    }

    /// Builds the rules of one logical database of `config`.
    pub fn for_database(
        config: &Config,
        db: &DatabaseRules<'_>,
    ) -> Result<ShardingRules, ConfigError> {
        let prefix = &db.key_prefix;
        let default_data_source = db.default_data_source;
        if !config.data_sources.contains_key(default_data_source) {
            let problem = Problem::UnknownDataSource {
                name: default_data_source.to_owned(),
                declared: declared_list(config.data_sources.keys()),
            };
            return Err(ConfigError::invalid(db.default_data_source_key(), problem));
        }
        let mut sharded = HashMap::new();
        for (name, table) in db.tables {
            let key = format!("{prefix}tables.{name}");
            let rules = ShardedTable::new(name, &key, table, &config.data_sources)?;
            if sharded.insert(name.to_lowercase(), rules).is_some() {
                return Err(ConfigError::invalid(
                    key,
                    Problem::DuplicateTable(name.clone()),
                ));
            }
        }
        let mut broadcast = HashMap::new();
        let broadcast_key = format!("{prefix}broadcast.tables");
        for name in &db.broadcast.tables {
            let lower = name.to_lowercase();
            if sharded.contains_key(&lower) {
                return Err(ConfigError::invalid(
                    &broadcast_key,
                    Problem::ShardedAndBroadcast(name.clone()),
                ));
            }
            if broadcast.insert(lower, name.clone()).is_some() {
                return Err(ConfigError::invalid(
                    &broadcast_key,
                    Problem::DuplicateTable(name.clone()),
                ));
            }
        }
        let binding = binding_groups(db, &sharded)?;
        let mut routed_names = NameFilter::default();
        for name in sharded.keys().chain(broadcast.keys()) {
            routed_names.add(name);
        }
        Ok(ShardingRules {
            default_data_source: default_data_source.to_owned(),
            data_sources: config.database_data_sources(db),
            sharded,
            broadcast,
            binding,
            routed_names,
        })
    }

    /// The data sources of the logical database: where its broadcast tables
    /// are copied, its default one among them.
    pub fn data_sources(&self) -> &[String] {
        &self.data_sources
    }

    /// The binding group of a sharded table, if it is in one.
    pub fn binding_group(&self, table: &str) -> Option<usize> {
        self.binding.get(lower(table).as_ref()).copied()
    }

    pub fn table_kind(&self, table: &str) -> TableKind {
        let lower = lower(table);
        if !self.routed_names.admits(lower.as_ref()) {
            TableKind::Single
        } else if self.sharded.contains_key(lower.as_ref()) {
            TableKind::Sharded
        } else if self.broadcast.contains_key(lower.as_ref()) {
            TableKind::Broadcast
        } else {
            TableKind::Single
        }
    }

    /// Every data node of the table: all shards, one copy per data source
    /// for a broadcast table, or the default data source for the rest.
    pub fn nodes(&self, table: &str) -> Vec<DataNode> {
        let lower = lower(table);
        if let Some(sharded) = self.sharded.get(lower.as_ref()) {
            sharded.nodes().to_vec()
        } else if let Some(name) = self.broadcast.get(lower.as_ref()) {
            self.data_sources
                .iter()
                .map(|source| DataNode::new(source, name))
                .collect()
        } else {
            vec![DataNode::new(&self.default_data_source, table)]
        }
    }

    /// The sharding columns of a sharded table (empty for other tables),
    /// so that the SQL layer knows which predicates to extract.
    pub fn sharding_columns(&self, table: &str) -> Vec<&str> {
        self.sharded
            .get(lower(table).as_ref())
            .map(ShardedTable::sharding_columns)
            .unwrap_or_default()
    }

    /// The sharding columns of `table` whose values place rows by the
    /// column's SQL type (an integer 7 and the text '7' land apart): the
    /// caller must take values as the column stores and compares them.
    pub fn columns_placed_by_type(&self, table: &str) -> Vec<&str> {
        self.sharded
            .get(lower(table).as_ref())
            .map(ShardedTable::columns_placed_by_type)
            .unwrap_or_default()
    }

    /// The column the proxy fills with a snowflake id when an INSERT omits it.
    pub fn generated_key_column(&self, table: &str) -> Option<&str> {
        self.sharded
            .get(lower(table).as_ref())
            .and_then(ShardedTable::key_column)
    }

    /// The data nodes that can hold rows matching `condition`. Conditions
    /// only narrow sharded tables; broadcast and single tables return
    /// [`ShardingRules::nodes`].
    pub fn route(&self, table: &str, condition: &Condition) -> Result<Vec<DataNode>, RouteError> {
        let Some(sharded) = self.sharded.get(lower(table).as_ref()) else {
            return Ok(self.nodes(table));
        };
        let reached = route_condition(sharded, condition)?;
        Ok(reached
            .into_vec()
            .into_iter()
            .map(|node| sharded.nodes()[node].clone())
            .collect())
    }

    /// The data nodes of a sharded table, borrowed (None for other tables):
    /// [`ShardingRules::nodes`] without the copies, for per-statement routing.
    pub fn sharded_nodes(&self, table: &str) -> Option<&[DataNode]> {
        self.sharded
            .get(lower(table).as_ref())
            .map(ShardedTable::nodes)
    }

    /// For a sharded table, the positions in [`ShardingRules::sharded_nodes`]
    /// of the nodes [`ShardingRules::route`] would return, in the same
    /// order; None for other tables.
    pub fn route_positions(
        &self,
        table: &str,
        condition: &Condition,
    ) -> Option<Result<Vec<usize>, RouteError>> {
        let sharded = self.sharded.get(lower(table).as_ref())?;
        Some(route_condition(sharded, condition).map(NodeSet::into_vec))
    }

    /// The one data node an inserted row goes to, from its column values.
    /// Broadcast rows go to every data source: use [`ShardingRules::nodes`].
    pub fn route_row(
        &self,
        table: &str,
        row: &[(&str, ShardValue)],
    ) -> Result<DataNode, RouteError> {
        let lower = lower(table);
        if let Some(sharded) = self.sharded.get(lower.as_ref()) {
            sharded.route_row(row).cloned()
        } else if self.broadcast.contains_key(lower.as_ref()) {
            Err(RouteError::BroadcastRow {
                table: table.to_string(),
            })
        } else {
            Ok(DataNode::new(&self.default_data_source, table))
        }
    }
}

/// A table name as the maps are keyed: lower case. Names are looked up per
/// statement (every word of a statement, to find the routed tables): a name
/// in lower case is borrowed, an ASCII one up to 64 bytes (MySQL's longest
/// identifier) is lowered on the stack, only others are copied.
fn lower(table: &str) -> Lower<'_> {
    if !table.is_ascii() {
        Lower::Owned(table.to_lowercase())
    } else if !table.bytes().any(|b| b.is_ascii_uppercase()) {
        Lower::Borrowed(table)
    } else if table.len() <= 64 {
        let mut buf = [0u8; 64];
        for (to, from) in buf.iter_mut().zip(table.bytes()) {
            *to = from.to_ascii_lowercase();
        }
        Lower::Inline(buf, table.len())
    } else {
        Lower::Owned(table.to_ascii_lowercase())
    }
}

/// A lower-case table name (see [`lower`]).
enum Lower<'a> {
    Borrowed(&'a str),
    Inline([u8; 64], usize),
    Owned(String),
}

impl AsRef<str> for Lower<'_> {
    fn as_ref(&self) -> &str {
        match self {
            Lower::Borrowed(s) => s,
            // ASCII lowered is ASCII: always UTF-8.
            Lower::Inline(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
            Lower::Owned(s) => s,
        }
    }
}

/// Checks the binding groups: every member sharded, in one group only, and
/// laid out like the group's first table: the same data sources in the
/// same order, and (for tables sharded by one column) every sample value
/// routed to the same position.
fn binding_groups(
    db: &DatabaseRules<'_>,
    sharded: &HashMap<String, ShardedTable>,
) -> Result<HashMap<String, usize>, ConfigError> {
    let mut groups = HashMap::new();
    for (g, group) in db.binding.iter().enumerate() {
        let key = format!("{}binding[{g}].tables", db.key_prefix);
        let mut first: Option<(&String, &ShardedTable)> = None;
        for name in &group.tables {
            let lower = name.to_lowercase();
            let Some(table) = sharded.get(&lower) else {
                return Err(ConfigError::invalid(
                    key,
                    Problem::BindingNotSharded(name.clone()),
                ));
            };
            if groups.insert(lower, g).is_some() {
                return Err(ConfigError::invalid(
                    key,
                    Problem::BindingTwice(name.clone()),
                ));
            }
            let Some((first_name, first_table)) = first else {
                first = Some((name, table));
                continue;
            };
            let not_alike = |reason: String| {
                ConfigError::invalid(
                    key.clone(),
                    Problem::BindingNotAlike {
                        a: first_name.clone(),
                        b: name.clone(),
                        reason,
                    },
                )
            };
            let sources = |t: &ShardedTable| -> Vec<String> {
                t.nodes().iter().map(|n| n.data_source.clone()).collect()
            };
            if sources(first_table) != sources(table) {
                return Err(not_alike(
                    "their nodes are not on the same data sources in the same order".into(),
                ));
            }
            if let (Some(ca), Some(cb)) = (single_column(first_table), single_column(table)) {
                for v in 0..256i64 {
                    let at = |t: &ShardedTable, c: &str| {
                        t.route_row(&[(c, ShardValue::Int(v))])
                            .ok()
                            .and_then(|n| t.nodes().iter().position(|x| x == n))
                    };
                    if at(first_table, &ca) != at(table, &cb) {
                        return Err(not_alike(format!(
                            "the value {v} goes to different positions"
                        )));
                    }
                }
            }
        }
    }
    Ok(groups)
}

/// The sharding column of a table sharded by one column.
fn single_column(table: &ShardedTable) -> Option<String> {
    match table.sharding_columns().as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

fn route_condition(table: &ShardedTable, condition: &Condition) -> Result<NodeSet, RouteError> {
    use Bound::{Excluded, Included, Unbounded};
    // A value that routes to no one node (text on an integer column that
    // no integer equals, a date the layout has no table for, ...) is still
    // compared by every node's server, which answers exactly: all nodes.
    let leaf = |column: &str, pick| match table.route_leaf(column, pick) {
        Err(RouteError::InvalidValue { .. } | RouteError::NoNode { .. }) => Ok(table.all_nodes()),
        other => other,
    };
    let range = |column: &str, lower, upper| leaf(column, Pick::Range(lower, upper));
    match condition {
        Condition::Eq(column, value) => leaf(column, Pick::Value(value)),
        Condition::In(column, values) => {
            values
                .iter()
                .try_fold(NodeSet::default(), |mut reached, value| {
                    reached.add(leaf(column, Pick::Value(value))?);
                    Ok(reached)
                })
        }
        Condition::Between(column, low, high) => range(column, Included(low), Included(high)),
        Condition::Lt(column, value) => range(column, Unbounded, Excluded(value)),
        Condition::Le(column, value) => range(column, Unbounded, Included(value)),
        Condition::Gt(column, value) => range(column, Excluded(value), Unbounded),
        Condition::Ge(column, value) => range(column, Included(value), Unbounded),
        Condition::And(conditions) => {
            conditions
                .iter()
                .try_fold(table.all_nodes(), |mut reached, condition| {
                    reached.intersect(&route_condition(table, condition)?);
                    Ok(reached)
                })
        }
        Condition::Or(conditions) => {
            conditions
                .iter()
                .try_fold(NodeSet::default(), |mut reached, condition| {
                    reached.add(route_condition(table, condition)?);
                    Ok(reached)
                })
        }
        Condition::Unknown => Ok(table.all_nodes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/wework.toml");

    fn rules() -> ShardingRules {
        ShardingRules::new(&Config::from_toml_str(EXAMPLE).unwrap()).unwrap()
    }

    fn names(nodes: &[DataNode]) -> Vec<String> {
        nodes.iter().map(ToString::to_string).collect()
    }

    fn text(value: &str) -> ShardValue {
        ShardValue::Text(value.to_string())
    }

    #[test]
    fn table_kinds_and_node_lists() {
        let rules = rules();
        assert_eq!(rules.table_kind("users"), TableKind::Sharded);
        assert_eq!(rules.table_kind("USERS"), TableKind::Sharded);
        assert_eq!(rules.table_kind("Sys_Configs"), TableKind::Broadcast);
        assert_eq!(rules.table_kind(&"U".repeat(65)), TableKind::Single);
        assert_eq!(rules.table_kind("ÜSERS"), TableKind::Single);
        for word in ["SELECT", "where", "user", "userx", "sys_config", ""] {
            assert_eq!(rules.table_kind(word), TableKind::Single, "{word}");
        }
        assert_eq!(rules.table_kind("sys_configs"), TableKind::Broadcast);
        assert_eq!(rules.table_kind("orders"), TableKind::Single);
        assert_eq!(rules.nodes("users").len(), 64);
        assert_eq!(rules.nodes("message_records").len(), 48);
        assert_eq!(
            names(&rules.nodes("Sys_Configs")),
            [
                "ds0.sys_configs",
                "ds1.sys_configs",
                "ds2.sys_configs",
                "ds3.sys_configs"
            ]
        );
        assert_eq!(names(&rules.nodes("orders")), ["ds0.orders"]);
        assert_eq!(rules.sharding_columns("users"), ["user_id"]);
        assert_eq!(
            rules.sharding_columns("message_records"),
            ["tenant_id", "created_at"]
        );
        assert_eq!(rules.generated_key_column("users"), Some("user_id"));
        assert_eq!(rules.generated_key_column("message_records"), None);
    }

    #[test]
    fn the_seed_users_layout() {
        let rules = rules();
        for (user_id, expected) in [
            (0, "ds0.users_0"),
            (5, "ds1.users_1"),
            (67, "ds3.users_0"),
            (63, "ds3.users_15"),
        ] {
            let routed = rules
                .route("users", &Condition::eq("user_id", user_id))
                .unwrap();
            assert_eq!(names(&routed), [expected], "user_id {user_id}");
            let row = rules
                .route_row(
                    "users",
                    &[("name", text("x")), ("USER_ID", ShardValue::Int(user_id))],
                )
                .unwrap();
            assert_eq!(row.to_string(), expected);
        }
    }

    #[test]
    fn the_seed_message_records_layout() {
        let rules = rules();
        let tenant = (crc32fast::hash(b"acme") % 4) as usize;
        let condition = Condition::And(vec![
            Condition::eq("tenant_id", "acme"),
            Condition::eq("created_at", "2024-02-29 23:59:59"),
        ]);
        let expected = format!("ds{tenant}.message_records_202402");
        assert_eq!(
            names(&rules.route("message_records", &condition).unwrap()),
            [expected.as_str()]
        );
        let row = [
            ("tenant_id", text("acme")),
            ("created_at", text("2024-02-29 23:59:59")),
        ];
        assert_eq!(
            rules
                .route_row("message_records", &row)
                .unwrap()
                .to_string(),
            expected
        );
    }

    #[test]
    fn one_column_narrows_one_dimension() {
        let rules = rules();
        let by_tenant = rules
            .route("message_records", &Condition::eq("tenant_id", "acme"))
            .unwrap();
        assert_eq!(by_tenant.len(), 12);
        assert!(by_tenant.iter().all(|node| node.data_source == "ds2"));
        let by_month = rules
            .route(
                "message_records",
                &Condition::eq("created_at", "2024-07-04"),
            )
            .unwrap();
        assert_eq!(
            names(&by_month),
            [
                "ds0.message_records_202407",
                "ds1.message_records_202407",
                "ds2.message_records_202407",
                "ds3.message_records_202407"
            ]
        );
    }

    #[test]
    fn in_or_and_unknown() {
        let rules = rules();
        let in_list = Condition::In(
            "user_id".into(),
            vec![ShardValue::Int(0), ShardValue::Int(5), ShardValue::Int(64)],
        );
        assert_eq!(
            names(&rules.route("users", &in_list).unwrap()),
            ["ds0.users_0", "ds1.users_1"]
        );
        let or = Condition::Or(vec![Condition::eq("user_id", 0), Condition::Unknown]);
        assert_eq!(rules.route("users", &or).unwrap().len(), 64);
        let and = Condition::And(vec![Condition::eq("user_id", 0), Condition::Unknown]);
        assert_eq!(rules.route("users", &and).unwrap().len(), 1);
        let contradiction = Condition::And(vec![
            Condition::eq("user_id", 0),
            Condition::eq("user_id", 1),
        ]);
        assert!(rules.route("users", &contradiction).unwrap().is_empty());
        assert!(rules
            .route("users", &Condition::Or(vec![]))
            .unwrap()
            .is_empty());
        assert_eq!(
            rules
                .route("users", &Condition::eq("name", "bob"))
                .unwrap()
                .len(),
            64
        );
    }

    #[test]
    fn positions_name_the_routed_nodes() {
        let rules = rules();
        assert!(rules.sharded_nodes("sys_configs").is_none());
        assert!(rules
            .route_positions("orders", &Condition::Unknown)
            .is_none());
        for (table, condition) in [
            ("users", Condition::eq("user_id", 67)),
            ("USERS", Condition::eq("user_id", 5)),
            ("users", Condition::Unknown),
            (
                "message_records",
                Condition::And(vec![
                    Condition::eq("tenant_id", "acme"),
                    Condition::Ge("created_at".into(), text("2024-11-02")),
                ]),
            ),
        ] {
            let nodes = rules.sharded_nodes(table).unwrap();
            let positions = rules.route_positions(table, &condition).unwrap().unwrap();
            let by_position: Vec<DataNode> = positions.iter().map(|&i| nodes[i].clone()).collect();
            assert_eq!(
                by_position,
                rules.route(table, &condition).unwrap(),
                "{table}"
            );
        }
        // A value of no node: every node's server compares it.
        assert_eq!(
            rules
                .route_positions("users", &Condition::eq("user_id", -5))
                .unwrap()
                .unwrap()
                .len(),
            64
        );
    }

    #[test]
    fn ranges() {
        let rules = rules();
        let on_user = Condition::Between("user_id".into(), ShardValue::Int(1), ShardValue::Int(2));
        assert_eq!(rules.route("users", &on_user).unwrap().len(), 64);
        let quarter = Condition::And(vec![
            Condition::Ge("created_at".into(), text("2024-01-15")),
            Condition::Lt("created_at".into(), text("2024-04-01")),
            Condition::eq("tenant_id", "acme"),
        ]);
        assert_eq!(
            names(&rules.route("message_records", &quarter).unwrap()),
            [
                "ds2.message_records_202401",
                "ds2.message_records_202402",
                "ds2.message_records_202403"
            ]
        );
        let after = Condition::Gt("created_at".into(), text("2025-01-01"));
        assert!(rules.route("message_records", &after).unwrap().is_empty());
        let before = Condition::Le("created_at".into(), text("2024-01-31 23:59:59"));
        assert_eq!(rules.route("message_records", &before).unwrap().len(), 4);
    }

    #[test]
    fn values_outside_the_declared_nodes_reach_every_node_or_refuse_a_row() {
        let rules = rules();
        // A condition: no node holds such rows, and every one says so.
        let all = |table: &str, condition: &Condition| {
            rules.route(table, condition).unwrap().len() == rules.nodes(table).len()
        };
        assert!(all(
            "message_records",
            &Condition::eq("created_at", "2023-12-31")
        ));
        let in_2025 = Condition::In(
            "created_at".into(),
            vec![text("2024-05-01"), text("2025-01-01")],
        );
        assert!(all("message_records", &in_2025));
        assert!(all("users", &Condition::eq("user_id", -5)));
        // A row: it has no home.
        let error = rules
            .route_row(
                "message_records",
                &[
                    ("tenant_id", text("acme")),
                    ("created_at", text("2023-12-31")),
                ],
            )
            .unwrap_err();
        assert_eq!(
            error,
            RouteError::NoNode {
                table: "message_records".into(),
                column: "created_at".into(),
                value: text("2023-12-31")
            }
        );
        assert_eq!(
            error.to_string(),
            "no data node of table 'message_records' holds created_at = '2023-12-31'"
        );
        assert!(matches!(
            rules.route_row("users", &[("user_id", ShardValue::Int(-5))]),
            Err(RouteError::NoNode { .. })
        ));
    }

    #[test]
    fn nulls_bad_values_and_missing_columns_are_errors() {
        let rules = rules();
        let null = rules
            .route("users", &Condition::Eq("user_id".into(), ShardValue::Null))
            .unwrap_err();
        assert_eq!(
            null.to_string(),
            "table 'users': sharding column user_id is NULL, which routes nowhere"
        );
        let null_bound = Condition::Lt("created_at".into(), ShardValue::Null);
        assert!(matches!(
            rules.route("message_records", &null_bound),
            Err(RouteError::NullValue { .. })
        ));
        // Text an integer column compares as a number: 'abc' is 0, '7.5'
        // equals no integer (every node answers), '9' is 9.
        let route = |sql_value: &str| {
            rules
                .route("users", &Condition::eq("user_id", sql_value))
                .unwrap()
        };
        assert_eq!(route("abc"), route("0"));
        assert_eq!(
            route(" 9 "),
            rules.route("users", &Condition::eq("user_id", 9)).unwrap()
        );
        assert_eq!(route("7.5").len(), 64);
        assert_eq!(route("99999999999999999999").len(), 64);
        let not_date = Condition::Between("created_at".into(), text("soon"), text("2024-02-01"));
        assert_eq!(rules.route("message_records", &not_date).unwrap().len(), 48);
        // A row's text on an integer column is stored rounded.
        assert_eq!(
            rules
                .route_row("users", &[("user_id", text("8.5"))])
                .unwrap(),
            rules
                .route_row("users", &[("user_id", ShardValue::Int(9))])
                .unwrap()
        );
        let missing = rules
            .route_row("message_records", &[("tenant_id", text("acme"))])
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "table 'message_records': the row has no value for sharding column created_at"
        );
        let null_row = rules.route_row("users", &[("user_id", ShardValue::Null)]);
        assert!(matches!(null_row, Err(RouteError::NullValue { .. })));
    }

    #[test]
    fn non_sharded_tables_ignore_conditions() {
        let rules = rules();
        assert_eq!(
            names(&rules.route("orders", &Condition::eq("id", 1)).unwrap()),
            ["ds0.orders"]
        );
        assert_eq!(
            rules
                .route("sys_permissions", &Condition::Unknown)
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            rules.route_row("orders", &[]).unwrap().to_string(),
            "ds0.orders"
        );
        assert!(matches!(
            rules.route_row("sys_configs", &[]),
            Err(RouteError::BroadcastRow { .. })
        ));
    }

    #[test]
    fn layouts_without_a_table_strategy() {
        let config = Config::from_toml_str(
            r#"
            [server]
            database = "d"
            default_data_source = "a"
            [[server.users]]
            name = "u"
            [data_sources.a]
            url = "mysql://u@h/a"
            [data_sources.b]
            url = "mysql://u@h/b"
            [tables.t]
            nodes = "a.t_${['x']}, b.t_y"
            database = { column = "id", algorithm = "mod", count = 2 }
            "#,
        )
        .unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        assert_eq!(
            rules
                .route_row("t", &[("id", ShardValue::Int(3))])
                .unwrap()
                .to_string(),
            "b.t_y"
        );
        assert_eq!(
            names(&rules.route("t", &Condition::eq("id", 2)).unwrap()),
            ["a.t_x"]
        );
    }
}

#[cfg(test)]
mod name_filter_tests {
    use super::NameFilter;

    #[test]
    fn admits_every_name_added() {
        let mut filter = NameFilter::default();
        let names = [
            "users",
            "sys_configs",
            "\u{e9}t\u{e9}",
            &"x".repeat(80),
            "a",
        ];
        for name in names {
            filter.add(name);
        }
        for name in names {
            assert!(filter.admits(name), "{name}");
        }
        assert!(filter.admits(&"x".repeat(64)));
        for name in ["usersx", "where", "b", "", "Users"] {
            assert!(!filter.admits(name), "{name}");
        }
    }
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/wework.toml");

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!("{EXAMPLE}\n{extra}"))
    }

    const ORDERS: &str = r#"
[tables.orders]
nodes = "ds${0..3}.orders_${0..15}"
database = { column = "user_id", algorithm = "mod", count = 4 }
table = { column = "user_id", expression = "orders_${(user_id / 4) % 16}" }
"#;

    #[test]
    fn tables_sharded_alike_bind() {
        let config = with(&format!(
            "{ORDERS}\n[[binding]]\ntables = [\"users\", \"orders\"]\n"
        ))
        .unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        assert_eq!(rules.binding_group("users"), Some(0));
        assert_eq!(rules.binding_group("ORDERS"), Some(0));
        assert_eq!(rules.binding_group("message_records"), None);
    }

    #[test]
    fn tables_not_alike_are_refused() {
        let other = ORDERS.replace("(user_id / 4) % 16", "(user_id / 8) % 16");
        let err = with(&format!(
            "{other}\n[[binding]]\ntables = [\"users\", \"orders\"]\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("binding[0].tables"), "{err}");
        assert!(err.to_string().contains("not sharded alike"), "{err}");
        let err = with("[[binding]]\ntables = [\"users\", \"sys_configs\"]\n").unwrap_err();
        assert!(err.to_string().contains("not a sharded table"), "{err}");
        let err = with("[[binding]]\ntables = [\"users\", \"message_records\"]\n").unwrap_err();
        assert!(err.to_string().contains("same data sources"), "{err}");
    }
}
