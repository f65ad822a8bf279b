//! The two row encodings of MySQL result sets, TEXT (for COM_QUERY) and
//! BINARY (for COM_STMT_EXECUTE), to and from the merge's values.

use shardgate_merge::value::as_f64;
use shardgate_merge::{MergeError, TypeClass, Value};

use super::column::ColumnInfo;
use super::float_text::{format_f32, format_f64};
use super::ok_err::{put_lenenc_str, take_lenenc_int};
use super::temporal;

/// Which result-row encoding a node used (and the client expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    Text,
    Binary,
}

/// Decodes one row packet payload.
pub fn decode_row(
    payload: &[u8],
    columns: &[ColumnInfo],
    format: RowFormat,
) -> Result<Vec<Value>, MergeError> {
    let mut buf = payload;
    let mut row = Vec::with_capacity(columns.len());
    match format {
        RowFormat::Text => {
            for col in columns {
                if buf.first() == Some(&0xFB) {
                    buf = &buf[1..];
                    row.push(Value::Null);
                } else {
                    row.push(from_text(take_lenenc_bytes(&mut buf)?, col)?);
                }
            }
        }
        RowFormat::Binary => {
            let bitmap_len = (columns.len() + 7 + 2) / 8;
            let bitmap = payload
                .get(1..1 + bitmap_len)
                .filter(|_| payload.first() == Some(&0))
                .ok_or_else(|| malformed("binary row without header and NULL bitmap"))?;
            buf = &payload[1 + bitmap_len..];
            for (i, col) in columns.iter().enumerate() {
                let bit = i + 2;
                if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                    row.push(Value::Null);
                } else {
                    row.push(from_binary(&mut buf, col)?);
                }
            }
        }
    }
    if !buf.is_empty() {
        return Err(malformed("row has more values than columns"));
    }
    Ok(row)
}

/// Appends one row packet payload encoding `values` for `columns`.
pub fn encode_row(values: &[Value], columns: &[ColumnInfo], format: RowFormat, out: &mut Vec<u8>) {
    match format {
        RowFormat::Text => {
            for (v, col) in values.iter().zip(columns) {
                match v {
                    Value::Null => out.push(0xFB),
                    v => put_lenenc_str(out, &to_text(v, col)),
                }
            }
        }
        RowFormat::Binary => {
            out.push(0);
            let bitmap_at = out.len();
            out.resize(bitmap_at + (values.len() + 7 + 2) / 8, 0);
            for (i, (v, col)) in values.iter().zip(columns).enumerate() {
                if matches!(v, Value::Null) {
                    let bit = i + 2;
                    out[bitmap_at + bit / 8] |= 1 << (bit % 8);
                } else {
                    put_binary(v, col, out);
                }
            }
        }
    }
}

fn malformed(what: &str) -> MergeError {
    MergeError::Malformed(what.to_owned())
}

fn take_lenenc_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], MergeError> {
    let len = take_lenenc_int(buf).ok_or_else(|| malformed("truncated row"))?;
    let len = usize::try_from(len).map_err(|_| malformed("value too long"))?;
    let bytes = buf.get(..len).ok_or_else(|| malformed("truncated row"))?;
    *buf = &buf[len..];
    Ok(bytes)
}

fn from_text(bytes: &[u8], col: &ColumnInfo) -> Result<Value, MergeError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map_err(|_| malformed(&format!("non-ASCII number in column {}", col.name)))
    };
    let bad = || malformed(&format!("bad {:?} value in column {}", bytes, col.name));
    Ok(match col.class() {
        TypeClass::Int { .. } if col.is_unsigned() => {
            Value::UInt(text()?.parse().map_err(|_| bad())?)
        }
        TypeClass::Int { .. } => Value::Int(text()?.parse().map_err(|_| bad())?),
        TypeClass::Float => Value::Float(text()?.parse().map_err(|_| bad())?),
        TypeClass::Double => Value::Double(text()?.parse().map_err(|_| bad())?),
        TypeClass::Decimal => Value::Decimal(text()?.to_owned()),
        TypeClass::Date | TypeClass::DateTime | TypeClass::Time | TypeClass::Bytes => {
            Value::Bytes(bytes.to_vec())
        }
    })
}

