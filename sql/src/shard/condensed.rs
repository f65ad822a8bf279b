//! The text sqlparser reads for a statement: its long string literals
//! emptied (`'aaa…'` becomes `''`).
//!
//! sqlparser copies a literal into its token, clones it as it looks ahead,
//! keeps it in the tree, and formats it into the errors of the
//! alternatives it tries: a 20 MiB literal cost the analysis some 80 MiB
//! and most of its time (issue 15). The analysis reads a literal's value
//! only where it meets a sharding column or a HAVING the proxy evaluates;
//! it asks [`Condensed::emptied`] there, and a statement one of whose
//! emptied literals was asked for is analysed again from its whole text.
//! Positions in the parse map back to the statement's own with
//! [`Condensed::original`].

use std::borrow::Cow;
use std::cell::Cell;

use crate::lex::{Lexer, Token};

/// Literals longer than this (quotes included, in bytes) are emptied.
const LONG: usize = 4096;

/// One emptied literal.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Where its closing quote stands in the condensed text.
    at: usize,
    /// Where its opening quote stands in the statement.
    original_start: usize,
    /// Bytes taken out by this literal and those before it.
    removed: usize,
}

/// A statement's text as sqlparser reads it, with the literals it emptied.
#[derive(Debug)]
pub(crate) struct Condensed<'a> {
    text: Cow<'a, str>,
    cuts: Vec<Cut>,
    asked: Cell<bool>,
}

impl<'a> Condensed<'a> {
    /// `sql` with its long single-quoted literals emptied. Only literals
    /// without a line break or `*/` inside: were sqlparser to take such a
    /// literal for a comment where the lexer sees a string, emptying it
    /// could still end that comment elsewhere; without them it cannot.
    pub(crate) fn of(sql: &'a str) -> Self {
        let long: Vec<(usize, usize)> = Lexer::new(sql)
            .filter_map(|t| match t.token {
                Token::Str(s)
                    if s.len() > LONG
                        && s.starts_with('\'')
                        && s.ends_with('\'')
                        && !s.contains('\n')
                        && !s.contains("*/") =>
                {
                    Some((t.start, t.end))
                }
                _ => None,
            })
            .collect();
        if long.is_empty() {
            return Self::whole(sql);
        }
        // Each literal is longer than its two quotes, and inside the text.
        let taken: usize = long.iter().map(|(start, end)| end - start - 2).sum();
        let mut text = String::with_capacity(sql.len() - taken);
        let mut cuts = Vec::with_capacity(long.len());
        let mut from = 0;
        let mut removed = 0;
        for (start, end) in long {
            // Keep both quotes: the text up to the opening one, then from
            // the closing one on.
            text.push_str(&sql[from..=start]);
            removed += end - start - 2;
            cuts.push(Cut {
                at: text.len(),
                original_start: start,
                removed,
            });
            from = end - 1;
        }
        text.push_str(&sql[from..]);
        Condensed {
            text: Cow::Owned(text),
            cuts,
            asked: Cell::new(false),
        }
    }

    /// `sql` as it is.
    pub(crate) fn whole(sql: &'a str) -> Self {
        Condensed {
            text: Cow::Borrowed(sql),
            cuts: Vec::new(),
            asked: Cell::new(false),
        }
    }

    /// The text to parse.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether a literal was emptied.
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
            _ if self.cuts.is_empty() => false,
            Some(start) => self
                .cuts
                .binary_search_by_key(&start, |c| c.original_start)
                .is_ok(),
            None => true,
        };
        if emptied {
            self.asked.set(true);
        }
        emptied
    }

    /// Whether an emptied literal's value was asked for.
    pub(crate) fn asked(&self) -> bool {
        self.asked.get()
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
