//! The SQL admin statements ShardGate answers itself on the MySQL port,
//! named after Apache ShardingSphere's DistSQL where it has one:
//!
//! ```text
//! SHOW SHARDING TABLE RULES [FROM db]
//! SHOW SHARDING TABLE RULE table [FROM db]
//! SHOW SHARDING TABLE NODES [table] [FROM db]
//! SHOW BROADCAST TABLE RULES [FROM db]
//! SHOW STORAGE UNITS [FROM db]
//! SHOW POOLS
//! SHOW STATS
//! PREVIEW statement
//! ```
//!
//! Keywords in any letter case, an optional trailing `;`. Only the
//! recognition lives here; `session::admin` builds the answers.

use thiserror::Error;

use super::lex::{Lexer, Spanned, Token};

/// An admin statement, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminStatement {
    /// `SHOW SHARDING TABLE RULES` (table: None) or `... RULE table`.
    ShardingTableRules {
        table: Option<String>,
        database: Option<String>,
    },
    ShardingTableNodes {
        table: Option<String>,
        database: Option<String>,
    },
    BroadcastTableRules {
        database: Option<String>,
    },
    StorageUnits {
        database: Option<String>,
    },
    Pools,
    Stats,
    /// The statement to preview, without a trailing `;`.
    Preview(String),
}

impl AdminStatement {
    /// The logical database it names (`FROM db`), if any.
    pub fn database(&self) -> Option<&str> {
        match self {
            AdminStatement::ShardingTableRules { database, .. }
            | AdminStatement::ShardingTableNodes { database, .. }
            | AdminStatement::BroadcastTableRules { database }
            | AdminStatement::StorageUnits { database } => database.as_deref(),
            AdminStatement::Pools | AdminStatement::Stats | AdminStatement::Preview(_) => None,
        }
    }
}

/// An admin statement that does not parse. Its statement family is clear
/// (no server has `SHOW SHARDING ...`), so the client is told how to write
/// it instead of getting the backend's bare syntax error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdminSqlError {
    #[error("You have an error in your SQL syntax near '{near}'; ShardGate takes {usage}")]
    Syntax { near: String, usage: &'static str },
    #[error("You have an error in your SQL syntax: PREVIEW needs a statement, as in PREVIEW SELECT * FROM users WHERE user_id = 1")]
    EmptyPreview,
}

const SHARDING_USAGE: &str = "SHOW SHARDING TABLE RULES [FROM db], SHOW SHARDING TABLE RULE table [FROM db] or SHOW SHARDING TABLE NODES [table] [FROM db]";
const BROADCAST_USAGE: &str = "SHOW BROADCAST TABLE RULES [FROM db]";
const STORAGE_USAGE: &str = "SHOW STORAGE UNITS [FROM db]";
const POOLS_USAGE: &str = "SHOW POOLS";
const STATS_USAGE: &str = "SHOW STATS";

/// Whether `sql` may be an admin statement: its first byte (after white
/// space) starts `SHOW` or `PREVIEW`. This is all an ordinary statement
/// pays, so it looks at as few bytes as it can.
#[inline]
pub fn may_be_admin(sql: &[u8]) -> bool {
    let mut i = 0;
    while sql.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let rest = &sql[i..];
    match rest.first() {
        Some(b'S' | b's') => starts_with_word(rest, b"show"),
        Some(b'P' | b'p') => starts_with_word(rest, b"preview"),
        _ => false,
    }
}

/// `text` begins with the keyword `word` (lower case), followed by a
/// non-word byte or the end.
fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    text.len() >= word.len()
        && text[..word.len()].eq_ignore_ascii_case(word)
        && text
            .get(word.len())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
}

