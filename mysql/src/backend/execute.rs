//! A MariaDB connection as the core's executor runs statements on it
//! (fan-out writes, transaction control across data sources).

use shardgate_core::error::ConnError;
use shardgate_core::execute::StatementConn;

use super::BackendConn;
use crate::command::COM_QUERY;
use crate::ok_err::OkInfo;

impl StatementConn for BackendConn {
    type Done = OkInfo;

    fn data_source(&self) -> &str {
        &self.ds
    }

    async fn execute(&mut self, sql: &[u8]) -> Result<OkInfo, ConnError> {
        self.execute_statement(sql).await
    }

    async fn query_count(&mut self, sql: &[u8]) -> Result<u64, ConnError> {
        let rows = self.query_text_bytes(sql).await?;
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    async fn send(&mut self, sql: &[u8]) -> Result<(), ConnError> {
        let mut command = Vec::with_capacity(sql.len() + 1);
        command.push(COM_QUERY);
        command.extend_from_slice(sql);
        self.send_command(&command).await
    }

    async fn read_done(&mut self) -> Result<OkInfo, ConnError> {
        self.read_ok().await
    }

    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}
