//! Transaction control across the data sources a session's transaction
//! touched: BEGIN, COMMIT, ROLLBACK and savepoints on each.

use crate::backend::ConnError;
use crate::command::COM_QUERY;
use crate::ok_err::OkInfo;
use crate::response::{Outcome, ResponseKind};
use crate::session::forward::Answer;
use crate::session::{Failure, Session};
use shardgate_core::error::ProxyError;
use shardgate_sql::classify::{Classified, Savepoint};
use shardgate_sql::text::restore;
use tracing::{error, warn};

impl Session {
    /// COMMIT / ROLLBACK / SAVEPOINT ... on every data source of the
    /// transaction. With one (or none) it is an ordinary statement.
    pub(in crate::session) async fn transaction_control(
        &mut self,
        payload: &[u8],
        sql: &str,
        ends: bool,
        savepoint: Option<&Savepoint>,
        classified: &Classified,
    ) -> Result<(), Failure> {
        if ends {
            self.tx.savepoints.clear();
        }
        if self.held.is_empty() && ends && self.tx.open.is_some() {
            // A transaction that never reached a data source.
            self.tx.open = None;
            self.reply_ok();
            return Ok(());
        }
        if self.held.len() <= 1 {
            let mut conn = match self.held.pop() {
                Some(conn) => conn,
                None => self.checkout(classified).await?,
            };
            if ends {
                // The reply shows the transaction ended.
                self.tx.open = None;
            }
            let outcome = self
                .run_on(&mut conn, payload, ResponseKind::ResultSets, Answer::Plain)
                .await?;
            // A savepoint outside a transaction ends with its statement.
            if let (Some(op), Outcome::Ok(_), true) = (savepoint, outcome, conn.in_transaction()) {
                self.track_savepoint(op);
            }
            self.release(conn, classified);
            return Ok(());
        }
        // Every data source gets the statement whatever the others answer
        // (LOCAL mode), so it is sent to all before any reply is read: one
        // round trip, not one per data source.
        let mut command = Vec::with_capacity(sql.len() + 1);
        command.push(COM_QUERY);
        command.extend_from_slice(&restore(sql));
        let mut sent = Vec::with_capacity(self.held.len());
        for conn in &mut self.held {
            // Until its reply is read, a connection cannot be reused.
            conn.broken = true;
            sent.push(conn.send_command(&command).await);
        }
        let mut done = Vec::new();
        let mut failed: Option<ProxyError> = None;
        let mut last = OkInfo::default();
        for (conn, sent) in self.held.iter_mut().zip(sent) {
            let reply = match sent {
                Ok(()) => conn.read_ok().await,
                Err(e) => Err(e),
            };
            // An error reply was read whole: the connection stays usable
            // (and keeps its transaction, for a failed SAVEPOINT command).
            conn.broken = !matches!(reply, Ok(_) | Err(ConnError::Server { .. }));
            match reply {
                Ok(ok) => {
                    last = ok;
                    done.push(conn.ds.to_string());
                }
                Err(e) => {
                    let err = ProxyError::from(e);
                    warn!(ds = %conn.ds, "{sql} failed: {}", err.message);
                    failed.get_or_insert(err.in_context(format_args!(
                        "on data source {}; done on: {}",
                        conn.ds,
                        if done.is_empty() {
                            "none".into()
                        } else {
                            done.join(", ")
                        }
                    )));
                }
            }
        }
        if ends {
            self.tx.open = None;
        }
        for conn in std::mem::take(&mut self.held) {
            self.release(conn, classified);
        }
        if let Some(err) = failed {
            let commit =
                shardgate_sql::label::first_word(sql.as_bytes()).eq_ignore_ascii_case(b"commit");
            if commit && !done.is_empty() {
                error!(committed = %done.join(", "), "COMMIT failed after other data sources committed: {}", err.message);
                self.shared.metrics.partial_commit();
            }
            return Err(Failure::Reply(err));
        }
        if let Some(op) = savepoint {
            self.track_savepoint(op);
        }
        self.status = last.status;
        self.writer.push(
            &OkInfo {
                status: self.reply_status(),
                ..last
            }
            .encode(),
        );
        Ok(())
    }

    /// Follows a savepoint statement that succeeded, as the server keeps
    /// its savepoints: setting one again moves it last, rolling back to one
    /// forgets those after it, releasing one forgets it and those after.
    pub(super) fn track_savepoint(&mut self, op: &Savepoint) {
        let position = |name: &str| {
            self.tx
                .savepoints
                .iter()
                .position(|s| s.eq_ignore_ascii_case(name))
        };
        match op {
            Savepoint::Set(name) => {
                if let Some(i) = position(name) {
                    self.tx.savepoints.remove(i);
                }
                self.tx.savepoints.push(name.clone());
            }
            Savepoint::RollbackTo(name) => {
                if let Some(i) = position(name) {
                    self.tx.savepoints.truncate(i + 1);
                }
            }
            Savepoint::Release(name) => {
                if let Some(i) = position(name) {
                    self.tx.savepoints.truncate(i);
                }
            }
        }
    }
}
