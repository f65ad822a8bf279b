//! MySQL packet framing: the 4-byte header (3-byte length, 1-byte sequence id),
//! payloads of 16 MiB - 1 or more split over several packets, and the
//! buffered reader/writer both sides of the proxy use.
//!
//! Reading keeps bytes in one `BytesMut` so that a response can be forwarded
//! from that buffer as it arrives (see `session::forward`), without copying
//! each packet out first.

use bytes::{Buf, BytesMut};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest payload one packet carries; a payload of exactly this length is
/// followed by a continuation packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Header length in bytes.
pub const HEADER: usize = 4;

const READ_CHUNK: usize = 16 * 1024;

/// How many queued bytes a payload written in parts
/// ([`PacketWriter::begin_long`]) lets build up before writing them out:
/// large enough that a write costs little next to the copy, small next to
/// the statements that are streamed (megabytes).
const STREAM_AT: usize = 256 * 1024;

/// Why a logical packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The logical payload exceeded the limit; it was drained, never
    /// buffered, so the next packet starts at a packet boundary.
    #[error("packet larger than max_allowed_packet ({limit} bytes)")]
    TooLarge { limit: usize, seq: u8 },
    /// Nothing came for longer than the reader's silence limit.
    #[error("no answer for {} ms (its pool's query_timeout_ms)", .0.as_millis())]
    Silent(Duration),
}

/// Reads packets from one side of a connection.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    /// How long a read may wait for bytes (None: as long as it takes).
    silence_limit: Option<Duration>,
}

