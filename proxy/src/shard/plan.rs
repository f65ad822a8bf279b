//! Where an analysed statement runs: one data node (its reply forwarded as
//! it is), several nodes whose rows are concatenated, or a write fanned out
//! to several nodes in one transaction. Anything the proxy cannot answer
//! exactly as one database would is refused with error 1235 and a message
//! naming the tables.

use std::collections::BTreeMap;

use shardgate_rules::{
    Condition, DataNode, RouteError, ShardValue, ShardingRules, SnowflakeGenerator, TableKind,
};

use super::analyze::{Cond, InsertShape, ShardedStatement, StatementKind, Val};
use super::having::Cond as HavingCond;
use super::not_supported;
use super::params::ParamValue;
use super::rewrite::{bind_params, insert_rows, splice_tables};
use super::scatter::{derived_columns, node_tail, LimitVal, ScatterSelect};
use crate::sql::lex::{Lexer, Token};
use crate::wire::ok_err::ErrInfo;

/// One statement for one data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub data_source: String,
    pub sql: String,
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
pub enum Route {
    /// One node; its reply goes to the client unchanged.
    One(Target),
    /// Several nodes; their rows are concatenated in node order.
    Concat(Vec<Target>),
    /// Several data sources (one statement each, its tables' rows combined
    /// with UNION ALL); their rows are merged as `scatter` says.
    Merge {
        targets: Vec<Target>,
        /// A single-table statement of the first target, prepared (not run)
        /// for the column definitions the client sees.
        definitions_sql: Option<String>,
        scatter: Box<ScatterSelect>,
        offset: u64,
        limit: Option<u64>,
        /// HAVING with its parameters bound, evaluated on merged groups.
        having: Option<HavingCond>,
    },
    /// Writes on several nodes (or one with a generated key); one OK.
    Fanout {
        targets: Vec<Target>,
        affected: Affected,
        /// All or nothing: the nodes run in one transaction.
        transactional: bool,
        /// The first generated key, reported as the last insert id.
        generated_id: Option<u64>,
        /// For an INSERT: the rows each target writes (the OK's "Records"
        /// counts of a multi-row INSERT add up from them).
        insert_rows: Vec<usize>,
    },
}

/// What planning needs besides the statement.
pub struct PlanContext<'a> {
    pub rules: &'a ShardingRules,
    pub default_data_source: &'a str,
    pub keys: &'a SnowflakeGenerator,
}

/// Plans `st` (the analysis of `sql`) with the bound parameters `params`.
/// `as_text` says whether targets must carry the parameters as literals
/// (text protocol) or keep the `?` (prepared on the node).
pub fn plan(
    st: &ShardedStatement,
    sql: &str,
    params: &[ParamValue],
    as_text: bool,
    ctx: &PlanContext<'_>,
) -> Result<Route, ErrInfo> {
    check_supported(st, ctx)?;
    let sharded: Vec<&String> = st
        .tables
        .iter()
        .filter(|t| ctx.rules.table_kind(t) == TableKind::Sharded)
        .collect();
    let text_of = |s: &str| {
        if as_text && !params.is_empty() {
            bind_params(s, &placeholders(s), params)
        } else {
            s.to_owned()
        }
    };
    match sharded.first() {
        Some(table) => plan_sharded(st, sql, table, params, ctx, &text_of),
        None => plan_broadcast(st, sql, ctx, &text_of),
    }
}

