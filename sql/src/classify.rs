//! Classifies a text statement for the session layer: `USE`, the session
//! state a `SET` changes (so it can be replayed on whichever backend
//! connection serves the session next), and what ties a session to one
//! backend connection (temporary tables, user locks, `LOCK TABLES`, ...).

use super::dialect::Dialect;
use super::lex::{Spanned, Token, TokenList, Tokens};

/// What the session layer needs to know about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classified {
    pub kind: Kind,
    /// The session must keep its backend connection from now on, and why.
    pub pins_session: Option<&'static str>,
    /// The connection must also serve the next statement
    /// (`SQL_CALC_FOUND_ROWS`).
    pub holds_next: bool,
    /// `SET TRANSACTION <characteristics>`: they apply to the next
    /// transaction only (the text after TRANSACTION).
    pub next_transaction: Option<String>,
    /// The statement reads the connection's last insert id.
    pub reads_last_insert_id: bool,
    /// SHOW TABLES / CREATE TABLE / COLUMNS / INDEX, DESCRIBE, or a read of
    /// information_schema: metadata that names physical tables.
    pub reads_metadata: bool,
    /// `DATABASE()` / `SCHEMA()` items of the select list, which must show
    /// the logical database rather than the backend's physical one.
    pub database_items: Vec<DatabaseItem>,
    /// The statement commits an open transaction before it runs (DDL,
    /// `BEGIN`, `LOCK TABLES`, ...), as MariaDB does.
    pub commits_implicitly: bool,
    /// User variables the statement assigns other than to a literal
    /// (`SELECT ... INTO @v`, `@v := ...`, `SET @v = expression`, a
    /// procedure's OUT argument): their values must be read back.
    pub assigned_vars: Vec<String>,
}

/// A `DATABASE()` select item: its byte range and whether an alias follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseItem {
    pub start: usize,
    pub end: usize,
    pub aliased: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kind {
    /// `USE db`.
    Use(String),
    /// `SET` of session state.
    Set(Vec<Assignment>),
    /// `BEGIN` / `START TRANSACTION ...`, as written.
    Begin(String),
    /// `KILL [QUERY | CONNECTION] id`: the id is a proxy connection id, which
    /// means nothing to a backend.
    Kill,
    /// `SHOW DATABASES | SCHEMAS [LIKE 'pattern']` (the pattern as written
    /// inside its quotes): the proxy's logical databases.
    ShowDatabases(Option<String>),
    /// `CREATE | DROP | ALTER DATABASE | SCHEMA`: logical databases come
    /// from the configuration.
    DatabaseDdl,
    /// `COMMIT`, `ROLLBACK` (not `ROLLBACK TO`), `SAVEPOINT`, `ROLLBACK TO`,
    /// `RELEASE SAVEPOINT`: every data source in the transaction runs it.
    TransactionControl {
        ends: bool,
        savepoint: Option<Savepoint>,
    },
    #[default]
    Other,
}

/// What a savepoint statement does, to the savepoint it names (as written,
/// without quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Savepoint {
    Set(String),
    RollbackTo(String),
    Release(String),
}

/// One piece of session state a `SET` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// What it sets: a lower-case variable name, `@name` for a user
    /// variable, `names`, or `transaction`.
    pub key: String,
    /// Replayable text: `SET <fragment>` restores the state.
    pub fragment: String,
    /// The value is an expression: the resulting value must be read back
    /// (`SELECT @@session.<key>`) before it can be replayed.
    pub read_back: bool,
}

/// Classifies `sql`, which may hold several statements separated by `;`.
pub fn classify(dialect: &dyn Dialect, sql: &str) -> Classified {
    classify_lexed(dialect, sql, TokenList::of(sql).tokens())
}

