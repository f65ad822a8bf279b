//! What a statement logged as text (a QUERY event) does to tables: the
//! transaction control words the stream needs, and the tables a schema
//! change or a statement-logged write names. Only enough of SQL is read to
//! find table names: a lexer that skips strings and comments (but reads
//! MariaDB's executable `/*! ... */` comments as code), then a few
//! statement shapes.

/// A table named by a statement; `schema` is `None` when the statement left
/// it to the session's default database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub schema: Option<String>,
    pub table: String,
}

/// What the stream must do with a QUERY event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    Begin,
    Commit,
    Rollback,
    Savepoint(String),
    RollbackToSavepoint(String),
    /// Changes these tables' definitions or replaces their contents wholesale.
    SchemaChange(Vec<TableName>),
    DropDatabase(String),
    /// A write logged as a statement: its rows are not in the binlog.
    /// Every name it mentions, since telling tables from columns would need
    /// a real parser; a false match stops the stream, never loses a change.
    Write(Vec<TableName>),
    /// Anything else (grants, views, routines, ...): no row of a table changes.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, as written.
    Word(String),
    /// A back-quoted identifier, unescaped.
    Quoted(String),
    Dot,
    Comma,
    /// A string or number literal, an operator, a parenthesis...
    Other,
}

impl Token {
    fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn identifier(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

fn lex(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            _ if c.is_whitespace() => i += 1,
            '/' if next == Some('*') => {
                // `/*!50100 code */` and `/*M!100200 code */` are code for
                // MariaDB: drop the markers and read what they hold.
                let mut j = i + 2;
                if chars.get(j) == Some(&'M') && chars.get(j + 1) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&'!') {
                    j += 1;
                    while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
                        j += 1;
                    }
                    i = j;
                } else {
                    i = find_from(&chars, j, &['*', '/']).map_or(chars.len(), |end| end + 2);
                }
            }
            // The end of an executable comment.
            '*' if next == Some('/') => i += 2,
            '#' => i = find_from(&chars, i, &['\n']).map_or(chars.len(), |end| end + 1),
            '-' if next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
                i = find_from(&chars, i, &['\n']).map_or(chars.len(), |end| end + 1)
            }
            '\'' | '"' => {
                i = skip_quoted(&chars, i).1;
                tokens.push(Token::Other);
            }
            '`' => {
                let (name, end) = skip_quoted(&chars, i);
                tokens.push(Token::Quoted(name));
                i = end;
            }
            '.' => {
                tokens.push(Token::Dot);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            _ if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.starts_with(|c: char| c.is_ascii_digit())
                    && word.chars().all(|c| c.is_ascii_digit())
                {
                    tokens.push(Token::Other);
                } else {
                    tokens.push(Token::Word(word));
                }
            }
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    tokens
}

fn find_from(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&k| chars[k..].starts_with(needle))
}

/// Reads a quoted run starting at `start` (the opening quote). Returns its
/// unescaped content and the index after the closing quote. A doubled quote
/// stands for itself; a backslash escapes the next character except in
/// back-quoted identifiers.
fn skip_quoted(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut content = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && quote != '`' {
            if let Some(escaped) = chars.get(i + 1) {
                content.push(*escaped);
            }
            i += 2;
        } else if c == quote {
            if chars.get(i + 1) == Some(&quote) {
                content.push(quote);
                i += 2;
            } else {
                return (content, i + 1);
            }
        } else {
            content.push(c);
            i += 1;
        }
    }
    (content, i)
}

