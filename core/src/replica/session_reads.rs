//! Read/write splitting for one session: whether its current statement
//! may read a replica, which server of a data source serves it, and
//! read-your-writes — what the session wrote ([`SessionWrites`], under
//! `read_consistency = "session"`) or what the proxy acknowledged (the
//! watermarks, under `"proxy"`) must have reached a replica before it
//! serves a read (the primary's [`Replicated::committed_position`], known
//! from the monitor or waited for briefly), else the primary serves it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_rules::config::{ReadConsistency, TransactionReads};
use shardgate_rules::{ShardingRules, TableKind};
use shardgate_sql::shard::analyze::ShardedStatement;
use tracing::{debug, warn};

use super::session_writes::{Freshness, SessionWrites};
use super::ReadChoice;
use crate::backend::pool::{Pool, PooledConn, Role};
use crate::backend::{Backend, Connection, Holder, ReplicaPosition, Replicated};
use crate::error::BackendError;
use crate::proxy::{Proxy, Shared};
use crate::session_conns::SessionConns;

/// How long a read waits for a replica to apply the session's own last
/// write before it goes to the primary instead.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_millis(100);

/// Statement labels that never write (see `shardgate_sql::label`).
const NON_WRITING: &[&str] = &["select", "show", "set", "use", "admin", "prepare"];

/// What the routing of a session's reads looks at besides its own state.
pub struct ReadScope<'a, B: Backend> {
    /// The configuration version the session uses.
    pub shared: &'a Shared<B>,
    pub proxy: &'a Proxy<B>,
    /// The session's connection options and settings, in which a
    /// primary's connection is taken to ask its position.
    pub flavor: <B::Conn as Connection>::Flavor,
    pub state: u64,
    pub holder: &'a Arc<Holder>,
}

impl<B: Backend> ReadScope<'_, B> {
    fn consistency(&self) -> ReadConsistency {
        self.shared.config.server.read_consistency
    }

    /// What primary `primary` has committed so far, the session's own
    /// writes included.
    async fn primary_position(
        &self,
        primary: &Arc<Pool<B::Conn>>,
    ) -> Result<<B::Conn as Connection>::Position, BackendError> {
        let mut conn = primary
            .acquire(self.flavor, self.state, self.holder)
            .await?;
        Ok(conn.committed_position().await?)
    }
}

/// Where a session's reads go and what it wrote, for read-your-writes.
pub struct SessionReads<C: Connection> {
    /// Whether the current statement's reads may go to replicas.
    intent: bool,
    /// Replicas the current statement read, for the balancer's figures.
    used: Vec<Arc<Pool<C>>>,
    /// Replicas the current statement must not read again: it lost its
    /// connection there and is being retried.
    avoid: Vec<Arc<Pool<C>>>,
    /// The session's last write on each data source.
    written: SessionWrites<C::Position>,
}

impl<C: Connection> Default for SessionReads<C> {
    fn default() -> Self {
        SessionReads {
            intent: false,
            used: Vec::new(),
            avoid: Vec::new(),
            written: SessionWrites::default(),
        }
    }
}

/// Whether the session's state lets replicas serve its reads: outside a
/// transaction with autocommit on (with autocommit off, every statement
/// belongs to a transaction, as on one server), or inside a read-only
/// transaction when `transaction_reads = "replica"`; never while pinned.
pub fn replicas_may_serve<B: Backend>(
    shared: &Shared<B>,
    conns: &SessionConns<B::Conn>,
    autocommit: bool,
) -> bool {
    if conns.pinned().is_some()
        || !shared.config.server.read_write_splitting
        || shared.replicas.values().all(Vec::is_empty)
    {
        return false;
    }
    if conns.in_transaction() {
        return conns.tx.open.as_ref().is_some_and(|t| t.read_only)
            && shared.config.server.transaction_reads == TransactionReads::Replica;
    }
    autocommit
}

impl<C: Replicated> SessionReads<C> {
    /// Before a statement runs: its reads may go to replicas when the
    /// statement is a plain read and the session lets replicas serve it
    /// ([`replicas_may_serve`]).
    pub fn begin_statement(&mut self, may_read_replicas: bool) {
        self.used.clear();
        self.avoid.clear();
        self.intent = may_read_replicas;
    }

    /// Whether the current statement's reads may go to replicas.
    pub fn intent(&self) -> bool {
        self.intent
    }

