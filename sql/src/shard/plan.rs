//! Where an analysed statement runs: one data node (its reply forwarded as
//! it is), several nodes whose rows are concatenated, or a write fanned out
//! to several nodes in one transaction. Anything the proxy cannot answer
//! exactly as one database would is refused with error 1235 and a message
//! naming the tables.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use shardgate_rules::{
    ColumnKinds, Condition, DataNode, Ids, RouteError, ShardValue, ShardingRules,
    SnowflakeGenerator, TableKind,
};

use super::analyze::{
    cut_numbers, number, Cond, InsertShape, ShardedStatement, StatementKind, Val,
};
use super::column_values::{compared, stored};
use super::error::{MergeShapeError, PlanError};
use super::having::Cond as HavingCond;
use super::node_rows::{NodeRows, RowKeys};
use super::node_sql::NodeSql;
use super::params::ParamValue;
use super::rewrite::{bind_in_order, with_params_bound};
use super::scatter::{derived_columns, node_tail, node_text, LimitVal, ScatterSelect};
use crate::dialect::Dialect;

/// One statement for one data source. Its text borrows the client's
/// statement (`'s`): see [`NodeSql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'s> {
    pub data_source: String,
    pub sql: NodeSql<'s>,
}

/// How the affected-row counts of a fan-out add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affected {
    /// Each node changed its own rows.
    Sum,
    /// Each node holds a copy (broadcast tables, DDL): report one.
    OneCopy,
}

/// Where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'s> {
    /// One node; its reply goes to the client unchanged.
    One(Target<'s>),
    /// Several nodes; their rows are concatenated in node order.
    Concat(Vec<Target<'s>>),
    /// Several data sources (one statement each, its tables' rows combined
    /// with UNION ALL); their rows are merged as `scatter` says.
    Merge {
        targets: Vec<Target<'s>>,
        /// When the first data source combines several tables: its first
        /// table's own statement, whose column definitions the client sees.
        first_table: Option<FirstTable<'s>>,
        scatter: Box<ScatterSelect>,
        offset: u64,
        limit: Option<u64>,
        /// HAVING with its parameters bound, evaluated on merged groups.
        having: Option<HavingCond>,
    },
    /// Writes on several nodes (or one with a generated key); one OK.
    Fanout {
        targets: Vec<Target<'s>>,
        affected: Affected,
        /// All or nothing: the nodes run in one transaction.
        transactional: bool,
        /// The first generated key, reported as the last insert id.
        generated_id: Option<u64>,
        /// For an INSERT: the statement's rows each target writes, in order
        /// (the OK's "Records" counts of a multi-row INSERT add up from
        /// them; the last row's target tells its insert id).
        insert_rows: Vec<Arc<[u32]>>,
        /// For a write with RETURNING: how the targets' rows make the answer.
        returning: Option<Returning>,
        /// For an UPDATE assigning these sharding columns (lower case):
        /// each target first counts the rows whose sharding values it would
        /// change ([`super::rewrite::move_guard`]), and none may (they
        /// would have to move).
        guarded_columns: Vec<String>,
    },
}

/// How the rows a fanned-out write's RETURNING clause gives come together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returning {
    /// INSERT: each target's rows are its `insert_rows` of the statement,
    /// in order; the client gets them in the statement's order, as one
    /// server returns them.
    InsertedRows,
    /// DELETE: every target's rows, one target after the other.
    Concat,
    /// Every target holds a copy (broadcast tables): the first one's rows.
    OneCopy,
}

/// The first table of a merged SELECT's first data source, when that data
/// source combines several tables. A UNION's column definitions lose their
/// tables and the flags MariaDB gives a single table's result (GROUP_FLAG,
/// NOT_NULL, ...), so the client sees those of this statement run on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstTable<'s> {
    /// The first table's statement, exactly as it runs inside the data
    /// source's UNION.
    pub sql: NodeSql<'s>,
    /// The data source's statement without that table: its other tables'
    /// rows, sorted and limited as the whole data source's.
    pub rest: NodeSql<'s>,
    /// Whether the first table's statement may run a second time for its
    /// definitions ([`ScatterSelect::repeatable`]).
    pub repeatable: bool,
}

/// What planning needs besides the statement.
pub struct PlanContext<'a> {
    pub rules: &'a ShardingRules,
    pub default_data_source: &'a str,
    pub keys: &'a SnowflakeGenerator,
    /// The SQL kinds of the statement's sharding columns, where their
    /// algorithm places values by it ([`ColumnKinds::none`] elsewhere).
    pub kinds: &'a ColumnKinds,
    /// The SQL of the data sources, for the node statements.
    pub dialect: &'a dyn Dialect,
}

/// Plans `st` (the analysis of `sql`) with the bound parameters `params`.
/// `as_text` says whether targets must carry the parameters as literals
/// (text protocol) or keep the `?` (prepared on the node).
pub fn plan<'s>(
    st: &'s ShardedStatement,
    sql: &'s str,
    params: &[ParamValue],
    as_text: bool,
    ctx: &PlanContext<'_>,
) -> Result<Route<'s>, PlanError> {
    check_supported(st, ctx)?;
    let layout = Layout::of(st, ctx);
    let text_of = |s: NodeSql<'s>| {
        if as_text && !params.is_empty() {
            NodeSql::from(with_params_bound(ctx.dialect, &s.text(), params))
        } else {
            s
        }
    };
    match layout.first_table() {
        Some(table) => plan_sharded(st, sql, table, &layout, params, ctx, &text_of),
        None => plan_broadcast(st, sql, ctx, &text_of),
    }
}

/// For a SELECT on one sharded table that `check_supported` accepted: the
/// position (among the table's nodes) of the one node these parameters
/// reach, where `plan` answers `Route::One` with [`node_target`] of it.
/// None when `plan` must decide: another kind of statement, bound tables,
/// several nodes or none, a value that does not route.
///
/// Prepared statements route each execution here and keep the node
/// statements they built, instead of planning every execution anew.
pub fn single_node(
    st: &ShardedStatement,
    params: &[ParamValue],
    ctx: &PlanContext<'_>,
) -> Option<usize> {
    if st.kind != StatementKind::Select {
        return None;
    }
    // Without the statement's text: a cut list reaches every node.
    let resolver = Resolver {
        sql: None,
        params,
        kinds: ctx.kinds,
        table: None,
    };
    let condition = resolver.resolve(&st.condition);
    // Routing answers for sharded tables only: that finds the one sharded
    // table without looking each table up twice.
    let mut routed = st
        .tables
        .iter()
        .filter_map(|t| ctx.rules.route_positions(t, &condition));
    let positions = routed.next()?.ok()?;
    if routed.next().is_some() {
        return None;
    }
    match positions.as_slice() {
        [position] => Some(*position),
        _ => None,
    }
}

/// The statement for the node at `position` of `st`'s sharded tables, as
/// `plan` sends it there (parameters left as `?`); None past the last node.
pub fn node_target<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    position: usize,
    ctx: &PlanContext<'_>,
) -> Option<Target<'s>> {
    let layout = Layout::of(st, ctx);
    (position < layout.width()).then(|| Target {
        data_source: layout.data_source(position).to_owned(),
        sql: node_sql(st, sql, &layout, position, None),
    })
}

/// Refuses statements whose shape no parameter value can make routable:
/// several sharded tables, a sharded table with unsharded ones, subqueries
/// over a sharded table.
pub fn check_supported(st: &ShardedStatement, ctx: &PlanContext<'_>) -> Result<(), PlanError> {
    let sharded: Vec<&String> = st
        .tables
        .iter()
        .filter(|t| ctx.rules.table_kind(t) == TableKind::Sharded)
        .collect();
    let names = || st.tables.join(", ");
    if sharded.len() > 1 {
        let group = ctx.rules.binding_group(sharded[0]);
        let bound = group.is_some() && sharded.iter().all(|t| ctx.rules.binding_group(t) == group);
        if !bound {
            return Err(PlanError::NotSupported(format!(
                "statements over several sharded tables ({}) are not supported unless they are bound ([[binding]] in the config: sharded alike and joined on their sharding columns); query them separately",
                names()
            )));
        }
        if st.kind != StatementKind::Select {
            return Err(PlanError::NotSupported(format!(
                "writes over several sharded tables ({}) are not supported; write each table on its own",
                names()
            )));
        }
        if !joined_on_sharding_columns(&sharded, &st.sharding_joins) {
            return Err(PlanError::NotSupported(format!(
                "binding tables ({}) must be joined on their sharding columns (e.g. a.k = b.k) to be answered node by node",
                names()
            )));
        }
    }
    if !sharded.is_empty() && !st.other_tables.is_empty() {
        return Err(PlanError::NotSupported(format!(
            "joining sharded table {} with unsharded table(s) {} is not supported: they live on different data sources",
            sharded[0],
            st.other_tables.join(", ")
        )));
    }
    if st.select.compound && !sharded.is_empty() {
        return Err(PlanError::NotSupported(format!(
            "subqueries, UNION or derived tables over sharded table {} are not supported yet",
            sharded[0]
        )));
    }
    Ok(())
}