/// [`classify`] from the tokens of `sql`, lexed once for every reader of
/// the statement.
pub fn classify_lexed(dialect: &dyn Dialect, sql: &str, tokens: Tokens<'_, '_>) -> Classified {
    // Slices, not copies: a statement may have millions of tokens.
    let statements: Vec<Tokens<'_, '_>> = tokens
        .split(|s| s.token == Token::Punct(b';'))
        .filter(|statement| !statement.is_empty())
        .collect();
    let mut out = Classified::default();
    for &tokens in &statements {
        scan_functions(tokens, &mut out);
        scan_assigned_vars(tokens, &mut out.assigned_vars);
        out.commits_implicitly |= commits_implicitly(tokens);
    }
    out.reads_metadata = reads_metadata(statements.iter().flat_map(Tokens::iter));
    match statements.as_slice() {
        [] => {}
        &[only] => {
            classify_statement(dialect, sql, only, &mut out);
            out.database_items = database_items(only);
        }
        several => {
            // The proxy cannot tell which statements of a multi-statement ran
            // before one failed, so session changes inside one tie the session
            // to its connection instead of being replayed.
            for &tokens in several {
                let mut one = Classified::default();
                classify_statement(dialect, sql, tokens, &mut one);
                out.holds_next |= one.holds_next;
                if one.pins_session.is_some() {
                    out.pins_session = one.pins_session;
                } else if one.kind != Kind::Other {
                    out.pins_session = Some("session change inside a multi-statement");
                }
            }
        }
    }
    out
}

/// Words after a select item that are not an alias.
const CLAUSE_WORDS: [&str; 12] = [
    "FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "INTO", "FOR", "LOCK", "WINDOW",
    "EXCEPT",
];

/// `DATABASE()` and `SCHEMA()` standing as whole items of a top-level select list.
fn database_items(tokens: Tokens<'_, '_>) -> Vec<DatabaseItem> {
    if !tokens.first().is_some_and(|t| t.token.is_word("SELECT")) {
        return Vec::new();
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && (w.eq_ignore_ascii_case("DATABASE") || w.eq_ignore_ascii_case("SCHEMA")) =>
            {
                let starts_item = i > 0
                    && (tokens.at(i - 1).token == Token::Punct(b',')
                        || tokens.at(i - 1).token.is_word("SELECT")
                        || tokens.at(i - 1).token.is_word("DISTINCT"));
                let call = tokens.get(i + 1).map(|t| t.token) == Some(Token::Punct(b'('))
                    && tokens.get(i + 2).map(|t| t.token) == Some(Token::Punct(b')'));
                if !(starts_item && call) {
                    continue;
                }
                let after = tokens.get(i + 3).map(|t| t.token);
                let ends_item = matches!(
                    after,
                    None | Some(Token::Punct(b',' | b';'))
                        | Some(Token::Word(_) | Token::QuotedIdent(_) | Token::Str(_))
                );
                if !ends_item {
                    continue;
                }
                let aliased = match after {
                    Some(Token::Word(w)) => !CLAUSE_WORDS.iter().any(|c| w.eq_ignore_ascii_case(c)),
                    Some(Token::QuotedIdent(_)) | Some(Token::Str(_)) => true,
                    _ => false,
                };
                items.push(DatabaseItem {
                    start: t.start,
                    end: tokens.at(i + 2).end,
                    aliased,
                });
            }
            _ => {}
        }
    }
    items
}

/// `sql` with each `DATABASE()` item replaced by the logical database name
/// (NULL when none is selected), keeping the column label the client expects.
pub fn with_logical_database(sql: &str, items: &[DatabaseItem], database: Option<&str>) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut from = 0;
    for item in items {
        out.push_str(&sql[from..item.start]);
        match database {
            Some(db) => {
                out.push('\'');
                out.push_str(&db.replace('\'', "''"));
                out.push('\'');
            }
            None => out.push_str("NULL"),
        }
        if !item.aliased {
            out.push_str(" AS `");
            out.push_str(&sql[item.start..item.end].replace('`', "``"));
            out.push('`');
        }
        from = item.end;
    }
    out.push_str(&sql[from..]);
    out
}

