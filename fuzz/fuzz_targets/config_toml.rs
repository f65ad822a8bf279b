//! Configuration parsing: a config file's text to a `Config`, its rules,
//! and routing under them.
//!
//! The input is the file's text (UTF-8, invalid sequences replaced).
//! Checked beyond "no panic":
//! - `Config::from_toml_str` returns a config or an error, never panics;
//! - a config it accepts validates again (`validate` is what loading
//!   checked), and every logical database's rules build: what loads also
//!   routes, as the loader promises;
//! - those rules route rows and conditions with extreme and ordinary
//!   values (0, -1, i64::MIN/MAX, dates, text) on every sharding column of
//!   every table without panicking (arithmetic of configured expressions
//!   and algorithms on client values), and a row they place is reached by
//!   the equalities on its values; the snowflake generator configured
//!   hands out an id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_rules::{
    Condition, Config, ShardValue, ShardingRules, SnowflakeGenerator, SystemClock,
};

/// Tables with more nodes are loaded, not routed.
const ROUTED_NODES: usize = 1024;

fn samples() -> Vec<ShardValue> {
    vec![
        ShardValue::Int(0),
        ShardValue::Int(-1),
        ShardValue::Int(7),
        ShardValue::Int(i64::MIN),
        ShardValue::Int(i64::MAX),
        ShardValue::Text("2024-03-05 10:11:12".into()),
        ShardValue::Text("2024-12".into()),
        ShardValue::Text("tenant-a".into()),
        ShardValue::Text(String::new()),
        ShardValue::Null,
    ]
}

fn check_routing(rules: &ShardingRules, table: &str) {
    let columns = rules.sharding_columns(table);
    let samples = samples();
    for value in &samples {
        for column in &columns {
            let c = column.to_string();
            for condition in [
                Condition::Eq(c.clone(), value.clone()),
                Condition::Lt(c.clone(), value.clone()),
                Condition::Ge(c.clone(), value.clone()),
                Condition::Between(c.clone(), ShardValue::Int(-5), value.clone()),
                Condition::In(c.clone(), vec![value.clone(), ShardValue::Int(3)]),
            ] {
                let _ = rules.route_positions(table, &condition);
            }
        }
        let row: Vec<(&str, ShardValue)> = columns.iter().map(|c| (*c, value.clone())).collect();
        let Ok(node) = rules.route_row(table, &row) else {
            continue;
        };
        let nodes = rules.sharded_nodes(table).unwrap_or_default();
        let Some(home) = nodes.iter().position(|n| *n == node) else {
            panic!("{table}: route_row placed a row on {node}, no node of the table");
        };
        // Text on an integer column is placed as the integer the server
        // stores; conditions compare it by the column's kind, which the
        // SQL layer resolves first: only integers reach the router as-is.
        if matches!(value, ShardValue::Int(_)) {
            let all = Condition::And(
                columns
                    .iter()
                    .map(|c| Condition::Eq(c.to_string(), value.clone()))
                    .collect(),
            );
            if let Some(Ok(positions)) = rules.route_positions(table, &all) {
                assert!(
                    positions.contains(&home),
                    "{table}: the row's own values miss its node {node}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::from_toml_str(&text) else {
        return;
    };
    if let Err(e) = config.validate() {
        panic!("a loaded config fails validation: {e}");
    }
    for db in config.logical_databases() {
        let rules = ShardingRules::for_database(&config, &db).unwrap_or_else(|e| {
            panic!("a loaded config's database {} does not route: {e}", db.name)
        });
        for table in db.tables.keys().chain(&db.broadcast.tables) {
            let _ = rules.table_kind(table);
            // Routing costs time linear in a table's nodes: tens of
            // thousands of them (a config may declare up to 65,536) make
            // a second-long input that finds nothing the smaller ones miss.
            if rules.nodes(table).len() <= ROUTED_NODES {
                check_routing(&rules, table);
            }
        }
    }
    let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
    let _ = keys.next_ids(2);
});
