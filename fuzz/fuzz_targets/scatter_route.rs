//! Scatter planning: which data nodes a condition on sharding columns
//! reaches, under the seed's rules (`examples/wework.toml`).
//!
//! The input (structured, via `arbitrary`) is a condition tree over a
//! table's sharding columns and another column, with integers, texts,
//! NULLs and dates, and a row of values the rules place. Checked beyond
//! "no panic":
//! - the positions a condition reaches are strictly ascending and each a
//!   node of the table; `route` returns exactly those nodes; tables that
//!   are not sharded have no positions;
//! - a row the rules place on node N (`route_row`): an equality on every
//!   sharding column with the row's values reaches N and only N; `IN`
//!   lists holding the values, `BETWEEN v AND v`, `>= v`, `<= v`, and a
//!   range around the value (`BETWEEN lo AND hi`, `> lo`, `< hi` with
//!   lo < v < hi, integers or canonical dates) all reach N; so does the
//!   fuzzed condition OR'ed with the equality;
//! - planned as statements with `?` parameters bound to the row's values,
//!   `... WHERE col = ?` runs on N alone (`Route::One` there, the SQL
//!   naming N's table), `single_node` names N's position, and the text
//!   and binary plans agree with `node_target` at that position; `IN (?, ?)`
//!   with two rows runs on exactly their nodes.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use fuzz_support::{seed, LOGICAL_DB};
use libfuzzer_sys::fuzz_target;
use shardgate_rules::{ColumnKinds, Condition, DataNode, ShardValue, ShardingRules};
use shardgate_sql::dialect::{Dialect, MARIADB};
use shardgate_sql::shard::analyze::{analyze, Analysis, ShardedStatement};
use shardgate_sql::shard::params::ParamValue;
use shardgate_sql::shard::plan::{node_target, plan, single_node, PlanContext, Route};
use shardgate_sql::text::ClientCharset;

const TABLES: [&str; 4] = ["users", "message_records", "sys_configs", "orders"];

/// A value as the input describes it.
#[derive(Arbitrary, Debug, Clone)]
enum Val {
    Int(i64),
    Small(u8),
    /// A canonical date, 2023..=2025: ordered as text as in time.
    Date(u8, u8, u8),
    DateTime(u8, u8, u8, u8),
    Text(String),
    Null,
}

impl Val {
    fn shard(&self) -> ShardValue {
        match self {
            Val::Int(i) => ShardValue::Int(*i),
            Val::Small(i) => ShardValue::Int(i64::from(*i)),
            Val::Date(..) | Val::DateTime(..) => {
                ShardValue::Text(self.date_text().unwrap_or_default())
            }
            Val::Text(t) => ShardValue::Text(t.clone()),
            Val::Null => ShardValue::Null,
        }
    }

    fn date_text(&self) -> Option<String> {
        let date = |y: u8, m: u8, d: u8| {
            format!(
                "{:04}-{:02}-{:02}",
                2023 + u16::from(y % 3),
                1 + m % 12,
                1 + d % 28
            )
        };
        match *self {
            Val::Date(y, m, d) => Some(date(y, m, d)),
            Val::DateTime(y, m, d, h) => Some(format!("{} {:02}:00:00", date(y, m, d), h % 24)),
            _ => None,
        }
    }

    fn int(&self) -> Option<i64> {
        match *self {
            Val::Int(i) => Some(i),
            Val::Small(i) => Some(i64::from(i)),
            _ => None,
        }
    }

    /// The value as a DATETIME's canonical text: a date is its midnight,
    /// as SQL compares a date with a date and time.
    fn datetime_text(&self) -> Option<String> {
        match self {
            Val::Date(..) => self.date_text().map(|d| format!("{d} 00:00:00")),
            _ => self.date_text(),
        }
    }

