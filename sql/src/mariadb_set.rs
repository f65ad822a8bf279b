//! MariaDB's `SET` statement: which session state each assignment
//! changes (`NAMES`, system variables of the session, user variables,
//! the next transaction's characteristics), kept as fragments the session
//! replays on any pooled connection; what it cannot replay pins the
//! session to its connection. The MariaDB dialect's `classify_set`.

use crate::classify::{identifier, Assignment, Classified, Kind};
use crate::lex::{Spanned, Token, Tokens};

/// Classifies `SET ...` from the tokens after `SET`.
pub(crate) fn classify_set<'a>(sql: &'a str, tokens: Tokens<'_, 'a>, out: &mut Classified) {
    let Some(next) = tokens.first() else {
        return;
    };
    if next.token.is_word("TRANSACTION") {
        // Applies to the next transaction only, which must start on this connection.
        out.holds_next = true;
        let end = tokens.last().map_or(next.end, |s| s.end);
        out.next_transaction = Some(sql[next.end..end].trim().to_owned());
        return;
    }
    if next.token.is_word("STATEMENT") || next.token.is_word("PASSWORD") {
        return;
    }
    if next.token.is_word("ROLE") || next.token.is_word("DEFAULT") {
        out.pins_session = Some("SET ROLE");
        return;
    }
    let mut assignments: Vec<Assignment> = Vec::new();
    for part in split_top_level_commas(tokens) {
        let Some((first, rest)) = part.split_first() else {
            continue;
        };
        match assignment(sql, first, rest, tokens) {
            Parsed::Session(a) => {
                let whole_rest = a.key == "transaction";
                assignments.push(a);
                if whole_rest {
                    break;
                }
            }
            Parsed::Global => {}
            Parsed::Untracked(reason) => {
                out.pins_session = Some(reason);
                return;
            }
        }
    }
    for a in &assignments {
        if let Some(name) = a.key.strip_prefix('@').filter(|_| a.read_back) {
            if !out
                .assigned_vars
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
            {
                out.assigned_vars.push(name.to_owned());
            }
        }
    }
    out.kind = Kind::Set(assignments);
}

enum Parsed {
    Session(Assignment),
    Global,
    Untracked(&'static str),
}

/// The comma-separated parts of a token list (commas inside parentheses kept).
fn split_top_level_commas<'t, 'a>(tokens: Tokens<'t, 'a>) -> Vec<Tokens<'t, 'a>> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut from = 0;
    for (i, s) in tokens.iter().enumerate() {
        match s.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b',') if depth == 0 => {
                parts.push(tokens.slice(from..i));
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(tokens.slice(from..));
    parts
}

fn assignment<'a>(
    sql: &'a str,
    first: Spanned<'a>,
    rest: Tokens<'_, 'a>,
    all: Tokens<'_, 'a>,
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
            let end = all.last().map_or(first.end, |s| s.end);
            Parsed::Session(Assignment {
                key: "transaction".into(),
                fragment: sql[first.start..end].trim().to_owned(),
                read_back: false,
            })
        }
        Token::Word(w) if w.eq_ignore_ascii_case("SESSION") || w.eq_ignore_ascii_case("LOCAL") => {
            match rest.first().and_then(|s| identifier(s.token)) {
                Some(name) => system_var(sql, name, rest.slice(1..)),
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
            Some((value, literal)) => Parsed::Session(Assignment {
                key: format!("@{}", name.to_ascii_lowercase()),
                fragment: format!("@`{}` = {value}", name.replace('`', "``")),
                read_back: !literal,
            }),
            None => Parsed::Untracked("unrecognised SET"),
        },
        _ => Parsed::Untracked("unrecognised SET"),
    }
}

fn system_var(sql: &str, name: &str, rest: Tokens<'_, '_>) -> Parsed {
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
fn value_of<'a>(sql: &'a str, rest: Tokens<'_, 'a>) -> Option<(&'a str, bool)> {
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
    let literal = match value.len() {
        1 => matches!(
            first.token,
            Token::Number(_) | Token::Str(_) | Token::Word(_) | Token::QuotedIdent(_)
        ),
        2 => first.token == Token::Punct(b'-') && matches!(last.token, Token::Number(_)),
        _ => false,
    };
    Some((&sql[first.start..last.end], literal))
}

/// Keys whose value `SET NAMES` overrides.
const CHARSET_KEYS: [&str; 4] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// The settings an assignment to `key` replaces besides its own.
pub(crate) fn replaced_by(key: &str) -> &'static [&'static str] {
    if key == "names" {
        &CHARSET_KEYS
    } else {
        &[]
    }
}

/// The statements that bring a freshly reset connection to `assignments`:
/// merged into one `SET` where that parses the same.
pub(crate) fn replay(assignments: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut merged: Vec<&str> = Vec::new();
    for (key, fragment) in assignments {
        // A transaction characteristic is its own statement; a backslash
        // may parse differently once an earlier sql_mode has taken effect.
        if key == "transaction" || fragment.contains('\\') {
            if !merged.is_empty() {
                out.push(format!("SET {}", merged.join(", ")));
                merged.clear();
            }
            out.push(format!("SET {fragment}"));
        } else {
            merged.push(fragment);
        }
    }
    if !merged.is_empty() {
        out.push(format!("SET {}", merged.join(", ")));
    }
    out
}
