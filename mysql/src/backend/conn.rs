//! One connection from the proxy to a data source: login as a MySQL client,
//! send commands, read replies, and remember what was set up on it (the
//! session state applied, the statements prepared) so sessions can share it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use shardgate_core::data_source_tls::DataSourceTls;
use shardgate_core::net::{ReadHalf, WriteHalf};
use shardgate_rules::config::BackendUrl;
use shardgate_sql::shard::node_sql::NodeSql;
use tokio::net::TcpStream;

use super::columns::{KeptColumns, ResultColumns};
use super::login::Opening;
use super::ConnError;
use super::Flavor;
use crate::codes;
use crate::column::ColumnInfo;
use crate::command::{
    COM_FIELD_LIST, COM_INIT_DB, COM_QUERY, COM_RESET_CONNECTION, COM_STMT_CLOSE, COM_STMT_EXECUTE,
};
use crate::gtid::Position;
use crate::ok_err::{status, take_lenenc_int, ErrInfo, OkInfo};
use crate::packet::{PacketReader, PacketWriter};
use crate::response::{Outcome, PrepareOk, ResponseKind, ResponseScanner, Step};
use shardgate_core::backend::{Breaker, ConnLimits, Connection};

/// Statements kept prepared per connection before the oldest are closed.
const STATEMENT_CACHE: usize = 256;
/// Node statements at least this long are streamed to the server
/// ([`BackendConn::send_node_command`]); shorter ones are built in one
/// buffer, which costs less than framing them in parts.
const STREAM_NODE_SQL_AT: usize = 64 * 1024;
/// How much of a streamed statement's start decides its transaction
/// effect (its first word, after comments).
const EFFECT_HEAD: usize = 4 * 1024;
/// The size of the parts a streamed statement is written in.
const STREAM_CHUNK: usize = 64 * 1024;
/// Backend replies are not limited by the client's max_allowed_packet.
const NO_LIMIT: usize = usize::MAX;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// A statement prepared on this connection.
#[derive(Debug, Clone, Copy)]
pub struct BackendStatement {
    pub id: u32,
    pub num_params: u16,
    last_used: u64,
}

/// A logged-in connection to one data source.
pub struct BackendConn {
    /// Process-unique id (the backend's thread id repeats across servers).
    pub uid: u64,
    pub ds: Arc<str>,
    pub flavor: Flavor,
    pub thread_id: u32,
    /// Read directly by whoever forwards or parses a reply in flight.
    pub reader: PacketReader<ReadHalf>,
    writer: PacketWriter<WriteHalf>,
    physical_db: Arc<str>,
    /// Fingerprint of the session state last applied (0: none since login or reset).
    pub applied_state: u64,
    statements: foldhash::HashMap<Arc<[u8]>, BackendStatement>,
    use_counter: u64,
    /// Server status flags after the last reply.
    pub status: u16,
    /// Statements ran with autocommit off since the transaction last ended:
    /// MariaDB then holds their locks, metadata locks and read view until
    /// COMMIT or ROLLBACK, although its status flags say IN_TRANS only once
    /// something was written.
    open_work: bool,
    /// What the command in flight does to the transaction.
    effect: Effect,
    /// A transaction with possible writes ended with a commit (COMMIT,
    /// `SET autocommit = 1`, an implicit commit) since the session last
    /// asked (see `take_committed`).
    committed: bool,
    /// Set when a reply was not read to its end or the socket failed: such a
    /// connection is closed instead of going back to the pool.
    pub broken: bool,
    pub last_used: Instant,
    /// MariaDB's metadata caching is on: every column count packet carries
    /// a "metadata follows" byte, and an execute whose result columns are
    /// those the server sent last time for that statement gets none (see
    /// [`ResultColumns`]).
    pub cache_metadata: bool,
    /// The column definitions each prepared statement's result last came
    /// with, by backend statement id, for executes the server answers
    /// without them.
    result_columns: foldhash::HashMap<u32, ResultColumns>,
    /// What lets the pool break the socket when it marks the server down.
    breaker: Arc<Breaker>,
}

