//! Read/write splitting for one session, as the MySQL front end drives
//! it: the core's [`SessionReads`] decides where each read goes and what it
//! must see of the session's writes; here the statements of the client's
//! commands are judged safe for a replica, and a read whose replica
//! connection broke before the client got anything is retried elsewhere.

use shardgate_core::replica::session_reads::{replicas_may_serve, ReadScope, SessionReads};
use shardgate_core::session_conns::SessionConns;
use shardgate_core::session_vars::SessionVars;

use super::{Failure, Session};
use crate::backend::{BackendConn, MariaDb, Pool, PooledConn};
use crate::command::{Command, CommandKind};
use crate::packet::Mark;
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::lex::TokenList;
use shardgate_sql::reads::{replica_safe, replica_safe_lexed};
use shardgate_sql::shard::analyze::ShardedStatement;
use shardgate_sql::text::analysis_text;
use std::sync::Arc;

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
        let may =
            statement_safe && replicas_may_serve(&self.shared, &self.conns, self.autocommit());
        self.reads.begin_statement(may);
    }

    /// The session's read routing with what it looks at.
    fn reads_in_scope(&mut self) -> (&mut SessionReads<BackendConn>, ReadScope<'_, MariaDb>) {
        let (_, reads, scope, _) = self.backend_parts();
        (reads, scope)
    }

    /// The session's kept connections and read routing, with what they
    /// look at: the configuration, the proxy, the session's flavor and
    /// settings.
    pub(super) fn backend_parts(
        &mut self,
    ) -> (
        &mut SessionConns<BackendConn>,
        &mut SessionReads<BackendConn>,
        ReadScope<'_, MariaDb>,
        &SessionVars,
    ) {
        let scope = ReadScope {
            shared: &self.shared,
            proxy: &self.proxy,
            flavor: self.flavor,
            state: self.vars.fingerprint(),
            holder: &self.holder,
        };
        (&mut self.conns, &mut self.reads, scope, &self.vars)
    }

    /// The pool a statement on data source `ds` uses: the one of a
    /// connection the session holds there, else a replica for a read,
    /// else the primary.
    pub(super) fn pool_of(&mut self, ds: &str) -> Result<Arc<Pool>, Failure> {
        if let Some(held) = self.conns.pool_on(ds) {
            return Ok(held.clone());
        }
        let primary = self.primary_pool(ds)?;
        let (reads, scope) = self.reads_in_scope();
        reads.pool_for(&scope, ds, primary).map_err(Failure::from)
    }

    /// Marks the data source of a connection coming back after a
    /// statement that may have written there (see the core's
    /// `SessionReads::note_possible_write`).
    pub(super) fn note_possible_write(&mut self, conn: &mut PooledConn) {
        let label = self.current.statement_label;
        let (reads, scope) = self.reads_in_scope();
        reads.note_possible_write(&scope, conn, label);
    }

    /// Whether the current statement's reply may reach the client as soon as
    /// it is read: a read's, which `note_possible_write` (run before the
    /// client hears of a write, so that other sessions' reads wait for it)
    /// leaves alone. Labels that may commit (`set autocommit = 1`) do not.
    pub(super) fn reply_may_stream(&self) -> bool {
        matches!(self.current.statement_label, Some("select" | "show"))
    }

    /// Before a read that may use replicas: learns the primaries'
    /// positions the session's pending writes need.
    pub(super) async fn resolve_pending_writes(&mut self) {
        let (reads, scope) = self.reads_in_scope();
        reads.resolve_pending_writes(&scope).await;
    }

    /// For a read of broadcast tables only: the data source to read them
    /// on (see the core's `SessionReads::broadcast_read_source`).
    pub(super) fn broadcast_read_source(&self, st: &ShardedStatement) -> Option<String> {
        self.reads
            .broadcast_read_source(&self.shared, &self.db.rules, st)
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
        if !self.reads.intent() || self.in_transaction() || !self.conns.held().is_empty() {
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
        let tokens = TokenList::of_statement(&text);
        let tokens = tokens.tokens();
        self.set_read_intent(replica_safe_lexed(&MARIADB, &text, tokens));
        self.resolve_pending_writes().await;
        let retry_from = self.statement_retry_point();
        let result = self.query_statement(sql, &text, tokens).await;
        if let (Some(mark), Err(Failure::Lost { server, .. })) = (retry_from, &result) {
            let server = server.clone();
            if self.retry_read_elsewhere(&server, mark) {
                return self.query_statement(sql, &text, tokens).await;
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
        let Some(lost) = self.reads.used_replica(server) else {
            return false;
        };
        if !self.writer.rollback(mark) {
            return false;
        }
        self.reads.retry_without(lost);
        self.current.reply_failed = false;
        true
    }

    /// Feeds the balancer: how the statement went on each replica it used.
    pub(super) fn observe_replicas(&mut self, elapsed: std::time::Duration) {
        let ok = !self.current.reply_failed;
        self.reads.observe_replicas(elapsed, ok);
    }
}
