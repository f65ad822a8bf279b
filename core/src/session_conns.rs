//! The backend connections a session keeps between statements, with the
//! client's transaction: a connection a statement used stays with the
//! session while a transaction is open on it, while the session is pinned
//! (a statement left state on it that cannot be replayed elsewhere), or
//! when the statement asked to keep it for the next one; otherwise it goes
//! back to its pool. At most one is kept per data source.

use std::sync::Arc;

use tracing::warn;

use crate::backend::pool::{Pool, PooledConn, Role};
use crate::backend::{Backend, Connection, Replicated};
use crate::error::{BackendError, ConnError};
use crate::execute::StatementConn;
use crate::replica::session_reads::{ReadScope, SessionReads};
use crate::session_vars::SessionVars;
use crate::transaction::TransactionState;

/// A session's kept connections and transaction.
pub struct SessionConns<C: Connection> {
    held: Vec<PooledConn<C>>,
    /// Why the session keeps its backend connections for good.
    pinned: Option<&'static str>,
    /// The client's transaction across data sources.
    pub tx: TransactionState,
}

impl<C: Connection> Default for SessionConns<C> {
    fn default() -> Self {
        SessionConns {
            held: Vec::new(),
            pinned: None,
            tx: TransactionState::default(),
        }
    }
}

impl<C: Connection> SessionConns<C> {
    /// The connections kept, in no particular order.
    pub fn held(&self) -> &[PooledConn<C>] {
        &self.held
    }

    /// The connections kept, to run a statement on each.
    pub fn held_mut(&mut self) -> &mut [PooledConn<C>] {
        &mut self.held
    }

    /// The kept connection of `pool`, taken out for a statement.
    pub fn take(&mut self, pool: &Arc<Pool<C>>) -> Option<PooledConn<C>> {
        let at = self.held.iter().position(|c| Arc::ptr_eq(c.pool(), pool))?;
        Some(self.held.swap_remove(at))
    }

    /// Every kept connection, taken out (to end a transaction, or reset).
    pub fn take_all(&mut self) -> Vec<PooledConn<C>> {
        std::mem::take(&mut self.held)
    }

    /// Puts back connections [`take_all`](Self::take_all) took out, as
    /// they were.
    pub fn put_back(&mut self, conns: Vec<PooledConn<C>>) {
        self.held.extend(conns);
    }

    /// The pool of the connection kept on data source `ds`, if any.
    pub fn pool_on(&self, ds: &str) -> Option<&Arc<Pool<C>>> {
        self.held
            .iter()
            .find(|c| c.pool().data_source() == ds)
            .map(PooledConn::pool)
    }

    /// Whether the session is in a transaction: an explicit one, or work
    /// of the implicit one that autocommit off opens, on some data source.
    pub fn in_transaction(&self) -> bool {
        self.tx.open.is_some() || self.held.iter().any(|c| c.in_transaction())
    }

    /// Whether a kept connection has a transaction open on it.
    pub fn any_in_transaction(&self) -> bool {
        self.held.iter().any(|c| c.in_transaction())
    }

    /// Neither a transaction open nor a connection kept: the session may
    /// move to another configuration version.
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.tx.open.is_none()
    }

    /// Why the session keeps its connections for good, if it does.
    pub fn pinned(&self) -> Option<&'static str> {
        self.pinned
    }

    /// Keeps the session's connections for good from now on; true when it
    /// was not pinned before.
    pub fn pin(&mut self, reason: &'static str) -> bool {
        self.pinned.replace(reason).is_none()
    }

    /// Gives back a connection a statement used: kept while a transaction
    /// is open on it, while the session is pinned, or when the statement
    /// holds it for the next one (`holds_next`); back to its pool
    /// otherwise (closed there when broken).
    pub fn release(&mut self, conn: PooledConn<C>, holds_next: bool) {
        let in_transaction = conn.in_transaction();
        if self.tx.open.is_some() && !in_transaction && !conn.is_broken() {
            // It had joined the transaction, which the statement ended
            // (`SET autocommit = 1` after autocommit off, ...).
            self.tx.end();
        }
        let keep = in_transaction || self.pinned.is_some() || holds_next;
        if keep && !conn.is_broken() {
            self.held.push(conn);
        }
    }

    /// Forgets the transaction and the pin (the connections were taken out
    /// and reset): COM_RESET_CONNECTION, `DISCARD ALL`.
    pub fn forget(&mut self) {
        self.tx.end();
        self.pinned = None;
    }
}