impl Drop for BackendConn {
    fn drop(&mut self) {
        // The duplicate goes before the socket: a breaker never outlives it.
        self.breaker.disarm();
    }
}

impl BackendConn {
    /// Connects and logs in with the data source's URL, over TLS when its
    /// `ssl-mode` asks for it (see [`DataSourceTls`]).
    pub async fn connect(
        ds: Arc<str>,
        url: &BackendUrl,
        flavor: Flavor,
        limits: ConnLimits,
    ) -> Result<Self, ConnError> {
        let addr = format!("{}:{}", url.host, url.port);
        let ds_name = ds.to_string();
        let connect_err = |source| ConnError::Connect {
            ds: ds_name.clone(),
            addr: addr.clone(),
            source,
        };
        // Before the socket: an unreadable CA fails at once.
        let tls = DataSourceTls::for_url(url).map_err(|source| ConnError::Tls {
            ds: ds_name.clone(),
            addr: addr.clone(),
            source: Box::new(source),
        })?;
        let stream = tokio::time::timeout(limits.connect, TcpStream::connect(&addr))
            .await
            .map_err(|_| connect_err(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
            .map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        // A duplicate of the socket, for the pool to break it from outside
        // (shutting the TCP socket down ends a TLS session on it too).
        let std_stream = stream.into_std().map_err(connect_err)?;
        let breaker = Breaker::new(std_stream.try_clone().map_err(connect_err)?);
        let stream = TcpStream::from_std(std_stream).map_err(connect_err)?;
        let opening = Opening {
            ds,
            addr: &addr,
            url,
            flavor,
            limits,
            tls: tls.as_ref(),
            breaker,
        };
        tokio::time::timeout(limits.connect, opening.login(stream))
            .await
            .map_err(|_| connect_err(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
    }

    /// A connection whose handshake response just went out.
    pub(super) fn new(
        ds: Arc<str>,
        flavor: Flavor,
        reader: PacketReader<ReadHalf>,
        writer: PacketWriter<WriteHalf>,
        database: &str,
        breaker: Arc<Breaker>,
    ) -> Self {
        BackendConn {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            ds,
            flavor,
            thread_id: 0,
            reader,
            writer,
            physical_db: Arc::from(database),
            applied_state: 0,
            statements: HashMap::default(),
            use_counter: 0,
            status: 0,
            open_work: false,
            effect: Effect::None,
            committed: false,
            broken: false,
            last_used: Instant::now(),
            cache_metadata: false,
            result_columns: HashMap::default(),
            breaker,
        }
    }

    /// Answers the server's challenge until it accepts the login (OK) or
    /// refuses it; the handshake response went out already.
    pub(super) async fn authenticate(&mut self, url: &BackendUrl) -> Result<(), ConnError> {
        loop {
            let (seq, reply) = self.read().await?;
            match reply.first() {
                Some(0x00) => {
                    self.status = OkInfo::parse(&reply).map(|ok| ok.status).unwrap_or(0);
                    return Ok(());
                }
                Some(0xFE) => {
                    // Auth switch: plugin name NUL, then the new nonce.
                    let body = &reply[1..];
                    let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    if &body[..name_end] != b"mysql_native_password" {
                        return Err(self.protocol(format!(
                            "data source asks for auth plugin '{}'; only mysql_native_password is supported for backend logins",
                            String::from_utf8_lossy(&body[..name_end])
                        )));
                    }
                    let nonce = body.get(name_end + 1..).unwrap_or(&[]);
                    let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
                    let answer = scramble_native(nonce, url.password.as_bytes());
                    self.writer.set_seq(seq.wrapping_add(1));
                    self.writer
                        .push(answer.as_ref().map(|a| &a[..]).unwrap_or(&[]));
                    self.flush().await?;
                }
                Some(0xFF) => return Err(login_error(&self.ds, &reply)),
                _ => return Err(self.protocol("unexpected packet during login".into())),
            }
        }
    }

    /// The server's error reply to a command, as the connection's error.
    pub(super) fn server_reply(&self, err: ErrInfo) -> ConnError {
        ConnError::Server {
            ds: self.ds.to_string(),
            err: err.into(),
        }
    }

    pub(super) fn protocol(&self, what: String) -> ConnError {
        ConnError::Protocol {
            ds: self.ds.to_string(),
            what,
        }
    }

    /// The next packet; a connection that fails to give it is broken.
    pub(super) async fn read(&mut self) -> Result<(u8, bytes::BytesMut), ConnError> {
        match self.reader.read_packet(NO_LIMIT).await {
            Ok(p) => Ok(p),
            Err(e) => {
                self.broken = true;
                Err(ConnError::lost(&self.ds, e))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if let Err(e) = self.writer.flush().await {
            self.broken = true;
            return Err(ConnError::lost(&self.ds, e));
        }
        Ok(())
    }

    /// Sends one command packet (sequence 0). The reply is the caller's to read.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        self.last_used = Instant::now();
        self.effect = transaction_effect(payload);
        if self.effect == Effect::MayOpen && self.status & status::AUTOCOMMIT == 0 {
            self.open_work = true;
        }
        self.writer.set_seq(0);
        self.writer.push(payload);
        self.flush().await
    }

    /// Sends one command packet (sequence 0): `command`, then the client's
    /// bytes of a node's statement. A long statement is written out as
    /// its pieces are framed ([`PacketWriter::begin_long`]), never built
    /// whole: a statement spliced for many tables (a data source's UNION
    /// of 16 tables repeats the client's text 16 times) would otherwise
    /// take that many copies, twice, in memory at once (issue 15). A short
    /// one is built, as any command is.
    pub async fn send_node_command(
        &mut self,
        command: u8,
        sql: &NodeSql<'_>,
    ) -> Result<(), ConnError> {
        let len = sql.byte_len();
        if len < STREAM_NODE_SQL_AT {
            return self.send_command(&sql.command(command)).await;
        }
        // The transaction effect, from the statement's start: an effect
        // that reads past the first word (ROLLBACK ... TO, SET ...
        // SELECT), or a first word the start does not hold whole, is
        // decided on the statement built whole, as a short one's.
        // The start: the statement's first bytes over its first pieces
        // (a UNION's first piece is its "(").
        let mut head = Vec::with_capacity(EFFECT_HEAD + 1);
        head.push(command);
        for chunk in sql.byte_chunks(EFFECT_HEAD) {
            let room = EFFECT_HEAD + 1 - head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if head.len() > EFFECT_HEAD {
                break;
            }
        }
        let Some(effect) = effect_from_start(&head) else {
            return self.send_command(&sql.command(command)).await;
        };
        drop(head);
        self.last_used = Instant::now();
        self.effect = effect;
        if self.effect == Effect::MayOpen && self.status & status::AUTOCOMMIT == 0 {
            self.open_work = true;
        }
        self.writer.set_seq(0);
        let mut payload = self.writer.begin_long(len.saturating_add(1));
        let mut chunks = sql.byte_chunks(STREAM_CHUNK);
        let mut queued = self.writer.queue_part(&mut payload, &[command]);
        while queued.is_ok() {
            // A chunk is queued (copied) before the write: none is held
            // across an await.
            match chunks.next() {
                Some(chunk) => queued = self.writer.queue_part(&mut payload, &chunk),
                None => break,
            }
            if queued.is_ok() {
                queued = self.writer.write_if_full().await;
            }
        }
        let sent = match queued {
            Ok(()) => self.writer.end_long(payload).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            self.broken = true;
            return Err(ConnError::lost(&self.ds, e));
        }
        Ok(())
    }

    /// Queues a node's statement's command as [`queue_command`] does when
    /// it is short; a long one is written out now, streamed as
    /// [`send_node_command`] does (its reply is still the caller's to
    /// read before the next command's).
    ///
    /// [`queue_command`]: BackendConn::queue_command
    /// [`send_node_command`]: BackendConn::send_node_command
    pub async fn queue_node_command(
        &mut self,
        command: u8,
        sql: &NodeSql<'_>,
    ) -> Result<(), ConnError> {
        if sql.byte_len() < STREAM_NODE_SQL_AT {
            self.queue_command(&sql.command(command));
            Ok(())
        } else {
            self.send_node_command(command, sql).await
        }
    }

    /// Queues a command to go out with the next `send_command`, in the same
    /// write: one that gets no reply (COM_STMT_CLOSE, SEND_LONG_DATA), or
    /// one whose reply the caller reads before the next command's.
    pub fn queue_command(&mut self, payload: &[u8]) {
        self.writer.set_seq(0);
        self.writer.push(payload);
    }

    /// Reads a whole reply, keeping nothing but its outcome.
    pub async fn read_outcome(&mut self, kind: ResponseKind) -> Result<Outcome, ConnError> {
        let mut scanner = self.scanner(kind);
        loop {
            let (_, payload) = self.read().await?;
            if let Step::Done(outcome) = scanner.feed(&payload) {
                self.note_outcome(&outcome);
                return Ok(outcome);
            }
        }
    }

    /// A scanner for a reply on this connection.
    pub fn scanner(&self, kind: ResponseKind) -> ResponseScanner {
        ResponseScanner::new(kind, self.flavor.deprecate_eof())
            .with_metadata_flag(self.cache_metadata)
    }

    /// The column definitions statement `id`'s result last came with.
    pub fn result_columns(&self, id: u32) -> Option<ResultColumns> {
        self.result_columns.get(&id).cloned()
    }

    /// Keeps the column definitions statement `id`'s result came with.
    pub fn keep_result_columns(&mut self, id: u32, columns: ResultColumns) {
        self.result_columns.insert(id, columns);
    }

    /// Reads the reply to a COM_STMT_PREPARE, keeping its column
    /// definitions for executes the server answers without them.
    pub async fn read_prepare_outcome(&mut self) -> Result<Outcome, ConnError> {
        let mut scanner = self.scanner(ResponseKind::Prepare);
        let mut columns = KeptColumns::for_prepare(self);
        let mut first = true;
        loop {
            let (_, payload) = self.read().await?;
            if first {
                first = false;
                if let Some(ok) = PrepareOk::parse(&payload) {
                    columns.prepared(&ok);
                }
            } else if scanner.expects_column_definition() {
                columns.arrived(&payload);
            }
            if let Step::Done(outcome) = scanner.feed(&payload) {
                columns.store(self);
                self.note_outcome(&outcome);
                return Ok(outcome);
            }
        }
    }

    /// Records the status flags a finished reply left.
    pub fn note_outcome(&mut self, outcome: &Outcome) {
        if let Some(status) = outcome.status() {
            let was = self.in_transaction();
            self.status = status;
            let ends = matches!(self.effect, Effect::Commits | Effect::RollsBack);
            if ends || status & status::AUTOCOMMIT != 0 {
                self.open_work = false;
            }
            if was && !self.in_transaction() && self.effect != Effect::RollsBack {
                self.committed = true;
            }
        }
        self.effect = Effect::None;
    }

    /// Whether a transaction committed here since the last call: its
    /// writes must count for read-your-writes, whatever statement ended it.
    pub fn take_committed(&mut self) -> bool {
        std::mem::take(&mut self.committed)
    }

    /// Whether the connection may be inside a transaction: an explicit one,
    /// or the implicit one statements open while autocommit is off.
    pub fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0 || self.open_work
    }

    /// Runs a statement whose result the client never sees; a server error is returned as such.
    pub async fn execute_internal(&mut self, sql: &str) -> Result<OkInfo, ConnError> {
        self.execute_statement(sql.as_bytes()).await
    }

    /// [`execute_internal`](Self::execute_internal) for a statement's bytes
    /// (a client's, in its character set).
    pub async fn execute_statement(&mut self, sql: &[u8]) -> Result<OkInfo, ConnError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql);
        self.send_command(&payload).await?;
        self.read_ok().await
    }

    /// Reads the reply of a statement that answers OK (or an error).
    pub async fn read_ok(&mut self) -> Result<OkInfo, ConnError> {
        match self.read_outcome(ResponseKind::ResultSets).await? {
            Outcome::Ok(ok) => Ok(ok),
            Outcome::Err(err) => Err(self.server_reply(err)),
            Outcome::Prepared(_) => Err(self.protocol("prepare reply to a query".into())),
        }
    }

    /// Runs a query and returns its rows as text (NULL as None). For small
    /// internal queries only: everything is held in memory.
    pub async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        Ok(self.query_text_with_names(sql).await?.rows)
    }

    /// Like [`query_text`](Self::query_text), with each column's
    /// definition.
    pub async fn query_text_defined(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<ColumnInfo>, Vec<Vec<Option<String>>>), ConnError> {
        let result = self.query_text_with_names(sql).await?;
        let columns = result
            .definitions
            .iter()
            .map(|d| ColumnInfo::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.protocol(format!("bad column definition: {e}")))?;
        Ok((columns, result.rows))
    }

    /// [`query_text`](Self::query_text) of a statement's bytes (a
    /// client's text, in its character set).
    pub async fn query_text_bytes(
        &mut self,
        sql: &[u8],
    ) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        Ok(self.query_payload(sql).await?.rows)
    }

