//! The result sets of nodes for a merge: a query sent whose reply is read
//! later, its rows decoded one by one as the merge pulls them, and the
//! client side the merge writes its rows to.

use crate::backend::result_set::RowPacket;
use crate::backend::PooledConn;
use crate::column::ColumnInfo;
use crate::command::COM_QUERY;
use crate::packet::PacketWriter;
use crate::row::{decode_row, encode_row, RowFormat};
use shardgate_merge::engine::{RowSink, RowSource};
use shardgate_merge::error::MergeError;
use shardgate_merge::Value;
use shardgate_sql::text::restore;
use tokio::net::tcp::OwnedWriteHalf;

/// Sends a query whose reply is read later. Until it is read to the end
/// the connection cannot go back to the pool: an early return closes it.
pub(in crate::session) async fn start_query(
    conn: &mut PooledConn,
    sql: &str,
) -> Result<(), shardgate_core::error::BackendError> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(COM_QUERY);
    payload.extend_from_slice(&restore(sql));
    conn.send_command(&payload).await?;
    conn.broken = true;
    Ok(())
}

/// One node's rows, decoded as the merge pulls them.
pub(super) struct NodeRows<'a> {
    pub(super) conn: &'a mut PooledConn,
    pub(super) columns: &'a [ColumnInfo],
    pub(super) done: bool,
    /// The connection failed (not a node's error reply).
    pub(super) lost: bool,
}

impl NodeRows<'_> {
    /// The next row packet; None at the end of the rows. A node's error
    /// ends them too and comes back as the error.
    pub(super) async fn next_packet(&mut self) -> Result<Option<bytes::BytesMut>, MergeError> {
        if self.done {
            return Ok(None);
        }
        let read = self.conn.read_row().await;
        let failed = |what: &dyn std::fmt::Display| {
            MergeError::Source(format!("data source {}: {what}", self.conn.ds))
        };
        match read {
            Ok(RowPacket::Row(row)) => Ok(Some(row)),
            Ok(RowPacket::End { .. }) => {
                self.done = true;
                Ok(None)
            }
            Ok(RowPacket::Err(err)) => {
                self.done = true;
                Err(failed(&err))
            }
            Err(e) => {
                self.lost = true;
                Err(failed(&e))
            }
        }
    }

    /// Reads past one row without decoding it; None at the end.
    pub(super) async fn skip(&mut self) -> Result<Option<()>, MergeError> {
        Ok(self.next_packet().await?.map(drop))
    }

    pub(super) async fn next(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        match self.next_packet().await? {
            Some(payload) => decode_row(&payload, self.columns, RowFormat::Text).map(Some),
            None => Ok(None),
        }
    }
}

/// A mutable borrow of a node source, so the session can still inspect it after the merge.
pub(super) struct SourceRef<'s, 'a>(pub(super) &'s mut NodeRows<'a>);

impl RowSource for SourceRef<'_, '_> {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        self.0.next().await
    }
}

/// Merged rows to the client, in the client's protocol.
pub(super) struct ClientRows<'a> {
    pub(super) writer: &'a mut PacketWriter<OwnedWriteHalf>,
    pub(super) columns: &'a [ColumnInfo],
    pub(super) format: RowFormat,
    pub(super) buf: Vec<u8>,
}

impl RowSink for ClientRows<'_> {
    async fn push_row(&mut self, row: &[Value]) -> Result<(), MergeError> {
        self.buf.clear();
        encode_row(row, self.columns, self.format, &mut self.buf);
        self.writer.push(&self.buf);
        if self.writer.pending() >= 256 * 1024 {
            self.writer
                .flush()
                .await
                .map_err(|e| MergeError::Sink(e.to_string()))?;
        }
        Ok(())
    }
}