    /// The pool a read of the current statement on data source `ds` uses
    /// when the session holds no connection there: a replica when it may,
    /// else `primary`.
    pub fn pool_for<B: Backend<Conn = C>>(
        &self,
        scope: &ReadScope<'_, B>,
        ds: &str,
        primary: Arc<Pool<C>>,
    ) -> Result<Arc<Pool<C>>, BackendError> {
        if !self.intent {
            return Ok(primary);
        }
        let shared = scope.shared;
        let (Some(replicas), Some(config)) =
            (shared.replicas.get(ds), shared.config.data_sources.get(ds))
        else {
            return Ok(primary);
        };
        let written: Option<Arc<C::Position>> = match scope.consistency() {
            ReadConsistency::Session if self.written.needs_primary(ds) => return Ok(primary),
            // Known for the current writes: a replica that has it needs no
            // wait; else the chosen one is checked (`caught_up`).
            ReadConsistency::Proxy => scope.proxy.watermarks().of(ds).current(),
            _ => match self.freshness(scope, ds) {
                Freshness::At(pos) => Some(Arc::new(pos)),
                Freshness::Any | Freshness::AllReceived => None,
            },
        };
        let choice = shared.reads.choose(
            ds,
            replicas,
            &self.avoid,
            &config.read,
            &primary,
            written.as_deref(),
        )?;
        Ok(match choice {
            ReadChoice::Replica { pool, .. } => pool,
            ReadChoice::Primary => primary,
        })
    }

    /// What a replica must have applied on `ds` for the session's own
    /// writes, with `read_consistency = "session"` (else nothing).
    fn freshness<B: Backend<Conn = C>>(
        &self,
        scope: &ReadScope<'_, B>,
        ds: &str,
    ) -> Freshness<C::Position> {
        if scope.consistency() != ReadConsistency::Session {
            return Freshness::Any;
        }
        self.written.freshness(ds)
    }

    /// After a replica connection was taken for a read: makes sure it has
    /// applied what the read must see on its data source — the session's
    /// last write there, or every write the proxy acknowledged (a short
    /// wait for the position). False when it has not: the read goes to the
    /// primary.
    pub async fn caught_up<B: Backend<Conn = C>>(
        &mut self,
        scope: &ReadScope<'_, B>,
        conn: &mut PooledConn<C>,
    ) -> bool {
        let pool = conn.pool().clone();
        if pool.role() == Role::Primary {
            return true;
        }
        self.used.push(pool.clone());
        let required = match scope.consistency() {
            ReadConsistency::Proxy => {
                let Some(primary) = scope.shared.pool(pool.data_source()).cloned() else {
                    return false;
                };
                let watermark = scope.proxy.watermarks().of(pool.data_source());
                match watermark
                    .position(|| scope.primary_position(&primary))
                    .await
                {
                    Ok(pos) => Freshness::At(pos.as_ref().clone()),
                    Err(e) if e.is_unreachable() => {
                        debug!(ds = %pool.data_source(), "the primary is down: {e}");
                        Freshness::AllReceived
                    }
                    Err(e) => {
                        debug!(ds = %pool.data_source(), "cannot read the primary's position: {e}");
                        return false;
                    }
                }
            }
            ReadConsistency::Session | ReadConsistency::Eventual => {
                self.freshness(scope, pool.data_source())
            }
        };
        let pos = match required {
            Freshness::Any => return true,
            Freshness::At(pos) => pos,
            Freshness::AllReceived => match conn.received_position().await {
                Ok(pos) => {
                    debug!(replica = %pool.name(), %pos, "its primary is down: reading what it received");
                    pos
                }
                Err(e) => {
                    debug!(replica = %pool.name(), "cannot read what it received: {e}");
                    return false;
                }
            },
        };
        if pos.is_empty() {
            return true;
        }
        if pool
            .replication()
            .is_some_and(|r| r.applied.includes_all(&pos))
        {
            return true;
        }
        let waited = Instant::now();
        let applied = conn
            .wait_for_position(&pos, READ_YOUR_WRITES_WAIT)
            .await
            .unwrap_or(false);
        debug!(replica = %pool.name(), %pos, applied, waited = ?waited.elapsed(), "read-your-writes wait");
        applied
    }

    /// A replica connection for a read, or the primary's when the replica
    /// cannot be reached or has not caught up with what the read must see.
    /// Nothing has been sent to the client yet, so the read loses nothing.
    pub async fn replica_or_primary<B: Backend<Conn = C>>(
        &mut self,
        scope: &ReadScope<'_, B>,
        replica: &Arc<Pool<C>>,
        acquired: Result<PooledConn<C>, BackendError>,
    ) -> Result<PooledConn<C>, BackendError> {
        let failure = match acquired {
            Ok(mut conn) => {
                if self.caught_up(scope, &mut conn).await {
                    return Ok(conn);
                }
                None
            }
            Err(e) => {
                warn!(replica = %replica.name(), "replica unavailable for a read; using the primary: {e}");
                replica.observe(Duration::ZERO, false);
                Some(e)
            }
        };
        match scope.shared.pool(replica.data_source()).cloned() {
            Some(primary) => {
                primary
                    .acquire(scope.flavor, scope.state, scope.holder)
                    .await
            }
            None => Err(failure.unwrap_or_else(|| {
                BackendError::lost(replica.name(), "no primary configured to read instead")
            })),
        }
    }