    /// Like [`query_text`](Self::query_text), each row keyed by column name
    /// (`SHOW SLAVE STATUS` has dozens of columns, in an order that differs
    /// between versions).
    pub async fn query_text_named(
        &mut self,
        sql: &str,
    ) -> Result<Vec<HashMap<String, Option<String>>>, ConnError> {
        let TextRows { definitions, rows } = self.query_text_with_names(sql).await?;
        let names = definitions
            .iter()
            .map(|d| ColumnInfo::name_of(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.protocol(format!("bad column definition: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|row| names.iter().cloned().zip(row).collect())
            .collect())
    }

    async fn query_text_with_names(&mut self, sql: &str) -> Result<TextRows, ConnError> {
        self.query_payload(sql.as_bytes()).await
    }

    async fn query_payload(&mut self, sql: &[u8]) -> Result<TextRows, ConnError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql);
        self.send_command(&payload).await?;
        let deprecate_eof = self.flavor.deprecate_eof();
        let mut scanner = self.scanner(ResponseKind::ResultSets);
        let mut rows = Vec::new();
        let mut definitions = Vec::new();
        let mut columns: Option<u64> = None;
        let mut defs_seen = 0u64;
        let mut in_rows = false;
        loop {
            let (_, payload) = self.read().await?;
            let step = scanner.feed(&payload);
            match columns {
                None => {
                    let mut rest = &payload[..];
                    columns = take_lenenc_int(&mut rest);
                    // A text result always comes with its definitions.
                    if self.cache_metadata && step == Step::More && rest.first() == Some(&0) {
                        self.broken = true;
                        return Err(self
                            .protocol("a query's result came without column definitions".into()));
                    }
                }
                Some(n) if !in_rows => {
                    defs_seen += 1;
                    if defs_seen <= n {
                        // Parsed by whoever needs them: most callers want
                        // the rows only, or the names.
                        definitions.push(payload);
                    }
                    in_rows = if deprecate_eof {
                        defs_seen == n
                    } else {
                        defs_seen > n
                    };
                }
                Some(n) => {
                    if step == Step::More {
                        rows.push(decode_text_row(&payload, n));
                    }
                }
            }
            if let Step::Done(outcome) = step {
                self.note_outcome(&outcome);
                return match outcome {
                    Outcome::Err(err) => Err(self.server_reply(err)),
                    _ => Ok(TextRows { definitions, rows }),
                };
            }
        }
    }

    /// COM_RESET_CONNECTION: rolls back, drops temporary tables, releases
    /// locks, clears variables and prepared statements; then re-selects the
    /// physical database.
    pub async fn reset(&mut self) -> Result<(), ConnError> {
        self.send_command(&[COM_RESET_CONNECTION]).await?;
        self.expect_ok().await?;
        self.statements.clear();
        self.result_columns.clear();
        self.applied_state = 0;
        let mut init = vec![COM_INIT_DB];
        init.extend_from_slice(self.physical_db.as_bytes());
        self.send_command(&init).await?;
        self.expect_ok().await
    }

    async fn expect_ok(&mut self) -> Result<(), ConnError> {
        match self.read_outcome(ResponseKind::Single).await? {
            Outcome::Ok(_) => Ok(()),
            Outcome::Err(err) => Err(self.server_reply(err)),
            Outcome::Prepared(_) => Err(self.protocol("prepare reply to a reset".into())),
        }
    }

    /// The statement prepared here for `sql`, if any.
    pub fn statement(&mut self, sql: &[u8]) -> Option<BackendStatement> {
        self.use_counter += 1;
        let counter = self.use_counter;
        self.statements.get_mut(sql).map(|s| {
            s.last_used = counter;
            *s
        })
    }

    /// Records a statement prepared here; closes the least recently used one
    /// when the cache is full (the close goes out with the next command).
    pub fn remember_statement(&mut self, sql: Arc<[u8]>, id: u32, num_params: u16) {
        if self.statements.len() >= STATEMENT_CACHE {
            let oldest = self
                .statements
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, s)| (k.clone(), s.id));
            if let Some((key, old_id)) = oldest {
                self.statements.remove(&key);
                self.result_columns.remove(&old_id);
                let mut close = vec![COM_STMT_CLOSE];
                close.extend_from_slice(&old_id.to_le_bytes());
                self.queue_command(&close);
            }
        }
        self.use_counter += 1;
        if let Some(previous) = self.statements.insert(
            sql,
            BackendStatement {
                id,
                num_params,
                last_used: self.use_counter,
            },
        ) {
            self.result_columns.remove(&previous.id);
            let mut close = vec![COM_STMT_CLOSE];
            close.extend_from_slice(&previous.id.to_le_bytes());
            self.queue_command(&close);
        }
    }
}

