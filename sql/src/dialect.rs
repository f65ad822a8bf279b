//! What differs between the SQL of the databases ShardGate fronts: how the
//! parser reads a statement, how identifiers are quoted, how parameters
//! are marked (`?`, `$n`), which expression orders a string as its
//! collation does, which clauses the parser must be shown in another form,
//! which clauses lock the rows a SELECT reads, and which statements change
//! session settings and how. The classification, read safety, the
//! analysis, the rewrite, the scatter planning and the metadata names ask a
//! `Dialect` instead of writing MariaDB's forms themselves (as sqlparser's
//! own `Dialect` does with capability methods).

use std::borrow::Cow;

use crate::classify::Classified;
use crate::lex::{Lexer, Token, TokenList, Tokens};

/// One database's SQL, as far as the proxy writes or reads it.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The parser's dialect for full analysis.
    fn parser(&self) -> &dyn sqlparser::dialect::Dialect;

    /// The text the parser reads for `sql`: `sql` itself, or with clauses
    /// the parser does not know written as ones it does, padded so that
    /// every position it reports holds for `sql`.
    fn parsable<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(sql)
    }

    /// Appends `name` as a quoted identifier.
    fn push_quoted(&self, out: &mut String, name: &str);

    /// `name` as a quoted identifier.
    fn quoted(&self, name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 2);
        self.push_quoted(&mut out, name);
        out
    }

    /// An identifier as a statement wrote it, without its quotes.
    fn unquoted<'a>(&self, ident: &'a str) -> &'a str;

    /// The parameter markers of `sql`, in the order they stand in it.
    fn placeholders(&self, sql: &str) -> Vec<Placeholder>;

    /// The expression around another (`prefix`, `suffix`) whose value,
    /// compared byte by byte, orders strings as their collation does: what
    /// a merge of string keys from several nodes compares.
    fn sort_key(&self) -> (&'static str, &'static str);

    /// A query answering a table's columns in order, each row starting
    /// with the column's name and its SQL type.
    fn columns_query(&self, table: &str) -> String;

    /// Whether the tokens from `at` begin a clause that locks the rows a
    /// SELECT reads (`FOR UPDATE`, ...).
    fn lock_clause_at(&self, tokens: Tokens<'_, '_>, at: usize) -> bool;

    /// Whether `sql` has a clause that locks the rows it reads, anywhere
    /// (subqueries too; strings and comments are not clauses).
    fn locks_rows(&self, sql: &str) -> bool {
        self.lock_clause_in(TokenList::of_statement(sql).tokens())
    }

    /// [`locks_rows`](Dialect::locks_rows) from a statement's tokens.
    fn lock_clause_in(&self, tokens: Tokens<'_, '_>) -> bool {
        (0..tokens.len()).any(|at| self.lock_clause_at(tokens, at))
    }

    /// The clause that ends a SELECT locking the rows it reads for update.
    fn exclusive_lock_clause(&self) -> &'static str;

    /// An expression true when `left` equals `right`, NULL equal to NULL.
    fn null_safe_equal(&self, left: &str, right: &str) -> String;

    /// Classifies a statement that changes session settings in the
    /// dialect's own grammar (`SET ...`; PostgreSQL's `RESET` too) from its
    /// tokens: the session state it changes (as assignments a pooled
    /// connection can be brought to), or why the session must keep its
    /// connection. False, with `out` untouched, when the statement is not
    /// one: the whole statement is given, not the tokens after `SET`,
    /// because which statements change settings is the dialect's grammar.
    fn classify_set(&self, sql: &str, tokens: Tokens<'_, '_>, out: &mut Classified) -> bool;

    /// The settings (assignment keys) an assignment to `key` replaces
    /// besides its own: MariaDB's `SET NAMES` sets the character sets of
    /// the connection.
    fn settings_replaced_by(&self, key: &str) -> &'static [&'static str];

    /// The statements that bring a freshly reset connection to the
    /// settings `assignments` (key, fragment), in the order of effect.
    fn replay_settings(&self, assignments: &[(String, String)]) -> Vec<String>;
}

/// A parameter marker in a statement's text: where it stands and which of
/// the statement's parameters (from 0) it takes. `?` takes the next one;
/// `$2` takes the second wherever it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub index: usize,
}

