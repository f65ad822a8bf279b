//! The rows of a multi-row INSERT that one data node takes, kept as their
//! indexes into the client's statement and written out only as the node's
//! statement is sent ([`super::node_sql::NodeSql`]).
//!
//! Built as a string per node, a 20 MB INSERT of 3.3 million rows taking
//! generated keys cost 90 MB of node text before the first byte went out
//! (issue 15): each row copied, and 21 bytes of key added. Kept like this,
//! a node's rows cost the 4 bytes of their index, which routing made anyway.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use shardgate_rules::Ids;

use super::analyze::InsertRow;
use super::node_sql::cut_between_characters;
use crate::text::{restore, restored_len};

/// A key the proxy generates for every row: the column, quoted as the data
/// source quotes, and the statement's keys, row `i` taking `ids.get(i)`.
#[derive(Debug, Clone)]
pub struct RowKeys {
    pub column: String,
    pub ids: Arc<Ids>,
}

/// Rows `rows` (indexes into `spans`, the statement's rows in `sql`),
/// joined by `, `, each with its generated key when there is one: before
/// the row's closing parenthesis, or as `, column = key` after an
/// `INSERT ... SET` row.
#[derive(Clone)]
pub struct NodeRows<'s> {
    sql: &'s str,
    spans: &'s [InsertRow],
    rows: Arc<[u32]>,
    keys: Option<RowKeys>,
    set_form: bool,
    /// The length of the text, in bytes of the analysis text.
    len: usize,
    /// The length of the client's bytes of the text.
    byte_len: usize,
}

/// Where a write of [`NodeRows`] stopped: row `n` (of the node's rows),
/// its part `part` ([`NodeRows::part`]), `at` bytes into that part.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowsCursor {
    n: usize,
    part: u8,
    at: usize,
}

/// A row's parts, in order: the separator before it, its text up to where
/// the key goes, the key, the rest of its text.
const PARTS: u8 = 4;

impl<'s> NodeRows<'s> {
    /// Rows `rows` of `spans` (the statement `sql`'s rows), in order. An
    /// index past the statement's rows writes nothing (the planner's are
    /// all in range).
    pub fn new(
        sql: &'s str,
        spans: &'s [InsertRow],
        rows: Arc<[u32]>,
        keys: Option<RowKeys>,
        set_form: bool,
    ) -> Self {
        let mut out = NodeRows {
            sql,
            spans,
            rows,
            keys,
            set_form,
            len: 0,
            byte_len: 0,
        };
        // The keys' lengths are counted, not written: they are written
        // when the rows are.
        let mut none = String::new();
        for n in 0..out.rows.len() {
            let key = out.key_len(n);
            out.len = out.len.saturating_add(key);
            out.byte_len = out.byte_len.saturating_add(key);
            for part in [0, 1, 3] {
                let text = out.part(n, part, &mut none);
                out.len = out.len.saturating_add(text.len());
                out.byte_len = out.byte_len.saturating_add(restored_len(text));
            }
        }
        out
    }

    /// The length of the key [`NodeRows::part`] writes for the node's row
    /// `n` (ASCII: the same in the client's bytes).
    fn key_len(&self, n: usize) -> usize {
        let (Some(keys), Some(&i)) = (&self.keys, self.rows.get(n)) else {
            return 0;
        };
        if self.spans.get(i as usize).is_none() {
            return 0;
        }
        let id = keys.ids.get(i as usize).unwrap_or_default();
        let digits = id
            .unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d as usize + 1)
            + usize::from(id < 0);
        // ", id", or ", column = id".
        match self.set_form {
            true => keys.column.len() + 5 + digits,
            false => 2 + digits,
        }
    }

    /// The length of the text, in bytes of the analysis text.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The length of the client's bytes of the text.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    /// Part `part` of the node's row `n` (see [`PARTS`]), empty when there
    /// is no such row. A key is written into `key`, which it borrows.
    fn part<'k>(&self, n: usize, part: u8, key: &'k mut String) -> &'k str
    where
        's: 'k,
    {
        let Some(span) = self
            .rows
            .get(n)
            .and_then(|&i| Some((i, self.spans.get(i as usize)?)))
        else {
            return "";
        };
        let (i, span) = span;
        let text = self.sql.get(span.start()..span.end()).unwrap_or_default();
        // The key goes before the closing parenthesis of a VALUES row,
        // after the last assignment of a SET row.
        let cut = match (&self.keys, self.set_form) {
            (Some(_), false) => text.rfind(')').unwrap_or(text.len()),
            _ => text.len(),
        };
        match part {
            0 if n > 0 => ", ",
            1 => &text[..cut],
            2 => match &self.keys {
                Some(keys) => {
                    key.clear();
                    // The planner takes one id for each of the statement's rows.
                    let id = keys.ids.get(i as usize).unwrap_or_default();
                    let _ = if self.set_form {
                        write!(key, ", {} = {id}", keys.column)
                    } else {
                        write!(key, ", {id}")
                    };
                    key
                }
                None => "",
            },
            3 => &text[cut..],
            _ => "",
        }
    }

    /// Appends the text (the analysis text) to `out`.
    pub fn write_text(&self, out: &mut String) {
        let mut key = String::new();
        for n in 0..self.rows.len() {
            for part in 0..PARTS {
                out.push_str(self.part(n, part, &mut key));
            }
        }
    }

    /// Appends the client's bytes of the text to `out` from `cursor` on,
    /// until `out` holds `max` bytes or more (a key is written whole, a
    /// row's text cut between characters); the cursor moves on. True when
    /// the rows are all written.
    pub fn write_bytes(&self, cursor: &mut RowsCursor, out: &mut Vec<u8>, max: usize) -> bool {
        let mut key = String::new();
        while cursor.n < self.rows.len() {
            if out.len() >= max {
                return false;
            }
            let text = self.part(cursor.n, cursor.part, &mut key);
            let text = text.get(cursor.at..).unwrap_or_default();
            let cut = match cursor.part {
                2 => text.len(),
                _ => cut_between_characters(text, max - out.len()),
            };
            out.extend_from_slice(&restore(&text[..cut]));
            if cut < text.len() {
                cursor.at += cut;
                continue;
            }
            cursor.at = 0;
            cursor.part += 1;
            if cursor.part == PARTS {
                cursor.part = 0;
                cursor.n += 1;
            }
        }
        true
    }
}

