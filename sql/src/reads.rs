//! Which statements a replica may answer: plain reads only. Anything that
//! locks, writes, changes session state or asks about the primary's own
//! state (`LAST_INSERT_ID()`, `GET_LOCK()`, `FOUND_ROWS()` ...) goes to the
//! primary, as does any statement carrying the hint `/* shardgate:primary */`.

use super::dialect::Dialect;
use super::lex::{Lexer, Spanned, Token};

/// The hint that sends a read to the primary.
pub const PRIMARY_HINT: &str = "shardgate:primary";

/// Functions whose answer or effect belongs to the primary connection.
const PRIMARY_FUNCTIONS: &[&str] = &[
    "LAST_INSERT_ID",
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "FOUND_ROWS",
    "ROW_COUNT",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "MASTER_POS_WAIT",
    "MASTER_GTID_WAIT",
    "BINLOG_GTID_POS",
];

/// Per-connection diagnostics that only the connection of the client's
/// previous statement can answer.
const PRIMARY_VARIABLES: &[&str] = &[
    "warning_count",
    "error_count",
    "identity",
    "last_insert_id",
    "insert_id",
    "last_gtid",
];

/// Whether `sql`, written in `dialect`, is a read a replica may answer.
pub fn replica_safe(dialect: &dyn Dialect, sql: &str) -> bool {
    replica_safe_lexed(dialect, sql, &Lexer::new(sql).collect::<Vec<_>>())
}

/// [`replica_safe`] from the tokens of `sql`, lexed once for every reader
/// of the statement.
pub fn replica_safe_lexed(dialect: &dyn Dialect, sql: &str, lexed: &[Spanned<'_>]) -> bool {
    if contains_ignore_case(sql, PRIMARY_HINT) {
        return false;
    }
    let first_word = lexed
        .iter()
        .map(|s| &s.token)
        .find(|t| !matches!(t, Token::Punct(b'(')));
    if !first_word.is_some_and(|t| t.is_word("SELECT") || t.is_word("WITH")) {
        return false;
    }
    for (i, spanned) in lexed.iter().enumerate() {
        let token = &spanned.token;
        let next = lexed.get(i + 1).map(|s| &s.token);
        let locks = dialect.lock_clause_at(lexed, i);
        let stateful = token.is_word("INTO")
            || token.is_word("SQL_CALC_FOUND_ROWS")
            || (token.is_word("NEXT") && next.is_some_and(|n| n.is_word("VALUE")))
            || (matches!(token, Token::Punct(b':')) && next == Some(&Token::Punct(b'=')));
        let primary_function = matches!(token, Token::Word(w)
            if next == Some(&Token::Punct(b'('))
                && PRIMARY_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(w)));
        let diagnostics = matches!(token, Token::SysVar(v)
        if PRIMARY_VARIABLES.iter().any(|name| {
            let v = v.rsplit('.').next().unwrap_or(v);
            v.eq_ignore_ascii_case(name)
        }));
        if locks || stateful || primary_function || diagnostics {
            return false;
        }
    }
    true
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::replica_safe;
    use crate::dialect::MARIADB;

    #[test]
    fn plain_reads_may_use_a_replica() {
        for sql in [
            "SELECT * FROM users WHERE user_id = 5",
            "select count(*) from sys_permissions",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
            "SELECT name FROM users WHERE name = 'for update'",
            "SELECT name FROM users /* FOR UPDATE */ WHERE user_id = 5",
            "SELECT name FROM users -- LOCK IN SHARE MODE",
            "SELECT @x, SLEEP(0)",
        ] {
            assert!(replica_safe(&MARIADB, sql), "{sql}");
        }
    }

    #[test]
    fn locking_stateful_and_hinted_statements_use_the_primary() {
        for sql in [
            "UPDATE users SET name = 'a'",
            "SELECT * FROM users WHERE user_id = 5 FOR UPDATE",
            "SELECT * FROM users FOR SHARE",
            "SELECT * FROM users LOCK IN SHARE MODE",
            "SELECT * FROM users WHERE user_id = 5 FOR UPDATE NOWAIT",
            "SELECT * FROM users LIMIT 1 FOR UPDATE SKIP LOCKED",
            "SELECT * FROM users WHERE id IN (SELECT id FROM t FOR UPDATE)",
            "SELECT LAST_INSERT_ID()",
            "select get_lock('a', 1)",
            "SELECT SQL_CALC_FOUND_ROWS * FROM users LIMIT 1",
            "SELECT FOUND_ROWS()",
            "SELECT name INTO @n FROM users LIMIT 1",
            "SELECT @n := name FROM users LIMIT 1",
            "SELECT NEXT VALUE FOR s",
            "SELECT /* shardgate:primary */ * FROM users",
            "SELECT @@warning_count",
            "SELECT @@session.error_count, 1",
            "/* ShardGate:Primary */ SELECT 1",
            "SHOW TABLES",
            "SET @a = 1",
        ] {
            assert!(!replica_safe(&MARIADB, sql), "{sql}");
        }
    }

    #[test]
    fn locking_reads_are_the_dialects() {
        use crate::dialect::numbered::Numbered;
        let sql = "SELECT * FROM users WHERE user_id = $1 FOR NO KEY UPDATE";
        assert!(!replica_safe(&Numbered, sql));
        assert!(replica_safe(
            &Numbered,
            "SELECT * FROM users WHERE lock IN (1, 2)"
        ));
    }
}