/// Whether the equalities connect every table to the first.
fn joined_on_sharding_columns(tables: &[&String], joins: &[(String, String)]) -> bool {
    let mut reached = vec![tables[0].clone()];
    let mut grew = true;
    while grew {
        grew = false;
        for (a, b) in joins {
            for (from, to) in [(a, b), (b, a)] {
                if reached.contains(from) && !reached.contains(to) {
                    reached.push(to.clone());
                    grew = true;
                }
            }
        }
    }
    tables.iter().all(|t| reached.contains(t))
}

/// Where a prepared statement is prepared to learn its parameters and
/// columns: the first node of its sharded table, or the default data
/// source for broadcast tables.
pub fn prepare_target<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    ctx: &PlanContext<'_>,
) -> Target<'s> {
    let layout = Layout::of(st, ctx);
    match layout.first_position() {
        Some(position) => Target {
            data_source: layout.data_source(position).to_owned(),
            sql: node_sql(st, sql, &layout, position, None),
        },
        None => Target {
            data_source: ctx.default_data_source.to_owned(),
            sql: same_names(st, sql, ctx.dialect),
        },
    }
}

/// The sharded tables of a statement with their data nodes, borrowed from
/// the rules. Bound tables are laid out alike (the config is refused
/// otherwise), so one position names a node of each: a node statement is
/// a position in these lists.
struct Layout<'a> {
    /// (logical table, its nodes), in the statement's table order.
    tables: Vec<(&'a str, &'a [DataNode])>,
    /// How node statements quote names and sort keys.
    dialect: &'a dyn Dialect,
}

impl<'a> Layout<'a> {
    fn of(st: &'a ShardedStatement, ctx: &PlanContext<'a>) -> Self {
        Layout {
            tables: st
                .tables
                .iter()
                .filter_map(|t| Some((t.as_str(), ctx.rules.sharded_nodes(t)?)))
                .collect(),
            dialect: ctx.dialect,
        }
    }

    fn first_table(&self) -> Option<&'a str> {
        self.tables.first().map(|(t, _)| *t)
    }

    /// How many positions there are (nodes of the first table).
    fn width(&self) -> usize {
        self.tables.first().map_or(0, |(_, nodes)| nodes.len())
    }

    /// Every sharded table at its first node, when there are sharded tables.
    fn first_position(&self) -> Option<usize> {
        (!self.tables.is_empty() && self.tables.iter().all(|(_, nodes)| !nodes.is_empty()))
            .then_some(0)
    }

    /// The data source of a position (below `width`: positions come from
    /// routing these very tables).
    fn data_source(&self, position: usize) -> &'a str {
        &self.tables[0].1[position].data_source
    }

    /// The physical name of `logical` at a position: the node's table for
    /// sharded tables, the same name for broadcast ones.
    fn physical<'s>(&'s self, position: usize, logical: &'s str) -> &'s str {
        self.tables
            .iter()
            .find(|(t, _)| *t == logical)
            .map_or(logical, |(_, nodes)| nodes[position].table.as_str())
    }

    /// [`Layout::physical`] as an owned name, for the rewrite helpers.
    fn names(&self, position: usize) -> impl Fn(&str) -> String + '_ {
        move |t: &str| self.physical(position, t).to_owned()
    }
}

/// The statement of the node at `position`: `sql` with its tables' names
/// spliced in ([`splice_tables`]), sharing the rest of the text.
fn node_sql<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    layout: &Layout<'_>,
    position: usize,
    split: Option<&SplitItems>,
) -> NodeSql<'s> {
    let physical = layout.names(position);
    let names = st
        .replacements
        .iter()
        .map(|r| (r.start, r.end, layout.dialect.quoted(&physical(&r.table))));
    match split.and_then(|s| s.edit(position)) {
        None => NodeSql::spliced(sql, names),
        Some(edit) => {
            let mut edits: Vec<_> = names.collect();
            let at = edits.partition_point(|e| (e.0, e.1) <= (edit.0, edit.1));
            edits.insert(at, edit);
            NodeSql::spliced(sql, edits)
        }
    }
}

/// A cut list's integer as written and the node positions its value
/// reaches (or why it routes nowhere); None: not a value its column compares.
type RoutedItem<'s> = Option<(&'s str, Result<Vec<usize>, PlanError>)>;

/// Each integer of a cut list of `column` (its `items`, in `sql`) as
/// written, with the positions of `table`'s nodes its value reaches: None
/// for the list when a value is not one the column compares; a value that
/// does not route comes with its error.
fn routed_cut_list<'s>(
    sql: &'s str,
    items: Range<usize>,
    table: &'s str,
    column: &str,
    params: &'s [ParamValue],
    ctx: &'s PlanContext<'s>,
) -> Option<impl Iterator<Item = RoutedItem<'s>> + 's> {
    let kind = ctx.kinds.of(column);
    // One condition for them all, its value replaced: no name copied per value.
    let mut one = Condition::Eq(column.to_owned(), ShardValue::Null);
    Some(cut_numbers(sql.get(items)?).map(move |n| {
        let value = compared(&number(n), params, kind)?;
        if let Condition::Eq(_, v) = &mut one {
            *v = value;
        }
        Some((n, reached(table, &one, ctx)))
    }))
}

/// The items of a statement's [`SplitList`](super::analyze::SplitList)
/// that each node gets: those whose value routes to it.
struct SplitItems {
    items: Range<usize>,
    /// By position; the nodes a statement goes to have at least one.
    /// Taken by the node's statement as it is built ([`Self::edit`]).
    by_position: Vec<Cell<String>>,
}

impl SplitItems {
    /// The list's items for the statement of the node at `nodes`' members
    /// when `st` has a split list, on one sharded table and no other (so
    /// that its column is that table's), each of those nodes keeping at
    /// least one item; None otherwise, and the whole list goes everywhere.
    fn of(
        st: &ShardedStatement,
        sql: &str,
        nodes: &[usize],
        width: usize,
        params: &[ParamValue],
        ctx: &PlanContext<'_>,
    ) -> Option<SplitItems> {
        let split = st.split_list.as_ref()?;
        if nodes.len() < 2
            || st.tables.len() != 1
            || !st.other_tables.is_empty()
            || st.updates_sharding_column
        {
            return None;
        }
        let mut wanted = vec![false; width];
        for &n in nodes {
            *wanted.get_mut(n)? = true;
        }
        // A node's share of the list, and an eighth more: most lists
        // spread evenly, and a string grown by doubling leaves its old
        // copies behind in the heap.
        let share = split.items.len() / nodes.len() * 9 / 8;
        let mut by_position: Vec<String> = (0..width)
            .map(|p| match wanted[p] {
                true => String::with_capacity(share),
                false => String::new(),
            })
            .collect();
        let values = routed_cut_list(
            sql,
            split.items.clone(),
            &split.table,
            &split.column,
            params,
            ctx,
        )?;
        for value in values {
            let (n, reached) = value?;
            for p in reached.ok()? {
                if let (Some(true), Some(list)) = (wanted.get(p), by_position.get_mut(p)) {
                    if !list.is_empty() {
                        list.push_str(&split.separator);
                    }
                    list.push_str(n);
                }
            }
        }
        nodes
            .iter()
            .all(|&n| !by_position[n].is_empty())
            .then(|| SplitItems {
                items: split.items.clone(),
                by_position: by_position.into_iter().map(Cell::new).collect(),
            })
    }

    /// The edit that leaves the node at `position` its own items (none
    /// for a node that has none: it keeps them all). The items move into
    /// the edit: each node's statement is built once, and a copy would
    /// hold a long list twice. Asked again, the node keeps them all.
    fn edit(&self, position: usize) -> Option<(usize, usize, String)> {
        let own = self.by_position.get(position)?.take();
        (!own.is_empty()).then_some((self.items.start, self.items.end, own))
    }
}

/// `sql` with its tables' names quoted as the dialect does, unchanged
/// otherwise (broadcast tables, whose nodes use the logical names).
fn same_names<'s>(st: &ShardedStatement, sql: &'s str, dialect: &dyn Dialect) -> NodeSql<'s> {
    NodeSql::spliced(
        sql,
        st.replacements
            .iter()
            .map(|r| (r.start, r.end, dialect.quoted(&r.table))),
    )
}

