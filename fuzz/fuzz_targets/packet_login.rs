//! Packet framing and the login packet, as a client's first bytes reach
//! the proxy.
//!
//! The input is a byte stream read by `PacketReader` in chunks of a size
//! the input picks, with the login's packet limit (64 KiB) or a small one,
//! calling `read_packet` or `buffered_packet` as the input says. Checked
//! beyond "no panic":
//! - every packet read is the one an independent model of the framing
//!   finds at that place in the stream: payloads joined across 16 MiB - 1
//!   continuations, the sequence id of the last part, a payload over the
//!   limit refused as `TooLarge` (and drained: the next read starts at the
//!   next packet), a stream cut short reported as `Closed`;
//! - `buffered_packet` hands out only a whole, unsplit next packet;
//! - `parse_hello` on every payload returns without panicking, and a hello
//!   it accepts keeps only capabilities the server offers and no empty
//!   database name; checking its auth response against a password never
//!   panics whatever its length.
#![no_main]

use fuzz_support::{ready, Trickle};
use libfuzzer_sys::fuzz_target;
use shardgate_mysql::auth::native;
use shardgate_mysql::handshake::{parse_hello, server_capabilities};
use shardgate_mysql::packet::{PacketReader, ReadError, HEADER, MAX_PAYLOAD};

/// The login's packet limit (`session::auth`'s HANDSHAKE_LIMIT).
const LOGIN_LIMIT: usize = 64 * 1024;

/// What the model expects of the next logical packet.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Packet { seq: u8, payload: Vec<u8> },
    TooLarge { seq: u8 },
    Closed,
}

/// The logical packet at `*at` in `stream` under `limit`; moves `*at`
/// past it.
fn model_next(stream: &[u8], at: &mut usize, limit: usize) -> Expect {
    let mut payload = Vec::new();
    let mut too_large = false;
    loop {
        let Some(header) = stream.get(*at..*at + HEADER) else {
            return Expect::Closed;
        };
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let seq = header[3];
        *at += HEADER;
        let Some(body) = stream.get(*at..*at + len) else {
            return Expect::Closed;
        };
        *at += len;
        too_large |= payload.len() + len > limit;
        if too_large {
            payload.clear();
        } else {
            payload.extend_from_slice(body);
        }
        if len < MAX_PAYLOAD {
            return if too_large {
                Expect::TooLarge { seq }
            } else {
                Expect::Packet { seq, payload }
            };
        }
    }
}

fn check_hello(payload: &[u8], password: &str) {
    let Ok(hello) = parse_hello(payload) else {
        return;
    };
    assert!(
        server_capabilities().contains(hello.capabilities),
        "a hello kept capabilities the server does not offer: {:?}",
        hello.capabilities
    );
    assert_ne!(
        hello.database.as_deref(),
        Some(""),
        "an empty database name was kept"
    );
    let salt = [7u8; 20];
    let _ = native::verify(
        &salt,
        &native::stored_hash(password.as_bytes()),
        &hello.auth_response,
    );
}

fuzz_target!(|data: &[u8]| {
    let [chunk, limit_pick, ops, stream @ ..] = data else {
        return;
    };
    let limit = if limit_pick & 0x80 == 0 {
        LOGIN_LIMIT
    } else {
        usize::from(limit_pick & 0x7F) * 8
    };
    let password = if ops & 1 == 0 { "" } else { "secret" };
    let mut reader = PacketReader::new(Trickle::new(stream, usize::from(*chunk) + 1));
    let mut at = 0;
    for step in 0..64u32 {
        // Now and then take a packet from the buffer, as a result's reader does.
        if ops.rotate_left(step % 8) & 0x80 != 0 {
            if let Some((seq, payload)) = reader.buffered_packet() {
                let header = &stream[at..at + HEADER];
                let len = usize::from(header[0])
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]) << 16;
                assert!(
                    len < MAX_PAYLOAD,
                    "buffered_packet handed out part of a split payload"
                );
                assert_eq!(seq, header[3], "buffered_packet's sequence id");
                assert_eq!(
                    &payload[..],
                    &stream[at + HEADER..at + HEADER + len],
                    "buffered_packet's payload"
                );
                at += HEADER + len;
                check_hello(&payload, password);
                continue;
            }
        }
        let expected = model_next(stream, &mut at, limit);
        let got = match ready(reader.read_packet(limit)) {
            Ok((seq, payload)) => Expect::Packet {
                seq,
                payload: payload.to_vec(),
            },
            Err(ReadError::TooLarge { limit: l, seq }) => {
                assert_eq!(l, limit, "TooLarge names another limit");
                Expect::TooLarge { seq }
            }
            Err(ReadError::Closed) => Expect::Closed,
            Err(other) => panic!("unexpected read error on an in-memory stream: {other}"),
        };
        assert_eq!(
            got, expected,
            "read_packet disagrees with the framing model"
        );
        match got {
            Expect::Packet { payload, .. } => check_hello(&payload, password),
            Expect::TooLarge { .. } => {}
            Expect::Closed => return,
        }
    }
});
