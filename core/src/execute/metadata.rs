//! A metadata query (`SHOW TABLES`, `information_schema`, `SHOW CREATE
//! TABLE` ...) on the default data source, answered in logical terms: the
//! physical names in its cells mapped back to logical ones, and the rows
//! of a sharded table's physical tables folded into the one row of its
//! logical table. The front end maps the names in the column definitions
//! (its protocol's) when the result begins.

use std::collections::HashSet;

use shardgate_merge::Value;
use shardgate_sql::shard::metadata::MetadataNames;

use super::merge::{MergeFailure, MergedResult, RowConn};
use crate::error::ConnError;

/// Runs `sql` (with physical names) on `conn` and sends its rows to
/// `result` in logical terms; its end is the caller's. The connection is
/// left broken exactly when its reply was not read to its end.
pub async fn metadata_rows<C: RowConn, R: MergedResult<C::Column>>(
    conn: &mut C,
    names: &MetadataNames,
    sql: &[u8],
    result: &mut R,
) -> Result<(), MergeFailure> {
    conn.start_query(sql).await.map_err(MergeFailure::Node)?;
    let columns = match conn.read_columns().await {
        Ok(columns) => columns,
        Err(e) => {
            // A node's error reply was read whole.
            conn.set_broken(!matches!(e, ConnError::Server { .. }));
            return Err(MergeFailure::Node(e));
        }
    };
    result.begin(&columns, &columns);
    let mut seen = HashSet::new();
    let outcome = loop {
        let mut row = match conn.next_row(&columns).await {
            Ok(Some(row)) => row,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        for value in &mut row {
            if let Value::Bytes(cell) = value {
                if let Some(logical) = names.logical_cell(cell) {
                    *cell = logical;
                }
            }
        }
        // One row per logical table: its physical tables' rows fold.
        if !seen.insert(fold_key(&row)) {
            continue;
        }
        if result.push_row(&row).await.is_err() {
            conn.set_broken(true);
            return Err(MergeFailure::ClientGone);
        }
    };
    // A node's error reply was read whole; any other failure leaves the
    // reply unfinished.
    conn.set_broken(matches!(&outcome, Err(e) if !matches!(e, ConnError::Server { .. })));
    outcome.map_err(|e| match e {
        e @ ConnError::Server { .. } => MergeFailure::Reply(e.into()),
        e => MergeFailure::Node(e),
    })
}

/// Bytes equal exactly when two rows' values are.
fn fold_key(row: &[Value]) -> Vec<u8> {
    let mut key = Vec::new();
    for value in row {
        match value {
            Value::Null => key.push(0),
            Value::Int(v) => {
                key.push(1);
                key.extend_from_slice(&v.to_le_bytes());
            }
            Value::UInt(v) => {
                key.push(2);
                key.extend_from_slice(&v.to_le_bytes());
            }
            Value::Double(v) => {
                key.push(3);
                key.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Float(v) => {
                key.push(4);
                key.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Decimal(text) => {
                key.push(5);
                key.extend_from_slice(&(text.len() as u64).to_le_bytes());
                key.extend_from_slice(text.as_bytes());
            }
            Value::Bytes(bytes) => {
                key.push(6);
                key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                key.extend_from_slice(bytes);
            }
        }
    }
    key
}
