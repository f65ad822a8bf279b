//! DATE/DATETIME/TIMESTAMP/TIME values in the binary protocol: to and
//! from their canonical text (`shardgate_merge::temporal`).

use shardgate_merge::column::TypeClass;
use shardgate_merge::temporal::{format, parse, Parts};
use shardgate_merge::MergeError;

/// Decodes one binary-protocol temporal value from the front of `buf` into
/// canonical text (`decimals` fractional digits, as the column declares).
pub(super) fn decode_binary(
    buf: &mut &[u8],
    class: TypeClass,
    decimals: u8,
) -> Result<Vec<u8>, MergeError> {
    let (&len, rest) = buf
        .split_first()
        .ok_or_else(|| MergeError::Malformed("truncated temporal value".into()))?;
    let len = usize::from(len);
    let b = rest
        .get(..len)
        .ok_or_else(|| MergeError::Malformed("truncated temporal value".into()))?;
    *buf = &rest[len..];
    let u32le = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut p = Parts::default();
    if class == TypeClass::Time {
        if !matches!(len, 0 | 8 | 12) {
            return Err(MergeError::Malformed(format!("TIME value of {len} bytes")));
        }
        if len >= 8 {
            p.negative = b[0] == 1;
            p.hour = u32le(1)
                .checked_mul(24)
                .and_then(|hours| hours.checked_add(u32::from(b[5])))
                .ok_or_else(|| MergeError::Malformed("TIME value out of range".into()))?;
            p.minute = u32::from(b[6]);
            p.second = u32::from(b[7]);
        }
        if len == 12 {
            p.micros = u32le(8);
        }
        return Ok(format(&p, class, decimals));
    }
    if !matches!(len, 0 | 4 | 7 | 11) {
        return Err(MergeError::Malformed(format!(
            "DATETIME value of {len} bytes"
        )));
    }
    if len >= 4 {
        p.year = u32::from(u16::from_le_bytes([b[0], b[1]]));
        p.month = u32::from(b[2]);
        p.day = u32::from(b[3]);
    }
    if len >= 7 {
        p.hour = u32::from(b[4]);
        p.minute = u32::from(b[5]);
        p.second = u32::from(b[6]);
    }
    if len == 11 {
        p.micros = u32le(7);
    }
    Ok(format(&p, class, decimals))
}

/// Appends the binary-protocol encoding of canonical temporal text, with
/// the shortest length MariaDB itself uses. Unparsable text encodes as the
/// zero value.
pub(super) fn encode_binary(text: &[u8], class: TypeClass, out: &mut Vec<u8>) {
    let p = parse(text, class);
    if class == TypeClass::Time {
        let len = if p.micros != 0 {
            12
        } else if p.hour != 0 || p.minute != 0 || p.second != 0 {
            8
        } else {
            0
        };
        out.push(len);
        if len >= 8 {
            out.push(u8::from(p.negative));
            out.extend_from_slice(&(p.hour / 24).to_le_bytes());
            out.extend_from_slice(&[(p.hour % 24) as u8, p.minute as u8, p.second as u8]);
        }
        if len == 12 {
            out.extend_from_slice(&p.micros.to_le_bytes());
        }
        return;
    }
    let len = if p.micros != 0 {
        11
    } else if p.hour != 0 || p.minute != 0 || p.second != 0 {
        7
    } else if p.year != 0 || p.month != 0 || p.day != 0 {
        4
    } else {
        0
    };
    out.push(len);
    if len >= 4 {
        out.extend_from_slice(&(p.year as u16).to_le_bytes());
        out.extend_from_slice(&[p.month as u8, p.day as u8]);
    }
    if len >= 7 {
        out.extend_from_slice(&[p.hour as u8, p.minute as u8, p.second as u8]);
    }
    if len == 11 {
        out.extend_from_slice(&p.micros.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str, class: TypeClass, decimals: u8, expected_len: u8) {
        let mut bin = Vec::new();
        encode_binary(text.as_bytes(), class, &mut bin);
        assert_eq!(bin[0], expected_len, "{text}");
        let mut slice = &bin[..];
        let back = decode_binary(&mut slice, class, decimals).unwrap();
        assert!(slice.is_empty());
        assert_eq!(String::from_utf8(back).unwrap(), text);
    }

    #[test]
    fn binary_round_trips() {
        round_trip("2024-01-31", TypeClass::Date, 0, 4);
        round_trip("0000-00-00", TypeClass::Date, 0, 0);
        round_trip("2024-02-29 23:59:59", TypeClass::DateTime, 0, 7);
        round_trip("2024-02-29 00:00:00", TypeClass::DateTime, 0, 4);
        round_trip("0000-00-00 00:00:00", TypeClass::DateTime, 0, 0);
        round_trip("2024-12-31 23:59:59.120", TypeClass::DateTime, 3, 11);
        round_trip("2024-12-31 00:00:00.000001", TypeClass::DateTime, 6, 11);
        round_trip("838:59:59", TypeClass::Time, 0, 8);
        round_trip("-838:59:59.5", TypeClass::Time, 1, 12);
        round_trip("00:00:00", TypeClass::Time, 0, 0);
        round_trip("-00:00:01", TypeClass::Time, 0, 8);
        round_trip("25:00:00", TypeClass::Time, 0, 8);
    }

    #[test]
    fn bad_lengths_are_malformed() {
        let mut buf: &[u8] = &[5, 0, 0, 0, 0, 0];
        assert!(decode_binary(&mut buf, TypeClass::DateTime, 0).is_err());
        let mut buf: &[u8] = &[8, 0];
        assert!(decode_binary(&mut buf, TypeClass::Time, 0).is_err());
        // More days than an hour count holds: malformed, not an overflow.
        let mut buf: &[u8] = &[8, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0];
        assert!(decode_binary(&mut buf, TypeClass::Time, 0).is_err());
    }
}
