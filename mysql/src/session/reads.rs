//! Read/write splitting for one session: whether the current statement
//! may read a replica, which server of a data source serves it, and
//! read-your-writes: what the session wrote (the core's `SessionWrites`,
//! under `read_consistency = "session"`) or what the proxy acknowledged
//! (the core's watermarks, under `"proxy"`) must have reached a replica
//! before it serves a read (`Replicated::committed_position` of the
//! primary: `@@gtid_binlog_pos` on MariaDB; known from the monitor, or a
//! short `Replicated::wait_for_position`), else the primary serves it.

use std::sync::Arc;
use std::time::Instant;

use shardgate_rules::config::{ReadConsistency, TransactionReads};
use tracing::{debug, warn};

use super::{Failure, Session};
use crate::backend::ReadChoice;
use crate::backend::{Pool, PooledConn, Role};
use crate::command::{Command, CommandKind};
use crate::gtid::Position;
use crate::packet::Mark;
use shardgate_core::backend::{ReplicaPosition, Replicated};
use shardgate_core::error::BackendError;
use shardgate_core::replica::session_writes::{Freshness, SessionWrites};
use shardgate_rules::TableKind;
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::lex::{Lexer, Spanned};
use shardgate_sql::reads::{replica_safe, replica_safe_lexed};
use shardgate_sql::shard::analyze::ShardedStatement;
use shardgate_sql::text::analysis_text;

/// How long a read waits for a replica to apply the session's own last
/// write before it goes to the primary instead.
const READ_YOUR_WRITES_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Statement labels that never write (see `sql::label`).
const NON_WRITING: &[&str] = &["select", "show", "set", "use", "admin", "prepare"];

/// Where a session's reads go and what it wrote, for read-your-writes.
#[derive(Default)]
pub(super) struct ReadRouting {
    /// Whether the current statement's reads may go to replicas.
    pub(super) intent: bool,
    /// Replicas the current statement read, for the balancer's figures.
    pub(super) used: Vec<Arc<Pool>>,
    /// Replicas the current statement must not read again: it lost its
    /// connection there and is being retried.
    pub(super) avoid: Vec<Arc<Pool>>,
    /// The session's last write on each data source.
    pub(super) written: SessionWrites<Position>,
}

impl Session {
    /// Decides, before a prepare or an execution runs, whether its reads
    /// may go to replicas. The statements of a query decide one by one
    /// (`set_read_intent`).
    pub(super) fn decide_read_intent(&mut self, command: &Command<'_>) {
        let safe = match command.kind {
            // A prepare of a read is answered where the read would go: in
            // a read-only transaction on replicas, that is where its data
            // source's connection must be taken (not its primary).
            CommandKind::Prepare(sql) => replica_safe(&MARIADB, &String::from_utf8_lossy(sql)),
            // Worked out once, when the statement was prepared.
            CommandKind::Execute(_) => self
                .current
                .executing
                .as_ref()
                .is_some_and(|e| e.replica_safe),
            _ => false,
        };
        self.set_read_intent(safe);
    }

    /// Before a statement runs: its reads may go to replicas when the
    /// statement is a plain read (`statement_safe`) and the session is
    /// where a replica may answer it.
    pub(super) fn set_read_intent(&mut self, statement_safe: bool) {
        self.reads.used.clear();
        self.reads.avoid.clear();
        self.reads.intent = statement_safe && self.replicas_may_serve();
    }

    /// Whether the session's state lets replicas serve its reads: outside
    /// a transaction with autocommit on (with autocommit off, every
    /// statement belongs to a transaction, as on one server), or inside a
    /// read-only transaction when `transaction_reads = "replica"`.
    fn replicas_may_serve(&self) -> bool {
        if self.conns.pinned().is_some()
            || !self.shared.config.server.read_write_splitting
            || self.shared.replicas.values().all(Vec::is_empty)
        {
            return false;
        }
        if self.in_transaction() {
            return self.conns.tx.open.as_ref().is_some_and(|t| t.read_only)
                && self.shared.config.server.transaction_reads == TransactionReads::Replica;
        }
        self.autocommit()
    }

