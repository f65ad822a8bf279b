//! The MySQL ends of a merge: a node's query sent whose reply is read
//! later, and the client's result the merge writes its rows to.

use crate::backend::PooledConn;
use crate::column::{logical_column, ColumnInfo};
use crate::command::COM_QUERY;
use crate::ok_err::{encode_eof, put_lenenc_int};
use crate::packet::PacketWriter;
use crate::row::{encode_row, RowFormat};
use shardgate_core::execute::merge::MergedResult;
use shardgate_merge::engine::RowSink;
use shardgate_merge::error::MergeError;
use shardgate_merge::Value;
use shardgate_sql::shard::metadata::MetadataNames;
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

/// A merged result to the client, in its protocol: the header the
/// merge starts it with (logical names for physical ones), then its rows.
pub(super) struct ClientResult<'a> {
    pub(super) writer: &'a mut PacketWriter<OwnedWriteHalf>,
    pub(super) names: &'a MetadataNames,
    /// The status of the EOF packet after the column definitions; None
    /// when the client deprecated EOF packets.
    pub(super) eof_status: Option<u16>,
    pub(super) format: RowFormat,
    /// The rows' columns, from `begin`.
    pub(super) columns: Vec<ColumnInfo>,
    pub(super) buf: Vec<u8>,
}

impl MergedResult<ColumnInfo> for ClientResult<'_> {
    fn begin(&mut self, shown: &[ColumnInfo], visible: &[ColumnInfo]) {
        push_result_header(self.writer, self.names, shown, self.eof_status);
        self.columns = visible.to_vec();
    }
}

/// The start of a result set of node columns, as the client sees it: the
/// column count, each definition under logical names, and the EOF after
/// them (`eof_status`; None when the client deprecated EOF packets).
pub(in crate::session) fn push_result_header(
    writer: &mut PacketWriter<OwnedWriteHalf>,
    names: &MetadataNames,
    columns: &[ColumnInfo],
    eof_status: Option<u16>,
) {
    let mut count = Vec::new();
    put_lenenc_int(&mut count, columns.len() as u64);
    writer.push(&count);
    for column in columns {
        match logical_column(names, &column.raw) {
            Some(logical) => writer.push(&logical),
            None => writer.push(&column.raw),
        }
    }
    if let Some(status) = eof_status {
        writer.push(&encode_eof(0, status));
    }
}

impl RowSink for ClientResult<'_> {
    async fn push_row(&mut self, row: &[Value]) -> Result<(), MergeError> {
        self.buf.clear();
        encode_row(row, &self.columns, self.format, &mut self.buf);
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
