//! A MariaDB connection as the core's executor runs statements on it
//! (fan-out writes, transaction control across data sources, the rows of
//! a merge).

use shardgate_core::error::ConnError;
use shardgate_core::execute::merge::RowConn;
use shardgate_core::execute::StatementConn;
use shardgate_merge::{ColumnMeta, Value};
use shardgate_sql::shard::node_sql::NodeSql;

use super::result_set::RowPacket;
use super::BackendConn;
use crate::column::ColumnInfo;
use crate::command::COM_QUERY;
use crate::ok_err::OkInfo;
use crate::response::Outcome;
use crate::row::{decode_row, RowFormat};

impl StatementConn for BackendConn {
    type Done = OkInfo;

    fn data_source(&self) -> &str {
        &self.ds
    }

    async fn execute(&mut self, sql: &[u8]) -> Result<OkInfo, ConnError> {
        self.execute_statement(sql).await
    }

    async fn execute_node(&mut self, sql: &NodeSql<'_>) -> Result<OkInfo, ConnError> {
        self.send_node_command(COM_QUERY, sql).await?;
        self.read_ok().await
    }

    async fn query_rows(&mut self, sql: &[u8]) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        self.query_text_bytes(sql).await
    }

    async fn send(&mut self, sql: &[u8]) -> Result<(), ConnError> {
        self.send_command(&query_command(sql)).await
    }

    async fn read_done(&mut self) -> Result<OkInfo, ConnError> {
        self.read_ok().await
    }

    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}

/// Rows of a text query, read for a merge.
impl RowConn for BackendConn {
    type Column = ColumnInfo;

    async fn start_query(&mut self, sql: &[u8]) -> Result<(), ConnError> {
        self.send_command(&query_command(sql)).await?;
        self.broken = true;
        Ok(())
    }

    async fn start_node_query(&mut self, sql: &NodeSql<'_>) -> Result<(), ConnError> {
        self.send_node_command(COM_QUERY, sql).await?;
        self.broken = true;
        Ok(())
    }

    async fn read_columns(&mut self) -> Result<Vec<ColumnInfo>, ConnError> {
        BackendConn::read_columns(self).await
    }

    async fn next_row(&mut self, columns: &[ColumnInfo]) -> Result<Option<Vec<Value>>, ConnError> {
        match self.read_row().await? {
            RowPacket::Row(row) => decode_row(&row, columns, RowFormat::Text)
                .map(Some)
                .map_err(|e| self.protocol(e.to_string())),
            RowPacket::End { status } => {
                // The status says whether the statement left a transaction
                // open (autocommit off), which decides where the
                // connection goes back to.
                self.note_outcome(&Outcome::Ok(OkInfo {
                    status,
                    ..OkInfo::default()
                }));
                Ok(None)
            }
            RowPacket::Err(err) => Err(self.server_reply(err)),
        }
    }

    async fn skip_row(&mut self) -> Result<bool, ConnError> {
        BackendConn::skip_row(self).await
    }

    fn in_transaction(&self) -> bool {
        BackendConn::in_transaction(self)
    }

    fn column_meta(column: &ColumnInfo) -> ColumnMeta {
        column.meta()
    }
}

/// A COM_QUERY packet's payload for `sql`.
fn query_command(sql: &[u8]) -> Vec<u8> {
    let mut command = Vec::with_capacity(sql.len() + 1);
    command.push(COM_QUERY);
    command.extend_from_slice(sql);
    command
}
