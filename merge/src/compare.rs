//! Ordering of values and rows as the database orders them: by collation
//! weight when the plan supplies a sort-key column (the dialect's
//! `WEIGHT_STRING(expr)` or alike), otherwise by the typed
//! value; NULL first ascending (and so last descending).

use std::cmp::Ordering;

use super::column::{ColumnMeta, TypeClass};
use super::decimal::Dec;
use super::plan::{Compared, SortKey};
use super::temporal::time_micros;
use super::value::{as_f64, Value};

/// Compares two values of column `col` (a weight column is `Bytes`).
pub(crate) fn compare_values(a: &Value, b: &Value, col: &ColumnMeta) -> Ordering {
    use Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Less,
        (_, Null) => Ordering::Greater,
        (Int(x), Int(y)) => x.cmp(y),
        (UInt(x), UInt(y)) => x.cmp(y),
        (Int(x), UInt(y)) => i128::from(*x).cmp(&i128::from(*y)),
        (UInt(x), Int(y)) => i128::from(*x).cmp(&i128::from(*y)),
        (Decimal(x), Decimal(y)) => match (Dec::parse(x), Dec::parse(y)) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        },
        (Bytes(x), Bytes(y)) if col.class == TypeClass::Time => time_micros(x).cmp(&time_micros(y)),
        (Bytes(x), Bytes(y)) => x.cmp(y),
        (x, y) => as_f64(x).total_cmp(&as_f64(y)),
    }
}

/// Compares the item in two full rows.
pub(crate) fn compare_item(
    a: &[Value],
    b: &[Value],
    item: &Compared,
    columns: &[ColumnMeta],
) -> Ordering {
    match item.weight {
        Some(w) => compare_values(&a[w], &b[w], &columns[w]),
        None => compare_values(&a[item.column], &b[item.column], &columns[item.column]),
    }
}

/// Compares two full rows by sort keys.
pub(crate) fn compare_rows(
    a: &[Value],
    b: &[Value],
    keys: &[SortKey],
    columns: &[ColumnMeta],
) -> Ordering {
    for key in keys {
        let ord = compare_item(a, b, &key.item, columns);
        let ord = if key.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Whether two full rows agree on every item (NULL equals NULL).
pub(crate) fn same_items(
    a: &[Value],
    b: &[Value],
    items: &[Compared],
    columns: &[ColumnMeta],
) -> bool {
    items
        .iter()
        .all(|item| compare_item(a, b, item, columns) == Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(class: TypeClass) -> ColumnMeta {
        ColumnMeta::new("c", class)
    }

    #[test]
    fn typed_comparisons() {
        let int = col(TypeClass::Int { width: 8 });
        assert_eq!(
            compare_values(&Value::Null, &Value::Int(i64::MIN), &int),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&Value::Int(-1), &Value::UInt(0), &int),
            Ordering::Less
        );
        let dec = col(TypeClass::Decimal);
        let d = |s: &str| Value::Decimal(s.into());
        assert_eq!(
            compare_values(&d("-10.5"), &d("2.25"), &dec),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&d("10.50"), &d("9.99"), &dec),
            Ordering::Greater
        );
        let time = col(TypeClass::Time);
        let t = |s: &str| Value::Bytes(s.into());
        assert_eq!(
            compare_values(&t("-10:00:00"), &t("09:00:00"), &time),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&t("100:00:00"), &t("99:00:00"), &time),
            Ordering::Greater
        );
        let dbl = col(TypeClass::Double);
        assert_eq!(
            compare_values(&Value::Double(-0.5), &Value::Double(0.25), &dbl),
            Ordering::Less
        );
    }

    #[test]
    fn weights_decide_over_values_and_desc_puts_nulls_last() {
        let columns = vec![col(TypeClass::Bytes), col(TypeClass::Bytes)];
        // 'a' and 'A' have equal weights under a case-insensitive collation.
        let a = [Value::Bytes(b"a".to_vec()), Value::Bytes(vec![0x41])];
        let big_a = [Value::Bytes(b"A".to_vec()), Value::Bytes(vec![0x41])];
        let null = [Value::Null, Value::Null];
        let item = Compared {
            column: 0,
            weight: Some(1),
        };
        assert_eq!(compare_item(&a, &big_a, &item, &columns), Ordering::Equal);
        let desc = [SortKey {
            item,
            descending: true,
        }];
        assert_eq!(compare_rows(&null, &a, &desc, &columns), Ordering::Greater);
        assert!(same_items(&a, &big_a, &[item], &columns));
    }
}