    /// The pool a statement on data source `ds` uses: the one of a
    /// connection the session holds there, else a replica for a read,
    /// else the primary.
    pub(super) fn pool_of(&mut self, ds: &str) -> Result<Arc<Pool>, Failure> {
        if let Some(held) = self.conns.pool_on(ds) {
            return Ok(held.clone());
        }
        let primary = self.primary_pool(ds)?;
        if !self.reads.intent {
            return Ok(primary);
        }
        let shared = self.shared.clone();
        let (Some(replicas), Some(config)) =
            (shared.replicas.get(ds), shared.config.data_sources.get(ds))
        else {
            return Ok(primary);
        };
        let written: Option<Arc<Position>> = match self.consistency() {
            ReadConsistency::Session if self.reads.written.needs_primary(ds) => return Ok(primary),
            // Known for the current writes: a replica that has it needs no
            // wait; else the chosen one is checked (`replica_caught_up`).
            ReadConsistency::Proxy => self.proxy.watermarks().of(ds).current(),
            _ => match self.session_freshness(ds) {
                Freshness::At(pos) => Some(Arc::new(pos)),
                Freshness::Any | Freshness::AllReceived => None,
            },
        };
        match shared
            .reads
            .choose(
                ds,
                replicas,
                &self.reads.avoid,
                &config.read,
                &primary,
                written.as_deref(),
            )
            .map_err(Failure::from)?
        {
            ReadChoice::Replica { pool, .. } => Ok(pool),
            ReadChoice::Primary => Ok(primary),
        }
    }

    fn consistency(&self) -> ReadConsistency {
        self.shared.config.server.read_consistency
    }

    /// What a replica must have applied on `ds` for the session's own
    /// writes, with `read_consistency = "session"` (else nothing).
    fn session_freshness(&self, ds: &str) -> Freshness<Position> {
        if self.consistency() != ReadConsistency::Session {
            return Freshness::Any;
        }
        self.reads.written.freshness(ds)
    }

