//! The SQL a data node runs: the original text with each logical table name
//! replaced by the node's physical one (comments, hints, aliases and
//! formatting untouched), and `?`
//! parameters bound as literals where a statement runs as text.

use super::analyze::Replacement;
use super::params::ParamValue;
use crate::dialect::{Dialect, Placeholder};
use crate::lex::{Token, TokenList};

/// `sql` with each replacement's range set to the physical name of its table.
/// `physical` maps a logical table (lower case) to its name on this node.
pub fn splice_tables(
    sql: &str,
    replacements: &[Replacement],
    physical: impl Fn(&str) -> String,
    dialect: &dyn Dialect,
) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut from = 0;
    for r in replacements {
        if r.start < from {
            continue;
        }
        out.push_str(&sql[from..r.start]);
        dialect.push_quoted(&mut out, &physical(&r.table));
        from = r.end;
    }
    out.push_str(&sql[from..]);
    out
}

/// `sql` with every parameter marker replaced by the value of its
/// parameter (`params`: the statement's parameters).
pub fn with_params_bound(dialect: &dyn Dialect, sql: &str, params: &[ParamValue]) -> String {
    bind_params(sql, &dialect.placeholders(sql), params)
}

/// `sql` with each marker of `placeholders` (its markers) replaced by the
/// value of its parameter; a marker without a value stays.
pub fn bind_params(sql: &str, placeholders: &[Placeholder], params: &[ParamValue]) -> String {
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut from = 0;
    for p in placeholders {
        let Some(value) = params.get(p.index) else {
            continue;
        };
        out.push_str(&sql[from..p.start]);
        out.push_str(&value.sql_literal());
        from = p.end;
    }
    out.push_str(&sql[from..]);
    out
}

/// A node statement cut from a statement, some of its markers left out:
/// `sql` with its markers, in text order, replaced by `values` (the
/// values of the markers it kept, in the same order).
pub fn bind_in_order(dialect: &dyn Dialect, sql: &str, values: &[ParamValue]) -> String {
    let in_order: Vec<Placeholder> = dialect
        .placeholders(sql)
        .into_iter()
        .enumerate()
        .map(|(index, p)| Placeholder { index, ..p })
        .collect();
    bind_params(sql, &in_order, values)
}

