//! An admin request's head, read and checked before hyper parses it.
//!
//! hyper refuses by itself, with an empty body, a head that overflows its
//! read buffer (431), a target the `http` crate cannot hold (414, beyond
//! 65,534 bytes), more than 100 header fields (431) and a malformed head
//! (400); the API promises a JSON error for every refusal
//! (docs/admin-api.yaml). So the listener reads the head first, within
//! limits tighter than hyper's, and answers those refusals itself: hyper
//! only ever sees heads it accepts.

use std::time::Duration;

use axum::http::{StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::api::error_body;

/// The longest request line (method, target, version), 414 beyond: far
/// below the 65,534 bytes past which hyper would refuse the target itself,
/// and four times the 8 KiB that nginx and Apache take, so that
/// `/api/route?sql=` takes a long statement, URL-encoded.
pub(super) const MAX_REQUEST_LINE: usize = 32 * 1024;

/// The longest head, request line and header fields, 431 beyond: a bearer
/// token and a browser's headers take a few KiB.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most header fields, 431 beyond (hyper's own limit, which would
/// otherwise answer first).
const MAX_FIELDS: usize = 100;

/// How long a client may take to send its head: one that sends part of it
/// and stalls (slowloris) is dropped then, freeing its connection slot.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How much one read takes; the head is held in full, so at most
/// `MAX_HEAD + READ_SIZE` bytes are ever buffered.
const READ_SIZE: usize = 8 * 1024;

/// How long a refused client may go on sending (it may be half-way through
/// a 1 MiB request line): its bytes are read and dropped meanwhile, since
/// closing a socket with input unread resets the connection, and the client
/// would lose the answer.
const LINGER: Duration = Duration::from_secs(2);

/// What the client sent.
pub(super) enum Head {
    /// A head within the limits, with whatever followed it in the same reads.
    Read(Vec<u8>),
    /// A head the API refuses: answer with [`Refusal::answer`].
    Refused(Refusal),
    /// The client left, stalled beyond [`HEAD_TIMEOUT`] or the read failed:
    /// there is nobody to answer.
    Gone,
}

/// An answer to a head refused before routing.
#[derive(Debug, PartialEq)]
pub(super) struct Refusal {
    status: StatusCode,
    message: String,
}

/// Reads a request head from `stream`, bounded in size and time.
pub(super) async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Head {
    let mut bytes = Vec::new();
    let mut chunk = vec![0; READ_SIZE];
    let mut scan = Scan::default();
    let reading = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Head::Gone,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
            match scan.check(&bytes) {
                Check::Complete => return Head::Read(std::mem::take(&mut bytes)),
                Check::Partial => {}
                Check::Refused(refusal) => return Head::Refused(refusal),
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, reading)
        .await
        .unwrap_or(Head::Gone)
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// Writes the JSON error, then closes the connection.
    pub(super) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(self, mut stream: S) {
        let body = error_body(self.message).to_string();
        let answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.status.as_str(),
            self.status.canonical_reason().unwrap_or_default(),
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0; 4096];
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// Where the head read so far stands.
#[derive(Debug, PartialEq)]
enum Check {
    Complete,
    Partial,
    Refused(Refusal),
}

/// How far the head read so far was looked at. Each read's bytes are
/// looked at once, and the head is parsed once it has ended (as hyper's
/// parser does): a client sending a byte at a time must not make each read
/// cost the whole head again.
#[derive(Default)]
struct Scan {
    /// Where the request line starts (after the empty lines httparse skips).
    start: Option<usize>,
    /// Where the request line ends (its `\n`).
    line_end: Option<usize>,
    /// How many bytes were looked at.
    seen: usize,
}

impl Scan {
    /// Looks at `bytes` (the head read so far, the bytes seen before
    /// unchanged) past what was seen.
    fn check(&mut self, bytes: &[u8]) -> Check {
        let new = self.seen;
        self.seen = bytes.len();
        let too_large = || {
            Check::Refused(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request head is larger than {MAX_HEAD} bytes"),
            ))
        };
        let partial = || {
            if bytes.len() < MAX_HEAD {
                Check::Partial
            } else {
                too_large()
            }
        };
        let start = match self.start {
            Some(start) => start,
            None => match bytes[new..].iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(at) => *self.start.insert(new + at),
                None => return partial(),
            },
        };
        let from = new.max(start);
        if self.line_end.is_none() {
            self.line_end = bytes[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|at| from + at);
        }
        if self.line_end.unwrap_or(bytes.len()) - start > MAX_REQUEST_LINE {
            return Check::Refused(Refusal::new(
                StatusCode::URI_TOO_LONG,
                format!("the request line is longer than {MAX_REQUEST_LINE} bytes"),
            ));
        }
        // The head ends with an empty line; one split across reads is found
        // from the two bytes before the new ones.
        let tail = &bytes[new.saturating_sub(2).max(start)..];
        let ended =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        if !ended {
            return partial();
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut fields);
        match request.parse(bytes) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => too_large(),
            // hyper reads the target into an `http::Uri`, which refuses some
            // targets the head's syntax allows.
            Ok(httparse::Status::Complete(_))
                if request.path.is_some_and(|p| Uri::try_from(p).is_err()) =>
            {
                Check::Refused(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "the request target is not a valid URI",
                ))
            }
            Ok(httparse::Status::Complete(_)) => Check::Complete,
            Ok(httparse::Status::Partial) => partial(),
            Err(httparse::Error::TooManyHeaders) => Check::Refused(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request has more than {MAX_FIELDS} header fields"),
            )),
            Err(e) => Check::Refused(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("malformed request head: {e}"),
            )),
        }
    }
}

