//! The SQL a data node runs, kept as pieces: ranges of the client's
//! statement text, shared by every node, and the few strings that differ
//! from node to node (physical table names, a merge's tail, the UNION glue,
//! an INSERT's rows: [`NodeRows`]).
//!
//! A statement over a sharded table may go to dozens of physical tables.
//! Built as whole strings, a 20 MiB statement on 64 tables took 1.3 GB
//! before the first byte was sent (issue 15); as pieces it takes a few
//! hundred bytes per node, and each node's command is written out only
//! when it is sent, then dropped.

use std::borrow::Cow;
use std::fmt;

use super::node_rows::{NodeRows, RowsCursor};
use crate::text::{restore, restored_len};

/// One node's statement: its pieces, in order, borrowed from the
/// statement text `'s` where they are the client's own.
#[derive(Debug, Clone, Default)]
pub struct NodeSql<'s> {
    pieces: Vec<Piece<'s>>,
}

#[derive(Debug, Clone)]
enum Piece<'s> {
    Text(Cow<'s, str>),
    Rows(NodeRows<'s>),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Text(text) => text.len(),
            Piece::Rows(rows) => rows.len(),
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Piece::Text(text) => restored_len(text),
            Piece::Rows(rows) => rows.byte_len(),
        }
    }
}

impl<'s> NodeSql<'s> {
    /// `sql` with each edit's range `start..end` replaced by its text, as
    /// `rewrite::splice_tables` does: edits sorted by start, an edit that
    /// starts inside an earlier one left out.
    pub fn spliced(sql: &'s str, edits: impl IntoIterator<Item = (usize, usize, String)>) -> Self {
        let edits = edits.into_iter();
        // A shared range before each edit, its text, and the rest: one
        // allocation for a statement's few pieces (nodes are built often).
        let mut out = NodeSql {
            pieces: Vec::with_capacity(2 * edits.size_hint().0 + 1),
        };
        let mut from = 0;
        for (start, end, with) in edits {
            if start < from {
                continue;
            }
            out.push_shared(&sql[from..start]);
            out.push_own(with);
            from = end;
        }
        out.push_shared(&sql[from..]);
        out
    }

    /// Appends a range of the shared text.
    pub fn push_shared(&mut self, text: &'s str) {
        if !text.is_empty() {
            self.pieces.push(Piece::Text(Cow::Borrowed(text)));
        }
    }

    /// Appends text of this node's own.
    pub fn push_own(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !text.is_empty() {
            self.pieces.push(Piece::Text(Cow::Owned(text)));
        }
    }

    /// Appends an INSERT's rows, written out when the text is.
    pub fn push_rows(&mut self, rows: NodeRows<'s>) {
        if !rows.is_empty() {
            self.pieces.push(Piece::Rows(rows));
        }
    }

    /// Appends another node statement's pieces (the ranges stay shared).
    pub fn append(&mut self, other: NodeSql<'s>) {
        self.pieces.extend(other.pieces);
    }

    /// Removes trailing characters that `remove` matches, across text
    /// pieces; an INSERT's rows stop it (a node's statement is trimmed
    /// before its rows are added).
    pub fn trim_end_matches(&mut self, remove: impl Fn(char) -> bool) {
        while let Some(Piece::Text(last)) = self.pieces.last_mut() {
            let kept = last.trim_end_matches(&remove).len();
            if kept > 0 {
                match last {
                    Cow::Borrowed(text) => *text = &text[..kept],
                    Cow::Owned(text) => text.truncate(kept),
                }
                return;
            }
            self.pieces.pop();
        }
    }

    /// The length of the text, in bytes of the analysis text (at least
    /// that of the client's bytes [`NodeSql::write_bytes`] writes).
    pub fn len(&self) -> usize {
        // Saturating: a capacity hint; the pieces are in memory, their
        // shared ranges counted once per node.
        self.pieces
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The whole text; built only when it is made of several pieces.
    pub fn text(&self) -> Cow<'_, str> {
        match self.pieces.as_slice() {
            [] => Cow::Borrowed(""),
            [Piece::Text(one)] => Cow::Borrowed(one),
            many => {
                let mut out = String::with_capacity(self.len());
                for piece in many {
                    match piece {
                        Piece::Text(text) => out.push_str(text),
                        Piece::Rows(rows) => rows.write_text(&mut out),
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// Appends the client's bytes of the text (see [`restore`]) to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            // Pieces are cut at token boundaries, never inside a
            // character: restoring them one by one is restoring the whole.
            match piece {
                Piece::Text(text) => out.extend_from_slice(&restore(text)),
                Piece::Rows(rows) => {
                    rows.write_bytes(&mut RowsCursor::default(), out, usize::MAX);
                }
            }
        }
    }

    /// The length of the client's bytes of the text (those
    /// [`NodeSql::write_bytes`] writes), without building them.
    pub fn byte_len(&self) -> usize {
        self.pieces
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.byte_len()))
    }

    /// The client's bytes of the text, in order, in chunks of about `max`
    /// bytes of the analysis text each (cut between characters; a piece
    /// shorter than that is one chunk): a node's statement written out as
    /// it is read, never built whole. Chunks of the client's own UTF-8
    /// are borrowed; others (raw bytes of another character set) are
    /// restored one chunk at a time, and an INSERT's rows written out
    /// one chunk at a time.
    pub fn byte_chunks(&self, max: usize) -> ByteChunks<'_> {
        ByteChunks {
            pieces: &self.pieces,
            at: 0,
            rows_at: RowsCursor::default(),
            max: max.max(1),
        }
    }

