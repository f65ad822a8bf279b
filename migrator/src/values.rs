//! Column values as the migrator handles them: a row's sharding values for
//! the rules crate, primary keys as plain integers (cursors, chunk bounds),
//! and identifiers quoted for SQL text.

use mysql_async::Value;
use shardgate_rules::{ColumnKind, ShardValue};

/// A primary key value. The migrator copies and verifies tables keyed by
/// one integer column: `i128` holds every BIGINT and BIGINT UNSIGNED value,
/// and orders as MySQL orders them.
pub type Key = i128;

/// The sharding value the proxy would have routed this value of a `kind`
/// column by: a string column's values as their text (its `'7'` is not the
/// integer 7), integers as integers, dates in MySQL's literal text,
/// everything else as its text.
pub fn shard_value(value: &Value, kind: ColumnKind) -> ShardValue {
    if kind == ColumnKind::Text {
        match value {
            Value::NULL => return ShardValue::Null,
            Value::Bytes(bytes) => return ShardValue::Text(String::from_utf8_lossy(bytes).into()),
            Value::Int(i) => return ShardValue::Text(i.to_string()),
            Value::UInt(u) => return ShardValue::Text(u.to_string()),
            _ => {}
        }
    }
    match value {
        Value::NULL => ShardValue::Null,
        Value::Int(i) => ShardValue::Int(*i),
        Value::UInt(u) => match i64::try_from(*u) {
            Ok(i) => ShardValue::Int(i),
            Err(_) => ShardValue::Text(u.to_string()),
        },
        Value::Float(f) => ShardValue::Text(f.to_string()),
        Value::Double(d) => ShardValue::Text(d.to_string()),
        Value::Bytes(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            // A DECIMAL or a numeric string of an integer column routes as
            // the proxy routes the literal: by its integer value.
            match text.parse::<i64>() {
                Ok(i) => ShardValue::Int(i),
                Err(_) => ShardValue::Text(text.into_owned()),
            }
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if *us != 0 {
                text.push_str(&format!(".{us:06}"));
            }
            ShardValue::Text(text)
        }
        Value::Time(negative, days, h, mi, s, us) => {
            let sign = if *negative { "-" } else { "" };
            let hours = u32::from(*h) + days * 24;
            let mut text = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if *us != 0 {
                text.push_str(&format!(".{us:06}"));
            }
            ShardValue::Text(text)
        }
    }
}

/// A primary key value as an integer; None when the value is not one
/// (NULL, text that is no integer, a date).
pub fn key_of(value: &Value) -> Option<Key> {
    match value {
        Value::Int(i) => Some(Key::from(*i)),
        Value::UInt(u) => Some(Key::from(*u)),
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

/// A key as a statement parameter: signed when it fits, else unsigned.
pub fn key_param(key: Key) -> Value {
    match i64::try_from(key) {
        Ok(i) => Value::Int(i),
        // Keys come from BIGINT [UNSIGNED] columns: beyond i64 they fit u64.
        Err(_) => Value::UInt(u64::try_from(key).unwrap_or(u64::MAX)),
    }
}

/// A value as people read it in a report: text unquoted, NULL as `NULL`.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::NULL => "NULL".into(),
        Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        other => other.as_sql(true).trim_matches('\'').to_string(),
    }
}

/// The key columns of a row (the first `count` values) for a report.
pub fn display_key(values: &[Value], count: usize) -> String {
    values[..count.min(values.len())]
        .iter()
        .map(display_value)
        .collect::<Vec<_>>()
        .join(",")
}

/// An identifier quoted for MySQL: backticks, inner backticks doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Integer keys as the text of an SQL list (`1, 2, 3`): integers only, so
/// nothing needs quoting.
pub fn key_list(keys: &[Key]) -> String {
    let mut list = String::with_capacity(keys.len() * 12);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(&key.to_string());
    }
    list
}

/// A comma-separated list of quoted identifiers.
pub fn ident_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal for MySQL text (for `information_schema` lookups).
pub fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_are_plain_integers() {
        assert_eq!(key_list(&[]), "");
        assert_eq!(key_list(&[7]), "7");
        assert_eq!(
            key_list(&[-1, 0, Key::from(u64::MAX)]),
            "-1, 0, 18446744073709551615"
        );
    }

    #[test]
    fn integers_route_as_integers_and_dates_as_mysql_text() {
        assert_eq!(
            shard_value(&Value::Int(-5), ColumnKind::Other),
            ShardValue::Int(-5)
        );
        assert_eq!(
            shard_value(&Value::UInt(7), ColumnKind::Other),
            ShardValue::Int(7)
        );
        assert_eq!(
            shard_value(&Value::UInt(u64::MAX), ColumnKind::Other),
            ShardValue::Text(u64::MAX.to_string())
        );
        assert_eq!(
            shard_value(&Value::Bytes(b"42".to_vec()), ColumnKind::Other),
            ShardValue::Int(42)
        );
        assert_eq!(
            shard_value(&Value::Bytes(b"acme".to_vec()), ColumnKind::Other),
            ShardValue::Text("acme".into())
        );
        assert_eq!(
            shard_value(&Value::Date(2025, 3, 9, 7, 5, 0, 0), ColumnKind::Other),
            ShardValue::Text("2025-03-09 07:05:00".into())
        );
        assert_eq!(
            shard_value(&Value::Date(2025, 3, 9, 0, 0, 0, 120), ColumnKind::Other),
            ShardValue::Text("2025-03-09 00:00:00.000120".into())
        );
        assert_eq!(
            shard_value(&Value::NULL, ColumnKind::Other),
            ShardValue::Null
        );
    }

    #[test]
    fn a_string_columns_digits_stay_text() {
        // The proxy places a VARCHAR's '7' by its text, not as the integer 7.
        let text = ColumnKind::Text;
        assert_eq!(
            shard_value(&Value::Bytes(b"7".to_vec()), text),
            ShardValue::Text("7".into())
        );
        assert_eq!(
            shard_value(&Value::Int(7), text),
            ShardValue::Text("7".into())
        );
        assert_eq!(shard_value(&Value::NULL, text), ShardValue::Null);
        assert_eq!(
            shard_value(&Value::Bytes(b"7".to_vec()), ColumnKind::Integer),
            ShardValue::Int(7)
        );
    }

    #[test]
    fn keys_cover_signed_and_unsigned_bigint() {
        assert_eq!(key_of(&Value::Int(i64::MIN)), Some(Key::from(i64::MIN)));
        assert_eq!(key_of(&Value::UInt(u64::MAX)), Some(Key::from(u64::MAX)));
        assert_eq!(key_of(&Value::Bytes(b"12".to_vec())), Some(12));
        assert_eq!(key_of(&Value::NULL), None);
        assert_eq!(key_param(Key::from(u64::MAX)), Value::UInt(u64::MAX));
        assert_eq!(key_param(-3), Value::Int(-3));
    }

    #[test]
    fn keys_display_without_quotes() {
        let row = [
            Value::Bytes(b"42".to_vec()),
            Value::Date(2024, 1, 2, 3, 4, 5, 0),
            Value::NULL,
        ];
        assert_eq!(display_key(&row, 2), "42,2024-01-02 03:04:05");
        assert_eq!(display_key(&row, 9), "42,2024-01-02 03:04:05,NULL");
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(ident_list(&["x", "y"]), "`x`, `y`");
        assert_eq!(string_literal("it's\\"), "'it''s\\\\'");
    }
}
