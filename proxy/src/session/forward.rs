//! Forwards a backend's reply to the client packet for packet: bytes are
//! copied from the backend's read buffer with only the sequence ids
//! renumbered (and, for a prepare, the statement id replaced), while the
//! scanner finds where the reply ends. Large results stream through in
//! chunks, so memory stays bounded by what is in flight.

use bytes::Buf;
use tokio::io::AsyncWrite;

use crate::backend::BackendConn;
use crate::error::BackendError;
use crate::shard::metadata::MetadataNames;
use crate::wire::packet::{payload_len, PacketWriter, HEADER};
use crate::wire::response::{Outcome, ResponseKind, ResponseScanner, Step};
use crate::wire::stmt::set_statement_id;

/// Queued client bytes beyond which the proxy writes before reading on.
const FLUSH_AT: usize = 256 * 1024;

/// Why forwarding stopped before the reply's end.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("client connection lost: {0}")]
    Client(std::io::Error),
}

/// Copies one reply from `conn` to `client`. With `statement_id`, a
/// prepare-OK gets that id (the proxy's) instead of the backend's.
pub async fn forward_reply<W: AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    client: &mut PacketWriter<W>,
    kind: ResponseKind,
    statement_id: Option<u32>,
    names: Option<&MetadataNames>,
) -> Result<Outcome, ForwardError> {
    let mut scanner = ResponseScanner::new(kind, conn.flavor.deprecate_eof());
    let mut seq = client.seq();
    let mut first = true;
    loop {
        let buf = conn.reader.buffer();
        let mut pos = 0;
        // Bytes from `chunk` to `pos` go to the client as they are.
        let mut chunk = 0;
        let mut done = None;
        while done.is_none() && buf.len() - pos >= HEADER {
            let end = pos + HEADER + payload_len(&buf[pos..]);
            if buf.len() < end {
                break;
            }
            buf[pos + 3] = seq;
            seq = seq.wrapping_add(1);
            // Column definitions name the physical schema and tables: the
            // client sees the logical ones.
            if let Some(names) = names.filter(|_| scanner.expects_column_definition()) {
                if let Some(logical) = names.logical_column(&buf[pos + HEADER..end]) {
                    client.push_raw(&buf[chunk..pos]);
                    let len = logical.len();
                    client.push_raw(&[
                        len as u8,
                        (len >> 8) as u8,
                        (len >> 16) as u8,
                        buf[pos + 3],
                    ]);
                    client.push_raw(&logical);
                    chunk = end;
                }
            }
            let payload = &mut buf[pos + HEADER..end];
            // The scanner reads the backend's statement id before the client's replaces it.
            if let Step::Done(outcome) = scanner.feed(payload) {
                done = Some(outcome);
            }
            if first {
                first = false;
                if let (Some(id), Some(0x00)) = (statement_id, payload.first()) {
                    set_statement_id(payload, id);
                }
            }
            pos = end;
        }
        if pos > 0 {
            client.push_raw(&buf[chunk..pos]);
            buf.advance(pos);
        }
        client.set_seq(seq);
        if let Some(outcome) = done {
            conn.note_outcome(&outcome);
            return Ok(outcome);
        }
        if client.pending() >= FLUSH_AT {
            if let Err(e) = client.flush().await {
                conn.broken = true;
                return Err(ForwardError::Client(e));
            }
        }
        if let Err(e) = conn.reader.fill().await {
            conn.broken = true;
            return Err(BackendError::from_read(&conn.ds, e).into());
        }
    }
}

/// Which parts of a result set a node contributes when several nodes'
/// rows are concatenated: the first sends the column definitions, the last
/// the end-of-result packet, every one its rows.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub first: bool,
    pub last: bool,
}

/// Copies one node's result set as a part of a concatenated one. An error
/// reply is always copied (and ends the concatenation: `Outcome::Err`).
pub async fn forward_part<W: AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    client: &mut PacketWriter<W>,
    part: Part,
    names: Option<&MetadataNames>,
) -> Result<Outcome, ForwardError> {
    let deprecate_eof = conn.flavor.deprecate_eof();
    let mut scanner = ResponseScanner::new(ResponseKind::ResultSets, deprecate_eof);
    let mut index = 0u64;
    let mut header = u64::MAX;
    loop {
        let buf = conn.reader.buffer();
        let mut pos = 0;
        while buf.len() - pos >= HEADER {
            let end = pos + HEADER + payload_len(&buf[pos..]);
            if buf.len() < end {
                break;
            }
            let payload = &buf[pos + HEADER..end];
            if index == 0 {
                let mut rest = payload;
                if let Some(n) = crate::wire::ok_err::take_lenenc_int(&mut rest) {
                    header = 1 + n + u64::from(!deprecate_eof);
                }
            }
            let step = scanner.feed(payload);
            let keep = match &step {
                Step::Done(Outcome::Err(_)) => true,
                Step::Done(_) => part.last,
                Step::More => index >= header || part.first,
            };
            let definition =
                index >= 1 && index <= header.saturating_sub(1 + u64::from(!deprecate_eof));
            match names
                .filter(|_| keep && definition)
                .and_then(|n| n.logical_column(payload))
            {
                Some(logical) => client.push(&logical),
                None if keep => client.push_framed(&buf[pos..end]),
                None => {}
            }
            index += 1;
            pos = end;
            if let Step::Done(outcome) = step {
                buf.advance(pos);
                conn.note_outcome(&outcome);
                return Ok(outcome);
            }
        }
        buf.advance(pos);
        if client.pending() >= FLUSH_AT {
            if let Err(e) = client.flush().await {
                conn.broken = true;
                return Err(ForwardError::Client(e));
            }
        }
        if let Err(e) = conn.reader.fill().await {
            conn.broken = true;
            return Err(BackendError::from_read(&conn.ds, e).into());
        }
    }
}
