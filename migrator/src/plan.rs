//! `plan`: what moving a logical table to its new layout takes — extend or
//! rebuild, the tables to create on each data source, how many rows each
//! source table holds and how many change node — or why it cannot be done.

use crate::backend::{moved_data_sources, Backends};
use crate::error::{DbContext, MigrateError};
use crate::layout::{same_layout, Layout, Mode, RowRouter, TableDiff};
use crate::schema::{row_count, table_schema, TableSchema};
use crate::values::{display_key, ident, ident_list};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use shardgate_rules::config::Config;
use shardgate_rules::{DataNode, ShardingRules, TableKind};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many unroutable rows are named in a refusal.
const UNROUTABLE_SHOWN: usize = 5;

/// A reason the migrator will not move a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// Not a sharded table in one of the configurations.
    NotSharded {
        config: &'static str,
    },
    /// The rows would be keyed by other columns: the application's
    /// statements and the copy would disagree on where rows live.
    ShardingColumnsChange {
        from: Vec<String>,
        to: Vec<String>,
    },
    /// Layout unchanged: nothing to do.
    LayoutUnchanged,
    /// The same data source name names another server or database.
    DataSourceMoved {
        data_source: String,
        from: String,
        to: String,
    },
    SourceTableMissing {
        node: String,
    },
    /// Source tables must share one definition (the new tables copy it).
    DefinitionsDiffer {
        node: String,
        like: String,
    },
    /// The copy walks an integer primary key.
    NoIntegerKey {
        node: String,
        why: String,
    },
    /// A table the job would create exists already.
    TargetExists {
        node: String,
        rows: u64,
    },
    /// A row that no node of the new layout takes.
    Unroutable {
        node: String,
        key: String,
        error: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSharded { config } => write!(
                f,
                "the table is not a sharded table in the {config} configuration"
            ),
            Refusal::ShardingColumnsChange { from, to } => write!(
                f,
                "the sharding columns change from ({}) to ({}): rows would be placed by \
                 columns the old layout does not place them by",
                from.join(", "),
                to.join(", ")
            ),
            Refusal::LayoutUnchanged => write!(f, "the layout does not change: nothing to do"),
            Refusal::DataSourceMoved {
                data_source,
                from,
                to,
            } => write!(
                f,
                "data source {data_source} is {from} in the old configuration but {to} in the \
                 new one; moving a data source is not an expansion"
            ),
            Refusal::SourceTableMissing { node } => {
                write!(f, "source table {node} does not exist")
            }
            Refusal::DefinitionsDiffer { node, like } => write!(
                f,
                "the columns of {node} differ from those of {like} (names, types or \
                 nullability): the new tables would have one definition"
            ),
            Refusal::NoIntegerKey { node, why } => write!(
                f,
                "{node} cannot be copied in key order: {why}"
            ),
            Refusal::TargetExists { node, rows } => write!(
                f,
                "{node} already exists ({rows} rows); drop it (or cancel the job that made it) first"
            ),
            Refusal::Unroutable { node, key, error } => write!(
                f,
                "the row of {node} with key {key} has no node in the new layout: {error}"
            ),
        }
    }
}

/// Rows of one source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceEstimate {
    pub data_source: String,
    pub table: String,
    pub rows: u64,
    /// Rows whose node (data source and table) changes.
    pub rows_moving: u64,
}

/// The plan of one logical table.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub table: String,
    /// None when refused.
    pub mode: Option<Mode>,
    pub refusals: Vec<Refusal>,
    pub old_nodes: Vec<String>,
    pub new_nodes: Vec<String>,
    /// Tables to create, by data source (shadow names where the old layout
    /// uses the name).
    pub create: BTreeMap<String, Vec<String>>,
    pub sources: Vec<SourceEstimate>,
    pub rows_total: u64,
    pub rows_moving: u64,
    /// Rows the job copies: all of them in a rebuild, none in an extend.
    pub rows_to_copy: u64,
    /// The source tables' definition (when they have one).
    #[serde(skip)]
    pub schema: Option<TableSchema>,
}

impl Plan {
    fn refused(table: &str, refusals: Vec<Refusal>) -> Plan {
        Plan {
            table: table.to_string(),
            mode: None,
            refusals,
            old_nodes: vec![],
            new_nodes: vec![],
            create: BTreeMap::new(),
            sources: vec![],
            rows_total: 0,
            rows_moving: 0,
            rows_to_copy: 0,
            schema: None,
        }
    }

