//! Reading a MariaDB primary's binlog as a replica would, and turning its
//! events into committed transactions of watched tables.
//!
//! Event groups: MariaDB opens every group with a GTID event (type 162);
//! a transaction's row events follow, and an XID event (InnoDB) or a
//! `COMMIT` query (non-transactional engines) ends it. A group flagged
//! standalone is a single statement (DDL) with no commit after it.
//!
//! Knowing when nothing more is coming: before the dump request the stream
//! sets `@master_heartbeat_period`, so that an idle primary sends a
//! HEARTBEAT_LOG_EVENT every [`HEARTBEAT_PERIOD`] carrying the position it
//! has sent up to. When that position is exactly where the stream is and
//! no transaction is open, the stream reports it as [`StreamItem::Progress`]:
//! a caller waiting for a final position learns within a heartbeat that it
//! has passed it, even when nothing more is written. Transactions that
//! touch no watched table are reported as progress too.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use mysql_async::binlog::events::{
    Event, EventData, OptionalMetadataField, QueryEvent, RotateEvent, RowsEventData, TableMapEvent,
};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::EventType;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};

use crate::mariadb::{self, MariadbGtid};
use crate::statement::{self, Statement, TableName};
use crate::values;
use crate::{BinlogPosition, CdcError, Change, Row, TableChange, TableFilter, Transaction};

/// How often an idle primary is asked to send a heartbeat.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(500);

/// How long the stream waits for any event (heartbeats included) before it
/// takes the connection for lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// MARIA_SLAVE_CAPABILITY_GTID: without it MariaDB rewrites its GTID events
/// into BEGIN queries for old replicas, and the GTIDs are lost.
const MARIADB_SLAVE_CAPABILITY_GTID: u8 = 4;

/// MySQL's XA_PREPARE_LOG_EVENT, which MariaDB also writes; mysql_common
/// has no `EventType` for it under that code in every version.
const XA_PREPARE_LOG_EVENT: u8 = 38;

/// What [`ChangeStream::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A committed transaction that changed watched tables: its changes to
    /// them, in binlog order.
    Transaction(Transaction),
    /// The stream has read everything before this position and nothing in
    /// it changed a watched table (a transaction on other tables, or a
    /// heartbeat of an idle primary). Resuming here loses nothing.
    Progress(BinlogPosition),
}

/// The primary's current binlog position (`SHOW MASTER STATUS`: where the
/// next transaction will be written) and its `@@gtid_binlog_pos`, which is
/// for display.
pub async fn current_position(conn: &mut Conn) -> Result<(BinlogPosition, String), CdcError> {
    let status: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let status = status.ok_or(CdcError::BinlogDisabled)?;
    let file: String = column(&status, 0, "SHOW MASTER STATUS")?;
    let pos: u64 = column(&status, 1, "SHOW MASTER STATUS")?;
    let gtid: Option<String> = conn.query_first("SELECT @@gtid_binlog_pos").await?;
    Ok((BinlogPosition { file, pos }, gtid.unwrap_or_default()))
}

/// One column of a server row, converted, or an error naming the query.
fn column<T: mysql_async::prelude::FromValue>(
    row: &mysql_async::Row,
    index: usize,
    query: &str,
) -> Result<T, CdcError> {
    row.get_opt(index)
        .and_then(Result::ok)
        .ok_or_else(|| CdcError::UnexpectedReply {
            query: query.to_owned(),
            detail: format!("column {index} is missing or of another type"),
        })
}

/// A watched table as its latest TABLE_MAP event described it.
#[derive(Debug)]
struct WatchedTable {
    schema: String,
    table: String,
    columns: Arc<[String]>,
}

/// The event group being read.
#[derive(Debug, Default)]
struct OpenGroup {
    gtid: Option<String>,
    standalone: bool,
    changes: Vec<TableChange>,
    /// Savepoints of the transaction and how many changes preceded each.
    savepoints: Vec<(String, usize)>,
}