/// What the core's pools need of a MariaDB connection.
impl Connection for BackendConn {
    type Flavor = Flavor;
    type Position = Position;

    fn internal_flavor() -> Flavor {
        Flavor::internal()
    }

    async fn connect(
        ds: Arc<str>,
        url: &BackendUrl,
        flavor: Flavor,
        limits: ConnLimits,
    ) -> Result<Self, ConnError> {
        BackendConn::connect(ds, url, flavor, limits).await
    }

    fn breaker(&self) -> Option<&Arc<Breaker>> {
        Some(&self.breaker)
    }

    /// `SELECT 1` rather than COM_PING: it proves the server runs statements.
    async fn ping(&mut self) -> Result<(), ConnError> {
        self.query_text("SELECT 1").await.map(|_| ())
    }

    fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn applied_state(&self) -> u64 {
        self.applied_state
    }

    fn set_applied_state(&mut self, state: u64) {
        self.applied_state = state;
    }

    /// COM_RESET_CONNECTION, then the connection's database again.
    async fn reset(&mut self) -> Result<(), ConnError> {
        BackendConn::reset(self).await
    }

    fn last_used(&self) -> Instant {
        self.last_used
    }

    fn in_transaction(&self) -> bool {
        BackendConn::in_transaction(self)
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn take_committed(&mut self) -> bool {
        BackendConn::take_committed(self)
    }

    fn mark_broken(&mut self) {
        self.broken = true;
    }
}

/// A data source's refusal of the login, as the connection's error.
pub(super) fn login_error(ds: &str, payload: &[u8]) -> ConnError {
    ConnError::Login {
        ds: ds.to_string(),
        err: ErrInfo::parse(payload)
            .unwrap_or_else(|| {
                ErrInfo::new(codes::ER_ACCESS_DENIED_ERROR, "28000", "login refused")
            })
            .into(),
    }
}

/// What a command does to the connection's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// COMMIT.
    Commits,
    /// ROLLBACK (not to a savepoint), COM_RESET_CONNECTION.
    RollsBack,
    /// Touches no table: SET without a subquery, COM_PING, prepare, ...
    None,
    /// Anything else: with autocommit off it may open a transaction.
    MayOpen,
}