/// A cursor over a statement's tokens.
struct Tokens {
    tokens: Vec<Token>,
    at: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    /// Consumes the next token if it is this keyword.
    fn eat(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.is_word(keyword));
        if found {
            self.at += 1;
        }
        found
    }

    /// Consumes these keywords if they come next, in order.
    fn eat_all(&mut self, keywords: &[&str]) -> bool {
        let matches = keywords
            .iter()
            .enumerate()
            .all(|(k, kw)| self.tokens.get(self.at + k).is_some_and(|t| t.is_word(kw)));
        if matches {
            self.at += keywords.len();
        }
        matches
    }

    /// Reads `name` or `schema.name`.
    fn table_name(&mut self) -> Option<TableName> {
        let first = self.peek()?.identifier()?.to_owned();
        self.at += 1;
        if self.peek() == Some(&Token::Dot) {
            if let Some(second) = self.tokens.get(self.at + 1).and_then(Token::identifier) {
                let table = second.to_owned();
                self.at += 2;
                return Some(TableName {
                    schema: Some(first),
                    table,
                });
            }
        }
        Some(TableName {
            schema: None,
            table: first,
        })
    }

    /// Moves past the next occurrence of this keyword.
    fn skip_past(&mut self, keyword: &str) -> bool {
        while let Some(token) = self.peek() {
            let found = token.is_word(keyword);
            self.at += 1;
            if found {
                return true;
            }
        }
        false
    }

    /// Every name in the rest of the statement, qualified ones joined.
    fn all_names(&mut self) -> Vec<TableName> {
        let mut names = Vec::new();
        while let Some(token) = self.peek() {
            if token.identifier().is_some() {
                if let Some(name) = self.table_name() {
                    names.push(name);
                }
            } else {
                self.at += 1;
            }
        }
        names
    }
}

/// Reads what a QUERY event's statement does to tables.
pub(crate) fn classify(sql: &str) -> Statement {
    let mut t = Tokens {
        tokens: lex(sql),
        at: 0,
    };
    let Some(Token::Word(first)) = t.peek().cloned() else {
        return Statement::Other;
    };
    t.at += 1;
    match first.to_ascii_uppercase().as_str() {
        "BEGIN" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "SAVEPOINT" => t
            .table_name()
            .map_or(Statement::Other, |n| Statement::Savepoint(n.table)),
        "ROLLBACK" => {
            t.eat("WORK");
            if t.eat("TO") {
                t.eat("SAVEPOINT");
                t.table_name().map_or(Statement::Other, |n| {
                    Statement::RollbackToSavepoint(n.table)
                })
            } else {
                Statement::Rollback
            }
        }
        "ALTER" => {
            t.eat("ONLINE");
            t.eat("IGNORE");
            if !t.eat("TABLE") {
                return Statement::Other;
            }
            t.eat_all(&["IF", "EXISTS"]);
            let mut names: Vec<TableName> = t.table_name().into_iter().collect();
            // Renaming another table to a watched name, or swapping a
            // partition with one, changes the watched table as well.
            while let Some(token) = t.peek().cloned() {
                t.at += 1;
                if token.is_word("RENAME") {
                    if t.eat("COLUMN") || t.eat("INDEX") || t.eat("KEY") {
                        continue;
                    }
                    if !t.eat("TO") {
                        t.eat("AS");
                    }
                    names.extend(t.table_name());
                } else if token.is_word("WITH") && t.eat("TABLE") {
                    names.extend(t.table_name());
                }
            }
            Statement::SchemaChange(names)
        }
        "CREATE" => {
            t.eat_all(&["OR", "REPLACE"]);
            t.eat("TEMPORARY");
            if t.eat("TABLE") {
                t.eat_all(&["IF", "NOT", "EXISTS"]);
                return Statement::SchemaChange(t.table_name().into_iter().collect());
            }
            let index = t.eat("UNIQUE") | t.eat("FULLTEXT") | t.eat("SPATIAL");
            if t.eat("INDEX") || (index && t.eat("KEY")) {
                return index_target(&mut t);
            }
            Statement::Other
        }
        "DROP" => {
            t.eat("TEMPORARY");
            if t.eat("TABLE") || t.eat("TABLES") {
                t.eat_all(&["IF", "EXISTS"]);
                let mut names = Vec::new();
                while let Some(name) = t.table_name() {
                    names.push(name);
                    if t.peek() != Some(&Token::Comma) {
                        break;
                    }
                    t.at += 1;
                }
                Statement::SchemaChange(names)
            } else if t.eat("INDEX") {
                index_target(&mut t)
            } else if t.eat("DATABASE") || t.eat("SCHEMA") {
                t.eat_all(&["IF", "EXISTS"]);
                t.table_name()
                    .map_or(Statement::Other, |n| Statement::DropDatabase(n.table))
            } else {
                Statement::Other
            }
        }
        "RENAME" => {
            if !(t.eat("TABLE") || t.eat("TABLES")) {
                return Statement::Other;
            }
            t.eat_all(&["IF", "EXISTS"]);
            let mut names = Vec::new();
            while let Some(from) = t.table_name() {
                names.push(from);
                t.eat("WAIT");
                t.eat("NOWAIT");
                if !t.eat("TO") {
                    break;
                }
                names.extend(t.table_name());
                if t.peek() != Some(&Token::Comma) {
                    break;
                }
                t.at += 1;
            }
            Statement::SchemaChange(names)
        }
        "TRUNCATE" => {
            t.eat("TABLE");
            Statement::SchemaChange(t.table_name().into_iter().collect())
        }
        "INSERT" | "REPLACE" | "UPDATE" | "DELETE" | "LOAD" => Statement::Write(t.all_names()),
        _ => Statement::Other,
    }
}

