//! A metadata query over a scripted node (no server): physical names in
//! its cells mapped to logical ones, a sharded table's physical tables
//! folded into one row, and the connection left fit for reuse exactly when
//! its reply was read to its end.

use shardgate_merge::Value;
use shardgate_rules::{Config, ShardingRules};
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::metadata::MetadataNames;

use super::merge::MergeFailure;
use super::merge_tests::{Collected, Node, Reply};
use super::metadata::metadata_rows;
use crate::error::ConnError;

fn text(cell: &str) -> Value {
    Value::Bytes(cell.as_bytes().to_vec())
}

/// `node`'s rows as the seed's first logical database shows them.
fn answered(node: &mut Node) -> (Collected, Result<(), MergeFailure>) {
    let config = Config::from_toml_str(include_str!("../../../examples/wework.toml"))
        .unwrap_or_else(|e| panic!("example config: {e}"));
    let rules = ShardingRules::new(&config).unwrap_or_else(|e| panic!("rules: {e}"));
    let names = MetadataNames::new(&config, &config.logical_databases()[0], &rules, &MARIADB);
    let mut result = Collected::default();
    let done = tokio::runtime::Builder::new_current_thread()
        .build()
        .map(|rt| {
            rt.block_on(metadata_rows(
                node,
                &names,
                b"SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES",
                &mut result,
            ))
        })
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    (result, done)
}

#[test]
fn physical_tables_fold_into_their_logical_table() {
    let mut node = Node::new("ds0", &[]);
    node.rows = [
        vec![text("ds0"), text("users_0")],
        vec![text("ds0"), text("users_4")],
        vec![text("ds0"), text("sys_configs")],
        vec![text("ds0"), text("message_records_202401")],
        vec![text("ds0"), text("message_records_202402")],
    ]
    .into_iter()
    .map(Reply::Cells)
    .collect();
    let (result, done) = answered(&mut node);
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(
        result.cells,
        [
            vec![text("wework"), text("users")],
            vec![text("wework"), text("sys_configs")],
            vec![text("wework"), text("message_records")],
        ]
    );
    assert!(!node.broken);
}

#[test]
fn a_connection_lost_midway_is_closed() {
    let mut node = Node::new("ds0", &[]);
    node.rows = [
        Reply::Cells(vec![text("ds0"), text("users_0")]),
        Reply::Lost,
    ]
    .into();
    let (result, done) = answered(&mut node);
    assert!(matches!(
        done,
        Err(MergeFailure::Node(ConnError::Lost { .. }))
    ));
    assert_eq!(result.cells.len(), 1);
    assert!(node.broken);
}
