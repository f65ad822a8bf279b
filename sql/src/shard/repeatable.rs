//! Whether a SELECT may run once more on a data node with no effect beyond
//! its own result. A merged SELECT's column definitions can come from a
//! second run of one table's statement (see `session::sharded`); a call
//! that sleeps, takes a named lock, advances a sequence or assigns a user
//! variable must not happen twice, nor a stored function's, whose effects
//! the proxy cannot know. So only calls of built-in functions known to be
//! free of effects are allowed; anything else makes the statement
//! unrepeatable (and its definitions come from a prepare instead).

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, BinaryOperator, Expr, Query};

/// Whether `q` may run twice with no effect beyond its result.
pub fn repeatable(q: &Query) -> bool {
    let mut repeatable = true;
    let _ = visit_expressions(q, |e| {
        let ok = match e {
            Expr::Function(f) => {
                // A qualified name is a stored function (db.f).
                f.name.0.len() == 1 && is_pure_builtin(&f.name.to_string().to_ascii_uppercase())
            }
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } => false,
            _ => true,
        };
        if ok {
            ControlFlow::Continue(())
        } else {
            repeatable = false;
            ControlFlow::Break(())
        }
    });
    repeatable
}

/// Built-in functions whose calls only compute a value: no locks, waits,
/// sequences or variables. Upper case, as `repeatable` looks them up.
fn is_pure_builtin(name: &str) -> bool {
    super::scatter::is_aggregate_name(name)
        || matches!(
            name,
            // control flow and comparison
            "IF" | "IFNULL" | "NULLIF" | "NVL" | "COALESCE" | "GREATEST" | "LEAST" | "ISNULL"
                | "INTERVAL" | "STRCMP"
                // strings
                | "CONCAT" | "CONCAT_WS" | "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH"
                | "OCTET_LENGTH" | "BIT_LENGTH" | "LOWER" | "UPPER" | "LCASE" | "UCASE"
                | "SUBSTRING" | "SUBSTR" | "MID" | "LEFT" | "RIGHT" | "TRIM" | "LTRIM"
                | "RTRIM" | "LPAD" | "RPAD" | "REPLACE" | "REVERSE" | "REPEAT" | "SPACE"
                | "INSTR" | "LOCATE" | "POSITION" | "FIND_IN_SET" | "FIELD" | "ELT" | "HEX"
                | "UNHEX" | "ASCII" | "ORD" | "CHAR" | "FORMAT" | "INSERT" | "QUOTE"
                | "SOUNDEX" | "SUBSTRING_INDEX" | "WEIGHT_STRING" | "CONVERT" | "CAST"
                | "COLLATION" | "CHARSET" | "COERCIBILITY" | "TO_BASE64" | "FROM_BASE64"
                | "MD5" | "SHA" | "SHA1" | "SHA2" | "CRC32" | "REGEXP_REPLACE"
                | "REGEXP_SUBSTR" | "REGEXP_INSTR" | "BIN" | "OCT" | "CONV" | "BIT_COUNT"
                // numbers
                | "ABS" | "CEIL" | "CEILING" | "FLOOR" | "ROUND" | "TRUNCATE" | "MOD" | "POW"
                | "POWER" | "SQRT" | "EXP" | "LN" | "LOG" | "LOG2" | "LOG10" | "SIGN" | "PI"
                | "SIN" | "COS" | "TAN" | "ASIN" | "ACOS" | "ATAN" | "ATAN2" | "COT"
                | "DEGREES" | "RADIANS" | "RAND"
                // dates and times
                | "NOW" | "CURRENT_TIMESTAMP" | "LOCALTIME" | "LOCALTIMESTAMP" | "CURDATE"
                | "CURRENT_DATE" | "CURTIME" | "CURRENT_TIME" | "UTC_TIMESTAMP" | "UTC_DATE"
                | "UTC_TIME" | "SYSDATE" | "DATE" | "TIME" | "YEAR" | "MONTH" | "DAY"
                | "DAYOFMONTH" | "DAYOFWEEK" | "DAYOFYEAR" | "WEEKDAY" | "WEEK" | "WEEKOFYEAR"
                | "YEARWEEK" | "QUARTER" | "HOUR" | "MINUTE" | "SECOND" | "MICROSECOND"
                | "DATE_FORMAT" | "TIME_FORMAT" | "STR_TO_DATE" | "DATE_ADD" | "DATE_SUB"
                | "ADDDATE" | "SUBDATE" | "ADDTIME" | "SUBTIME" | "DATEDIFF" | "TIMEDIFF"
                | "TIMESTAMPDIFF" | "TIMESTAMPADD" | "TIMESTAMP" | "UNIX_TIMESTAMP"
                | "FROM_UNIXTIME" | "LAST_DAY" | "MAKEDATE" | "MAKETIME" | "MONTHNAME"
                | "DAYNAME" | "EXTRACT" | "TO_DAYS" | "FROM_DAYS" | "TO_SECONDS" | "SEC_TO_TIME"
                | "TIME_TO_SEC" | "PERIOD_ADD" | "PERIOD_DIFF" | "CONVERT_TZ"
                // JSON
                | "JSON_EXTRACT" | "JSON_UNQUOTE" | "JSON_VALUE" | "JSON_QUERY" | "JSON_OBJECT"
                | "JSON_ARRAY" | "JSON_CONTAINS" | "JSON_CONTAINS_PATH" | "JSON_LENGTH"
                | "JSON_KEYS" | "JSON_TYPE" | "JSON_VALID" | "JSON_QUOTE" | "JSON_SEARCH"
                // network addresses
                | "INET_ATON" | "INET_NTOA" | "INET6_ATON" | "INET6_NTOA"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Dialect, MARIADB};
    use sqlparser::parser::Parser;

    fn of(sql: &str) -> bool {
        let statements = Parser::parse_sql(MARIADB.parser(), sql).expect("parses");
        let Some(sqlparser::ast::Statement::Query(q)) = statements.first() else {
            panic!("not a query: {sql}")
        };
        repeatable(q)
    }

    #[test]
    fn builtin_calls_repeat_effects_do_not() {
        for sql in [
            "SELECT tenant_id, COUNT(*), AVG(balance) FROM users GROUP BY tenant_id ORDER BY 1",
            "SELECT DATE_FORMAT(created_at, '%Y-%m') AS ym, MIN(id) FROM m GROUP BY ym",
            "SELECT DISTINCT LOWER(name), WEIGHT_STRING(name) FROM users WHERE status = @s",
            "SELECT name FROM users WHERE user_id > 3 ORDER BY name LIMIT 5 FOR UPDATE",
        ] {
            assert!(of(sql), "{sql}");
        }
        for sql in [
            "SELECT name, SLEEP(1) FROM users ORDER BY name",
            "SELECT GET_LOCK('x', 1), name FROM users ORDER BY name",
            "SELECT name FROM users WHERE NEXTVAL(s) > 0 ORDER BY name",
            "SELECT @n := @n + 1, name FROM users ORDER BY name",
            "SELECT my_audit(name) FROM users ORDER BY name",
            "SELECT app.f(name) FROM users ORDER BY 1",
        ] {
            assert!(!of(sql), "{sql}");
        }
    }
}
