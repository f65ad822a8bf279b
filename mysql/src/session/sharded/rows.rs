//! The client's end of rows from several nodes (a merge's, a write's
//! RETURNING): the result the core's executor writes them to.

use crate::column::{logical_column, ColumnInfo};
use crate::ok_err::{encode_eof, put_lenenc_int};
use crate::packet::PacketWriter;
use crate::row::{encode_row, RowFormat};
use shardgate_core::execute::merge::MergedResult;
use shardgate_merge::engine::RowSink;
use shardgate_merge::error::MergeError;
use shardgate_merge::Value;
use shardgate_sql::shard::metadata::MetadataNames;
use tokio::net::tcp::OwnedWriteHalf;

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
fn push_result_header(
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
