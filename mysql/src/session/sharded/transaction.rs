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
            self.conns.tx.savepoints.clear();
        }
        if self.conns.held().is_empty() && ends && self.conns.tx.open.is_some() {
            // A transaction that never reached a data source.
            self.conns.tx.open = None;
            self.reply_ok();
            return Ok(());
        }
        if self.conns.held().len() <= 1 {
            let mut conn = match self.conns.take_all().pop() {
                Some(conn) => conn,
                None => self.checkout(classified).await?,
            };
            if ends {
                // The reply shows the transaction ended.
                self.conns.tx.open = None;
            }
            let outcome = self
                .run_on(&mut conn, payload, ResponseKind::ResultSets, Answer::Plain)
                .await?;
            // A savepoint outside a transaction ends with its statement.
            if let (Some(op), Outcome::Ok(_), true) = (savepoint, outcome, conn.in_transaction()) {
                self.conns.tx.track_savepoint(op);
            }
            self.release(conn, classified);
            return Ok(());
        }
        let metrics = self.shared.metrics.clone();
        let result = on_every_source(self.conns.held_mut(), &restore(sql), &metrics).await;
        if ends {
            self.conns.tx.open = None;
        }
        for conn in self.conns.take_all() {
            self.release(conn, classified);
        }
        let last = result?;
        if let Some(op) = savepoint {
            self.conns.tx.track_savepoint(op);
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
