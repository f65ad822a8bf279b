//! The client's end of rows from nodes (a merge's, a write's RETURNING, a
//! metadata query's): the result the core's executor writes them to.

use crate::column::{logical_column, ColumnInfo};
use crate::ok_err::{encode_eof, put_lenenc_int};
use crate::packet::PacketWriter;
use crate::row::{encode_row, RowFormat};
use crate::session::Session;
use shardgate_core::execute::merge::MergedResult;
use shardgate_core::net::WriteHalf;
use shardgate_merge::engine::RowSink;
use shardgate_merge::error::MergeError;
use shardgate_merge::Value;
use shardgate_sql::shard::metadata::MetadataNames;

/// Rows of nodes to the client, in its protocol: the header the executor
/// starts it with (logical names for physical ones), then its rows.
pub(super) struct ClientResult<'a> {
    writer: &'a mut PacketWriter<WriteHalf>,
    names: &'a MetadataNames,
    header: Header,
    /// The status of the EOF packet after the column definitions; None
    /// when the client deprecated EOF packets.
    eof_status: Option<u16>,
    format: RowFormat,
    /// The rows' columns, from `begin`.
    columns: Vec<ColumnInfo>,
    buf: Vec<u8>,
}

/// Which names of the nodes' column definitions are physical ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// The rows of tables: their schema and table names.
    Tables,
    /// A metadata query's: its schema and the database in its labels
    /// (`Tables_in_ds0`).
    Metadata,
}

impl Session {
    /// The client's result for rows of nodes, in `format`.
    pub(super) fn client_result(&mut self, format: RowFormat, header: Header) -> ClientResult<'_> {
        let eof_status = (!self.flavor.deprecate_eof()).then(|| self.reply_status());
        ClientResult {
            writer: &mut self.writer,
            names: &self.db.metadata,
            header,
            eof_status,
            format,
            columns: Vec::new(),
            buf: Vec::new(),
        }
    }
}

impl MergedResult<ColumnInfo> for ClientResult<'_> {
    fn begin(&mut self, shown: &[ColumnInfo], visible: &[ColumnInfo]) {
        let mut count = Vec::new();
        put_lenenc_int(&mut count, shown.len() as u64);
        self.writer.push(&count);
        for column in shown {
            match self.header {
                Header::Tables => match logical_column(self.names, &column.raw) {
                    Some(logical) => self.writer.push(&logical),
                    None => self.writer.push(&column.raw),
                },
                Header::Metadata => {
                    let mut mapped = column.clone();
                    if let Some(label) = self.names.logical_label(&column.name) {
                        mapped.name = label;
                    }
                    if let Some(schema) = self.names.logical_cell(column.schema.as_bytes()) {
                        mapped.schema = String::from_utf8_lossy(&schema).into_owned();
                    }
                    self.writer.push(&mapped.encode());
                }
            }
        }
        if let Some(status) = self.eof_status {
            self.writer.push(&encode_eof(0, status));
        }
        self.columns = visible.to_vec();
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