/// Whether the statement reads metadata (its first two words, or any
/// mention of information_schema).
fn reads_metadata<'a>(tokens: impl Iterator<Item = Spanned<'a>> + Clone) -> bool {
    let mut words = tokens.clone();
    let Some(first) = words.next() else {
        return false;
    };
    let second = words.next();
    if first.token.is_word("SHOW") {
        return second.is_some_and(|s| {
            [
                "TABLES", "FULL", "CREATE", "COLUMNS", "FIELDS", "INDEX", "INDEXES", "KEYS",
                "TABLE",
            ]
            .iter()
            .any(|w| s.token.is_word(w))
        });
    }
    if first.token.is_word("DESCRIBE")
        || first.token.is_word("DESC")
        || first.token.is_word("EXPLAIN")
    {
        // EXPLAIN SELECT ... is a plan, not metadata.
        return second.is_some_and(|s| {
            matches!(s.token, Token::Word(_) | Token::QuotedIdent(_))
                && ![
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "REPLACE",
                    "EXTENDED",
                    "PARTITIONS",
                    "FORMAT",
                    "ANALYZE",
                ]
                .iter()
                .any(|w| s.token.is_word(w))
        });
    }
    tokens.into_iter().any(|t| match t.token {
        Token::Word(w) | Token::QuotedIdent(w) => w.eq_ignore_ascii_case("information_schema"),
        _ => false,
    })
}

/// Statements that end an open transaction with a COMMIT before they run.
const IMPLICIT_COMMIT: [&str; 16] = [
    "ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE", "LOCK", "BEGIN", "START", "ANALYZE",
    "OPTIMIZE", "REPAIR", "FLUSH", "GRANT", "REVOKE", "CACHE", "INSTALL",
];

fn commits_implicitly(tokens: Tokens<'_, '_>) -> bool {
    let Some(first) = tokens.first() else {
        return false;
    };
    let second = tokens.get(1).map(|s| s.token);
    if !IMPLICIT_COMMIT.iter().any(|w| first.token.is_word(w)) {
        return false;
    }
    if first.token.is_word("START") {
        return second.is_some_and(|s| s.is_word("TRANSACTION"));
    }
    if first.token.is_word("BEGIN") {
        // Not a compound statement (BEGIN NOT ATOMIC).
        return !second.is_some_and(|s| s.is_word("NOT"));
    }
    if first.token.is_word("LOCK") {
        return second.is_some_and(|s| s.is_word("TABLES") || s.is_word("TABLE"));
    }
    // Temporary tables are the session's own: no commit.
    !second.is_some_and(|s| s.is_word("TEMPORARY"))
}

/// User variables a statement assigns from what only the server knows:
/// `@v := expression`, `INTO @a, @b`, `CALL p(@out)`. (`SET @v =
/// expression` is found by `classify_set`.)
fn scan_assigned_vars(tokens: Tokens<'_, '_>, out: &mut Vec<String>) {
    let mut push = |name: &str| {
        if !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            out.push(name.to_owned());
        }
    };
    let is_set = tokens.first().is_some_and(|t| t.token.is_word("SET"));
    let is_call = tokens.first().is_some_and(|t| t.token.is_word("CALL"));
    let mut into = false;
    for (i, t) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).map(|n| n.token);
        match t.token {
            Token::UserVar(name) if is_call => push(name),
            Token::UserVar(name)
                if !is_set
                    && next == Some(Token::Punct(b':'))
                    && tokens.get(i + 2).map(|n| n.token) == Some(Token::Punct(b'=')) =>
            {
                push(name)
            }
            Token::UserVar(name) if into => push(name),
            Token::Word(w) if w.eq_ignore_ascii_case("INTO") => {
                into = matches!(next, Some(Token::UserVar(_)));
                continue;
            }
            Token::Punct(b',') if into => continue,
            _ => {}
        }
        if !matches!(t.token, Token::UserVar(_)) {
            into = false;
        }
    }
}

/// Functions and variables that tie a statement to its connection's history.
fn scan_functions(tokens: Tokens<'_, '_>, out: &mut Classified) {
    for (i, s) in tokens.iter().enumerate() {
        let call = tokens
            .get(i + 1)
            .is_some_and(|n| n.token == Token::Punct(b'('));
        match s.token {
            Token::Word(w) if call && (w.eq_ignore_ascii_case("GET_LOCK")) => {
                out.pins_session = Some("user lock (GET_LOCK)");
            }
            Token::Word(w) if call && w.eq_ignore_ascii_case("LAST_INSERT_ID") => {
                out.reads_last_insert_id = true;
            }
            Token::Word(w) if w.eq_ignore_ascii_case("SQL_CALC_FOUND_ROWS") => {
                out.holds_next = true;
            }
            Token::SysVar(v)
                if v.eq_ignore_ascii_case("identity")
                    || v.eq_ignore_ascii_case("last_insert_id") =>
            {
                out.reads_last_insert_id = true;
            }
            _ => {}
        }
    }
}