/// A primary's committed changes to watched tables, read from a binlog
/// position on. Each stream registers as a replica with its own random
/// server id (in the upper half of the range, away from real servers).
pub struct ChangeStream {
    binlog: BinlogStream,
    filter: TableFilter,
    /// Where the stream is: the end of the last event read.
    file: String,
    pos: u64,
    /// Watched tables by table id, from their TABLE_MAP events.
    tables: HashMap<u64, WatchedTable>,
    group: Option<OpenGroup>,
    seen_format_description: bool,
}

impl ChangeStream {
    /// Connects to the primary with `opts`, checks that its binlog can be
    /// captured from `from`, and starts reading there. `from` must be a
    /// position this crate reported (a transaction's `end`, a `Progress`,
    /// or [`current_position`]).
    pub async fn open(
        opts: Opts,
        from: BinlogPosition,
        filter: TableFilter,
    ) -> Result<ChangeStream, CdcError> {
        let mut conn = Conn::new(opts).await?;
        check_capture_settings(&mut conn).await?;
        check_position_available(&mut conn, &from).await?;

        conn.query_drop(format!(
            "SET @master_heartbeat_period = {}",
            HEARTBEAT_PERIOD.as_nanos()
        ))
        .await?;
        conn.query_drop(format!(
            "SET @mariadb_slave_capability = {MARIADB_SLAVE_CAPABILITY_GTID}"
        ))
        .await?;
        let server_id = random_server_id();
        // mysql_async announces the checksum capability itself
        // (`@master_binlog_checksum`) and registers as a replica before the
        // dump request; its reader takes the checksum algorithm from the
        // format description event.
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos);
        let binlog = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| CdcError::from_dump(e, &from))?;
        tracing::debug!(server_id, %from, tables = filter.len(), "binlog stream opened");
        Ok(ChangeStream {
            binlog,
            filter,
            file: from.file,
            pos: from.pos,
            tables: HashMap::new(),
            group: None,
            seen_format_description: false,
        })
    }

    /// Ends the replica connection (dropping the stream does too, less
    /// politely).
    pub async fn close(self) -> Result<(), CdcError> {
        Ok(self.binlog.close().await?)
    }

    /// Where the stream is: everything before this position has been read.
    /// Inside a transaction this is not a resumable position, which is why
    /// callers get positions only with transactions and progress.
    fn position(&self) -> BinlogPosition {
        BinlogPosition {
            file: self.file.clone(),
            pos: self.pos,
        }
    }

    /// The next committed transaction of watched tables, or progress.
    ///
    /// Cancel-safe: the only await is the read of the next event, and
    /// everything read so far is kept in the stream.
    pub async fn next(&mut self) -> Result<StreamItem, CdcError> {
        loop {
            let event = match tokio::time::timeout(SILENCE_LIMIT, self.binlog.next()).await {
                Err(_) => {
                    return Err(CdcError::Silent {
                        silence: SILENCE_LIMIT,
                        heartbeat: HEARTBEAT_PERIOD,
                    })
                }
                Ok(None) => {
                    return Err(CdcError::StreamEnded {
                        position: self.position(),
                    })
                }
                Ok(Some(Err(e))) => return Err(CdcError::from_dump(e, &self.position())),
                Ok(Some(Ok(event))) => event,
            };
            if let Some(item) = self.handle(&event)? {
                return Ok(item);
            }
        }
    }

    fn handle(&mut self, event: &Event) -> Result<Option<StreamItem>, CdcError> {
        let header = event.header();
        let kind = header.event_type_raw();
        let log_pos = u64::from(header.log_pos());
        if kind == EventType::HEARTBEAT_EVENT as u8 {
            return Ok(self.heartbeat(event, log_pos));
        }
        let start = self.position();
        // Events the primary makes up for the replica (the first ROTATE
        // and format description of a dump) have no position of their own.
        if log_pos != 0 {
            self.pos = log_pos;
        }
        let decode = |what: &str, source: std::io::Error| CdcError::Decode {
            position: start.clone(),
            what: what.to_owned(),
            source,
        };

        match kind {
            k if k == EventType::FORMAT_DESCRIPTION_EVENT as u8 => {
                self.seen_format_description = true;
                Ok(None)
            }
            // The ROTATE a dump starts with restates the requested position,
            // and comes before the format description: the reader does not
            // know yet that it ends with a checksum, which would be read as
            // part of the file name. The stream knows the position already.
            k if k == EventType::ROTATE_EVENT as u8 && !self.seen_format_description => Ok(None),
            k if k == EventType::ROTATE_EVENT as u8 => {
                let rotate: RotateEvent<'_> =
                    event.read_event().map_err(|e| decode("ROTATE", e))?;
                self.file = rotate.name().into_owned();
                self.pos = rotate.position();
                Ok(None)
            }
            mariadb::GTID_EVENT => {
                let gtid =
                    MariadbGtid::parse(event.data(), header.server_id()).ok_or_else(|| {
                        decode("GTID", std::io::Error::other("GTID event body too short"))
                    })?;
                self.abandon_open_group(&start)?;
                self.group = Some(OpenGroup {
                    gtid: Some(gtid.to_string()),
                    standalone: gtid.standalone,
                    ..OpenGroup::default()
                });
                Ok(None)
            }
            k if k == EventType::QUERY_EVENT as u8 => {
                let query: QueryEvent<'_> = event.read_event().map_err(|e| decode("QUERY", e))?;
                self.query(&query, &start)
            }
            k if k == EventType::XID_EVENT as u8 => Ok(Some(self.close_group(true))),
            XA_PREPARE_LOG_EVENT => {
                if let Some(change) = self.group.as_ref().and_then(|g| g.changes.first()) {
                    return Err(CdcError::XaTransaction {
                        schema: change.schema.clone(),
                        table: change.table.clone(),
                        position: start,
                    });
                }
                Ok(Some(self.close_group(false)))
            }
            k if k == EventType::TABLE_MAP_EVENT as u8 => {
                let map: TableMapEvent<'_> =
                    event.read_event().map_err(|e| decode("TABLE_MAP", e))?;
                self.table_map(&map, &start)?;
                Ok(None)
            }
            k if is_rows_event(k) => {
                let Some(EventData::RowsEvent(rows)) =
                    event.read_data().map_err(|e| decode("rows", e))?
                else {
                    return Ok(None);
                };
                self.rows(&rows, &start)?;
                Ok(None)
            }
            k if mariadb::COMPRESSED_ROWS_EVENTS.contains(&k) => {
                let watched = mariadb::rows_event_table_id(event.data())
                    .is_some_and(|id| self.tables.contains_key(&id));
                if watched {
                    return Err(CdcError::CompressedBinlog { at: Some(start) });
                }
                Ok(None)
            }
            // A compressed statement could be DDL on a watched table that
            // this reader cannot see.
            mariadb::QUERY_COMPRESSED_EVENT => Err(CdcError::CompressedBinlog { at: Some(start) }),
            _ => Ok(None),
        }
    }

    /// Progress when the primary says it has sent everything up to where
    /// the stream is, between transactions. A heartbeat for another place
    /// (which would mean events were skipped) is not progress.
    fn heartbeat(&self, event: &Event, log_pos: u64) -> Option<StreamItem> {
        let file = String::from_utf8_lossy(event.data());
        let file = file.trim_end_matches('\0');
        let here = (file.is_empty() || file == self.file) && log_pos == self.pos;
        if self.group.is_some() || !here {
            tracing::debug!(
                heartbeat_file = %file,
                heartbeat_pos = log_pos,
                at = %self.position(),
                in_transaction = self.group.is_some(),
                "heartbeat not taken as progress"
            );
            return None;
        }
        Some(StreamItem::Progress(self.position()))
    }

    /// A new group starts while one is open: only possible for groups this
    /// reader did not see end. Dropping one without watched changes loses
    /// nothing; dropping watched changes would, so that is an error.
    fn abandon_open_group(&mut self, at: &BinlogPosition) -> Result<(), CdcError> {
        match self.group.take() {
            Some(group) if !group.changes.is_empty() => Err(CdcError::Decode {
                position: at.clone(),
                what: "event group".into(),
                source: std::io::Error::other(format!(
                    "a new group starts before group {} with changes to watched tables ended",
                    group.gtid.as_deref().unwrap_or("without GTID")
                )),
            }),
            Some(group) => {
                tracing::debug!(gtid = ?group.gtid, %at, "event group without an end dropped");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Ends the open group at the current position: its watched changes if
    /// it committed any, progress otherwise.
    fn close_group(&mut self, committed: bool) -> StreamItem {
        let group = self.group.take().unwrap_or_default();
        if committed && !group.changes.is_empty() {
            StreamItem::Transaction(Transaction {
                gtid: group.gtid,
                changes: group.changes,
                end: self.position(),
            })
        } else {
            StreamItem::Progress(self.position())
        }
    }

    fn query(
        &mut self,
        query: &QueryEvent<'_>,
        start: &BinlogPosition,
    ) -> Result<Option<StreamItem>, CdcError> {
        let sql = query.query();
        let default_schema = query.schema();
        match statement::classify(&sql) {
            Statement::Begin => {
                if self.group.is_none() {
                    self.group = Some(OpenGroup::default());
                }
                return Ok(None);
            }
            Statement::Commit => return Ok(Some(self.close_group(true))),
            // Only a transaction that also changed non-transactional tables
            // reaches the binlog with a ROLLBACK: its changes to
            // transactional tables were undone, and watched tables are
            // InnoDB tables.
            Statement::Rollback => return Ok(Some(self.close_group(false))),
            Statement::Savepoint(name) => {
                if let Some(group) = self.group.as_mut() {
                    group.savepoints.push((name, group.changes.len()));
                }
                return Ok(None);
            }
            Statement::RollbackToSavepoint(name) => {
                if let Some(group) = self.group.as_mut() {
                    if let Some(k) = group
                        .savepoints
                        .iter()
                        .rposition(|(n, _)| n.eq_ignore_ascii_case(&name))
                    {
                        group.changes.truncate(group.savepoints[k].1);
                        group.savepoints.truncate(k + 1);
                    }
                }
                return Ok(None);
            }
            Statement::SchemaChange(names) => {
                if let Some((schema, table)) = self.first_watched(&names, &default_schema) {
                    return Err(CdcError::SchemaChange {
                        schema,
                        table,
                        position: start.clone(),
                        statement: sql.into_owned(),
                    });
                }
            }
            Statement::DropDatabase(schema) => {
                if let Some(table) = self.filter.tables_of(&schema).next() {
                    return Err(CdcError::SchemaChange {
                        table: table.to_owned(),
                        schema: schema.clone(),
                        position: start.clone(),
                        statement: sql.into_owned(),
                    });
                }
            }
            Statement::Write(names) => {
                if let Some((schema, table)) = self.first_watched(&names, &default_schema) {
                    return Err(CdcError::StatementWrite {
                        schema,
                        table,
                        position: start.clone(),
                        statement: sql.into_owned(),
                    });
                }
            }
            Statement::Other => {}
        }
        // A statement alone in its group is the whole group.
        let alone = self.group.as_ref().is_none_or(|g| g.standalone);
        Ok(alone.then(|| self.close_group(true)))
    }

    /// The first of `names` that is a watched table, resolving unqualified
    /// names in the statement's default schema (in any schema when it had
    /// none).
    fn first_watched(&self, names: &[TableName], default_schema: &str) -> Option<(String, String)> {
        names.iter().find_map(|name| {
            let schema = name
                .schema
                .as_deref()
                .or(Some(default_schema).filter(|s| !s.is_empty()));
            match schema {
                Some(schema) => self
                    .filter
                    .contains(schema, &name.table)
                    .then(|| (schema.to_owned(), name.table.clone())),
                None => self
                    .filter
                    .schemas_of(&name.table)
                    .next()
                    .map(|schema| (schema.to_owned(), name.table.clone())),
            }
        })
    }

    fn table_map(&mut self, map: &TableMapEvent<'_>, at: &BinlogPosition) -> Result<(), CdcError> {
        let schema = map.database_name().into_owned();
        let table = map.table_name().into_owned();
        if !self.filter.contains(&schema, &table) {
            // Table ids are reused after a table is closed: an id that
            // named a watched table may now name another one.
            self.tables.remove(&map.table_id());
            return Ok(());
        }
        let columns = column_names(map)
            .map_err(|source| CdcError::Decode {
                position: at.clone(),
                what: format!("column names of {schema}.{table}"),
                source,
            })?
            .filter(|names| names.len() as u64 == map.columns_count())
            .ok_or_else(|| CdcError::MissingColumnNames {
                schema: schema.clone(),
                table: table.clone(),
            })?;
        if let Some(column) = mis_decoded_column(map, &columns) {
            return Err(CdcError::UnsupportedColumn {
                schema,
                table,
                column,
                reason: "mysql_common 0.37 decodes negative TIME(1) and TIME(2) values \
                         with a fraction wrongly; change the column to TIME or TIME(3..6)"
                    .into(),
            });
        }
        self.tables.insert(
            map.table_id(),
            WatchedTable {
                schema,
                table,
                columns,
            },
        );
        Ok(())
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, at: &BinlogPosition) -> Result<(), CdcError> {
        let Some(watched) = self.tables.get(&rows.table_id()) else {
            return Ok(());
        };
        let decode = |what: String, source: std::io::Error| CdcError::Decode {
            position: at.clone(),
            what,
            source,
        };
        let map = self.binlog.get_tme(rows.table_id()).ok_or_else(|| {
            decode(
                format!("rows of {}.{}", watched.schema, watched.table),
                std::io::Error::other("no table map for the rows event's table id"),
            )
        })?;
        let group = self.group.get_or_insert_with(OpenGroup::default);
        for images in rows.rows(map) {
            let (before, after) = images
                .map_err(|e| decode(format!("rows of {}.{}", watched.schema, watched.table), e))?;
            let before = before.map(|r| to_row(r, watched, at)).transpose()?;
            let after = after.map(|r| to_row(r, watched, at)).transpose()?;
            let change = match (rows, before, after) {
                (
                    RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_),
                    _,
                    Some(after),
                ) => Change::Insert { after },
                (
                    RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_),
                    Some(before),
                    _,
                ) => Change::Delete { before },
                (_, Some(before), Some(after)) => Change::Update { before, after },
                _ => {
                    return Err(decode(
                        format!("rows of {}.{}", watched.schema, watched.table),
                        std::io::Error::other("a row change without the image its kind needs"),
                    ))
                }
            };
            group.changes.push(TableChange {
                schema: watched.schema.clone(),
                table: watched.table.clone(),
                change,
            });
        }
        Ok(())
    }
}

