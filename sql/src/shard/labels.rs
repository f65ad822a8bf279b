//! Column labels of select (and RETURNING) items that name a sharded table. MariaDB labels
//! an unaliased expression with its text as written (`COUNT(users.id)`);
//! a node, given the text with the physical table spliced in, would answer
//! `COUNT(`users_0`.id)`. Such items get the client's text as their alias
//! before the tables are renamed, which MariaDB reads to the same label
//! (both are cut at 255 bytes, without a warning).

use std::borrow::Cow;
use std::ops::Range;

use shardgate_rules::ShardingRules;
use sqlparser::ast::{Delete, Expr, Insert, SelectItem, SetExpr, Statement};

use super::analyze::{analyze, analyze_lexed, Analysis, AnalyzeError, Replacement};
use crate::dialect::Dialect;
use crate::lex::{Lexer, Token, Tokens};

/// Words that may follow SELECT before its first item.
const SELECT_OPTIONS: [&str; 11] = [
    "ALL",
    "DISTINCT",
    "DISTINCTROW",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// Words that end a select list.
const LIST_ENDS: [&str; 13] = [
    "FROM",
    "INTO",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "FOR",
    "LOCK",
    "WINDOW",
];

/// The analysis of `sql` and the text its node statements are cut from:
/// `sql` itself, or `sql` with aliases for the items whose label would
/// otherwise name a physical table.
pub fn analyze_labelled<'a>(
    sql: &'a str,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<(Analysis, Cow<'a, str>), AnalyzeError> {
    labelled_from(
        sql,
        analyze(sql, dialect, rules, logical_db)?,
        dialect,
        rules,
        logical_db,
    )
}

/// [`analyze_labelled`] with the tokens of `sql`, when the caller lexed it
/// already.
pub fn analyze_labelled_lexed<'a>(
    sql: &'a str,
    tokens: Tokens<'_, '_>,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<(Analysis, Cow<'a, str>), AnalyzeError> {
    let analysis = analyze_lexed(sql, tokens, dialect, rules, logical_db)?;
    labelled_from(sql, analysis, dialect, rules, logical_db)
}

/// The analysis of `sql` with its items labelled, from its first analysis.
fn labelled_from<'a>(
    sql: &'a str,
    analysis: Analysis,
    dialect: &dyn Dialect,
    rules: &ShardingRules,
    logical_db: &str,
) -> Result<(Analysis, Cow<'a, str>), AnalyzeError> {
    let Analysis::Sharded(st) = &analysis else {
        return Ok((analysis, Cow::Borrowed(sql)));
    };
    if st.unlabelled.is_empty() {
        return Ok((analysis, Cow::Borrowed(sql)));
    }
    let labelled = with_labels(sql, &st.unlabelled, dialect);
    // Aliased now, the items need no label: this analysis is the last.
    Ok((
        analyze(&labelled, dialect, rules, logical_db)?,
        Cow::Owned(labelled),
    ))
}

/// `sql` with each item of `items` followed by its own text as alias.
fn with_labels(sql: &str, items: &[Range<usize>], dialect: &dyn Dialect) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut from = 0;
    for item in items {
        out.push_str(&sql[from..item.end]);
        out.push_str(" AS ");
        dialect.push_quoted(&mut out, &sql[item.clone()]);
        from = item.end;
    }
    out.push_str(&sql[from..]);
    out
}

/// The byte ranges of the items of the statement's select list (or its
/// RETURNING list) that are unaliased expressions (not plain columns, which
/// are labelled by their name) containing one of `replacements`. Empty when
/// the list is not one the tokens show plainly (the items stay as written).
pub fn unlabelled_items(
    sql: &str,
    statement: &Statement,
    replacements: &[Replacement],
) -> Vec<Range<usize>> {
    let (items, ranges) = match statement {
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(select) => (&select.projection, item_list(sql, "SELECT")),
            _ => return Vec::new(),
        },
        Statement::Insert(Insert {
            returning: Some(items),
            ..
        })
        | Statement::Delete(Delete {
            returning: Some(items),
            ..
        }) => (items, item_list(sql, "RETURNING")),
        _ => return Vec::new(),
    };
    let Some(ranges) = ranges.filter(|r| r.len() == items.len()) else {
        return Vec::new();
    };
    items
        .iter()
        .zip(ranges)
        .filter(|(item, range)| {
            let expression = matches!(item, SelectItem::UnnamedExpr(e)
                if !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)));
            expression
                && replacements
                    .iter()
                    .any(|r| range.start <= r.start && r.end <= range.end)
        })
        .map(|(_, range)| range)
        .collect()
}

