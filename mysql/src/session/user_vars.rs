//! User variables a statement assigned on one backend connection
//! (`SELECT ... INTO @v`, `@v := ...`, `SET @v = expression`), read back
//! there as literals of the same type, character set and collation, so that
//! replaying `SET @v = <literal>` gives any other connection the same value.

use crate::backend::PooledConn;
use crate::column::{flags, ColumnInfo};
use shardgate_core::error::BackendError;

/// What a user variable's value is: the column it reads back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VarType {
    column_type: u8,
    unsigned: bool,
    decimals: u8,
}

/// MariaDB column types of a user variable's value.
const TYPE_DECIMAL: u8 = 0;
const TYPE_FLOAT: u8 = 4;
const TYPE_DOUBLE: u8 = 5;
const TYPE_NEWDECIMAL: u8 = 246;
const INTEGER_TYPES: [u8; 6] = [1, 2, 3, 8, 9, 13];

impl VarType {
    fn of(column: Option<&ColumnInfo>) -> VarType {
        match column {
            Some(c) => VarType {
                column_type: c.column_type,
                unsigned: c.flags & flags::UNSIGNED != 0,
                decimals: c.decimals,
            },
            None => VarType {
                column_type: 0xFD,
                unsigned: false,
                decimals: 0,
            },
        }
    }

    fn is_integer(self) -> bool {
        INTEGER_TYPES.contains(&self.column_type)
    }

    fn is_decimal(self) -> bool {
        self.column_type == TYPE_DECIMAL || self.column_type == TYPE_NEWDECIMAL
    }

    fn is_double(self) -> bool {
        self.column_type == TYPE_FLOAT || self.column_type == TYPE_DOUBLE
    }
}

/// The values of `names` on `conn`, each as a literal to replay.
pub async fn read_back(
    conn: &mut PooledConn,
    names: &[String],
) -> Result<Vec<String>, BackendError> {
    let mut sql = String::from("SELECT ");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let var = format!("@`{}`", name.replace('`', "``"));
        sql.push_str(&format!(
            "{var}, HEX({var}), CHARSET({var}), COLLATION({var})"
        ));
    }
    let (definitions, rows) = conn.query_text_defined(&sql).await?;
    let row = rows.into_iter().next().unwrap_or_default();
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let cell = |k: usize| row.get(i * 4 + k).cloned().flatten();
            literal(
                VarType::of(definitions.get(i * 4)),
                cell(0).as_deref(),
                cell(1).as_deref().unwrap_or(""),
                cell(2).as_deref().unwrap_or("binary"),
                cell(3).as_deref().unwrap_or("binary"),
            )
        })
        .collect())
}

/// A literal with the value, type and collation of a user variable read
/// back as `value, HEX(value), CHARSET(value), COLLATION(value)`; a NULL
/// keeps the variable's type.
fn literal(ty: VarType, value: Option<&str>, hex: &str, charset: &str, collation: &str) -> String {
    let is_name =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let is_hex = hex.bytes().all(|b| b.is_ascii_hexdigit());
    let named = is_name(charset) && is_name(collation);
    let Some(value) = value else {
        return match ty {
            t if t.is_integer() && t.unsigned => "CAST(NULL AS UNSIGNED)".to_owned(),
            t if t.is_integer() => "CAST(NULL AS SIGNED)".to_owned(),
            t if t.is_decimal() => format!("CAST(NULL AS DECIMAL(65, {}))", t.decimals.min(30)),
            t if t.is_double() => "CAST(NULL AS DOUBLE)".to_owned(),
            _ if charset != "binary" && named => {
                format!("CAST(NULL AS CHAR CHARACTER SET {charset}) COLLATE {collation}")
            }
            _ => "NULL".to_owned(),
        };
    };
    match ty {
        t if t.is_integer() || t.is_decimal() => {
            if value
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                value.to_owned()
            } else {
                format!("'{}'", value.replace('\'', "''"))
            }
        }
        // A number in scientific notation is a DOUBLE literal.
        t if t.is_double() && value.contains(['e', 'E']) => value.to_owned(),
        t if t.is_double() => format!("{value}e0"),
        _ if charset == "binary" && is_hex => format!("_binary X'{hex}'"),
        _ if named && is_hex => format!("_{charset} X'{hex}' COLLATE {collation}"),
        _ => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::{literal, VarType};

    fn ty(column_type: u8) -> VarType {
        VarType {
            column_type,
            unsigned: false,
            decimals: 2,
        }
    }

    #[test]
    fn literals_keep_type_and_collation() {
        assert_eq!(literal(ty(8), Some("5"), "5", "binary", "binary"), "5");
        assert_eq!(literal(ty(8), Some("-42"), "", "binary", "binary"), "-42");
        assert_eq!(
            literal(ty(246), Some("5.50"), "", "binary", "binary"),
            "5.50"
        );
        assert_eq!(literal(ty(5), Some("0.1"), "", "binary", "binary"), "0.1e0");
        assert_eq!(
            literal(ty(5), Some("1e300"), "", "binary", "binary"),
            "1e300"
        );
        assert_eq!(
            literal(
                ty(253),
                Some("été"),
                "C3A974C3A9",
                "utf8mb4",
                "utf8mb4_general_ci"
            ),
            "_utf8mb4 X'C3A974C3A9' COLLATE utf8mb4_general_ci"
        );
        assert_eq!(
            literal(ty(252), Some("\u{0}"), "00FF", "binary", "binary"),
            "_binary X'00FF'"
        );
        assert_eq!(
            literal(ty(253), Some(""), "", "latin1", "latin1_swedish_ci"),
            "_latin1 X'' COLLATE latin1_swedish_ci"
        );
    }

    #[test]
    fn nulls_keep_their_type() {
        assert_eq!(
            literal(ty(8), None, "", "binary", "binary"),
            "CAST(NULL AS SIGNED)"
        );
        assert_eq!(
            literal(ty(246), None, "", "binary", "binary"),
            "CAST(NULL AS DECIMAL(65, 2))"
        );
        assert_eq!(
            literal(ty(5), None, "", "binary", "binary"),
            "CAST(NULL AS DOUBLE)"
        );
        assert_eq!(
            literal(ty(253), None, "", "latin1", "latin1_swedish_ci"),
            "CAST(NULL AS CHAR CHARACTER SET latin1) COLLATE latin1_swedish_ci"
        );
        assert_eq!(literal(ty(251), None, "", "binary", "binary"), "NULL");
    }
}
