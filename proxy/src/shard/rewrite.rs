//! The SQL a data node runs: the original text with each logical table name
//! replaced by the node's physical one (comments, hints, aliases and
//! formatting untouched), INSERT rows regrouped per node, and `?`
//! parameters bound as literals where a statement runs as text.

use super::analyze::{InsertShape, Replacement};
use super::params::ParamValue;

/// `sql` with each replacement's range set to the physical name of its table.
/// `physical` maps a logical table (lower case) to its name on this node.
pub fn splice_tables(
    sql: &str,
    replacements: &[Replacement],
    physical: impl Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut from = 0;
    for r in replacements {
        if r.start < from {
            continue;
        }
        out.push_str(&sql[from..r.start]);
        out.push('`');
        out.push_str(&physical(&r.table).replace('`', "``"));
        out.push('`');
        from = r.end;
    }
    out.push_str(&sql[from..]);
    out
}

/// An INSERT keeping only the rows `keep` (indexes into `shape.rows`), with
/// `extra` appended to the column list and `extra_values[i]` to row i.
pub fn insert_rows(
    sql: &str,
    shape: &InsertShape,
    keep: &[usize],
    extra: Option<(&str, &[String])>,
) -> String {
    let (Some(first), Some(last)) = (shape.rows.first(), shape.rows.last()) else {
        return sql.to_owned();
    };
    let mut out = String::with_capacity(sql.len());
    let head = &sql[..first.start];
    match (extra, shape.columns_end) {
        (Some((column, _)), Some(at)) if !shape.set_form => {
            out.push_str(&head[..at]);
            out.push_str(", `");
            out.push_str(column);
            out.push('`');
            out.push_str(&head[at..]);
        }
        _ => out.push_str(head),
    }
    for (n, &i) in keep.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let row = &shape.rows[i];
        let text = &sql[row.start..row.end];
        match extra {
            Some((column, values)) if shape.set_form => {
                out.push_str(text);
                out.push_str(&format!(", `{column}` = {}", values[i]));
            }
            Some((_, values)) => {
                // Insert before the row's closing parenthesis.
                let close = text.rfind(')').unwrap_or(text.len());
                out.push_str(&text[..close]);
                out.push_str(", ");
                out.push_str(&values[i]);
                out.push_str(&text[close..]);
            }
            None => out.push_str(text),
        }
    }
    out.push_str(&sql[last.end..]);
    out
}

/// `sql` with every `?` (at the given byte offsets) replaced by its value.
pub fn bind_params(sql: &str, placeholders: &[usize], params: &[ParamValue]) -> String {
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut from = 0;
    for (&at, value) in placeholders.iter().zip(params) {
        out.push_str(&sql[from..at]);
        out.push_str(&value.sql_literal());
        from = at + 1;
    }
    out.push_str(&sql[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::analyze::{analyze, Analysis};
    use shardgate_rules::{Config, ShardingRules};

    fn rules() -> ShardingRules {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        ShardingRules::new(&config).unwrap()
    }

    fn rewritten(sql: &str, table: &'static str) -> String {
        let Analysis::Sharded(st) = analyze(sql, &rules(), "wework").unwrap() else {
            panic!("not sharded: {sql}");
        };
        splice_tables(sql, &st.replacements, |t| {
            if t == "users" {
                table.to_owned()
            } else {
                t.to_owned()
            }
        })
    }

    #[test]
    fn golden_table_rewrites() {
        for (sql, expected) in [
            (
                "SELECT * FROM users WHERE user_id = 5",
                "SELECT * FROM `users_1` WHERE user_id = 5",
            ),
            (
                "select u.name /* keep */ from `USERS` u where u.user_id=5",
                "select u.name /* keep */ from `users_1` u where u.user_id=5",
            ),
            (
                "SELECT users.name, users.email FROM wework.users WHERE users.user_id = 5",
                "SELECT `users_1`.name, `users_1`.email FROM `users_1` WHERE `users_1`.user_id = 5",
            ),
            (
                "SELECT /*+ hint */ u.*, c.v FROM users u JOIN sys_configs c ON c.k = u.name",
                "SELECT /*+ hint */ u.*, c.v FROM `users_1` u JOIN `sys_configs` c ON c.k = u.name",
            ),
            (
                "UPDATE users SET name = 'users' WHERE user_id = 5",
                "UPDATE `users_1` SET name = 'users' WHERE user_id = 5",
            ),
            (
                "DROP TABLE IF EXISTS users",
                "DROP TABLE IF EXISTS `users_1`",
            ),
            (
                "CREATE TABLE users (user_id BIGINT PRIMARY KEY, name VARCHAR(10))",
                "CREATE TABLE `users_1` (user_id BIGINT PRIMARY KEY, name VARCHAR(10))",
            ),
        ] {
            assert_eq!(rewritten(sql, "users_1"), expected, "{sql}");
        }
    }

    #[test]
    fn insert_rows_regrouped_with_generated_keys() {
        let sql = "INSERT INTO users (name, email) VALUES ('a', NULL), ('b', 'x'), ('c', 'y')";
        let Analysis::Sharded(st) = analyze(sql, &rules(), "wework").unwrap() else {
            panic!()
        };
        let shape = st.insert.as_ref().unwrap();
        let ids = vec!["11".to_string(), "12".to_string(), "13".to_string()];
        assert_eq!(
            insert_rows(sql, shape, &[0, 2], Some(("user_id", &ids))),
            "INSERT INTO users (name, email, `user_id`) VALUES ('a', NULL, 11), ('c', 'y', 13)"
        );
        assert_eq!(
            insert_rows(sql, shape, &[1], None),
            "INSERT INTO users (name, email) VALUES ('b', 'x')"
        );
    }

    #[test]
    fn insert_set_form_gets_the_generated_key() {
        let sql = "INSERT INTO users SET name = 'a', email = CONCAT('x', '@y')";
        let Analysis::Sharded(st) = analyze(sql, &rules(), "wework").unwrap() else {
            panic!()
        };
        let shape = st.insert.as_ref().unwrap();
        assert!(shape.set_form);
        let ids = vec!["7".to_string()];
        assert_eq!(
            insert_rows(sql, shape, &[0], Some(("user_id", &ids))),
            "INSERT INTO users SET name = 'a', email = CONCAT('x', '@y'), `user_id` = 7"
        );
    }

    #[test]
    fn params_bound_as_literals() {
        let sql = "SELECT * FROM users WHERE user_id = ? AND name = ?";
        let Analysis::Sharded(st) = analyze(sql, &rules(), "wework").unwrap() else {
            panic!()
        };
        assert_eq!(
            bind_params(
                sql,
                &st.placeholders,
                &[
                    ParamValue::Int(7),
                    ParamValue::Text {
                        bytes: b"x".to_vec(),
                        charset: crate::sql::text::ClientCharset::named("latin1"),
                    }
                ]
            ),
            "SELECT * FROM users WHERE user_id = 7 AND name = _latin1 X'78'"
        );
    }
}