/// The byte ranges of the items of the list after the statement's first
/// `keyword` outside parentheses (SELECT after a WITH's queries, or
/// RETURNING), from the first token of each to the end of its last.
fn item_list(sql: &str, keyword: &str) -> Option<Vec<Range<usize>>> {
    let mut tokens = Lexer::new(sql).peekable();
    let mut depth = 0usize;
    loop {
        let t = tokens.next()?;
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.checked_sub(1)?,
            _ if depth == 0 && t.token.is_word(keyword) => break,
            _ => {}
        }
    }
    while tokens
        .peek()
        .is_some_and(|t| SELECT_OPTIONS.iter().any(|o| t.token.is_word(o)))
    {
        tokens.next();
    }
    let mut items = Vec::new();
    let mut current: Option<Range<usize>> = None;
    for t in tokens {
        if depth == 0 {
            let ends = matches!(t.token, Token::Punct(b';'))
                || LIST_ENDS.iter().any(|w| t.token.is_word(w));
            if ends {
                break;
            }
            if t.token == Token::Punct(b',') {
                items.push(current.take()?);
                continue;
            }
        }
        match t.token {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.checked_sub(1)?,
            _ => {}
        }
        current = Some(match current {
            Some(r) => r.start..t.end,
            None => t.start..t.end,
        });
    }
    items.push(current?);
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MARIADB;
    use shardgate_rules::{Config, ShardingRules};

    fn rules() -> ShardingRules {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        ShardingRules::new(&config).unwrap()
    }

    fn labelled(sql: &str) -> String {
        analyze_labelled(sql, &MARIADB, &rules(), "wework")
            .unwrap()
            .1
            .into_owned()
    }

    #[test]
    fn expressions_naming_a_sharded_table_keep_their_label() {
        assert_eq!(
            labelled("SELECT COUNT(users.user_id), MAX( `users`.age ) m FROM users"),
            "SELECT COUNT(users.user_id) AS `COUNT(users.user_id)`, MAX( `users`.age ) m FROM users"
        );
        assert_eq!(
            labelled("SELECT DISTINCT users.age + 1, users.name FROM users WHERE user_id = 1"),
            "SELECT DISTINCT users.age + 1 AS `users.age + 1`, users.name FROM users WHERE user_id = 1"
        );
        assert_eq!(
            labelled("SELECT (SELECT COUNT(*) FROM users)"),
            "SELECT (SELECT COUNT(*) FROM users) AS `(SELECT COUNT(*) FROM users)`"
        );
        assert_eq!(
            labelled("SELECT CONCAT(users.name, '`') FROM users"),
            "SELECT CONCAT(users.name, '`') AS `CONCAT(users.name, '``')` FROM users"
        );
        assert_eq!(
            labelled("DELETE FROM users WHERE user_id = 1 RETURNING users.user_id, users.age * 2"),
            "DELETE FROM users WHERE user_id = 1 RETURNING users.user_id, users.age * 2 AS `users.age * 2`"
        );
        assert_eq!(
            labelled("INSERT INTO users (user_id) VALUES (1) RETURNING user_id, LOWER(users.name)"),
            "INSERT INTO users (user_id) VALUES (1) RETURNING user_id, LOWER(users.name) AS `LOWER(users.name)`"
        );
    }

    #[test]
    fn items_labelled_anyway_stay_as_written() {
        for sql in [
            "SELECT users.user_id, u.age + 1 FROM users u",
            "SELECT COUNT(*), users.* FROM users",
            "SELECT COUNT(users.user_id) AS n FROM users",
            "SELECT COUNT(users.user_id) n FROM users",
            "SELECT COUNT(users.user_id) 'n' FROM users",
            "SELECT user_id FROM users UNION SELECT COUNT(users.age) FROM users",
        ] {
            assert_eq!(labelled(sql), sql);
        }
    }

    #[test]
    fn the_select_list_is_read_from_the_tokens() {
        let sql = "WITH c AS (SELECT 1, 2) SELECT SQL_NO_CACHE a, f(b, c) /* x */, (d) FROM t";
        let items: Vec<&str> = item_list(sql, "SELECT")
            .unwrap()
            .into_iter()
            .map(|r| &sql[r])
            .collect();
        assert_eq!(items, ["a", "f(b, c)", "(d)"]);
        assert_eq!(item_list("SELECT a, FROM t", "SELECT"), None);
    }
}