    /// Marks the data source of a connection coming back after a
    /// statement (labelled `label`) that may have written there, so that
    /// later reads see the write.
    pub fn note_possible_write<B: Backend<Conn = C>>(
        &mut self,
        scope: &ReadScope<'_, B>,
        conn: &mut PooledConn<C>,
        label: Option<&str>,
    ) {
        // A transaction that committed (COMMIT, `SET autocommit = 1`, DDL)
        // may hold writes whatever the statement that ended it.
        let committed = conn.take_committed();
        let wrote = conn.pool().role() == Role::Primary
            && !conn.in_transaction()
            && (committed || !label.is_some_and(|l| NON_WRITING.contains(&l)))
            && scope.shared.replicas.values().any(|r| !r.is_empty());
        if !wrote {
            return;
        }
        let ds = conn.pool().data_source();
        match scope.consistency() {
            ReadConsistency::Session => self.written.wrote(ds),
            ReadConsistency::Proxy => scope.proxy.watermarks().of(ds).wrote(),
            ReadConsistency::Eventual => {}
        }
    }

    /// Before a read that may use replicas: learns the primaries'
    /// positions the session's pending writes need (again for a primary
    /// that was down).
    pub async fn resolve_pending_writes<B: Backend<Conn = C>>(&mut self, scope: &ReadScope<'_, B>) {
        if !self.intent {
            return;
        }
        for ds in self.written.to_ask() {
            let answer = match scope.shared.pool(&ds).cloned() {
                Some(primary) => Some(scope.primary_position(&primary).await),
                None => None,
            };
            self.written.asked(&ds, answer);
        }
    }

    /// For a read of broadcast tables only: the data source to read them
    /// on, taking turns over those with a usable replica (all hold a copy),
    /// so that such reads spread over every node's replicas. None: the
    /// plan's data source (the default one) stays, e.g. when the statement
    /// also names an unsharded table (which lives there only) or may not
    /// use a replica.
    pub fn broadcast_read_source<B: Backend<Conn = C>>(
        &self,
        shared: &Shared<B>,
        rules: &ShardingRules,
        st: &ShardedStatement,
    ) -> Option<String> {
        if !self.intent
            || st.tables.is_empty()
            || !st.other_tables.is_empty()
            || !st
                .tables
                .iter()
                .all(|t| rules.table_kind(t) == TableKind::Broadcast)
        {
            return None;
        }
        let holders: Vec<Vec<String>> = st
            .tables
            .iter()
            .map(|t| rules.nodes(t).into_iter().map(|n| n.data_source).collect())
            .collect();
        let first = holders.first()?;
        let candidates: Vec<&str> = first
            .iter()
            .filter(|ds| holders.iter().all(|h| h.contains(ds)))
            .filter(|ds| {
                shared.replicas.get(ds.as_str()).is_some_and(|rs| {
                    rs.iter().any(|r| {
                        r.replication().is_some_and(|s| s.usable)
                            && !self.avoid.iter().any(|a| Arc::ptr_eq(a, r))
                    })
                })
            })
            .map(String::as_str)
            .collect();
        shared
            .reads
            .broadcast_source(&candidates)
            .map(str::to_owned)
    }

    /// The replica named `server` if the current statement read it.
    pub fn used_replica(&self, server: &str) -> Option<Arc<Pool<C>>> {
        self.used.iter().find(|p| p.name() == server).cloned()
    }

    /// The current statement lost its connection to replica `lost` before
    /// the client got anything: it is retried once, elsewhere.
    pub fn retry_without(&mut self, lost: Arc<Pool<C>>) {
        warn!(replica = %lost.name(), "a read lost its replica connection before anything reached the client; retrying it once elsewhere");
        lost.observe(Duration::ZERO, false);
        // The retry takes its replicas (and reports on them) anew.
        self.used.clear();
        self.avoid.push(lost);
    }

    /// Feeds the balancer: how the statement went on each replica it used.
    pub fn observe_replicas(&mut self, elapsed: Duration, ok: bool) {
        for pool in self.used.drain(..) {
            pool.observe(elapsed, ok);
        }
    }
}
