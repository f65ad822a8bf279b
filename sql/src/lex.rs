//! A small MySQL lexer: just enough to classify a statement (its leading
//! keywords, SET assignments, functions that tie a session to one backend
//! connection) without a full parse on the pass-through path.

use std::ops::{Bound, Range};

use crate::shard::condensed::Condensed;

/// One token; text tokens borrow from the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A keyword or unquoted identifier.
    Word(&'a str),
    /// A `backtick` quoted identifier, without the quotes.
    QuotedIdent(&'a str),
    /// A string literal as written, quotes included.
    Str(&'a str),
    Number(&'a str),
    /// `@name`, name without the `@`.
    UserVar(&'a str),
    /// `@@[scope.]name`, as written after `@@`.
    SysVar(&'a str),
    Punct(u8),
}

impl<'a> Token<'a> {
    /// Whether this is the keyword `kw` (any letter case).
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// A token and the byte range it covers in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spanned<'a> {
    pub token: Token<'a>,
    pub start: usize,
    pub end: usize,
}

/// Iterates over the tokens of `sql`, skipping white space and comments.
/// Executable comments (`/*! ... */`, `/*M! ... */`) count as code, as the
/// server runs them.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
    in_exec_comment: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Self {
        Self {
            sql,
            pos: 0,
            in_exec_comment: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.sql.as_bytes()
    }

    fn skip_trivia(&mut self) {
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                Some(c) if c.is_ascii_whitespace() => self.pos += 1,
                Some(b'#') => self.skip_line(),
                Some(b'-')
                    if b.get(self.pos + 1) == Some(&b'-')
                        && b.get(self.pos + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
                {
                    self.skip_line()
                }
                Some(b'/') if b.get(self.pos + 1) == Some(&b'*') => {
                    let exec = b.get(self.pos + 2) == Some(&b'!')
                        || (b.get(self.pos + 2) == Some(&b'M')
                            && b.get(self.pos + 3) == Some(&b'!'));
                    if exec {
                        self.pos += if b[self.pos + 2] == b'M' { 4 } else { 3 };
                        while b.get(self.pos).is_some_and(u8::is_ascii_digit) {
                            self.pos += 1;
                        }
                        self.in_exec_comment = true;
                    } else {
                        match find(b, self.pos + 2, b"*/") {
                            Some(end) => self.pos = end + 2,
                            None => self.pos = b.len(),
                        }
                    }
                }
                Some(b'*') if self.in_exec_comment && b.get(self.pos + 1) == Some(&b'/') => {
                    self.in_exec_comment = false;
                    self.pos += 2;
                }
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            self.pos += 1;
            if c == b'\n' {
                return;
            }
        }
    }

    /// End of a quoted run starting at `start` (on the quote); handles
    /// doubled quotes and backslash escapes.
    fn quoted_end(&self, start: usize) -> usize {
        let b = self.bytes();
        let quote = b[start];
        let mut i = start + 1;
        while i < b.len() {
            let c = b[i];
            if c == b'\\' && quote != b'`' {
                i += 2;
                continue;
            }
            if c == quote {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        b.len()
    }

    /// Where the contents of the quoted token opened at `open` and ending
    /// at `end` stop: before its closing quote, or at `end` when the text
    /// ends before the quote closes (`end - 1` would then cut a
    /// multi-byte character that ends the text).
    fn contents_end(&self, open: usize, end: usize) -> usize {
        let b = self.bytes();
        if end > open + 1 && b[end - 1] == b[open] {
            end - 1
        } else {
            end
        }
    }

    fn word_end(&self, start: usize) -> usize {
        let b = self.bytes();
        let mut i = start;
        while i < b.len() && is_word_byte(b[i]) {
            i += 1;
        }
        i
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

impl<'a> Lexer<'a> {
    /// The end of the token that starts at `start`.
    fn token_end(&self, start: usize) -> usize {
        let b = self.bytes();
        match b[start] {
            b'\'' | b'"' | b'`' => self.quoted_end(start),
            b'@' if b.get(start + 1) == Some(&b'@') => {
                let mut end = start + 2;
                while end < b.len() && (is_word_byte(b[end]) || b[end] == b'.') {
                    end += 1;
                }
                end
            }
            b'@' => match b.get(start + 1) {
                Some(b'\'' | b'"' | b'`') => self.quoted_end(start + 1),
                _ => self.word_end(start + 1),
            },
            b'0'..=b'9' => {
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                    end += 1;
                }
                end
            }
            c if is_word_byte(c) => self.word_end(start),
            _ => start + 1,
        }
    }

    /// The next token's byte range.
    fn next_range(&mut self) -> Option<(usize, usize)> {
        self.skip_trivia();
        let start = self.pos;
        self.bytes().get(start)?;
        let end = self.token_end(start);
        self.pos = end;
        Some((start, end))
    }

    /// The token lexed at `start..end`: what it is follows from its first
    /// bytes, as it did for [`Self::token_end`].
    fn token_at(&self, start: usize, end: usize) -> Token<'a> {
        let (b, sql) = (self.bytes(), self.sql);
        match b[start] {
            b'\'' | b'"' => Token::Str(&sql[start..end]),
            b'`' => Token::QuotedIdent(&sql[start + 1..self.contents_end(start, end)]),
            b'@' if b.get(start + 1) == Some(&b'@') => Token::SysVar(&sql[start + 2..end]),
            b'@' => match b.get(start + 1) {
                Some(b'\'' | b'"' | b'`') => {
                    Token::UserVar(&sql[start + 2..self.contents_end(start + 1, end)])
                }
                _ => Token::UserVar(&sql[start + 1..end]),
            },
            b'0'..=b'9' => Token::Number(&sql[start..end]),
            c if is_word_byte(c) => Token::Word(&sql[start..end]),
            c => Token::Punct(c),
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Spanned<'a>;

    fn next(&mut self) -> Option<Spanned<'a>> {
        let (start, end) = self.next_range()?;
        Some(Spanned {
            token: self.token_at(start, end),
            start,
            end,
        })
    }
}

/// A byte range of a statement in 8 bytes, where a token stands (what the
/// token is is read back from the statement's bytes there) or an INSERT's
/// row. Statements are bounded by `max_allowed_packet`, at most 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub(crate) fn of(start: usize, end: usize) -> Self {
        Span {
            start: Span::at(start),
            end: Span::at(end),
        }
    }

    /// A position of a statement, in 32 bits.
    fn at(i: usize) -> u32 {
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    pub(crate) fn start(&self) -> usize {
        self.start as usize
    }

    pub(crate) fn end(&self) -> usize {
        self.end as usize
    }
}

/// Statements longer than this have their tokens counted before they are
/// kept, so that the list takes what it needs and no more (a growing
/// vector holds up to twice that).
const COUNTED_FIRST: usize = 1 << 20;

/// A counted statement with more tokens than one per this many bytes keeps
/// their starts only ([`Starts`]): its tokens are short, and lexing one
/// again from its start (for its end) costs little. `1+1+1...` has a
/// token per byte: 8 bytes of spans per byte of text, 1.25 of starts.
const DENSE: usize = 4;

/// Where a list's tokens stand.
#[derive(Debug, Clone)]
enum Positions {
    Spans(Vec<Span>),
    /// Starts only, for a long statement of short tokens ([`DENSE`]).
    Starts(Starts),
}

/// A run of [`Positions`].
#[derive(Debug, Clone, Copy)]
enum PositionsOf<'t> {
    Spans(&'t [Span]),
    /// Tokens `from..to` of these.
    Starts {
        starts: &'t Starts,
        from: usize,
        to: usize,
    },
}

/// Every [`STRIDE`]th token's start is kept whole in [`Starts`]; the
/// others are found from it in fewer than this many steps.
const STRIDE: usize = 16;

/// A step too long for a byte: the token's start is kept in [`Starts::far`].
const FAR: u8 = u8::MAX;

/// Token starts in about a byte and a quarter each: each token's step from
/// the previous token's start, a byte (short tokens are a few bytes
/// apart), and every [`STRIDE`]th start whole, so that any start is a few
/// additions away.
#[derive(Debug, Clone, Default)]
struct Starts {
    marks: Vec<u32>,
    steps: Vec<u8>,
    /// The (token, start) of each token whose step is [`FAR`], in order:
    /// at most one per 255 bytes of text.
    far: Vec<(u32, u32)>,
    last: u32,
}

impl Starts {
    fn with_capacity(count: usize) -> Self {
        Starts {
            marks: Vec::with_capacity(count.div_ceil(STRIDE)),
            steps: Vec::with_capacity(count),
            ..Starts::default()
        }
    }

    fn push(&mut self, start: u32) {
        let i = self.steps.len();
        if i % STRIDE == 0 {
            self.marks.push(start);
            self.steps.push(0);
        } else {
            match start
                .checked_sub(self.last)
                .and_then(|step| u8::try_from(step).ok())
            {
                Some(step) if step < FAR => self.steps.push(step),
                _ => {
                    self.steps.push(FAR);
                    self.far.push((Span::at(i), start));
                }
            }
        }
        self.last = start;
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    fn get(&self, i: usize) -> Option<usize> {
        let mark = i / STRIDE * STRIDE;
        let steps = self.steps.get(mark + 1..=i)?;
        // From the last far start before `i`, or else from the mark.
        let (from, steps) = match steps.iter().rposition(|&step| step == FAR) {
            Some(k) => {
                let token = Span::at(mark + 1 + k);
                let far = self.far.partition_point(|&(t, _)| t < token);
                (self.far.get(far)?.1, &steps[k + 1..])
            }
            None => (*self.marks.get(i / STRIDE)?, steps),
        };
        Some(from as usize + steps.iter().map(|&step| usize::from(step)).sum::<usize>())
    }
}

/// A statement's tokens, kept as [`Span`]s: 8 bytes per token where a
/// [`Spanned`] takes 40 (about 1.25, their [`Starts`], for a long
/// statement of short tokens). A 20 MiB statement of short tokens has
/// some ten million of them; every statement's tokens are kept while it
/// is classified, checked and analysed.
#[derive(Debug, Clone)]
pub struct TokenList<'a> {
    sql: &'a str,
    positions: Positions,
}

impl<'a> TokenList<'a> {
    /// Every token of `sql`.
    pub fn of(sql: &'a str) -> Self {
        Self::from_ranges(sql, || {
            let mut lexer = Lexer::new(sql);
            std::iter::from_fn(move || lexer.next_range())
        })
    }

    /// The tokens of one statement that its readers need (classification,
    /// read safety, access checks, the tables the analysis looks for): all
    /// but those of its long lists of integers, runs of one column's
    /// equalities and INSERT rows of plain literals, which the analysis
    /// reads from the text (`shard::condensed`). Those hold no keyword,
    /// function or name that the rest does not show, and they can be most
    /// of a long statement's tokens.
    pub fn of_statement(sql: &'a str) -> Self {
        let cuts = Condensed::cut_ranges(sql);
        Self::from_ranges(sql, || uncut(sql, cuts.iter().cloned()))
    }

    fn from_ranges<I: Iterator<Item = (usize, usize)>>(
        sql: &'a str,
        ranges: impl Fn() -> I,
    ) -> Self {
        let count = (sql.len() > COUNTED_FIRST).then(|| ranges().count());
        let positions = match count {
            Some(count) if count > sql.len() / DENSE => {
                let mut starts = Starts::with_capacity(count);
                ranges().for_each(|(start, _)| starts.push(Span::at(start)));
                Positions::Starts(starts)
            }
            _ => {
                let mut spans = Vec::with_capacity(count.unwrap_or(0));
                spans.extend(ranges().map(|(start, end)| Span::of(start, end)));
                Positions::Spans(spans)
            }
        };
        TokenList { sql, positions }
    }

    /// A view of all of them.
    pub fn tokens(&self) -> Tokens<'_, 'a> {
        Tokens {
            sql: self.sql,
            positions: match &self.positions {
                Positions::Spans(spans) => PositionsOf::Spans(spans),
                Positions::Starts(starts) => PositionsOf::Starts {
                    starts,
                    from: 0,
                    to: starts.len(),
                },
            },
        }
    }
}

/// The token ranges of `sql` outside `cuts` (in order).
fn uncut<'c>(
    sql: &'c str,
    cuts: impl Iterator<Item = Range<usize>> + 'c,
) -> impl Iterator<Item = (usize, usize)> + 'c {
    let mut lexer = Lexer::new(sql);
    let mut cuts = cuts.peekable();
    std::iter::from_fn(move || lexer.next_range()).filter(move |(start, _)| {
        while cuts.peek().is_some_and(|cut| cut.end <= *start) {
            cuts.next();
        }
        !cuts.peek().is_some_and(|cut| cut.contains(start))
    })
}

/// [`TokenList::of_statement`]'s tokens as they are lexed, for a reader
/// that needs them once.
pub(crate) fn read_tokens(sql: &str) -> impl Iterator<Item = Spanned<'_>> {
    uncut(sql, Condensed::cut_ranges(sql).into_iter())
        .map(move |(start, end)| spanned(sql, Span::of(start, end)))
}

/// The token at `span` of `sql`.
fn spanned(sql: &str, span: Span) -> Spanned<'_> {
    let (start, end) = (span.start(), span.end());
    Spanned {
        token: Lexer::new(sql).token_at(start, end),
        start,
        end,
    }
}

/// A run of a statement's tokens, read like a slice of [`Spanned`]: each
/// is made from where it stands as it is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'t, 'a: 't> {
    sql: &'a str,
    positions: PositionsOf<'t>,
}

impl<'t, 'a: 't> Tokens<'t, 'a> {
    /// The statement these are tokens of.
    pub fn sql(&self) -> &'a str {
        self.sql
    }

    pub fn len(&self) -> usize {
        match self.positions {
            PositionsOf::Spans(spans) => spans.len(),
            PositionsOf::Starts { from, to, .. } => to - from,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<Spanned<'a>> {
        match self.positions {
            PositionsOf::Spans(spans) => spans.get(i).map(|&span| spanned(self.sql, span)),
            PositionsOf::Starts { starts, from, to } => {
                let start = starts.get(from.checked_add(i).filter(|&i| i < to)?)?;
                let end = Lexer::new(self.sql).token_end(start);
                Some(spanned(self.sql, Span::of(start, end)))
            }
        }
    }

    /// The `i`th token; `i` must be below [`Self::len`], as for a slice's
    /// index.
    pub fn at(&self, i: usize) -> Spanned<'a> {
        match self.get(i) {
            Some(token) => token,
            None => panic!("token {i} of {}", self.len()),
        }
    }

    pub fn first(&self) -> Option<Spanned<'a>> {
        self.get(0)
    }

    pub fn last(&self) -> Option<Spanned<'a>> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The first token and the rest, as `<[T]>::split_first`.
    pub fn split_first(&self) -> Option<(Spanned<'a>, Self)> {
        Some((self.first()?, self.slice(1..)))
    }

    /// The runs between tokens that `separator` picks, as
    /// `<[T]>::split`.
    pub fn split(
        &self,
        mut separator: impl FnMut(&Spanned<'a>) -> bool + 't,
    ) -> impl Iterator<Item = Self> + 't {
        let whole = *self;
        let mut from = Some(0);
        std::iter::from_fn(move || {
            let start = from?;
            let end = (start..whole.len())
                .find(|&i| separator(&whole.at(i)))
                .unwrap_or(whole.len());
            from = (end < whole.len()).then_some(end + 1);
            Some(whole.slice(start..end))
        })
    }

    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = Spanned<'a>> + ExactSizeIterator + Clone + 't {
        let whole = *self;
        (0..whole.len()).map(move |i| whole.at(i))
    }

    /// The tokens in `range` of these, as `&slice[range]` (which it panics
    /// like, out of bounds).
    pub fn slice(&self, range: impl std::ops::RangeBounds<usize>) -> Self {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        Tokens {
            sql: self.sql,
            positions: match self.positions {
                PositionsOf::Spans(spans) => PositionsOf::Spans(&spans[range]),
                PositionsOf::Starts { starts, from, to } => {
                    let (start, end) = bounds(range, to - from);
                    PositionsOf::Starts {
                        starts,
                        from: from + start,
                        to: from + end,
                    }
                }
            },
        }
    }
}

