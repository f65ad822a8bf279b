//! An in-memory stream that gives at most `chunk` bytes per read, so that
//! packet boundaries fall anywhere relative to reads, as on a socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

pub struct Trickle<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl<'a> Trickle<'a> {
    /// `bytes` handed out `chunk` (at least 1) bytes at a time.
    pub fn new(bytes: &'a [u8], chunk: usize) -> Self {
        Trickle {
            rest: bytes,
            chunk: chunk.max(1),
        }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.rest.len()).min(buf.remaining());
        let (head, tail) = self.rest.split_at(n);
        buf.put_slice(head);
        self.rest = tail;
        Poll::Ready(Ok(()))
    }
}