/// The positions of `table`'s nodes a condition reaches.
fn reached(
    table: &str,
    condition: &Condition,
    ctx: &PlanContext<'_>,
) -> Result<Vec<usize>, PlanError> {
    match ctx.rules.route_positions(table, condition) {
        Some(positions) => positions.map_err(|e| route_error(&e)),
        // Layouts hold sharded tables only.
        None => Ok(Vec::new()),
    }
}

/// The positions a condition reaches for a group of bound tables: those
/// every table's own routing allows (each is a superset).
fn bound_positions(
    layout: &Layout<'_>,
    condition: &Condition,
    ctx: &PlanContext<'_>,
) -> Result<Vec<usize>, PlanError> {
    let mut allowed = vec![true; layout.width()];
    for (t, _) in &layout.tables {
        let positions = reached(t, condition, ctx)?;
        for (i, ok) in allowed.iter_mut().enumerate() {
            *ok &= positions.contains(&i);
        }
    }
    Ok((0..allowed.len()).filter(|i| allowed[*i]).collect())
}

/// Binds a condition's parameters, each value taken as its column
/// compares it. A comparison with NULL is never true in SQL, so it matches
/// no row and reaches no node.
struct Resolver<'a> {
    /// The statement's text, for the values of cut lists; None where it
    /// is not at hand (such a list is then `Unknown`: every node).
    sql: Option<&'a str>,
    params: &'a [ParamValue],
    kinds: &'a ColumnKinds,
    /// The statement's one sharded table, when it has one: a cut list
    /// keeps one value for each set of its nodes that its values reach,
    /// which reaches what all of them do.
    table: Option<(&'a str, &'a PlanContext<'a>)>,
}

impl Resolver<'_> {
    fn resolve(&self, cond: &Cond) -> Condition {
        let nothing = || Condition::Or(Vec::new());
        let value = |c: &str, val: &Val| compared(val, self.params, self.kinds.of(c));
        let leaf = |make: fn(String, ShardValue) -> Condition, c: &String, val: &Val| match value(
            c, val,
        ) {
            Some(ShardValue::Null) => nothing(),
            Some(value) => make(c.clone(), value),
            None => Condition::Unknown,
        };
        match cond {
            Cond::Eq(c, val) => leaf(Condition::Eq, c, val),
            Cond::Lt(c, val) => leaf(Condition::Lt, c, val),
            Cond::Le(c, val) => leaf(Condition::Le, c, val),
            Cond::Gt(c, val) => leaf(Condition::Gt, c, val),
            Cond::Ge(c, val) => leaf(Condition::Ge, c, val),
            Cond::In(c, vals) => match vals
                .iter()
                .map(|val| value(c, val))
                .collect::<Option<Vec<_>>>()
            {
                Some(values) => Condition::In(
                    c.clone(),
                    values
                        .into_iter()
                        .filter(|x| *x != ShardValue::Null)
                        .collect(),
                ),
                None => Condition::Unknown,
            },
            Cond::InText(c, items) => self
                .cut_list(c, items.clone())
                .map_or(Condition::Unknown, |values| {
                    Condition::In(c.clone(), values)
                }),
            Cond::Between(c, lo, hi) => match (value(c, lo), value(c, hi)) {
                (Some(ShardValue::Null), _) | (_, Some(ShardValue::Null)) => nothing(),
                (Some(lo), Some(hi)) => Condition::Between(c.clone(), lo, hi),
                _ => Condition::Unknown,
            },
            Cond::And(parts) => Condition::And(parts.iter().map(|p| self.resolve(p)).collect()),
            Cond::Or(parts) => Condition::Or(parts.iter().map(|p| self.resolve(p)).collect()),
            Cond::Unknown => Condition::Unknown,
        }
    }

    /// The values of a cut list of `column` that routing needs: with one
    /// sharded table, the first value to reach each set of its nodes (and
    /// any that does not route, so that routing the list reports it);
    /// otherwise all of them.
    fn cut_list(&self, column: &str, items: Range<usize>) -> Option<Vec<ShardValue>> {
        let sql = self.sql?;
        let kind = self.kinds.of(column);
        let value = |n: &str| compared(&number(n), self.params, kind);
        let Some((table, ctx)) = self.table else {
            return cut_numbers(sql.get(items)?).map(value).collect();
        };
        let mut values = Vec::new();
        let mut reached_sets: Vec<Vec<usize>> = Vec::new();
        for routed in routed_cut_list(sql, items, table, column, self.params, ctx)? {
            let (n, reached) = routed?;
            if let Ok(positions) = reached {
                if reached_sets.contains(&positions) {
                    continue;
                }
                reached_sets.push(positions);
            }
            values.push(value(n)?);
        }
        Some(values)
    }
}

/// The planner's error for a value that routes nowhere.
pub fn route_error(e: &RouteError) -> PlanError {
    match e {
        RouteError::NullValue { table, column } => PlanError::NullShardingValue {
            table: table.clone(),
            column: column.clone(),
        },
        RouteError::MissingShardingColumn { table, column } => PlanError::MissingShardingColumn {
            table: table.clone(),
            column: column.clone(),
        },
        other => PlanError::Unroutable(other.to_string()),
    }
}

fn plan_sharded<'s>(
    st: &'s ShardedStatement,
    sql: &'s str,
    table: &str,
    layout: &Layout<'_>,
    params: &[ParamValue],
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(NodeSql<'s>) -> NodeSql<'s>,
) -> Result<Route<'s>, PlanError> {
    let target = |position: usize, text: bool, split: Option<&SplitItems>| Target {
        data_source: layout.data_source(position).to_owned(),
        sql: if text {
            text_of(node_sql(st, sql, layout, position, split))
        } else {
            node_sql(st, sql, layout, position, split)
        },
    };
    match st.kind {
        StatementKind::Insert => {
            let shape = st
                .insert
                .as_ref()
                .ok_or_else(|| PlanError::NotSupported("INSERT without VALUES".into()))?;
            plan_insert(st, sql, shape, table, params, ctx, text_of)
        }
        StatementKind::Ddl => Ok(Route::Fanout {
            targets: (0..layout.width()).map(|p| target(p, true, None)).collect(),
            affected: Affected::OneCopy,
            transactional: false,
            generated_id: None,
            insert_rows: Vec::new(),
            returning: None,
            guarded_columns: Vec::new(),
        }),
        StatementKind::Describe => {
            if layout.width() == 0 {
                return Err(PlanError::NotSupported(format!(
                    "table {table} has no data nodes"
                )));
            }
            Ok(Route::One(target(0, false, None)))
        }
        StatementKind::Select | StatementKind::Update | StatementKind::Delete => {
            let resolver = Resolver {
                sql: Some(sql),
                params,
                kinds: ctx.kinds,
                table: (layout.tables.len() == 1).then_some((table, ctx)),
            };
            let condition = resolver.resolve(&st.condition);
            let mut nodes = if layout.tables.len() > 1 {
                bound_positions(layout, &condition, ctx)?
            } else {
                reached(table, &condition, ctx)?
            };
            if nodes.is_empty() {
                // No node can hold a matching row; any one answers with the
                // empty result (or zero affected rows) and the right columns.
                nodes = layout.first_position().into_iter().collect();
            }
            if st.updates_sharding_column {
                // Runs where its rows are, after a guard has found none
                // whose sharding values it would change (see `move_guard`).
                return Ok(Route::Fanout {
                    targets: nodes.iter().map(|n| target(*n, true, None)).collect(),
                    affected: Affected::Sum,
                    transactional: true,
                    generated_id: None,
                    insert_rows: Vec::new(),
                    returning: None,
                    guarded_columns: ctx
                        .rules
                        .sharding_columns(table)
                        .iter()
                        .map(|c| c.to_ascii_lowercase())
                        .collect(),
                });
            }
            if let [node] = nodes.as_slice() {
                return Ok(Route::One(target(*node, false, None)));
            }
            let split = SplitItems::of(st, sql, &nodes, layout.width(), params, ctx);
            let split = split.as_ref();
            if st.kind == StatementKind::Select {
                return match &st.scatter {
                    None => Ok(Route::Concat(
                        nodes.iter().map(|n| target(*n, false, split)).collect(),
                    )),
                    Some(Ok(sc)) => plan_merge(st, sql, sc, layout, &nodes, params, split),
                    Some(Err(why)) => Err(PlanError::NotSupported(format!(
                        "{why} is not supported on sharded table {table} (its rows are on {} data nodes); add a condition on its sharding column",
                        nodes.len()
                    ))),
                };
            }
            if st.ordered_write {
                return Err(PlanError::NotSupported(format!(
                    "UPDATE/DELETE with ORDER BY or LIMIT across the {} data nodes of table {table} is not supported; add a condition on its sharding column",
                    nodes.len()
                )));
            }
            Ok(Route::Fanout {
                targets: nodes.iter().map(|n| target(*n, true, split)).collect(),
                affected: Affected::Sum,
                transactional: true,
                generated_id: None,
                insert_rows: Vec::new(),
                returning: st.returning.then_some(Returning::Concat),
                guarded_columns: Vec::new(),
            })
        }
    }
}

