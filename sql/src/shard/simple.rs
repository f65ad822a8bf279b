//! The analysis of the simplest statement on a sharded table without a full
//! parse: a point SELECT such as sysbench's
//!
//! ```sql
//! SELECT c FROM sbtest1 WHERE id = 42
//! ```
//!
//! Text-protocol clients send one of these per request, each with its own
//! literal, and a sqlparser parse costs several times the rest of the
//! statement's way through the proxy. The statement is checked token by
//! token against a grammar narrow enough that sqlparser reads it one way
//! only, and the analysis is built as `analyze` would build it from the
//! parse (the tests compare the two). Anything else returns None and is
//! parsed:
//!
//! ```text
//! SELECT ( * | name [, name ...] ) FROM table WHERE name = literal
//! ```
//!
//! `name` and `table` are unquoted words that sqlparser takes for plain
//! identifiers: not keywords (a few that are only keywords elsewhere are
//! let through), no `$`; `literal` is unsigned digits or a single-quoted
//! string without escapes. The text is ASCII, with nothing but spaces, tabs
//! and newlines between tokens (no comments, hints or `;`).

use shardgate_rules::{ShardValue, ShardingRules, TableKind};
use sqlparser::keywords::ALL_KEYWORDS;

use super::analyze::{Cond, Replacement, SelectShape, ShardedStatement, StatementKind, Val};
use crate::lex::{Lexer, Spanned, Token};

/// Keywords that sqlparser reads as plain identifiers in the grammar's
/// places (select item, table, compared column), as the tests check: common
/// column names.
const IDENTIFIER_KEYWORDS: &[&str] = &["ID", "NAME", "STATUS", "TYPE", "VALUE"];

/// The analysis `analyze` would give `sql`, when `sql` is a point SELECT of
/// the grammar above on a sharded or broadcast table; None otherwise.
pub fn point_select(sql: &str, rules: &ShardingRules) -> Option<ShardedStatement> {
    if !sql.is_ascii() || sql.contains('\r') {
        return None;
    }
    let mut tokens = Tokens {
        sql,
        lexer: Lexer::new(sql),
        end: 0,
    };
    tokens.keyword("SELECT")?;
    let first = tokens.next()?;
    if first.token == Token::Punct(b'*') {
        tokens.keyword("FROM")?;
    } else {
        identifier(&first)?;
        loop {
            let next = tokens.next()?;
            if next.token.is_word("FROM") {
                break;
            }
            if next.token != Token::Punct(b',') {
                return None;
            }
            identifier(&tokens.next()?)?;
        }
    }
    let table_token = tokens.next()?;
    let table = identifier(&table_token)?;
    if rules.table_kind(table) == TableKind::Single {
        return None;
    }
    tokens.keyword("WHERE")?;
    let column = identifier(&tokens.next()?)?;
    if tokens.next()?.token != Token::Punct(b'=') {
        return None;
    }
    let value = literal(&tokens.next()?)?;
    if tokens.next().is_some() || !is_blank(&sql[tokens.end..]) {
        return None;
    }
    let table_lower = table.to_ascii_lowercase();
    let condition = match rules
        .sharding_columns(&table_lower)
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(column))
    {
        Some(sharding_column) => Cond::Eq(sharding_column.to_string(), value),
        None => Cond::Unknown,
    };
    Some(ShardedStatement {
        kind: StatementKind::Select,
        tables: vec![table_lower.clone()],
        other_tables: Vec::new(),
        replacements: vec![Replacement {
            start: table_token.start,
            end: table_token.end,
            table: table_lower,
        }],
        unlabelled: Vec::new(),
        condition,
        placeholders: Vec::new(),
        select: SelectShape {
            // Nothing may follow the literal: no locking clause.
            ..SelectShape::default()
        },
        insert: None,
        updates_sharding_column: false,
        ordered_write: false,
        scatter: None,
        sharding_joins: Vec::new(),
        returning: false,
        split_list: None,
    })
}

/// The statement's tokens, refusing anything but white space between them.
struct Tokens<'a> {
    sql: &'a str,
    lexer: Lexer<'a>,
    /// End of the last token.
    end: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<Spanned<'a>> {
        let token = self.lexer.next()?;
        if !is_blank(self.sql.get(self.end..token.start)?) {
            return None;
        }
        self.end = token.end;
        Some(token)
    }

    fn keyword(&mut self, kw: &str) -> Option<()> {
        self.next()?.token.is_word(kw).then_some(())
    }
}

