//! A value a statement gives for a sharding column, taken as the column
//! takes it: an integer column compares `'7'` and `7.0` as 7 and stores
//! `'7.5'` as 8; a string column stores `7` as `'7'` and compares a number
//! with every row's text read as a number (`' 7'`, `'07'`, `'7.0'` all
//! equal 7). Algorithms that place an integer and its digits apart
//! (`crc32_mod`) route right only on what the column holds.

use shardgate_rules::algorithm::{compared_integer, stored_integer};
use shardgate_rules::{ColumnKind, ShardValue};

use super::analyze::Val;
use super::params::ParamValue;
use crate::shard::PlanError;

/// A value as the statement wrote or bound it.
#[derive(Debug, Clone, PartialEq)]
enum Given {
    Null,
    Int(i64),
    /// A number that is not a BIGINT (`7.50`, `1e3`, beyond BIGINT), as written.
    Number(String),
    Double(f64),
    Text(String),
    Temporal(String),
}

impl Given {
    fn of_param(param: &ParamValue) -> Given {
        match param {
            ParamValue::Null => Given::Null,
            ParamValue::Int(i) => Given::Int(*i),
            ParamValue::UInt(u) => match i64::try_from(*u) {
                Ok(i) => Given::Int(i),
                Err(_) => Given::Number(u.to_string()),
            },
            ParamValue::Double(d) => Given::Double(*d),
            ParamValue::Decimal(s) => Given::Number(s.clone()),
            ParamValue::Text { bytes, charset } => Given::Text(charset.decode(bytes).into_owned()),
            ParamValue::Temporal(s) => Given::Temporal(s.clone()),
        }
    }

    fn of_val(val: &Val, params: &[ParamValue]) -> Option<Given> {
        Some(match val {
            Val::Lit(ShardValue::Null) => Given::Null,
            Val::Lit(ShardValue::Int(i)) => Given::Int(*i),
            Val::Lit(ShardValue::Text(t)) => Given::Text(t.clone()),
            Val::Number(n) => Given::Number(n.clone()),
            Val::Param(i) => Given::of_param(params.get(*i)?),
        })
    }
}

/// The value rows of a `kind` column are compared with, for routing a
/// condition; None when rows on any node may match (a number against a
/// string column), so the condition must reach every node. None also for
/// a parameter that was not bound.
pub fn compared(val: &Val, params: &[ParamValue], kind: ColumnKind) -> Option<ShardValue> {
    if kind == ColumnKind::Other {
        return as_written(val, params);
    }
    let given = Given::of_val(val, params)?;
    match (given, kind) {
        (Given::Null, _) => Some(ShardValue::Null),
        (Given::Int(i), ColumnKind::Integer) => Some(ShardValue::Int(i)),
        (Given::Number(n) | Given::Text(n), ColumnKind::Integer) => {
            compared_integer(&n).map(ShardValue::Int)
        }
        (Given::Double(d), ColumnKind::Integer) => whole(d).map(ShardValue::Int),
        (Given::Text(t), ColumnKind::Text) => Some(ShardValue::Text(t)),
        // Numbers compare with a string column's rows read as numbers,
        // temporal values by their own rules: any row may match.
        _ => None,
    }
}

/// The value a `kind` column stores for what an INSERT gives it, which
/// places the row. None for a parameter that was not bound.
pub fn stored(
    val: &Val,
    params: &[ParamValue],
    kind: ColumnKind,
) -> Result<Option<ShardValue>, PlanError> {
    if kind == ColumnKind::Other {
        return Ok(as_written(val, params));
    }
    let Some(given) = Given::of_val(val, params) else {
        return Ok(None);
    };
    let value = match (given, kind) {
        (Given::Null, _) => ShardValue::Null,
        (Given::Int(i), ColumnKind::Integer) => ShardValue::Int(i),
        (Given::Number(n) | Given::Text(n), ColumnKind::Integer) => {
            ShardValue::Int(stored_integer(&n))
        }
        (Given::Double(d), ColumnKind::Integer) => ShardValue::Int(stored_integer(&d.to_string())),
        (Given::Text(t) | Given::Temporal(t), ColumnKind::Text) => ShardValue::Text(t),
        (Given::Int(i), ColumnKind::Text) => ShardValue::Text(i.to_string()),
        (Given::Number(n), ColumnKind::Text) => ShardValue::Text(decimal_text(&n).ok_or_else(
            || PlanError::NotSupported(format!("the number {n} for a string sharding column is stored as MariaDB prints it, which the proxy does not reproduce; write it as a string ('{n}')")),
        )?),
        (Given::Double(d), ColumnKind::Text) => {
            return Err(PlanError::NotSupported(format!(
                "a floating-point parameter ({d}) for a string sharding column is stored as MariaDB prints it, which the proxy does not reproduce; bind it as a string"
            )))
        }
        (Given::Temporal(t), _) => ShardValue::Text(t),
        (_, ColumnKind::Other) => return Ok(as_written(val, params)),
    };
    Ok(Some(value))
}

/// The value as written, for a column whose type is not known: integers as
/// integers, everything else as its text.
fn as_written(val: &Val, params: &[ParamValue]) -> Option<ShardValue> {
    match val {
        Val::Lit(v) => Some(v.clone()),
        Val::Number(n) => Some(ShardValue::Text(n.clone())),
        Val::Param(i) => params.get(*i).map(ParamValue::shard_value),
    }
}