    /// The client's bytes of the text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_bytes(&mut out);
        out
    }

    /// A command packet's payload: `command`, then the text's bytes.
    pub fn command(&self, command: u8) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_command(command, &mut out);
        out
    }

    /// [`NodeSql::command`] into `out`, cleared first: a buffer reused
    /// from node to node is allocated once.
    pub fn write_command(&self, command: u8, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.len().saturating_add(1));
        out.push(command);
        self.write_bytes(out);
    }
}

/// The client's bytes of a [`NodeSql`], chunk by chunk: see
/// [`NodeSql::byte_chunks`]. A named type, not a chain of closures: it is
/// held across the awaits of a write, whose future must be `Send`.
#[derive(Debug, Clone)]
pub struct ByteChunks<'a> {
    /// The pieces not yet read whole, the first from `at` (text) or
    /// `rows_at` (rows).
    pieces: &'a [Piece<'a>],
    at: usize,
    rows_at: RowsCursor,
    max: usize,
}

impl<'a> Iterator for ByteChunks<'a> {
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        let (piece, rest) = self.pieces.split_first()?;
        let piece: &'a str = match piece {
            Piece::Text(text) => text,
            Piece::Rows(rows) => {
                let mut chunk = Vec::with_capacity(self.max.min(rows.byte_len()));
                if rows.write_bytes(&mut self.rows_at, &mut chunk, self.max) {
                    self.pieces = rest;
                    self.rows_at = RowsCursor::default();
                }
                return Some(Cow::Owned(chunk));
            }
        };
        let text = piece.get(self.at..).unwrap_or_default();
        let cut = cut_between_characters(text, self.max);
        let chunk = &text[..cut];
        if cut == text.len() {
            self.pieces = rest;
            self.at = 0;
        } else {
            self.at += cut;
        }
        Some(restore(chunk))
    }
}

/// Where to cut `text` for a chunk of about `max` bytes: `max`, or the
/// next boundary between characters past it, or the end.
pub(super) fn cut_between_characters(text: &str, max: usize) -> usize {
    let mut cut = max.min(text.len());
    // Forward to the next boundary: `text.len()` is one, so this ends.
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    cut
}

impl From<String> for NodeSql<'_> {
    fn from(text: String) -> Self {
        let mut out = NodeSql::default();
        out.push_own(text);
        out
    }
}

impl From<&str> for NodeSql<'_> {
    fn from(text: &str) -> Self {
        NodeSql::from(text.to_owned())
    }
}

impl fmt::Display for NodeSql<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces.iter().try_for_each(|piece| match piece {
            Piece::Text(text) => f.write_str(text),
            Piece::Rows(rows) => {
                let mut text = String::with_capacity(rows.len());
                rows.write_text(&mut text);
                f.write_str(&text)
            }
        })
    }
}

/// Node statements are equal when their texts are, however they are cut.
impl PartialEq for NodeSql<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.text() == other.text()
    }
}

impl Eq for NodeSql<'_> {}

impl PartialEq<str> for NodeSql<'_> {
    fn eq(&self, other: &str) -> bool {
        self.len() == other.len() && self.text() == other
    }
}

