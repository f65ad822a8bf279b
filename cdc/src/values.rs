//! Column values as the binlog gives them, turned into `mysql_async::Value`s
//! that write back the same stored value through a prepared statement
//! (`REPLACE INTO t (...) VALUES (?, ...)`).
//!
//! How they compare with what a SELECT of the same row returns (text
//! protocol: every non-NULL value is `Bytes` of its text; binary protocol,
//! i.e. a prepared SELECT: as listed):
//!
//! | column type                      | change stream                        | prepared SELECT          |
//! |----------------------------------|--------------------------------------|--------------------------|
//! | TINYINT..BIGINT signed           | `Int`                                | `Int`                    |
//! | TINYINT..INT UNSIGNED            | `Int` (non-negative)                 | `Int`                    |
//! | BIGINT UNSIGNED                  | `UInt`                               | `UInt`                   |
//! | FLOAT / DOUBLE                   | `Float` / `Double`                   | same                     |
//! | DECIMAL(p,s)                     | `Bytes` of the text, `s` decimals    | same                     |
//! | DATE, DATETIME(n)                | `Date(y, m, d, h, i, s, µs)`         | same                     |
//! | TIME(n), n not 1 or 2 (refused)  | `Time(neg, days, h, i, s, µs)`       | same                     |
//! | TIMESTAMP(n)                     | `Date` in UTC (see below)            | `Date` in session zone   |
//! | YEAR                             | `Int` (0 for 0000)                   | `Int`                    |
//! | CHAR/VARCHAR/TEXT/JSON           | `Bytes` in the column's charset      | `Bytes` in the connection charset |
//! | BINARY/VARBINARY/BLOB/GEOMETRY   | `Bytes`                              | `Bytes` (BINARY(n): see below) |
//! | ENUM                             | `Int` (1-based index, 0 = '')        | `Bytes` of the label     |
//! | SET                              | `UInt` bitmask                       | `Bytes` of the labels    |
//! | BIT(n)                           | `UInt`                               | `Bytes` (big-endian)     |
//! | NULL                             | `NULL`                               | `NULL`                   |
//!
//! Caveats for whoever writes these values back or compares them:
//! - TIMESTAMP values are given in UTC: a session that writes them back (or
//!   a SELECT compared with them) must `SET time_zone = '+00:00'`
//!   ([`WRITE_TIME_ZONE`]).
//! - Character columns come as bytes of the column's own charset; with a
//!   utf8mb4 connection (mysql_async's default) they round-trip exactly for
//!   utf8mb4, ascii and binary columns, which is what ShardGate's schemas
//!   use. Other charsets with non-ASCII text would need a connection in
//!   that charset.
//! - The binlog drops the trailing zero bytes of BINARY(n) (its pad
//!   character); writing the value back pads them again, so the stored
//!   value round-trips though the `Bytes` differ from a SELECT's.
//! - TIME(1) and TIME(2) columns of watched tables stop the stream with
//!   `CdcError::UnsupportedColumn`: mysql_common 0.37 decodes their
//!   negative values with a fraction wrongly.
//! - ENUM and SET values round-trip through their index/bitmask; comparing
//!   them with a SELECT needs `col+0`.

use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

/// The session time zone in which TIMESTAMP values of the stream are
/// meant: `SET time_zone = '+00:00'` before writing them back.
pub const WRITE_TIME_ZONE: &str = "+00:00";

/// Why a binlog value has no `Value` form.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("JSON value cannot be read: {0}")]
    Json(String),
    #[error("partial JSON update (binlog_row_value_options=PARTIAL_JSON) carries no whole value")]
    JsonDiff,
    #[error("malformed {kind} value {text:?}")]
    Malformed { kind: &'static str, text: String },
}

/// Turns one binlog column value into a `Value` that writes back the same
/// stored value (see the module doc for each type).
pub(crate) fn to_value(
    value: BinlogValue<'_>,
    column_type: ColumnType,
) -> Result<Value, ValueError> {
    let value = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(_) => {
            return Value::try_from(value).map_err(|e| ValueError::Json(e.to_string()))
        }
        BinlogValue::JsonDiff(_) => return Err(ValueError::JsonDiff),
    };
    if value == Value::NULL {
        return Ok(value);
    }
    Ok(match (column_type, value) {
        (ColumnType::MYSQL_TYPE_TIMESTAMP2, Value::Bytes(text)) => timestamp_from_text(&text)?,
        (ColumnType::MYSQL_TYPE_TIMESTAMP, Value::Int(seconds)) => utc_datetime(seconds, 0),
        (ColumnType::MYSQL_TYPE_YEAR, Value::Bytes(text)) => {
            let year = parse_digits(&text, "YEAR")?;
            // The binlog stores YEAR as years since 1900, and 0 for 0000;
            // 1900 itself is not a valid YEAR, so it can only mean 0000.
            Value::Int(if year == 1900 { 0 } else { year as i64 })
        }
        (ColumnType::MYSQL_TYPE_SET, Value::Bytes(bytes)) => {
            // Little-endian bitmask of the members.
            Value::UInt(
                bytes
                    .iter()
                    .rev()
                    .fold(0, |acc, b| (acc << 8) | u64::from(*b)),
            )
        }
        (ColumnType::MYSQL_TYPE_BIT, Value::Bytes(bytes)) => {
            // Big-endian, at most 8 bytes (BIT(64)).
            Value::UInt(bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b)))
        }
        (_, value) => value,
    })
}