fn is_rows_event(kind: u8) -> bool {
    [
        EventType::WRITE_ROWS_EVENT_V1,
        EventType::UPDATE_ROWS_EVENT_V1,
        EventType::DELETE_ROWS_EVENT_V1,
        EventType::WRITE_ROWS_EVENT,
        EventType::UPDATE_ROWS_EVENT,
        EventType::DELETE_ROWS_EVENT,
        EventType::PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|t| *t as u8 == kind)
}

/// The column names a TABLE_MAP carries with binlog_row_metadata=FULL.
fn column_names(map: &TableMapEvent<'_>) -> std::io::Result<Option<Arc<[String]>>> {
    for field in map.iter_optional_meta() {
        if let OptionalMetadataField::ColumnName(names) = field? {
            let names = names
                .iter_names()
                .map(|name| name.map(|n| n.name().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            return Ok(Some(names.into()));
        }
    }
    Ok(None)
}

/// A column whose values the binlog decoder would get wrong: TIME(1) and
/// TIME(2), whose negative values with a fraction overflow its arithmetic.
fn mis_decoded_column(map: &TableMapEvent<'_>, names: &[String]) -> Option<String> {
    (0..names.len()).find_map(|k| {
        let time2 = matches!(
            map.get_column_type(k),
            Ok(Some(ColumnType::MYSQL_TYPE_TIME2))
        );
        let decimals = map.get_column_metadata(k).and_then(|m| m.first().copied());
        (time2 && matches!(decimals, Some(1 | 2))).then(|| names[k].clone())
    })
}

/// A row image as a [`Row`]; the image must hold every column.
fn to_row(image: BinlogRow, table: &WatchedTable, at: &BinlogPosition) -> Result<Row, CdcError> {
    if image.len() != table.columns.len() {
        return Err(CdcError::PartialRowImage {
            schema: table.schema.clone(),
            table: table.table.clone(),
            position: at.clone(),
        });
    }
    let types: Vec<_> = image
        .columns_ref()
        .iter()
        .map(|c| c.column_type())
        .collect();
    let values = image
        .unwrap()
        .into_iter()
        .zip(types)
        .zip(table.columns.iter())
        .map(|((value, column_type), name)| {
            values::to_value(value, column_type).map_err(|e| CdcError::BadValue {
                table: format!("{}.{}", table.schema, table.table),
                column: name.clone(),
                position: at.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Row {
        columns: table.columns.clone(),
        values,
    })
}

/// The global settings change capture depends on.
async fn check_capture_settings(conn: &mut Conn) -> Result<(), CdcError> {
    const QUERY: &str =
        "SELECT @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.log_bin_compress";
    let row: Option<mysql_async::Row> = conn.query_first(QUERY).await?;
    let row = row.ok_or_else(|| CdcError::UnexpectedReply {
        query: QUERY.into(),
        detail: "no row".into(),
    })?;
    let format: String = column(&row, 0, QUERY)?;
    let row_image: String = column(&row, 1, QUERY)?;
    let compress: String = column(&row, 2, QUERY)?;
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(CdcError::BinlogFormatNotRow { actual: format });
    }
    if !row_image.eq_ignore_ascii_case("FULL") {
        return Err(CdcError::RowImageNotFull { actual: row_image });
    }
    if compress != "0" && !compress.eq_ignore_ascii_case("OFF") {
        return Err(CdcError::CompressedBinlog { at: None });
    }
    Ok(())
}

/// Whether the primary still has `from`'s binlog file and the position lies
/// inside it, so that a purged file is reported as such rather than as the
/// server's generic dump error.
async fn check_position_available(conn: &mut Conn, from: &BinlogPosition) -> Result<(), CdcError> {
    let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    let mut oldest = None;
    for log in &logs {
        let name: String = column(log, 0, "SHOW BINARY LOGS")?;
        let size: u64 = column(log, 1, "SHOW BINARY LOGS")?;
        if name == from.file {
            if from.pos > size {
                return Err(CdcError::PositionPastEnd {
                    position: from.clone(),
                    size,
                });
            }
            return Ok(());
        }
        oldest.get_or_insert(name);
    }
    match oldest {
        None => Err(CdcError::BinlogDisabled),
        Some(oldest) => Err(CdcError::BinlogPurged {
            file: from.file.clone(),
            oldest,
        }),
    }
}

/// A server id no real server of a deployment uses: the upper half of the
/// u32 range, randomised so that concurrent streams on one primary do not
/// collide (a primary drops the older replica connection of a server id
/// that registers twice).
fn random_server_id() -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    hasher.write_u32(std::process::id());
    0x8000_0000 | (hasher.finish() as u32)
}