/// [`transaction_effect`] of a payload given its start `head` (the
/// command byte and the statement's first bytes), when the start decides
/// it: the statement's first word whole in it, and neither ROLLBACK nor
/// SET (whose effect depends on the rest).
fn effect_from_start(head: &[u8]) -> Option<Effect> {
    use shardgate_sql::label::first_word;
    let sql = head.get(1..)?;
    let word = first_word(sql);
    if word.is_empty() {
        return None;
    }
    // A word found is a part of `sql`: where it ends in it.
    let word_end = (word.as_ptr() as usize).wrapping_sub(sql.as_ptr() as usize) + word.len();
    let decided = word_end < sql.len()
        && !word.eq_ignore_ascii_case(b"rollback")
        && !word.eq_ignore_ascii_case(b"set");
    decided.then(|| transaction_effect(head))
}

fn transaction_effect(payload: &[u8]) -> Effect {
    use shardgate_sql::label::first_word;
    match payload.first() {
        Some(&COM_QUERY) => {
            let sql = &payload[1..];
            let word = first_word(sql);
            if word.eq_ignore_ascii_case(b"commit") {
                Effect::Commits
            } else if word.eq_ignore_ascii_case(b"rollback") {
                let to = sql
                    .split(|b| !b.is_ascii_alphabetic())
                    .any(|w| w.eq_ignore_ascii_case(b"to"));
                if to {
                    Effect::MayOpen
                } else {
                    Effect::RollsBack
                }
            } else if word.eq_ignore_ascii_case(b"set")
                && !sql.windows(6).any(|w| w.eq_ignore_ascii_case(b"select"))
            {
                Effect::None
            } else {
                Effect::MayOpen
            }
        }
        Some(&COM_RESET_CONNECTION) => Effect::RollsBack,
        Some(&(COM_STMT_EXECUTE | COM_FIELD_LIST)) => Effect::MayOpen,
        _ => Effect::None,
    }
}

