//! Classifies a text statement for the session layer: `USE`, the session
//! state a `SET` changes (so it can be replayed on whichever backend
//! connection serves the session next), and what ties a session to one
//! backend connection (temporary tables, user locks, `LOCK TABLES`, ...).

use super::lex::{contains_ignore_case, Lexer, Spanned, Token};

/// What the session layer needs to know about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classified {
    pub kind: Kind,
    /// The session must keep its backend connection from now on, and why.
    pub pins_session: Option<&'static str>,
    /// The connection must also serve the next statement (`SET TRANSACTION`,
    /// `SQL_CALC_FOUND_ROWS`).
    pub holds_next: bool,
    /// The statement reads the connection's last insert id.
    pub reads_last_insert_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kind {
    /// `USE db`.
    Use(String),
    /// `SET` of session state.
    Set(Vec<Assignment>),
    #[default]
    Other,
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

/// Classifies `sql`.
pub fn classify(sql: &str) -> Classified {
    let mut tokens = Lexer::new(sql);
    let mut out = Classified::default();
    let Some(first) = tokens.next() else {
        return out;
    };
    let second = tokens.clone().next();
    match first.token {
        t if t.is_word("USE") => {
            if let Some(db) = second.and_then(|s| identifier(s.token)) {
                out.kind = Kind::Use(db.to_owned());
            }
        }
        t if t.is_word("SET") => classify_set(sql, tokens, &mut out),
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
    if out.pins_session.is_none()
        && (contains_ignore_case(sql, "GET_LOCK") || contains_ignore_case(sql, "RELEASE_LOCK"))
        && Lexer::new(sql).any(|s| s.token.is_word("GET_LOCK"))
    {
        out.pins_session = Some("user lock (GET_LOCK)");
    }
    if contains_ignore_case(sql, "SQL_CALC_FOUND_ROWS") {
        out.holds_next = true;
    }
    out.reads_last_insert_id =
        contains_ignore_case(sql, "LAST_INSERT_ID") || contains_ignore_case(sql, "@@IDENTITY");
    out
}

fn identifier(token: Token<'_>) -> Option<&str> {
    match token {
        Token::Word(w) | Token::QuotedIdent(w) => Some(w),
        _ => None,
    }
}

fn classify_set<'a>(sql: &'a str, mut tokens: Lexer<'a>, out: &mut Classified) {
    let Some(next) = tokens.clone().next() else {
        return;
    };
    if next.token.is_word("TRANSACTION") {
        // Applies to the next transaction only, which must start on this connection.
        out.holds_next = true;
        return;
    }
    if next.token.is_word("STATEMENT") || next.token.is_word("PASSWORD") {
        return;
    }
    if next.token.is_word("ROLE") || next.token.is_word("DEFAULT") {
        out.pins_session = Some("SET ROLE");
        return;
    }
    let mut assignments = Vec::new();
    while let Some(start) = tokens.next() {
        let rest: Vec<Spanned<'a>> = take_until_comma(&mut tokens);
        match assignment(sql, start, &rest, &mut tokens) {
            Parsed::Session(a) => assignments.push(a),
            Parsed::Global => {}
            Parsed::Untracked(reason) => {
                out.pins_session = Some(reason);
                return;
            }
        }
        // Skip the comma between assignments.
        if tokens.next().is_none() {
            break;
        }
    }
    out.kind = Kind::Set(assignments);
}

enum Parsed {
    Session(Assignment),
    Global,
    Untracked(&'static str),
}

/// Tokens up to (not including) the next top-level comma.
fn take_until_comma<'a>(tokens: &mut Lexer<'a>) -> Vec<Spanned<'a>> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    loop {
        let mut peek = tokens.clone();
        match peek.next() {
            None => return out,
            Some(s) => {
                match s.token {
                    Token::Punct(b'(') => depth += 1,
                    Token::Punct(b')') => depth = depth.saturating_sub(1),
                    Token::Punct(b',') if depth == 0 => return out,
                    _ => {}
                }
                out.push(s);
                *tokens = peek;
            }
        }
    }
}

