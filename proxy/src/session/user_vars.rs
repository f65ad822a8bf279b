//! User variables a statement assigned on one backend connection
//! (`SELECT ... INTO @v`, `@v := ...`, `SET @v = expression`), read back
//! there as literals of the same type, character set and collation, so that
//! replaying `SET @v = <literal>` gives any other connection the same value.

use crate::backend::PooledConn;
use crate::error::BackendError;

/// MariaDB column types of a user variable's value.
const TYPE_DECIMAL: u8 = 0;
const TYPE_FLOAT: u8 = 4;
const TYPE_DOUBLE: u8 = 5;
const TYPE_NEWDECIMAL: u8 = 246;
const INTEGER_TYPES: [u8; 6] = [1, 2, 3, 8, 9, 13];

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
    let (types, rows) = conn.query_text_typed(&sql).await?;
    let row = rows.into_iter().next().unwrap_or_default();
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let cell = |k: usize| row.get(i * 4 + k).cloned().flatten();
            literal(
                types.get(i * 4).copied().unwrap_or(0xFD),
                cell(0).as_deref(),
                cell(1).as_deref().unwrap_or(""),
                cell(2).as_deref().unwrap_or("binary"),
                cell(3).as_deref().unwrap_or("binary"),
            )
        })
        .collect())
}

/// A literal with the value, type and collation of a user variable read
/// back as `value, HEX(value), CHARSET(value), COLLATION(value)`.
fn literal(
    column_type: u8,
    value: Option<&str>,
    hex: &str,
    charset: &str,
    collation: &str,
) -> String {
    let Some(value) = value else {
        return "NULL".to_owned();
    };
    let is_name =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let is_hex = hex.bytes().all(|b| b.is_ascii_hexdigit());
    match column_type {
        t if INTEGER_TYPES.contains(&t) || t == TYPE_DECIMAL || t == TYPE_NEWDECIMAL => {
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
        TYPE_FLOAT | TYPE_DOUBLE if value.contains(['e', 'E']) => value.to_owned(),
        TYPE_FLOAT | TYPE_DOUBLE => format!("{value}e0"),
        _ if charset == "binary" && is_hex => format!("_binary X'{hex}'"),
        _ if is_name(charset) && is_name(collation) && is_hex => {
            format!("_{charset} X'{hex}' COLLATE {collation}")
        }
        _ => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_keep_type_and_collation() {
        assert_eq!(literal(8, Some("5"), "5", "binary", "binary"), "5");
        assert_eq!(literal(8, Some("-42"), "", "binary", "binary"), "-42");
        assert_eq!(literal(246, Some("5.50"), "", "binary", "binary"), "5.50");
        assert_eq!(literal(5, Some("0.1"), "", "binary", "binary"), "0.1e0");
        assert_eq!(literal(5, Some("1e300"), "", "binary", "binary"), "1e300");
        assert_eq!(literal(253, None, "", "binary", "binary"), "NULL");
        assert_eq!(
            literal(
                253,
                Some("été"),
                "C3A974C3A9",
                "utf8mb4",
                "utf8mb4_general_ci"
            ),
            "_utf8mb4 X'C3A974C3A9' COLLATE utf8mb4_general_ci"
        );
        assert_eq!(
            literal(252, Some("\u{0}"), "00FF", "binary", "binary"),
            "_binary X'00FF'"
        );
        assert_eq!(
            literal(253, Some(""), "", "latin1", "latin1_swedish_ci"),
            "_latin1 X'' COLLATE latin1_swedish_ci"
        );
    }
}