fn from_binary(buf: &mut &[u8], col: &ColumnInfo) -> Result<Value, MergeError> {
    let class = col.class();
    Ok(match class {
        TypeClass::Int { width } => {
            let b = buf
                .get(..width)
                .ok_or_else(|| malformed("truncated integer"))?;
            let mut le = [0u8; 8];
            le[..width].copy_from_slice(b);
            *buf = &buf[width..];
            let raw = u64::from_le_bytes(le);
            if col.is_unsigned() {
                Value::UInt(raw)
            } else {
                // Sign-extend from `width` bytes.
                let shift = 64 - 8 * width as u32;
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        TypeClass::Float => {
            let b: [u8; 4] = take_fixed(buf)?;
            Value::Float(f32::from_le_bytes(b))
        }
        TypeClass::Double => {
            let b: [u8; 8] = take_fixed(buf)?;
            Value::Double(f64::from_le_bytes(b))
        }
        TypeClass::Decimal => {
            let bytes = take_lenenc_bytes(buf)?;
            Value::Decimal(
                std::str::from_utf8(bytes)
                    .map_err(|_| malformed("non-ASCII DECIMAL"))?
                    .to_owned(),
            )
        }
        TypeClass::Date | TypeClass::DateTime | TypeClass::Time => {
            Value::Bytes(temporal::decode_binary(buf, class, col.decimals)?)
        }
        TypeClass::Bytes => Value::Bytes(take_lenenc_bytes(buf)?.to_vec()),
    })
}

fn take_fixed<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], MergeError> {
    let b: [u8; N] = buf
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("truncated floating-point value"))?;
    *buf = &buf[N..];
    Ok(b)
}

/// The text-protocol form of a non-NULL value.
fn to_text(v: &Value, col: &ColumnInfo) -> Vec<u8> {
    let s = match v {
        Value::Null => String::new(),
        Value::Int(i) => zerofill(i.to_string(), col),
        Value::UInt(u) => zerofill(u.to_string(), col),
        Value::Double(d) => format_f64(*d, col.fixed_decimals()),
        Value::Float(f) => format_f32(*f, col.fixed_decimals()),
        Value::Decimal(s) => s.clone(),
        Value::Bytes(b) => return b.clone(),
    };
    s.into_bytes()
}

fn zerofill(digits: String, col: &ColumnInfo) -> String {
    let width = col.length as usize;
    if col.is_zerofill() && digits.len() < width {
        format!("{digits:0>width$}")
    } else {
        digits
    }
}

fn as_u64(v: &Value) -> u64 {
    match v {
        Value::Int(i) => *i as u64,
        Value::UInt(u) => *u,
        Value::Double(d) => *d as i64 as u64,
        Value::Float(f) => *f as i64 as u64,
        Value::Decimal(s) => s.parse::<i64>().map_or(0, |i| i as u64),
        Value::Null | Value::Bytes(_) => 0,
    }
}

