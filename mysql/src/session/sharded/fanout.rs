//! Writes fanned out to several nodes, run by the core's executor
//! ([`shardgate_core::execute::fanout`]) on the session's connections; the
//! client gets one OK with the combined counts.

use crate::ok_err::OkInfo;
use crate::session::{Failure, LastInsert, Session};
use shardgate_core::execute::fanout::{fan_out, FanoutWrite};
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::plan::Target;

impl Session {
    /// Writes on several nodes; one OK with the combined count.
    pub(super) async fn fanout(
        &mut self,
        targets: &[Target],
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
}