/// Refuses statements whose shape no parameter value can make routable:
/// several sharded tables, a sharded table with unsharded ones, subqueries
/// over a sharded table.
pub fn check_supported(st: &ShardedStatement, ctx: &PlanContext<'_>) -> Result<(), ErrInfo> {
    let sharded: Vec<&String> = st
        .tables
        .iter()
        .filter(|t| ctx.rules.table_kind(t) == TableKind::Sharded)
        .collect();
    let names = st.tables.join(", ");
    if sharded.len() > 1 {
        let group = ctx.rules.binding_group(sharded[0]);
        let bound = group.is_some() && sharded.iter().all(|t| ctx.rules.binding_group(t) == group);
        if !bound {
            return Err(not_supported(format!(
                "statements over several sharded tables ({names}) are not supported unless they are bound ([[binding]] in the config: sharded alike and joined on their sharding columns); query them separately"
            )));
        }
        if st.kind != StatementKind::Select {
            return Err(not_supported(format!(
                "writes over several sharded tables ({names}) are not supported; write each table on its own"
            )));
        }
        if !joined_on_sharding_columns(&sharded, &st.sharding_joins) {
            return Err(not_supported(format!(
                "binding tables ({names}) must be joined on their sharding columns (e.g. a.k = b.k) to be answered node by node"
            )));
        }
    }
    if !sharded.is_empty() && !st.other_tables.is_empty() {
        return Err(not_supported(format!(
            "joining sharded table {} with unsharded table(s) {} is not supported: they live on different data sources",
            sharded[0],
            st.other_tables.join(", ")
        )));
    }
    if st.select.compound && !sharded.is_empty() {
        return Err(not_supported(format!(
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
pub fn prepare_target(st: &ShardedStatement, sql: &str, ctx: &PlanContext<'_>) -> Target {
    let sharded = st
        .tables
        .iter()
        .find(|t| ctx.rules.table_kind(t) == TableKind::Sharded);
    match sharded.and_then(|_| first_placement(st, ctx)) {
        Some(place) => Target {
            data_source: place.data_source.clone(),
            sql: node_sql(st, sql, &place),
        },
        None => Target {
            data_source: ctx.default_data_source.to_owned(),
            sql: splice_tables(sql, &st.replacements, str::to_owned),
        },
    }
}

/// Every sharded table of the statement at its first node.
fn first_placement(st: &ShardedStatement, ctx: &PlanContext<'_>) -> Option<Placement> {
    let mut place: Option<Placement> = None;
    for t in st
        .tables
        .iter()
        .filter(|t| ctx.rules.table_kind(t) == TableKind::Sharded)
    {
        let node = ctx.rules.nodes(t).into_iter().next()?;
        match &mut place {
            None => place = Some(Placement::single(&node, t)),
            Some(p) => p.tables.push((t.clone(), node.table)),
        }
    }
    place
}

fn placeholders(sql: &str) -> Vec<usize> {
    Lexer::new(sql)
        .filter(|s| s.token == Token::Punct(b'?'))
        .map(|s| s.start)
        .collect()
}

/// Where one node statement runs: its data source and the physical name of
/// each sharded table there (bound tables share a position).
#[derive(Debug, Clone)]
struct Placement {
    data_source: String,
    tables: Vec<(String, String)>,
}

impl Placement {
    fn single(node: &DataNode, table: &str) -> Self {
        Placement {
            data_source: node.data_source.clone(),
            tables: vec![(table.to_owned(), node.table.clone())],
        }
    }

    /// The physical name of each table here: the node's table for sharded
    /// ones, the same name for broadcast tables.
    fn names(&self) -> impl Fn(&str) -> String + '_ {
        move |t: &str| {
            self.tables
                .iter()
                .find(|(logical, _)| logical == t)
                .map_or_else(|| t.to_owned(), |(_, physical)| physical.clone())
        }
    }
}

fn node_sql(st: &ShardedStatement, sql: &str, place: &Placement) -> String {
    splice_tables(sql, &st.replacements, place.names())
}

/// The placements a condition reaches for a group of bound tables: the
/// positions every table's own routing allows (each is a superset).
fn bound_placements(
    tables: &[&String],
    condition: &Condition,
    ctx: &PlanContext<'_>,
) -> Result<Vec<Placement>, ErrInfo> {
    let all: Vec<Vec<DataNode>> = tables.iter().map(|t| ctx.rules.nodes(t)).collect();
    let width = all.first().map_or(0, Vec::len);
    let mut allowed = vec![true; width];
    for (t, nodes) in tables.iter().zip(&all) {
        let reached = ctx.rules.route(t, condition).map_err(|e| route_error(&e))?;
        for (i, node) in nodes.iter().enumerate() {
            allowed[i] &= reached.contains(node);
        }
    }
    Ok((0..width)
        .filter(|i| allowed[*i])
        .map(|i| Placement {
            data_source: all[0][i].data_source.clone(),
            tables: tables
                .iter()
                .zip(&all)
                .map(|(t, nodes)| ((*t).clone(), nodes[i].table.clone()))
                .collect(),
        })
        .collect())
}

/// Binds a condition's parameters. A comparison with NULL is never true
/// in SQL, so it matches no row and reaches no node.
fn resolve(cond: &Cond, params: &[ParamValue]) -> Condition {
    let nothing = || Condition::Or(Vec::new());
    let v = |val: &Val| match val {
        Val::Lit(v) => Some(v.clone()),
        Val::Param(i) => params.get(*i).map(ParamValue::shard_value),
    };
    let leaf = |make: fn(String, ShardValue) -> Condition, c: &String, val: &Val| match v(val) {
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
        Cond::In(c, vals) => match vals.iter().map(v).collect::<Option<Vec<_>>>() {
            Some(values) => Condition::In(
                c.clone(),
                values
                    .into_iter()
                    .filter(|x| *x != ShardValue::Null)
                    .collect(),
            ),
            None => Condition::Unknown,
        },
        Cond::Between(c, lo, hi) => match (v(lo), v(hi)) {
            (Some(ShardValue::Null), _) | (_, Some(ShardValue::Null)) => nothing(),
            (Some(lo), Some(hi)) => Condition::Between(c.clone(), lo, hi),
            _ => Condition::Unknown,
        },
        Cond::And(parts) => Condition::And(parts.iter().map(|p| resolve(p, params)).collect()),
        Cond::Or(parts) => Condition::Or(parts.iter().map(|p| resolve(p, params)).collect()),
        Cond::Unknown => Condition::Unknown,
    }
}

/// The client-facing error for a value that routes nowhere.
pub fn route_error(e: &RouteError) -> ErrInfo {
    match e {
        RouteError::NullValue { table, column } => ErrInfo::new(
            1048,
            "23000",
            format!("Column '{column}' cannot be null: it is the sharding column of table '{table}'"),
        ),
        RouteError::MissingShardingColumn { table, column } => ErrInfo::new(
            1364,
            "HY000",
            format!("Field '{column}' doesn't have a default value: table '{table}' is sharded by it; give it a value"),
        ),
        other => ErrInfo::new(1526, "HY000", format!("{other}; nothing was written")),
    }
}

fn plan_sharded(
    st: &ShardedStatement,
    sql: &str,
    table: &str,
    params: &[ParamValue],
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(&str) -> String,
) -> Result<Route, ErrInfo> {
    let target = |place: &Placement, text: bool| Target {
        data_source: place.data_source.clone(),
        sql: if text {
            text_of(&node_sql(st, sql, place))
        } else {
            node_sql(st, sql, place)
        },
    };
    let single = |node: &DataNode| Placement::single(node, table);
    match st.kind {
        StatementKind::Insert => {
            let shape = st
                .insert
                .as_ref()
                .ok_or_else(|| not_supported("INSERT without VALUES"))?;
            plan_insert(st, sql, shape, table, params, ctx, text_of)
        }
        StatementKind::Ddl => Ok(Route::Fanout {
            targets: ctx
                .rules
                .nodes(table)
                .iter()
                .map(|n| target(&single(n), true))
                .collect(),
            affected: Affected::OneCopy,
            transactional: false,
            generated_id: None,
            insert_rows: Vec::new(),
        }),
        StatementKind::Describe => {
            let nodes = ctx.rules.nodes(table);
            let first = nodes
                .first()
                .ok_or_else(|| not_supported(format!("table {table} has no data nodes")))?;
            Ok(Route::One(target(&single(first), false)))
        }
        StatementKind::Select | StatementKind::Update | StatementKind::Delete => {
            let condition = resolve(&st.condition, params);
            let bound: Vec<&String> = st
                .tables
                .iter()
                .filter(|t| ctx.rules.table_kind(t) == TableKind::Sharded)
                .collect();
            let mut nodes = if bound.len() > 1 {
                bound_placements(&bound, &condition, ctx)?
            } else {
                ctx.rules
                    .route(table, &condition)
                    .map_err(|e| route_error(&e))?
                    .iter()
                    .map(single)
                    .collect()
            };
            if nodes.is_empty() {
                // No node can hold a matching row; any one answers with the
                // empty result (or zero affected rows) and the right columns.
                nodes = first_placement(st, ctx).into_iter().collect();
            }
            if st.updates_sharding_column {
                return Err(not_supported(format!(
                    "changing the sharding column of table {table} is not supported: it would move the row to another node; DELETE it and INSERT it again"
                )));
            }
            if let [node] = nodes.as_slice() {
                return Ok(Route::One(target(node, false)));
            }
            if st.kind == StatementKind::Select {
                return match &st.scatter {
                    None => Ok(Route::Concat(nodes.iter().map(|n| target(n, false)).collect())),
                    Some(Ok(sc)) => plan_merge(st, sql, sc, &nodes, params),
                    Some(Err(why)) => Err(not_supported(format!(
                        "{why} is not supported on sharded table {table} (its rows are on {} data nodes); add a condition on its sharding column",
                        nodes.len()
                    ))),
                };
            }
            if st.ordered_write {
                return Err(not_supported(format!(
                    "UPDATE/DELETE with ORDER BY or LIMIT across the {} data nodes of table {table} is not supported; add a condition on its sharding column",
                    nodes.len()
                )));
            }
            Ok(Route::Fanout {
                targets: nodes.iter().map(|n| target(n, true)).collect(),
                affected: Affected::Sum,
                transactional: true,
                generated_id: None,
                insert_rows: Vec::new(),
            })
        }
    }
}

/// Node statements for a merged SELECT: per data source, its tables' rows
/// as one sorted stream (UNION ALL under the same ORDER BY / LIMIT).
fn plan_merge(
    st: &ShardedStatement,
    sql: &str,
    sc: &ScatterSelect,
    nodes: &[Placement],
    params: &[ParamValue],
) -> Result<Route, ErrInfo> {
    let value = |v: LimitVal| -> Result<u64, ErrInfo> {
        match v {
            LimitVal::Lit(n) => Ok(n),
            // Drivers bind LIMIT values as integers, doubles or strings
            // (mysql2 sends JavaScript numbers as DOUBLE); MariaDB takes all.
            LimitVal::Param(i) => match params.get(i) {
                Some(ParamValue::Int(n)) if *n >= 0 => Ok(*n as u64),
                Some(ParamValue::UInt(n)) => Ok(*n),
                Some(ParamValue::Double(d)) if *d >= 0.0 && d.fract() == 0.0 => Ok(*d as u64),
                Some(ParamValue::Decimal(t)) => t.trim().parse().map_err(|_| bad_limit()),
                Some(ParamValue::Bytes(b)) => std::str::from_utf8(b)
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
    let tail = node_tail(sc, node_limit);
    let having_range = sc.having.as_ref().map_or((0, 0), |(_, r)| *r);
    let removed = |at: usize| {
        (sc.tail.0..sc.tail.1).contains(&at) || (having_range.0..having_range.1).contains(&at)
    };
    // Parameters left in the node statement (LIMIT and HAVING ones are the proxy's).
    let kept: Vec<ParamValue> = st
        .placeholders
        .iter()
        .zip(params)
        .filter(|(at, _)| !removed(**at))
        .map(|(_, p)| p.clone())
        .collect();
    let having = sc
        .having
        .as_ref()
        .map(|(cond, _)| bind_having_params(cond, params))
        .transpose()
        .map_err(|e| ErrInfo::new(1210, "HY000", e))?;
    let mut by_source: Vec<(String, Vec<String>)> = Vec::new();
    for node in nodes {
        let physical = node.names();
        let mut edits: Vec<(usize, usize, String)> = st
            .replacements
            .iter()
            .filter(|r| !removed(r.start))
            .map(|r| {
                (
                    r.start,
                    r.end,
                    format!("`{}`", physical(&r.table).replace('`', "``")),
                )
            })
            .collect();
        edits.push((
            sc.insert_at,
            sc.insert_at,
            derived_columns(sql, sc, &st.replacements, &physical),
        ));
        // Replacing an ORDER BY / LIMIT that was there: the space before it stays.
        let tail_text = if sc.tail.0 < sc.tail.1 {
            tail.trim_start()
        } else {
            tail.as_str()
        };
        if let Some((at, text)) = &sc.group_append {
            let at = if *at == usize::MAX {
                sc.having.as_ref().map_or(sc.tail.0, |(_, r)| r.0)
            } else {
                *at
            };
            edits.push((at, at, text.clone()));
        }
        edits.push((sc.tail.0, sc.tail.1, tail_text.to_owned()));
        if having_range.0 < having_range.1 {
            edits.push((having_range.0, having_range.1, String::new()));
        }
        edits.sort_by_key(|e| (e.0, e.1));
        let mut text = String::with_capacity(sql.len() + 128);
        let mut from = 0;
        for (start, end, with) in edits {
            if start < from {
                continue;
            }
            text.push_str(&sql[from..start]);
            text.push_str(&with);
            from = end;
        }
        text.push_str(&sql[from..]);
        let text = text.trim_end().trim_end_matches(';').to_owned();
        let text = if kept.is_empty() {
            text
        } else {
            bind_params(&text, &placeholders(&text), &kept)
        };
        match by_source.iter_mut().find(|(ds, _)| *ds == node.data_source) {
            Some((_, parts)) => parts.push(text),
            None => by_source.push((node.data_source.clone(), vec![text])),
        }
    }
    // A UNION's column definitions lose their tables and some flags; the
    // client gets those of one single-table statement instead.
    let definitions_sql = by_source
        .first()
        .filter(|(_, parts)| parts.len() > 1)
        .and_then(|(_, parts)| parts.first().cloned());
    let targets = by_source
        .into_iter()
        .map(|(data_source, parts)| {
            let sql = if parts.len() == 1 {
                parts.concat()
            } else {
                // DISTINCT rows must stay distinct across a data source's
                // tables, or its LIMIT would count duplicates.
                let glue = if sc.distinct.is_some() {
                    " UNION "
                } else {
                    " UNION ALL "
                };
                let union: Vec<String> = parts.iter().map(|p| format!("({p})")).collect();
                format!("{}{}", union.join(glue), tail)
            };
            Target { data_source, sql }
        })
        .collect();
    Ok(Route::Merge {
        targets,
        definitions_sql,
        scatter: Box::new(sc.clone()),
        offset,
        limit,
        having,
    })
}

fn bad_limit() -> ErrInfo {
    ErrInfo::new(1210, "HY000", "Incorrect arguments to LIMIT")
}

/// A bound parameter as a HAVING literal.
fn param_condition(p: &ParamValue) -> HavingCond {
    match p {
        ParamValue::Null => HavingCond::Null,
        ParamValue::Int(i) => HavingCond::Number(i.to_string()),
        ParamValue::UInt(u) => HavingCond::Number(u.to_string()),
        ParamValue::Double(d) => HavingCond::Number(d.to_string()),
        ParamValue::Decimal(d) => HavingCond::Number(d.clone()),
        ParamValue::Bytes(b) => HavingCond::Text(b.clone()),
        ParamValue::Temporal(t) => HavingCond::Text(t.clone().into_bytes()),
    }
}

/// The HAVING condition with its `?` replaced by the bound values (columns
/// stay symbolic until the node results' width is known).
fn bind_having_params(cond: &HavingCond, params: &[ParamValue]) -> Result<HavingCond, String> {
    use HavingCond as C;
    let b = |c: &HavingCond| bind_having_params(c, params).map(Box::new);
    Ok(match cond {
        C::Param(i) => params
            .get(*i)
            .map(param_condition)
            .ok_or_else(|| format!("HAVING parameter {i} has no value"))?,
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

fn plan_insert(
    st: &ShardedStatement,
    sql: &str,
    shape: &InsertShape,
    table: &str,
    params: &[ParamValue],
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(&str) -> String,
) -> Result<Route, ErrInfo> {
    if shape.columns.is_empty() {
        return Err(not_supported(format!(
            "INSERT into sharded table {table} without a column list: the proxy could not learn the table's columns"
        )));
    }
    if shape.updates_sharding_column {
        return Err(not_supported(format!(
            "ON DUPLICATE KEY UPDATE of a sharding column of table {table} is not supported: it would move the row"
        )));
    }
    let key_column = ctx
        .rules
        .generated_key_column(table)
        .filter(|k| !shape.columns.iter().any(|c| c.eq_ignore_ascii_case(k)));
    let mut generated = Vec::new();
    if key_column.is_some() {
        for _ in &shape.rows {
            let id = ctx.keys.next_id().map_err(|e| {
                ErrInfo::new(
                    1105,
                    "HY000",
                    format!("cannot generate a key for {table}: {e}"),
                )
            })?;
            generated.push(id);
        }
    }
    let sharding = ctx.rules.sharding_columns(table);
    let mut by_node: BTreeMap<DataNode, Vec<usize>> = BTreeMap::new();
    for (i, row) in shape.rows.iter().enumerate() {
        let mut values: Vec<(&str, ShardValue)> = Vec::new();
        for column in &sharding {
            if key_column.is_some_and(|k| k.eq_ignore_ascii_case(column)) {
                values.push((column, ShardValue::Int(generated[i])));
                continue;
            }
            let Some(pos) = shape
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(column))
            else {
                continue;
            };
            let value = match row.values.get(pos).cloned().flatten() {
                Some(Val::Lit(v)) => v,
                Some(Val::Param(p)) => params.get(p).map(ParamValue::shard_value).ok_or_else(|| {
                    not_supported(format!("parameter {p} of the INSERT into {table} has no value"))
                })?,
                None => {
                    return Err(not_supported(format!(
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
        by_node.entry(node).or_default().push(i);
    }
    let generated_text: Vec<String> = generated.iter().map(|g| g.to_string()).collect();
    let first_row_start = shape.rows.first().map_or(sql.len(), |r| r.start);
    let head_replacements: Vec<_> = st
        .replacements
        .iter()
        .filter(|r| r.end <= first_row_start)
        .cloned()
        .collect();
    // Parameters outside the rows (ON DUPLICATE KEY UPDATE ... = ?) go with every node.
    let row_of = |at: usize| shape.rows.iter().position(|r| r.start <= at && at < r.end);
    let mut targets = Vec::with_capacity(by_node.len());
    for (node, rows) in &by_node {
        let extra = key_column.map(|k| (k, generated_text.as_slice()));
        let text = insert_rows(sql, shape, rows, extra);
        let text = splice_tables(&text, &head_replacements, |_| node.table.clone());
        let kept: Vec<ParamValue> = st
            .placeholders
            .iter()
            .enumerate()
            .filter(|(_, at)| row_of(**at).is_none_or(|r| rows.contains(&r)))
            .filter_map(|(i, _)| params.get(i).cloned())
            .collect();
        let text = if params.is_empty() {
            text_of(&text)
        } else {
            bind_params(&text, &placeholders(&text), &kept)
        };
        targets.push(Target {
            data_source: node.data_source.clone(),
            sql: text,
        });
    }
    Ok(Route::Fanout {
        targets,
        affected: Affected::Sum,
        transactional: true,
        generated_id: generated.first().map(|g| *g as u64),
        insert_rows: by_node.values().map(Vec::len).collect(),
    })
}

fn plan_broadcast(
    st: &ShardedStatement,
    sql: &str,
    ctx: &PlanContext<'_>,
    text_of: &dyn Fn(&str) -> String,
) -> Result<Route, ErrInfo> {
    let same_name = splice_tables(sql, &st.replacements, str::to_owned);
    let everywhere = || -> Vec<Target> {
        let first = st.tables.first().map(String::as_str).unwrap_or_default();
        ctx.rules
            .nodes(first)
            .into_iter()
            .map(|n| Target {
                data_source: n.data_source,
                sql: text_of(&same_name),
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
        }),
        StatementKind::Insert | StatementKind::Update | StatementKind::Delete => {
            if !st.other_tables.is_empty() {
                return Err(not_supported(format!(
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
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::analyze::{analyze, Analysis};
    use shardgate_rules::{Config, SystemClock};

    fn fixture() -> (Config, ShardingRules) {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        (config, rules)
    }

    fn route(sql: &str, params: &[ParamValue]) -> Result<Route, ErrInfo> {
        let (config, rules) = fixture();
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        let ctx = PlanContext {
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
        };
        let Analysis::Sharded(st) = analyze(sql, &rules, "wework").unwrap() else {
            panic!("unsharded: {sql}")
        };
        plan(&st, sql, params, true, &ctx)
    }

    fn one(ds: &str, sql: &str) -> Route {
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
            targets[0].sql.starts_with(
                "(SELECT name, u.name AS `__sg_0`, WEIGHT_STRING(u.name) AS `__sg_1` FROM `users_0` u ORDER BY `__sg_0` DESC LIMIT 15) UNION ALL ("
            ),
            "{}",
            targets[0].sql
        );
        assert!(
            targets[0]
                .sql
                .ends_with(") ORDER BY `__sg_0` DESC LIMIT 15"),
            "{}",
            targets[0].sql
        );
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
                .contains("FROM `users_0` GROUP BY tenant_id ORDER BY `__sg_0`"),
            "{}",
            targets[0].sql
        );
        let err = route("SELECT COUNT(DISTINCT tenant_id), COUNT(*) FROM users", &[]).unwrap_err();
        assert_eq!(err.code, 1235);
        assert!(
            err.message.contains("DISTINCT") && err.message.contains("users"),
            "{}",
            err.message
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
        assert!(!targets[0].sql.contains("HAVING"), "{}", targets[0].sql);
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
            &[ParamValue::Bytes(b"c".to_vec())],
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!((affected, transactional), (Affected::Sum, true));
        let got: Vec<_> = targets
            .iter()
            .map(|t| (t.data_source.as_str(), t.sql.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ds1", "INSERT INTO `users_0` (user_id, name) VALUES (1, 'a')"),
                ("ds1", "INSERT INTO `users_1` (user_id, name) VALUES (5, 'b')"),
                ("ds2", "INSERT INTO `users_0` (user_id, name) VALUES (2, CONVERT(X'63' USING utf8mb4))"),
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
            .ends_with(&format!("(name, `user_id`) VALUES ('a', {id})")));
        assert_eq!(targets[0].data_source, format!("ds{}", id % 4));
    }

    #[test]
    fn values_outside_the_nodes_are_refused() {
        let err = route(
            "INSERT INTO message_records (id, tenant_id, created_at) VALUES (1, 'acme', '2023-12-31 10:00:00')",
            &[],
        )
        .unwrap_err();
        assert_eq!(err.code, 1526);
        assert!(err.message.contains("created_at"), "{}", err.message);
        let err = route("INSERT INTO users (user_id, name) VALUES (NULL, 'x')", &[]).unwrap_err();
        assert_eq!(err.code, 1048);
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
            assert!(target.sql.contains("users_0"), "{sql}");
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
            target.sql.ends_with("WHERE user_id = 5 LOCK IN SHARE MODE"),
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
    fn sharding_column_change_and_cross_joins_refused() {
        assert_eq!(
            route("UPDATE users SET user_id = 9 WHERE user_id = 5", &[])
                .unwrap_err()
                .code,
            1235
        );
        assert_eq!(
            route(
                "SELECT * FROM users u JOIN message_records m ON m.sender = u.user_id",
                &[]
            )
            .unwrap_err()
            .code,
            1235
        );
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
            rules: &rules,
            default_data_source: "ds0",
            keys: &keys,
        };
        let plan_of = |sql: &str| {
            let Analysis::Sharded(st) = analyze(sql, &rules, "wework").unwrap() else {
                panic!()
            };
            plan(&st, sql, &[], true, &ctx)
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
            targets[17].sql.contains("`users_1` u JOIN `orders_1` o"),
            "{}",
            targets[17].sql
        );
        let err = plan_of("SELECT * FROM users u JOIN orders o ON o.id = u.status").unwrap_err();
        assert!(
            err.message.contains("joined on their sharding columns"),
            "{}",
            err.message
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
}
