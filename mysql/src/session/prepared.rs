//! The prepared statements a client holds on the proxy. Ids are the
//! proxy's own; each backend connection prepares the SQL on first use and
//! keeps it (see `BackendConn::statement`), so any pooled connection can
//! execute any session's statement.
//!
//! A statement on sharded tables is analysed once, at prepare; the node
//! statements its executions reach one at a time are kept with it.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use super::long_data::{LongData, LongDataLimits, Refusal};
use crate::backend::Pool;
use shardgate_sql::classify::Classified;
use shardgate_sql::shard::analyze::ShardedStatement;

/// A statement prepared by the client.
#[derive(Debug)]
pub struct PreparedStatement {
    pub sql: Arc<[u8]>,
    /// Its metric label (see `sql::label`), worked out once at prepare.
    pub label: &'static str,
    pub num_params: u16,
    pub classified: Classified,
    /// Whether an execution may read a replica (`sql::reads::replica_safe`
    /// of its text, worked out once at prepare).
    pub replica_safe: bool,
    /// Whether it writes (`sql::reads::writes_lexed`, at prepare): a
    /// read-only user's executions of it are refused.
    pub writes: bool,
    /// Set when the statement names sharded or broadcast tables.
    pub sharded: Option<ShardedPrepared>,
    /// Parameter types from the last execute that sent them.
    pub param_types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA for the next execution.
    pub long_data: LongData,
}

/// What a prepared statement on sharded or broadcast tables keeps.
#[derive(Debug)]
pub struct ShardedPrepared {
    pub statement: Arc<ShardedStatement>,
    /// The text that was analysed, for planning executions.
    pub text: Arc<str>,
    /// The node statements of executions routed to one node, by the node's
    /// position (see `plan::single_node`), built on first use: the same
    /// node statement serves every execution that reaches that node.
    nodes: Vec<Option<NodeStatement>>,
}

/// One node's statement: where it runs and its SQL (prepared there on first use).
#[derive(Clone)]
pub struct NodeStatement {
    pub pool: Arc<Pool>,
    pub sql: Arc<[u8]>,
}

impl std::fmt::Debug for NodeStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStatement")
            .field("data_source", &self.pool.name())
            .field("sql", &String::from_utf8_lossy(&self.sql))
            .finish()
    }
}

impl ShardedPrepared {
    pub fn new(statement: Arc<ShardedStatement>, text: Arc<str>) -> Self {
        Self {
            statement,
            text,
            nodes: Vec::new(),
        }
    }

    /// The node statement kept for `position`, if one was built.
    pub fn node(&self, position: usize) -> Option<&NodeStatement> {
        self.nodes.get(position)?.as_ref()
    }

    /// Keeps the node statement for `position`.
    pub fn keep_node(&mut self, position: usize, node: NodeStatement) {
        if self.nodes.len() <= position {
            self.nodes.resize(position + 1, None);
        }
        self.nodes[position] = Some(node);
    }
}

/// The prepared statement a COM_STMT_EXECUTE names, looked up once when
/// the command arrives: what the statement loop, the pause gate and read
/// routing ask of it before the execution runs.
#[derive(Debug, Clone)]
pub struct Executing {
    /// Its id in the session (`LAST_PREPARED` resolved).
    pub id: u32,
    pub label: &'static str,
    pub replica_safe: bool,
    /// COM_STMT_SEND_LONG_DATA sent for it waits to go with the execution.
    pub has_long_data: bool,
}

/// The statements of one session.
#[derive(Debug, Default)]
pub struct Statements {
    next_id: u32,
    by_id: HashMap<u32, PreparedStatement>,
    last_prepared: Option<u32>,
    /// Statements whose sharding analysis predates a rules reload.
    stale: HashSet<u32>,
    /// Long data kept by all of them, in bytes.
    long_data_bytes: usize,
}

/// The id MariaDB clients use for "the statement prepared just before".
pub const LAST_PREPARED: u32 = u32::MAX;

impl Statements {
    /// The id the next statement gets.
    pub fn next_id(&self) -> u32 {
        self.next_id.wrapping_add(1).max(1)
    }

    pub fn insert(&mut self, id: u32, stmt: PreparedStatement) {
        self.next_id = id;
        self.last_prepared = Some(id);
        self.by_id.insert(id, stmt);
    }

    /// What an execution of the statement `id` names needs to know before
    /// it runs, with the id resolved (None: no such statement).
    pub fn executing(&self, id: u32) -> Option<Executing> {
        let id = self.resolve(id)?;
        let stmt = self.by_id.get(&id)?;
        Some(Executing {
            id,
            label: stmt.label,
            replica_safe: stmt.replica_safe,
            has_long_data: stmt.long_data.is_pending(),
        })
    }

    /// The statement `id` names (resolving `LAST_PREPARED`).
    pub fn get_mut(&mut self, id: u32) -> Option<&mut PreparedStatement> {
        let id = self.resolve(id)?;
        self.by_id.get_mut(&id)
    }