/// TIMESTAMP2 comes as Unix seconds, with `.micros` when non-zero.
fn timestamp_from_text(text: &[u8]) -> Result<Value, ValueError> {
    let (seconds, micros) = match text.iter().position(|b| *b == b'.') {
        Some(dot) => (&text[..dot], parse_digits(&text[dot + 1..], "TIMESTAMP")?),
        None => (text, 0),
    };
    let seconds = parse_digits(seconds, "TIMESTAMP")?;
    Ok(utc_datetime(seconds as i64, micros as u32))
}

fn parse_digits(text: &[u8], kind: &'static str) -> Result<u64, ValueError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ValueError::Malformed {
            kind,
            text: String::from_utf8_lossy(text).into_owned(),
        })
}

/// The UTC date and time of a Unix timestamp; 0 is MariaDB's zero
/// timestamp `0000-00-00 00:00:00`.
fn utc_datetime(seconds: i64, micros: u32) -> Value {
    if seconds == 0 && micros == 0 {
        return Value::Date(0, 0, 0, 0, 0, 0, 0);
    }
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Value::Date(
        y as u16,
        m,
        d,
        (of_day / 3600) as u8,
        (of_day % 3600 / 60) as u8,
        (of_day % 60) as u8,
        micros,
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01: counted in 400-year eras of 146097 days, with years starting
/// on March 1st so that the leap day falls at the end of a year.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u8;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_utc_datetimes() {
        let ts = |s: &str| {
            to_value(
                BinlogValue::Value(Value::Bytes(s.into())),
                ColumnType::MYSQL_TYPE_TIMESTAMP2,
            )
            .unwrap()
        };
        assert_eq!(ts("0"), Value::Date(0, 0, 0, 0, 0, 0, 0));
        assert_eq!(ts("1"), Value::Date(1970, 1, 1, 0, 0, 1, 0));
        // 2024-02-29 23:59:59.125 UTC
        assert_eq!(
            ts("1709251199.125000"),
            Value::Date(2024, 2, 29, 23, 59, 59, 125_000)
        );
        // 2038-01-19 03:14:07, the last TIMESTAMP second
        assert_eq!(ts("2147483647"), Value::Date(2038, 1, 19, 3, 14, 7, 0));
        assert_eq!(
            to_value(
                BinlogValue::Value(Value::Int(951_782_400)),
                ColumnType::MYSQL_TYPE_TIMESTAMP
            )
            .unwrap(),
            Value::Date(2000, 2, 29, 0, 0, 0, 0)
        );
        assert!(to_value(
            BinlogValue::Value(Value::Bytes("x".into())),
            ColumnType::MYSQL_TYPE_TIMESTAMP2
        )
        .is_err());
    }

    #[test]
    fn year_set_and_bit_become_numbers() {
        let v = |v: Value, t| to_value(BinlogValue::Value(v), t).unwrap();
        assert_eq!(
            v(Value::Bytes("1900".into()), ColumnType::MYSQL_TYPE_YEAR),
            Value::Int(0)
        );
        assert_eq!(
            v(Value::Bytes("2024".into()), ColumnType::MYSQL_TYPE_YEAR),
            Value::Int(2024)
        );
        assert_eq!(
            v(Value::Bytes(vec![0x05, 0x01]), ColumnType::MYSQL_TYPE_SET),
            Value::UInt(0x105)
        );
        assert_eq!(
            v(Value::Bytes(vec![0x01, 0x05]), ColumnType::MYSQL_TYPE_BIT),
            Value::UInt(0x105)
        );
        assert_eq!(v(Value::NULL, ColumnType::MYSQL_TYPE_BIT), Value::NULL);
        assert_eq!(
            v(
                Value::Bytes("12.50".into()),
                ColumnType::MYSQL_TYPE_NEWDECIMAL
            ),
            Value::Bytes("12.50".into())
        );
    }
}