/// The name of a plain identifier token.
fn identifier<'a>(token: &Spanned<'a>) -> Option<&'a str> {
    let Token::Word(word) = token.token else {
        return None;
    };
    let plain = word
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let usable = !is_keyword(word)
        || IDENTIFIER_KEYWORDS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(word));
    (plain && usable).then_some(word)
}

/// Whether sqlparser's tokenizer makes a keyword of the word (its lookup).
fn is_keyword(word: &str) -> bool {
    ALL_KEYWORDS
        .binary_search_by(|probe| {
            let probe = probe.as_bytes();
            let word = word.as_bytes();
            for (p, w) in probe.iter().zip(word) {
                let cmp = p.cmp(&w.to_ascii_uppercase());
                if cmp != std::cmp::Ordering::Equal {
                    return cmp;
                }
            }
            probe.len().cmp(&word.len())
        })
        .is_ok()
}

/// A literal as `analyze` values it: digits as an integer (as text when
/// too large), a string without escapes as its text.
fn literal(token: &Spanned<'_>) -> Option<Val> {
    match token.token {
        Token::Number(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(match digits.parse::<i64>() {
                Ok(i) => Val::Lit(ShardValue::Int(i)),
                Err(_) => Val::Number(digits.to_owned()),
            })
        }
        Token::Str(quoted) => {
            let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
            (!inner.contains(['\'', '\\'])).then(|| Val::Lit(ShardValue::Text(inner.to_owned())))
        }
        _ => None,
    }
}