    pub fn get(&self, id: u32) -> Option<&PreparedStatement> {
        self.by_id.get(&self.resolve(id)?)
    }

    fn resolve(&self, id: u32) -> Option<u32> {
        if id == LAST_PREPARED {
            self.last_prepared
        } else {
            Some(id)
        }
    }

    /// Marks every statement's analysis as made under old rules.
    pub fn forget_analyses(&mut self) {
        self.stale.extend(self.by_id.keys().copied());
    }

    /// Whether statement `id` must be analysed again (once: the mark goes).
    pub fn take_stale(&mut self, id: u32) -> bool {
        match self.resolve(id) {
            Some(id) => self.stale.remove(&id),
            None => false,
        }
    }

    /// How many statements the session holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Keeps COM_STMT_SEND_LONG_DATA `payload` for its statement `id`
    /// within the per-parameter bound and what the session has left of
    /// `per_session`; a statement it does not name ignores it, as the
    /// server does.
    pub fn add_long_data(
        &mut self,
        id: u32,
        payload: &[u8],
        per_parameter: usize,
        per_session: usize,
    ) {
        let Some(id) = self.resolve(id) else { return };
        let Some(stmt) = self.by_id.get_mut(&id) else {
            return;
        };
        let limits = LongDataLimits {
            per_parameter,
            session_left: per_session.saturating_sub(self.long_data_bytes),
            per_session,
        };
        let change = stmt.long_data.add(payload, stmt.num_params, limits);
        self.long_data_bytes = self.long_data_bytes.saturating_add_signed(change);
    }

    /// The long data for an execution of statement `id` (consumed), or why
    /// it was refused.
    pub fn take_long_data(&mut self, id: u32) -> Result<Vec<Vec<u8>>, Refusal> {
        let Some(stmt) = self.get_mut(id) else {
            return Ok(Vec::new());
        };
        let packets = stmt.long_data.take()?;
        let bytes: usize = packets.iter().map(Vec::len).sum();
        self.long_data_bytes = self.long_data_bytes.saturating_sub(bytes);
        Ok(packets)
    }

    /// COM_STMT_RESET: forgets statement `id`'s long data (false: no such statement).
    pub fn reset_long_data(&mut self, id: u32) -> bool {
        let Some(stmt) = self.get_mut(id) else {
            return false;
        };
        let bytes = stmt.long_data.bytes();
        stmt.long_data.reset();
        self.long_data_bytes = self.long_data_bytes.saturating_sub(bytes);
        true
    }

    pub fn remove(&mut self, id: u32) {
        if let Some(stmt) = self.by_id.remove(&id) {
            self.long_data_bytes = self.long_data_bytes.saturating_sub(stmt.long_data.bytes());
        }
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last_prepared = None;
        self.long_data_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str) -> PreparedStatement {
        PreparedStatement {
            sql: Arc::from(sql.as_bytes()),
            label: "select",
            num_params: 0,
            classified: Classified::default(),
            replica_safe: false,
            writes: false,
            sharded: None,
            param_types: None,
            long_data: LongData::default(),
        }
    }

    #[test]
    fn ids_start_at_one_and_last_prepared_resolves() {
        let mut s = Statements::default();
        let a = s.next_id();
        assert_eq!(a, 1);
        s.insert(a, stmt("select 1"));
        let b = s.next_id();
        s.insert(b, stmt("select 2"));
        assert_eq!(&*s.get_mut(LAST_PREPARED).unwrap().sql, b"select 2");
        let executing = s.executing(LAST_PREPARED).expect("the last one");
        assert_eq!((executing.id, executing.label), (b, "select"));
        s.remove(b);
        assert!(s.get_mut(b).is_none());
        assert!(s.get_mut(a).is_some());
    }

    fn long_data(param: u16, data: &[u8]) -> Vec<u8> {
        let mut p = vec![0x18, 0, 0, 0, 0];
        p.extend_from_slice(&param.to_le_bytes());
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn long_data_is_bounded_across_the_sessions_statements() {
        let mut s = Statements::default();
        for id in [1, 2] {
            let mut one = stmt("select ?");
            one.num_params = 1;
            s.insert(id, one);
        }
        // 7 + 5 bytes each: the second does not fit in 20.
        s.add_long_data(1, &long_data(0, b"12345"), 100, 20);
        s.add_long_data(2, &long_data(0, b"12345"), 100, 20);
        assert_eq!(s.take_long_data(2), Err(Refusal::SessionFull { limit: 20 }));
        assert_eq!(s.take_long_data(1).map(|p| p.len()), Ok(1));
        // The execution gave the session's bytes back.
        assert!(s.reset_long_data(2));
        s.add_long_data(2, &long_data(0, b"12345"), 100, 20);
        s.add_long_data(1, &long_data(0, b"1"), 100, 20);
        assert_eq!(s.long_data_bytes, 20);
        s.remove(2);
        assert_eq!(s.long_data_bytes, 8);
        assert!(!s.reset_long_data(2));
    }
}
