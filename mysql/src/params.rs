//! The parameters of a COM_STMT_EXECUTE, decoded from the binary protocol
//! into `ParamValue`s.

use std::borrow::Cow;

use shardgate_sql::shard::params::ParamValue;
use shardgate_sql::text::ClientCharset;

use super::ok_err::take_lenenc_int;

/// Why parameters could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed parameters in COM_STMT_EXECUTE: {0}")]
pub struct ParamError(pub &'static str);

/// Decodes the parameters of a COM_STMT_EXECUTE that carries its types
/// (as the proxy's `retarget_execute` output always does). `long_data`
/// holds values sent with COM_STMT_SEND_LONG_DATA, by parameter index.
///
/// Strings are in the client's `charset`; blobs are binary, as the server
/// takes them.
pub fn decode_params(
    packet: &[u8],
    num_params: usize,
    long_data: &[(u16, Cow<'_, [u8]>)],
    charset: ClientCharset,
) -> Result<Vec<ParamValue>, ParamError> {
    if num_params == 0 {
        return Ok(Vec::new());
    }
    let bitmap_at = 10;
    let bitmap_len = num_params.div_ceil(8);
    let bitmap = packet
        .get(bitmap_at..bitmap_at + bitmap_len)
        .ok_or(ParamError("short null bitmap"))?;
    let types_at = bitmap_at + bitmap_len + 1;
    if packet.get(types_at - 1) != Some(&1) {
        return Err(ParamError("parameter types missing"));
    }
    let types = packet
        .get(types_at..types_at + 2 * num_params)
        .ok_or(ParamError("short type list"))?;
    let mut rest = &packet[types_at + 2 * num_params..];
    let mut out = Vec::with_capacity(num_params);
    for i in 0..num_params {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            out.push(ParamValue::Null);
            continue;
        }
        let (ty, unsigned) = (types[2 * i], types[2 * i + 1] & 0x80 != 0);
        let charset = if BLOB_TYPES.contains(&ty) {
            ClientCharset::named("binary")
        } else {
            charset
        };
        if let Some((_, data)) = long_data.iter().find(|(p, _)| usize::from(*p) == i) {
            out.push(ParamValue::Text {
                bytes: data.to_vec(),
                charset,
            });
            continue;
        }
        out.push(decode_one(ty, unsigned, &mut rest, charset)?);
    }
    Ok(out)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], ParamError> {
    if rest.len() < n {
        return Err(ParamError("value shorter than its type"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// TINY_BLOB, MEDIUM_BLOB, LONG_BLOB, BLOB: binary parameters.
const BLOB_TYPES: [u8; 4] = [0xF9, 0xFA, 0xFB, 0xFC];

fn decode_one(
    ty: u8,
    unsigned: bool,
    rest: &mut &[u8],
    charset: ClientCharset,
) -> Result<ParamValue, ParamError> {
    let int = |bytes: &[u8], signed_value: i64| {
        if unsigned {
            let mut buf = [0u8; 8];
            buf[..bytes.len()].copy_from_slice(bytes);
            ParamValue::UInt(u64::from_le_bytes(buf))
        } else {
            ParamValue::Int(signed_value)
        }
    };
    Ok(match ty {
        0x01 => {
            let b = take(rest, 1)?;
            int(b, i64::from(b[0] as i8))
        }
        0x02 | 0x0D => {
            let b = take(rest, 2)?;
            int(b, i64::from(i16::from_le_bytes([b[0], b[1]])))
        }
        0x03 | 0x09 => {
            let b = take(rest, 4)?;
            int(b, i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        0x08 => {
            let b = take(rest, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            int(b, i64::from_le_bytes(a))
        }
        0x04 => {
            let b = take(rest, 4)?;
            ParamValue::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        0x05 => {
            let b = take(rest, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            ParamValue::Double(f64::from_le_bytes(a))
        }
        0x06 => ParamValue::Null,
        0x0A | 0x07 | 0x0C => ParamValue::Temporal(decode_datetime(ty, rest)?),
        0x0B => ParamValue::Temporal(decode_time(rest)?),
        0x00 | 0xF6 => {
            let b = take_lenenc(rest)?;
            ParamValue::Decimal(String::from_utf8_lossy(b).into_owned())
        }
        _ => ParamValue::Text {
            bytes: take_lenenc(rest)?.to_vec(),
            charset,
        },
    })
}

fn take_lenenc<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], ParamError> {
    let len = take_lenenc_int(rest).ok_or(ParamError("bad length"))?;
    take(
        rest,
        usize::try_from(len).map_err(|_| ParamError("bad length"))?,
    )
}

fn decode_datetime(ty: u8, rest: &mut &[u8]) -> Result<String, ParamError> {
    let len = usize::from(take(rest, 1)?[0]);
    let b = take(rest, len)?;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) =
        (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
    if len >= 4 {
        y = u16::from_le_bytes([b[0], b[1]]);
        mo = b[2];
        d = b[3];
    }
    if len >= 7 {
        h = b[4];
        mi = b[5];
        s = b[6];
    }
    if len >= 11 {
        us = u32::from_le_bytes([b[7], b[8], b[9], b[10]]);
    }
    let date = format!("{y:04}-{mo:02}-{d:02}");
    Ok(if ty == 0x0A {
        date
    } else if us > 0 {
        format!("{date} {h:02}:{mi:02}:{s:02}.{us:06}")
    } else {
        format!("{date} {h:02}:{mi:02}:{s:02}")
    })
}

fn decode_time(rest: &mut &[u8]) -> Result<String, ParamError> {
    let len = usize::from(take(rest, 1)?[0]);
    let b = take(rest, len)?;
    if len < 8 {
        return Ok("00:00:00".into());
    }
    let negative = b[0] == 1;
    // A client may send any day count: in 64 bits no count overflows.
    let days = u64::from(u32::from_le_bytes([b[1], b[2], b[3], b[4]]));
    let hours = days * 24 + u64::from(b[5]);
    let mut text = format!(
        "{}{hours:02}:{:02}:{:02}",
        if negative { "-" } else { "" },
        b[6],
        b[7]
    );
    if len >= 12 {
        let us = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if us > 0 {
            text.push_str(&format!(".{us:06}"));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_rules::ShardValue;

    fn packet(num: usize, null_bits: u8, types: &[u8], values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        p.push(null_bits);
        p.resize(p.len() + num.div_ceil(8) - 1, 0);
        p.push(1);
        p.extend_from_slice(types);
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn a_time_of_any_day_count_decodes_without_overflow() {
        // TIME, negative, u32::MAX days, 23:59:59.000001.
        let mut values = vec![12, 1, 0xFF, 0xFF, 0xFF, 0xFF, 23, 59, 59];
        values.extend_from_slice(&1u32.to_le_bytes());
        let p = packet(1, 0, &[0x0B, 0], &values);
        let got = decode_params(&p, 1, &[], ClientCharset::named("latin1")).unwrap();
        assert_eq!(
            got,
            vec![ParamValue::Temporal("-103079215103:59:59.000001".into())]
        );
    }

    #[test]
    fn decodes_common_types() {
        let mut values = Vec::new();
        values.extend_from_slice(&(-5i64).to_le_bytes());
        values.extend_from_slice(&[3, b'a', b'\'', b'b']);
        values.extend_from_slice(&[7, 0xE8, 0x07, 2, 29, 23, 59, 58]);
        values.extend_from_slice(&[4, b'1', b'.', b'5', b'0']);
        let p = packet(
            5,
            0b0000_0010,
            &[8, 0, 6, 0, 253, 0, 12, 0, 246, 0],
            &values,
        );
        let got = decode_params(&p, 5, &[], ClientCharset::named("latin1")).unwrap();
        assert_eq!(
            got,
            vec![
                ParamValue::Int(-5),
                ParamValue::Null,
                ParamValue::Text {
                    bytes: b"a'b".to_vec(),
                    charset: ClientCharset::named("latin1"),
                },
                ParamValue::Temporal("2024-02-29 23:59:58".into()),
                ParamValue::Decimal("1.50".into()),
            ]
        );
        assert_eq!(got[0].shard_value(), ShardValue::Int(-5));
        assert_eq!(got[2].sql_literal(), "CONVERT(X'612762' USING latin1)");
        assert_eq!(got[3].sql_literal(), "'2024-02-29 23:59:58'");
    }

    #[test]
    fn unsigned_and_long_data() {
        let p = packet(2, 0, &[8, 0x80, 252, 0], &u64::MAX.to_le_bytes());
        let got = decode_params(
            &p,
            2,
            &[(1, Cow::Borrowed(&b"blob"[..]))],
            ClientCharset::UTF8,
        )
        .unwrap();
        assert_eq!(got[0], ParamValue::UInt(u64::MAX));
        assert_eq!(got[1].sql_literal(), "X'626C6F62'");
    }

    #[test]
    fn truncated_packet_is_an_error() {
        let p = packet(1, 0, &[8, 0], &[1, 2]);
        assert!(decode_params(&p, 1, &[], ClientCharset::UTF8).is_err());
    }
}
