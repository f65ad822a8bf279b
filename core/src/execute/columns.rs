//! What the planner needs to know of a sharded table's columns and that no
//! statement says: the column list of an INSERT that gives none, and the
//! types of sharding columns whose values place rows by type. Learnt from
//! the table's first node when first needed, kept with the logical
//! database until a DDL statement changes the table.

use std::sync::Arc;

use shardgate_rules::{ColumnKinds, TableKind};
use shardgate_sql::shard::analyze::{ShardedStatement, StatementKind};
use tracing::debug;

use super::{Connections, StatementConn};
use crate::backend::Backend;
use crate::databases::{LogicalDatabase, TableColumns};

/// For an INSERT without a column list into a sharded table: the
/// statement with the table's columns, so that its sharding columns can be
/// found. None when `st` needs none.
pub async fn with_insert_columns<S: Connections, B: Backend>(
    session: &mut S,
    db: &LogicalDatabase<B>,
    st: &ShardedStatement,
) -> Result<Option<ShardedStatement>, S::Error> {
    if !st.insert.as_ref().is_some_and(|s| s.implicit_columns) {
        return Ok(None);
    }
    let Some(table) = st
        .tables
        .iter()
        .find(|t| db.rules.table_kind(t) == TableKind::Sharded)
    else {
        return Ok(None);
    };
    let Some(columns) = table_columns(session, db, table).await? else {
        return Ok(None);
    };
    let mut with_columns = st.clone();
    if let Some(insert) = with_columns.insert.as_mut() {
        insert.columns = columns.names.clone();
    }
    Ok(Some(with_columns))
}

/// The kinds of the sharding columns of `st`'s tables whose values place
/// rows by the column's type. A table its node cannot describe (not
/// created yet) leaves its columns unknown: values then route as written,
/// and the statement meets the node's own error.
pub async fn column_kinds<S: Connections, B: Backend>(
    session: &mut S,
    db: &LogicalDatabase<B>,
    st: &ShardedStatement,
) -> Result<ColumnKinds, S::Error> {
    if !matches!(
        st.kind,
        StatementKind::Select
            | StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete
    ) {
        return Ok(ColumnKinds::default());
    }
    let mut kinds = ColumnKinds::default();
    for table in &st.tables {
        let placed = db.rules.columns_placed_by_type(table);
        if placed.is_empty() {
            continue;
        }
        match table_columns(session, db, table).await {
            Ok(Some(columns)) => columns.add_kinds(&placed, &mut kinds),
            Ok(None) => {}
            Err(_) => debug!(table, "columns not learnt: values route as written"),
        }
    }
    Ok(kinds)
}

/// `table`'s columns, learnt once from its first node; None for a table
/// with no nodes.
async fn table_columns<S: Connections, B: Backend>(
    session: &mut S,
    db: &LogicalDatabase<B>,
    table: &str,
) -> Result<Option<Arc<TableColumns>>, S::Error> {
    if let Some(columns) = db.columns_of(table) {
        return Ok(Some(columns));
    }
    let Some(node) = db.rules.nodes(table).into_iter().next() else {
        return Ok(None);
    };
    let mut conn = session.checkout(&node.data_source).await?;
    let query = B::dialect().columns_query(&node.table);
    let rows = conn.query_rows(query.as_bytes()).await;
    session.release(conn);
    let columns = Arc::new(TableColumns::from_rows(rows?));
    db.learn_columns(table, columns.clone());
    Ok(Some(columns))
}
