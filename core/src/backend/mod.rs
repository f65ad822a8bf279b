//! Connections to the data sources, as the core sees them: what a pool
//! needs of a connection whatever protocol it speaks ([`Connection`]), what
//! the proxy asks a server about replication ([`Replicated`]: GTIDs on
//! MariaDB, an LSN on PostgreSQL) and what a replication position must
//! answer ([`ReplicaPosition`]), and the pools that share connections
//! between sessions.

pub mod breaker;
pub mod maintenance;
#[cfg(test)]
pub(crate) mod memory;
pub mod pool;
pub mod waits;

use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_rules::config::BackendUrl;

use shardgate_sql::dialect::Dialect;

use crate::error::{ConnError, DbError, ProxyError};

pub use breaker::Breaker;
pub use pool::{Pool, PoolContext, PooledConn, Role};
pub use waits::Holder;

/// A kind of data source the core serves (MariaDB today): its connections
/// and the few things the protocol-neutral layers must ask of it.
pub trait Backend: Send + Sync + 'static {
    type Conn: Replicated;

    /// The SQL dialect its servers speak.
    fn dialect() -> &'static dyn Dialect;

    /// An error as this backend's clients are told it (the admin API's
    /// route preview reports the same code a client would get).
    fn client_error(error: &ProxyError) -> DbError;
}

/// The time bounds a data source's connections work within (its pool's
/// `connect_timeout_ms` and `query_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Opening the connection and logging in.
    pub connect: Duration,
    /// The longest the server may stay silent while an answer is awaited
    /// (None: no limit).
    pub silence: Option<Duration>,
}

impl ConnLimits {
    pub fn of(config: &shardgate_rules::config::PoolConfig) -> Self {
        ConnLimits {
            connect: Duration::from_millis(config.connect_timeout_ms),
            silence: (config.query_timeout_ms > 0)
                .then(|| Duration::from_millis(config.query_timeout_ms)),
        }
    }
}

/// One logged-in connection to a data source, as a pool keeps it.
pub trait Connection: Send + Sync + Sized + 'static {
    /// The connection options a connection shares with the session it
    /// serves (they change how the server answers): a pool hands a session
    /// only connections of its flavor.
    type Flavor: Copy + Eq + Debug + Send + Sync + 'static;
    /// How far a server's replication has got (a GTID set, an LSN).
    type Position: ReplicaPosition;

    /// The flavor of the proxy's own connections (health checks).
    fn internal_flavor() -> Self::Flavor;

    /// Connects and logs in with the data source's URL within `limits`,
    /// which its reads keep to; `ds` names the pool in errors.
    fn connect(
        ds: Arc<str>,
        url: &BackendUrl,
        flavor: Self::Flavor,
        limits: ConnLimits,
    ) -> impl Future<Output = Result<Self, ConnError>> + Send;

    /// What breaks its socket from outside (None: nothing can).
    fn breaker(&self) -> Option<&Arc<Breaker>> {
        None
    }

    /// A round trip that proves the server answers.
    fn ping(&mut self) -> impl Future<Output = Result<(), ConnError>> + Send;

    fn flavor(&self) -> Self::Flavor;

    /// Fingerprint of the session state last applied (0: none).
    fn applied_state(&self) -> u64;

    /// Records that the session state of fingerprint `state` was applied.
    fn set_applied_state(&mut self, state: u64);

    /// Drops every session state applied to it (settings, prepared
    /// statements, temporary tables), rolling back its transaction: what
    /// it had fresh from the pool.
    fn reset(&mut self) -> impl Future<Output = Result<(), ConnError>> + Send;

    /// When it last finished a command.
    fn last_used(&self) -> Instant;

    /// A transaction is open on it: an explicit one, or the work that
    /// autocommit off began.
    fn in_transaction(&self) -> bool;

    /// It must be closed, not pooled again: a reply was left unread, or a
    /// statement failed midway.
    fn is_broken(&self) -> bool;

    /// Whether a transaction committed on it since it was last asked
    /// (COMMIT, autocommit turned on, DDL): it may hold writes.
    fn take_committed(&mut self) -> bool;

    /// Clean enough to go back to the pool: its last reply was read to the
    /// end and no transaction is open on it.
    fn reusable(&self) -> bool {
        !self.is_broken() && !self.in_transaction()
    }

    /// It must be closed, not pooled again.
    fn mark_broken(&mut self);
}

/// A replication position: what a replica has applied, or what a primary
/// has committed, comparable to tell whether a replica has everything a
/// read must see.
pub trait ReplicaPosition: Clone + Default + Display + Debug + Send + Sync + 'static {
    /// Whether every transaction of `other` is included.
    fn includes_all(&self, other: &Self) -> bool;

    /// No transaction at all.
    fn is_empty(&self) -> bool;
}

/// What the proxy asks a server about replication, on a connection of the
/// server's protocol.
pub trait Replicated: Connection {
    /// How replication goes on this replica.
    fn replica_status(
        &mut self,
    ) -> impl Future<Output = Result<ReplicaStatus<Self::Position>, ConnError>> + Send;

    /// Every transaction committed on this primary so far.
    fn committed_position(
        &mut self,
    ) -> impl Future<Output = Result<Self::Position, ConnError>> + Send;

    /// Everything this replica has received from its primary (applied or
    /// not).
    fn received_position(
        &mut self,
    ) -> impl Future<Output = Result<Self::Position, ConnError>> + Send;

    /// Waits at most `timeout` for this replica to apply `position`;
    /// whether it has.
    fn wait_for_position(
        &mut self,
        position: &Self::Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, ConnError>> + Send;
}

/// One look at a replica's replication, in the server's own words where
/// something is wrong.
#[derive(Debug, Clone)]
pub struct ReplicaStatus<P> {
    /// What it has applied.
    pub applied: P,
    /// Why it applies nothing (not a replica, the applier stopped); None
    /// when it applies.
    pub applier_stopped: Option<String>,
    /// Why it receives nothing from its primary; None when it receives.
    pub receiver_stopped: Option<String>,
    /// It has applied everything it received.
    pub applied_all_received: bool,
    /// How far behind its primary it is.
    pub lag: Lag,
}

/// How far a replica is behind its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lag {
    Behind(Duration),
    /// Not known, and why (not replicating, the server says NULL).
    Unknown(String),
}

impl Lag {
    /// The lag, when known.
    pub fn known(&self) -> Option<Duration> {
        match self {
            Lag::Behind(lag) => Some(*lag),
            Lag::Unknown(_) => None,
        }
    }
}
