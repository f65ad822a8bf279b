//! The text sqlparser reads for a statement: its long string literals
//! emptied (`'aaa…'` becomes `''`) and its long lists of integers cut to
//! their first (`IN (1, 2, …, 200000)` becomes `IN (1)`).
//!
//! sqlparser copies a literal into its token, clones it as it looks ahead,
//! keeps it in the tree, and formats it into the errors of the
//! alternatives it tries: a 20 MiB literal cost the analysis some 80 MiB
//! and most of its time (issue 15). A list item costs it two tokens and a
//! tree node, some 500 bytes: a 1.4 MiB `IN` list of 200,000 ids cost
//! 160 MiB. The analysis reads a literal's value only where it meets a
//! sharding column or a HAVING the proxy evaluates; it asks
//! [`Condensed::emptied`] there, and a statement one of whose emptied
//! literals was asked for is analysed again from its whole text. A list's
//! values are read only as the values of a sharding column's `IN`: from
//! the statement's own text, by [`Condensed::cut_list`]. Positions in the
//! parse map back to the statement's own with [`Condensed::original`].

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use crate::lex::{Lexer, Token};

/// Literals longer than this (quotes included, in bytes) are emptied.
const LONG: usize = 4096;

/// Lists of at least this many integers are cut to their first.
const LONG_LIST: usize = 64;

/// Bytes taken out of the statement at one place.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Where the text after the cut stands in the condensed text.
    at: usize,
    /// Bytes taken out by this cut and those before it.
    removed: usize,
}

/// A statement's text as sqlparser reads it, with what was taken out.
#[derive(Debug)]
pub(crate) struct Condensed<'a> {
    text: Cow<'a, str>,
    cuts: Vec<Cut>,
    /// Where the opening quote of each emptied literal stands in the
    /// statement, in order.
    emptied: Vec<usize>,
    /// The items of each cut list in the statement (from its first item's
    /// start to its last one's end), in order.
    lists: Vec<Range<usize>>,
    asked: Cell<bool>,
}

impl<'a> Condensed<'a> {
    /// `sql` with its long single-quoted literals emptied and its long
    /// lists of integers cut. Only literals without a line break or `*/`
    /// inside: were sqlparser to take such a literal for a comment where
    /// the lexer sees a string, emptying it could still end that comment
    /// elsewhere; without them it cannot. Only lists with nothing but
    /// digits, commas and spaces between their first item and their last.
    pub(crate) fn of(sql: &'a str) -> Self {
        // (start, end) of the bytes taken out, and what they were.
        let mut edits: Vec<(usize, usize, Edit)> = Vec::new();
        let mut list = ListScan::default();
        for t in Lexer::new(sql) {
            if let Some(items) = list.next(&t.token, t.start, t.end) {
                let (first_end, last_end) = (items.0, items.1.end);
                let between = &sql.as_bytes()[first_end..last_end];
                if between
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b',' || b.is_ascii_whitespace())
                {
                    edits.push((first_end, last_end, Edit::List(items.1)));
                }
            }
            match t.token {
                Token::Str(s)
                    if s.len() > LONG
                        && s.starts_with('\'')
                        && s.ends_with('\'')
                        && !s.contains('\n')
                        && !s.contains("*/") =>
                {
                    // Both quotes kept.
                    edits.push((t.start + 1, t.end - 1, Edit::Literal(t.start)));
                }
                _ => {}
            }
        }
        if edits.is_empty() {
            return Self::whole(sql);
        }
        let taken: usize = edits.iter().map(|(start, end, _)| end - start).sum();
        let mut text = String::with_capacity(sql.len() - taken);
        let mut condensed = Condensed {
            text: Cow::Borrowed(""),
            cuts: Vec::with_capacity(edits.len()),
            emptied: Vec::new(),
            lists: Vec::new(),
            asked: Cell::new(false),
        };
        let mut from = 0;
        let mut removed = 0;
        for (start, end, edit) in edits {
            text.push_str(&sql[from..start]);
            removed += end - start;
            condensed.cuts.push(Cut {
                at: text.len(),
                removed,
            });
            match edit {
                Edit::Literal(quote) => condensed.emptied.push(quote),
                Edit::List(items) => condensed.lists.push(items),
            }
            from = end;
        }
        text.push_str(&sql[from..]);
        condensed.text = Cow::Owned(text);
        condensed
    }

    /// `sql` as it is.
    pub(crate) fn whole(sql: &'a str) -> Self {
        Condensed {
            text: Cow::Borrowed(sql),
            cuts: Vec::new(),
            emptied: Vec::new(),
            lists: Vec::new(),
            asked: Cell::new(false),
        }
    }

    /// The text to parse.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether a literal was emptied or a list cut.
    pub(crate) fn is_condensed(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// The statement's offset of an offset in the condensed text.
    pub(crate) fn original(&self, offset: usize) -> usize {
        match self.cuts.partition_point(|c| c.at <= offset) {
            0 => offset,
            n => offset + self.cuts[n - 1].removed,
        }
    }

    /// Whether the literal whose opening quote stands at `original_start`
    /// in the statement (None: unknown) was emptied, or may have been; if
    /// so, its value is wanted and this parse cannot give it (see
    /// [`Condensed::asked`]).
    pub(crate) fn emptied(&self, original_start: Option<usize>) -> bool {
        let emptied = match original_start {
            _ if self.emptied.is_empty() => false,
            Some(start) => self.emptied.binary_search(&start).is_ok(),
            None => true,
        };
        if emptied {
            self.asked.set(true);
        }
        emptied
    }

    /// The items of the cut list whose first item starts at `first_start`
    /// in the statement (the parse holds that item alone), as written.
    pub(crate) fn cut_list(&self, first_start: usize) -> Option<Range<usize>> {
        let at = self
            .lists
            .partition_point(|items| items.start < first_start);
        self.lists
            .get(at)
            .filter(|items| items.start == first_start)
            .cloned()
    }

    /// Whether an emptied literal's value was asked for.
    pub(crate) fn asked(&self) -> bool {
        self.asked.get()
    }
}

