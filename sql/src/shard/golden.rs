//! Golden tests of analysis and planning, as sqlparser's `verified_stmt`
//! tests pin its round trips: each statement of `golden/plans.txt` is
//! analyzed and planned over the shipped `examples/wework.toml` rules (text
//! protocol, no parameters), and the plan — where it runs, the SQL each data
//! source runs, and how a multi-node answer is merged — must read exactly
//! as recorded under it. A change of plan shows as a diff of that file;
//! `SHARDGATE_BLESS=1 cargo test -p shardgate-sql --lib golden` rewrites it
//! after the new plans were read and found right.

use super::analyze::{analyze, Analysis};
use super::plan::{plan, PlanContext, Route, Target};
use super::scatter::{AggSpec, ColRef, Ix, ScatterSelect};
use crate::dialect::MARIADB;
use shardgate_rules::{ColumnKinds, Config, ShardingRules, SnowflakeGenerator, SystemClock};
use std::fmt::Write;

const PLANS: &str = "src/shard/golden/plans.txt";

/// The recorded file: statements (`> ` lines) each followed by their plan.
fn statements(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("> "))
        .map(str::to_string)
        .collect()
}

fn render(sql: &str, rules: &ShardingRules, keys: &SnowflakeGenerator) -> String {
    let ctx = PlanContext {
        dialect: &MARIADB,
        rules,
        default_data_source: "ds0",
        keys,
        kinds: ColumnKinds::none(),
    };
    let mut out = format!("> {sql}\n");
    let st = match analyze(sql, &MARIADB, rules, "wework") {
        Ok(Analysis::Sharded(st)) => st,
        Ok(Analysis::Unsharded) => {
            out.push_str("unsharded: the default data source, unchanged\n");
            return out;
        }
        Err(error) => {
            let _ = writeln!(out, "refused by analysis: {error}");
            return out;
        }
    };
    match plan(&st, sql, &[], true, &ctx) {
        Ok(route) => render_route(&mut out, &route),
        Err(error) => {
            let _ = writeln!(out, "refused: {error}");
        }
    }
    out
}

fn render_route(out: &mut String, route: &Route) {
    // Fan-outs to every node read alike: their first two and last
    // statements stand for the rest.
    let targets = |out: &mut String, targets: &[Target]| {
        let line = |out: &mut String, t: &Target| {
            let _ = writeln!(out, "  {}: {}", t.data_source, t.sql);
        };
        if targets.len() <= 4 {
            targets.iter().for_each(|t| line(out, t));
            return;
        }
        targets[..2].iter().for_each(|t| line(out, t));
        let _ = writeln!(out, "  ... {} more", targets.len() - 3);
        line(out, &targets[targets.len() - 1]);
    };
    match route {
        Route::One(t) => {
            let _ = writeln!(out, "one {}: {}", t.data_source, t.sql);
        }
        Route::Concat(ts) => {
            out.push_str("concat\n");
            targets(out, ts);
        }
        Route::Merge {
            targets: ts,
            first_table,
            scatter,
            offset,
            limit,
            having,
        } => {
            let _ = writeln!(
                out,
                "merge offset {offset} limit {}{}{}",
                limit.map_or("-".into(), |l| l.to_string()),
                if having.is_some() { " having" } else { "" },
                if first_table.is_some() {
                    " (first table's definitions)"
                } else {
                    ""
                }
            );
            let _ = writeln!(out, "  {}", merge_shape(scatter));
            targets(out, ts);
        }
        Route::Fanout {
            targets: ts,
            affected,
            transactional,
            generated_id,
            insert_rows,
            returning,
            guarded_columns,
        } => {
            let _ = writeln!(
                out,
                "fanout {affected:?}{}{}{}{}{}",
                if *transactional { " transactional" } else { "" },
                if generated_id.is_some() {
                    " generated-key"
                } else {
                    ""
                },
                if insert_rows.is_empty() {
                    String::new()
                } else {
                    format!(" rows {insert_rows:?}")
                },
                returning
                    .as_ref()
                    .map_or(String::new(), |r| format!(" returning {r:?}")),
                if guarded_columns.is_empty() {
                    String::new()
                } else {
                    format!(" guarding {}", guarded_columns.join(", "))
                }
            );
            targets(out, ts);
        }
    }
}

/// `c2` is the node result's third select item, `d0` its first derived
/// column; `c0~d1` compares `c0` by the weight in `d1`.
fn ix(ix: Ix) -> String {
    match ix {
        Ix::Visible(i) => format!("c{i}"),
        Ix::Derived(k) => format!("d{k}"),
    }
}

fn col(c: &ColRef) -> String {
    match c.weight {
        Some(w) => format!("{}~{}", ix(c.value), ix(w)),
        None => ix(c.value),
    }
}

fn keys(keys: &[(ColRef, bool)]) -> String {
    keys.iter()
        .map(|(c, desc)| format!("{}{}", col(c), if *desc { " desc" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn merge_shape(s: &ScatterSelect) -> String {
    let mut parts = Vec::new();
    if !s.order.is_empty() {
        parts.push(format!("order {}", keys(&s.order)));
    }
    if let Some(group) = &s.group {
        let cols: Vec<String> = group.iter().map(col).collect();
        parts.push(format!("group [{}]", cols.join(", ")));
    }
    if !s.aggregates.is_empty() {
        let aggs: Vec<String> = s
            .aggregates
            .iter()
            .map(|(c, a)| match a {
                AggSpec::CountDistinct { value } => {
                    format!("{}=count_distinct({})", col(c), col(value))
                }
                AggSpec::Avg { sum, count } => {
                    format!("{}=avg({}/{})", col(c), ix(*sum), ix(*count))
                }
                other => format!("{}={}", col(c), other.name()),
            })
            .collect();
        parts.push(format!("aggregates {}", aggs.join(", ")));
    }
    if !s.order_after_group.is_empty() {
        parts.push(format!("then order {}", keys(&s.order_after_group)));
    }
    if let Some(distinct) = &s.distinct {
        let cols: Vec<String> = distinct.iter().map(col).collect();
        parts.push(format!("distinct [{}]", cols.join(", ")));
    }
    if s.node_limit {
        parts.push("nodes limit".into());
    }
    if parts.is_empty() {
        "rows as they come".into()
    } else {
        parts.join("; ")
    }
}

#[test]
fn plans_read_as_recorded() {
    let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
    let rules = ShardingRules::new(&config).unwrap();
    let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PLANS);
    let recorded = std::fs::read_to_string(&path).unwrap();
    let statements = statements(&recorded);
    assert!(statements.len() >= 40, "{} statements", statements.len());
    let planned: Vec<String> = statements
        .iter()
        .map(|sql| render(sql, &rules, &keys))
        .collect();
    let planned = planned.join("\n");
    if std::env::var_os("SHARDGATE_BLESS").is_some() {
        std::fs::write(&path, &planned).unwrap();
        return;
    }
    if planned != recorded {
        let diff = similar_lines(&recorded, &planned);
        panic!("plans differ from {PLANS} (- recorded, + now):\n{diff}");
    }
}

/// The lines that differ, in order (enough to see what changed).
fn similar_lines(recorded: &str, planned: &str) -> String {
    let mut out = String::new();
    let (a, b): (Vec<&str>, Vec<&str>) = (recorded.lines().collect(), planned.lines().collect());
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    let _ = writeln!(out, "-{x}");
                }
                if let Some(y) = y {
                    let _ = writeln!(out, "+{y}");
                }
            }
        }
    }
    out
}
