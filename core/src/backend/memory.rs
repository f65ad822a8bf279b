//! An in-memory connection for the unit tests of the pools and replicas:
//! it counts what it opens and fails where a test says, with no server.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use shardgate_rules::config::BackendUrl;

use super::{Connection, ReplicaPosition};
use crate::error::ConnError;
use crate::execute::{StatementConn, WriteDone};

/// Connections opened so far, by pool name (each test its own names).
static OPENED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn opened(pool: &str) -> usize {
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|p| p.as_str() == pool)
        .count()
}

/// A connection in memory. Pools named `down*` cannot connect; a
/// connection whose `server_gone` is set fails its ping and its statements.
pub struct Memory {
    pub flavor: u8,
    pub state: u64,
    pub broken: bool,
    pub in_transaction: bool,
    pub server_gone: bool,
    pub last_used: Instant,
    /// The statements it ran, in order.
    pub executed: Vec<String>,
}

/// A position that is a count of transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq(pub u64);

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl ReplicaPosition for Seq {
    fn includes_all(&self, other: &Seq) -> bool {
        self.0 >= other.0
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

impl Connection for Memory {
    type Flavor = u8;
    type Position = Seq;

    fn internal_flavor() -> u8 {
        0
    }

    async fn connect(
        ds: Arc<str>,
        url: &BackendUrl,
        flavor: u8,
        _limits: super::ConnLimits,
    ) -> Result<Self, ConnError> {
        if ds.starts_with("down") {
            return Err(ConnError::Connect {
                ds: ds.to_string(),
                addr: format!("{}:{}", url.host, url.port),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            });
        }
        OPENED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ds.to_string());
        Ok(Memory {
            flavor,
            state: 0,
            broken: false,
            in_transaction: false,
            server_gone: false,
            last_used: Instant::now(),
            executed: Vec::new(),
        })
    }

    async fn ping(&mut self) -> Result<(), ConnError> {
        if self.server_gone {
            Err(ConnError::lost("memory", "server gone"))
        } else {
            Ok(())
        }
    }

    fn flavor(&self) -> u8 {
        self.flavor
    }

    fn applied_state(&self) -> u64 {
        self.state
    }

    fn set_applied_state(&mut self, state: u64) {
        self.state = state;
    }

    async fn reset(&mut self) -> Result<(), ConnError> {
        self.state = 0;
        self.in_transaction = false;
        Ok(())
    }

    fn last_used(&self) -> Instant {
        self.last_used
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn take_committed(&mut self) -> bool {
        false
    }

    fn mark_broken(&mut self) {
        self.broken = true;
    }
}

/// Statements run in memory: recorded; COMMIT and ROLLBACK end the
/// transaction; all fail once the server is gone.
impl StatementConn for Memory {
    type Done = WriteDone;

    fn data_source(&self) -> &str {
        "memory"
    }

    async fn execute(&mut self, sql: &[u8]) -> Result<WriteDone, ConnError> {
        if self.server_gone {
            return Err(ConnError::lost("memory", "server gone"));
        }
        let sql = String::from_utf8_lossy(sql).into_owned();
        if sql == "COMMIT" || sql == "ROLLBACK" {
            self.in_transaction = false;
        }
        self.executed.push(sql);
        Ok(WriteDone::default())
    }

    async fn query_rows(&mut self, sql: &[u8]) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        self.execute(sql).await.map(|_| Vec::new())
    }

    async fn send(&mut self, sql: &[u8]) -> Result<(), ConnError> {
        self.execute(sql).await.map(drop)
    }

    async fn read_done(&mut self) -> Result<WriteDone, ConnError> {
        Ok(WriteDone::default())
    }

    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}