    /// Orders two values where SQL orders them alike (integers, canonical
    /// dates and times).
    fn order(&self, other: &Val) -> Option<std::cmp::Ordering> {
        match (
            self.int(),
            other.int(),
            self.datetime_text(),
            other.datetime_text(),
        ) {
            (Some(a), Some(b), _, _) => Some(a.cmp(&b)),
            (_, _, Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => None,
        }
    }

    fn param(&self) -> ParamValue {
        match self {
            Val::Null => ParamValue::Null,
            _ => match self.shard() {
                ShardValue::Int(i) => ParamValue::Int(i),
                ShardValue::Text(t) => ParamValue::Text {
                    bytes: t.into_bytes(),
                    charset: ClientCharset::UTF8,
                },
                ShardValue::Null => ParamValue::Null,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Cond {
    Eq(u8, Val),
    In(u8, Vec<Val>),
    Between(u8, Val, Val),
    Lt(u8, Val),
    Le(u8, Val),
    Gt(u8, Val),
    Ge(u8, Val),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Unknown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    table: u8,
    condition: Cond,
    /// A row: one value per sharding column (more are ignored).
    row: Vec<Val>,
    /// Another row, for `IN (?, ?)`.
    other: Vec<Val>,
    low: Val,
    high: Val,
}

/// The condition as the router takes it; nesting deeper than 8 levels is
/// `Unknown` (the SQL layer's conditions come from parsed statements,
/// whose nesting the parser bounds).
fn condition(c: &Cond, columns: &[&str], depth: u32) -> Condition {
    let col = |i: &u8| {
        columns
            .get(usize::from(*i) % (columns.len() + 1))
            .map_or("other_column", |c| c)
            .to_owned()
    };
    if depth > 8 {
        return Condition::Unknown;
    }
    let all = |cs: &[Cond]| {
        cs.iter()
            .map(|c| condition(c, columns, depth + 1))
            .collect()
    };
    match c {
        Cond::Eq(i, v) => Condition::Eq(col(i), v.shard()),
        Cond::In(i, vs) => Condition::In(col(i), vs.iter().map(Val::shard).collect()),
        Cond::Between(i, a, b) => Condition::Between(col(i), a.shard(), b.shard()),
        Cond::Lt(i, v) => Condition::Lt(col(i), v.shard()),
        Cond::Le(i, v) => Condition::Le(col(i), v.shard()),
        Cond::Gt(i, v) => Condition::Gt(col(i), v.shard()),
        Cond::Ge(i, v) => Condition::Ge(col(i), v.shard()),
        Cond::And(cs) => Condition::And(all(cs)),
        Cond::Or(cs) => Condition::Or(all(cs)),
        Cond::Unknown => Condition::Unknown,
    }
}

/// The positions `condition` reaches, checked for order and range.
fn reached(rules: &ShardingRules, table: &str, condition: &Condition) -> Option<Vec<usize>> {
    let Some(result) = rules.route_positions(table, condition) else {
        assert!(
            rules.sharded_nodes(table).is_none(),
            "sharded table {table} without positions"
        );
        return None;
    };
    let nodes = rules
        .sharded_nodes(table)
        .expect("a routed table is sharded");
    let positions = match result {
        Ok(positions) => positions,
        Err(_) => return None,
    };
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions not ascending: {positions:?}"
    );
    assert!(
        positions.iter().all(|&p| p < nodes.len()),
        "position past the {} nodes",
        nodes.len()
    );
    let routed = rules
        .route(table, condition)
        .expect("route agrees with route_positions");
    let by_position: Vec<DataNode> = positions.iter().map(|&p| nodes[p].clone()).collect();
    assert_eq!(routed, by_position, "route and route_positions disagree");
    Some(positions)
}

/// Asserts that `condition` reaches position `home`.
fn reaches(rules: &ShardingRules, table: &str, condition: Condition, home: usize) {
    if let Some(positions) = reached(rules, table, &condition) {
        assert!(
            positions.contains(&home),
            "{condition:?} on {table} misses node {home}: {positions:?}"
        );
    }
}

/// Whether the SQL layer hands `v` to the router for `column` as it is:
/// the seed's integer column (`user_id`) gets integers (text there is
/// converted first, by the column's kind), the others integers or dates.
fn natural(column: &str, v: &Val) -> bool {
    match v {
        Val::Int(_) | Val::Small(_) => true,
        Val::Date(..) | Val::DateTime(..) => column != "user_id",
        Val::Text(_) | Val::Null => false,
    }
}

/// The row's values by sharding column, and the node they place it on.
fn placed<'v>(
    rules: &ShardingRules,
    table: &str,
    columns: &[&'v str],
    row: &[Val],
) -> Option<(Vec<(&'v str, Val)>, usize)> {
    let values: Vec<(&str, Val)> = columns.iter().copied().zip(row.iter().cloned()).collect();
    if values.len() < columns.len() || !values.iter().all(|(c, v)| natural(c, v)) {
        return None;
    }
    let shard_values: Vec<(&str, ShardValue)> =
        values.iter().map(|(c, v)| (*c, v.shard())).collect();
    let node = rules.route_row(table, &shard_values).ok()?;
    let home = rules
        .sharded_nodes(table)?
        .iter()
        .position(|n| *n == node)?;
    Some((values, home))
}

fn check_row(
    rules: &ShardingRules,
    table: &str,
    values: &[(&str, Val)],
    home: usize,
    input: &Input,
    fuzzed: &Condition,
) {
    let eq_all = Condition::And(
        values
            .iter()
            .map(|(c, v)| Condition::Eq(c.to_string(), v.shard()))
            .collect(),
    );
    if let Some(positions) = reached(rules, table, &eq_all) {
        assert_eq!(
            positions,
            [home],
            "equalities on every sharding column reach one node, the row's"
        );
    }
    for (column, v) in values {
        let c = column.to_string();
        let s = v.shard();
        reaches(rules, table, Condition::Eq(c.clone(), s.clone()), home);
        reaches(
            rules,
            table,
            Condition::In(c.clone(), vec![input.low.shard(), s.clone()]),
            home,
        );
        reaches(
            rules,
            table,
            Condition::Between(c.clone(), s.clone(), s.clone()),
            home,
        );
        reaches(rules, table, Condition::Ge(c.clone(), s.clone()), home);
        reaches(rules, table, Condition::Le(c.clone(), s.clone()), home);
        use std::cmp::Ordering::{Greater, Less};
        let (lo, hi) = (input.low.order(v), input.high.order(v));
        if matches!(lo, Some(Less)) {
            reaches(
                rules,
                table,
                Condition::Gt(c.clone(), input.low.shard()),
                home,
            );
        }
        if matches!(hi, Some(Greater)) {
            reaches(
                rules,
                table,
                Condition::Lt(c.clone(), input.high.shard()),
                home,
            );
        }
        if lo.is_some_and(|o| o != Greater) && hi.is_some_and(|o| o != Less) {
            reaches(
                rules,
                table,
                Condition::Between(c.clone(), input.low.shard(), input.high.shard()),
                home,
            );
        }
    }
    reaches(
        rules,
        table,
        Condition::Or(vec![fuzzed.clone(), eq_all]),
        home,
    );
}

/// The statements the plan checks use, analysed once.
struct Statements {
    eq: Vec<(String, ShardedStatement)>,
    in_list: (String, ShardedStatement),
}

fn sharded(sql: &str, rules: &ShardingRules) -> (String, ShardedStatement) {
    match analyze(sql, &MARIADB, rules, LOGICAL_DB) {
        Ok(Analysis::Sharded(st)) => (sql.to_owned(), *st),
        other => panic!("{sql} does not analyse as sharded: {other:?}"),
    }
}

fn statements(rules: &ShardingRules) -> &'static Statements {
    static STATEMENTS: OnceLock<Statements> = OnceLock::new();
    STATEMENTS.get_or_init(|| Statements {
        eq: vec![
            sharded("SELECT * FROM users WHERE user_id = ?", rules),
            sharded(
                "SELECT id, body FROM message_records WHERE tenant_id = ? AND created_at = ?",
                rules,
            ),
        ],
        in_list: sharded("SELECT name FROM users WHERE user_id IN (?, ?)", rules),
    })
}

fn check_plans(
    rules: &ShardingRules,
    table: &str,
    values: &[(&str, Val)],
    home: usize,
    other_row: &[Val],
) {
    let seed = seed();
    let ctx = PlanContext {
        rules,
        default_data_source: &seed.config.server.default_data_source,
        keys: &seed.keys,
        kinds: ColumnKinds::none(),
        dialect: &MARIADB,
    };
    let statements = statements(rules);
    let node = &rules.sharded_nodes(table).expect("sharded")[home];
    let quoted = MARIADB.quoted(&node.table);
    let (sql, st) = match table {
        "users" => &statements.eq[0],
        _ => &statements.eq[1],
    };
    let params: Vec<ParamValue> = values.iter().map(|(_, v)| v.param()).collect();
    assert_eq!(
        single_node(st, &params, &ctx),
        Some(home),
        "single_node of {sql} with {params:?}"
    );
    let at_home = node_target(st, sql, home, &ctx).expect("the row's node is in the layout");
    match plan(st, sql, &params, false, &ctx) {
        Ok(Route::One(target)) => assert_eq!(target, at_home, "binary plan of {sql}"),
        other => panic!("{sql} with {params:?} planned as {other:?}, not on node {node}"),
    }
    match plan(st, sql, &params, true, &ctx) {
        Ok(Route::One(target)) => {
            assert_eq!(target.data_source, node.data_source);
            assert!(
                target.sql.text().contains(&quoted),
                "text plan {} names no {quoted}",
                target.sql
            );
        }
        other => panic!("{sql} with {params:?} planned as {other:?}, not on node {node}"),
    }
    // Two users rows: IN (?, ?) runs where they are, nowhere else.
    if table != "users" {
        return;
    }
    let columns = ["user_id"];
    let Some((other_values, other_home)) = placed(rules, table, &columns, other_row) else {
        return;
    };
    let (sql, st) = &statements.in_list;
    let params = [values[0].1.param(), other_values[0].1.param()];
    let mut expected = vec![home, other_home];
    expected.sort_unstable();
    expected.dedup();
    let nodes = rules.sharded_nodes(table).expect("sharded");
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|p| {
            (
                nodes[p].data_source.clone(),
                MARIADB.quoted(&nodes[p].table),
            )
        })
        .collect();
    let targets = match plan(st, sql, &params, true, &ctx) {
        Ok(Route::One(t)) => vec![t],
        Ok(Route::Concat(ts)) => ts,
        other => panic!("{sql} with {params:?} planned as {other:?}"),
    };
    assert_eq!(
        targets.len(),
        expected.len(),
        "{sql} with {params:?}: {targets:?}"
    );
    for (target, (data_source, table)) in targets.iter().zip(&expected) {
        assert_eq!(&target.data_source, data_source);
        assert!(
            target.sql.text().contains(table.as_str()),
            "{} names no {table}",
            target.sql
        );
    }
}

fuzz_target!(|input: Input| {
    let rules = &seed().rules;
    let table = TABLES[usize::from(input.table) % TABLES.len()];
    let columns = rules.sharding_columns(table);
    let fuzzed = condition(&input.condition, &columns, 0);
    reached(rules, table, &fuzzed);
    if let Some((values, home)) = placed(rules, table, &columns, &input.row) {
        check_row(rules, table, &values, home, &input, &fuzzed);
        check_plans(rules, table, &values, home, &input.other);
    }
});
