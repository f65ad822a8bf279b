//! Transaction control across the data sources a session's transaction
//! touched: BEGIN, COMMIT, ROLLBACK and savepoints on each.

use crate::ok_err::OkInfo;
use crate::response::{Outcome, ResponseKind};
use crate::session::forward::Answer;
use crate::session::{Failure, Session};
use shardgate_core::execute::control::on_every_source;
use shardgate_sql::classify::{Classified, Savepoint};
use shardgate_sql::text::restore;

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
                self.tx.track_savepoint(op);
            }
            self.release(conn, classified);
            return Ok(());
        }
        let metrics = self.shared.metrics.clone();
        let result = on_every_source(&mut self.held, &restore(sql), &metrics).await;
        if ends {
            self.tx.open = None;
        }
        for conn in std::mem::take(&mut self.held) {
            self.release(conn, classified);
        }
        let last = result?;
        if let Some(op) = savepoint {
            self.tx.track_savepoint(op);
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
}