    /// The old layout's data sources, whose primaries' binlogs the job
    /// reads.
    pub fn source_data_sources(&self) -> Vec<String> {
        let sources: std::collections::BTreeSet<String> = self
            .old_nodes
            .iter()
            .filter_map(|node| node.split_once('.').map(|(ds, _)| ds.to_string()))
            .collect();
        sources.into_iter().collect()
    }

    /// The refusals as one message, one line each.
    pub fn refusal_text(&self) -> String {
        self.refusals
            .iter()
            .map(|r| format!("  - {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The plan of everything that differs between two configurations.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub from: String,
    pub to: String,
    pub diffs: Vec<TableDiff>,
    pub plans: Vec<Plan>,
}

/// The checks that need no database: both sharded, same sharding columns,
/// the layout changes, no data source moved.
pub fn static_refusals(from: &Config, to: &Config, table: &str) -> Vec<Refusal> {
    let (Ok(old_rules), Ok(new_rules)) = (ShardingRules::new(from), ShardingRules::new(to)) else {
        // Callers build the rules first; invalid configs never get here.
        return vec![];
    };
    let mut refusals = Vec::new();
    for (config, rules) in [("old", &old_rules), ("new", &new_rules)] {
        if rules.table_kind(table) != TableKind::Sharded {
            refusals.push(Refusal::NotSharded { config });
        }
    }
    if !refusals.is_empty() {
        return refusals;
    }
    let columns = |rules: &ShardingRules| -> Vec<String> {
        let mut c: Vec<String> = rules
            .sharding_columns(table)
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let (old_columns, new_columns) = (columns(&old_rules), columns(&new_rules));
    if old_columns != new_columns {
        refusals.push(Refusal::ShardingColumnsChange {
            from: old_columns,
            to: new_columns,
        });
    }
    let config_of = |config: &'_ Config| {
        config
            .tables
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(table))
            .map(|(_, t)| t.clone())
    };
    if let (Some(old), Some(new)) = (config_of(from), config_of(to)) {
        if same_layout(&old, &new) {
            refusals.push(Refusal::LayoutUnchanged);
        }
    }
    let layout = Layout::new(table, &old_rules, &new_rules);
    let used: Vec<&String> = layout
        .old
        .iter()
        .chain(&layout.new)
        .map(|n| &n.data_source)
        .collect();
    for moved in moved_data_sources(from, to) {
        if used.contains(&&moved.name) {
            refusals.push(Refusal::DataSourceMoved {
                data_source: moved.name,
                from: moved.from,
                to: moved.to,
            });
        }
    }
    refusals
}

/// Plans one logical table, reading the source tables' definitions and
/// sharding values and the target data sources from the databases.
pub async fn plan_table(
    from: &Config,
    to: &Config,
    table: &str,
    backends: &Backends,
) -> Result<Plan, MigrateError> {
    let mut refusals = static_refusals(from, to, table);
    if !refusals.is_empty() {
        return Ok(Plan::refused(table, refusals));
    }
    let old_rules = rules(from)?;
    let new_rules = rules(to)?;
    let layout = Layout::new(table, &old_rules, &new_rules);

    // Definitions: every source table exists, all alike.
    let mut schema: Option<(TableSchema, &DataNode)> = None;
    for node in &layout.old {
        let mut conn = backends.conn(&node.data_source).await?;
        let database = backends.database(&node.data_source)?;
        match table_schema(&mut conn, database, &node.table).await? {
            None => refusals.push(Refusal::SourceTableMissing {
                node: node.to_string(),
            }),
            Some(found) => match &schema {
                None => schema = Some((found, node)),
                Some((first, like)) if *first != found => {
                    refusals.push(Refusal::DefinitionsDiffer {
                        node: node.to_string(),
                        like: like.to_string(),
                    })
                }
                Some(_) => {}
            },
        }
    }
    let Some((schema, _)) = schema else {
        return Ok(Plan::refused(table, refusals));
    };
    if !refusals.is_empty() {
        return Ok(Plan::refused(table, refusals));
    }

    // Rows: where each one goes under the new rules.
    let sharding = old_rules.sharding_columns(table);
    let mut scanned = Vec::new();
    let mut unroutable = Vec::new();
    for node in &layout.old {
        let estimate = scan_rows(
            backends,
            &schema,
            table,
            &sharding,
            node,
            &new_rules,
            &mut unroutable,
        )
        .await?;
        scanned.push(estimate);
    }
    let rows_moving: u64 = scanned.iter().map(|s| s.rows_moving).sum();
    let rows_total: u64 = scanned.iter().map(|s| s.rows).sum();
    refusals.extend(unroutable.into_iter().take(UNROUTABLE_SHOWN));

    let mode = if layout.keeps_old_nodes() && rows_moving == 0 {
        Mode::Extend
    } else {
        Mode::Rebuild
    };
    if mode == Mode::Rebuild {
        if let Err(why) = schema.integer_key() {
            refusals.push(Refusal::NoIntegerKey {
                node: layout.old[0].to_string(),
                why,
            });
        }
    }

    // Targets: none may exist yet.
    let mut create: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for target in layout.tables_to_create(mode) {
        let mut conn = backends.conn(&target.data_source).await?;
        let database = backends.database(&target.data_source)?;
        if table_schema(&mut conn, database, &target.table)
            .await?
            .is_some()
        {
            refusals.push(Refusal::TargetExists {
                rows: row_count(&mut conn, &target.table).await?,
                node: target.to_string(),
            });
        }
        create
            .entry(target.data_source.clone())
            .or_default()
            .push(target.table.clone());
    }

    Ok(Plan {
        table: table.to_string(),
        mode: refusals.is_empty().then_some(mode),
        refusals,
        old_nodes: layout.old.iter().map(ToString::to_string).collect(),
        new_nodes: layout.new.iter().map(ToString::to_string).collect(),
        create,
        sources: scanned,
        rows_total,
        rows_moving,
        rows_to_copy: if mode == Mode::Rebuild { rows_total } else { 0 },
        schema: Some(schema),
    })
}

/// Counts a source table's rows and those whose node changes, reading only
/// the key and sharding columns; unroutable rows are added to `unroutable`.
async fn scan_rows(
    backends: &Backends,
    schema: &TableSchema,
    table: &str,
    sharding: &[&str],
    node: &DataNode,
    new_rules: &ShardingRules,
    unroutable: &mut Vec<Refusal>,
) -> Result<SourceEstimate, MigrateError> {
    let mut columns: Vec<String> = schema.primary_key.clone();
    columns.extend(sharding.iter().map(|c| c.to_string()));
    let router = RowRouter::new(table, sharding, &columns, &schema.kinds_of(sharding))
        .map_err(|source| MigrateError::route(node.to_string(), "-", source))?;
    let key_columns = schema.primary_key.len();
    let mut conn = backends.conn(&node.data_source).await?;
    let sql = format!(
        "SELECT {} FROM {}",
        ident_list(&columns),
        ident(&node.table)
    );
    let context = || format!("reading the sharding columns of {node}");
    let mut result = conn.query_iter(sql).await.context(context)?;
    let mut estimate = SourceEstimate {
        data_source: node.data_source.clone(),
        table: node.table.clone(),
        rows: 0,
        rows_moving: 0,
    };
    if let Some(mut rows) = result.stream::<mysql_async::Row>().await.context(context)? {
        while let Some(row) = rows.next().await {
            let values = row.context(context)?.unwrap();
            estimate.rows += 1;
            match router.route(new_rules, &values) {
                Ok(to) if to != *node => estimate.rows_moving += 1,
                Ok(_) => {}
                Err(error) if unroutable.len() < UNROUTABLE_SHOWN => {
                    let key = display_key(&values, key_columns);
                    unroutable.push(Refusal::Unroutable {
                        node: node.to_string(),
                        key,
                        error: error.to_string(),
                    });
                }
                Err(_) => {}
            }
        }
    }
    Ok(estimate)
}

fn rules(config: &Config) -> Result<ShardingRules, MigrateError> {
    ShardingRules::new(config).map_err(|source| MigrateError::config("configuration", source))
}

/// Plans every table whose layout differs (or only `table`).
pub async fn plan(
    from: &Config,
    to: &Config,
    from_path: &str,
    to_path: &str,
    table: Option<&str>,
    backends: &Backends,
) -> Result<PlanReport, MigrateError> {
    let diffs = crate::layout::table_diffs(from, to);
    let tables: Vec<String> = match table {
        Some(table) => vec![table.to_string()],
        None => diffs
            .iter()
            .filter_map(|d| match d {
                TableDiff::Changed(name) => Some(name.clone()),
                _ => None,
            })
            .collect(),
    };
    let mut plans = Vec::new();
    for table in tables {
        plans.push(plan_table(from, to, &table, backends).await?);
    }
    Ok(PlanReport {
        from: from_path.to_string(),
        to: to_path.to_string(),
        diffs,
        plans,
    })
}

/// `first .. last (n)` of a list of names.
fn span(names: &[String]) -> String {
    match names {
        [] => "none".into(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} .. {last} ({})", names.len()),
    }
}

/// The plan for people.
pub fn render_text(report: &PlanReport) -> String {
    let mut out = format!("plan: {} -> {}\n", report.from, report.to);
    for diff in &report.diffs {
        match diff {
            TableDiff::Added(name) => out.push_str(&format!(
                "  {name}: new sharded table, nothing to migrate\n"
            )),
            TableDiff::Removed(name) => out.push_str(&format!(
                "  {name}: no longer sharded in the new configuration (not migrated)\n"
            )),
            TableDiff::Changed(_) => {}
        }
    }
    if report.plans.is_empty() {
        out.push_str("no sharded table changes layout\n");
    }
    for plan in &report.plans {
        out.push_str(&format!("\ntable {}\n", plan.table));
        let Some(mode) = plan.mode else {
            out.push_str(&format!("  REFUSED:\n{}\n", plan.refusal_text()));
            continue;
        };
        let explain = match mode {
            Mode::Extend => "new tables only; every row keeps its place",
            Mode::Rebuild => "every row is copied into the new layout",
        };
        out.push_str(&format!("  mode: {mode} ({explain})\n"));
        out.push_str(&format!(
            "  layout: {} -> {} physical tables\n",
            plan.old_nodes.len(),
            plan.new_nodes.len()
        ));
        out.push_str("  tables to create:\n");
        if plan.create.is_empty() {
            out.push_str("    none\n");
        }
        for (source, tables) in &plan.create {
            let (shadow, fresh): (Vec<String>, Vec<String>) = tables
                .iter()
                .cloned()
                .partition(|t| t.ends_with(crate::layout::SHADOW_SUFFIX));
            out.push_str(&format!("    {source}:"));
            if !shadow.is_empty() {
                out.push_str(&format!(" shadow {}", span(&shadow)));
            }
            if !fresh.is_empty() {
                out.push_str(&format!(" new {}", span(&fresh)));
            }
            out.push('\n');
        }
        let mut by_source: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for s in &plan.sources {
            let entry = by_source.entry(&s.data_source).or_default();
            entry.0 += s.rows;
            entry.1 += s.rows_moving;
        }
        out.push_str(&format!(
            "  rows: {} in {} source tables; {} change node, {} stay; {} to copy\n",
            plan.rows_total,
            plan.sources.len(),
            plan.rows_moving,
            plan.rows_total - plan.rows_moving,
            plan.rows_to_copy
        ));
        for (source, (rows, moving)) in by_source {
            out.push_str(&format!(
                "    {source}: {rows} rows, {moving} change node\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::users_config;

    #[test]
    fn static_checks_refuse_what_cannot_be_expanded() {
        let old = users_config(4, 16);
        assert!(static_refusals(&old, &users_config(4, 32), "users").is_empty());
        assert!(static_refusals(&old, &users_config(8, 16), "users").is_empty());
        assert_eq!(
            static_refusals(&old, &old, "users"),
            vec![Refusal::LayoutUnchanged]
        );
        assert_eq!(
            static_refusals(&old, &old, "orders"),
            vec![
                Refusal::NotSharded { config: "old" },
                Refusal::NotSharded { config: "new" }
            ]
        );
        let mut other_column = users_config(4, 32);
        let users = other_column.tables.get_mut("users").unwrap();
        users.table.as_mut().unwrap().column = "tenant_id".into();
        let refusals = static_refusals(&old, &other_column, "users");
        assert!(
            refusals
                .iter()
                .any(|r| matches!(r, Refusal::ShardingColumnsChange { .. })),
            "{refusals:?}"
        );
        let mut moved = users_config(8, 16);
        moved.data_sources.get_mut("ds2").unwrap().url =
            shardgate_rules::config::BackendUrl::parse("mysql://root@10.0.0.9:3306/ds2").unwrap();
        let refusals = static_refusals(&old, &moved, "users");
        assert_eq!(refusals.len(), 1);
        assert!(refusals[0].to_string().contains("ds2"), "{}", refusals[0]);
    }

    #[test]
    fn spans_name_the_first_and_last_table() {
        let names: Vec<String> = (0..3).map(|i| format!("t_{i}")).collect();
        assert_eq!(span(&names), "t_0 .. t_2 (3)");
        assert_eq!(span(&names[..1]), "t_0");
    }
}