/// Node statements for a merged SELECT: per data source, its tables' rows
/// as one sorted stream (UNION ALL under the same ORDER BY / LIMIT).
fn plan_merge<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    sc: &ScatterSelect,
    layout: &Layout<'_>,
    nodes: &[usize],
    params: &[ParamValue],
    split: Option<&SplitItems>,
) -> Result<Route<'s>, PlanError> {
    let value = |v: LimitVal| -> Result<u64, PlanError> {
        match v {
            LimitVal::Lit(n) => Ok(n),
            // Drivers bind LIMIT values as integers, doubles or strings
            // (mysql2 sends JavaScript numbers as DOUBLE); MariaDB takes all.
            LimitVal::Param(i) => match params.get(i) {
                Some(ParamValue::Int(n)) if *n >= 0 => Ok(*n as u64),
                Some(ParamValue::UInt(n)) => Ok(*n),
                Some(ParamValue::Double(d)) if *d >= 0.0 && d.fract() == 0.0 => Ok(*d as u64),
                Some(ParamValue::Decimal(t)) => t.trim().parse().map_err(|_| bad_limit()),
                Some(ParamValue::Text { bytes, .. }) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(bad_limit),
                _ => Err(bad_limit()),
            },
        }
    };
    let offset = sc.offset.map(value).transpose()?.unwrap_or(0);
    let limit = sc.limit.map(value).transpose()?;
    let node_limit = limit.map(|n| offset.saturating_add(n));
    let tail = node_tail(sc, node_limit, layout.dialect);
    let having_range = sc.having.as_ref().map_or((0, 0), |(_, r)| *r);
    let removed = |at: usize| {
        (sc.tail.0..sc.tail.1).contains(&at) || (having_range.0..having_range.1).contains(&at)
    };
    // Parameters left in the node statement (LIMIT and HAVING ones are the proxy's).
    let kept: Vec<ParamValue> = st
        .placeholders
        .iter()
        .filter(|p| !removed(p.start))
        .filter_map(|p| params.get(p.index).cloned())
        .collect();
    let having = sc
        .having
        .as_ref()
        .map(|(cond, _)| bind_having_params(cond, params))
        .transpose()
        .map_err(|e| PlanError::BadArguments(e.to_string()))?;
    let mut by_source: Vec<(String, Vec<NodeSql<'s>>)> = Vec::new();
    for &node in nodes {
        let physical = layout.names(node);
        let mut edits: Vec<(usize, usize, String)> = st
            .replacements
            .iter()
            .filter(|r| !removed(r.start))
            .map(|r| (r.start, r.end, layout.dialect.quoted(&physical(&r.table))))
            .collect();
        edits.extend(split.and_then(|s| s.edit(node)));
        edits.push((
            sc.insert_at,
            sc.insert_at,
            derived_columns(sql, sc, &st.replacements, &physical, layout.dialect),
        ));
        // Replacing an ORDER BY / LIMIT that was there: the space before it stays.
        let tail_text = if sc.tail.0 < sc.tail.1 {
            tail.trim_start()
        } else {
            tail.as_str()
        };
        if let Some(g) = &sc.group_append {
            let at = if g.at == usize::MAX {
                sc.having.as_ref().map_or(sc.tail.0, |(_, r)| r.0)
            } else {
                g.at
            };
            let text = node_text(sql, g.range, &st.replacements, &physical, layout.dialect);
            edits.push((at, at, format!("{}{text}", g.prefix)));
        }
        edits.push((sc.tail.0, sc.tail.1, tail_text.to_owned()));
        if having_range.0 < having_range.1 {
            edits.push((having_range.0, having_range.1, String::new()));
        }
        edits.sort_by_key(|e| (e.0, e.1));
        let mut text = NodeSql::spliced(sql, edits);
        text.trim_end_matches(char::is_whitespace);
        text.trim_end_matches(|c| c == ';');
        let text = if kept.is_empty() {
            text
        } else {
            NodeSql::from(bind_in_order(layout.dialect, &text.text(), &kept))
        };
        let data_source = layout.data_source(node);
        match by_source.iter_mut().find(|(ds, _)| ds == data_source) {
            Some((_, parts)) => parts.push(text),
            None => by_source.push((data_source.to_owned(), vec![text])),
        }
    }
    // A data source's tables as one sorted stream; its parts' shared text
    // stays shared.
    let combined = |parts: &[NodeSql<'s>]| match parts {
        [one] => one.clone(),
        _ => {
            // DISTINCT rows must stay distinct across a data source's
            // tables, or its LIMIT would count duplicates.
            let glue = if sc.distinct.is_some() {
                " UNION "
            } else {
                " UNION ALL "
            };
            let mut union = NodeSql::default();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    union.push_own(glue);
                }
                union.push_own("(");
                union.append(part.clone());
                union.push_own(")");
            }
            union.push_own(tail.as_str());
            union
        }
    };
    let first_table = by_source
        .first()
        .and_then(|(_, parts)| parts.split_first())
        .filter(|(_, rest)| !rest.is_empty())
        .map(|(first, rest)| FirstTable {
            sql: first.clone(),
            rest: combined(rest),
            repeatable: sc.repeatable,
        });
    let targets = by_source
        .into_iter()
        .map(|(data_source, parts)| Target {
            sql: combined(&parts),
            data_source,
        })
        .collect();
    Ok(Route::Merge {
        targets,
        first_table,
        scatter: Box::new(sc.clone()),
        offset,
        limit,
        having,
    })
}

fn bad_limit() -> PlanError {
    PlanError::BadArguments("Incorrect arguments to LIMIT".into())
}

/// A bound parameter as a HAVING literal.
fn param_condition(p: &ParamValue) -> HavingCond {
    match p {
        ParamValue::Null => HavingCond::Null,
        ParamValue::Int(i) => HavingCond::Number(i.to_string()),
        ParamValue::UInt(u) => HavingCond::Number(u.to_string()),
        ParamValue::Double(d) => HavingCond::Number(d.to_string()),
        ParamValue::Decimal(d) => HavingCond::Number(d.clone()),
        ParamValue::Text { bytes, .. } => HavingCond::Text(bytes.clone()),
        ParamValue::Temporal(t) => HavingCond::Text(t.clone().into_bytes()),
    }
}

/// The HAVING condition with its `?` replaced by the bound values (columns
/// stay symbolic until the node results' width is known).
fn bind_having_params(
    cond: &HavingCond,
    params: &[ParamValue],
) -> Result<HavingCond, MergeShapeError> {
    use HavingCond as C;
    let b = |c: &HavingCond| bind_having_params(c, params).map(Box::new);
    Ok(match cond {
        C::Param(i) => params
            .get(*i)
            .map(param_condition)
            .ok_or(MergeShapeError::UnboundHavingParameter(*i))?,
        C::Compare(op, a, c) => C::Compare(*op, b(a)?, b(c)?),
        C::Arith(op, a, c) => C::Arith(*op, b(a)?, b(c)?),
        C::And(a, c) => C::And(b(a)?, b(c)?),
        C::Or(a, c) => C::Or(b(a)?, b(c)?),
        C::Not(a) => C::Not(b(a)?),
        C::Neg(a) => C::Neg(b(a)?),
        C::IsNull(a, n) => C::IsNull(b(a)?, *n),
        other => other.clone(),
    })
}

