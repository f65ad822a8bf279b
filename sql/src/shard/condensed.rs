//! The text sqlparser reads for a statement: its long string literals
//! emptied (`'aaa…'` becomes `''`), its long lists of integers cut to
//! their first (`IN (1, 2, …, 200000)` becomes `IN (1)`), its long runs
//! of one column's equalities cut to their first (`a = 1 OR a = 2 OR …
//! OR a = 9` keeps `a = 1 OR a = 2 OR a = 9`), and a long INSERT's rows
//! cut to its first.
//!
//! sqlparser copies a literal into its token, clones it as it looks ahead,
//! keeps it in the tree, and formats it into the errors of the
//! alternatives it tries: a 20 MiB literal cost the analysis some 80 MiB
//! and most of its time (issue 15). A list item, a term or a row value
//! costs it tokens and tree nodes, some 500 bytes to a few KiB: a 1.4 MiB
//! `IN` list of 200,000 ids cost 160 MiB. The analysis reads a literal's
//! value only where it meets a sharding column or a HAVING the proxy
//! evaluates; it asks [`Condensed::emptied`] there, and a statement one of
//! whose emptied literals was asked for is analysed again from its whole
//! text. A list's values are read only as the values of a sharding
//! column's `IN`, a run's as those of its column's equality: from the
//! statement's own text, by [`Condensed::cut_list`]. The rows after an
//! INSERT's first are read from the statement's own text, by
//! [`Condensed::cut_rows`]. Positions in the parse map back to the
//! statement's own with [`Condensed::original`].

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use crate::lex::{Lexer, Token};

/// Literals longer than this (quotes included, in bytes) are emptied.
const LONG: usize = 4096;

/// Lists of at least this many integers, runs of this many equalities
/// and INSERTs of this many rows are cut.
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
    /// start to its last one's end), in order; for a cut run, from its
    /// first kept term's value to its last cut term's value.
    lists: Vec<Range<usize>>,
    /// The start of the value of each cut run's first term, the one the
    /// parse holds for them all, in order.
    anchors: Vec<usize>,
    /// The cut rows of an INSERT: from the end of its first row to the
    /// end of its last.
    rows: Option<Range<usize>>,
    asked: Cell<bool>,
}

