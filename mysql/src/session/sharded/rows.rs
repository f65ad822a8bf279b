//! Reading the result sets of nodes for a merge: a query sent whose reply
//! is read later, the column definitions, then rows decoded one by one, and
//! the client side the merge writes its rows to.

use crate::backend::PooledConn;
use crate::column::ColumnInfo;
use crate::command::COM_QUERY;
use crate::errors::relayed;
use crate::ok_err::ErrInfo;
use crate::packet::PacketWriter;
use crate::row::{decode_row, encode_row, RowFormat};
use shardgate_core::error::{ErrorKind, ProxyError};
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

/// Reads a result set's column definitions; a node's error is the inner error.
pub(in crate::session) async fn read_columns(
    conn: &mut PooledConn,
) -> Result<Result<Vec<ColumnInfo>, ProxyError>, shardgate_core::error::BackendError> {
    let ds = conn.ds.to_string();
    let lost = |e| shardgate_core::error::BackendError::lost(&ds, e);
    let (_, first) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    match first.first() {
        Some(0xFF) => {
            return Ok(Err(relayed(&first)));
        }
        Some(0x00) | None => {
            return Ok(Err(ProxyError::new(
                ErrorKind::DataSourceLost,
                "a node answered a SELECT without rows",
            )));
        }
        _ => {}
    }
    let mut rest = &first[..];
    let n = crate::ok_err::take_lenenc_int(&mut rest).unwrap_or(0);
    // A query's result always comes with its definitions.
    if conn.cache_metadata && rest.first() == Some(&0) {
        conn.broken = true;
        return Err(crate::backend::ConnError::Protocol {
            ds,
            what: "a query's result came without column definitions".into(),
        }
        .into());
    }
    let mut columns = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (_, def) = conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
        match ColumnInfo::parse(&def) {
            Ok(c) => columns.push(c),
            Err(e) => {
                return Ok(Err(ProxyError::new(
                    ErrorKind::DataSourceLost,
                    format!("bad column definition: {e}"),
                )))
            }
        }
    }
    if !conn.flavor.deprecate_eof() {
        conn.reader.read_packet(usize::MAX).await.map_err(lost)?;
    }
    Ok(Ok(columns))
}

/// One node's rows, decoded as the merge pulls them.
pub(super) struct NodeRows<'a> {
    pub(super) conn: &'a mut PooledConn,
    pub(super) columns: &'a [ColumnInfo],
    pub(super) deprecate_eof: bool,
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
        let (_, payload) = match self.conn.reader.read_packet(usize::MAX).await {
            Ok(packet) => packet,
            Err(e) => {
                self.lost = true;
                return Err(MergeError::Source(format!(
                    "data source {}: {e}",
                    self.conn.ds
                )));
            }
        };
        match payload.first() {
            Some(0xFF) => {
                self.done = true;
                let err = ErrInfo::parse(&payload)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                Err(MergeError::Source(format!(
                    "data source {}: {err}",
                    self.conn.ds
                )))
            }
            Some(0xFE) if payload.len() < if self.deprecate_eof { 0xFF_FFFF } else { 9 } => {
                self.done = true;
                Ok(None)
            }
            _ => Ok(Some(payload)),
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