impl<C: Replicated + StatementConn> SessionConns<C> {
    /// A connection of `pool`'s data source for a statement: the one kept
    /// there (brought to settings changed since), or one from the pool — a
    /// replica's when the read may go there and it has what the read must
    /// see, else the primary's — brought to the session's settings and
    /// into its transaction when one is open on other data sources.
    pub async fn checkout<B: Backend<Conn = C>>(
        &mut self,
        pool: &Arc<Pool<C>>,
        reads: &mut SessionReads<C>,
        scope: &ReadScope<'_, B>,
        vars: &SessionVars,
    ) -> Result<PooledConn<C>, BackendError> {
        let fingerprint = vars.fingerprint();
        if let Some(mut conn) = self.take(pool) {
            replay_changed_settings(&mut *conn, vars).await?;
            return Ok(conn);
        }
        let in_transaction = self.in_transaction();
        let mut acquired = pool.acquire(scope.flavor, fingerprint, scope.holder).await;
        if pool.role() != Role::Primary {
            acquired = reads.replica_or_primary(scope, pool, acquired).await;
        }
        let mut conn = match acquired {
            Ok(conn) => conn,
            Err(e @ BackendError::Deadlock { .. }) => {
                // As a server does for a lock deadlock: the whole
                // transaction is rolled back, so the others proceed.
                self.reset_all().await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if conn.applied_state() != fingerprint {
            if conn.applied_state() != 0 {
                conn.reset().await?;
            }
            for sql in vars.replay_statements() {
                conn.execute(sql.as_bytes()).await?;
            }
            conn.set_applied_state(fingerprint);
        }
        if in_transaction {
            for sql in self.tx.joining_statements(B::dialect()) {
                conn.execute(sql.as_bytes()).await?;
            }
        }
        Ok(conn)
    }
}

impl<C: Connection + StatementConn> SessionConns<C> {
    /// Ends the transaction on every kept connection that has one open
    /// (`end`: COMMIT or ROLLBACK) without a reply to the client, as a
    /// server commits before DDL or rolls back after a deadlock. A
    /// connection whose end failed is closed; the first failure is returned.
    /// The connections stay kept: the caller releases them.
    pub async fn end_transaction(&mut self, end: &[u8]) -> Option<ConnError> {
        self.tx.end();
        let mut failed = None;
        for conn in &mut self.held {
            if !conn.in_transaction() {
                continue;
            }
            if let Err(e) = conn.execute(end).await {
                warn!(
                    ds = conn.data_source(),
                    "{} failed; closing the connection: {e}",
                    String::from_utf8_lossy(end)
                );
                conn.mark_broken();
                failed.get_or_insert(e);
            }
        }
        failed
    }

    /// Brings every kept connection to the session's settings; false when
    /// all had them already.
    pub async fn replay_changed_settings(&mut self, vars: &SessionVars) -> Result<bool, ConnError> {
        let mut changed = false;
        for conn in &mut self.held {
            changed |= replay_changed_settings(&mut **conn, vars).await?;
        }
        Ok(changed)
    }

    /// Resets every kept connection and gives it back, forgetting the
    /// transaction (COM_RESET_CONNECTION, a deadlock's rollback of the
    /// whole transaction); one that cannot be reset is closed.
    pub async fn reset_all(&mut self) {
        self.tx.end();
        for mut conn in self.take_all() {
            if let Err(e) = conn.reset().await {
                warn!(
                    ds = conn.data_source(),
                    "could not reset a backend connection; closing it: {e}"
                );
                conn.mark_broken();
            }
        }
    }
}

/// Brings a kept connection to settings the session changed since they
/// were applied: kept in a transaction, it is not reset, so the
/// assignments replay as they are. False when it had them already.
async fn replay_changed_settings<C: Connection + StatementConn>(
    conn: &mut C,
    vars: &SessionVars,
) -> Result<bool, ConnError> {
    if conn.applied_state() == vars.fingerprint() {
        return Ok(false);
    }
    for sql in vars.replay_statements() {
        conn.execute(sql.as_bytes()).await?;
    }
    conn.set_applied_state(vars.fingerprint());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::Memory;
    use crate::backend::pool::{PoolContext, Role};
    use crate::backend::waits::Holder;
    use crate::metrics::Metrics;
    use crate::transaction::OpenTransaction;
    use shardgate_rules::config::{BackendUrl, PoolConfig};

    fn pool(name: &str) -> Arc<Pool<Memory>> {
        let url = BackendUrl::parse("mysql://root@127.0.0.1:1/db").expect("url");
        let context = PoolContext::new(Arc::new(Metrics::new()));
        Pool::new(
            name,
            name,
            Role::Primary,
            url,
            PoolConfig::default(),
            context,
        )
    }

    fn open_transaction() -> Option<OpenTransaction> {
        Some(OpenTransaction {
            begin: "BEGIN".into(),
            read_only: false,
            characteristics: None,
        })
    }

    #[tokio::test]
    async fn a_connection_stays_while_its_transaction_is_open_or_the_session_is_pinned() {
        let (ds0, ds1) = (pool("sc-ds0"), pool("sc-ds1"));
        let holder = Holder::new();
        let mut conns = SessionConns::<Memory>::default();

        let mut a = ds0.acquire(1, 0, &holder).await.expect("ds0");
        a.in_transaction = true;
        conns.release(a, false);
        let b = ds1.acquire(1, 0, &holder).await.expect("ds1");
        conns.release(b, false);
        assert_eq!(conns.held().len(), 1, "only the one in a transaction");
        assert!(conns.in_transaction());
        assert!(conns.pool_on("sc-ds0").is_some());
        assert!(conns.take(&ds1).is_none());

        let mut a = conns.take(&ds0).expect("kept");
        a.in_transaction = false;
        conns.release(a, true);
        assert_eq!(conns.held().len(), 1, "held for the next statement");
        conns.take_all();

        assert!(conns.pin("GET_LOCK"));
        assert!(!conns.pin("GET_LOCK"), "already pinned");
        let b = ds1.acquire(1, 0, &holder).await.expect("ds1");
        conns.release(b, false);
        assert_eq!(conns.held().len(), 1, "pinned: kept");
        let mut b = conns.take(&ds1).expect("kept");
        b.broken = true;
        conns.release(b, false);
        assert!(conns.held().is_empty(), "a broken one is never kept");
        conns.forget();
        assert_eq!(conns.pinned(), None);
        assert!(conns.is_idle());
    }

    #[tokio::test]
    async fn the_transaction_ends_when_a_joined_connection_left_it() {
        let ds0 = pool("sc-end");
        let holder = Holder::new();
        let mut conns = SessionConns::<Memory>::default();
        conns.tx.open = open_transaction();
        let mut a = ds0.acquire(1, 0, &holder).await.expect("ds0");
        a.in_transaction = true;
        conns.release(a, false);
        assert!(!conns.is_idle());
        // `SET autocommit = 1` (or DDL) ended it on the server.
        let mut a = conns.take(&ds0).expect("kept");
        a.in_transaction = false;
        conns.release(a, false);
        assert!(conns.tx.open.is_none());
        assert!(conns.is_idle());
    }

    #[tokio::test]
    async fn an_implicit_commit_ends_the_transaction_where_it_is_open_and_closes_a_failed_one() {
        let (ds0, ds1, ds2) = (pool("sc-c0"), pool("sc-c1"), pool("sc-c2"));
        let holder = Holder::new();
        let mut conns = SessionConns::<Memory>::default();
        conns.tx.open = open_transaction();
        for (pool, in_transaction, gone) in [
            (&ds0, true, false),
            (&ds1, false, false),
            (&ds2, true, true),
        ] {
            let mut conn = pool.acquire(1, 0, &holder).await.expect("a connection");
            conn.in_transaction = in_transaction;
            conn.server_gone = gone;
            conns.put_back(vec![conn]);
        }
        let failed = conns.end_transaction(b"COMMIT").await;
        assert!(matches!(failed, Some(ConnError::Lost { .. })), "{failed:?}");
        assert!(conns.tx.open.is_none());
        let executed = |conns: &SessionConns<Memory>, pool: &Arc<Pool<Memory>>| {
            conns
                .held()
                .iter()
                .find(|c| Arc::ptr_eq(c.pool(), pool))
                .map(|c| (c.executed.clone(), c.broken))
        };
        assert_eq!(
            executed(&conns, &ds0),
            Some((vec!["COMMIT".to_owned()], false))
        );
        assert_eq!(
            executed(&conns, &ds1),
            Some((vec![], false)),
            "nothing open there"
        );
        assert_eq!(executed(&conns, &ds2), Some((vec![], true)), "closed");
        for conn in conns.take_all() {
            conns.release(conn, false);
        }
        assert!(conns.is_idle());
    }
}