/// What one edit of [`Condensed::of`] took out.
enum Edit {
    /// A literal's inside; the statement's offset of its opening quote.
    Literal(usize),
    /// A list's items after its first; the statement's range of them all.
    List(Range<usize>),
}

/// Finds `IN (` followed by integers and commas up to `)`, token by token.
#[derive(Default)]
enum ListScan {
    #[default]
    Outside,
    AfterIn,
    /// Inside the parentheses, expecting an item.
    Item {
        items: Option<(usize, Range<usize>)>,
        count: usize,
    },
    /// After an item, expecting a comma or the closing parenthesis.
    Separator {
        items: (usize, Range<usize>),
        count: usize,
    },
}

impl ListScan {
    /// Takes the next token; at the `)` of a long enough list, the end of
    /// its first item and the range of all its items.
    fn next(
        &mut self,
        token: &Token<'_>,
        start: usize,
        end: usize,
    ) -> Option<(usize, Range<usize>)> {
        let integer =
            |t: &Token<'_>| matches!(t, Token::Number(n) if n.bytes().all(|b| b.is_ascii_digit()));
        let (state, found) = match (std::mem::take(self), token) {
            (_, t) if t.is_word("IN") => (ListScan::AfterIn, None),
            (ListScan::AfterIn, Token::Punct(b'(')) => (
                ListScan::Item {
                    items: None,
                    count: 0,
                },
                None,
            ),
            (ListScan::Item { items, count }, t) if integer(t) => {
                let items = match items {
                    Some((first_end, range)) => (first_end, range.start..end),
                    None => (end, start..end),
                };
                (
                    ListScan::Separator {
                        items,
                        count: count + 1,
                    },
                    None,
                )
            }
            (ListScan::Separator { items, count }, Token::Punct(b',')) => (
                ListScan::Item {
                    items: Some(items),
                    count,
                },
                None,
            ),
            (ListScan::Separator { items, count }, Token::Punct(b')')) if count >= LONG_LIST => {
                (ListScan::Outside, Some(items))
            }
            _ => (ListScan::Outside, None),
        };
        *self = state;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_literals_are_emptied_and_offsets_map_back() {
        let long = "x".repeat(LONG);
        let sql =
            format!("SELECT a FROM t WHERE b = '{long}' AND c = 'short' OR d = '{long}' -- e");
        let c = Condensed::of(&sql);
        assert!(c.is_condensed());
        assert_eq!(
            c.text(),
            "SELECT a FROM t WHERE b = '' AND c = 'short' OR d = '' -- e"
        );
        // Text outside the emptied literals is where it was.
        for word in ["SELECT", "b = '", "AND", "'short'", "OR", "d = '", "-- e"] {
            let at = c.text().find(word).unwrap_or_default();
            let original = c.original(at);
            assert_eq!(&sql[original..original + word.len()], word);
        }
        // Each literal's closing quote, and the end of the text.
        let first = sql.find('\'').unwrap_or_default();
        assert_eq!(c.original(first + 1), first + 1 + LONG);
        assert_eq!(c.original(c.text().len()), sql.len());
        assert!(!c.asked());
        assert!(!c.emptied(sql.find("'short'")));
        assert!(!c.asked());
        assert!(c.emptied(Some(first)));
        assert!(c.asked());
        let unknown = Condensed::of(&sql);
        assert!(unknown.emptied(None) && unknown.asked());
        assert!(!Condensed::whole(&sql).emptied(None));
    }

    #[test]
    fn long_integer_lists_are_cut_to_their_first_item() {
        let ids = (1..=100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT a FROM t WHERE b IN ( {ids} ) AND c IN (1, 2) -- e");
        let c = Condensed::of(&sql);
        assert!(c.is_condensed());
        assert_eq!(
            c.text(),
            "SELECT a FROM t WHERE b IN ( 1 ) AND c IN (1, 2) -- e"
        );
        let first = sql.find("( 1").unwrap_or_default() + 2;
        assert_eq!(c.cut_list(first), Some(first..first + ids.len()));
        assert_eq!(c.cut_list(first + 1), None);
        for word in [") AND", "-- e"] {
            let at = c.text().find(word).unwrap_or_default();
            let original = c.original(at);
            assert_eq!(&sql[original..original + word.len()], word);
        }
        assert!(!c.asked(), "a list is read, not asked for");
        // Short lists, other items, comments inside: as written.
        let short = (1..LONG_LIST)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for sql in [
            format!("SELECT 1 FROM t WHERE b IN ({short})"),
            format!("SELECT 1 FROM t WHERE b IN ({ids}, 'x')"),
            format!("SELECT 1 FROM t WHERE b IN ({ids}, -1)"),
            format!("SELECT 1 FROM t WHERE b IN ({ids}, 1.5)"),
            format!("SELECT 1 FROM t WHERE b IN (1, /* 2, */ {ids})"),
            format!("SELECT 1 FROM t WHERE b IN (1 -- x\n, {ids})"),
            format!("SELECT 1 FROM t WHERE b IN ({ids}, ?)"),
            format!("SELECT 1 FROM t WHERE b = ({ids})"),
        ] {
            assert_eq!(Condensed::of(&sql).text(), sql, "{sql:.40}");
        }
    }

    #[test]
    fn short_and_unsafe_literals_stay() {
        let long = "y".repeat(LONG);
        for sql in [
            "SELECT 'a', \"b\"".to_owned(),
            format!("SELECT \"{long}\""),
            format!("SELECT '{long}\n'"),
            format!("SELECT '{long}*/'"),
            format!("SELECT '{long}"),
        ] {
            let c = Condensed::of(&sql);
            assert!(!c.is_condensed(), "{sql:.20}");
            assert_eq!(c.text(), sql);
            assert_eq!(c.original(5), 5);
        }
    }

    #[test]
    fn escaped_quotes_stay_inside_the_emptied_literal() {
        let long = "z".repeat(LONG);
        let sql = format!("SELECT '{long}\\'' , 'it''s{long}' , 1");
        let c = Condensed::of(&sql);
        assert_eq!(c.text(), "SELECT '' , '' , 1");
        assert_eq!(c.original(c.text().len() - 1), sql.len() - 1);
    }
}
