//! Why change capture stopped, worded so that whoever reads the message
//! knows what to change on the primary or in the job.

use std::time::Duration;

use crate::BinlogPosition;

/// MariaDB error codes that mean the user lacks a privilege.
const ACCESS_DENIED_CODES: [u16; 4] = [
    1044, // ER_DBACCESS_DENIED_ERROR
    1045, // ER_ACCESS_DENIED_ERROR
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
];

/// ER_MASTER_FATAL_ERROR_READING_BINLOG: the primary cannot serve the
/// requested binlog position (file purged, position inside an event, ...).
const BINLOG_UNREADABLE_CODE: u16 = 1236;

#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    #[error("MariaDB error: {0}")]
    Mysql(mysql_async::Error),

    #[error(
        "missing privilege on the primary: {message}; grant the change capture user \
         REPLICATION SLAVE and BINLOG MONITOR (GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO ...)"
    )]
    MissingPrivilege { message: String },

    #[error(
        "binary logging is off on the primary (SHOW MASTER STATUS is empty): start it with log_bin"
    )]
    BinlogDisabled,

    #[error(
        "the primary's binlog_format is {actual}, change capture needs ROW: \
         SET GLOBAL binlog_format = 'ROW' and reconnect the writers"
    )]
    BinlogFormatNotRow { actual: String },

    #[error(
        "the primary's binlog_row_image is {actual}, change capture needs whole rows: \
         SET GLOBAL binlog_row_image = 'FULL' and reconnect the writers"
    )]
    RowImageNotFull { actual: String },

    #[error(
        "the primary compresses its binlog (log_bin_compress), which change capture cannot read: \
         SET GLOBAL log_bin_compress = OFF{}",
        at.as_ref().map(|p| format!(" (compressed event at {p})")).unwrap_or_default()
    )]
    CompressedBinlog { at: Option<BinlogPosition> },

    #[error(
        "binlog file {file} is no longer on the primary (oldest kept: {oldest}): the changes since \
         then are lost to change capture, so the job must start its copy again; keep binlogs longer \
         (binlog_expire_logs_seconds) than a job runs"
    )]
    BinlogPurged { file: String, oldest: String },

    #[error("position {position} lies past the end of its binlog file ({size} bytes): it was not read from this primary")]
    PositionPastEnd { position: BinlogPosition, size: u64 },

    #[error(
        "the primary cannot send its binlog from {from}: {message} (the file may have been purged \
         or the position is not the start of an event: resume from a position this stream reported)"
    )]
    BinlogUnreadable {
        from: BinlogPosition,
        message: String,
    },

    #[error(
        "the binlog's table map for {schema}.{table} has no column names: \
         SET GLOBAL binlog_row_metadata = 'FULL' on the primary"
    )]
    MissingColumnNames { schema: String, table: String },

    #[error(
        "a row image of {schema}.{table} at {position} lacks columns: \
         SET GLOBAL binlog_row_image = 'FULL' for every writer"
    )]
    PartialRowImage {
        schema: String,
        table: String,
        position: BinlogPosition,
    },

    #[error(
        "schema change on watched table {schema}.{table} at {position}: `{statement}`; change capture \
         cannot follow a table whose definition changed: cancel the job and start it again after the DDL"
    )]
    SchemaChange {
        schema: String,
        table: String,
        position: BinlogPosition,
        statement: String,
    },

    #[error(
        "statement-logged write that may touch watched table {schema}.{table} at {position}: \
         `{statement}`; its rows are not in the binlog: every writer session must use \
         binlog_format = ROW (SET GLOBAL binlog_format = 'ROW' and reconnect), then start the job again"
    )]
    StatementWrite {
        schema: String,
        table: String,
        position: BinlogPosition,
        statement: String,
    },

    #[error(
        "an XA transaction changed watched table {schema}.{table} (prepared at {position}); change \
         capture does not follow XA transactions, whose changes and commit are apart in the binlog: \
         write the watched tables with ordinary transactions"
    )]
    XaTransaction {
        schema: String,
        table: String,
        position: BinlogPosition,
    },

    /// `table` is `schema.table`.
    #[error("value of {table}.{column} at {position} cannot be captured: {reason}")]
    BadValue {
        table: String,
        column: String,
        position: BinlogPosition,
        reason: String,
    },

    #[error("column {schema}.{table}.{column} cannot be captured: {reason}")]
    UnsupportedColumn {
        schema: String,
        table: String,
        column: String,
        reason: String,
    },

    #[error("unexpected reply to `{query}` from the primary: {detail}")]
    UnexpectedReply { query: String, detail: String },

    #[error("cannot decode the binlog at {position} ({what}): {source}")]
    Decode {
        position: BinlogPosition,
        what: String,
        source: std::io::Error,
    },

    #[error(
        "the primary sent nothing for {silence:?} although it was asked for a heartbeat every \
         {heartbeat:?}: the connection is probably lost; open the stream again from its last position"
    )]
    Silent {
        silence: Duration,
        heartbeat: Duration,
    },

    #[error("the primary ended the binlog stream at {position}; open the stream again from there")]
    StreamEnded { position: BinlogPosition },
}

impl From<mysql_async::Error> for CdcError {
    fn from(err: mysql_async::Error) -> Self {
        match &err {
            mysql_async::Error::Server(server) if ACCESS_DENIED_CODES.contains(&server.code) => {
                CdcError::MissingPrivilege {
                    message: server.message.clone(),
                }
            }
            _ => CdcError::Mysql(err),
        }
    }
}

impl CdcError {
    /// Maps an error of the binlog dump itself, which the server reports
    /// with its own code when it cannot read from the requested position.
    pub(crate) fn from_dump(err: mysql_async::Error, from: &BinlogPosition) -> Self {
        match &err {
            mysql_async::Error::Server(server) if server.code == BINLOG_UNREADABLE_CODE => {
                CdcError::BinlogUnreadable {
                    from: from.clone(),
                    message: server.message.clone(),
                }
            }
            _ => CdcError::from(err),
        }
    }
}
