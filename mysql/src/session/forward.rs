//! Forwards a backend's reply to the client packet for packet: bytes are
//! copied from the backend's read buffer with only the sequence ids
//! renumbered (and, for a prepare, the statement id replaced), while the
//! scanner finds where the reply ends. Large results stream through in
//! chunks, so memory stays bounded by what is in flight.

use bytes::Buf;
use tokio::io::AsyncWrite;

use crate::backend::columns::{Definitions, KeptColumns};
use crate::backend::BackendConn;
use crate::column::logical_column;
use crate::ok_err::take_lenenc_int;
use crate::packet::{payload_len, PacketWriter, HEADER};
use crate::response::{Outcome, PrepareOk, ResponseKind, StatusFix, Step};
use crate::stmt::set_statement_id;
use shardgate_core::error::BackendError;
use shardgate_sql::shard::metadata::MetadataNames;

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

/// What a forwarded reply answers, where that changes how it is copied.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// Copied as it is (but for sequence ids and logical names).
    Plain,
    /// A COM_STMT_PREPARE: the prepare-OK gets the proxy's statement id.
    Prepare { client_id: u32 },
    /// A COM_STMT_EXECUTE of this backend statement: a result the data
    /// source sent without column definitions (MariaDB's metadata caching)
    /// gets the ones it came with last time.
    Execute { backend_id: u32 },
}