/// The rows' count, not their text: a route is logged at debug level, and
/// a node may take millions of rows.
impl fmt::Debug for NodeRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRows")
            .field("rows", &self.rows.len())
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MARIADB;
    use crate::shard::analyze::{analyze, Analysis, InsertShape};
    use crate::text::{analysis_text, ClientCharset};
    use shardgate_rules::{Config, ShardingRules, SnowflakeGenerator, SystemClock};

    fn shape_of(sql: &str) -> InsertShape {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        let Analysis::Sharded(st) = analyze(sql, &MARIADB, &rules, "wework").unwrap() else {
            panic!("not sharded: {sql}")
        };
        st.insert.unwrap()
    }

    fn keys(count: usize) -> RowKeys {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let ids = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        RowKeys {
            column: "`user_id`".into(),
            ids: Arc::new(ids.next_ids(count).unwrap()),
        }
    }

    fn text(rows: &NodeRows) -> String {
        let mut out = String::new();
        rows.write_text(&mut out);
        assert_eq!(rows.len(), out.len());
        out
    }

    #[test]
    fn a_nodes_rows_take_their_own_keys() {
        let sql = "INSERT INTO users (name, email) VALUES ('a', NULL), ('b', 'x'), ('c', 'y')";
        let shape = shape_of(sql);
        let keys = keys(3);
        let id = |i| keys.ids.get(i).unwrap();
        let rows = NodeRows::new(
            sql,
            &shape.rows,
            Arc::from([0, 2]),
            Some(keys.clone()),
            false,
        );
        assert_eq!(
            text(&rows),
            format!("('a', NULL, {}), ('c', 'y', {})", id(0), id(2))
        );
        let rows = NodeRows::new(sql, &shape.rows, Arc::from([1]), None, false);
        assert_eq!(text(&rows), "('b', 'x')");
        // An index past the statement's rows writes nothing.
        let rows = NodeRows::new(sql, &shape.rows, Arc::from([3]), None, false);
        assert!(rows.is_empty());
    }

    #[test]
    fn a_set_row_takes_its_key_as_an_assignment() {
        let sql = "INSERT INTO users SET name = 'a', email = CONCAT('x', '@y')";
        let shape = shape_of(sql);
        assert!(shape.set_form);
        let keys = keys(1);
        let id = keys.ids.get(0).unwrap();
        let rows = NodeRows::new(sql, &shape.rows, Arc::from([0]), Some(keys), true);
        assert_eq!(
            text(&rows),
            format!("name = 'a', email = CONCAT('x', '@y'), `user_id` = {id}")
        );
    }

    #[test]
    fn bytes_written_in_chunks_are_the_clients_whole() {
        // Latin-1 bytes stand for themselves in the analysis text: each
        // chunk restores them, wherever it is cut.
        let bytes = b"INSERT INTO users (name) VALUES ('\xe9t\xe9'), ('a\xe9'), ('long \xe9\xe9\xe9\xe9\xe9 row'), ('z')";
        let sql = analysis_text(bytes, ClientCharset::named("latin1"));
        let shape = shape_of(&sql);
        let rows = NodeRows::new(
            &sql,
            &shape.rows,
            Arc::from([0, 2, 3]),
            Some(keys(4)),
            false,
        );
        let mut whole = Vec::new();
        assert!(rows.write_bytes(&mut RowsCursor::default(), &mut whole, usize::MAX));
        assert_eq!(whole.len(), rows.byte_len());
        assert_eq!(crate::text::restore(&text(&rows)), whole);
        assert!(whole.starts_with(b"('\xe9t\xe9', "));
        for max in [1, 2, 3, 5, 8, 13, 64] {
            let mut cursor = RowsCursor::default();
            let mut joined = Vec::new();
            loop {
                let mut chunk = Vec::new();
                let done = rows.write_bytes(&mut cursor, &mut chunk, max);
                // A chunk stops at `max` bytes, but for a key written whole
                // (at most ", " and 20 digits) or a character finished.
                assert!(chunk.len() < max + 23, "max {max}: {} bytes", chunk.len());
                joined.extend_from_slice(&chunk);
                if done {
                    break;
                }
                assert!(!chunk.is_empty(), "max {max}");
            }
            assert_eq!(joined, whole, "max {max}");
        }
    }
}
