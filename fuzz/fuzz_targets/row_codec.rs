//! Result rows from data nodes decoded into the merge's values, text and
//! binary protocol, and column definitions.
//!
//! The input's first byte gives the column count (0..=31) and the row
//! format; four bytes per column give its type, flags (UNSIGNED,
//! ZEROFILL (always with UNSIGNED, as servers send it), binary character
//! set), decimals and display length; the rest
//! is the row packet's payload. Checked beyond "no panic":
//! - a decoded row has one value per column;
//! - the proxy's own encoding of a decoded row (what a merged result
//!   sends) decodes again, to values that encode to the same bytes:
//!   decode -> encode is stable after one round (the first round may
//!   canonicalize: `+5` -> `5`, a DATETIME's zero microseconds dropped);
//! - `ColumnInfo::parse` of the payload never panics, and a definition it
//!   parses re-encodes to one that parses to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_mysql::column::{flags, types, ColumnInfo, BINARY_CHARSET};
use shardgate_mysql::row::{decode_row, encode_row, RowFormat};

const TYPES: [u8; 31] = [
    types::DECIMAL,
    types::TINY,
    types::SHORT,
    types::LONG,
    types::FLOAT,
    types::DOUBLE,
    types::NULL,
    types::TIMESTAMP,
    types::LONGLONG,
    types::INT24,
    types::DATE,
    types::TIME,
    types::DATETIME,
    types::YEAR,
    types::NEWDATE,
    types::VARCHAR,
    types::BIT,
    types::TIMESTAMP2,
    types::DATETIME2,
    types::TIME2,
    types::JSON,
    types::NEWDECIMAL,
    types::ENUM,
    types::SET,
    types::TINY_BLOB,
    types::MEDIUM_BLOB,
    types::LONG_BLOB,
    types::BLOB,
    types::VAR_STRING,
    types::STRING,
    types::GEOMETRY,
];

fn column(spec: &[u8]) -> ColumnInfo {
    let [ty, bits, decimals, length] = [spec[0], spec[1], spec[2], spec[3]];
    let mut col_flags = 0;
    if bits & 1 != 0 {
        col_flags |= flags::UNSIGNED;
    }
    if bits & 2 != 0 {
        // MariaDB makes every ZEROFILL column UNSIGNED: no server sends
        // a signed one (whose negative values zero-padding would garble).
        col_flags |= flags::ZEROFILL | flags::UNSIGNED;
    }
    let charset = if bits & 4 != 0 { BINARY_CHARSET } else { 33 };
    let mut col = ColumnInfo::synthetic(
        "c",
        TYPES[usize::from(ty) % TYPES.len()],
        col_flags,
        decimals,
        charset,
    );
    col.length = u32::from(length);
    col
}

fn check_definition(payload: &[u8]) {
    let Ok(parsed) = ColumnInfo::parse(payload) else {
        return;
    };
    let again = ColumnInfo::parse(&parsed.encode()).expect("an encoded definition parses");
    assert_eq!(
        ColumnInfo {
            raw: Vec::new(),
            ..again
        },
        ColumnInfo {
            raw: Vec::new(),
            ..parsed
        },
        "definition changed through encode/parse"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(shape & 0x1F);
    let format = if shape & 0x80 != 0 {
        RowFormat::Binary
    } else {
        RowFormat::Text
    };
    let Some(specs) = rest.get(..4 * count) else {
        return;
    };
    let payload = &rest[4 * count..];
    check_definition(payload);
    let columns: Vec<ColumnInfo> = specs.chunks_exact(4).map(column).collect();
    let Ok(row) = decode_row(payload, &columns, format) else {
        return;
    };
    assert_eq!(row.len(), columns.len(), "one value per column");
    let mut first = Vec::new();
    encode_row(&row, &columns, format, &mut first);
    let again = decode_row(&first, &columns, format).unwrap_or_else(|e| {
        panic!("the proxy's encoding of {row:?} does not decode: {e}\n  bytes: {first:?}")
    });
    let mut second = Vec::new();
    encode_row(&again, &columns, format, &mut second);
    assert_eq!(
        first, second,
        "decode/encode not stable: {row:?} then {again:?}"
    );
});