impl PartialEq<&str> for NodeSql<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for NodeSql<'_> {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{analysis_text, ClientCharset};

    #[test]
    fn spliced_reads_as_the_edited_text() {
        let sql = "SELECT * FROM users u JOIN users v ON 1";
        let node = NodeSql::spliced(
            sql,
            [
                (14, 19, "`users_3`".to_owned()),
                // Inside the first edit: left out, as splice_tables does.
                (15, 16, "x".to_owned()),
                (27, 32, "`users_3`".to_owned()),
            ],
        );
        let want = "SELECT * FROM `users_3` u JOIN `users_3` v ON 1";
        assert_eq!(node, want);
        assert_eq!(node.len(), want.len());
        assert_eq!(node.to_string(), want);
        assert_eq!(
            node.command(3),
            [b"\x03".as_slice(), want.as_bytes()].concat()
        );
    }

    #[test]
    fn ranges_are_shared_not_copied() {
        let sql = "SELECT 1";
        let node = NodeSql::spliced(sql, []);
        assert!(matches!(node.text(), Cow::Borrowed(t) if std::ptr::eq(t, sql)));
    }

    #[test]
    fn trimming_crosses_pieces() {
        let mut node = NodeSql::spliced("SELECT 1 ;", []);
        node.push_own(" ");
        node.push_shared("; \n");
        node.trim_end_matches(char::is_whitespace);
        node.trim_end_matches(|c| c == ';');
        assert_eq!(node, "SELECT 1 ; ");
        node.trim_end_matches(|_| true);
        assert!(node.is_empty());
        assert_eq!(node, "");
    }

    #[test]
    fn appended_statements_keep_their_pieces() {
        let sql = "SELECT a FROM t";
        let mut union = NodeSql::default();
        for name in ["t_0", "t_1"] {
            if !union.is_empty() {
                union.push_own(" UNION ALL ");
            }
            union.push_own("(");
            union.append(NodeSql::spliced(sql, [(14, 15, name.to_owned())]));
            union.push_own(")");
        }
        assert_eq!(union, "(SELECT a FROM t_0) UNION ALL (SELECT a FROM t_1)");
        assert_eq!(union, NodeSql::from(union.to_string()));
    }

    #[test]
    fn chunks_are_the_bytes_cut_between_characters() {
        let bytes = b"SELECT '\xe9\xe9\xe9' FROM t WHERE x = '\xc3'";
        let text = analysis_text(bytes, ClientCharset::named("latin1"));
        let at = text.find(" t ").map(|i| i + 1).unwrap_or_default();
        let mut node = NodeSql::spliced(&text, [(at, at + 1, "t_1".to_owned())]);
        node.push_own("é");
        let want = node.to_bytes();
        assert_eq!(node.byte_len(), want.len());
        for max in [0, 1, 2, 3, 5, 64, 1 << 20] {
            let chunks: Vec<_> = node.byte_chunks(max).collect();
            assert_eq!(chunks.concat(), want, "max {max}");
            if max >= 4 {
                assert!(chunks.iter().all(|c| c.len() <= max + 3), "max {max}");
            }
        }
        // UTF-8 of the client's own is lent, not copied.
        let plain = NodeSql::spliced("SELECT 'été'", []);
        assert_eq!(plain.byte_len(), "SELECT 'été'".len());
        assert!(plain.byte_chunks(4).all(|c| matches!(c, Cow::Borrowed(_))));
        assert_eq!(
            plain.byte_chunks(4).collect::<Vec<_>>().concat(),
            plain.to_bytes()
        );
    }

    #[test]
    fn an_inserts_rows_read_as_the_text_around_them() {
        use crate::dialect::MARIADB;
        use crate::shard::analyze::{analyze, Analysis};
        use shardgate_rules::{Config, ShardingRules};
        use std::sync::Arc;

        let bytes = b"INSERT INTO users (user_id, name) VALUES (1, '\xe9'), (2, 'b'), (3, 'c') ON DUPLICATE KEY UPDATE name = 'x'";
        let sql = analysis_text(bytes, ClientCharset::named("latin1"));
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let Ok(Analysis::Sharded(st)) = analyze(&sql, &MARIADB, &rules, "wework") else {
            panic!("not sharded")
        };
        let shape = st.insert.as_ref().unwrap();
        let (first, last) = (shape.rows[0].start(), shape.rows[2].end());
        let mut node = NodeSql::spliced(&sql[..first], [(12, 17, "`users_1`".to_owned())]);
        node.push_rows(NodeRows::new(
            &sql,
            &shape.rows,
            Arc::from([0, 2]),
            None,
            false,
        ));
        node.push_shared(&sql[last..]);
        assert_eq!(node.text().len(), node.len());
        assert_eq!(node.to_string(), node.text());
        let bytes = node.to_bytes();
        assert!(bytes
            .starts_with(b"INSERT INTO `users_1` (user_id, name) VALUES (1, '\xe9'), (3, 'c') ON"));
        assert_eq!(bytes.len(), node.byte_len());
        for max in [1, 2, 7, 64, 1 << 20] {
            assert_eq!(
                node.byte_chunks(max).collect::<Vec<_>>().concat(),
                bytes,
                "max {max}"
            );
        }
        // Trimming stops at the rows.
        let mut rows_last = NodeSql::spliced(&sql[..first], []);
        rows_last.push_rows(NodeRows::new(
            &sql,
            &shape.rows,
            Arc::from([1]),
            None,
            false,
        ));
        rows_last.trim_end_matches(|_| true);
        assert!(rows_last.to_string().ends_with("(2, 'b')"));
    }

    #[test]
    fn bytes_are_the_clients() {
        let bytes = b"SELECT '\xe9' FROM t";
        let text = analysis_text(bytes, ClientCharset::named("latin1"));
        let at = text.find(" t").map(|i| i + 1).unwrap_or_default();
        let node = NodeSql::spliced(&text, [(at, at + 1, "t_1".to_owned())]);
        assert_eq!(node.to_bytes(), b"SELECT '\xe9' FROM t_1");
        assert_eq!(node.command(3)[1..], *b"SELECT '\xe9' FROM t_1");
    }
}