/// For a node's `UPDATE` that assigns sharding columns (`columns`, lower
/// case): a `SELECT COUNT(*) ... FOR UPDATE` of the rows it matches whose
/// sharding values it would change. Those rows would have to move to
/// another node; when there are none the UPDATE runs where it is (an ORM
/// saving every column assigns the sharding column its own value). None
/// when the statement is not such an UPDATE.
pub fn move_guard(dialect: &dyn Dialect, update: &str, columns: &[&str]) -> Option<String> {
    let list = TokenList::of_statement(update);
    let tokens = list.tokens();
    if !tokens.first()?.token.is_word("UPDATE") {
        return None;
    }
    let mut depth = 0usize;
    let (mut set, mut where_at, mut tail_at) = (None, None, None);
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            w if w.is_word("SET") && set.is_none() => set = Some(i),
            w if w.is_word("WHERE") && set.is_some() && where_at.is_none() => where_at = Some(i),
            w if (w.is_word("ORDER") || w.is_word("LIMIT")) && set.is_some() => {
                tail_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let set = set?;
    let table_from = tokens
        .slice(1..set)
        .iter()
        .find(|t| !(t.token.is_word("LOW_PRIORITY") || t.token.is_word("IGNORE")))?
        .start;
    let table = &update[table_from..tokens.at(set).start];
    let end = tail_at.map_or(update.len(), |i| tokens.at(i).start);
    let assignments_end = where_at.map_or(end, |i| tokens.at(i).start);
    let condition = where_at.map(|i| update[tokens.at(i).end..end].trim());
    // `target = value` pairs of the SET list, split at top-level commas.
    let mut moved = Vec::new();
    let mut from = set + 1;
    let mut depth = 0usize;
    let list_end = tokens
        .iter()
        .position(|t| t.start >= assignments_end)
        .unwrap_or(tokens.len());
    for i in set + 1..=list_end {
        let at_end = i == list_end;
        match tokens.get(i).map(|t| t.token) {
            Some(Token::Punct(b'(')) if !at_end => depth += 1,
            Some(Token::Punct(b')')) if !at_end => depth = depth.saturating_sub(1),
            Some(Token::Punct(b',')) if depth == 0 && !at_end => {}
            _ if !at_end => continue,
            _ => {}
        }
        let part = tokens.slice(from..i);
        from = i + 1;
        let Some(eq) = part.iter().position(|t| t.token == Token::Punct(b'=')) else {
            continue;
        };
        let (Some(target_last), Some(value_first), Some(value_last)) = (
            eq.checked_sub(1).map(|k| part.at(k)),
            part.get(eq + 1),
            part.last(),
        ) else {
            continue;
        };
        let column = match target_last.token {
            Token::Word(w) | Token::QuotedIdent(w) => w.to_ascii_lowercase(),
            _ => continue,
        };
        if columns.contains(&column.as_str()) {
            let target = &update[part.at(0).start..target_last.end];
            let value = &update[value_first.start..value_last.end];
            moved.push(dialect.null_safe_equal(target, value));
        }
    }
    if moved.is_empty() {
        return None;
    }
    let unchanged = moved.join(" AND ");
    let lock = dialect.exclusive_lock_clause();
    Some(match condition {
        Some(c) => {
            format!("SELECT COUNT(*) FROM {table}WHERE ({c}) AND NOT ({unchanged}) {lock}")
        }
        None => format!("SELECT COUNT(*) FROM {table}WHERE NOT ({unchanged}) {lock}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::numbered::Numbered;
    use crate::dialect::MARIADB;
    use crate::shard::analyze::{analyze, Analysis};
    use shardgate_rules::{Config, ShardingRules};

    fn rules() -> ShardingRules {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        ShardingRules::new(&config).unwrap()
    }

    fn rewritten(sql: &str, table: &'static str) -> String {
        let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules(), "wework").unwrap() else {
            panic!("not sharded: {sql}");
        };
        splice_tables(
            sql,
            &st.replacements,
            |t| {
                if t == "users" {
                    table.to_owned()
                } else {
                    t.to_owned()
                }
            },
            &MARIADB,
        )
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
    fn updates_of_sharding_columns_are_guarded() {
        assert_eq!(
            move_guard(
                &MARIADB,
                "UPDATE `message_records_202408` SET `tenant_id` = 'b', `body` = CONCAT('a', ','), sender = 1 WHERE (`message_records_202408`.`id`, created_at) = (1, '2024-08-01')",
                &["tenant_id", "created_at"]
            )
            .as_deref(),
            Some("SELECT COUNT(*) FROM `message_records_202408` WHERE ((`message_records_202408`.`id`, created_at) = (1, '2024-08-01')) AND NOT (`tenant_id` <=> ('b')) FOR UPDATE")
        );
        assert_eq!(
            move_guard(&MARIADB, "UPDATE IGNORE users_1 u SET u.user_id = u.user_id + 0, name = 'x' ORDER BY name LIMIT 1", &["user_id"]).as_deref(),
            Some("SELECT COUNT(*) FROM users_1 u WHERE NOT (u.user_id <=> (u.user_id + 0)) FOR UPDATE")
        );
        assert_eq!(
            move_guard(
                &MARIADB,
                "UPDATE users_1 SET name = 'x' WHERE user_id = 1",
                &["user_id"]
            ),
            None
        );
        assert_eq!(
            move_guard(&MARIADB, "DELETE FROM users_1", &["user_id"]),
            None
        );
    }

    #[test]
    fn params_bound_as_literals() {
        let sql = "SELECT * FROM users WHERE user_id = ? AND name = ?";
        let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules(), "wework").unwrap() else {
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
                        charset: crate::text::ClientCharset::named("latin1"),
                    }
                ]
            ),
            "SELECT * FROM users WHERE user_id = 7 AND name = CONVERT(X'78' USING latin1)"
        );
    }

    #[test]
    fn the_move_guard_is_written_in_the_dialect() {
        assert_eq!(
            move_guard(
                &Numbered,
                "UPDATE users_1 SET user_id = $1 WHERE name = $2",
                &["user_id"]
            )
            .as_deref(),
            Some("SELECT COUNT(*) FROM users_1 WHERE (name = $2) AND NOT (user_id IS NOT DISTINCT FROM ($1)) FOR NO KEY UPDATE")
        );
    }
}