/// The `start..end` that `range` stands for in a run of `len`, which it
/// must lie within, as a slice's index.
fn bounds(range: (Bound<usize>, Bound<usize>), len: usize) -> (usize, usize) {
    let start = match range.0 {
        Bound::Included(start) => start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.1 {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => end,
        Bound::Unbounded => len,
    };
    assert!(start <= end && end <= len, "tokens {start}..{end} of {len}");
    (start, end)
}

/// The `qualifier.name` pairs of a statement's tokens (`db.t`,
/// `` `db`.`t` ``, also with space around the dot, as the server reads
/// them): a table's database, or a column's table. Of `a.b.c` only `a.b`.
pub fn qualified_names<'a>(tokens: Tokens<'_, 'a>) -> Vec<(&'a str, &'a str)> {
    let name = |i: usize| match tokens.get(i).map(|s| s.token) {
        Some(Token::Word(w) | Token::QuotedIdent(w)) => Some(w),
        _ => None,
    };
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let dot = tokens.get(i + 1).map(|s| s.token) == Some(Token::Punct(b'.'));
        match (name(i), dot, name(i + 2)) {
            (Some(qualifier), true, Some(object)) => {
                pairs.push((qualifier, object));
                // `a.b.c`: `b` qualifies a column of table `a.b`, not a table.
                i += 3;
                while tokens.get(i).map(|s| s.token) == Some(Token::Punct(b'.')) {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(sql: &str) -> Vec<Token<'_>> {
        Lexer::new(sql).map(|s| s.token).collect()
    }

    #[test]
    fn words_strings_vars() {
        assert_eq!(
            tokens("SET @a = 'it''s', @@session.sql_mode=`x`, b=1.5 -- tail"),
            vec![
                Token::Word("SET"),
                Token::UserVar("a"),
                Token::Punct(b'='),
                Token::Str("'it''s'"),
                Token::Punct(b','),
                Token::SysVar("session.sql_mode"),
                Token::Punct(b'='),
                Token::QuotedIdent("x"),
                Token::Punct(b','),
                Token::Word("b"),
                Token::Punct(b'='),
                Token::Number("1.5"),
            ]
        );
    }

    /// Found by the rewrite_splice fuzz target: a quote left open before a
    /// multi-byte character that ends the statement panicked (its contents
    /// were cut one byte short of the end, inside the character).
    #[test]
    fn quotes_left_open_before_a_last_multibyte_character() {
        assert_eq!(
            tokens("SELECT `é"),
            vec![Token::Word("SELECT"), Token::QuotedIdent("é")]
        );
        assert_eq!(
            tokens("SET @`名"),
            vec![Token::Word("SET"), Token::UserVar("名")]
        );
        assert_eq!(tokens("`x`"), vec![Token::QuotedIdent("x")]);
        assert_eq!(tokens("``"), vec![Token::QuotedIdent("")]);
        assert_eq!(tokens("`"), vec![Token::QuotedIdent("")]);
        assert_eq!(tokens("@'v'"), vec![Token::UserVar("v")]);
        assert_eq!(tokens("@'"), vec![Token::UserVar("")]);
    }

    #[test]
    fn qualified_names_are_pairs_around_a_dot() {
        let sql = "SELECT a.b.c, t . d, 1.5 FROM `db`.`t` JOIN x.y ON 'q.r' = s.u";
        assert_eq!(
            qualified_names(TokenList::of(sql).tokens()),
            [("a", "b"), ("t", "d"), ("db", "t"), ("x", "y"), ("s", "u")]
        );
    }

    #[test]
    fn comments_skipped_and_executable_comments_kept() {
        assert_eq!(
            tokens("/* hi */ # line\n /*!40101 SET NAMES utf8 */"),
            vec![
                Token::Word("SET"),
                Token::Word("NAMES"),
                Token::Word("utf8")
            ]
        );
        assert_eq!(
            tokens("SELECT 1 --x"),
            vec![
                Token::Word("SELECT"),
                Token::Number("1"),
                Token::Punct(b'-'),
                Token::Punct(b'-'),
                Token::Word("x")
            ]
        );
    }

    #[test]
    fn backslash_escapes_in_strings() {
        assert_eq!(
            tokens(r"'a\'b' c"),
            vec![Token::Str(r"'a\'b'"), Token::Word("c")]
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in ["'abc", "`abc", "/* abc", "@", "@@", "@'", "/*!", "x`"] {
            let _ = tokens(sql);
        }
    }

    /// A token list keeps where each token stands, not what it is: read
    /// back, every token is the one the lexer made.
    #[test]
    fn token_lists_read_back_the_lexers_tokens() {
        for sql in [
            "SET @a = 'it''s', @@session.sql_mode=`x`, b=1.5 -- tail",
            "SELECT `a``b`, \"q\"\"r\", @`u v`, @'w', @\"x\", @y, @@global.z, 0x1F, 1e5, é",
            "/*!40101 SET NAMES utf8 */ /*M!100 x */ # c\n a */ b",
            "SELECT `é",
            "SET @`名",
            "`",
            "@'",
            "@",
            "@@",
            "'abc",
            "x`",
            "a*/b",
            "--x -- y\nz",
        ] {
            let list = TokenList::of(sql);
            let read: Vec<_> = list.tokens().iter().collect();
            let lexed: Vec<_> = Lexer::new(sql).collect();
            assert_eq!(read, lexed, "{sql}");
            let tokens = list.tokens();
            assert_eq!(tokens.last(), lexed.last().copied());
            for (i, t) in lexed.iter().enumerate() {
                assert_eq!(tokens.get(i), Some(*t));
                assert_eq!(tokens.slice(i..).first(), Some(*t));
            }
            assert_eq!(tokens.get(lexed.len()), None);
        }
    }

    /// A long statement of short tokens keeps their starts only; read
    /// back, its tokens are still the lexer's. One of long tokens keeps
    /// their spans.
    #[test]
    fn long_statements_of_short_tokens_keep_starts() {
        // Steps too long for a byte: a long string, a long comment.
        let dense = format!(
            "SELECT {}'{}', `a``b` /* {} */, @`u`, 1.5e3",
            "1+".repeat(COUNTED_FIRST),
            "s".repeat(300),
            "c".repeat(70_000),
        );
        let sparse = format!("SELECT '{}', x", "a".repeat(COUNTED_FIRST));
        for (sql, starts) in [(&dense, true), (&sparse, false)] {
            let list = TokenList::of(sql);
            assert_eq!(
                matches!(list.positions, Positions::Starts(_)),
                starts,
                "{sql:.40}"
            );
            let tokens = list.tokens();
            assert!(tokens.iter().eq(Lexer::new(sql)), "{sql:.40}");
            let lexed: Vec<_> = Lexer::new(sql).collect();
            assert_eq!(tokens.last(), lexed.last().copied());
            let tail = tokens.slice(tokens.len() - 3..);
            assert!(tail.iter().eq(lexed[lexed.len() - 3..].iter().copied()));
            let within = tokens.slice(1..=3).slice(1..);
            assert!(within.iter().eq(lexed[2..=3].iter().copied()));
            assert_eq!(tokens.slice(..3).get(3), None);
        }
    }

    /// Starts read back as pushed, whatever the steps between them: short,
    /// a byte's worth and far, at the marks and between them.
    #[test]
    fn starts_read_back_as_pushed() {
        let mut pushed = Vec::new();
        let mut start = 0u32;
        let mut seed = 7u32;
        for i in 0..5_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let step = match i % 97 {
                0 => 255,
                1 => 254,
                2 => 256 + seed % 70_000,
                _ => 1 + seed % 9,
            };
            start += step;
            pushed.push(start);
        }
        let mut starts = Starts::with_capacity(pushed.len());
        pushed.iter().for_each(|&s| starts.push(s));
        assert!(!starts.far.is_empty());
        for (i, &s) in pushed.iter().enumerate() {
            assert_eq!(starts.get(i), Some(s as usize), "start {i}");
        }
        assert_eq!(starts.get(pushed.len()), None);
    }

    #[test]
    fn token_lists_split_as_slices_do() {
        let sql = ";SELECT 1; ; SET a = 2;";
        let lexed: Vec<_> = Lexer::new(sql).collect();
        let list = TokenList::of(sql);
        let parts: Vec<Vec<Spanned<'_>>> = list
            .tokens()
            .split(|t| t.token == Token::Punct(b';'))
            .map(|part| part.iter().collect())
            .collect();
        let expected: Vec<Vec<Spanned<'_>>> = lexed
            .split(|t| t.token == Token::Punct(b';'))
            .map(<[_]>::to_vec)
            .collect();
        assert_eq!(parts, expected);
    }

    /// Long lists, runs and rows leave the tokens; every reader of them
    /// answers as it does from all of them.
    #[test]
    fn statement_tokens_answer_as_all_tokens_do() {
        use crate::classify::classify_lexed;
        use crate::dialect::MARIADB;
        use crate::reads::{replica_safe_lexed, writes_lexed};
        use crate::shard::labels::{analyze_labelled, analyze_labelled_lexed};
        use shardgate_rules::{Config, ShardingRules};

        let config = Config::from_toml_str(include_str!("../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let ids = |n: usize| {
            (1..=n)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let run = |column: &str, n: usize| {
            (1..=n)
                .map(|i| format!("{column} = {i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let rows = (0..200)
            .map(|i| format!("({i}, 'it''s {i}', NULL)"))
            .collect::<Vec<_>>()
            .join(", ");
        let statements = [
            format!(
                "SELECT user_id, DATABASE() FROM wework.users WHERE user_id IN ({}) FOR UPDATE",
                ids(5000)
            ),
            format!(
                "SELECT GET_LOCK('a', 1), x FROM t WHERE a IN ({})",
                ids(100)
            ),
            format!(
                "SELECT * FROM users u WHERE {} LOCK IN SHARE MODE",
                run("u.user_id", 300)
            ),
            format!("INSERT INTO users (user_id, name, email) VALUES {rows}"),
            format!("REPLACE INTO t VALUES {rows}"),
            format!(
                "UPDATE users SET name = 'x' WHERE user_id IN ({}) AND @v := 1",
                ids(70)
            ),
            // Its HAVING reads the run's values, and the second is not
            // understood: the whole text is parsed again, its tree deeper
            // than the tokens say.
            format!(
                "SELECT status, COUNT(*) FROM users GROUP BY status HAVING {}",
                run("status", 20_000)
            ),
            format!("SELECT * FROM users WHERE {} AND", run("user_id", 50_000)),
        ];
        for sql in &statements {
            let all = TokenList::of(sql);
            let all = all.tokens();
            let read = TokenList::of_statement(sql);
            let read = read.tokens();
            assert!(read.len() < 40, "{} tokens: {sql:.80}", read.len());
            assert_eq!(
                classify_lexed(&MARIADB, sql, read),
                classify_lexed(&MARIADB, sql, all),
                "{sql:.80}"
            );
            assert_eq!(
                writes_lexed(&MARIADB, sql, read),
                writes_lexed(&MARIADB, sql, all)
            );
            assert_eq!(
                replica_safe_lexed(&MARIADB, sql, read),
                replica_safe_lexed(&MARIADB, sql, all)
            );
            let mut names = qualified_names(read);
            names.dedup();
            let mut every = qualified_names(all);
            every.dedup();
            assert_eq!(names, every, "{sql:.80}");
            assert_eq!(
                analyze_labelled_lexed(sql, read, &MARIADB, &rules, "wework"),
                analyze_labelled(sql, &MARIADB, &rules, "wework"),
                "{sql:.80}"
            );
        }
    }
}