/// The column definitions (unparsed) and the text rows of a small
/// internal query.
struct TextRows {
    definitions: Vec<bytes::BytesMut>,
    rows: Vec<Vec<Option<String>>>,
}

fn decode_text_row(payload: &[u8], columns: u64) -> Vec<Option<String>> {
    let mut rest = payload;
    let mut row = Vec::with_capacity(columns as usize);
    for _ in 0..columns {
        if rest.first() == Some(&0xFB) {
            rest = &rest[1..];
            row.push(None);
            continue;
        }
        let len = take_lenenc_int(&mut rest).unwrap_or(0) as usize;
        let (value, tail) = rest.split_at(len.min(rest.len()));
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = tail;
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_rules::config::BackendUrl;
    use tokio::net::TcpListener;

    /// `connect_timeout_ms` bounds the whole opening: a server that takes
    /// the connection and never greets fails it in that time, with an
    /// error naming the data source.
    #[tokio::test]
    async fn a_server_that_never_greets_fails_the_connect_in_its_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let port = listener.local_addr().expect("address").port();
        // Takes connections and says nothing; keeps them open.
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let url = BackendUrl::parse(&format!("mysql://root@127.0.0.1:{port}/ds9")).expect("url");
        let limits = ConnLimits {
            connect: std::time::Duration::from_millis(300),
            silence: None,
        };
        // A guard against a hang, far above the limit: not a timing.
        let connect = BackendConn::connect(Arc::from("ds9"), &url, Flavor::internal(), limits);
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), connect)
            .await
            .expect("the connect ends")
            .err()
            .expect("no greeting, no connection");
        silent.abort();
        assert!(
            matches!(&err, ConnError::Connect { ds, source, .. } if ds == "ds9" && source.kind() == std::io::ErrorKind::TimedOut),
            "{err:?}"
        );
        assert!(err.to_string().contains("data source ds9"), "{err}");
    }
}
