//! Forwards a backend's reply to the client packet for packet: bytes are
//! copied from the backend's read buffer with only the sequence ids
//! renumbered (and, for a prepare, the statement id replaced), while the
//! scanner finds where the reply ends. Large results stream through in
//! chunks, so memory stays bounded by what is in flight.

use bytes::Buf;
use tokio::io::AsyncWrite;

use crate::backend::BackendConn;
use crate::error::BackendError;
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
) -> Result<Outcome, ForwardError> {
    let mut scanner = ResponseScanner::new(kind, conn.flavor.deprecate_eof());
    let mut seq = client.seq();
    let mut first = true;
    loop {
        let buf = conn.reader.buffer();
        let mut pos = 0;
        let mut done = None;
        while done.is_none() && buf.len() - pos >= HEADER {
            let end = pos + HEADER + payload_len(&buf[pos..]);
            if buf.len() < end {
                break;
            }
            buf[pos + 3] = seq;
            seq = seq.wrapping_add(1);
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
            client.push_raw(&buf[..pos]);
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
