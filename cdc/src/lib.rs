//! Change data capture for the migrator: the committed row changes of
//! chosen tables on a MariaDB primary, read from its binlog in commit order,
//! each transaction with the binlog position after it, so that a reader can
//! stop anywhere and resume from the last position it handled.
//!
//! [`ChangeStream`] reads the binlog; [`current_position`] says where a
//! primary's binlog is now. Column values are `mysql_async::Value`s meant
//! to be written back through prepared statements; the `values` module doc
//! (on [`WRITE_TIME_ZONE`]'s module) says how they compare with a SELECT.

mod error;
mod filter;
mod mariadb;
mod position;
mod statement;
mod stream;
mod values;

pub use error::CdcError;
pub use filter::TableFilter;
pub use position::BinlogPosition;
pub use stream::{current_position, ChangeStream, StreamItem, HEARTBEAT_PERIOD};
pub use values::WRITE_TIME_ZONE;

use std::sync::Arc;

pub use mysql_async::Value;

/// A row image from a row event: the table's column names (shared by every
/// row of the table) and this row's values in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub columns: Arc<[String]>,
    pub values: Vec<Value>,
}

impl Row {
    /// The value of a column, by name, ignoring ASCII case.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .and_then(|i| self.values.get(i))
    }
}

/// What a row change did.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Insert { after: Row },
    Update { before: Row, after: Row },
    Delete { before: Row },
}

/// One row change of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    pub schema: String,
    pub table: String,
    pub change: Change,
}

/// The changes one committed transaction made to the watched tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// MariaDB GTID `domain-server-sequence`, when the binlog gave one.
    pub gtid: Option<String>,
    pub changes: Vec<TableChange>,
    /// Where the binlog continues after this transaction: resuming there
    /// replays nothing of it.
    pub end: BinlogPosition,
}