/// Parses `sql` when it is an admin statement: `None` for every other
/// statement (`SHOW TABLES`, `SHOW STORAGE ENGINES`, ...), which goes to the
/// backend as before.
pub fn parse(sql: &str) -> Option<Result<AdminStatement, AdminSqlError>> {
    let mut tokens = Lexer::new(sql).peekable();
    let first = tokens.next()?;
    if first.token.is_word("preview") {
        return Some(preview(sql, first.end));
    }
    if !first.token.is_word("show") {
        return None;
    }
    let family = tokens.next()?;
    let mut words = Words { tokens, sql };
    let parsed = match family.token {
        t if t.is_word("sharding") => words.sharding(),
        t if t.is_word("broadcast") => words
            .keywords(&["table", "rules"], BROADCAST_USAGE)
            .and_then(|()| words.optional_from(BROADCAST_USAGE))
            .map(|database| AdminStatement::BroadcastTableRules { database }),
        t if t.is_word("storage") => {
            // SHOW STORAGE ENGINES is the server's; only UNITS is ours.
            if !words
                .tokens
                .peek()
                .is_some_and(|t| t.token.is_word("units"))
            {
                return None;
            }
            words.tokens.next();
            words
                .optional_from(STORAGE_USAGE)
                .map(|database| AdminStatement::StorageUnits { database })
        }
        t if t.is_word("pools") => words.end(POOLS_USAGE).map(|()| AdminStatement::Pools),
        t if t.is_word("stats") => words.end(STATS_USAGE).map(|()| AdminStatement::Stats),
        _ => return None,
    };
    Some(parsed)
}

/// `PREVIEW statement`: the rest of the text after the keyword.
fn preview(sql: &str, keyword_end: usize) -> Result<AdminStatement, AdminSqlError> {
    let inner = sql[keyword_end..]
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_ascii_whitespace());
    if inner.is_empty() {
        return Err(AdminSqlError::EmptyPreview);
    }
    Ok(AdminStatement::Preview(inner.to_owned()))
}

/// The tokens after `SHOW <family>`.
struct Words<'a, I: Iterator<Item = Spanned<'a>>> {
    tokens: std::iter::Peekable<I>,
    sql: &'a str,
}

impl<'a, I: Iterator<Item = Spanned<'a>>> Words<'a, I> {
    fn sharding(&mut self) -> Result<AdminStatement, AdminSqlError> {
        self.keywords(&["table"], SHARDING_USAGE)?;
        let Some(next) = self.tokens.next() else {
            return Err(self.syntax(None, SHARDING_USAGE));
        };
        if next.token.is_word("rules") {
            let database = self.optional_from(SHARDING_USAGE)?;
            Ok(AdminStatement::ShardingTableRules {
                table: None,
                database,
            })
        } else if next.token.is_word("rule") {
            let table = match self.tokens.next() {
                Some(t) => name(&t).ok_or_else(|| self.syntax(Some(t), SHARDING_USAGE))?,
                None => return Err(self.syntax(None, SHARDING_USAGE)),
            };
            let database = self.optional_from(SHARDING_USAGE)?;
            Ok(AdminStatement::ShardingTableRules {
                table: Some(table),
                database,
            })
        } else if next.token.is_word("nodes") {
            // An unquoted FROM is the clause, not a table named "from".
            let table = match self.tokens.peek() {
                Some(t) if !t.token.is_word("from") && !is_semicolon(t) => {
                    let t = *t;
                    self.tokens.next();
                    Some(name(&t).ok_or_else(|| self.syntax(Some(t), SHARDING_USAGE))?)
                }
                _ => None,
            };
            let database = self.optional_from(SHARDING_USAGE)?;
            Ok(AdminStatement::ShardingTableNodes { table, database })
        } else {
            Err(self.syntax(Some(next), SHARDING_USAGE))
        }
    }

    /// Consumes exactly these keywords.
    fn keywords(&mut self, expected: &[&str], usage: &'static str) -> Result<(), AdminSqlError> {
        for kw in expected {
            match self.tokens.next() {
                Some(t) if t.token.is_word(kw) => {}
                other => return Err(self.syntax(other, usage)),
            }
        }
        Ok(())
    }

    /// An optional `FROM db`, then the end of the statement.
    fn optional_from(&mut self, usage: &'static str) -> Result<Option<String>, AdminSqlError> {
        let database = match self.tokens.peek() {
            Some(t) if t.token.is_word("from") => {
                self.tokens.next();
                match self.tokens.next() {
                    Some(t) => Some(name(&t).ok_or_else(|| self.syntax(Some(t), usage))?),
                    None => return Err(self.syntax(None, usage)),
                }
            }
            _ => None,
        };
        self.end(usage)?;
        Ok(database)
    }

    /// Nothing but one optional `;` is left.
    fn end(&mut self, usage: &'static str) -> Result<(), AdminSqlError> {
        if self.tokens.peek().is_some_and(is_semicolon) {
            self.tokens.next();
        }
        match self.tokens.next() {
            None => Ok(()),
            Some(t) => Err(self.syntax(Some(t), usage)),
        }
    }

    /// A syntax error near token `at` (None: at the end), quoting the
    /// statement from there as the server does.
    fn syntax(&self, at: Option<Spanned<'a>>, usage: &'static str) -> AdminSqlError {
        let near = at.map_or("", |t| &self.sql[t.start..]);
        AdminSqlError::Syntax {
            near: near.chars().take(80).collect(),
            usage,
        }
    }
}