fn plan_insert<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    shape: &'s InsertShape,
    table: &str,
    params: &[ParamValue],
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(NodeSql<'s>) -> NodeSql<'s>,
) -> Result<Route<'s>, PlanError> {
    if shape.columns.is_empty() {
        return Err(PlanError::NotSupported(format!(
            "INSERT into sharded table {table} without a column list: the proxy could not learn the table's columns"
        )));
    }
    if shape.updates_sharding_column {
        return Err(PlanError::NotSupported(format!(
            "ON DUPLICATE KEY UPDATE of a sharding column of table {table} is not supported: it would move the row"
        )));
    }
    let key_column = ctx
        .rules
        .generated_key_column(table)
        .filter(|k| !shape.columns.iter().any(|c| c.eq_ignore_ascii_case(k)));
    // Consecutive, as one server's AUTO_INCREMENT: drivers compute every
    // row's key from the first.
    let generated = match key_column {
        Some(_) => ctx
            .keys
            .next_ids(shape.rows.len())
            .map_err(|e| PlanError::KeyGeneration {
                table: table.to_owned(),
                reason: e.to_string(),
            })?,
        None => Ids::default(),
    };
    let sharding = ctx.rules.sharding_columns(table);
    // Row indexes in 32 bits: a 20 MB INSERT has some 1.5 million rows.
    if u32::try_from(shape.rows.len()).is_err() {
        return Err(PlanError::NotSupported(format!(
            "an INSERT into {table} of more than 2^32 rows"
        )));
    }
    let mut by_node: BTreeMap<DataNode, Vec<u32>> = BTreeMap::new();
    for (i, _) in shape.rows.iter().enumerate() {
        // Below 2^32, as checked above.
        let row = i as u32;
        let mut values: Vec<(&str, ShardValue)> = Vec::new();
        for column in &sharding {
            if key_column.is_some_and(|k| k.eq_ignore_ascii_case(column)) {
                let id = generated.get(i).ok_or_else(|| PlanError::KeyGeneration {
                    table: table.to_owned(),
                    reason: format!("no key for row {i}"),
                })?;
                values.push((column, ShardValue::Int(id)));
                continue;
            }
            let Some(pos) = shape
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(column))
            else {
                continue;
            };
            let value = match shape.row_value(i, pos) {
                Some(val) => stored(&val, params, ctx.kinds.of(column))?.ok_or_else(|| {
                    PlanError::NotSupported(format!("a parameter of the INSERT into {table} has no value"))
                })?,
                None => {
                    return Err(PlanError::NotSupported(format!(
                        "INSERT into {table}: the value of sharding column {column} must be a literal or a parameter"
                    )))
                }
            };
            values.push((column, value));
        }
        let node = ctx
            .rules
            .route_row(table, &values)
            .map_err(|e| route_error(&e))?;
        by_node.entry(node).or_default().push(row);
    }
    let first_row_start = shape.rows.first().map_or(sql.len(), |r| r.start());
    let last_row_end = shape.rows.last().map_or(sql.len(), |r| r.end());
    let (head, tail) = (&sql[..first_row_start], &sql[last_row_end..]);
    // Parameters outside the rows (ON DUPLICATE KEY UPDATE ... = ?) go with every node.
    // Rows are in text order: found by halving (a prepared INSERT of
    // 10,000 rows has 10,000s of parameters).
    let row_of = |at: usize| {
        let i = shape
            .rows
            .partition_point(|r| r.start() <= at)
            .checked_sub(1)?;
        (at < shape.rows[i].end()).then_some(i)
    };
    let keys = key_column.map(|column| RowKeys {
        column: ctx.dialect.quoted(column),
        ids: Arc::new(generated),
    });
    let generated_id = keys.as_ref().and_then(|k| k.ids.first()).map(|g| g as u64);
    let mut targets = Vec::with_capacity(by_node.len());
    let mut insert_rows = Vec::with_capacity(by_node.len());
    for (node, rows) in by_node {
        let physical = ctx.dialect.quoted(&node.table);
        // The head with its tables' names and the generated key's column;
        // the tail (`RETURNING users.id`, ON DUPLICATE KEY UPDATE
        // `users.v`) with its tables' names.
        let mut head_edits: Vec<(usize, usize, String)> = st
            .replacements
            .iter()
            .filter(|r| r.end <= first_row_start)
            .map(|r| (r.start, r.end, physical.clone()))
            .collect();
        if let (Some(keys), Some(at), false) = (&keys, shape.columns_end, shape.set_form) {
            let at_edit = head_edits.partition_point(|e| e.0 < at);
            head_edits.insert(at_edit, (at, at, format!(", {}", keys.column)));
        }
        let tail_edits = st
            .replacements
            .iter()
            .filter(|r| r.start >= last_row_end)
            .map(|r| {
                (
                    r.start - last_row_end,
                    r.end - last_row_end,
                    physical.clone(),
                )
            });
        let rows: Arc<[u32]> = Arc::from(rows);
        let mut text = NodeSql::spliced(head, head_edits);
        text.push_rows(NodeRows::new(
            sql,
            &shape.rows,
            Arc::clone(&rows),
            keys.clone(),
            shape.set_form,
        ));
        text.append(NodeSql::spliced(tail, tail_edits));
        let text = if params.is_empty() {
            // Each node's rows are written out as it is sent.
            text_of(text)
        } else {
            // A prepared INSERT: at most 65,535 parameters, bound in the
            // text built whole.
            let kept: Vec<ParamValue> = st
                .placeholders
                .iter()
                .filter(|p| row_of(p.start).is_none_or(|r| rows.binary_search(&(r as u32)).is_ok()))
                .filter_map(|p| params.get(p.index).cloned())
                .collect();
            NodeSql::from(bind_in_order(ctx.dialect, &text.text(), &kept))
        };
        targets.push(Target {
            data_source: node.data_source,
            sql: text,
        });
        insert_rows.push(rows);
    }
    Ok(Route::Fanout {
        targets,
        affected: Affected::Sum,
        transactional: true,
        generated_id,
        insert_rows,
        returning: st.returning.then_some(Returning::InsertedRows),
        guarded_columns: Vec::new(),
    })
}