/// Nothing but spaces, tabs and newlines.
fn is_blank(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MARIADB;
    use crate::shard::analyze::{analyze_parsed, Analysis};
    use shardgate_rules::Config;

    fn rules() -> ShardingRules {
        let text = format!(
            "{}\n[tables.sbtest1]\nnodes = \"ds${{0..3}}.sbtest1_${{0..3}}\"\ndatabase = {{ column = \"id\", algorithm = \"mod\", count = 4 }}\ntable = {{ column = \"id\", expression = \"sbtest1_${{(id / 4) % 4}}\" }}\n",
            include_str!("../../../examples/wework.toml")
        );
        ShardingRules::new(&Config::from_toml_str(&text).unwrap()).unwrap()
    }

    /// The fast analysis of `sql` is the parsed one.
    fn same(rules: &ShardingRules, sql: &str) -> bool {
        let Some(fast) = point_select(sql, rules) else {
            return false;
        };
        let parsed = analyze_parsed(sql, &MARIADB, rules, "wework");
        assert_eq!(
            parsed,
            Ok(Analysis::Sharded(Box::new(fast))),
            "fast analysis differs for: {sql}"
        );
        true
    }

    #[test]
    fn point_selects_match_the_parsed_analysis() {
        let rules = rules();
        let items = [
            "*",
            "c",
            "c, k",
            "pad,k , c",
            "id",
            "ID",
            "Name, status",
            "type,value",
            "_x1",
            "user_id",
        ];
        let tables = [
            "sbtest1",
            "SBTEST1",
            "users",
            "Users",
            "sys_configs",
            "message_records",
        ];
        let columns = ["id", "ID", "user_id", "USER_ID", "tenant_id", "name", "k"];
        let literals = [
            "42",
            "0",
            "007",
            "99999999999999999999",
            "'abc'",
            "''",
            "'lock in share mode'",
            "'a b'",
        ];
        let gaps = [(" ", " "), ("\n", "\t"), ("  ", "")];
        let mut fast = 0;
        for items in items {
            for table in tables {
                for column in columns {
                    for literal in literals {
                        for (gap, eq_gap) in gaps {
                            let sql = format!(
                                "SELECT{gap}{items}{gap}FROM {table}{gap}WHERE {column}{eq_gap}={eq_gap}{literal}"
                            );
                            fast += usize::from(same(&rules, &sql));
                        }
                    }
                }
            }
        }
        // Every combination is in the grammar.
        assert_eq!(fast, 10 * 6 * 7 * 8 * 3);
        assert!(same(&rules, "select c from sbtest1 where id=5"));
        assert!(same(&rules, "\n SELECT c FROM sbtest1 WHERE id = 5 \n"));
        let Some(st) = point_select("SELECT c FROM sbtest1 WHERE id=5", &rules) else {
            panic!()
        };
        assert_eq!(
            st.condition,
            Cond::Eq("id".into(), Val::Lit(ShardValue::Int(5)))
        );
    }

    #[test]
    fn anything_else_is_parsed() {
        let rules = rules();
        for sql in [
            "SELECT c FROM orders WHERE id = 5",
            "SELECT c FROM sbtest1 WHERE id = 5;",
            "SELECT c FROM sbtest1 WHERE id = ?",
            "SELECT c FROM sbtest1 WHERE id = -5",
            "SELECT c FROM sbtest1 WHERE id = 5.0",
            "SELECT c FROM sbtest1 WHERE id = 0x10",
            "SELECT c FROM sbtest1 WHERE id = 1e3",
            "SELECT c FROM sbtest1 WHERE id = 5 AND k = 1",
            "SELECT c FROM sbtest1 WHERE 5 = id",
            "SELECT c FROM sbtest1 WHERE id <=> 5",
            "SELECT c FROM sbtest1 WHERE id = 'a\\'b'",
            "SELECT c FROM sbtest1 WHERE id = 'a''b'",
            "SELECT c FROM sbtest1 WHERE id = \"x\"",
            "SELECT c FROM sbtest1 WHERE id = _utf8'x'",
            "SELECT c FROM sbtest1 WHERE id = 'é'",
            "SELECT c FROM sbtest1\r\nWHERE id = 5",
            "SELECT c FROM sbtest1 WHERE id = 5 FOR UPDATE",
            "SELECT c FROM sbtest1 WHERE id = 5 LOCK IN SHARE MODE",
            "SELECT c FROM sbtest1 WHERE id = 5 ORDER BY c",
            "SELECT c FROM sbtest1 WHERE id = 5 LIMIT 1",
            "SELECT c FROM sbtest1 s WHERE s.id = 5",
            "SELECT c FROM wework.sbtest1 WHERE id = 5",
            "SELECT c FROM `sbtest1` WHERE id = 5",
            "SELECT `c` FROM sbtest1 WHERE id = 5",
            "SELECT sbtest1.c FROM sbtest1 WHERE id = 5",
            "SELECT c AS x FROM sbtest1 WHERE id = 5",
            "SELECT c x FROM sbtest1 WHERE id = 5",
            "SELECT DISTINCT c FROM sbtest1 WHERE id = 5",
            "SELECT COUNT(*) FROM sbtest1 WHERE id = 5",
            "SELECT c, * FROM sbtest1 WHERE id = 5",
            "SELECT date FROM sbtest1 WHERE id = 5",
            "SELECT c FROM sbtest1 WHERE date = 5",
            "SELECT null FROM sbtest1 WHERE id = 5",
            "SELECT c$ FROM sbtest1 WHERE id = 5",
            "SELECT 1c FROM sbtest1 WHERE id = 5",
            "SELECT /*+ hint */ c FROM sbtest1 WHERE id = 5",
            "SELECT c FROM sbtest1 WHERE id = 5 -- x",
            "SELECT c FROM sbtest1 WHERE id = 5 # x",
            "/* x */ SELECT c FROM sbtest1 WHERE id = 5",
            "SELECT c FROM sbtest1 WHERE id = 5 /*!50000 */",
            "SELECT c FROM sbtest1 WHERE id =",
            "SELECT c FROM sbtest1 WHERE id = '5",
            "SELECT c FROM sbtest1",
            "SELECT FROM sbtest1 WHERE id = 5",
            "SELECT c, FROM sbtest1 WHERE id = 5",
        ] {
            assert!(point_select(sql, &rules).is_none(), "{sql}");
        }
    }

    #[test]
    fn keywords_let_through_are_identifiers_everywhere() {
        let rules = rules();
        for kw in IDENTIFIER_KEYWORDS {
            assert!(is_keyword(kw), "{kw}");
            for sql in [
                format!("SELECT {kw} FROM users WHERE user_id = 1"),
                format!("SELECT c, {kw} FROM users WHERE {kw} = 'x'"),
                format!("SELECT * FROM users WHERE {} = 3", kw.to_lowercase()),
            ] {
                assert!(same(&rules, &sql), "{sql}");
            }
        }
        assert!(!is_keyword("c") && !is_keyword("sbtest1") && is_keyword("select"));
    }
}
