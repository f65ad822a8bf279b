//! Writes fanned out to several nodes, run by the core's executor
//! ([`shardgate_core::execute::fanout`], [`shardgate_core::execute::returning`])
//! on the session's connections: the client gets one OK with the combined
//! counts, or the RETURNING rows one server would send.

use std::sync::Arc;

use super::rows::Header;
use crate::backend::PooledConn;
use crate::ok_err::OkInfo;
use crate::row::RowFormat;
use crate::session::{Failure, LastInsert, Session};
use shardgate_core::execute::fanout::{fan_out, FanoutWrite};
use shardgate_core::execute::returning::{fan_out_returning, ReturningWrite};
use shardgate_core::execute::TargetConns;
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::plan::{Returning, Target};

impl Session {
    /// Writes on several nodes; one OK with the combined count.
    pub(super) async fn fanout(
        &mut self,
        targets: &[Target<'_>],
        write: FanoutWrite<'_>,
    ) -> Result<(), Failure> {
        let done = fan_out(self, &MARIADB, targets, write).await?;
        if let Some(id) = write.generated_id {
            self.last_insert = Some(LastInsert { id, conn_uid: 0 });
        }
        self.writer.push(
            &OkInfo {
                affected_rows: done.affected_rows,
                last_insert_id: done.last_insert_id,
                status: self.reply_status(),
                warnings: u16::try_from(done.warnings).unwrap_or(u16::MAX),
                info: done.counts,
            }
            .encode(),
        );
        Ok(())
    }

    /// A write with RETURNING on `targets`; its rows, in `format`.
    pub(super) async fn fanout_returning(
        &mut self,
        targets: &[Target<'_>],
        returning: &Returning,
        insert_rows: &[Arc<[u32]>],
        generated_id: Option<u64>,
        format: RowFormat,
    ) -> Result<(), Failure> {
        let write = ReturningWrite {
            returning,
            insert_rows,
            own_transaction: self.autocommit() && !self.in_transaction(),
        };
        let mut conns: TargetConns<PooledConn> = TargetConns::checkout(self, targets).await?;
        let mut result = self.client_result(format, Header::Tables);
        let outcome = fan_out_returning(&mut conns, &MARIADB, targets, write, &mut result).await;
        conns.release(self);
        outcome?;
        if let Some(id) = generated_id {
            self.last_insert = Some(LastInsert { id, conn_uid: 0 });
        }
        self.push_end_of_result();
        Ok(())
    }
}
