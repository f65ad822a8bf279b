//! The column definitions a merged SELECT shows its client when its first
//! data source combines several tables (a UNION, whose definitions lose
//! their tables and the flags of a single table's result).
//!
//! MariaDB's definitions of a result depend on how the statement ran: an
//! executed GROUP BY or DISTINCT reports the temporary table's columns
//! (GROUP_FLAG on the keys, no BINARY flag on COUNT, decimals 0 on
//! MIN(text), ...), while a prepare, or a run that ends before executing
//! (`LIMIT 0`, an impossible WHERE), reports the expressions' own. So the
//! definitions the client gets are those of the first table's statement
//! really executed, in the first of these ways that applies:
//!
//! 1. it runs as a merge source of its own, on a second connection of the
//!    data source (the rest of the data source's tables on the usual one):
//!    no statement runs twice. Only outside transactions, where two
//!    connections see the same data, and when the pool has one ready now
//!    and less than half of it is in use (idle with the session's state,
//!    or opened when there is no state to replay): the first merged SELECT
//!    of a single session grows the pool by one, the next ones find it
//!    idle;
//! 2. it runs once more on the data source's connection, pipelined ahead of
//!    the data source's statement, and its rows are read and dropped: one
//!    more packet, no more round trips;
//! 3. when running it twice could have effects (see `shard::repeatable`):
//!    it is prepared instead, whose definitions carry the prepare-time
//!    flags.

use crate::backend::PooledConn;
use crate::column::ColumnInfo;
use crate::command::{COM_QUERY, COM_STMT_CLOSE, COM_STMT_PREPARE};
use crate::response::PrepareOk;
use shardgate_core::error::ConnError;

/// A command pipelined ahead of the first data source's statement for the
/// definitions (ways 2 and 3 above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ahead {
    /// The first table's statement runs; its rows are dropped.
    Run,
    /// The first table's statement is prepared (and closed).
    Prepare,
}

impl Ahead {
    /// The command that carries the first table's statement.
    pub(super) fn command_code(self) -> u8 {
        match self {
            Ahead::Run => COM_QUERY,
            Ahead::Prepare => COM_STMT_PREPARE,
        }
    }

    /// Reads the reply to the command, which comes before the data
    /// source's own. `Ok(None)`: no definitions from it (a refused
    /// prepare). A failed run is the statement's failure (a server's error
    /// is `ConnError::Server`): the data source's statement would have
    /// failed the same way, and an error such as a deadlock has already
    /// ended its transaction.
    pub(super) async fn read(
        self,
        conn: &mut PooledConn,
    ) -> Result<Option<Vec<ColumnInfo>>, ConnError> {
        match self {
            Ahead::Run => {
                let columns = conn.read_columns().await?;
                conn.skip_rows().await?;
                Ok(Some(columns))
            }
            Ahead::Prepare => read_prepared_columns(conn).await,
        }
    }
}

/// Reads the reply to a COM_STMT_PREPARE: its column definitions (None if
/// the server refused to prepare), and queues the statement's close.
async fn read_prepared_columns(
    conn: &mut PooledConn,
) -> Result<Option<Vec<ColumnInfo>>, ConnError> {
    let ds = conn.ds.to_string();
    let lost = |e| ConnError::lost(&ds, e);
    let (_, first) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    let Some(ok) = PrepareOk::parse(&first) else {
        return Ok(None);
    };
    let eof = !conn.flavor.deprecate_eof();
    let mut columns = Vec::with_capacity(usize::from(ok.num_columns));
    for _ in 0..ok.num_params {
        conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    }
    if eof && ok.num_params > 0 {
        conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    }
    for _ in 0..ok.num_columns {
        let (_, def) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
        columns.extend(ColumnInfo::parse(&def).ok());
    }
    if eof && ok.num_columns > 0 {
        conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    }
    let mut close = vec![COM_STMT_CLOSE];
    close.extend_from_slice(&ok.statement_id.to_le_bytes());
    conn.queue_command(&close);
    Ok(Some(columns))
}
