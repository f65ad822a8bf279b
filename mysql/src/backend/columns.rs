//! MariaDB's metadata caching on backend connections: a server that knows
//! the connection already has a prepared statement's column definitions
//! (from its prepare or an earlier execute) answers the next execute
//! without them. The proxy keeps, per connection and statement, the
//! definitions last sent, and gives them to whoever needs them.

use std::sync::Arc;

use super::BackendConn;
use super::ConnError;
use crate::ok_err::take_lenenc_int;
use crate::response::PrepareOk;

/// The column definition payloads of a result set, as the data source sent them.
pub type ResultColumns = Arc<[Box<[u8]>]>;

/// What follows a result set's column count.
#[derive(Debug)]
pub enum Definitions {
    /// The data source sends the definitions.
    Follow,
    /// The data source left them out: these are the ones kept.
    Kept(ResultColumns),
    /// The data source left them out, and none were kept.
    Missing,
}

/// Follows the column definitions of one reply: collects those a later
/// execute may skip, and hands out the kept ones for a result that skips
/// them.
#[derive(Debug)]
pub struct KeptColumns {
    /// The connection speaks metadata caching.
    caching: bool,
    /// The backend statement whose result columns are followed.
    statement: Option<u32>,
    /// The definitions its result came with last time.
    kept: Option<ResultColumns>,
    /// Result sets begun so far: a CALL may return several, and only the
    /// first one's definitions are kept.
    results: u32,
    /// Definitions to pass over first (a prepare's parameters).
    skip: u64,
    /// The definitions as they arrive, and how many come.
    arriving: Option<(u64, Vec<Box<[u8]>>)>,
}

impl KeptColumns {
    /// For the reply to an execute of backend statement `id` (None: not an execute).
    pub fn for_execute(conn: &BackendConn, id: Option<u32>) -> Self {
        let statement = id.filter(|_| conn.cache_metadata);
        Self::new(
            conn.cache_metadata,
            statement,
            statement.and_then(|id| conn.result_columns(id)),
        )
    }

    fn new(caching: bool, statement: Option<u32>, kept: Option<ResultColumns>) -> Self {
        Self {
            caching,
            statement,
            kept,
            results: 0,
            skip: 0,
            arriving: None,
        }
    }

    /// For the reply to a prepare: the server counts the columns it
    /// describes as sent.
    pub fn for_prepare(conn: &BackendConn) -> Self {
        Self::for_execute(conn, None)
    }

    /// The prepare succeeded: its column definitions follow its parameters'.
    pub fn prepared(&mut self, ok: &PrepareOk) {
        if self.caching && ok.num_columns > 0 {
            self.statement = Some(ok.statement_id);
            self.skip = u64::from(ok.num_params);
            self.arriving = Some((u64::from(ok.num_columns), Vec::new()));
        }
    }

    /// A result set begins with `count_packet`, a column count with the
    /// "metadata follows" byte.
    pub fn begin_result(&mut self, count_packet: &[u8]) -> Definitions {
        let mut rest = count_packet;
        let count = take_lenenc_int(&mut rest).unwrap_or(0);
        if rest.first() == Some(&0) {
            self.skipped()
                .map_or(Definitions::Missing, Definitions::Kept)
        } else {
            self.sent(count);
            Definitions::Follow
        }
    }

    /// A result set begins with `count` definitions.
    fn sent(&mut self, count: u64) {
        if self.results == 0 && self.statement.is_some() {
            self.arriving = Some((count, Vec::new()));
        }
        self.results += 1;
    }

    /// A result set begins without definitions: those it came with last
    /// time, if it is the first and they were kept.
    fn skipped(&mut self) -> Option<ResultColumns> {
        let first = self.results == 0;
        self.results += 1;
        self.kept.clone().filter(|_| first)
    }

    /// One definition (column or parameter) as it arrives.
    pub fn arrived(&mut self, definition: &[u8]) {
        if self.skip > 0 {
            self.skip -= 1;
        } else if let Some((count, defs)) = &mut self.arriving {
            // Later result sets' definitions are not this one's.
            if (defs.len() as u64) < *count {
                defs.push(definition.into());
            }
        }
    }

    /// Keeps the definitions on the connection once all have arrived.
    pub fn store(&mut self, conn: &mut BackendConn) {
        if let Some((id, defs)) = self.complete() {
            conn.keep_result_columns(id, defs);
        }
    }

    /// The statement and its definitions, once (when all have arrived).
    fn complete(&mut self) -> Option<(u32, ResultColumns)> {
        match &self.arriving {
            Some((count, defs)) if defs.len() as u64 == *count => {}
            _ => return None,
        }
        let (_, defs) = self.arriving.take()?;
        Some((self.statement?, defs.into()))
    }

    /// The error for a result without definitions that were not kept.
    pub fn missing(ds: &str) -> ConnError {
        ConnError::Protocol {
            ds: ds.to_string(),
            what: "a result came without column definitions and none were kept for it".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(names: &[&str]) -> ResultColumns {
        names.iter().map(|n| n.as_bytes().into()).collect()
    }

    #[test]
    fn an_execute_keeps_the_definitions_it_came_with() {
        let mut c = KeptColumns::new(true, Some(7), None);
        c.sent(2);
        c.arrived(b"a");
        assert_eq!(c.complete(), None, "one still to come");
        c.arrived(b"b");
        assert_eq!(c.complete(), Some((7, defs(&["a", "b"]))));
        assert_eq!(c.complete(), None, "stored once");
    }

    #[test]
    fn only_the_first_result_set_is_kept_or_filled_in() {
        let mut c = KeptColumns::new(true, Some(7), Some(defs(&["a"])));
        assert_eq!(c.skipped(), Some(defs(&["a"])));
        // A CALL's later result: never filled in from the first one's.
        assert_eq!(c.skipped(), None);
        let mut c = KeptColumns::new(true, Some(7), None);
        c.sent(1);
        c.arrived(b"x");
        c.sent(1);
        c.arrived(b"y");
        assert_eq!(c.complete(), Some((7, defs(&["x"]))));
    }

    #[test]
    fn a_prepare_keeps_its_columns_not_its_parameters() {
        let mut c = KeptColumns::new(true, None, None);
        c.prepared(&PrepareOk {
            statement_id: 3,
            num_columns: 2,
            num_params: 1,
        });
        for def in [&b"?"[..], b"c1", b"c2"] {
            c.arrived(def);
        }
        assert_eq!(c.complete(), Some((3, defs(&["c1", "c2"]))));
    }

    #[test]
    fn nothing_is_kept_without_caching_or_an_execute() {
        let mut c = KeptColumns::new(false, None, None);
        c.prepared(&PrepareOk {
            statement_id: 3,
            num_columns: 1,
            num_params: 0,
        });
        c.arrived(b"c1");
        assert_eq!(c.complete(), None);
        let mut c = KeptColumns::new(true, None, None);
        c.sent(1);
        c.arrived(b"c1");
        assert_eq!(c.complete(), None, "a query's result: nothing to key it by");
    }
}