/// `d` when it is a whole number within BIGINT.
fn whole(d: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact in f64; the range check makes the cast exact.
    (d.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&d))
        .then_some(d as i64)
}

/// The text MariaDB stores in a string column for a decimal literal or
/// parameter: the digits as written, without the integer part's leading
/// zeros (`007.50` is `7.50`, `.5` is `0.5`, `5.` is `5`), and no sign on
/// zero. None for an exponent form (`1e3`), which goes through a double.
fn decimal_text(number: &str) -> Option<String> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(integer) || !all_digits(fraction) || (integer.is_empty() && fraction.is_empty())
    {
        return None;
    }
    let integer = match integer.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let zero = integer == "0" && fraction.bytes().all(|b| b == b'0');
    let mut text = String::with_capacity(number.len() + 1);
    if negative && !zero {
        text.push('-');
    }
    text.push_str(integer);
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::ClientCharset;

    fn text(s: &str) -> Val {
        Val::Lit(ShardValue::Text(s.into()))
    }

    #[test]
    fn decimals_print_as_mariadb_stores_them_in_a_string_column() {
        // Measured on MariaDB 10.11: INSERT INTO t (varchar_col) VALUES (...).
        for (written, stored) in [
            ("7.50", Some("7.50")),
            ("-007.10", Some("-7.10")),
            ("-0.0", Some("0.0")),
            ("00.000", Some("0.000")),
            ("5.", Some("5")),
            (".5", Some("0.5")),
            ("18446744073709551616", Some("18446744073709551616")),
            ("9223372036854775808", Some("9223372036854775808")),
            ("1e3", None),
            ("1.5e20", None),
            (".", None),
        ] {
            assert_eq!(decimal_text(written).as_deref(), stored, "{written}");
        }
    }

    #[test]
    fn a_string_column_stores_numbers_as_their_text() {
        let kind = ColumnKind::Text;
        let stored_as = |val: Val| stored(&val, &[], kind).unwrap().unwrap();
        assert_eq!(stored_as(Val::Lit(ShardValue::Int(7))), "7".into());
        assert_eq!(stored_as(Val::Number("07.50".into())), "7.50".into());
        assert_eq!(stored_as(text("07")), "07".into());
        assert!(matches!(
            stored(&Val::Number("1e3".into()), &[], kind).unwrap_err(),
            PlanError::NotSupported(_)
        ));
        let params = [ParamValue::Int(7), ParamValue::Double(7.5)];
        assert_eq!(
            stored(&Val::Param(0), &params, kind).unwrap(),
            Some("7".into())
        );
        assert!(matches!(
            stored(&Val::Param(1), &params, kind).unwrap_err(),
            PlanError::NotSupported(_)
        ));
    }

    #[test]
    fn numbers_compared_with_a_string_column_reach_every_node() {
        let kind = ColumnKind::Text;
        assert_eq!(compared(&Val::Lit(ShardValue::Int(7)), &[], kind), None);
        assert_eq!(compared(&Val::Number("7.0".into()), &[], kind), None);
        assert_eq!(compared(&text("7"), &[], kind), Some("7".into()));
        let latin1 = ClientCharset::named("latin1");
        let params = [
            ParamValue::Int(7),
            ParamValue::Text {
                bytes: b"7".to_vec(),
                charset: latin1,
            },
        ];
        assert_eq!(compared(&Val::Param(0), &params, kind), None);
        assert_eq!(compared(&Val::Param(1), &params, kind), Some("7".into()));
    }

    #[test]
    fn an_integer_column_takes_text_and_decimals_as_integers() {
        let kind = ColumnKind::Integer;
        assert_eq!(compared(&text(" 7"), &[], kind), Some(ShardValue::Int(7)));
        assert_eq!(
            compared(&Val::Number("7.0".into()), &[], kind),
            Some(ShardValue::Int(7))
        );
        assert_eq!(compared(&Val::Number("7.5".into()), &[], kind), None);
        let params = [ParamValue::Double(7.0), ParamValue::Double(7.5)];
        assert_eq!(
            compared(&Val::Param(0), &params, kind),
            Some(ShardValue::Int(7))
        );
        assert_eq!(compared(&Val::Param(1), &params, kind), None);
        let stored_as = |val: Val| stored(&val, &params, kind).unwrap().unwrap();
        assert_eq!(stored_as(text("7.5")), ShardValue::Int(8));
        assert_eq!(stored_as(Val::Number("-7.5".into())), ShardValue::Int(-8));
        assert_eq!(stored_as(Val::Param(1)), ShardValue::Int(8));
    }

    #[test]
    fn unknown_columns_take_values_as_written() {
        let kind = ColumnKind::Other;
        assert_eq!(
            compared(&Val::Lit(ShardValue::Int(7)), &[], kind),
            Some(ShardValue::Int(7))
        );
        assert_eq!(
            compared(&Val::Number("7.5".into()), &[], kind),
            Some("7.5".into())
        );
        assert_eq!(compared(&Val::Param(3), &[], kind), None);
    }
}