fn assignment<'a>(
    sql: &'a str,
    first: Spanned<'a>,
    rest: &[Spanned<'a>],
    tokens: &mut Lexer<'a>,
) -> Parsed {
    let text_from = |from: usize| -> String {
        let end = rest.last().map_or(first.end, |s| s.end);
        sql[from..end].trim().to_owned()
    };
    match first.token {
        Token::Word(w)
            if w.eq_ignore_ascii_case("NAMES")
                || w.eq_ignore_ascii_case("CHARSET")
                || w.eq_ignore_ascii_case("CHARACTER") =>
        {
            Parsed::Session(Assignment {
                key: "names".into(),
                fragment: text_from(first.start),
                read_back: false,
            })
        }
        Token::Word(w) if w.eq_ignore_ascii_case("GLOBAL") => Parsed::Global,
        Token::Word(w)
            if (w.eq_ignore_ascii_case("SESSION") || w.eq_ignore_ascii_case("LOCAL"))
                && rest.first().is_some_and(|s| s.token.is_word("TRANSACTION")) =>
        {
            // SESSION TRANSACTION takes the rest of the statement, commas included.
            let mut end = rest.last().map_or(first.end, |s| s.end);
            for s in tokens.by_ref() {
                end = s.end;
            }
            Parsed::Session(Assignment {
                key: "transaction".into(),
                fragment: sql[first.start..end].trim().to_owned(),
                read_back: false,
            })
        }
        Token::Word(w) if w.eq_ignore_ascii_case("SESSION") || w.eq_ignore_ascii_case("LOCAL") => {
            match rest.first().and_then(|s| identifier(s.token)) {
                Some(name) => system_var(sql, name, &rest[1..]),
                None => Parsed::Untracked("unrecognised SET"),
            }
        }
        Token::Word(name) | Token::QuotedIdent(name) => system_var(sql, name, rest),
        Token::SysVar(scoped) => {
            let lower = scoped.to_ascii_lowercase();
            if lower.starts_with("global.") {
                Parsed::Global
            } else {
                let name = scoped
                    .split_once('.')
                    .filter(|(scope, _)| {
                        scope.eq_ignore_ascii_case("session") || scope.eq_ignore_ascii_case("local")
                    })
                    .map_or(scoped, |(_, n)| n);
                system_var(sql, name, rest)
            }
        }
        Token::UserVar(name) => match value_of(sql, rest) {
            Some((value, true)) => Parsed::Session(Assignment {
                key: format!("@{}", name.to_ascii_lowercase()),
                fragment: format!("@`{}` = {value}", name.replace('`', "``")),
                read_back: false,
            }),
            _ => Parsed::Untracked("user variable set from an expression"),
        },
        _ => Parsed::Untracked("unrecognised SET"),
    }
}

fn system_var(sql: &str, name: &str, rest: &[Spanned<'_>]) -> Parsed {
    let Some((value, literal)) = value_of(sql, rest) else {
        return Parsed::Untracked("unrecognised SET");
    };
    let key = name.to_ascii_lowercase();
    Parsed::Session(Assignment {
        fragment: format!("@@session.{key} = {value}"),
        key,
        read_back: !literal,
    })
}

/// The value text after `=` / `:=` and whether it is a single literal.
fn value_of<'a>(sql: &'a str, rest: &[Spanned<'a>]) -> Option<(&'a str, bool)> {
    let (op, value) = rest.split_first()?;
    let value = match op.token {
        Token::Punct(b'=') => value,
        Token::Punct(b':') => match value.split_first() {
            Some((eq, v)) if eq.token == Token::Punct(b'=') => v,
            _ => return None,
        },
        _ => return None,
    };
    let first = value.first()?;
    let last = value.last()?;
    let literal = match value {
        [one] => matches!(
            one.token,
            Token::Number(_) | Token::Str(_) | Token::Word(_) | Token::QuotedIdent(_)
        ),
        [sign, num] => sign.token == Token::Punct(b'-') && matches!(num.token, Token::Number(_)),
        _ => false,
    };
    Some((&sql[first.start..last.end], literal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_fragments(sql: &str) -> Vec<(String, String, bool)> {
        match classify(sql).kind {
            Kind::Set(a) => a
                .into_iter()
                .map(|a| (a.key, a.fragment, a.read_back))
                .collect(),
            other => panic!("not a SET: {other:?}"),
        }
    }

    #[test]
    fn use_statement() {
        assert_eq!(classify("use `wework`").kind, Kind::Use("wework".into()));
        assert_eq!(classify("USE wework;").kind, Kind::Use("wework".into()));
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
    fn expressions_are_read_back_for_system_vars_and_pin_for_user_vars() {
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
        let c = classify("SET @x = (SELECT max(id) FROM t)");
        assert!(c.pins_session.is_some());
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
        let c = classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
        assert!(c.holds_next);
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
            assert!(classify(sql).pins_session.is_some(), "{sql}");
        }
        assert!(classify("SELECT 'get_lock'").pins_session.is_none());
        assert!(classify("SELECT * FROM t").pins_session.is_none());
    }

    #[test]
    fn last_insert_id_and_found_rows() {
        assert!(classify("select LAST_INSERT_ID()").reads_last_insert_id);
        assert!(classify("SELECT @@identity").reads_last_insert_id);
        assert!(classify("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1").holds_next);
    }
}