fn plan_broadcast<'s>(
    st: &ShardedStatement,
    sql: &'s str,
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(NodeSql<'s>) -> NodeSql<'s>,
) -> Result<Route<'s>, PlanError> {
    let same_name = same_names(st, sql, ctx.dialect);
    let everywhere = || -> Vec<Target<'s>> {
        let first = st.tables.first().map(String::as_str).unwrap_or_default();
        ctx.rules
            .nodes(first)
            .into_iter()
            .map(|n| Target {
                data_source: n.data_source,
                sql: text_of(same_name.clone()),
            })
            .collect()
    };
    match st.kind {
        StatementKind::Select | StatementKind::Describe => Ok(Route::One(Target {
            data_source: ctx.default_data_source.to_owned(),
            sql: same_name,
        })),
        StatementKind::Ddl => Ok(Route::Fanout {
            targets: everywhere(),
            affected: Affected::OneCopy,
            transactional: false,
            generated_id: None,
            insert_rows: Vec::new(),
            returning: None,
            guarded_columns: Vec::new(),
        }),
        StatementKind::Insert | StatementKind::Update | StatementKind::Delete => {
            if !st.other_tables.is_empty() {
                return Err(PlanError::NotSupported(format!(
                    "writing broadcast table(s) {} together with unsharded table(s) {} is not supported",
                    st.tables.join(", "),
                    st.other_tables.join(", ")
                )));
            }
            Ok(Route::Fanout {
                targets: everywhere(),
                affected: Affected::OneCopy,
                transactional: true,
                generated_id: None,
                insert_rows: Vec::new(),
                returning: st.returning.then_some(Returning::OneCopy),
                guarded_columns: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::numbered::Numbered;
    use crate::dialect::MARIADB;
    use crate::shard::analyze::{analyze, Analysis};
    use crate::text::ClientCharset;
    use shardgate_rules::{Config, SystemClock};

    fn fixture() -> (Config, ShardingRules) {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        (config, rules)
    }

    fn route<'s>(sql: &'s str, params: &[ParamValue]) -> Result<Route<'s>, PlanError> {
        let (config, rules) = fixture();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            dialect: &MARIADB,
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
            kinds: ColumnKinds::none(),
        };
        let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules, "wework").unwrap() else {
            panic!("unsharded: {sql}")
        };
        // A route borrows its statement's analysis, as the text.
        plan(Box::leak(Box::new(st)), sql, params, true, &ctx)
    }

    fn one(ds: &str, sql: &str) -> Route<'static> {
        Route::One(Target {
            data_source: ds.into(),
            sql: sql.into(),
        })
    }

    #[test]
    fn point_reads_go_to_one_node() {
        assert_eq!(
            route("SELECT * FROM users WHERE user_id = 67", &[]).unwrap(),
            one("ds3", "SELECT * FROM `users_0` WHERE user_id = 67")
        );
        assert_eq!(
            route(
                "SELECT * FROM users u WHERE u.user_id = ?",
                &[ParamValue::Int(5)]
            )
            .unwrap(),
            one("ds1", "SELECT * FROM `users_1` u WHERE u.user_id = ?")
        );
    }

    #[test]
    fn single_node_agrees_with_plan() {
        let (config, rules) = fixture();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            dialect: &MARIADB,
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
            kinds: ColumnKinds::none(),
        };
        for (sql, params, single) in [
            (
                "SELECT * FROM users WHERE user_id = ?",
                vec![ParamValue::Int(67)],
                true,
            ),
            (
                "SELECT * FROM USERS u WHERE u.user_id = ? AND name = ?",
                vec![ParamValue::Int(5), ParamValue::Null],
                true,
            ),
            (
                "SELECT name FROM users WHERE user_id IN (?, 5)",
                vec![ParamValue::Int(69)],
                true,
            ),
            (
                "SELECT name FROM users, sys_configs c WHERE user_id = ? AND c.k = users.name",
                vec![ParamValue::Int(2)],
                true,
            ),
            (
                "SELECT * FROM users WHERE user_id IN (?, 6)",
                vec![ParamValue::Int(5)],
                false,
            ),
            (
                "SELECT * FROM users WHERE user_id = ?",
                vec![ParamValue::Null],
                false,
            ),
            (
                "SELECT * FROM users WHERE user_id = ?",
                vec![ParamValue::Int(-5)],
                false,
            ),
            (
                "SELECT * FROM users WHERE name = ?",
                vec![ParamValue::Int(1)],
                false,
            ),
            (
                "UPDATE users SET name = 'x' WHERE user_id = ?",
                vec![ParamValue::Int(1)],
                false,
            ),
            (
                "SELECT * FROM sys_configs WHERE k = ?",
                vec![ParamValue::Int(1)],
                false,
            ),
        ] {
            let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules, "wework").unwrap() else {
                panic!("unsharded: {sql}")
            };
            let planned = plan(&st, sql, &params, true, &ctx);
            match single_node(&st, &params, &ctx) {
                Some(position) => {
                    assert!(single, "{sql}");
                    let target = node_target(&st, sql, position, &ctx).unwrap();
                    assert_eq!(planned.unwrap(), Route::One(target), "{sql}");
                }
                None => assert!(!single, "{sql}"),
            }
        }
        let Analysis::Sharded(st) =
            analyze("SELECT 1 FROM users", &MARIADB, &rules, "wework").unwrap()
        else {
            panic!()
        };
        assert!(node_target(&st, "SELECT 1 FROM users", 64, &ctx).is_none());
    }

    #[test]
    fn scatter_without_order_concatenates_every_node() {
        let Route::Concat(targets) = route("SELECT name FROM users WHERE status = 1", &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(targets.len(), 64);
        assert_eq!(
            targets[0].sql,
            "SELECT name FROM `users_0` WHERE status = 1"
        );
    }

    #[test]
    fn scatter_with_order_and_limit_merges_per_data_source() {
        let Route::Merge {
            targets,
            offset,
            limit,
            ..
        } = route(
            "SELECT name FROM users u ORDER BY u.name DESC LIMIT 5, 10",
            &[],
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!((offset, limit), (5, Some(10)));
        assert_eq!(targets.len(), 4);
        assert!(
            targets[0].sql.text().starts_with(
                "(SELECT name, u.name AS `__sg_0`, WEIGHT_STRING(u.name) AS `__sg_1` FROM `users_0` u ORDER BY `__sg_0` DESC LIMIT 15) UNION ALL ("
            ),
            "{}",
            targets[0].sql
        );
        assert!(
            targets[0]
                .sql
                .text()
                .ends_with(") ORDER BY `__sg_0` DESC LIMIT 15"),
            "{}",
            targets[0].sql
        );
    }

    #[test]
    fn first_table_runs_alone_and_without_it_the_rest() {
        let Route::Merge {
            targets,
            first_table: Some(first),
            ..
        } = route(
            "SELECT status, COUNT(*) FROM users GROUP BY status ORDER BY status LIMIT 3",
            &[],
        )
        .unwrap()
        else {
            panic!()
        };
        let node = "SELECT status, COUNT(*), WEIGHT_STRING(status) AS `__sg_0` FROM";
        let tail = "GROUP BY status ORDER BY 1";
        assert_eq!(first.sql, format!("{node} `users_0` {tail}"));
        assert!(first.repeatable);
        // the data source's UNION is the first table's statement and the rest's
        let text = targets[0].sql.text();
        let (head, rest) = text.split_once(" UNION ALL ").unwrap();
        assert_eq!(head, format!("({})", first.sql));
        assert!(
            first
                .rest
                .text()
                .starts_with(&format!("({node} `users_1` {tail}) UNION ALL (")),
            "{}",
            first.rest
        );
        assert!(rest.ends_with(&first.rest.text()[first.rest.len() - 40..]));
        assert_eq!(first.rest.text().matches(" UNION ALL ").count(), 14);

        let Route::Merge { first_table, .. } = route(
            "SELECT name, SLEEP(0) FROM users ORDER BY name LIMIT 3",
            &[],
        )
        .unwrap() else {
            panic!()
        };
        assert!(first_table.is_some_and(|f| !f.repeatable));
    }

    #[test]
    fn group_by_with_avg_derives_sum_and_count() {
        let Route::Merge {
            targets, scatter, ..
        } = route(
            "SELECT status, COUNT(*), AVG(balance) FROM users GROUP BY status",
            &[],
        )
        .unwrap()
        else {
            panic!()
        };
        assert!(
            targets[0]
                .sql
                .text()
                .contains("SUM(balance) AS `__sg_1`, COUNT(balance) AS `__sg_2` FROM `users_0` GROUP BY status ORDER BY 1)"),
            "{}",
            targets[0].sql
        );
        assert_eq!(scatter.aggregates.len(), 2);
    }

    #[test]
    fn unsupported_merges_are_refused_with_the_reason() {
        let Route::Merge { targets, .. } =
            route("SELECT COUNT(DISTINCT tenant_id) FROM users", &[]).unwrap()
        else {
            panic!()
        };
        assert!(
            targets[0]
                .sql
                .text()
                .contains("FROM `users_0` GROUP BY tenant_id ORDER BY `__sg_0`"),
            "{}",
            targets[0].sql
        );
        // With other aggregates: they come in parts per tenant_id, folded.
        let Route::Merge { scatter, .. } =
            route("SELECT COUNT(DISTINCT tenant_id), COUNT(*) FROM users", &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(scatter.aggregates.len(), 2);
        let err = route(
            "SELECT COUNT(DISTINCT tenant_id), COUNT(DISTINCT name) FROM users",
            &[],
        )
        .unwrap_err();
        let PlanError::NotSupported(message) = err else {
            panic!("{err:?}")
        };
        assert!(
            message.contains("DISTINCT") && message.contains("users"),
            "{message}"
        );
        let Route::Merge {
            targets, having, ..
        } = route(
            "SELECT status FROM users GROUP BY status HAVING COUNT(*) > ? ORDER BY status",
            &[ParamValue::Int(1)],
        )
        .unwrap()
        else {
            panic!()
        };
        assert!(having.is_some());
        assert!(
            !targets[0].sql.text().contains("HAVING"),
            "{}",
            targets[0].sql
        );
    }

    #[test]
    fn insert_splits_rows_by_node() {
        let Route::Fanout {
            targets,
            affected,
            transactional,
            ..
        } = route(
            "INSERT INTO users (user_id, name) VALUES (1, 'a'), (5, 'b'), (2, ?)",
            &[ParamValue::Text {
                bytes: b"c".to_vec(),
                charset: ClientCharset::UTF8,
            }],
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!((affected, transactional), (Affected::Sum, true));
        let texts: Vec<_> = targets.iter().map(|t| t.sql.to_string()).collect();
        let got: Vec<_> = targets
            .iter()
            .zip(&texts)
            .map(|(t, sql)| (t.data_source.as_str(), sql.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "ds1",
                    "INSERT INTO `users_0` (user_id, name) VALUES (1, 'a')"
                ),
                (
                    "ds1",
                    "INSERT INTO `users_1` (user_id, name) VALUES (5, 'b')"
                ),
                (
                    "ds2",
                    "INSERT INTO `users_0` (user_id, name) VALUES (2, CONVERT(X'63' USING utf8mb4))"
                ),
            ]
        );
    }

    #[test]
    fn insert_without_key_generates_it() {
        let Route::Fanout {
            targets,
            generated_id,
            ..
        } = route("INSERT INTO users (name) VALUES ('a')", &[]).unwrap()
        else {
            panic!()
        };
        let id = generated_id.unwrap();
        assert!(targets[0]
            .sql
            .text()
            .ends_with(&format!("(name, `user_id`) VALUES ('a', {id})")));
        assert_eq!(targets[0].data_source, format!("ds{}", id % 4));
    }

    #[test]
    fn generated_keys_route_their_rows_and_names_after_the_rows_are_spliced() {
        let rows = ["('a')", "('b')", "('c')", "('d')", "('e')", "('f')"];
        let sql = format!(
            "INSERT INTO users (name) VALUES {} ON DUPLICATE KEY UPDATE name = CONCAT(users.name, 'x')",
            rows.join(", ")
        );
        let Route::Fanout {
            targets,
            generated_id,
            insert_rows,
            ..
        } = route(&sql, &[]).unwrap()
        else {
            panic!()
        };
        let first = generated_id.unwrap() as i64;
        let mut seen = 0;
        for (target, taken) in targets.iter().zip(&insert_rows) {
            // Consecutive keys from the first, each row on its key's node.
            let id = |i: u32| first + i64::from(i);
            let table = format!("`users_{}`", (id(taken[0]) / 4) % 16);
            let values: Vec<String> = taken
                .iter()
                .map(|&i| {
                    assert_eq!(target.data_source, format!("ds{}", id(i) % 4));
                    assert_eq!((id(i) / 4) % 16, (id(taken[0]) / 4) % 16);
                    format!("('{}', {})", (b'a' + i as u8) as char, id(i))
                })
                .collect();
            assert_eq!(
                target.sql,
                format!(
                    "INSERT INTO {table} (name, `user_id`) VALUES {} ON DUPLICATE KEY UPDATE name = CONCAT({table}.name, 'x')",
                    values.join(", ")
                )
            );
            assert_eq!(target.sql.byte_len(), target.sql.to_bytes().len());
            seen += taken.len();
        }
        assert_eq!(seen, rows.len());
    }

    #[test]
    fn values_outside_the_nodes_are_refused() {
        let err = route(
            "INSERT INTO message_records (id, tenant_id, created_at) VALUES (1, 'acme', '2023-12-31 10:00:00')",
            &[],
        )
        .unwrap_err();
        let PlanError::Unroutable(reason) = err else {
            panic!("{err:?}")
        };
        assert!(reason.contains("created_at"), "{reason}");
        let err = route("INSERT INTO users (user_id, name) VALUES (NULL, 'x')", &[]).unwrap_err();
        assert_eq!(
            err,
            PlanError::NullShardingValue {
                table: "users".into(),
                column: "user_id".into()
            }
        );
    }

    #[test]
    fn null_keys_in_where_match_nothing() {
        for sql in [
            "SELECT * FROM users WHERE user_id = NULL",
            "SELECT * FROM users WHERE user_id IN (NULL)",
        ] {
            let Route::One(target) = route(sql, &[]).unwrap() else {
                panic!("{sql}")
            };
            assert!(target.sql.text().contains("users_0"), "{sql}");
        }
        let Route::One(target) =
            route("SELECT * FROM users WHERE user_id IN (NULL, 5)", &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(target.data_source, "ds1");
    }

    #[test]
    fn lock_in_share_mode_is_kept_in_the_node_statement() {
        let Route::One(target) = route(
            "SELECT * FROM users WHERE user_id = 5 LOCK IN SHARE MODE",
            &[],
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(target.data_source, "ds1");
        assert!(
            target
                .sql
                .text()
                .ends_with("WHERE user_id = 5 LOCK IN SHARE MODE"),
            "{}",
            target.sql
        );
    }

    #[test]
    fn broadcast_reads_one_writes_all() {
        assert_eq!(
            route("SELECT COUNT(*) FROM sys_permissions", &[]).unwrap(),
            one("ds0", "SELECT COUNT(*) FROM `sys_permissions`")
        );
        let Route::Fanout {
            targets, affected, ..
        } = route("UPDATE sys_configs SET v = 'x' WHERE k = 'a'", &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(affected, Affected::OneCopy);
        assert_eq!(targets.len(), 4);
    }

    #[test]
    fn sharding_column_changes_are_guarded_and_cross_joins_refused() {
        let Route::Fanout {
            targets,
            transactional,
            guarded_columns,
            ..
        } = route("UPDATE users SET user_id = 9 WHERE user_id = 5", &[]).unwrap()
        else {
            panic!()
        };
        assert!(transactional);
        assert_eq!(guarded_columns, ["user_id"]);
        assert_eq!(targets.len(), 1);
        assert!(matches!(
            route(
                "SELECT * FROM users u JOIN message_records m ON m.sender = u.user_id",
                &[]
            )
            .unwrap_err(),
            PlanError::NotSupported(_)
        ));
    }

    #[test]
    fn binding_tables_join_node_by_node() {
        let text = format!(
            "{}\n[tables.orders]\nnodes = \"ds${{0..3}}.orders_${{0..15}}\"\ndatabase = {{ column = \"user_id\", algorithm = \"mod\", count = 4 }}\ntable = {{ column = \"user_id\", expression = \"orders_${{(user_id / 4) % 16}}\" }}\n[[binding]]\ntables = [\"users\", \"orders\"]\n",
            include_str!("../../../examples/wework.toml")
        );
        let config = Config::from_toml_str(&text).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            dialect: &MARIADB,
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
            kinds: ColumnKinds::none(),
        };
        let plan_of = |sql: &'static str| {
            let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules, "wework").unwrap() else {
                panic!()
            };
            plan(Box::leak(Box::new(st)), sql, &[], true, &ctx)
        };
        assert_eq!(
            plan_of("SELECT u.name, o.id FROM users u JOIN orders o ON o.user_id = u.user_id WHERE u.user_id = 5").unwrap(),
            one(
                "ds1",
                "SELECT u.name, o.id FROM `users_1` u JOIN `orders_1` o ON o.user_id = u.user_id WHERE u.user_id = 5"
            )
        );
        let Route::Concat(targets) =
            plan_of("SELECT u.name, o.id FROM users u JOIN orders o ON o.user_id = u.user_id")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(targets.len(), 64);
        assert!(
            targets[17]
                .sql
                .text()
                .contains("`users_1` u JOIN `orders_1` o"),
            "{}",
            targets[17].sql
        );
        let err = plan_of("SELECT * FROM users u JOIN orders o ON o.id = u.status").unwrap_err();
        assert!(
            err.to_string().contains("joined on their sharding columns"),
            "{err}"
        );
    }

    #[test]
    fn ddl_fans_out_to_every_node() {
        let Route::Fanout { targets, .. } =
            route("CREATE TABLE users (user_id BIGINT PRIMARY KEY)", &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(targets.len(), 64);
    }

    /// The node statements of `sql`'s route (data source, text), their
    /// markers bound as the session binds them for a text execution.
    fn node_statements_in(
        dialect: &dyn Dialect,
        sql: &str,
        params: &[ParamValue],
    ) -> Vec<(String, String)> {
        let (config, rules) = fixture();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            dialect,
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
            kinds: ColumnKinds::none(),
        };
        let Analysis::Sharded(st) = analyze(sql, dialect, &rules, "wework").unwrap() else {
            panic!("unsharded: {sql}")
        };
        let route = plan(&st, sql, params, true, &ctx).unwrap();
        let targets = match route {
            Route::One(target) => vec![target],
            Route::Concat(targets)
            | Route::Merge { targets, .. }
            | Route::Fanout { targets, .. } => targets,
        };
        targets
            .into_iter()
            .map(|t| {
                let sql = with_params_bound(dialect, &t.sql.text(), params);
                (t.data_source, sql.replace('`', "\""))
            })
            .collect()
    }

    #[test]
    fn merged_clauses_end_at_the_dialects_lock_clauses() {
        // `lock` is a column's name to PostgreSQL, not the start of
        // MariaDB's LOCK IN SHARE MODE: the ORDER BY and HAVING the nodes
        // run are cut where the dialect's clauses begin.
        let first_node = |sql: &str| {
            let nodes = node_statements_in(&Numbered, sql, &[]);
            let (_, text) = nodes.first().cloned().unwrap_or_default();
            text.split(" UNION ALL ").next().map(str::to_owned)
        };
        assert_eq!(
            first_node("SELECT name FROM users ORDER BY lock").as_deref(),
            Some("(SELECT name, lock AS \"__sg_0\", WEIGHT_STRING(lock) AS \"__sg_1\" FROM \"users_0\" ORDER BY \"__sg_0\")")
        );
        assert_eq!(
            first_node("SELECT lock, COUNT(*) FROM users GROUP BY lock HAVING lock > 1 ORDER BY lock").as_deref(),
            Some("(SELECT lock, COUNT(*), WEIGHT_STRING(lock) AS \"__sg_0\" FROM \"users_0\" GROUP BY lock  ORDER BY 1)")
        );
        assert_eq!(
            first_node("SELECT name FROM users ORDER BY name LIMIT 2 FOR SHARE").as_deref(),
            Some("(SELECT name, WEIGHT_STRING(name) AS \"__sg_0\" FROM \"users_0\" ORDER BY 1 LIMIT 2 FOR SHARE)")
        );
    }

    #[test]
    fn numbered_parameters_bind_by_number_wherever_they_stand() {
        let int = |i: i64| ParamValue::Int(i);
        let cases: [(&str, &str, Vec<ParamValue>, Vec<ParamValue>); 4] = [
            (
                "SELECT * FROM users WHERE name_id = $2 AND user_id = $1",
                "SELECT * FROM users WHERE name_id = ? AND user_id = ?",
                vec![int(67), int(5)],
                vec![int(5), int(67)],
            ),
            (
                "SELECT user_id FROM users WHERE user_id > $2 ORDER BY user_id LIMIT $1",
                "SELECT user_id FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
                vec![int(3), int(100)],
                vec![int(100), int(3)],
            ),
            (
                "INSERT INTO users (user_id, name_id) VALUES ($3, $1), ($2, $1)",
                "INSERT INTO users (user_id, name_id) VALUES (?, ?), (?, ?)",
                vec![int(9), int(66), int(67)],
                vec![int(67), int(9), int(66), int(9)],
            ),
            (
                "UPDATE users SET name_id = $1 WHERE user_id IN ($3, $2)",
                "UPDATE users SET name_id = ? WHERE user_id IN (?, ?)",
                vec![int(1), int(66), int(67)],
                vec![int(1), int(67), int(66)],
            ),
        ];
        for (numbered, marked, numbered_params, marked_params) in cases {
            assert_eq!(
                node_statements_in(&Numbered, numbered, &numbered_params),
                node_statements_in(&MARIADB, marked, &marked_params),
                "{numbered}"
            );
        }
    }

    /// The ids of each `IN (...)` in a node statement, by the physical
    /// `users_` table named last before it.
    fn lists_by_table(sql: &str) -> IdsByTable {
        let mut out = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find("\"users_") {
            rest = &rest[at + 1..];
            let table = rest[..rest.find('"').unwrap()].to_owned();
            let open = rest.find("IN (").unwrap() + 4;
            let close = open + rest[open..].find(')').unwrap();
            let ids = rest[open..close]
                .split(',')
                .map(|v| v.trim().parse().unwrap())
                .collect();
            out.push((table, ids));
            rest = &rest[close..];
        }
        out
    }

    /// The ids a node statement names, by physical table.
    type IdsByTable = Vec<(String, Vec<i64>)>;

    /// Each of `ids` is in exactly one node statement of `sql` (read by
    /// `by_table`), the one at the node its point read goes to.
    fn assert_each_id_once_at_its_node(sql: &str, ids: &[i64], by_table: fn(&str) -> IdsByTable) {
        let mut seen = Vec::new();
        for (ds, node_sql) in node_statements_in(&MARIADB, sql, &[]) {
            for (table, node_ids) in by_table(&node_sql) {
                for id in node_ids {
                    let point = format!("SELECT * FROM users WHERE user_id = {id}");
                    let Route::One(home) = route(&point, &[]).unwrap() else {
                        panic!("{point} is not routed to one node");
                    };
                    assert_eq!(home.data_source, ds, "{id} in {node_sql:.200}");
                    let named = home.sql.text().contains(&format!("`{table}`"));
                    assert!(named, "{id} in {node_sql:.200}");
                    seen.push(id);
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, ids, "every id once: {sql:.100}");
    }

    /// `ids` as an `IN` list's items.
    fn in_list(ids: &[i64]) -> String {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn long_in_lists_the_where_requires_are_split_by_node() {
        let ids: Vec<i64> = (0..300).map(|i| i * 7 + 1).collect();
        let list = in_list(&ids);
        let statements = [
            format!("SELECT name FROM users WHERE name <> 'x' AND (user_id IN ({list}))"),
            format!("SELECT name FROM users WHERE user_id IN ({list}) ORDER BY name LIMIT 5"),
            format!("UPDATE users SET name = 'y' WHERE user_id IN ({list}) AND name = 'x'"),
            format!("DELETE FROM users WHERE user_id IN ({list})"),
        ];
        for sql in &statements {
            assert_each_id_once_at_its_node(sql, &ids, lists_by_table);
        }
    }

    #[test]
    fn in_lists_that_do_not_bound_every_row_go_whole() {
        let list = in_list(&(0..100).collect::<Vec<_>>());
        let statements = [
            // Rows may match the other side of the OR, or the NOT.
            format!("SELECT name FROM users WHERE user_id IN ({list}) OR name = 'x'"),
            format!("SELECT name FROM users WHERE NOT (user_id IN ({list}))"),
            format!("SELECT name FROM users WHERE user_id NOT IN ({list}) AND name = 'x'"),
            // Rows move: the guard reads them by the whole condition.
            format!("UPDATE users SET user_id = user_id + 1 WHERE user_id IN ({list})"),
        ];
        for sql in &statements {
            for (_, node_sql) in node_statements_in(&MARIADB, sql, &[]) {
                for (_, node_ids) in lists_by_table(&node_sql) {
                    assert_eq!(node_ids, (0..100).collect::<Vec<_>>(), "{sql}");
                }
            }
        }
    }

    /// A value of the database column reaches all of its data source's
    /// tables: each of them gets that data source's values.
    #[test]
    fn a_database_columns_list_goes_to_its_data_sources_tables() {
        let tenants = (0..80).map(|i| i.to_string()).collect::<Vec<_>>();
        let sql = format!(
            "SELECT * FROM message_records WHERE tenant_id IN ({})",
            tenants.join(", ")
        );
        let mut by_source: BTreeMap<String, String> = BTreeMap::new();
        for (ds, node_sql) in node_statements_in(&MARIADB, &sql, &[]) {
            let list = &node_sql[node_sql.find("IN (").unwrap()..];
            assert_eq!(by_source.entry(ds).or_insert_with(|| list.to_owned()), list);
        }
        let mut seen: Vec<&str> = by_source
            .values()
            .flat_map(|l| {
                l.trim_start_matches("IN (")
                    .trim_end_matches(')')
                    .split(", ")
            })
            .collect();
        seen.sort_unstable_by_key(|t| t.parse::<u32>().unwrap());
        assert_eq!(seen, tenants, "each tenant on one data source");
        assert_eq!(by_source.len(), 4);
    }

    /// The values of each run of `user_id = n` terms in a node statement,
    /// by the physical `users_` table named last before it.
    fn runs_by_table(sql: &str) -> IdsByTable {
        sql.split("\"users_")
            .skip(1)
            .map(|part| {
                let table = format!("users_{}", &part[..part.find('"').unwrap()]);
                let values = part
                    .split("user_id = ")
                    .skip(1)
                    .map(|v| {
                        let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
                        v[..digits].parse().unwrap()
                    })
                    .collect();
                (table, values)
            })
            .collect()
    }

    #[test]
    fn long_runs_of_equalities_the_where_requires_are_split_by_node() {
        let ids: Vec<i64> = (0..200).map(|i| i * 5 + 2).collect();
        let run = |column: &str| {
            ids.iter()
                .map(|i| format!("{column} = {i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let statements = [
            format!("SELECT name FROM users WHERE {}", run("user_id")),
            format!(
                "SELECT name FROM users u WHERE (u.status = 1) AND ({}) ORDER BY name",
                run("u.user_id")
            ),
            format!(
                "DELETE FROM users WHERE ({})  AND  name = 'x'",
                run("user_id")
            ),
        ];
        for sql in &statements {
            assert_each_id_once_at_its_node(sql, &ids, runs_by_table);
        }
        // Not every term the column's equality: a row may match another.
        let whole = [
            format!(
                "SELECT name FROM users WHERE {} OR name = 'x'",
                run("user_id")
            ),
            format!(
                "SELECT name FROM users WHERE {} OR user_id IN (3)",
                run("user_id")
            ),
            format!(
                "SELECT name FROM users WHERE {} OR status = 3",
                run("user_id")
            ),
            format!("SELECT name FROM users WHERE NOT ({})", run("user_id")),
        ];
        for sql in &whole {
            for (_, node_sql) in node_statements_in(&MARIADB, sql, &[]) {
                for (_, node_ids) in runs_by_table(&node_sql) {
                    assert_eq!(node_ids, ids, "{sql:.100}");
                }
            }
        }
    }
}