impl<R: tokio::io::AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            silence_limit: None,
        }
    }

    /// Bounds how long each read waits for bytes.
    pub fn set_silence_limit(&mut self, limit: Option<Duration>) {
        self.silence_limit = limit;
    }

    /// The bytes read but not consumed yet.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads more bytes into the buffer; `Closed` at end of stream.
    pub async fn fill(&mut self) -> Result<usize, ReadError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK);
        }
        let n = match self.silence_limit {
            None => self.inner.read_buf(&mut self.buf).await?,
            // Boxed: the bounded read is the rare case, and its timer would
            // otherwise weigh on every read's future.
            Some(limit) => {
                let read = tokio::time::timeout(limit, self.inner.read_buf(&mut self.buf));
                match Box::pin(read).await {
                    Ok(n) => n?,
                    Err(_) => return Err(ReadError::Silent(limit)),
                }
            }
        };
        if n == 0 {
            return Err(ReadError::Closed);
        }
        Ok(n)
    }

    /// Ensures that at least `n` bytes are buffered.
    async fn fill_to(&mut self, n: usize) -> Result<(), ReadError> {
        if self.buf.len() < n {
            self.buf.reserve(n - self.buf.len());
        }
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(())
    }

    /// Reads past `n` bytes of the stream, keeping at most a read's worth
    /// of them in memory at a time.
    async fn skip(&mut self, mut n: usize) -> Result<(), ReadError> {
        loop {
            let take = n.min(self.buf.len());
            self.buf.advance(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// The next packet when it is buffered whole and not split (shorter
    /// than `MAX_PAYLOAD`): what `read_packet` would return, without
    /// reading. Rows arrive many to a read, so a result's reader takes
    /// most of them here, skipping the asynchronous path.
    pub fn buffered_packet(&mut self) -> Option<(u8, BytesMut)> {
        if self.buf.len() < HEADER {
            return None;
        }
        let len = payload_len(&self.buf);
        if len >= MAX_PAYLOAD || self.buf.len() < HEADER + len {
            return None;
        }
        let seq = self.buf[3];
        self.buf.advance(HEADER);
        Some((seq, self.buf.split_to(len)))
    }

    /// Reads one logical packet, joining continuation packets, refusing
    /// payloads larger than `limit` (the rest of such a payload is drained).
    /// Returns the sequence id of the last physical packet.
    pub async fn read_packet(&mut self, limit: usize) -> Result<(u8, BytesMut), ReadError> {
        let mut payload: Option<BytesMut> = None;
        let mut too_large = false;
        loop {
            self.fill_to(HEADER).await?;
            let len = payload_len(&self.buf);
            let seq = self.buf[3];
            let so_far = payload.as_ref().map_or(0, BytesMut::len);
            // The length is checked before the payload is read: a payload
            // over the limit is never buffered, only drained.
            too_large |= so_far.saturating_add(len) > limit;
            if too_large {
                payload = None;
                self.buf.advance(HEADER);
                self.skip(len).await?;
            } else {
                self.fill_to(HEADER + len).await?;
                self.buf.advance(HEADER);
                let part = self.buf.split_to(len);
                match payload.as_mut() {
                    Some(joined) => joined.unsplit(part),
                    None => payload = Some(part),
                }
            }
            if len < MAX_PAYLOAD {
                return match payload {
                    Some(payload) if !too_large => Ok((seq, payload)),
                    _ => Err(ReadError::TooLarge { limit, seq }),
                };
            }
        }
    }
}

/// Reads one packet and not a byte past it: for a client's first answer,
/// which an SSL request makes the last bytes before a TLS handshake. A
/// payload over `limit` (a split one included) is refused before it is read.
pub async fn read_packet_exact<R: tokio::io::AsyncRead + Unpin>(
    inner: &mut R,
    limit: usize,
) -> Result<(u8, Vec<u8>), ReadError> {
    let mut header = [0u8; HEADER];
    read_exact_or_closed(inner, &mut header).await?;
    let (len, seq) = (payload_len(&header), header[3]);
    if len > limit.min(MAX_PAYLOAD - 1) {
        return Err(ReadError::TooLarge { limit, seq });
    }
    let mut payload = vec![0u8; len];
    read_exact_or_closed(inner, &mut payload).await?;
    Ok((seq, payload))
}

async fn read_exact_or_closed<R: tokio::io::AsyncRead + Unpin>(
    inner: &mut R,
    buf: &mut [u8],
) -> Result<(), ReadError> {
    match inner.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Length field of the packet whose header starts `buf`.
pub fn payload_len(buf: &[u8]) -> usize {
    usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16
}

/// Appends `payload` to `out` as one logical packet starting at `seq`,
/// splitting it at `MAX_PAYLOAD`; returns the next sequence id.
pub fn frame_into(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        // A payload that is an exact multiple of MAX_PAYLOAD ends with an
        // empty packet so the reader knows it is complete.
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// Buffers outgoing packets and writes them in one go.
pub struct PacketWriter<W> {
    inner: W,
    buf: Vec<u8>,
    seq: u8,
    /// Writes done so far, so that a [`Mark`] knows whether bytes queued
    /// after it may have reached the peer.
    flushes: u64,
}

/// Where a writer stood, to take back what was queued since (see
/// [`PacketWriter::rollback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    len: usize,
    seq: u8,
    flushes: u64,
}

/// A logical packet being queued in parts: see
/// [`PacketWriter::begin_long`].
#[derive(Debug)]
pub struct LongPayload {
    len: usize,
    /// Payload bytes not yet queued.
    left: usize,
    /// Payload bytes the packet begun last still takes.
    in_packet: usize,
    /// Whether a last packet shorter than MAX_PAYLOAD (maybe empty) is
    /// still due: always, until one was framed.
    end_due: bool,
}

/// The error of a [`LongPayload`] given parts that are not its length.
fn parts_mismatch(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a payload announced as {len} bytes was given in parts of another length"),
    )
}

impl<W: tokio::io::AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(READ_CHUNK),
            seq: 0,
            flushes: 0,
        }
    }

    /// The current position, for a later [`rollback`](Self::rollback).
    pub fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            seq: self.seq,
            flushes: self.flushes,
        }
    }

    /// Drops what was queued since `mark`, if none of it was written yet
    /// (no flush since): the peer then never knew of it. False when
    /// something may have been written, and nothing is changed.
    pub fn rollback(&mut self, mark: Mark) -> bool {
        if self.flushes != mark.flushes || self.buf.len() < mark.len {
            return false;
        }
        self.buf.truncate(mark.len);
        self.seq = mark.seq;
        true
    }

    /// The sequence id the next packet gets.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// Queues one logical packet.
    pub fn push(&mut self, payload: &[u8]) {
        self.seq = frame_into(&mut self.buf, self.seq, payload);
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Queues already framed bytes (forwarded packets, renumbered by the caller).
    pub fn push_raw(&mut self, framed: &[u8]) {
        self.buf.extend_from_slice(framed);
    }

    /// Queues one framed packet (continuation packets count as their own),
    /// giving it the next sequence id.
    pub fn push_framed(&mut self, framed: &[u8]) {
        let at = self.buf.len();
        self.buf.extend_from_slice(framed);
        if let Some(seq) = self.buf.get_mut(at + 3) {
            *seq = self.seq;
        }
        self.seq = self.seq.wrapping_add(1);
    }

    /// Writes what is queued and then already framed bytes from the
    /// caller's buffer, in one vectored write where the stream takes it:
    /// the caller's bytes are not copied into the queue first.
    pub async fn write_through(&mut self, framed: &[u8]) -> io::Result<()> {
        // Counted before writing, as in `flush`.
        self.flushes += 1;
        let (mut queued, mut framed) = (&self.buf[..], framed);
        while !queued.is_empty() || !framed.is_empty() {
            let parts = [io::IoSlice::new(queued), io::IoSlice::new(framed)];
            let n = self.inner.write_vectored(&parts).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_queued = n.min(queued.len());
            queued = &queued[from_queued..];
            framed = &framed[n - from_queued..];
        }
        self.buf.clear();
        self.inner.flush().await
    }

    /// Begins one logical packet of `len` payload bytes, queued in parts
    /// ([`PacketWriter::queue_part`]) and written out as they come
    /// ([`PacketWriter::write_if_full`]), so that a payload of any size
    /// takes a buffer of bounded size, not a copy of itself; ended by
    /// [`PacketWriter::end_long`]. The packet follows what is queued.
    pub fn begin_long(&self, len: usize) -> LongPayload {
        LongPayload {
            len,
            left: len,
            in_packet: 0,
            end_due: true,
        }
    }

    /// Queues `bytes`, the next part of `payload`, framed: a header
    /// before each packet's first byte. `InvalidInput` when the parts go
    /// past the announced length.
    pub fn queue_part(&mut self, payload: &mut LongPayload, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if payload.in_packet == 0 {
                if payload.left == 0 {
                    return Err(parts_mismatch(payload.len));
                }
                payload.in_packet = payload.left.min(MAX_PAYLOAD);
                self.push_header(payload.in_packet);
                payload.end_due = payload.in_packet == MAX_PAYLOAD;
            }
            let n = bytes.len().min(payload.in_packet);
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            payload.in_packet -= n;
            payload.left -= n;
        }
        Ok(())
    }

    /// Writes out what is queued once it is [`STREAM_AT`] bytes or more.
    pub async fn write_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= STREAM_AT {
            // Counted before writing, as in `flush`.
            self.flushes += 1;
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Ends `payload` (the last, shorter packet it may still need) and
    /// writes everything queued. `InvalidInput` when its parts fell short
    /// of the announced length: the packet is then cut short on the wire,
    /// and the stream must be dropped.
    pub async fn end_long(&mut self, payload: LongPayload) -> io::Result<()> {
        if payload.left != 0 {
            return Err(parts_mismatch(payload.len));
        }
        if payload.end_due {
            self.push_header(0);
        }
        self.flush().await
    }

    /// Queues a packet header for a payload of `len` (at most
    /// MAX_PAYLOAD) bytes, with the next sequence id.
    fn push_header(&mut self, len: usize) {
        self.buf
            .extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq]);
        self.seq = self.seq.wrapping_add(1);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            // Counted before writing: a failed write may have sent a part.
            self.flushes += 1;
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
            if self.buf.capacity() > 4 * 1024 * 1024 {
                self.buf.shrink_to(READ_CHUNK);
            }
            // A no-op on TCP; TLS may hold the last record until flushed.
            self.inner.flush().await?;
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_small_payload() {
        let mut out = Vec::new();
        let next = frame_into(&mut out, 3, b"\x03SELECT 1");
        assert_eq!(next, 4);
        assert_eq!(&out[..4], &[9, 0, 0, 3]);
        assert_eq!(&out[4..], b"\x03SELECT 1");
    }

    #[test]
    fn frame_splits_at_max_payload_and_ends_with_empty_packet() {
        let payload = vec![7u8; MAX_PAYLOAD * 2];
        let mut out = Vec::new();
        let next = frame_into(&mut out, 0, &payload);
        assert_eq!(next, 3);
        assert_eq!(out.len(), payload.len() + 3 * HEADER);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 2]);
    }

    #[tokio::test]
    async fn rollback_takes_back_only_what_was_not_written() {
        let mut w = PacketWriter::new(Vec::new());
        w.push(b"kept");
        let mark = w.mark();
        w.push(b"dropped");
        assert!(w.rollback(mark));
        assert_eq!(w.seq(), 1);
        assert_eq!(w.pending(), HEADER + 4);
        w.push(b"sent");
        w.flush().await.unwrap();
        assert!(!w.rollback(mark), "written bytes cannot be taken back");
        assert_eq!(w.inner.len(), 2 * HEADER + 8);
    }

    #[tokio::test]
    async fn write_through_sends_the_queue_then_the_callers_bytes() {
        // A pipe of 7 bytes: writes are partial, the loop must finish them.
        let (near, mut far) = tokio::io::duplex(7);
        let mut w = PacketWriter::new(near);
        w.push(b"queued");
        let mark = w.mark();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_through(b"from the backend's buffer").await.unwrap();
        assert_eq!(w.pending(), 0);
        assert!(!w.rollback(mark), "written bytes cannot be taken back");
        drop(w);
        let mut expected = vec![6, 0, 0, 0];
        expected.extend_from_slice(b"queued");
        expected.extend_from_slice(b"from the backend's buffer");
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn parts_are_framed_as_the_whole_payload() {
        let sizes = [
            0,
            1,
            STREAM_AT + 5,
            MAX_PAYLOAD - 1,
            MAX_PAYLOAD,
            MAX_PAYLOAD + 1,
            2 * MAX_PAYLOAD,
        ];
        for size in sizes {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut want = Vec::new();
            frame_into(&mut want, 0, b"queued");
            let next = frame_into(&mut want, 0, &payload);
            let mut w = PacketWriter::new(Vec::new());
            w.push(b"queued");
            w.set_seq(0);
            // Parts of uneven sizes, some empty.
            let mut long = w.begin_long(size);
            for part in payload.chunks(100_003).flat_map(|c| [c, &[][..]]) {
                w.queue_part(&mut long, part).unwrap();
                w.write_if_full().await.unwrap();
                assert!(w.pending() < STREAM_AT + 100_003 + 2 * HEADER);
            }
            w.end_long(long).await.unwrap();
            assert_eq!(w.seq(), next, "size {size}");
            assert_eq!(w.pending(), 0);
            assert!(w.inner == want, "size {size}");
        }
    }

    #[tokio::test]
    async fn parts_of_another_length_are_refused() {
        let mut w = PacketWriter::new(Vec::new());
        let mut short = w.begin_long(5);
        w.queue_part(&mut short, b"abc").unwrap();
        let ended = w.end_long(short).await;
        assert_eq!(
            ended.map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
        let mut w = PacketWriter::new(Vec::new());
        let mut long = w.begin_long(2);
        let queued = w.queue_part(&mut long, b"abc");
        assert_eq!(
            queued.map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
    }

    #[tokio::test]
    async fn read_joins_continuations() {
        let payload: Vec<u8> = (0..MAX_PAYLOAD + 10).map(|i| i as u8).collect();
        let mut framed = Vec::new();
        frame_into(&mut framed, 0, &payload);
        frame_into(&mut framed, 0, b"next");
        let mut reader = PacketReader::new(&framed[..]);
        let (seq, got) = reader.read_packet(usize::MAX).await.unwrap();
        assert_eq!(seq, 1);
        assert_eq!(&got[..], &payload[..]);
        let (_, next) = reader.read_packet(usize::MAX).await.unwrap();
        assert_eq!(&next[..], b"next");
    }

    #[tokio::test]
    async fn too_large_is_drained_and_next_packet_readable() {
        let payload = vec![1u8; MAX_PAYLOAD + 5];
        let mut framed = Vec::new();
        frame_into(&mut framed, 0, &payload);
        frame_into(&mut framed, 0, b"ok");
        let mut reader = PacketReader::new(&framed[..]);
        let err = reader.read_packet(1024).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 1024, .. }));
        let (_, next) = reader.read_packet(1024).await.unwrap();
        assert_eq!(&next[..], b"ok");
    }

    #[tokio::test]
    async fn a_payload_over_the_limit_is_drained_without_being_buffered() {
        let payload = vec![1u8; 3 * MAX_PAYLOAD];
        let mut framed = Vec::new();
        frame_into(&mut framed, 0, &payload);
        frame_into(&mut framed, 0, b"ok");
        let mut reader = PacketReader::new(&framed[..]);
        let err = reader.read_packet(64 * 1024).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { seq: 3, .. }), "{err:?}");
        assert!(
            reader.buffer().capacity() <= 4 * READ_CHUNK,
            "{} bytes buffered for a payload over the limit",
            reader.buffer().capacity()
        );
        let (seq, next) = reader.read_packet(64 * 1024).await.unwrap();
        assert_eq!((seq, &next[..]), (0, &b"ok"[..]));
    }

    #[tokio::test]
    async fn only_whole_unsplit_packets_are_taken_from_the_buffer() {
        let mut framed = Vec::new();
        frame_into(&mut framed, 3, b"row one");
        frame_into(&mut framed, 4, b"row two");
        // The second packet's last byte not read yet.
        let mut reader = PacketReader::new(&framed[..framed.len() - 1]);
        assert!(reader.buffered_packet().is_none());
        reader.fill().await.unwrap();
        let (seq, first) = reader.buffered_packet().unwrap();
        assert_eq!((seq, &first[..]), (3, &b"row one"[..]));
        assert!(reader.buffered_packet().is_none());
        // A packet of MAX_PAYLOAD continues in the next: the async path joins them.
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut framed = Vec::new();
        frame_into(&mut framed, 0, &payload);
        let mut reader = PacketReader::new(&framed[..]);
        while reader.buffer().len() < framed.len() {
            reader.fill().await.unwrap();
        }
        assert!(reader.buffered_packet().is_none());
        assert_eq!(
            reader.read_packet(usize::MAX).await.unwrap().1.len(),
            MAX_PAYLOAD
        );
    }
}