fn is_semicolon(t: &Spanned<'_>) -> bool {
    t.token == Token::Punct(b';')
}

/// A table or database name: a word or a `quoted` identifier.
fn name(t: &Spanned<'_>) -> Option<String> {
    match t.token {
        Token::Word(w) | Token::QuotedIdent(w) => Some(w.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> AdminStatement {
        match parse(sql) {
            Some(Ok(st)) => st,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn syntax_error(sql: &str) -> AdminSqlError {
        match parse(sql) {
            Some(Err(e)) => e,
            other => panic!("{sql}: expected a syntax error, got {other:?}"),
        }
    }

    fn rules(table: Option<&str>, database: Option<&str>) -> AdminStatement {
        AdminStatement::ShardingTableRules {
            table: table.map(str::to_owned),
            database: database.map(str::to_owned),
        }
    }

    fn nodes(table: Option<&str>, database: Option<&str>) -> AdminStatement {
        AdminStatement::ShardingTableNodes {
            table: table.map(str::to_owned),
            database: database.map(str::to_owned),
        }
    }

    #[test]
    fn the_fast_check_looks_at_the_first_word_only() {
        for sql in [
            "SHOW POOLS",
            "show tables",
            "  \n\tShOw STATS",
            "PREVIEW SELECT 1",
            "preview",
            "SHOW",
        ] {
            assert!(may_be_admin(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SHOWS",
            "show_me",
            "PREVIEWS x",
            "INSERT INTO t VALUES (1)",
            "",
            "   ",
            "/* c */ SHOW POOLS",
            "S",
        ] {
            assert!(!may_be_admin(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn sharding_table_rules_in_any_case_with_optional_from_and_semicolon() {
        assert_eq!(ok("SHOW SHARDING TABLE RULES"), rules(None, None));
        assert_eq!(ok("show sharding table rules;"), rules(None, None));
        assert_eq!(
            ok("Show Sharding Table Rules FROM wework ;  "),
            rules(None, Some("wework"))
        );
        assert_eq!(
            ok("SHOW SHARDING TABLE RULE users"),
            rules(Some("users"), None)
        );
        assert_eq!(
            ok("show sharding table rule `Users` from `wework`;"),
            rules(Some("Users"), Some("wework"))
        );
        assert_eq!(
            ok("SHOW /* why not */ SHARDING\n TABLE RULE users"),
            rules(Some("users"), None)
        );
    }

    #[test]
    fn sharding_table_nodes_with_or_without_a_table() {
        assert_eq!(ok("SHOW SHARDING TABLE NODES"), nodes(None, None));
        assert_eq!(ok("SHOW SHARDING TABLE NODES;"), nodes(None, None));
        assert_eq!(
            ok("SHOW SHARDING TABLE NODES users"),
            nodes(Some("users"), None)
        );
        assert_eq!(
            ok("show sharding table nodes FROM wework"),
            nodes(None, Some("wework"))
        );
        assert_eq!(
            ok("SHOW SHARDING TABLE NODES users from wework;"),
            nodes(Some("users"), Some("wework"))
        );
        // A table that happens to be called `from` is quoted.
        assert_eq!(
            ok("SHOW SHARDING TABLE NODES `from` FROM wework"),
            nodes(Some("from"), Some("wework"))
        );
    }

    #[test]
    fn the_other_shows() {
        assert_eq!(
            ok("SHOW BROADCAST TABLE RULES"),
            AdminStatement::BroadcastTableRules { database: None }
        );
        assert_eq!(
            ok("show broadcast table rules from wework;"),
            AdminStatement::BroadcastTableRules {
                database: Some("wework".into())
            }
        );
        assert_eq!(
            ok("SHOW STORAGE UNITS"),
            AdminStatement::StorageUnits { database: None }
        );
        assert_eq!(
            ok("SHOW STORAGE UNITS FROM wework;"),
            AdminStatement::StorageUnits {
                database: Some("wework".into())
            }
        );
        assert_eq!(ok("show pools"), AdminStatement::Pools);
        assert_eq!(ok("SHOW POOLS;"), AdminStatement::Pools);
        assert_eq!(ok("SHOW STATS"), AdminStatement::Stats);
    }

    #[test]
    fn preview_takes_the_rest_of_the_text() {
        assert_eq!(
            ok("PREVIEW SELECT * FROM users WHERE user_id = 5;"),
            AdminStatement::Preview("SELECT * FROM users WHERE user_id = 5".into())
        );
        assert_eq!(
            ok("preview\n  select 'a;b' from t ; \n"),
            AdminStatement::Preview("select 'a;b' from t".into())
        );
        assert_eq!(syntax_error("PREVIEW"), AdminSqlError::EmptyPreview);
        assert_eq!(syntax_error("preview ;"), AdminSqlError::EmptyPreview);
    }

    #[test]
    fn server_statements_are_not_taken() {
        for sql in [
            "SHOW TABLES",
            "SHOW STATUS",
            "SHOW STORAGE ENGINES",
            "SHOW FULL PROCESSLIST",
            "SHOW",
            "SELECT 1",
            "SHOW CREATE TABLE users",
        ] {
            assert_eq!(parse(sql), None, "{sql}");
        }
    }

    #[test]
    fn malformed_admin_statements_say_how_to_write_them() {
        let e = syntax_error("SHOW SHARDING TABLE RULE");
        assert!(
            e.to_string().contains("SHOW SHARDING TABLE RULE table"),
            "{e}"
        );
        let e = syntax_error("SHOW SHARDING ALGORITHMS");
        assert_eq!(
            e,
            AdminSqlError::Syntax {
                near: "ALGORITHMS".into(),
                usage: SHARDING_USAGE
            }
        );
        let e = syntax_error("SHOW SHARDING TABLE RULES users");
        assert!(e.to_string().contains("near 'users'"), "{e}");
        let e = syntax_error("SHOW POOLS; SELECT 1");
        assert!(e.to_string().contains("near 'SELECT 1'"), "{e}");
        let e = syntax_error("SHOW STORAGE UNITS WHERE usage_count = 0");
        assert!(
            e.to_string().contains("SHOW STORAGE UNITS [FROM db]"),
            "{e}"
        );
        syntax_error("SHOW BROADCAST TABLES");
        syntax_error("SHOW SHARDING TABLE NODES users FROM");
        syntax_error("SHOW STATS now");
    }
}