/// `... INDEX name ON table ...`: the table after ON.
fn index_target(t: &mut Tokens) -> Statement {
    if t.skip_past("ON") {
        Statement::SchemaChange(t.table_name().into_iter().collect())
    } else {
        Statement::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: Option<&str>, table: &str) -> TableName {
        TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        }
    }

    fn changed(sql: &str) -> Vec<TableName> {
        match classify(sql) {
            Statement::SchemaChange(names) => names,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn transaction_control() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(
            classify("SAVEPOINT `sp 1`"),
            Statement::Savepoint("sp 1".into())
        );
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT sp1"),
            Statement::RollbackToSavepoint("sp1".into())
        );
        assert_eq!(
            classify("rollback work to sp1"),
            Statement::RollbackToSavepoint("sp1".into())
        );
    }

    #[test]
    fn schema_changes_name_their_tables() {
        assert_eq!(
            changed("ALTER ONLINE TABLE `ds1`.`users_5` ADD COLUMN x INT"),
            [name(Some("ds1"), "users_5")]
        );
        assert_eq!(
            changed("alter table users_5 rename column a to b, rename to `old`"),
            [name(None, "users_5"), name(None, "old")]
        );
        assert_eq!(
            changed("ALTER TABLE p EXCHANGE PARTITION p0 WITH TABLE d.users_5"),
            [name(None, "p"), name(Some("d"), "users_5")]
        );
        assert_eq!(
            changed(
                "CREATE OR REPLACE TABLE IF NOT EXISTS users_5 (id INT) /*!50100 ENGINE=InnoDB */"
            ),
            [name(None, "users_5")]
        );
        assert_eq!(
            changed("DROP TABLE IF EXISTS `a`, `d`.`b` /* generated by server */"),
            [name(None, "a"), name(Some("d"), "b")]
        );
        assert_eq!(
            changed("RENAME TABLE users_5 TO users_5__sgold, users_5__sgnew TO users_5"),
            [
                name(None, "users_5"),
                name(None, "users_5__sgold"),
                name(None, "users_5__sgnew"),
                name(None, "users_5")
            ]
        );
        assert_eq!(changed("TRUNCATE TABLE t1"), [name(None, "t1")]);
        assert_eq!(changed("truncate t1"), [name(None, "t1")]);
        assert_eq!(
            changed("CREATE UNIQUE INDEX i ON d.t (a)"),
            [name(Some("d"), "t")]
        );
        assert_eq!(changed("DROP INDEX IF EXISTS i ON t"), [name(None, "t")]);
        assert_eq!(
            classify("DROP DATABASE IF EXISTS `cdc_x`"),
            Statement::DropDatabase("cdc_x".into())
        );
    }

    #[test]
    fn comments_and_strings_hide_names_but_executable_comments_do_not() {
        assert_eq!(
            changed("/* leading */ -- line\n # hash\n ALTER TABLE `we``ird` COMMENT 'users_5'"),
            [name(None, "we`ird")]
        );
        assert_eq!(changed("/*M!100301 ALTER TABLE t1 */"), [name(None, "t1")]);
        assert_eq!(
            classify("INSERT INTO `d`.t (a) VALUES ('users_5', \"x\")"),
            Statement::Write(vec![
                name(None, "INTO"),
                name(Some("d"), "t"),
                name(None, "a"),
                name(None, "VALUES")
            ])
        );
    }

    #[test]
    fn other_statements_touch_no_table() {
        assert_eq!(
            classify("CREATE VIEW v AS SELECT * FROM users_5"),
            Statement::Other
        );
        assert_eq!(classify("GRANT SELECT ON *.* TO x"), Statement::Other);
        assert_eq!(classify("CREATE DATABASE d"), Statement::Other);
        assert_eq!(classify(""), Statement::Other);
        assert_eq!(
            classify("ALTER DATABASE d CHARACTER SET utf8mb4"),
            Statement::Other
        );
    }
}