/// Copies one reply from `conn` to `client`, its status flags adjusted by
/// `fix`. With `stream_end`, the reply's last bytes are written at once from
/// the backend's buffer (one copy fewer) instead of queued for the
/// session's flush: only for replies the session has nothing to do before
/// the client gets (see `Session::reply_may_stream`).
pub async fn forward_reply<W: AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    client: &mut PacketWriter<W>,
    kind: ResponseKind,
    answer: Answer,
    names: Option<&MetadataNames>,
    fix: StatusFix,
    stream_end: bool,
) -> Result<Outcome, ForwardError> {
    let mut scanner = conn.scanner(kind);
    let mut seq = client.seq();
    let mut first = true;
    let (statement_id, executed) = match answer {
        Answer::Plain => (None, None),
        Answer::Prepare { client_id } => (Some(client_id), None),
        Answer::Execute { backend_id } => (None, Some(backend_id)),
    };
    let mut columns = KeptColumns::for_execute(conn, executed);
    loop {
        let buf = conn.reader.buffer();
        let mut pos = 0;
        // Bytes from `chunk` to `pos` go to the client as they are.
        let mut chunk = 0;
        let mut done = None;
        let mut missing = false;
        while done.is_none() && buf.len() - pos >= HEADER {
            let end = pos + HEADER + payload_len(&buf[pos..]);
            if buf.len() < end {
                break;
            }
            buf[pos + 3] = seq;
            seq = seq.wrapping_add(1);
            if scanner.expects_column_count(&buf[pos + HEADER..end]) {
                // Known before anything of the result goes out, so that the
                // client gets a clean error instead.
                let definitions = columns.begin_result(&buf[pos + HEADER..end]);
                if let Definitions::Missing = definitions {
                    missing = true;
                    break;
                }
                // The client gets the count without the "metadata follows"
                // byte and, when the data source left them out, the
                // definitions it sent last time.
                client.push_raw(&buf[chunk..pos]);
                chunk = end;
                client.set_seq(buf[pos + 3]);
                client.push(&buf[pos + HEADER..end - 1]);
                if let Definitions::Kept(defs) = definitions {
                    push_definitions(client, &defs, names);
                }
                seq = client.seq();
            } else if scanner.expects_column_definition() {
                columns.arrived(&buf[pos + HEADER..end]);
            }
            // Column definitions name the physical schema and tables: the
            // client sees the logical ones.
            if let Some(names) = names.filter(|_| scanner.expects_column_definition()) {
                if let Some(logical) = logical_column(names, &buf[pos + HEADER..end]) {
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
            if scanner.fed_status_packet() {
                fix.apply(payload, done.is_some());
            }
            if first {
                first = false;
                if let (Some(id), Some(ok)) = (statement_id, PrepareOk::parse(payload)) {
                    columns.prepared(&ok);
                    set_statement_id(payload, id);
                }
            }
            pos = end;
        }
        if missing {
            conn.broken = true;
            return Err(BackendError::from(KeptColumns::missing(&conn.ds)).into());
        }
        if pos > 0 {
            if done.is_some() && stream_end {
                // The reply's last bytes (often all of it) go out from the
                // backend's buffer, behind what is queued: one copy fewer.
                let written = client.write_through(&buf[chunk..pos]).await;
                buf.advance(pos);
                if let Err(e) = written {
                    conn.broken = true;
                    return Err(ForwardError::Client(e));
                }
            } else {
                client.push_raw(&buf[chunk..pos]);
                buf.advance(pos);
            }
        }
        client.set_seq(seq);
        columns.store(conn);
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
            return Err(BackendError::lost(&conn.ds, e).into());
        }
    }
}

/// Queues kept column definitions, under their logical names.
fn push_definitions<W: AsyncWrite + Unpin>(
    client: &mut PacketWriter<W>,
    definitions: &[Box<[u8]>],
    names: Option<&MetadataNames>,
) {
    for def in definitions {
        match names.and_then(|n| logical_column(n, def)) {
            Some(logical) => client.push(&logical),
            None => client.push(def),
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
/// `executed`: the backend statement, for an execute (see [`Answer::Execute`]).
pub async fn forward_part<W: AsyncWrite + Unpin>(
    conn: &mut BackendConn,
    client: &mut PacketWriter<W>,
    part: Part,
    executed: Option<u32>,
    names: Option<&MetadataNames>,
    fix: StatusFix,
) -> Result<Outcome, ForwardError> {
    let deprecate_eof = conn.flavor.deprecate_eof();
    let mut scanner = conn.scanner(ResponseKind::ResultSets);
    let mut columns = KeptColumns::for_execute(conn, executed);
    let mut index = 0u64;
    // Packets up to the rows (count, definitions, EOF), and the definitions among them.
    let mut header = u64::MAX;
    let mut definitions = 0;
    // The count carries the "metadata follows" byte, which the client does not get.
    let mut flagged = false;
    loop {
        let buf = conn.reader.buffer();
        let mut pos = 0;
        let mut missing = false;
        while buf.len() - pos >= HEADER {
            let end = pos + HEADER + payload_len(&buf[pos..]);
            if buf.len() < end {
                break;
            }
            let payload = &buf[pos + HEADER..end];
            let mut skipped = None;
            if index == 0 {
                let mut rest = payload;
                if let Some(n) = take_lenenc_int(&mut rest) {
                    definitions = n;
                    if scanner.expects_column_count(payload) {
                        flagged = true;
                        match columns.begin_result(payload) {
                            Definitions::Follow => {}
                            Definitions::Kept(defs) => {
                                definitions = 0;
                                skipped = Some(defs);
                            }
                            Definitions::Missing => {
                                missing = true;
                                break;
                            }
                        }
                    }
                    header = 1 + definitions + u64::from(!deprecate_eof);
                }
            } else if index <= definitions {
                columns.arrived(payload);
            }
            let step = scanner.feed(payload);
            if scanner.fed_status_packet() {
                fix.apply(&mut buf[pos + HEADER..end], matches!(step, Step::Done(_)));
            }
            let payload = &buf[pos + HEADER..end];
            let keep = match &step {
                Step::Done(Outcome::Err(_)) => true,
                Step::Done(_) => part.last,
                Step::More => index >= header || part.first,
            };
            let definition = index >= 1 && index <= definitions;
            match names
                .filter(|_| keep && definition)
                .and_then(|n| logical_column(n, payload))
            {
                Some(logical) => client.push(&logical),
                // The count without the "metadata follows" byte.
                None if keep && index == 0 && flagged => {
                    client.push(&payload[..payload.len() - 1]);
                }
                None if keep => client.push_framed(&buf[pos..end]),
                None => {}
            }
            if let Some(defs) = skipped.filter(|_| keep) {
                push_definitions(client, &defs, names);
            }
            index += 1;
            pos = end;
            if let Step::Done(outcome) = step {
                buf.advance(pos);
                columns.store(conn);
                conn.note_outcome(&outcome);
                return Ok(outcome);
            }
        }
        if missing {
            conn.broken = true;
            return Err(BackendError::from(KeptColumns::missing(&conn.ds)).into());
        }
        buf.advance(pos);
        columns.store(conn);
        if client.pending() >= FLUSH_AT {
            if let Err(e) = client.flush().await {
                conn.broken = true;
                return Err(ForwardError::Client(e));
            }
        }
        if let Err(e) = conn.reader.fill().await {
            conn.broken = true;
            return Err(BackendError::lost(&conn.ds, e).into());
        }
    }
}
