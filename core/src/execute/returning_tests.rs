//! Writes with RETURNING over scripted nodes (no server): the rows in the
//! order one server returns them, the statement all or nothing, and each
//! connection left fit for reuse exactly when its reply was read whole.

use std::sync::Arc;

use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::plan::{Returning, Target};

use super::merge::MergeFailure;
use super::merge_tests::{Collected, Node, Reply};
use super::returning::{fan_out_returning, ReturningWrite};
use super::TargetConns;
use crate::error::{ConnError, DbError};

/// Runs a write with RETURNING whose target `i` runs on node `i`.
fn run(
    nodes: Vec<Node>,
    returning: Returning,
    insert_rows: &[Arc<[u32]>],
    own_transaction: bool,
) -> (Vec<Node>, Collected, Result<(), MergeFailure>) {
    let targets: Vec<Target> = nodes
        .iter()
        .map(|n| Target {
            data_source: n.ds.to_owned(),
            sql: format!("INSERT INTO users_0 ... RETURNING user_id -- on {}", n.ds).into(),
        })
        .collect();
    let mut conns = TargetConns {
        conn_of: (0..nodes.len()).collect(),
        conns: nodes,
    };
    let write = ReturningWrite {
        returning: &returning,
        insert_rows,
        own_transaction,
    };
    let mut result = Collected::default();
    let done = tokio::runtime::Builder::new_current_thread()
        .build()
        .map(|rt| {
            rt.block_on(fan_out_returning(
                &mut conns,
                &MARIADB,
                &targets,
                write,
                &mut result,
            ))
        })
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    (conns.conns, result, done)
}

#[test]
fn inserted_rows_come_back_in_the_statements_order_in_one_transaction() {
    // Rows 1 and 3 of the statement went to ds0, rows 0 and 2 to ds1.
    let nodes = vec![Node::new("ds0", &[11, 13]), Node::new("ds1", &[10, 12])];
    let (nodes, result, done) = run(
        nodes,
        Returning::InsertedRows,
        &[[1, 3].into(), [0, 2].into()],
        true,
    );
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(result.shown, ["user_id"]);
    assert_eq!(result.rows, [10, 11, 12, 13]);
    for node in &nodes {
        assert_eq!(
            node.executed,
            ["START TRANSACTION", "COMMIT"],
            "{}",
            node.ds
        );
        assert!(!node.broken);
    }
}

#[test]
fn a_broadcast_tables_rows_come_back_once() {
    let nodes = vec![Node::new("ds0", &[1, 2]), Node::new("ds1", &[1, 2])];
    let (nodes, result, done) = run(nodes, Returning::OneCopy, &[], true);
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(result.rows, [1, 2]);
    assert!(nodes.iter().all(|n| !n.broken && n.rows.is_empty()));
}

#[test]
fn a_connection_lost_midway_rolls_back_the_others_and_is_closed() {
    let mut nodes = vec![Node::new("ds0", &[1]), Node::new("ds1", &[2, 3])];
    nodes[1].rows.insert(1, Reply::Lost);
    let (nodes, _, done) = run(nodes, Returning::Concat, &[], true);
    assert!(matches!(
        done,
        Err(MergeFailure::Node(ConnError::Lost { .. }))
    ));
    assert_eq!(nodes[0].executed, ["START TRANSACTION", "ROLLBACK"]);
    assert!(!nodes[0].broken);
    // Nothing more is sent on a connection whose reply is unread.
    assert_eq!(nodes[1].executed, ["START TRANSACTION"]);
    assert!(nodes[1].broken);
}

#[test]
fn inside_the_clients_transaction_a_nodes_error_undoes_the_statement_only() {
    let mut nodes = vec![Node::new("ds0", &[1]), Node::new("ds1", &[2])];
    nodes[1].columns = Err(DbError {
        code: 1062,
        sqlstate: *b"23000",
        message: "Duplicate entry '2' for key 'PRIMARY'".into(),
    });
    let (nodes, result, done) = run(nodes, Returning::Concat, &[], false);
    match done {
        Err(MergeFailure::Reply(err)) => assert!(err.message.contains("Duplicate"), "{err:?}"),
        other => panic!("{other:?}"),
    }
    // ds0's rows had gone out before ds1 failed: the front end's error
    // follows them, as a server's error after rows does.
    assert_eq!(result.rows, [1]);
    for node in &nodes {
        assert_eq!(
            node.executed,
            [
                "SAVEPOINT `__shardgate_statement`",
                "ROLLBACK TO SAVEPOINT `__shardgate_statement`"
            ],
            "{}",
            node.ds
        );
        // The error reply was read whole: the connection stays.
        assert!(!node.broken, "{}", node.ds);
    }
}
