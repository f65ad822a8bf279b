//! Splits a multi-statement string (`CLIENT_MULTI_STATEMENTS`) into its
//! statements, so that each is routed and answered as if it came alone, as
//! MariaDB runs them one after the other.

use std::ops::Range;

use super::lex::{Lexer, Spanned, Token};

/// One piece of a multi-statement string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One statement: its text, without the `;` that ends it.
    Statement(Range<usize>),
    /// Comments only between two `;`: MariaDB answers it with an OK.
    Empty,
    /// The rest of the string from here, for the server to take apart: a
    /// compound statement or stored program whose body holds `;` (which
    /// only the server's parser can tell from the ends of statements), or
    /// an empty statement, which the server refuses as it refuses it alone.
    Rest(Range<usize>),
}

/// The pieces of `sql`. A string without a `;` between statements is one
/// statement; text after the last `;` that holds nothing is no piece.
pub fn split(sql: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut tokens: Vec<Spanned<'_>> = Vec::new();
    for t in Lexer::new(sql) {
        if t.token != Token::Punct(b';') {
            if tokens.is_empty() && compound(sql, t.start) {
                pieces.push(Piece::Rest(start..sql.len()));
                return pieces;
            }
            tokens.push(t);
            continue;
        }
        if tokens.is_empty() {
            if sql[start..t.start].trim().is_empty() {
                // `;;`: the server says where its syntax error is.
                pieces.push(Piece::Rest(start..sql.len()));
                return pieces;
            }
            pieces.push(Piece::Empty);
        } else {
            pieces.push(Piece::Statement(start..t.start));
        }
        tokens.clear();
        start = t.end;
    }
    if !tokens.is_empty() {
        pieces.push(Piece::Statement(start..sql.len()));
    } else if !sql[start..].trim().is_empty() && !pieces.is_empty() {
        pieces.push(Piece::Empty);
    }
    if pieces.is_empty() {
        pieces.push(Piece::Statement(0..sql.len()));
    }
    pieces
}

/// What `CREATE` makes that has a body of statements.
const PROGRAMS: [&str; 5] = ["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"];

/// What else `CREATE` makes, with the words that may stand before it.
const OTHER_OBJECTS: [&str; 15] = [
    "TABLE",
    "VIEW",
    "INDEX",
    "DATABASE",
    "SCHEMA",
    "USER",
    "ROLE",
    "SEQUENCE",
    "SERVER",
    "TEMPORARY",
    "UNIQUE",
    "FULLTEXT",
    "SPATIAL",
    "ALGORITHM",
    "SQL",
];

/// Whether the statement starting at `at` is a compound statement or
/// defines a stored program: `BEGIN NOT ATOMIC`, `IF`, `CASE`, `LOOP`,
/// `WHILE`, `REPEAT`, `FOR`, a labelled block, or `CREATE [OR REPLACE]
/// [DEFINER = ...] [AGGREGATE] PROCEDURE | FUNCTION | TRIGGER | EVENT | PACKAGE`.
fn compound(sql: &str, at: usize) -> bool {
    let mut tokens = Lexer::new(&sql[at..]).map(|s| s.token);
    let Some(first) = tokens.next() else {
        return false;
    };
    let second = tokens.next();
    if ["IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR"]
        .iter()
        .any(|w| first.is_word(w))
    {
        return true;
    }
    if first.is_word("BEGIN") {
        return second.is_some_and(|s| s.is_word("NOT"));
    }
    if matches!(first, Token::Word(_) | Token::QuotedIdent(_)) && second == Some(Token::Punct(b':'))
    {
        return true;
    }
    if !first.is_word("CREATE") {
        return false;
    }
    // What follows CREATE up to the object's kind: OR REPLACE, DEFINER =
    // user@host, AGGREGATE; a table, view, index ... is not a program.
    for token in std::iter::once(second).flatten().chain(tokens).take(16) {
        if PROGRAMS.iter().any(|w| token.is_word(w)) {
            return true;
        }
        if OTHER_OBJECTS.iter().any(|w| token.is_word(w)) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql)
            .into_iter()
            .map(|p| match p {
                Piece::Statement(r) => sql[r].trim().to_owned(),
                Piece::Empty => "<empty>".to_owned(),
                Piece::Rest(r) => format!("<rest>{}", &sql[r]),
            })
            .collect()
    }

    #[test]
    fn statements_in_order() {
        assert_eq!(texts("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(texts("SELECT 1;"), ["SELECT 1"]);
        assert_eq!(texts("SELECT 1; \n "), ["SELECT 1"]);
        assert_eq!(
            texts("SELECT ';'; SELECT `a;b`"),
            ["SELECT ';'", "SELECT `a;b`"]
        );
        assert_eq!(
            texts("SELECT 1 /* ; */; SELECT 2 -- ;"),
            ["SELECT 1 /* ; */", "SELECT 2 -- ;"]
        );
        assert_eq!(texts("SELECT 1"), ["SELECT 1"]);
        assert_eq!(texts(""), [""]);
    }

    #[test]
    fn comments_alone_are_empty_statements() {
        assert_eq!(texts("SELECT 1; -- c"), ["SELECT 1", "<empty>"]);
        assert_eq!(
            texts("SELECT 1; /* c */; SELECT 2"),
            ["SELECT 1", "<empty>", "SELECT 2"]
        );
    }

    #[test]
    fn an_empty_statement_goes_to_the_server_with_the_rest() {
        assert_eq!(texts("SELECT 1;;SELECT 2"), ["SELECT 1", "<rest>;SELECT 2"]);
    }

    #[test]
    fn compound_statements_go_whole() {
        assert_eq!(
            texts("SELECT 1; CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; SELECT 3"),
            [
                "SELECT 1",
                "<rest> CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; SELECT 3"
            ]
        );
        for sql in [
            "BEGIN NOT ATOMIC SELECT 1; END",
            "CREATE OR REPLACE DEFINER=`root`@`%` FUNCTION f() RETURNS INT BEGIN RETURN 1; END",
            "create definer = root@localhost trigger t before insert on x for each row set @a = 1",
            "IF 1 THEN SELECT 1; END IF",
            "lbl: LOOP LEAVE lbl; END LOOP",
        ] {
            assert_eq!(texts(sql), [format!("<rest>{sql}")], "{sql}");
        }
        assert_eq!(
            texts("BEGIN; CREATE TABLE function_log (a INT); COMMIT"),
            ["BEGIN", "CREATE TABLE function_log (a INT)", "COMMIT"]
        );
    }
}