    /// After a replica connection was taken for a read: makes sure it has
    /// applied what the read must see on its data source — the session's
    /// last write there, or every write the proxy acknowledged (a short
    /// wait for the position). False when it has not: the read goes to the
    /// primary.
    pub(super) async fn replica_caught_up(&mut self, conn: &mut PooledConn) -> bool {
        let pool = conn.pool().clone();
        if pool.role() == Role::Primary {
            return true;
        }
        self.reads.used.push(pool.clone());
        let required = match self.consistency() {
            ReadConsistency::Proxy => {
                let Some(primary) = self.shared.pool(pool.data_source()).cloned() else {
                    return false;
                };
                let watermark = self.proxy.watermarks().of(pool.data_source());
                match watermark
                    .position(|| primary_position(self, &primary))
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
                self.session_freshness(pool.data_source())
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
    /// cannot be reached or has not caught up with the session's writes.
    /// Nothing has been sent to the client yet, so the read loses nothing.
    pub(super) async fn replica_or_primary(
        &mut self,
        replica: &Arc<Pool>,
        acquired: Result<PooledConn, BackendError>,
    ) -> Result<PooledConn, BackendError> {
        let failure = match acquired {
            Ok(mut conn) => {
                if self.replica_caught_up(&mut conn).await {
                    return Ok(conn);
                }
                None
            }
            Err(e) => {
                warn!(replica = %replica.name(), "replica unavailable for a read; using the primary: {e}");
                replica.observe(std::time::Duration::ZERO, false);
                Some(e)
            }
        };
        match self.shared.pool(replica.data_source()).cloned() {
            Some(primary) => {
                primary
                    .acquire(self.flavor, self.vars.fingerprint(), &self.holder)
                    .await
            }
            None => Err(failure.unwrap_or_else(|| {
                BackendError::lost(replica.name(), "no primary configured to read instead")
            })),
        }
    }

    /// Marks the data source of a connection coming back after a
    /// statement that may have written there and committed (a primary,
    /// outside a transaction): for the session, or for every session of the
    /// proxy, as `read_consistency` says. Before the client hears of it.
    pub(super) fn note_possible_write(&mut self, conn: &mut PooledConn) {
        // A transaction that committed (COMMIT, `SET autocommit = 1`, DDL)
        // may hold writes whatever the statement that ended it.
        let committed = conn.take_committed();
        let wrote = conn.pool().role() == Role::Primary
            && !conn.in_transaction()
            && (committed
                || !self
                    .current
                    .statement_label
                    .is_some_and(|l| NON_WRITING.contains(&l)))
            && self.shared.replicas.values().any(|r| !r.is_empty());
        if !wrote {
            return;
        }
        let ds = conn.pool().data_source();
        match self.consistency() {
            ReadConsistency::Session => self.reads.written.wrote(ds),
            ReadConsistency::Proxy => self.proxy.watermarks().of(ds).wrote(),
            ReadConsistency::Eventual => {}
        }
    }

    /// Whether the current statement's reply may reach the client as soon as
    /// it is read: a read's, which `note_possible_write` (run before the
    /// client hears of a write, so that other sessions' reads wait for it)
    /// leaves alone. Labels that may commit (`set autocommit = 1`) do not.
    pub(super) fn reply_may_stream(&self) -> bool {
        matches!(self.current.statement_label, Some("select" | "show"))
    }

    /// Before a read that may use replicas: learns the primaries'
    /// positions the session's pending writes need (again for a primary
    /// that was down).
    pub(super) async fn resolve_pending_writes(&mut self) {
        if !self.reads.intent {
            return;
        }
        for ds in self.reads.written.to_ask() {
            let answer = match self.shared.pool(&ds).cloned() {
                Some(primary) => Some(primary_position(self, &primary).await),
                None => None,
            };
            self.reads.written.asked(&ds, answer);
        }
    }

    /// For a read of broadcast tables only: the data source to read them
    /// on, taking turns over those with a usable replica (all hold a copy),
    /// so that such reads spread over every node's replicas. None: the
    /// plan's data source (the default one) stays, e.g. when the statement
    /// also names an unsharded table (which lives there only) or may not
    /// use a replica.
    pub(super) fn broadcast_read_source(&self, st: &ShardedStatement) -> Option<String> {
        let rules = &self.db.rules;
        if !self.reads.intent
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
                self.shared.replicas.get(ds.as_str()).is_some_and(|rs| {
                    rs.iter().any(|r| {
                        r.replication().is_some_and(|s| s.usable)
                            && !self.reads.avoid.iter().any(|a| Arc::ptr_eq(a, r))
                    })
                })
            })
            .map(String::as_str)
            .collect();
        self.shared
            .reads
            .broadcast_source(&candidates)
            .map(str::to_owned)
    }

    /// Before a command runs: where the client's writer stands, when the
    /// command is a read that may be retried on another server should its
    /// replica connection fail (see `retry_read_elsewhere`). None for
    /// anything else: a transaction's reads belong to its connections, and
    /// an execution's long data is consumed by the first attempt.
    pub(super) fn read_retry_point(&self, command: &Command<'_>) -> Option<Mark> {
        if let CommandKind::Execute(_) = command.kind {
            if self
                .current
                .executing
                .as_ref()
                .is_some_and(|e| e.has_long_data)
            {
                return None;
            }
        }
        self.statement_retry_point()
    }

    /// `read_retry_point` of one statement of a query.
    fn statement_retry_point(&self) -> Option<Mark> {
        if !self.reads.intent || self.in_transaction() || !self.conns.held().is_empty() {
            return None;
        }
        Some(self.writer.mark())
    }

    /// Runs one statement of a query: its reads on replicas when it may,
    /// and once more elsewhere when its replica connection broke before
    /// the client got any of the reply.
    pub(super) async fn statement_with_retry(&mut self, sql: &[u8]) -> Result<(), Failure> {
        // Each statement of a multi-statement string says whether it writes.
        self.current.statement_label = Some(shardgate_sql::label::statement_label(sql));
        // Lexed once for read safety, classification and analysis.
        let text = analysis_text(sql, self.charset);
        let tokens: Vec<Spanned<'_>> = Lexer::new(&text).collect();
        self.set_read_intent(replica_safe_lexed(&MARIADB, &text, &tokens));
        self.resolve_pending_writes().await;
        let retry_from = self.statement_retry_point();
        let result = self.query_statement(sql, &text, &tokens).await;
        if let (Some(mark), Err(Failure::Lost { server, .. })) = (retry_from, &result) {
            let server = server.clone();
            if self.retry_read_elsewhere(&server, mark) {
                return self.query_statement(sql, &text, &tokens).await;
            }
        }
        result
    }

    /// After a read lost its connection to replica `server`: when nothing
    /// of the reply has been written to the client yet (whatever was
    /// queued since `mark` is taken back), prepares the one retry, on
    /// another replica of that data source or its primary. False when the
    /// client already got part of the reply, or `server` is not a replica
    /// this read used: the error stands.
    pub(super) fn retry_read_elsewhere(&mut self, server: &str, mark: Mark) -> bool {
        let Some(lost) = self.reads.used.iter().find(|p| p.name() == server).cloned() else {
            return false;
        };
        if !self.writer.rollback(mark) {
            return false;
        }
        warn!(replica = %server, "a read lost its replica connection before anything reached the client; retrying it once elsewhere");
        lost.observe(std::time::Duration::ZERO, false);
        // The retry takes its replicas (and reports on them) anew.
        self.reads.used.clear();
        self.reads.avoid.push(lost);
        self.current.reply_failed = false;
        true
    }

    /// Feeds the balancer: how the statement went on each replica it used.
    pub(super) fn observe_replicas(&mut self, elapsed: std::time::Duration) {
        for pool in self.reads.used.drain(..) {
            pool.observe(elapsed, !self.current.reply_failed);
        }
    }
}

/// What primary `primary` has committed so far, the session's own writes
/// included.
async fn primary_position(
    session: &Session,
    primary: &Arc<Pool>,
) -> Result<Position, BackendError> {
    let mut conn = primary
        .acquire(session.flavor, session.vars.fingerprint(), &session.holder)
        .await?;
    Ok(conn.committed_position().await?)
}