/// MariaDB (and MySQL): backquoted identifiers, `?` parameters,
/// `WEIGHT_STRING(expr)` sort keys, `LOCK IN SHARE MODE`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MariaDb;

/// The dialect of the MySQL front end and its data sources.
pub static MARIADB: MariaDb = MariaDb;

static MARIADB_PARSER: sqlparser::dialect::MySqlDialect = sqlparser::dialect::MySqlDialect {};

impl Dialect for MariaDb {
    fn parser(&self) -> &dyn sqlparser::dialect::Dialect {
        &MARIADB_PARSER
    }

    /// The parser knows `FOR SHARE` but not `LOCK IN SHARE MODE`: the text
    /// it parses has the latter written as the former (the node statements
    /// are cut from `sql`, which keeps its own words).
    fn parsable<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        // Streamed, four tokens at a time: a statement's tokens, even as a
        // `lex::TokenList`, can take several times its size.
        const CLAUSE: [&str; 4] = ["LOCK", "IN", "SHARE", "MODE"];
        let mut last = [None; 4];
        let found = Lexer::new(sql).find(|t| {
            last.rotate_left(1);
            last[3] = Some(*t);
            last.iter()
                .zip(CLAUSE)
                .all(|(t, word)| t.is_some_and(|t| t.token.is_word(word)))
        });
        let (Some(first), Some(at)) = (last[0], found) else {
            return Cow::Borrowed(sql);
        };
        let (start, end) = (first.start, at.end);
        let replacement = format!("{:<width$}", "FOR SHARE", width = end - start);
        Cow::Owned(format!("{}{replacement}{}", &sql[..start], &sql[end..]))
    }

    fn push_quoted(&self, out: &mut String, name: &str) {
        out.push('`');
        out.push_str(&name.replace('`', "``"));
        out.push('`');
    }

    fn unquoted<'a>(&self, ident: &'a str) -> &'a str {
        ident.trim_matches('`')
    }

    fn placeholders(&self, sql: &str) -> Vec<Placeholder> {
        Lexer::new(sql)
            .filter(|s| s.token == Token::Punct(b'?'))
            .enumerate()
            .map(|(index, s)| Placeholder {
                start: s.start,
                end: s.end,
                index,
            })
            .collect()
    }

    fn sort_key(&self) -> (&'static str, &'static str) {
        ("WEIGHT_STRING(", ")")
    }

    fn columns_query(&self, table: &str) -> String {
        format!("SHOW COLUMNS FROM {}", self.quoted(table))
    }

    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE` (their first words
    /// decide: `NOWAIT`, `SKIP LOCKED` or `WAIT n` may follow).
    fn lock_clause_at(&self, tokens: Tokens<'_, '_>, at: usize) -> bool {
        let word = |k: usize, w: &str| tokens.get(at + k).is_some_and(|t| t.token.is_word(w));
        (word(0, "FOR") && (word(1, "UPDATE") || word(1, "SHARE")))
            || (word(0, "LOCK") && word(1, "IN") && word(2, "SHARE") && word(3, "MODE"))
    }

    fn exclusive_lock_clause(&self) -> &'static str {
        "FOR UPDATE"
    }

    fn null_safe_equal(&self, left: &str, right: &str) -> String {
        format!("{left} <=> ({right})")
    }

    /// `SET ...`, MariaDB's only statement of session settings.
    fn classify_set(&self, sql: &str, tokens: Tokens<'_, '_>, out: &mut Classified) -> bool {
        match tokens.split_first() {
            Some((first, after_set)) if first.token.is_word("SET") => {
                crate::mariadb_set::classify_set(sql, after_set, out);
                true
            }
            _ => false,
        }
    }

    fn settings_replaced_by(&self, key: &str) -> &'static [&'static str] {
        crate::mariadb_set::replaced_by(key)
    }

    fn replay_settings(&self, assignments: &[(String, String)]) -> Vec<String> {
        crate::mariadb_set::replay(assignments)
    }
}

/// A dialect for tests that differs from MariaDB wherever a `Dialect`
/// method does.
#[cfg(test)]
pub(crate) mod numbered {
    use super::{Dialect, Placeholder, MARIADB};
    use crate::classify::{Assignment, Classified, Kind};
    use crate::lex::{Spanned, Token, Tokens};

    /// Numbered parameters (`$1`), as PostgreSQL writes them, and
    /// double-quoted identifiers: each marker takes its own parameter
    /// wherever it stands, in node statements cut from the statement too.
    /// Its lock clauses, null-safe equality and `SET` are PostgreSQL's as
    /// well, so that a test over it fails where MariaDB's forms are written
    /// instead of asked for.
    #[derive(Debug)]
    pub(crate) struct Numbered;

    static NUMBERED_PARSER: sqlparser::dialect::PostgreSqlDialect =
        sqlparser::dialect::PostgreSqlDialect {};

    impl Dialect for Numbered {
        fn parser(&self) -> &dyn sqlparser::dialect::Dialect {
            &NUMBERED_PARSER
        }

        fn push_quoted(&self, out: &mut String, name: &str) {
            out.push('"');
            out.push_str(name);
            out.push('"');
        }

        fn unquoted<'a>(&self, ident: &'a str) -> &'a str {
            ident.trim_matches('"')
        }

        /// `$n` anywhere (the statements below have no strings).
        fn placeholders(&self, sql: &str) -> Vec<Placeholder> {
            let bytes = sql.as_bytes();
            let mut found = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let start = at;
                at += 1;
                if bytes[start] != b'$' {
                    continue;
                }
                while at < bytes.len() && bytes[at].is_ascii_digit() {
                    at += 1;
                }
                if let Ok(n) = sql[start + 1..at].parse::<usize>() {
                    found.push(Placeholder {
                        start,
                        end: at,
                        index: n - 1,
                    });
                }
            }
            found
        }

        /// MariaDB's, so that the node statements compare.
        fn sort_key(&self) -> (&'static str, &'static str) {
            MARIADB.sort_key()
        }

        fn columns_query(&self, table: &str) -> String {
            format!("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position")
        }

        /// PostgreSQL's: `FOR [NO KEY] UPDATE`, `FOR [KEY] SHARE`.
        fn lock_clause_at(&self, tokens: Tokens<'_, '_>, at: usize) -> bool {
            let word = |k: usize, w: &str| tokens.get(at + k).is_some_and(|t| t.token.is_word(w));
            word(0, "FOR")
                && (word(1, "UPDATE")
                    || word(1, "SHARE")
                    || (word(1, "NO") && word(2, "KEY") && word(3, "UPDATE"))
                    || (word(1, "KEY") && word(2, "SHARE")))
        }

        fn exclusive_lock_clause(&self) -> &'static str {
            "FOR NO KEY UPDATE"
        }

        fn null_safe_equal(&self, left: &str, right: &str) -> String {
            format!("{left} IS NOT DISTINCT FROM ({right})")
        }

        /// PostgreSQL's `SET [SESSION] name {TO | =} value` and `RESET
        /// name` (the setting's default, kept as `name TO DEFAULT`); `SET
        /// LOCAL` lasts the transaction only, and anything else is not kept.
        fn classify_set(&self, sql: &str, tokens: Tokens<'_, '_>, out: &mut Classified) -> bool {
            let tokens: Vec<Spanned<'_>> = tokens.iter().collect();
            let assignment = match tokens.as_slice() {
                [reset, name] if reset.token.is_word("RESET") && !name.token.is_word("ALL") => {
                    Some((name, "DEFAULT"))
                }
                [reset, ..] if reset.token.is_word("RESET") => None,
                [set, local, ..] if set.token.is_word("SET") && local.token.is_word("LOCAL") => {
                    return true
                }
                [set, rest @ ..] if set.token.is_word("SET") => {
                    let rest = match rest {
                        [session, rest @ ..] if session.token.is_word("SESSION") => rest,
                        _ => rest,
                    };
                    match rest {
                        [name, op, first, .., last]
                            if (op.token.is_word("TO") || op.token == Token::Punct(b'='))
                                && matches!(name.token, Token::Word(_)) =>
                        {
                            Some((name, &sql[first.start..last.end]))
                        }
                        [name, op, value]
                            if op.token.is_word("TO") || op.token == Token::Punct(b'=') =>
                        {
                            Some((name, &sql[value.start..value.end]))
                        }
                        _ => None,
                    }
                }
                _ => return false,
            };
            match assignment {
                Some((name, value)) => {
                    let key = sql[name.start..name.end].to_ascii_lowercase();
                    out.kind = Kind::Set(vec![Assignment {
                        fragment: format!("{key} TO {value}"),
                        key,
                        read_back: false,
                    }]);
                }
                None => out.pins_session = Some("unrecognised SET"),
            }
            true
        }

        fn settings_replaced_by(&self, _key: &str) -> &'static [&'static str] {
            &[]
        }

        /// One `SET` per setting: PostgreSQL's takes one at a time.
        fn replay_settings(&self, assignments: &[(String, String)]) -> Vec<String> {
            assignments
                .iter()
                .map(|(_, fragment)| format!("SET {fragment}"))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_quotes_and_parses_its_own_forms() {
        assert_eq!(MARIADB.quoted("users_7"), "`users_7`");
        assert_eq!(MARIADB.quoted("odd`name"), "`odd``name`");
        assert_eq!(MARIADB.unquoted("`users`"), "users");
        let sql = "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE";
        let parsable = MARIADB.parsable(sql);
        assert_eq!(parsable.len(), sql.len());
        assert!(parsable.contains("FOR SHARE"));
        assert!(matches!(MARIADB.parsable("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn mariadb_parameters_are_question_marks_outside_strings_and_comments() {
        let sql = "SELECT '?', `a?` FROM t /* ? */ WHERE a = ? AND b IN (?, ?) -- ?";
        let found = MARIADB.placeholders(sql);
        let starts: Vec<usize> = found.iter().map(|p| p.start).collect();
        let expected: Vec<usize> = sql
            .match_indices('?')
            .map(|(at, _)| at)
            .filter(|&at| at > sql.find("WHERE").unwrap_or(0) && at < sql.find("--").unwrap_or(0))
            .collect();
        assert_eq!(starts, expected);
        assert!(found
            .iter()
            .enumerate()
            .all(|(i, p)| p.index == i && p.end == p.start + 1));
    }

    #[test]
    fn mariadb_lock_clauses_are_words_not_text() {
        for sql in [
            "SELECT * FROM t WHERE id = 1 FOR UPDATE",
            "SELECT * FROM t WHERE id = 1 for share",
            "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)",
            "SELECT * FROM t FOR UPDATE SKIP LOCKED",
            "SELECT * FROM t FOR UPDATE NOWAIT",
            "SELECT * FROM t FOR UPDATE WAIT 5",
            "SELECT * FROM t LOCK IN SHARE MODE NOWAIT",
            // The server runs an executable comment's text.
            "SELECT * FROM t /*!50000 FOR UPDATE */",
        ] {
            assert!(MARIADB.locks_rows(sql), "{sql}");
        }
        for sql in [
            "SELECT * FROM t WHERE name = 'for update'",
            "SELECT * FROM t /* LOCK IN SHARE MODE */",
            "SELECT `for`, `update` FROM t",
            "SELECT * FROM t -- FOR UPDATE",
            "SELECT * FROM t # LOCK IN SHARE MODE",
            "SELECT \"for update\" FROM t",
            "SELECT * FROM t WHERE a = 'x' 'for share'",
            "SELECT * FROM lock_log FOR SYSTEM_TIME ALL",
        ] {
            assert!(!MARIADB.locks_rows(sql), "{sql}");
        }
    }

    #[test]
    fn lock_clauses_are_the_dialects_own() {
        use numbered::Numbered;
        assert!(Numbered.locks_rows("SELECT * FROM users WHERE user_id = $1 FOR KEY SHARE"));
        assert!(!MARIADB.locks_rows("SELECT * FROM users WHERE user_id = 1 FOR KEY SHARE"));
        assert!(!Numbered.locks_rows("SELECT * FROM users LOCK IN SHARE MODE"));
    }

    #[test]
    fn settings_replay_in_each_dialects_statements() {
        let settings = [
            ("a".to_owned(), "a TO 1".to_owned()),
            ("b".to_owned(), "b TO 2".to_owned()),
        ];
        assert_eq!(
            numbered::Numbered.replay_settings(&settings),
            ["SET a TO 1", "SET b TO 2"]
        );
        let settings = [
            ("a".to_owned(), "@@session.a = 1".to_owned()),
            ("b".to_owned(), "@@session.b = 2".to_owned()),
        ];
        assert_eq!(
            MARIADB.replay_settings(&settings),
            ["SET @@session.a = 1, @@session.b = 2"]
        );
        assert!(MARIADB
            .settings_replaced_by("names")
            .contains(&"character_set_client"));
        assert!(numbered::Numbered.settings_replaced_by("names").is_empty());
    }
}
