//! Reading a text result set from a data source, typed: its column
//! definitions, then its rows one packet at a time up to the end. The one
//! reader for every place the proxy reads a data source's rows itself
//! (merges, RETURNING, the definitions a merge shows its client), so that
//! the column count, the definitions and the end of the rows are told
//! apart in one place.

use bytes::BytesMut;

use super::{BackendConn, ConnError};
use crate::column::ColumnInfo;
use crate::ok_err::{eof_status, take_lenenc_int, ErrInfo, OkInfo};
use crate::packet::MAX_PAYLOAD;

/// One packet of a result set's rows.
#[derive(Debug)]
pub enum RowPacket {
    /// A row, as the data source encoded it.
    Row(BytesMut),
    /// The end of the rows, with the server's status flags.
    End { status: u16 },
    /// The server's error, which ends the rows.
    Err(ErrInfo),
}

impl BackendConn {
    /// Reads the start of a statement's result set: its column
    /// definitions. A server's error reply (read whole: the connection
    /// stays usable) is `ConnError::Server`; a reply without rows (an OK)
    /// is a protocol error, as the statement was to give rows.
    pub async fn read_columns(&mut self) -> Result<Vec<ColumnInfo>, ConnError> {
        let (_, first) = self.read().await?;
        match first.first() {
            Some(0xFF) => return Err(self.server_error(&first)),
            Some(0x00) | None => {
                return Err(self.protocol("a node answered a SELECT without rows".into()))
            }
            _ => {}
        }
        let mut rest = &first[..];
        let count = take_lenenc_int(&mut rest)
            .ok_or_else(|| self.protocol("a result set without a column count".into()))?;
        // A query's result always comes with its definitions.
        if self.cache_metadata && rest.first() == Some(&0) {
            self.broken = true;
            return Err(self.protocol("a query's result came without column definitions".into()));
        }
        let mut columns = Vec::with_capacity(usize::try_from(count.min(4096)).unwrap_or(0));
        for _ in 0..count {
            let (_, definition) = self.read().await?;
            let column = ColumnInfo::parse(&definition)
                .map_err(|e| self.protocol(format!("bad column definition: {e}")))?;
            columns.push(column);
        }
        if !self.flavor.deprecate_eof() {
            self.read().await?;
        }
        Ok(columns)
    }

    /// Reads the next packet of a result set's rows.
    pub async fn read_row(&mut self) -> Result<RowPacket, ConnError> {
        let payload = match self.reader.buffered_packet() {
            Some((_, payload)) => payload,
            None => self.read().await?.1,
        };
        let deprecate_eof = self.flavor.deprecate_eof();
        // An EOF (or an OK starting with 0xFE) is shorter than any row
        // starting with that byte, which is a length of 2^24 and more.
        let terminator = if deprecate_eof { MAX_PAYLOAD } else { 9 };
        Ok(match payload.first() {
            Some(0xFF) => RowPacket::Err(
                ErrInfo::parse(&payload)
                    .ok_or_else(|| self.protocol("malformed error packet".into()))?,
            ),
            Some(0xFE) if payload.len() < terminator => RowPacket::End {
                status: if deprecate_eof {
                    OkInfo::parse(&payload).map_or(0, |ok| ok.status)
                } else {
                    eof_status(&payload)
                },
            },
            _ => RowPacket::Row(payload),
        })
    }

    /// Reads past the next row without decoding it: false after the last.
    /// The server's error, if the rows end with one, is `ConnError::Server`.
    pub async fn skip_row(&mut self) -> Result<bool, ConnError> {
        match self.read_row().await? {
            RowPacket::Row(_) => Ok(true),
            RowPacket::End { .. } => Ok(false),
            RowPacket::Err(err) => Err(self.server_reply(err)),
        }
    }

    /// Reads the rest of a result set's rows and drops them (see
    /// [`skip_row`](Self::skip_row)).
    pub async fn skip_rows(&mut self) -> Result<(), ConnError> {
        while self.skip_row().await? {}
        Ok(())
    }

    fn server_error(&self, payload: &[u8]) -> ConnError {
        match ErrInfo::parse(payload) {
            Some(err) => self.server_reply(err),
            None => self.protocol("malformed error packet".into()),
        }
    }
}