impl<'a> Condensed<'a> {
    /// `sql` with its long single-quoted literals emptied and its long
    /// lists, runs and rows cut. Only literals without a line break or
    /// `*/` inside: were sqlparser to take such a literal for a comment
    /// where the lexer sees a string, emptying it could still end that
    /// comment elsewhere; without them it cannot. Only lists with nothing
    /// but digits, commas and spaces between their first item and their
    /// last; only runs and rows with nothing but spaces between their
    /// tokens.
    pub(crate) fn of(sql: &'a str) -> Self {
        // (start, end) of the bytes taken out, and what they were.
        let mut edits: Vec<(usize, usize, Edit)> = Vec::new();
        let mut list = ListScan::default();
        let mut run = RunScan::default();
        let mut rows = RowScan::default();
        let mut tokens = Lexer::new(sql).peekable();
        let inserts = tokens
            .peek()
            .is_some_and(|t| t.token.is_word("INSERT") || t.token.is_word("REPLACE"));
        let mut last_end = 0;
        while let Some(t) = tokens.next() {
            let spaced = sql.as_bytes()[last_end..t.start]
                .iter()
                .all(u8::is_ascii_whitespace);
            last_end = t.end;
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
            if let Some(cut) = run.next(sql, &t, spaced) {
                edits.push(cut);
            }
            if inserts {
                if let Some(cut) = rows.next(&t, spaced, tokens.peek().is_none()) {
                    edits.push(cut);
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
        if let Some(cut) = run.finish() {
            edits.push(cut);
        }
        if edits.is_empty() {
            return Self::whole(sql);
        }
        // Literals inside cut rows go with them.
        edits.sort_by_key(|(start, _, _)| *start);
        let mut kept_end = 0;
        edits.retain(|(start, end, _)| {
            let kept = *start >= kept_end;
            if kept {
                kept_end = *end;
            }
            kept
        });
        let taken: usize = edits.iter().map(|(start, end, _)| end - start).sum();
        let mut text = String::with_capacity(sql.len() - taken);
        let mut condensed = Condensed {
            text: Cow::Borrowed(""),
            cuts: Vec::with_capacity(edits.len()),
            emptied: Vec::new(),
            lists: Vec::new(),
            anchors: Vec::new(),
            rows: None,
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
                Edit::Run(values) => {
                    condensed.anchors.push(values.start);
                    condensed.lists.push(values);
                }
                Edit::Rows => condensed.rows = Some(start..end),
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
            anchors: Vec::new(),
            rows: None,
            asked: Cell::new(false),
        }
    }

    /// The ranges of the statement its long lists, runs and rows were
    /// cut from, in order (not its emptied literals: each is one token).
    pub(crate) fn cut_items(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let literals = &self.emptied;
        let mut before = 0;
        self.cuts.iter().filter_map(move |cut| {
            let start = cut.at + before;
            let end = cut.at + cut.removed;
            before = cut.removed;
            // An emptied literal's cut starts just past its opening quote.
            let literal = start
                .checked_sub(1)
                .is_some_and(|quote| literals.binary_search(&quote).is_ok());
            (!literal).then_some(start..end)
        })
    }

    /// The ranges [`Self::cut_items`] gives for `sql`, found without the
    /// lexing [`Self::of`] does when `sql` cannot hold a long list, run or
    /// rows: each of those has `LONG_LIST - 1` commas or `LONG_LIST`
    /// equals signs, and most statements have neither. Every statement's
    /// tokens leave these out (`lex::TokenList::of_statement`).
    pub(crate) fn cut_ranges(sql: &str) -> Vec<Range<usize>> {
        let (mut commas, mut equals) = (0, 0);
        let may_cut = sql.bytes().any(|b| {
            commas += usize::from(b == b',');
            equals += usize::from(b == b'=');
            commas + 1 >= LONG_LIST || equals >= LONG_LIST
        });
        if !may_cut {
            return Vec::new();
        }
        Condensed::of(sql).cut_items().collect()
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

    /// Whether the literal that starts at `original_start` in the
    /// statement (None: unknown) was emptied, or stands for a cut run's
    /// values, or may do either; if so, its value is wanted and this parse
    /// cannot give it (see [`Condensed::asked`]).
    pub(crate) fn emptied(&self, original_start: Option<usize>) -> bool {
        let emptied = match original_start {
            _ if self.emptied.is_empty() && self.anchors.is_empty() => false,
            Some(start) => {
                self.emptied.binary_search(&start).is_ok()
                    || self.anchors.binary_search(&start).is_ok()
            }
            None => true,
        };
        if emptied {
            self.asked.set(true);
        }
        emptied
    }

    /// The items of the cut list whose first item starts at `first_start`
    /// in the statement (the parse holds that item alone), as written; or
    /// the terms of the cut run whose first term's value starts there.
    pub(crate) fn cut_list(&self, first_start: usize) -> Option<Range<usize>> {
        let at = self
            .lists
            .partition_point(|items| items.start < first_start);
        self.lists
            .get(at)
            .filter(|items| items.start == first_start)
            .cloned()
    }

    /// The rows cut from an INSERT whose first row ends at `first_end` in
    /// the statement (the parse holds that row alone), from that end to
    /// the end of the last row: `, (…), (…)`, with nothing but literals,
    /// `?` and spaces inside.
    pub(crate) fn cut_rows(&self, first_end: usize) -> Option<Range<usize>> {
        self.rows.clone().filter(|rows| rows.start == first_end)
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
    /// A run's terms after its first kept one; the statement's range of
    /// their values, from that first kept one's.
    Run(Range<usize>),
    /// An INSERT's rows after its first.
    Rows,
}

/// Whether `n` is an integer or a decimal as sqlparser reads them alike.
fn plain_number(n: &str) -> bool {
    let (whole, fraction) = n.split_once('.').unwrap_or((n, "0"));
    [whole, fraction]
        .iter()
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Finds runs of `OR column = integer` terms that are each followed by
/// `OR`, the column written alike in all; the first term of a run can be
/// kept as their stand-in. Such a term is a whole operand of its `OR`
/// (OR binds least), so the analysis may read it as the column's `IN`.
#[derive(Default)]
enum RunScan {
    #[default]
    Outside,
    /// After `OR`; the run so far.
    AfterOr(Option<Run>),
    /// Inside a (qualified) column name that started at `start`.
    Column {
        run: Option<Run>,
        start: usize,
    },
    ColumnDot {
        run: Option<Run>,
        start: usize,
    },
    AfterEq {
        run: Option<Run>,
        column: Range<usize>,
    },
    AfterValue {
        run: Option<Run>,
        column: Range<usize>,
        value: Range<usize>,
    },
}

/// The terms of a run found so far.
struct Run {
    column: Range<usize>,
    /// The first term's value.
    first: Range<usize>,
    /// The last term's value's end.
    last_end: usize,
    terms: usize,
}

impl RunScan {
    /// Takes the next token (`spaced`: nothing but spaces before it); at
    /// the end of a long enough run, its cut.
    fn next(
        &mut self,
        sql: &str,
        t: &crate::lex::Spanned<'_>,
        spaced: bool,
    ) -> Option<(usize, usize, Edit)> {
        let name = |t: &Token<'_>| matches!(t, Token::Word(_) | Token::QuotedIdent(_));
        let integer =
            |t: &Token<'_>| matches!(t, Token::Number(n) if n.bytes().all(|b| b.is_ascii_digit()));
        let (state, ended) = match (std::mem::take(self), &t.token) {
            // A comment: the run ends before it.
            (state, _) if !spaced => (RunScan::Outside, state.into_run().and_then(Run::cut)),
            (RunScan::AfterOr(run), tok) if name(tok) => (
                RunScan::Column {
                    run,
                    start: t.start,
                },
                None,
            ),
            (RunScan::Column { run, start }, Token::Punct(b'.')) => {
                (RunScan::ColumnDot { run, start }, None)
            }
            (RunScan::ColumnDot { run, start }, tok) if name(tok) => {
                (RunScan::Column { run, start }, None)
            }
            (RunScan::Column { run, start }, Token::Punct(b'=')) => (
                RunScan::AfterEq {
                    run,
                    column: start..t.start,
                },
                None,
            ),
            (RunScan::AfterEq { run, column }, tok) if integer(tok) => (
                RunScan::AfterValue {
                    run,
                    column,
                    value: t.start..t.end,
                },
                None,
            ),
            (
                RunScan::AfterValue {
                    run: Some(mut run),
                    column,
                    value,
                },
                tok,
            ) if tok.is_word("OR")
                && sql[run.column.clone()].trim_end() == sql[column.clone()].trim_end() =>
            {
                run.last_end = value.end;
                run.terms += 1;
                (RunScan::AfterOr(Some(run)), None)
            }
            (RunScan::AfterValue { run, column, value }, tok) if tok.is_word("OR") => {
                // A new column: a new run.
                let fresh = Run {
                    column,
                    first: value.clone(),
                    last_end: value.end,
                    terms: 1,
                };
                (RunScan::AfterOr(Some(fresh)), run.and_then(Run::cut))
            }
            (state, tok) => {
                let ended = state.into_run().and_then(Run::cut);
                match tok.is_word("OR") {
                    true => (RunScan::AfterOr(None), ended),
                    false => (RunScan::Outside, ended),
                }
            }
        };
        *self = state;
        ended
    }

    /// At the end of the statement, the cut of a run that ends there.
    fn finish(self) -> Option<(usize, usize, Edit)> {
        self.into_run().and_then(Run::cut)
    }

    fn into_run(self) -> Option<Run> {
        match self {
            RunScan::Outside => None,
            RunScan::AfterOr(run)
            | RunScan::Column { run, .. }
            | RunScan::ColumnDot { run, .. }
            | RunScan::AfterEq { run, .. }
            | RunScan::AfterValue { run, .. } => run,
        }
    }
}

impl Run {
    /// Its terms after the first taken out, if there are enough of them.
    fn cut(self) -> Option<(usize, usize, Edit)> {
        let (start, end) = (self.first.end, self.last_end);
        (self.terms >= LONG_LIST).then_some((start, end, Edit::Run(self.first.start..end)))
    }
}

/// Finds the rows of `INSERT … VALUES (…), (…)` (its `VALUES` outside
/// parentheses) whose values are all plain literals, `NULL`, `TRUE`,
/// `FALSE` or `?`, a number perhaps negated.
#[derive(Default)]
enum RowScan {
    #[default]
    Outside,
    /// Past `VALUES` or a row's comma.
    BeforeRow(Rows),
    /// Inside a row, expecting a value (`after_minus`: after a `-`).
    Value { rows: Rows, after_minus: bool },
    /// Inside a row, after a value.
    AfterValue(Rows),
    /// After a row's `)`.
    AfterRow(Rows),
    /// Past the rows, or not an INSERT of plain rows.
    Done,
    /// Counting parentheses before `VALUES`.
    Head { depth: usize },
}

#[derive(Default)]
struct Rows {
    first_end: Option<usize>,
    last_end: usize,
    count: usize,
}

impl RowScan {
    /// Takes the next token (`spaced`: nothing but spaces before it;
    /// `last`: the statement's last); where the rows end, their cut.
    fn next(
        &mut self,
        t: &crate::lex::Spanned<'_>,
        spaced: bool,
        last: bool,
    ) -> Option<(usize, usize, Edit)> {
        let value = |tok: &Token<'_>| match tok {
            Token::Number(n) => plain_number(n),
            Token::Str(_) | Token::Punct(b'?') => true,
            tok => ["NULL", "TRUE", "FALSE"].iter().any(|w| tok.is_word(w)),
        };
        let state = match (std::mem::take(self), &t.token) {
            (RowScan::Outside, _) => RowScan::Head { depth: 0 },
            (RowScan::Done, _) => RowScan::Done,
            (RowScan::Head { depth }, Token::Punct(b'(')) => RowScan::Head { depth: depth + 1 },
            (RowScan::Head { depth }, Token::Punct(b')')) => RowScan::Head {
                depth: depth.saturating_sub(1),
            },
            (RowScan::Head { depth: 0 }, tok) if tok.is_word("VALUES") || tok.is_word("VALUE") => {
                RowScan::BeforeRow(Rows::default())
            }
            (head @ RowScan::Head { .. }, _) => head,
            (RowScan::AfterRow(rows), Token::Punct(b',')) if spaced => RowScan::BeforeRow(rows),
            (RowScan::AfterRow(rows), _) => {
                // Past the rows, or a comment: those so far are cut.
                *self = RowScan::Done;
                return rows.cut();
            }
            (_, _) if !spaced => RowScan::Done,
            (RowScan::BeforeRow(rows), Token::Punct(b'(')) => RowScan::Value {
                rows,
                after_minus: false,
            },
            (
                RowScan::Value {
                    rows,
                    after_minus: false,
                },
                Token::Punct(b'-'),
            ) => RowScan::Value {
                rows,
                after_minus: true,
            },
            (
                RowScan::Value {
                    rows,
                    after_minus: true,
                },
                Token::Number(n),
            ) if plain_number(n) => RowScan::AfterValue(rows),
            (
                RowScan::Value {
                    rows,
                    after_minus: false,
                },
                tok,
            ) if value(tok) => RowScan::AfterValue(rows),
            (RowScan::AfterValue(rows), Token::Punct(b',')) => RowScan::Value {
                rows,
                after_minus: false,
            },
            (RowScan::AfterValue(mut rows), Token::Punct(b')')) => {
                rows.first_end.get_or_insert(t.end);
                rows.last_end = t.end;
                rows.count += 1;
                RowScan::AfterRow(rows)
            }
            _ => RowScan::Done,
        };
        match state {
            RowScan::AfterRow(rows) if last => rows.cut(),
            state => {
                *self = state;
                None
            }
        }
    }
}

impl Rows {
    /// The rows after the first taken out, if there are enough of them.
    fn cut(self) -> Option<(usize, usize, Edit)> {
        let first_end = self.first_end?;
        (self.count >= LONG_LIST).then_some((first_end, self.last_end, Edit::Rows))
    }
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

    /// The byte count that spares most statements the lexing finds the
    /// same ranges as the lexing, around the shortest lists, runs and rows
    /// that are cut.
    #[test]
    fn cut_ranges_are_the_cut_items_around_the_shortest_cut_statements() {
        let joined = |n: usize, item: &dyn Fn(usize) -> String, sep: &str| {
            (1..=n).map(item).collect::<Vec<_>>().join(sep)
        };
        let shapes: [&dyn Fn(usize) -> String; 3] = [
            &|n| {
                format!(
                    "SELECT 1 FROM t WHERE b IN ({})",
                    joined(n, &|i| i.to_string(), ",")
                )
            },
            &|n| {
                format!(
                    "SELECT 1 FROM t WHERE {}",
                    joined(n, &|i| format!("a = {i}"), " OR ")
                )
            },
            &|n| {
                format!(
                    "INSERT INTO t VALUES {}",
                    joined(n, &|i| format!("({i})"), ",")
                )
            },
        ];
        for shape in shapes {
            let mut cut = 0;
            for n in LONG_LIST - 2..LONG_LIST + 4 {
                let sql = shape(n);
                let items: Vec<_> = Condensed::of(&sql).cut_items().collect();
                cut += usize::from(!items.is_empty());
                assert_eq!(Condensed::cut_ranges(&sql), items, "{sql:.60}");
            }
            assert!(cut > 0, "{:.60}", shape(LONG_LIST));
        }
    }

    #[test]
    fn long_runs_of_equalities_keep_their_first_two_terms_and_last() {
        let run = |column: &str, n: usize| {
            (1..=n)
                .map(|i| format!("{column} = {i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let sql = format!("SELECT 1 FROM t WHERE {} OR b = 7", run("t.a", 70));
        let c = Condensed::of(&sql);
        assert_eq!(
            c.text(),
            "SELECT 1 FROM t WHERE t.a = 1 OR t.a = 2 OR b = 7"
        );
        // The run is terms 2 to 70, each between two ORs.
        let second = sql.find("= 2").unwrap_or_default() + 2;
        let items = c.cut_list(second).unwrap_or_default();
        assert_eq!(&sql[items.start..items.start + 1], "2");
        assert_eq!(&sql[items.end - 6..items.end], "a = 70");
        assert!(c.emptied(Some(second)) && c.asked());
        // Runs ended by what binds tighter than OR, or by a comment.
        let sql = format!(
            "SELECT 1 FROM t WHERE {} XOR a = 100 AND a = 101",
            run("a", 70)
        );
        assert_eq!(
            Condensed::of(&sql).text(),
            "SELECT 1 FROM t WHERE a = 1 OR a = 2 OR a = 70 XOR a = 100 AND a = 101"
        );
        for sql in [
            format!("SELECT 1 FROM t WHERE {}", run("a", LONG_LIST)),
            format!(
                "SELECT 1 FROM t WHERE {} OR {} OR x",
                run("a", 40),
                run("b", 40)
            ),
            format!(
                "SELECT 1 FROM t WHERE a = 1 OR {}",
                run("a", 40).replace("a = 20 ", "a = 20 /* */ ")
            ),
            format!(
                "SELECT 1 FROM t WHERE {} OR x",
                run("a", 70).replace(" = ", " <= ")
            ),
            format!(
                "SELECT 1 FROM t WHERE {} OR x",
                run("a", 70).replace("= ", "= -")
            ),
            format!(
                "SELECT 1 FROM t WHERE {} OR x",
                run("a", 70).replace(" OR ", " || ")
            ),
        ] {
            assert_eq!(Condensed::of(&sql).text(), sql, "{sql:.40}");
        }
    }

    #[test]
    fn long_inserts_keep_their_first_row() {
        let rows = |n: usize| {
            (1..=n)
                .map(|i| format!("({i}, 'x{i}', -{i}.5, NULL, ?, TRUE)"))
                .collect::<Vec<_>>()
                .join(",\n ")
        };
        let sql = format!(
            "INSERT INTO t (a, b) VALUES {} ON DUPLICATE KEY UPDATE b = 1",
            rows(70)
        );
        let c = Condensed::of(&sql);
        assert_eq!(
            c.text(),
            "INSERT INTO t (a, b) VALUES (1, 'x1', -1.5, NULL, ?, TRUE) ON DUPLICATE KEY UPDATE b = 1"
        );
        let first_end = sql.find("TRUE)").unwrap_or_default() + 5;
        let cut = c.cut_rows(first_end).unwrap_or_default();
        assert!(sql[cut.clone()].starts_with(",\n (2, "));
        assert!(sql[cut].ends_with("(70, 'x70', -70.5, NULL, ?, TRUE)"));
        assert_eq!(c.cut_rows(first_end - 1), None);
        let long = "y".repeat(LONG);
        // Long literals: emptied in the first row, cut with the others.
        let sql = format!("REPLACE t VALUE ('{long}'), {}, ('{long}')", rows(70));
        assert_eq!(Condensed::of(&sql).text(), "REPLACE t VALUE ('')");
        for sql in [
            format!("INSERT INTO t VALUES {}", rows(LONG_LIST - 1)),
            format!("INSERT INTO t VALUES {}, (1 + 2)", rows(70))
                .replace("(1 + 2)", "(1, 2)")
                .replace("?", "DEFAULT"),
            format!("INSERT INTO t VALUES {}", rows(70)).replace("NULL", "NOW()"),
            format!("INSERT INTO t VALUES {}", rows(70)).replace("NULL", "NULL /* */"),
            format!("INSERT INTO t VALUES {}", rows(70)).replace("'x", "_utf8mb4'x"),
            format!("INSERT INTO t SELECT * FROM (VALUES {}) v", rows(70)),
            format!("SELECT * FROM (VALUES {}) v", rows(70)),
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
