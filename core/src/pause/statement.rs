//! What the pause gate needs to know about a statement, from its tokens
//! alone (no parse, no rules — the rules may change while it waits): the
//! words that may name a table, and whether it only reads.

use shardgate_sql::dialect::Dialect;
use shardgate_sql::lex::{Token, TokenList};

/// First words of statements that only read.
const READ_WORDS: &[&str] = &[
    "SELECT", "WITH", "VALUES", "TABLE", "SHOW", "DESC", "DESCRIBE", "EXPLAIN", "HELP",
];

/// The tables a statement may touch, as far as the gate can tell.
#[derive(Debug, Clone)]
pub struct StatementTables<'a> {
    /// Every word and quoted identifier: a table name is one of them
    /// (`db.users` lexes as `db`, `.`, `users`). A column of the same name
    /// also matches, so the gate may hold a statement it need not, never
    /// the other way round.
    words: Vec<&'a str>,
    pure_read: bool,
}

impl<'a> StatementTables<'a> {
    /// Lexes `sql` (which may hold several statements), written in
    /// `dialect`.
    pub fn of(dialect: &dyn Dialect, sql: &'a str) -> Self {
        let list = TokenList::of(sql);
        let tokens = list.tokens();
        let mut words = Vec::new();
        let mut pure_read = true;
        let mut first_of_statement = true;
        for (at, spanned) in tokens.iter().enumerate() {
            let token = spanned.token;
            match token {
                Token::Punct(b';') => first_of_statement = true,
                Token::Punct(b'(') if first_of_statement => {}
                _ if first_of_statement => {
                    first_of_statement = false;
                    if !READ_WORDS.iter().any(|w| token.is_word(w)) {
                        pure_read = false;
                    }
                }
                _ => {}
            }
            // Locking reads take the locks of a write, and usually lead to one.
            if dialect.lock_clause_at(tokens, at) {
                pure_read = false;
            }
            if let Token::Word(w) | Token::QuotedIdent(w) = token {
                words.push(w);
            }
        }
        StatementTables { words, pure_read }
    }

    /// The same statement taken as a read: preparing a statement runs
    /// nothing, whatever it would do when executed.
    pub fn as_read(mut self) -> Self {
        self.pure_read = true;
        self
    }

    /// Whether the statement names `table` (any letter case).
    pub fn mentions(&self, table: &str) -> bool {
        self.words.iter().any(|w| w.eq_ignore_ascii_case(table))
    }

    /// Whether every statement in the text only reads (SELECT without a
    /// locking clause, SHOW, DESCRIBE, EXPLAIN ...).
    pub fn pure_read(&self) -> bool {
        self.pure_read
    }
}

#[cfg(test)]
mod tests {
    use super::StatementTables;
    use shardgate_sql::dialect::MARIADB;

    #[test]
    fn table_names_are_found_as_words_only() {
        let st = StatementTables::of(&MARIADB, "UPDATE `Users` SET name = 'orders' WHERE id = 1");
        assert!(st.mentions("users"));
        assert!(!st.mentions("orders"), "a string literal names no table");
        assert!(StatementTables::of(&MARIADB, "select * from shop.users u").mentions("USERS"));
        assert!(!StatementTables::of(&MARIADB, "SELECT * FROM users_1").mentions("users"));
        assert!(StatementTables::of(&MARIADB, "/*!40000 DELETE FROM users */").mentions("users"));
        assert!(!StatementTables::of(&MARIADB, "SELECT 1 /* users */").mentions("users"));
    }

    #[test]
    fn only_plain_reads_are_pure() {
        for sql in [
            "SELECT * FROM users",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "SHOW CREATE TABLE users",
            "DESCRIBE users",
            "EXPLAIN UPDATE users SET a = 1",
            "SELECT 1; SELECT 2",
        ] {
            assert!(StatementTables::of(&MARIADB, sql).pure_read(), "{sql}");
        }
        for sql in [
            "INSERT INTO users VALUES (1)",
            "REPLACE INTO users VALUES (1)",
            "update users set a = 1",
            "DELETE FROM users",
            "LOAD DATA INFILE 'x' INTO TABLE users",
            "ALTER TABLE users ADD c INT",
            "RENAME TABLE users TO users_old",
            "SELECT * FROM users WHERE id = 1 FOR UPDATE",
            "SELECT * FROM users LOCK IN SHARE MODE",
            "SELECT 1; DELETE FROM users",
            "CALL refresh_users()",
        ] {
            assert!(!StatementTables::of(&MARIADB, sql).pure_read(), "{sql}");
        }
        assert!(StatementTables::of(&MARIADB, "DELETE FROM users")
            .as_read()
            .pure_read());
    }
}
