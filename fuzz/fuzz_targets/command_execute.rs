//! Command decoding, and a COM_STMT_EXECUTE's parameters (NULL bitmap,
//! types, values) as the session takes them.
//!
//! The input picks the prepared statement's parameter count N (0..=65535),
//! whether types are known from an earlier execution, which parameters
//! were sent as long data, and the client's character set; the rest is the
//! command packet. Checked beyond "no panic":
//! - `Command::decode` keeps the whole packet and reads the command's
//!   argument from the bytes after the command byte (statement ids from
//!   bytes 1..5 when there are five);
//! - `retarget_execute` changes only the statement id and the
//!   new-params-bound flag, inserting the known types when the client sent
//!   none: the header, NULL bitmap and values are the client's bytes, and
//!   re-targeting its own output gives it back unchanged;
//! - `decode_params` on that output decodes exactly N values, NULL where
//!   the bitmap says so, long data where it was sent; each value's SQL
//!   literal and sharding value are computed without panicking.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use shardgate_mysql::command::{Command, CommandKind, COM_STMT_EXECUTE, COM_STMT_SEND_LONG_DATA};
use shardgate_mysql::params::decode_params;
use shardgate_mysql::stmt::{long_data_param, retarget_execute, statement_id};
use shardgate_sql::shard::params::ParamValue;
use shardgate_sql::text::ClientCharset;

/// command(1) statement id(4) flags(1) iteration count(4)
const FIXED: usize = 10;

const CHARSETS: [&str; 4] = ["utf8mb4", "latin1", "gbk", "binary"];

fn check_decode(packet: &[u8]) {
    let command = Command::decode(packet);
    assert_eq!(
        command.packet, packet,
        "the decoded command lost its packet"
    );
    let rest = packet.get(1..).unwrap_or_default();
    let id = packet
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    match command.kind {
        CommandKind::Query(text) | CommandKind::Prepare(text) | CommandKind::InitDb(text) => {
            assert_eq!(text, rest, "a command's text is the packet after its byte")
        }
        CommandKind::Execute(got)
        | CommandKind::CloseStatement(got)
        | CommandKind::ResetStatement(got) => {
            assert_eq!(got, id, "statement id");
            assert_eq!(statement_id(packet), id, "statement_id");
        }
        _ => {}
    }
    if packet.first() == Some(&COM_STMT_SEND_LONG_DATA) {
        let _ = long_data_param(packet);
    }
}

fn check_execute(
    packet: &[u8],
    num_params: u16,
    known: Option<&[u8]>,
    long: &[(u16, Cow<'_, [u8]>)],
    charset: ClientCharset,
) {
    let backend_id = 0x5EED_0001;
    let Ok((out, sent_types)) = retarget_execute(packet, backend_id, num_params, known) else {
        return;
    };
    let n = usize::from(num_params);
    assert_eq!(statement_id(&out), Some(backend_id), "re-targeted id");
    assert_eq!(out[0], packet[0]);
    assert_eq!(
        out[5..FIXED],
        packet[5..FIXED],
        "flags and iteration count are the client's"
    );
    if n == 0 {
        assert_eq!(
            out[FIXED..],
            packet[FIXED..],
            "no parameters: the rest is the client's"
        );
    } else {
        let bitmap_len = n.div_ceil(8);
        let bound_at = FIXED + bitmap_len;
        assert_eq!(out[FIXED..bound_at], packet[FIXED..bound_at], "NULL bitmap");
        assert_eq!(out[bound_at], 1, "types always bound in the output");
        let types = &out[bound_at + 1..bound_at + 1 + 2 * n];
        let values_at_client = match &sent_types {
            Some(sent) => {
                assert_eq!(packet[bound_at], 1);
                assert_eq!(types, &sent[..], "the client's types are kept");
                bound_at + 1 + 2 * n
            }
            None => {
                assert_eq!(Some(types), known, "the known types are inserted");
                bound_at + 1
            }
        };
        assert_eq!(
            out[bound_at + 1 + 2 * n..],
            packet[values_at_client..],
            "values are the client's"
        );
    }
    let (again, _) = retarget_execute(&out, backend_id, num_params, None)
        .expect("the proxy's own re-targeted packet re-targets");
    assert_eq!(again, out, "re-targeting is idempotent");

    let Ok(params) = decode_params(&out, n, long, charset) else {
        return;
    };
    assert_eq!(params.len(), n, "one value per parameter");
    let bitmap = &out[FIXED..FIXED + n.div_ceil(8)];
    for (i, value) in params.iter().enumerate() {
        let null_bit = bitmap[i / 8] & (1 << (i % 8)) != 0;
        if null_bit {
            assert_eq!(
                *value,
                ParamValue::Null,
                "parameter {i} is NULL in the bitmap"
            );
        } else if let Some((_, data)) = long.iter().find(|(p, _)| usize::from(*p) == i) {
            match value {
                ParamValue::Text { bytes, .. } => {
                    assert_eq!(bytes[..], data[..], "long data of {i}")
                }
                other => panic!("parameter {i} sent as long data decoded as {other:?}"),
            }
        }
        let _ = value.sql_literal();
        let _ = value.shard_value();
    }
}

fuzz_target!(|data: &[u8]| {
    let [n_lo, n_hi, shape, packet @ ..] = data else {
        return;
    };
    check_decode(packet);
    // Mostly small statements; now and then one with up to 65535 parameters.
    let num_params = if shape & 0x80 != 0 {
        u16::from_le_bytes([*n_lo, *n_hi])
    } else {
        u16::from(n_lo % 40)
    };
    let charset = ClientCharset::named(CHARSETS[usize::from(shape & 3)]);
    // Types known from an earlier execution: the input's first 2N bytes
    // after the execute's header, as a client would have sent them.
    let n = usize::from(num_params);
    let known: Option<Vec<u8>> = (shape & 0x04 != 0).then(|| {
        let mut types: Vec<u8> = packet.iter().rev().take(2 * n).copied().collect();
        types.resize(2 * n, 0xFD);
        types
    });
    // Long data for the parameters whose index matches the shape's bits.
    let long: Vec<(u16, Cow<'_, [u8]>)> = (0..num_params.min(8))
        .filter(|i| shape & 0x38 != 0 && (shape >> 3) & 7 == (*i as u8 & 7))
        .map(|i| (i, Cow::Borrowed(&b"long \xff data"[..])))
        .collect();
    let mut execute = packet.to_vec();
    if let Some(first) = execute.first_mut() {
        // Most inputs as COM_STMT_EXECUTE; the rest as they came.
        if shape & 0x40 != 0 {
            *first = COM_STMT_EXECUTE;
        }
    }
    check_execute(&execute, num_params, known.as_deref(), &long, charset);
});