fn classify_statement(
    dialect: &dyn Dialect,
    sql: &str,
    tokens: Tokens<'_, '_>,
    out: &mut Classified,
) {
    let Some(first) = tokens.first() else {
        return;
    };
    if dialect.classify_set(sql, tokens, out) {
        return;
    }
    let second = tokens.get(1);
    match first.token {
        t if t.is_word("USE") => {
            if let Some(db) = second.and_then(|s| identifier(s.token)) {
                out.kind = Kind::Use(db.to_owned());
            }
        }
        t if t.is_word("BEGIN")
            || (t.is_word("START") && second.is_some_and(|s| s.token.is_word("TRANSACTION"))) =>
        {
            let end = tokens.last().map_or(first.end, |s| s.end);
            out.kind = Kind::Begin(sql[first.start..end].to_owned());
        }
        t if t.is_word("COMMIT") => {
            out.kind = Kind::TransactionControl {
                ends: true,
                savepoint: None,
            }
        }
        t if t.is_word("KILL") => out.kind = Kind::Kill,
        t if (t.is_word("CREATE") || t.is_word("DROP") || t.is_word("ALTER"))
            && second.is_some_and(|s| s.token.is_word("DATABASE") || s.token.is_word("SCHEMA")) =>
        {
            out.kind = Kind::DatabaseDdl
        }
        t if t.is_word("SHOW")
            && second
                .is_some_and(|s| s.token.is_word("DATABASES") || s.token.is_word("SCHEMAS")) =>
        {
            let rest = tokens.slice(2..);
            match (rest.len(), rest.first(), rest.last()) {
                (0, ..) => out.kind = Kind::ShowDatabases(None),
                (2, Some(like), Some(pattern)) if like.token.is_word("LIKE") => {
                    if let Token::Str(quoted) = pattern.token {
                        let inner = &quoted[1..quoted.len().saturating_sub(1).max(1)];
                        out.kind = Kind::ShowDatabases(Some(inner.to_owned()));
                    }
                }
                _ => {}
            }
        }
        t if t.is_word("ROLLBACK") => {
            let to = tokens.iter().any(|s| s.token.is_word("TO"));
            out.kind = Kind::TransactionControl {
                ends: !to,
                savepoint: to
                    .then(|| savepoint_name(tokens))
                    .flatten()
                    .map(Savepoint::RollbackTo),
            };
        }
        t if t.is_word("SAVEPOINT") || t.is_word("RELEASE") => {
            let op = if t.is_word("SAVEPOINT") {
                Savepoint::Set
            } else {
                Savepoint::Release
            };
            out.kind = Kind::TransactionControl {
                ends: false,
                savepoint: savepoint_name(tokens).map(op),
            }
        }
        t if t.is_word("LOCK") => out.pins_session = Some("LOCK TABLES"),
        t if t.is_word("PREPARE") || t.is_word("EXECUTE") || t.is_word("DEALLOCATE") => {
            out.pins_session = Some("SQL-level prepared statement")
        }
        t if t.is_word("HANDLER") => out.pins_session = Some("HANDLER"),
        t if t.is_word("XA") => out.pins_session = Some("XA transaction"),
        t if t.is_word("CREATE") && second.is_some_and(|s| s.token.is_word("TEMPORARY")) => {
            out.pins_session = Some("temporary table")
        }
        _ => {}
    }
}

pub(crate) fn identifier(token: Token<'_>) -> Option<&str> {
    match token {
        Token::Word(w) | Token::QuotedIdent(w) => Some(w),
        _ => None,
    }
}

