//! What the core asks a MariaDB server about replication, in MariaDB's
//! terms: `SHOW SLAVE STATUS` and `@@gtid_slave_pos` for a replica's state,
//! `@@gtid_binlog_pos` for what a primary committed, `SHOW ALL SLAVES
//! STATUS` (`Gtid_IO_Pos`) for what a replica received, and
//! `MASTER_GTID_WAIT` to wait for a position.

use std::time::Duration;

use shardgate_core::backend::{Lag, ReplicaStatus, Replicated};

use super::{BackendConn, ConnError};
use crate::gtid::Position;

impl Replicated for BackendConn {
    async fn replica_status(&mut self) -> Result<ReplicaStatus<Position>, ConnError> {
        let status = self.query_text_named("SHOW SLAVE STATUS").await?;
        let applied = self.single_value("SELECT @@gtid_slave_pos").await?;
        let applied = Position::parse(&applied);
        let Some(row) = status.first() else {
            return Ok(ReplicaStatus {
                applied,
                applier_stopped: Some("not replicating (SHOW SLAVE STATUS is empty)".into()),
                receiver_stopped: None,
                applied_all_received: false,
                lag: Lag::Unknown("not replicating".into()),
            });
        };
        let field = |name: &str| row.get(name).and_then(|v| v.as_deref()).unwrap_or("");
        let stopped = |thread: &str, state: &str| {
            (state != "Yes").then(|| {
                let state = if state.is_empty() { "stopped" } else { state };
                format!("replication {thread} thread is {state}")
            })
        };
        Ok(ReplicaStatus {
            applied,
            applier_stopped: stopped("SQL", field("Slave_SQL_Running")),
            receiver_stopped: stopped("IO", field("Slave_IO_Running")),
            // Everything the IO thread received has been applied.
            applied_all_received: field("Master_Log_File") == field("Relay_Master_Log_File")
                && field("Read_Master_Log_Pos") == field("Exec_Master_Log_Pos"),
            lag: match field("Seconds_Behind_Master").parse::<u64>() {
                Ok(seconds) => Lag::Behind(Duration::from_secs(seconds)),
                Err(_) => Lag::Unknown("lag unknown (Seconds_Behind_Master is NULL)".to_owned()),
            },
        })
    }

    async fn committed_position(&mut self) -> Result<Position, ConnError> {
        let text = self.single_value("SELECT @@gtid_binlog_pos").await?;
        Ok(Position::parse(&text))
    }

    async fn received_position(&mut self) -> Result<Position, ConnError> {
        let sources = self.query_text_named("SHOW ALL SLAVES STATUS").await?;
        let received: Vec<&str> = sources
            .iter()
            .filter_map(|row| row.get("Gtid_IO_Pos").and_then(|v| v.as_deref()))
            .filter(|pos| !pos.is_empty())
            .collect();
        Ok(Position::parse(&received.join(",")))
    }

    /// `MASTER_GTID_WAIT` answers 0 once applied, -1 on timeout.
    async fn wait_for_position(
        &mut self,
        position: &Position,
        timeout: Duration,
    ) -> Result<bool, ConnError> {
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{position}', {})",
            timeout.as_secs_f64()
        );
        Ok(self.single_value(&sql).await? == "0")
    }
}

impl BackendConn {
    /// The first column of the first row of a text query ("" for none or
    /// NULL).
    async fn single_value(&mut self, sql: &str) -> Result<String, ConnError> {
        Ok(self
            .query_text(sql)
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default())
    }
}