/// Appends the binary-protocol form of a non-NULL value for `col`'s type.
fn put_binary(v: &Value, col: &ColumnInfo, out: &mut Vec<u8>) {
    match col.class() {
        TypeClass::Int { width } => out.extend_from_slice(&as_u64(v).to_le_bytes()[..width]),
        TypeClass::Float => {
            let f = match v {
                Value::Float(f) => *f,
                other => as_f64(other) as f32,
            };
            out.extend_from_slice(&f.to_le_bytes());
        }
        TypeClass::Double => out.extend_from_slice(&as_f64(v).to_le_bytes()),
        class @ (TypeClass::Date | TypeClass::DateTime | TypeClass::Time) => {
            temporal::encode_binary(&to_text(v, col), class, out);
        }
        TypeClass::Decimal | TypeClass::Bytes => put_lenenc_str(out, &to_text(v, col)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::column::{flags, types};
    use super::*;

    fn col(column_type: u8, flags: u16, decimals: u8) -> ColumnInfo {
        ColumnInfo::synthetic("c", column_type, flags, decimals, 33)
    }

    /// One column of every type with a sample value in text form.
    fn samples() -> Vec<(ColumnInfo, Option<&'static str>)> {
        let mut zf = col(types::LONG, flags::UNSIGNED | flags::ZEROFILL, 0);
        zf.length = 5;
        let mut year = col(types::YEAR, flags::UNSIGNED | flags::ZEROFILL, 0);
        year.length = 4;
        vec![
            (col(types::TINY, 0, 0), Some("-128")),
            (col(types::TINY, flags::UNSIGNED, 0), Some("255")),
            (col(types::SHORT, 0, 0), Some("-32768")),
            (col(types::SHORT, flags::UNSIGNED, 0), Some("65535")),
            (col(types::INT24, 0, 0), Some("-8388608")),
            (col(types::LONG, 0, 0), Some("-2147483648")),
            (col(types::LONG, flags::UNSIGNED, 0), Some("4294967295")),
            (zf, Some("00042")),
            (col(types::LONGLONG, 0, 0), Some("-9223372036854775808")),
            (
                col(types::LONGLONG, flags::UNSIGNED, 0),
                Some("18446744073709551615"),
            ),
            (year.clone(), Some("2024")),
            (year, Some("0000")),
            (col(types::FLOAT, 0, 31), Some("3.14")),
            (col(types::FLOAT, 0, 2), Some("-1.50")),
            (col(types::DOUBLE, 0, 31), Some("0.30000000000000004")),
            (col(types::DOUBLE, 0, 31), Some("1.5e300")),
            (col(types::DOUBLE, 0, 3), Some("2.125")),
            (
                col(types::NEWDECIMAL, 0, 4),
                Some("-12345678901234567890.1234"),
            ),
            (col(types::DATE, 0, 0), Some("2024-02-29")),
            (col(types::DATETIME, 0, 0), Some("2024-01-31 23:59:59")),
            (
                col(types::DATETIME, 0, 6),
                Some("2024-12-01 00:00:00.000100"),
            ),
            (col(types::TIMESTAMP, 0, 0), Some("2024-03-01 00:00:00")),
            (col(types::TIME, 0, 0), Some("-838:59:59")),
            (col(types::TIME, 0, 2), Some("12:00:00.50")),
            (col(types::VAR_STRING, 0, 0), Some("名字 🎉")),
            (col(types::BLOB, 0, 0), Some("\u{0}\u{1}binary")),
            (col(types::STRING, 0, 0), Some("")),
            (col(types::ENUM, 0, 0), Some("small")),
            (col(types::SET, 0, 0), Some("a,b")),
            (col(types::BIT, 0, 0), Some("\u{5}")),
            (col(types::JSON, 0, 0), Some("{\"a\": 1}")),
            (
                col(types::GEOMETRY, 0, 0),
                Some("\u{0}\u{0}\u{0}\u{0}\u{1}"),
            ),
            (col(types::VAR_STRING, 0, 0), None),
            (col(types::NULL, 0, 0), None),
            (col(types::NEWDECIMAL, 0, 2), None),
        ]
    }

    fn text_row(samples: &[(ColumnInfo, Option<&str>)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (_, v) in samples {
            match v {
                Some(s) => put_lenenc_str(&mut payload, s.as_bytes()),
                None => payload.push(0xFB),
            }
        }
        payload
    }

    #[test]
    fn text_rows_round_trip_every_type() {
        let samples = samples();
        let columns: Vec<ColumnInfo> = samples.iter().map(|(c, _)| c.clone()).collect();
        let payload = text_row(&samples);
        let row = decode_row(&payload, &columns, RowFormat::Text).unwrap();
        assert_eq!(row[0], Value::Int(-128));
        assert_eq!(row[9], Value::UInt(u64::MAX));
        assert_eq!(row.last(), Some(&Value::Null));
        let mut out = Vec::new();
        encode_row(&row, &columns, RowFormat::Text, &mut out);
        assert_eq!(out, payload);
    }

    #[test]
    fn binary_rows_round_trip_every_type() {
        let samples = samples();
        let columns: Vec<ColumnInfo> = samples.iter().map(|(c, _)| c.clone()).collect();
        let row = decode_row(&text_row(&samples), &columns, RowFormat::Text).unwrap();
        let mut binary = Vec::new();
        encode_row(&row, &columns, RowFormat::Binary, &mut binary);
        let decoded = decode_row(&binary, &columns, RowFormat::Binary).unwrap();
        assert_eq!(decoded, row);
        let mut again = Vec::new();
        encode_row(&decoded, &columns, RowFormat::Binary, &mut again);
        assert_eq!(again, binary);
    }

    #[test]
    fn binary_layout_matches_protocol() {
        let columns = [
            col(types::LONGLONG, 0, 0),
            col(types::VAR_STRING, 0, 0),
            col(types::DATE, 0, 0),
            col(types::TINY, 0, 0),
        ];
        let row = [
            Value::Int(-2),
            Value::Null,
            Value::Bytes(b"2024-01-02".to_vec()),
            Value::Int(-1),
        ];
        let mut out = Vec::new();
        encode_row(&row, &columns, RowFormat::Binary, &mut out);
        let expected = [
            vec![0x00, 0b0000_1000],
            (-2i64).to_le_bytes().to_vec(),
            vec![4, 0xE8, 0x07, 1, 2],
            vec![0xFF],
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn malformed_rows_are_rejected() {
        let columns = [col(types::LONG, 0, 0)];
        assert!(decode_row(&[0x02, b'1'], &columns, RowFormat::Text).is_err());
        assert!(decode_row(&[0x01, b'x'], &columns, RowFormat::Text).is_err());
        assert!(decode_row(&[0x01, b'1', 0x00], &columns, RowFormat::Text).is_err());
        assert!(decode_row(&[0x00, 0x00, 1, 0], &columns, RowFormat::Binary).is_err());
        assert!(decode_row(&[0x01, 0x00], &columns, RowFormat::Binary).is_err());
    }
}
