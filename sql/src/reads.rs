//! Which statements a replica may answer: plain reads only. Anything that
//! locks, writes, changes session state or asks about the primary's own
//! state (`LAST_INSERT_ID()`, `GET_LOCK()`, `FOUND_ROWS()` ...) goes to the
//! primary, as does any statement carrying the hint `/* shardgate:primary */`.
//! Among those that go to the primary, [`writes`] tells the ones a
//! read-only user may not send: those MariaDB's `read_only` refuses, and
//! those whose effect the proxy cannot see (procedures, SQL-level prepared
//! statements, compound statements).

use super::dialect::Dialect;
use super::label::statement_label;
use super::lex::{Spanned, Token, TokenList, Tokens};

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
    replica_safe_lexed(dialect, sql, TokenList::of(sql).tokens())
}

/// [`replica_safe`] from the tokens of `sql`, lexed once for every reader
/// of the statement.
pub fn replica_safe_lexed(dialect: &dyn Dialect, sql: &str, lexed: Tokens<'_, '_>) -> bool {
    if contains_ignore_case(sql, PRIMARY_HINT) {
        return false;
    }
    let first_word = lexed
        .iter()
        .map(|s| s.token)
        .find(|t| !matches!(t, Token::Punct(b'(')));
    if !first_word.is_some_and(|t| t.is_word("SELECT") || t.is_word("WITH")) {
        return false;
    }
    for (i, spanned) in lexed.iter().enumerate() {
        let token = &spanned.token;
        let next = lexed.get(i + 1).map(|s| s.token);
        let next = next.as_ref();
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

/// First keywords of statements that write, besides those
/// [`statement_label`] calls insert, replace, update, delete or ddl; or
/// that run SQL the proxy does not see (`CALL`, `PREPARE`, `EXECUTE`, and
/// compound statements); or that change or hold up the server (`SHUTDOWN`,
/// `PURGE`, `FLUSH`, ...), which its backend user may be allowed to.
const WRITING_STATEMENTS: &[&str] = &[
    "LOAD",
    "GRANT",
    "REVOKE",
    "OPTIMIZE",
    "REPAIR",
    "CALL",
    "PREPARE",
    "EXECUTE",
    "IMPORT",
    "INSTALL",
    "UNINSTALL",
    "BINLOG",
    "PURGE",
    "RESET",
    "CHANGE",
    "SHUTDOWN",
    "FLUSH",
    "BACKUP",
    "STOP",
    "IF",
    "CASE",
    "LOOP",
    "WHILE",
    "REPEAT",
    "FOR",
];

/// Functions that write: the next value of a sequence.
const WRITING_FUNCTIONS: &[&str] = &["NEXTVAL", "SETVAL"];

/// Whether any statement of `sql` (each between `;`s) writes, as MariaDB's
/// `read_only` sees it: INSERT, REPLACE, UPDATE, DELETE, LOAD DATA, DDL
/// (temporary tables too: the proxy cannot tell them apart from the
/// statements that use them), TRUNCATE, `LOCK TABLES ... WRITE`, `SELECT
/// ... FOR UPDATE` (refused by `read_only`, unlike `LOCK IN SHARE MODE`),
/// `ANALYZE TABLE`, a sequence's next value, a file written on the server
/// (`INTO OUTFILE | DUMPFILE`, which `read_only` allows but the proxy's
/// backend user may be able to write), `SET GLOBAL`, `SET PASSWORD`,
/// `START SLAVE | REPLICA`, and the statements of [`WRITING_STATEMENTS`].
pub fn writes_lexed(dialect: &dyn Dialect, sql: &str, lexed: Tokens<'_, '_>) -> bool {
    lexed
        .split(|s| s.token == Token::Punct(b';'))
        .any(|statement| statement_writes(dialect, sql, statement))
}

fn statement_writes(dialect: &dyn Dialect, sql: &str, tokens: Tokens<'_, '_>) -> bool {
    let Some(first) = tokens.first() else {
        return false;
    };
    let word = |k: usize, w: &str| tokens.get(k).is_some_and(|t| t.token.is_word(w));
    let label = statement_label(&sql.as_bytes()[first.start..]);
    if matches!(label, "insert" | "replace" | "update" | "delete" | "ddl")
        || WRITING_STATEMENTS.iter().any(|w| word(0, w))
        || (word(0, "BEGIN") && word(1, "NOT") && word(2, "ATOMIC"))
        || (word(0, "START") && (word(1, "SLAVE") || word(1, "REPLICA")))
        || (word(0, "ANALYZE")
            && ["TABLE", "TABLES", "LOCAL", "NO_WRITE_TO_BINLOG"]
                .iter()
                .any(|w| word(1, w)))
    {
        return true;
    }
    if word(0, "LOCK") {
        return tokens.iter().any(|t| t.token.is_word("WRITE"));
    }
    let global = |t: &Spanned<'_>| {
        t.token.is_word("GLOBAL")
            || matches!(t.token, Token::SysVar(v)
                if v.get(..7).is_some_and(|scope| scope.eq_ignore_ascii_case("global.")))
    };
    if word(0, "SET")
        && (tokens.iter().any(|t| global(&t))
            || word(1, "PASSWORD")
            || (word(1, "DEFAULT") && word(2, "ROLE")))
    {
        return true;
    }
    let exclusive: Vec<&str> = dialect.exclusive_lock_clause().split(' ').collect();
    (0..tokens.len()).any(|i| {
        let next = tokens.get(i + 1).map(|s| s.token);
        let function = matches!(tokens.at(i).token, Token::Word(w)
            if next == Some(Token::Punct(b'('))
                && WRITING_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(w)));
        let next_value = word(i, "NEXT") && word(i + 1, "VALUE");
        let locks = exclusive.iter().enumerate().all(|(k, w)| word(i + k, w));
        let file = word(i, "INTO") && (word(i + 1, "OUTFILE") || word(i + 1, "DUMPFILE"));
        function || next_value || locks || file
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::{replica_safe, writes_lexed};
    use crate::dialect::MARIADB;
    use crate::lex::TokenList;

    fn writes(sql: &str) -> bool {
        writes_lexed(&MARIADB, sql, TokenList::of(sql).tokens())
    }

    /// As MariaDB 10.11's `read_only` answers a user without READ_ONLY
    /// ADMIN (measured), and stricter where the proxy cannot see the effect.
    #[test]
    fn writes_are_what_read_only_refuses() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "/* c */ replace into t values (1)",
            "UPDATE t SET a = 1 WHERE 1 = 0",
            "DELETE FROM t",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
            "CREATE TABLE t (id INT)",
            "CREATE TEMPORARY TABLE t (id INT)",
            "DROP TABLE IF EXISTS t",
            "ALTER TABLE t ADD c INT",
            "TRUNCATE t",
            "RENAME TABLE a TO b",
            "LOCK TABLES t READ, u LOW_PRIORITY WRITE",
            "SELECT * FROM t WHERE id = 1 FOR UPDATE",
            "SELECT NEXTVAL(s)",
            "SELECT NEXT VALUE FOR s",
            "ANALYZE TABLE t",
            "OPTIMIZE TABLE t",
            "GRANT SELECT ON *.* TO u",
            "CALL p()",
            "PREPARE s FROM 'SELECT 1'",
            "EXECUTE IMMEDIATE 'DELETE FROM t'",
            "BEGIN NOT ATOMIC DELETE FROM t; END",
            "SET GLOBAL max_connections = 10",
            "SET @@global.max_connections = 10",
            "SHUTDOWN",
            "SELECT 1; DELETE FROM t",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "SELECT a INTO DUMPFILE '/tmp/x' FROM t",
            "SET PASSWORD FOR root = PASSWORD('x')",
            "SET DEFAULT ROLE r FOR u",
            "FLUSH TABLES WITH READ LOCK",
            "START SLAVE",
            "STOP REPLICA",
            "SET @a = NEXTVAL(s)",
        ] {
            assert!(writes(sql), "{sql}");
        }
    }

    #[test]
    fn reads_and_session_statements_do_not_write() {
        for sql in [
            "SELECT * FROM t",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT 'FOR UPDATE', `update` FROM t",
            "SELECT a INTO @v FROM t",
            "SHOW TABLES",
            "DESCRIBE t",
            "EXPLAIN DELETE FROM t",
            "ANALYZE SELECT * FROM t",
            "LOCK TABLES t READ",
            "UNLOCK TABLES",
            "SET @a = 1, sql_mode = ''",
            "SET SESSION wait_timeout = 10",
            "BEGIN",
            "START TRANSACTION READ ONLY",
            "SET @password = 1, @role = 'x'",
            "SET ROLE admin",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "XA START 'x'",
            "DO 1",
            "HANDLER t OPEN",
            "SELECT LASTVAL(s)",
            "",
        ] {
            assert!(!writes(sql), "{sql}");
        }
    }

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