/// The savepoint a savepoint statement names: its last token.
fn savepoint_name(tokens: Tokens<'_, '_>) -> Option<String> {
    let last = tokens
        .iter()
        .rev()
        .find(|s| !matches!(s.token, Token::Punct(b';')))?;
    match last.token {
        Token::Word(w) if !w.eq_ignore_ascii_case("SAVEPOINT") => Some(w.to_owned()),
        Token::QuotedIdent(q) => Some(q.replace("``", "`")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::numbered::Numbered;
    use crate::dialect::MARIADB;

    fn set_fragments(sql: &str) -> Vec<(String, String, bool)> {
        match classify(&MARIADB, sql).kind {
            Kind::Set(a) => a
                .into_iter()
                .map(|a| (a.key, a.fragment, a.read_back))
                .collect(),
            other => panic!("not a SET: {other:?}"),
        }
    }

    #[test]
    fn show_databases() {
        assert_eq!(
            classify(&MARIADB, "SHOW DATABASES").kind,
            Kind::ShowDatabases(None)
        );
        assert_eq!(
            classify(&MARIADB, "show schemas like 'test%'").kind,
            Kind::ShowDatabases(Some("test%".into()))
        );
        assert_eq!(
            classify(&MARIADB, "SHOW DATABASES WHERE 1").kind,
            Kind::Other
        );
        assert_eq!(
            classify(&MARIADB, "create schema foo").kind,
            Kind::DatabaseDdl
        );
        assert_eq!(
            classify(&MARIADB, "DROP DATABASE IF EXISTS foo").kind,
            Kind::DatabaseDdl
        );
    }

    #[test]
    fn use_statement() {
        assert_eq!(
            classify(&MARIADB, "use `wework`").kind,
            Kind::Use("wework".into())
        );
        assert_eq!(
            classify(&MARIADB, "USE wework;").kind,
            Kind::Use("wework".into())
        );
    }

    #[test]
    fn set_forms() {
        assert_eq!(
            set_fragments("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci, @a := 5, sql_mode='ANSI'"),
            vec![
                (
                    "names".into(),
                    "NAMES utf8mb4 COLLATE utf8mb4_unicode_ci".into(),
                    false
                ),
                ("@a".into(), "@`a` = 5".into(), false),
                (
                    "sql_mode".into(),
                    "@@session.sql_mode = 'ANSI'".into(),
                    false
                ),
            ]
        );
        assert_eq!(
            set_fragments(
                "set @@SESSION.time_zone = '+05:00', SESSION autocommit=0, @@local.x = -1"
            ),
            vec![
                (
                    "time_zone".into(),
                    "@@session.time_zone = '+05:00'".into(),
                    false
                ),
                (
                    "autocommit".into(),
                    "@@session.autocommit = 0".into(),
                    false
                ),
                ("x".into(), "@@session.x = -1".into(), false),
            ]
        );
    }

    #[test]
    fn expressions_are_read_back() {
        assert_eq!(
            set_fragments(
                "SET sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES'), autocommit=1"
            ),
            vec![
                (
                    "sql_mode".into(),
                    "@@session.sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')".into(),
                    true
                ),
                (
                    "autocommit".into(),
                    "@@session.autocommit = 1".into(),
                    false
                ),
            ]
        );
        let c = classify(
            &MARIADB,
            "SET @x = (SELECT max(id) FROM t), @Y := @x + 1, @z = 5",
        );
        assert!(c.pins_session.is_none());
        assert_eq!(c.assigned_vars, ["x", "y"]);
    }

    #[test]
    fn user_variables_assigned_by_statements() {
        let vars = |sql: &str| classify(&MARIADB, sql).assigned_vars;
        assert_eq!(vars("SELECT 5 INTO @y"), ["y"]);
        assert_eq!(
            vars("SELECT a, b INTO @a, @`B c` FROM t LIMIT 1"),
            ["a", "B c"]
        );
        assert_eq!(vars("SELECT @w := 7, @v:=@v+1"), ["w", "v"]);
        assert_eq!(vars("CALL p(1, @out)"), ["out"]);
        assert!(vars("SELECT @w, @w = 7 FROM t INTO OUTFILE '/x'").is_empty());
        assert!(vars("SET @a = 1").is_empty());
    }

    #[test]
    fn implicit_commits() {
        for sql in [
            "CREATE TABLE t (a INT)",
            "ALTER TABLE t ADD b INT",
            "DROP TABLE t",
            "TRUNCATE t",
            "BEGIN",
            "START TRANSACTION READ ONLY",
            "LOCK TABLES t WRITE",
        ] {
            assert!(classify(&MARIADB, sql).commits_implicitly, "{sql}");
        }
        for sql in [
            "CREATE TEMPORARY TABLE t (a INT)",
            "DROP TEMPORARY TABLE t",
            "BEGIN NOT ATOMIC SELECT 1; END",
            "SELECT 1",
            "COMMIT",
            "START SLAVE",
        ] {
            assert!(!classify(&MARIADB, sql).commits_implicitly, "{sql}");
        }
    }

    #[test]
    fn trailing_semicolon_is_not_part_of_a_value() {
        assert_eq!(
            set_fragments("SET time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;"),
            vec![
                (
                    "time_zone".into(),
                    "@@session.time_zone = '+00:00'".into(),
                    false
                ),
                (
                    "names".into(),
                    "NAMES utf8mb4 COLLATE utf8mb4_unicode_ci".into(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn multi_statements_with_session_changes_pin() {
        assert!(classify(&MARIADB, "SET @a = 1; SELECT @a")
            .pins_session
            .is_some());
        assert!(classify(&MARIADB, "SELECT 1; SELECT 2;")
            .pins_session
            .is_none());
        assert_eq!(classify(&MARIADB, "SELECT 1; SELECT 2;").kind, Kind::Other);
        assert!(classify(&MARIADB, "SELECT 1; SELECT LAST_INSERT_ID()").reads_last_insert_id);
    }

    #[test]
    fn database_function_shows_the_logical_name() {
        let rewrite = |sql: &str| {
            let c = classify(&MARIADB, sql);
            with_logical_database(sql, &c.database_items, Some("wework"))
        };
        assert_eq!(
            rewrite("SELECT DATABASE()"),
            "SELECT 'wework' AS `DATABASE()`"
        );
        assert_eq!(
            rewrite("select database() as db, 1"),
            "select 'wework' as db, 1"
        );
        assert_eq!(
            rewrite("SELECT 1, schema() FROM dual;"),
            "SELECT 1, 'wework' AS `schema()` FROM dual;"
        );
        assert_eq!(
            rewrite("SELECT * FROM information_schema.tables WHERE table_schema = DATABASE()"),
            "SELECT * FROM information_schema.tables WHERE table_schema = DATABASE()"
        );
        assert_eq!(
            rewrite("SELECT CONCAT(DATABASE(), 'x')"),
            "SELECT CONCAT(DATABASE(), 'x')"
        );
        let c = classify(&MARIADB, "SELECT DATABASE()");
        assert_eq!(
            with_logical_database("SELECT DATABASE()", &c.database_items, None),
            "SELECT NULL AS `DATABASE()`"
        );
    }

    #[test]
    fn transaction_statements() {
        assert_eq!(
            classify(&MARIADB, "start transaction read only").kind,
            Kind::Begin("start transaction read only".into())
        );
        assert_eq!(
            classify(&MARIADB, "BEGIN;").kind,
            Kind::Begin("BEGIN".into())
        );
        assert_eq!(
            classify(&MARIADB, "COMMIT").kind,
            Kind::TransactionControl {
                ends: true,
                savepoint: None
            }
        );
        assert_eq!(
            classify(&MARIADB, "rollback work").kind,
            Kind::TransactionControl {
                ends: true,
                savepoint: None
            }
        );
        assert_eq!(
            classify(&MARIADB, "ROLLBACK TO SAVEPOINT a").kind,
            Kind::TransactionControl {
                ends: false,
                savepoint: Some(Savepoint::RollbackTo("a".into()))
            }
        );
        assert_eq!(
            classify(&MARIADB, "rollback work to `b``c`;").kind,
            Kind::TransactionControl {
                ends: false,
                savepoint: Some(Savepoint::RollbackTo("b`c".into()))
            }
        );
        assert_eq!(
            classify(&MARIADB, "savepoint Sp1").kind,
            Kind::TransactionControl {
                ends: false,
                savepoint: Some(Savepoint::Set("Sp1".into()))
            }
        );
        assert_eq!(
            classify(&MARIADB, "RELEASE SAVEPOINT sp1").kind,
            Kind::TransactionControl {
                ends: false,
                savepoint: Some(Savepoint::Release("sp1".into()))
            }
        );
    }

    #[test]
    fn recognises_metadata_statements() {
        for sql in [
            "SHOW TABLES",
            "show full tables from wework like 'u%'",
            "SHOW CREATE TABLE users",
            "DESCRIBE users",
            "desc `users`",
            "SHOW INDEX FROM users",
            "SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'wework'",
        ] {
            assert!(classify(&MARIADB, sql).reads_metadata, "{sql}");
        }
        for sql in ["SELECT 1", "EXPLAIN SELECT * FROM users", "SHOW VARIABLES"] {
            assert!(!classify(&MARIADB, sql).reads_metadata, "{sql}");
        }
    }

    #[test]
    fn global_is_not_session_state() {
        assert_eq!(
            set_fragments("SET GLOBAL max_connections = 10, @@global.x = 1"),
            vec![]
        );
    }

    #[test]
    fn transaction_forms() {
        let c = classify(&MARIADB, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
        assert!(c.holds_next);
        assert_eq!(
            c.next_transaction.as_deref(),
            Some("ISOLATION LEVEL SERIALIZABLE")
        );
        assert_eq!(c.kind, Kind::Other);
        assert_eq!(
            set_fragments("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY"),
            vec![(
                "transaction".into(),
                "SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY".into(),
                false
            )]
        );
    }

    #[test]
    fn pinning_statements() {
        for sql in [
            "CREATE TEMPORARY TABLE t (a int)",
            "LOCK TABLES t WRITE",
            "SELECT GET_LOCK('a', 1)",
            "PREPARE s FROM 'select 1'",
        ] {
            assert!(classify(&MARIADB, sql).pins_session.is_some(), "{sql}");
        }
        assert!(classify(&MARIADB, "SELECT 'get_lock'")
            .pins_session
            .is_none());
        assert!(classify(&MARIADB, "SELECT * FROM t").pins_session.is_none());
    }

    #[test]
    fn last_insert_id_and_found_rows() {
        assert!(classify(&MARIADB, "select LAST_INSERT_ID()").reads_last_insert_id);
        assert!(!classify(&MARIADB, "select 'LAST_INSERT_ID()'").reads_last_insert_id);
        assert!(classify(&MARIADB, "SELECT @@identity").reads_last_insert_id);
        assert!(classify(&MARIADB, "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1").holds_next);
    }

    #[test]
    fn set_statements_are_classified_by_the_dialect() {
        let keys = |dialect: &dyn Dialect, sql: &str| match classify(dialect, sql).kind {
            Kind::Set(assignments) => assignments
                .into_iter()
                .map(|a| (a.key, a.fragment))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        assert_eq!(
            keys(&Numbered, "SET search_path TO app, public"),
            [(
                "search_path".to_owned(),
                "search_path TO app, public".to_owned()
            )]
        );
        assert!(keys(&MARIADB, "SET search_path TO app, public").is_empty());
        assert_eq!(
            keys(&MARIADB, "SET NAMES utf8mb4"),
            [("names".to_owned(), "NAMES utf8mb4".to_owned())]
        );
        assert!(classify(&Numbered, "SET NAMES utf8mb4")
            .pins_session
            .is_some());
        // RESET is a statement of settings in PostgreSQL's grammar only.
        assert_eq!(
            keys(&Numbered, "RESET search_path"),
            [(
                "search_path".to_owned(),
                "search_path TO DEFAULT".to_owned()
            )]
        );
        assert!(classify(&Numbered, "RESET ALL").pins_session.is_some());
        assert_eq!(
            classify(&MARIADB, "RESET QUERY CACHE"),
            Classified::default()
        );
    }
}