/// The check of a head read at once.
#[cfg(test)]
fn check(bytes: &[u8]) -> Check {
    Scan::default().check(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(check: Check) -> Option<StatusCode> {
        match check {
            Check::Refused(r) => Some(r.status),
            Check::Complete | Check::Partial => None,
        }
    }

    #[test]
    fn a_head_within_the_limits_is_complete_or_partial() {
        assert_eq!(
            check(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            Check::Complete
        );
        assert_eq!(check(b"\r\nGET / HTTP/1.1\r\n\r\nbody"), Check::Complete);
        assert_eq!(
            check(b"GET /health HTTP/1.1\r\nHost: x\r\n"),
            Check::Partial
        );
        let long_target = format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE - 20)
        );
        assert_eq!(check(long_target.as_bytes()), Check::Complete);
    }

    #[test]
    fn a_long_request_line_is_414_before_its_end() {
        let start = format!("GET /api/route?sql={}", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(
            status(check(start.as_bytes())),
            Some(StatusCode::URI_TOO_LONG)
        );
    }

    #[test]
    fn large_or_many_header_fields_are_431() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_HEAD {
            head.extend_from_slice(format!("x-filler: {}\r\n", "f".repeat(1000)).as_bytes());
        }
        assert_eq!(
            status(check(&head)),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            status(check(&many)),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn a_head_read_a_byte_at_a_time_is_checked_as_a_whole() {
        let feed = |head: &[u8]| {
            let mut scan = Scan::default();
            (1..=head.len())
                .map(|end| scan.check(&head[..end]))
                .find(|c| *c != Check::Partial)
                .unwrap_or(Check::Partial)
        };
        assert_eq!(
            feed(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Check::Complete
        );
        assert_eq!(feed(b"GET / HTTP/1.1\nHost: x\n\n"), Check::Complete);
        assert_eq!(feed(b"GET / HTTP/1.1\r\nHost: x\r\n"), Check::Partial);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(
            status(feed(long.as_bytes())),
            Some(StatusCode::URI_TOO_LONG)
        );
        let empty_lines = b"\r\n".repeat(MAX_HEAD);
        assert_eq!(
            status(feed(&empty_lines)),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn a_malformed_head_is_400() {
        assert_eq!(
            status(check(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(check(b"GET /a\x7fb HTTP/1.1\r\n\r\n")),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
