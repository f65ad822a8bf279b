//! One client session: the command loop, the session state the proxy keeps
//! for the client, and how a backend connection is taken for a statement,
//! brought to the session's state, held across a transaction and given back.

mod admin;
mod auth;
pub use auth::Front;
mod authenticate;
mod change_user;
mod definitions;
mod forward;
mod long_data;
mod pausing;
mod prepared;
mod reads;
mod sharded;
mod state;
mod syntax;
mod user_vars;

use std::borrow::Cow;
use std::sync::Arc;

use mysql_common::constants::CapabilityFlags;
use shardgate_core::execute::merge::MergeFailure;
use shardgate_core::net::{ReadHalf, WriteHalf};
use shardgate_core::replica::session_reads::SessionReads;
use shardgate_core::session_conns::SessionConns;
use shardgate_core::transaction::OpenTransaction;
use tokio::net::TcpStream;
use tracing::{debug, info_span, warn, Instrument};

use crate::backend::conn::BackendStatement;
use crate::backend::ConnError;
use crate::backend::LogicalDatabase;
use crate::backend::{BackendConn, Flavor, Holder, PooledConn};
use crate::backend::{Proxy, Shared};
use crate::command::*;
use crate::errors::ToClient;
use crate::ok_err::{encode_eof, status, OkInfo};
use crate::packet::{PacketReader, PacketWriter, ReadError};
use crate::params::decode_params;
use crate::response::{Outcome, ResponseKind, StatusFix};
use crate::row::RowFormat;
use crate::stmt::{retarget_execute, set_statement_id, statement_id, ExecuteError};
use forward::{forward_reply, Answer, ForwardError};
use long_data::{parameter_values, LongData};
use prepared::{Executing, PreparedStatement, ShardedPrepared, Statements};
use shardgate_core::access::UserAccess;
use shardgate_core::admission::{Admission, HostLimit, UserSlot};
use shardgate_core::error::{rolls_back_transaction, BackendError, ErrorKind, ProxyError};
use shardgate_core::idle::IdleDeadline;
use shardgate_core::log_limit::LogLimit;
use shardgate_core::metrics;
use shardgate_core::pause::Gate;
use shardgate_core::session_vars::SessionVars;
use shardgate_core::sessions::Registration;
use shardgate_sql::admin::{may_be_admin, parse as parse_admin, AdminSqlError, AdminStatement};
use shardgate_sql::classify::{
    classify_lexed, with_logical_database, Assignment, Classified, Kind,
};
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::label::statement_label;
use shardgate_sql::lex::{TokenList, Tokens};
use shardgate_sql::reads::writes_lexed;
use shardgate_sql::shard::analyze::{Analysis, AnalyzeError, ShardedStatement};
use shardgate_sql::shard::labels::{analyze_labelled, analyze_labelled_lexed};
use shardgate_sql::shard::node_sql::NodeSql;
use shardgate_sql::shard::plan::{check_supported, prepare_target, single_node, PlanContext};
use shardgate_sql::statements::{self, Piece};
use shardgate_sql::text::{analysis_text, restore, value_text, ClientCharset};
use state::literal_from_read_back;
use std::net::IpAddr;

/// Serves one client connection until it quits or goes away; it is
/// greeted as `front` says.
pub async fn serve(proxy: Arc<Proxy>, front: Arc<Front>, stream: TcpStream) {
    let connection_id = proxy.next_connection_id();
    let shared = proxy.current();
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let peer_ip = peer.map_or_else(|| "unknown".into(), |ip| ip.to_string());
    let _ = stream.set_nodelay(true);
    let span = info_span!("session", id = connection_id, peer = %peer_ip);
    async move {
        let login = auth::login(
            &shared,
            proxy.admission(),
            &front,
            connection_id,
            &peer_ip,
            stream,
        );
        let connect_timeout =
            std::time::Duration::from_millis(shared.config.server.connect_timeout_ms);
        let logged_in = match tokio::time::timeout(connect_timeout, login).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                failed_login(&shared, proxy.admission(), peer, &e);
                return;
            }
            Err(_) => {
                shared.metrics.failed_login("aborted");
                debug!("no login within server.connect_timeout_ms = {connect_timeout:?}; closing");
                return;
            }
        };
        debug!(user = %logged_in.hello.user, "logged in");
        if let Some(ip) = peer {
            proxy.admission().login_succeeded(ip);
        }
        let auth::LoggedIn {
            hello,
            database: db,
            user_slot,
            reader,
            writer,
            challenge,
            secure,
            access,
        } = logged_in;
        let registration = proxy
            .sessions()
            .register(connection_id, &hello.user, shared.version);
        let wait_timeout = std::time::Duration::from_millis(shared.config.server.wait_timeout_ms);
        let mut session = Session {
            flavor: Flavor::for_client(hello.capabilities, hello.collation),
            charset: crate::handshake::client_charset(hello.collation),
            capabilities: hello.capabilities,
            db,
            database: hello.database,
            shared,
            proxy,
            reader,
            writer,
            vars: SessionVars::new(&MARIADB),
            statements: Statements::default(),
            conns: SessionConns::default(),
            holder: Holder::new(),
            statement_metrics: metrics::SessionMetrics::new(hello.user.clone()),
            reads: SessionReads::default(),
            current: CommandState::default(),
            last_insert: None,
            status: status::AUTOCOMMIT,
            registration,
            admitted: Gate::default(),
            wrote: false,
            wait_timeout,
            access,
            _user_slot: user_slot,
            front,
            challenge,
            secure,
            peer,
        };
        session.run().await;
        session.close().await;
    }
    .instrument(span)
    .await
}

/// Wrong passwords are logged at WARN, at most once every 10 s.
static ACCESS_DENIED_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(10));

/// Host blocks are logged at WARN, at most once every 10 s.
static HOST_BLOCK_LOG: LogLimit = LogLimit::new(std::time::Duration::from_secs(10));

/// Counts a login that failed, and logs it: a wrong user or password at
/// WARN (rate-limited: a client can cause any number), others at debug.
/// Wrong passwords and malformed handshakes count towards blocking the
/// host; a client that goes away does not (a load balancer's TCP health
/// check would block it, as MariaDB's `max_connect_errors` notoriously
/// does), nor one that names an unknown database or is over its user's limit.
fn failed_login(
    shared: &Shared,
    admission: &Admission,
    peer: Option<IpAddr>,
    e: &auth::LoginError,
) {
    // Its metric's reason, and whether it counts towards blocking the host.
    let (reason, against_host) = match e {
        auth::LoginError::Refused(err) => match err.kind {
            ErrorKind::AccessDenied => ("access_denied", true),
            ErrorKind::BadHandshake => ("refused", true),
            ErrorKind::TooManyUserConnections => ("user_limit", false),
            // Not a guess at a password: a client that will try with TLS
            // from the same host must not find it blocked.
            ErrorKind::InsecureTransport => ("insecure_transport", false),
            _ => ("refused", false),
        },
        auth::LoginError::Gone(ReadError::TooLarge { .. }) => ("refused", true),
        auth::LoginError::Tls(_) => ("tls", true),
        auth::LoginError::Gone(_) | auth::LoginError::Io(_) => ("aborted", false),
    };
    shared.metrics.failed_login(reason);
    if let (Some(ip), true) = (peer, against_host) {
        let server = &shared.config.server;
        let limit = HostLimit {
            max_failures: server.max_connect_errors,
            block: std::time::Duration::from_millis(server.host_block_ms),
        };
        if admission.login_failed(ip, limit, std::time::Instant::now()) {
            if let Some(held_back) = HOST_BLOCK_LOG.allow() {
                warn!(
                    host = %ip,
                    held_back,
                    "{} failed logins in a row: host refused (1129) for server.host_block_ms = {} ms",
                    limit.max_failures, server.host_block_ms
                );
            }
        }
    }
    if reason != "access_denied" {
        debug!("login failed: {e}");
        return;
    }
    if let Some(held_back) = ACCESS_DENIED_LOG.allow() {
        warn!(
            held_back,
            "login failed: {e} (shardgate_failed_logins_total counts them all)"
        );
    }
}

/// How many times a statement goes back to the pause gate (a new pause
/// began while it was being analysed) before it is refused.
const MAX_REQUEUES: usize = 3;

/// The last insert id a statement produced, and on which backend connection.
#[derive(Debug, Clone, Copy)]
struct LastInsert {
    id: u64,
    conn_uid: u64,
}

struct Session {
    /// The configuration version this session uses now.
    shared: Arc<Shared>,
    /// The logical database its statements name (the first one when the
    /// client selected none), of that version.
    db: Arc<LogicalDatabase>,
    proxy: Arc<Proxy>,
    reader: PacketReader<ReadHalf>,
    writer: PacketWriter<WriteHalf>,
    capabilities: CapabilityFlags,
    flavor: Flavor,
    /// The character set the client writes statements in
    /// (`character_set_client`): their bytes are passed on as they are,
    /// values are read in it (see `sql::text`).
    charset: ClientCharset,
    database: Option<String>,
    vars: SessionVars,
    statements: Statements,
    /// Backend connections kept between statements, at most one per data
    /// source (in a transaction, pinned, or held for the next statement),
    /// and the client's transaction across data sources.
    conns: SessionConns<BackendConn>,
    /// The pools this session holds connections of, for deadlock detection.
    holder: Arc<Holder>,
    /// The statements' counters (by the login user).
    statement_metrics: metrics::SessionMetrics,
    /// Where reads go, and what the session wrote (read-your-writes).
    reads: SessionReads<BackendConn>,
    /// What the command being run did so far.
    current: CommandState,
    last_insert: Option<LastInsert>,
    /// Server status flags after the last statement.
    status: u16,
    /// Where the session publishes its state (`GET /api/sessions`, the
    /// in-flight transactions of paused tables).
    registration: Registration,
    /// The pause gate the current statement passed under.
    admitted: Gate,
    /// Writes to logical tables are recorded for the open transaction (or
    /// the running statement).
    wrote: bool,
    /// How long it may wait for its next command before it is closed.
    wait_timeout: std::time::Duration,
    /// What its user may do, as at login (see `core::access`).
    access: UserAccess,
    /// Its place among its user's sessions (`server.max_user_connections`).
    _user_slot: UserSlot,
    /// What the listener's logins share (COM_CHANGE_USER is one).
    front: Arc<Front>,
    /// The challenge of the connection's greeting, which COM_CHANGE_USER
    /// answers too.
    challenge: [u8; 20],
    /// Whether the client connected over TLS.
    secure: bool,
    peer: Option<IpAddr>,
}

/// What the command being run did so far.
#[derive(Default)]
struct CommandState {
    /// Whether the reply to the command carries an error.
    reply_failed: bool,
    /// The metric label of the command's statement.
    statement_label: Option<&'static str>,
    /// The prepared statement the command executes, looked up once.
    executing: Option<Executing>,
    /// More statements of the client's multi-statement string follow the
    /// current one: its reply ends with SERVER_MORE_RESULTS_EXISTS.
    more_results: bool,
    /// User variables the current statement assigns (`SELECT ... INTO @v`,
    /// `@v := ...`, `SET @v = expression`), read back from the connection
    /// that ran it so that every later statement sees them.
    read_back_vars: Vec<String>,
    /// A data source answered the command with a deadlock (1213), having
    /// rolled back the session's transaction there.
    deadlocked: bool,
}

/// How a command went, as far as the loop is concerned.
enum Flow {
    Continue,
    Quit,
}

/// A command that failed: either the client is gone, or it gets an error.
enum Failure {
    ClientGone,
    Reply(ProxyError),
    /// The connection to one backend server (`server`: its pool's name)
    /// failed during the command; the client gets `err` unless the command
    /// is a read that can be retried elsewhere (see `reads.rs`).
    Lost {
        server: String,
        err: ProxyError,
    },
    /// A pause that began after the statement passed the pause gate holds a
    /// table it writes; nothing of it ran: it goes back to the gate.
    Requeue,
    /// The analysis could not parse a statement on sharded tables: its
    /// refusal, which stands unless MariaDB finds a syntax error in it
    /// (`Session::unparsable`, see `syntax.rs`).
    Unparsable(ProxyError),
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        match &e {
            BackendError::Conn(ConnError::Lost { ds, .. }) => Failure::Lost {
                server: ds.clone(),
                err: e.into(),
            },
            _ => Failure::Reply(e.into()),
        }
    }
}

impl From<MergeFailure> for Failure {
    fn from(e: MergeFailure) -> Self {
        match e {
            MergeFailure::Node(e) => e.into(),
            MergeFailure::Lost { data_source, err } => Failure::Lost {
                server: data_source,
                err,
            },
            MergeFailure::Reply(err) => Failure::Reply(err),
            MergeFailure::ClientGone => Failure::ClientGone,
        }
    }
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Reply(e)
    }
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        BackendError::from(e).into()
    }
}

impl From<ForwardError> for Failure {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::Client(_) => Failure::ClientGone,
            ForwardError::Backend(b) => b.into(),
        }
    }
}

type CommandResult = Result<Flow, Failure>;

impl Session {
    async fn run(&mut self) {
        let limit = self.shared.config.server.max_allowed_packet;
        let mut idle = IdleDeadline::new(self.wait_timeout);
        loop {
            idle.follow(self.wait_timeout);
            let Some(read) = idle.within(self.reader.read_packet(limit)).await else {
                // As MariaDB: closed without a word, its transaction rolled back.
                debug!(wait_timeout = ?self.wait_timeout, "no command within wait_timeout; closing");
                self.shared.metrics.idle_session_closed();
                return;
            };
            let (seq, payload) = match read {
                Ok(p) => p,
                Err(ReadError::TooLarge { limit, seq }) => {
                    self.writer.set_seq(seq.wrapping_add(1));
                    let err = ProxyError::new(
                        ErrorKind::PacketTooLarge,
                        format!(
                            "Got a packet bigger than 'max_allowed_packet' bytes ({limit}); \
                             raise server.max_allowed_packet in the ShardGate config to send more"
                        ),
                    );
                    self.writer.push(&err.to_client().encode());
                    if self.writer.flush().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            self.writer.set_seq(seq.wrapping_add(1));
            let command = Command::decode(&payload);
            let started = std::time::Instant::now();
            self.current.executing = match command.kind {
                CommandKind::Execute(id) => id.and_then(|id| self.statements.executing(id)),
                _ => None,
            };
            let label = self.statement_label(&command);
            self.current.statement_label = label;
            let mut flow = Err(Failure::Requeue);
            for _ in 0..MAX_REQUEUES {
                flow = self.admit_and_dispatch(&command).await;
                if !matches!(flow, Err(Failure::Requeue)) {
                    break;
                }
            }
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) | Err(Failure::ClientGone) => return,
                Err(Failure::Reply(err) | Failure::Lost { err, .. } | Failure::Unparsable(err)) => {
                    let reply = err.to_client();
                    debug!(code = reply.code, "statement failed: {}", err.message);
                    self.shared.metrics.error(err.metric_label());
                    self.current.reply_failed = true;
                    self.current.deadlocked |= err.rolled_back_transaction();
                    self.writer.push(&reply.encode());
                }
                Err(Failure::Requeue) => {
                    let err = ProxyError::new(
                        ErrorKind::PausedTooLong,
                        "new pauses for a resharding cutover kept holding this statement back; retry the statement",
                    );
                    self.shared.metrics.error(err.metric_label());
                    self.current.reply_failed = true;
                    self.writer.push(&err.to_client().encode());
                }
            }
            if self.current.deadlocked {
                self.roll_back_after_deadlock().await;
            }
            self.forget_ended_writes();
            self.registration
                .command_ended(self.in_transaction(), !self.follows_versions());
            if self.writer.flush().await.is_err() {
                return;
            }
            let took = started.elapsed();
            idle.command_ended(started + took);
            self.observe_replicas(took);
            if let Some(label) = label {
                self.count_statement(label, took);
            }
        }
    }

    /// One attempt at a command: the pause gate, the move to the current
    /// configuration version, then the command itself.
    async fn admit_and_dispatch(&mut self, command: &Command<'_>) -> CommandResult {
        let admitted = self.wait_while_paused(command).await;
        let behind = !self.follow_reload();
        self.registration.command_started(self.shared.version);
        if let Err(refused) = admitted {
            return Err(Failure::Reply(refused));
        }
        if behind {
            self.refuse_re_ruled_tables(command)?;
        }
        self.current.reply_failed = false;
        if let CommandKind::Query(sql) = command.kind {
            // Each statement of the query decides where it reads.
            return self.query(sql).await;
        }
        self.decide_read_intent(command);
        self.resolve_pending_writes().await;
        // A read whose replica connection broke before the client got
        // any of the reply runs once more, elsewhere (see `reads.rs`).
        let retry_from = self.read_retry_point(command);
        let flow = self.dispatch(command).await;
        if let (Some(mark), Err(Failure::Lost { server, .. })) = (retry_from, &flow) {
            let server = server.clone();
            if self.retry_read_elsewhere(&server, mark) {
                return self.dispatch(command).await;
            }
        }
        flow
    }

    /// Whether the session may move to another configuration version now:
    /// no transaction, no held connection.
    fn follows_versions(&self) -> bool {
        self.conns.is_idle()
    }

    /// Moves to the current configuration version after a reload, between
    /// transactions: a transaction (or a pinned connection) finishes on the
    /// version it started with. False when the session stays behind.
    fn follow_reload(&mut self) -> bool {
        if self.shared.version == self.proxy.version() {
            return true;
        }
        if !self.follows_versions() {
            return false;
        }
        self.shared = self.proxy.current();
        // The access of the login stands: with no database left that it
        // allows (a reload removed them), the session keeps the one it has.
        if let Some(db) = self
            .database
            .as_deref()
            .and_then(|name| self.shared.database(name))
            .cloned()
            .or_else(|| auth::first_allowed(&self.shared, &self.access))
        {
            self.db = db;
        }
        // Analyses made under the old rules may be wrong under the new.
        self.statements.forget_analyses();
        debug!(
            version = self.shared.version,
            "session follows the reloaded configuration"
        );
        true
    }

    /// Counts a statement in the metrics, through handles the session keeps
    /// per (kind, outcome).
    fn count_statement(&mut self, label: &'static str, elapsed: std::time::Duration) {
        let outcome = if self.current.reply_failed {
            metrics::Outcome::Error
        } else {
            metrics::Outcome::Ok
        };
        self.statement_metrics
            .count(&self.shared.metrics, label, outcome, elapsed);
    }

    /// The metric label of a statement command (None: not a statement).
    fn statement_label(&self, command: &Command<'_>) -> Option<&'static str> {
        match command.kind {
            CommandKind::Query(sql) => Some(statement_label(sql)),
            CommandKind::Execute(_) => Some(
                self.current
                    .executing
                    .as_ref()
                    .map_or("other", |stmt| stmt.label),
            ),
            CommandKind::Prepare(_) => Some("prepare"),
            _ => None,
        }
    }

    async fn dispatch(&mut self, command: &Command<'_>) -> CommandResult {
        let payload = command.packet;
        match command.kind {
            CommandKind::Query(sql) => self.query(sql).await,
            CommandKind::Prepare(_) => self.prepare(payload).await,
            CommandKind::Execute(_) => match self.current.executing.as_ref().map(|e| e.id) {
                Some(id) => self.execute(id, payload).await,
                None => Err(unknown_statement(payload, "mysqld_stmt_execute")),
            },
            CommandKind::SendLongData => {
                self.send_long_data(payload);
                Ok(Flow::Continue)
            }
            CommandKind::CloseStatement(id) => {
                if let Some(id) = id {
                    self.statements.remove(id);
                }
                Ok(Flow::Continue)
            }
            CommandKind::ResetStatement(id) => {
                if id.is_some_and(|id| self.statements.reset_long_data(id)) {
                    self.reply_ok();
                    Ok(Flow::Continue)
                } else {
                    Err(unknown_statement(payload, "mysqld_stmt_reset"))
                }
            }
            CommandKind::Fetch(id) => Err(fetch_refusal(&self.statements, payload, id)),
            CommandKind::Ping => {
                self.reply_ok();
                Ok(Flow::Continue)
            }
            CommandKind::Quit => Ok(Flow::Quit),
            CommandKind::InitDb(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                self.use_database(&name).map(|()| Flow::Continue)
            }
            CommandKind::FieldList => self.pass_through(payload, ResponseKind::FieldList).await,
            CommandKind::Statistics => self.pass_through(payload, ResponseKind::Single).await,
            CommandKind::SetOption => self.set_option(payload).await,
            CommandKind::ResetConnection => {
                self.reset().await;
                self.reply_ok();
                Ok(Flow::Continue)
            }
            CommandKind::ChangeUser => self.change_user(payload).await,
            CommandKind::Unknown(byte) => Err(Failure::Reply(ProxyError::new(
                ErrorKind::UnknownCommand,
                format!("Unknown command 0x{byte:02x}"),
            ))),
        }
    }

    /// The packet that ends a result set the proxy built (or a COM_SET_OPTION
    /// reply): EOF, or an OK with header 0xFE under CLIENT_DEPRECATE_EOF.
    fn push_end_of_result(&mut self) {
        let status = self.reply_status();
        if self.flavor.deprecate_eof() {
            self.writer.push(
                &OkInfo {
                    status,
                    ..OkInfo::default()
                }
                .encode_with_header(0xFE),
            );
        } else {
            self.writer.push(&encode_eof(0, status));
        }
    }

    fn reply_ok(&mut self) {
        self.writer.push(
            &OkInfo {
                status: self.reply_status(),
                ..OkInfo::default()
            }
            .encode(),
        );
    }

    /// What a forwarded reply's status flags need so that the client sees
    /// the session as one server would show it: in a transaction when one
    /// is open on any data source, with more results to come when more
    /// statements of its multi-statement string follow.
    fn status_fix(&self) -> StatusFix {
        let mut set = 0;
        if self.conns.tx.open.is_some()
            || self
                .conns
                .held()
                .iter()
                .any(|c| c.status & status::IN_TRANS != 0)
        {
            set |= status::IN_TRANS;
        }
        if self.conns.tx.open.as_ref().is_some_and(|t| t.read_only) {
            set |= status::IN_TRANS_READONLY;
        }
        StatusFix {
            set,
            set_at_end: if self.current.more_results {
                status::MORE_RESULTS_EXISTS
            } else {
                0
            },
        }
    }

    /// The status flags of a reply the proxy builds itself: the last
    /// backend status (autocommit, ...) with the session's own.
    fn reply_status(&self) -> u16 {
        let fix = self.status_fix();
        let own = status::IN_TRANS | status::IN_TRANS_READONLY | status::MORE_RESULTS_EXISTS;
        (self.status & !own) | fix.set | fix.set_at_end
    }

    /// A write inside a READ ONLY transaction that reads replicas
    /// (`transaction_reads = "replica"`): refused as a primary refuses it
    /// (a replica would answer 1290, read-only server).
    fn writes_in_read_only_transaction(&self, sql: &[u8]) -> bool {
        self.shared.config.server.transaction_reads
            == shardgate_rules::config::TransactionReads::Replica
            && self.conns.tx.open.as_ref().is_some_and(|t| t.read_only)
            && matches!(
                shardgate_sql::label::statement_label(sql),
                "insert" | "update" | "delete" | "replace"
            )
    }

    /// Whether autocommit is on for the session, as its server says.
    fn autocommit(&self) -> bool {
        self.status & status::AUTOCOMMIT != 0
    }

    fn use_database(&mut self, name: &str) -> Result<(), Failure> {
        self.access.check_database(name)?;
        if let Some(db) = self.shared.database(name) {
            self.db = db.clone();
            self.database = Some(name.to_owned());
            self.reply_ok();
            Ok(())
        } else {
            Err(Failure::Reply(auth::unknown_database(name)))
        }
    }

    /// COM_QUERY: each statement of a multi-statement string runs as if it
    /// came alone, in order, its reply ending with more results to come but
    /// for the last; an error ends the string, as on one server.
    async fn query(&mut self, sql: &[u8]) -> CommandResult {
        if let Some(parsed) = admin_statement(sql) {
            self.set_read_intent(false);
            return self.admin(parsed);
        }
        let text = analysis_text(sql, self.charset);
        let multi = self
            .capabilities
            .contains(CapabilityFlags::CLIENT_MULTI_STATEMENTS);
        let pieces = if multi && text.contains(';') {
            statements::split(&text)
        } else {
            vec![Piece::Statement(0..text.len())]
        };
        let count = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            self.current.more_results = i + 1 < count;
            let result = match piece {
                Piece::Statement(range) | Piece::Rest(range) => {
                    self.statement_with_retry(&restore(&text[range])).await
                }
                Piece::Empty => {
                    self.reply_ok();
                    Ok(())
                }
            };
            if result.is_err() || self.current.reply_failed {
                self.current.more_results = false;
                return result.map(|()| Flow::Continue);
            }
        }
        self.current.more_results = false;
        Ok(Flow::Continue)
    }

    /// Runs one statement of a query: `sql` as the client sent it, `text`
    /// its analysis text and `tokens` the tokens of `text`, lexed once.
    async fn query_statement(
        &mut self,
        sql: &[u8],
        text: &str,
        tokens: Tokens<'_, '_>,
    ) -> Result<(), Failure> {
        self.check_access(text, tokens)?;
        let classified = classify_lexed(&MARIADB, text, tokens);
        if let Kind::Use(db) = &classified.kind {
            return self.use_database(db);
        }
        if let Kind::ShowDatabases(like) = &classified.kind {
            self.show_databases(like.as_deref(), RowFormat::Text);
            return Ok(());
        }
        // What runs: DATABASE() naming the logical database, and for other
        // statements, tables of logical databases named by qualifier.
        let logical = self.with_logical_database(text, &classified);
        if classified.commits_implicitly && self.in_transaction() {
            self.commit_implicitly().await?;
        }
        if !matches!(classified.kind, Kind::Begin(_)) {
            // SET TRANSACTION's characteristics are for the next
            // transaction: this statement's, or the BEGIN it names.
            self.conns
                .tx
                .next_characteristics
                .clone_from(&classified.next_transaction);
        }
        self.current
            .read_back_vars
            .clone_from(&classified.assigned_vars);
        if self.writes_in_read_only_transaction(sql) {
            return Err(Failure::Reply(ProxyError::new(
                ErrorKind::ReadOnlyTransaction,
                "Cannot execute statement in a READ ONLY transaction",
            )));
        }
        match &classified.kind {
            Kind::DatabaseDdl => {
                return Err(Failure::Reply(ProxyError::new(
                    ErrorKind::NotSupported,
                    "CREATE, ALTER and DROP DATABASE are not supported through ShardGate: its logical databases are declared in its configuration ([databases.<name>] with a data source of its own); create the physical database on the servers, declare it, and reload",
                )));
            }
            Kind::Kill => {
                // Forwarded, it would kill whichever backend thread has that id.
                return Err(Failure::Reply(ProxyError::new(
                    ErrorKind::NotSupported,
                    "KILL through ShardGate is not supported yet: the id is ShardGate's, not a server's; close the client connection instead",
                )));
            }
            // Not with a connection held (pinned): it must begin there.
            Kind::Begin(begin)
                if self.conns.tx.open.is_none()
                    && self.conns.pinned().is_none()
                    && !self.conns.any_in_transaction() =>
            {
                if let Some(read_only) = deferrable_begin(begin) {
                    // Opened lazily: each data source joins the transaction
                    // when a statement first reaches it, so a transaction
                    // holds only the connections it uses.
                    let characteristics = self.conns.tx.next_characteristics.take();
                    let read_only = read_only
                        || characteristics
                            .as_deref()
                            .is_some_and(|c| c.to_ascii_uppercase().contains("READ ONLY"));
                    self.conns.tx.savepoints.clear();
                    self.conns.tx.open = Some(OpenTransaction {
                        begin: begin.clone(),
                        read_only,
                        characteristics,
                    });
                    // The connection kept since SET TRANSACTION, on which
                    // its characteristics wait, begins now.
                    for conn in self.conns.held_mut() {
                        conn.execute_internal(begin).await?;
                    }
                    if consistent_snapshot(begin) {
                        // The snapshot is taken now, on every data source
                        // (each its own: there is no read view across them).
                        self.join_every_data_source().await?;
                    }
                    self.reply_ok();
                    return Ok(());
                }
            }
            Kind::TransactionControl { ends, savepoint } => {
                let forwarded = self.forwarded_text(&logical, &classified.kind);
                let payload = command_payload(COM_QUERY, &restore(&forwarded));
                return self
                    .transaction_control(&payload, text, *ends, savepoint.as_ref(), &classified)
                    .await;
            }
            Kind::Other if classified.reads_metadata => {
                return self.metadata_query(&logical, RowFormat::Text).await;
            }
            Kind::Other => {
                // Other logical databases' tables, named by qualifier, by
                // their physical names; the analysis finds this one's.
                let other_dbs = self
                    .db
                    .metadata
                    .physical_qualifiers(&logical, Some(&self.db.name));
                // The tokens lexed before stand for the text when it is unchanged.
                let lexed =
                    (other_dbs.is_none() && matches!(logical, Cow::Borrowed(_))).then_some(tokens);
                let text = other_dbs.as_deref().unwrap_or(&logical);
                if let (Analysis::Sharded(st), text) = self.analyze_sent(sql, text, lexed).await? {
                    self.note_writes(&st)?;
                    return self.run_sharded(&st, &text, &[], None).await;
                }
            }
            _ => {}
        }
        if let Some(reason) = classified.pins_session {
            if self.conns.pin(reason) {
                debug!(reason, "session pinned to its backend connection");
            }
        }
        // Streamed to the data source from the client's text: a large
        // statement is not copied into a command, then into the send
        // buffer (twice its size, issue 15). The client's bytes are the
        // analysis text's, restored.
        let forwarded = self.forwarded_text(&logical, &classified.kind);
        let forwarded = NodeSql::spliced(&forwarded, []);
        if let Kind::Set(assignments) = &classified.kind {
            if assignments.iter().any(|a| a.key == "autocommit") && self.conns.any_in_transaction()
            {
                return self
                    .set_autocommit(&forwarded.command(COM_QUERY), &classified)
                    .await;
            }
        }
        let mut conn = self.checkout(&classified).await?;
        conn.send_node_command(COM_QUERY, &forwarded).await?;
        let outcome = self
            .forward_to_client(&mut conn, ResponseKind::ResultSets, Answer::Plain)
            .await?;
        let succeeded = matches!(outcome, Outcome::Ok(_));
        if let (Kind::Begin(begin), true) = (&classified.kind, succeeded) {
            self.conns.tx.open = Some(OpenTransaction {
                begin: begin.clone(),
                read_only: deferrable_begin(begin) == Some(true),
                characteristics: None,
            });
        }
        self.keep_session_changes(conn, &classified, succeeded)
            .await
    }

    /// Refuses a statement the user may not send (see `core::access`):
    /// tables of logical databases it may not use, then writes from a
    /// read-only user, as MariaDB checks grants before `read_only`.
    fn check_access(&self, text: &str, tokens: Tokens<'_, '_>) -> Result<(), ProxyError> {
        self.access
            .check_tables(text, tokens, |qualifier| self.database_named(qualifier))?;
        self.access.check_write(&MARIADB, text, tokens)
    }

    /// The logical database a statement's qualifier names: by its logical
    /// name (in any letter case, so that none slips past the check) or by
    /// the physical name of one of its data sources.
    fn database_named(&self, qualifier: &str) -> Option<&str> {
        self.shared
            .databases
            .iter()
            .find(|db| db.name.eq_ignore_ascii_case(qualifier))
            .map(|db| db.name.as_str())
            .or_else(|| self.db.metadata.logical_schema(qualifier))
    }

    /// The text that runs a statement on a data source as it is: `logical`,
    /// its analysis text with DATABASE() naming the logical database, and
    /// tables of other logical databases named by qualifier by their
    /// physical names. Restored, an unchanged text is the client's bytes.
    fn forwarded_text<'t>(&self, logical: &'t str, kind: &Kind) -> Cow<'t, str> {
        let physical = match kind {
            Kind::Other => self.db.metadata.physical_qualifiers(logical, None),
            _ => None,
        };
        physical.map_or(Cow::Borrowed(logical), Cow::Owned)
    }

    /// After a statement ran on `conn`: what it changed of the session
    /// (SET, user variables) is kept and brought to the held connections,
    /// and the connection is released.
    async fn keep_session_changes(
        &mut self,
        mut conn: PooledConn,
        classified: &Classified,
        succeeded: bool,
    ) -> Result<(), Failure> {
        if let (Kind::Set(assignments), true) = (&classified.kind, succeeded) {
            self.record_assignments(&mut conn, assignments).await?;
        }
        if succeeded {
            self.remember_user_vars(&mut conn).await?;
        }
        self.release(conn, classified);
        if let (Kind::Set(_), true) = (&classified.kind, succeeded) {
            self.sync_held_state().await?;
        }
        Ok(())
    }

    /// A SET of autocommit while connections hold work: as on one server,
    /// the work ends (`autocommit = 1` commits it) before the reply, whose
    /// status then says so.
    async fn set_autocommit(
        &mut self,
        payload: &[u8],
        classified: &Classified,
    ) -> Result<(), Failure> {
        let mut conn = self.checkout(classified).await?;
        let ok = match conn.execute_statement(&payload[1..]).await {
            Ok(ok) => ok,
            Err(e) => {
                self.release(conn, classified);
                return Err(e.into());
            }
        };
        self.status = ok.status;
        self.keep_session_changes(conn, classified, true).await?;
        self.writer.push(
            &OkInfo {
                status: self.reply_status(),
                ..ok
            }
            .encode(),
        );
        Ok(())
    }

    /// Records what a SET that succeeded on `conn` changed, reading back
    /// the values of expressions there.
    async fn record_assignments(
        &mut self,
        conn: &mut PooledConn,
        assignments: &[Assignment],
    ) -> Result<(), Failure> {
        for assignment in assignments {
            if assignment.key.starts_with('@') && assignment.read_back {
                // Read back with the statement's other user variables.
                continue;
            }
            if assignment.read_back {
                let sql = format!("SELECT @@session.{}", assignment.key);
                let rows = conn.query_text(&sql).await?;
                let value = rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_deref());
                let literal = literal_from_read_back(value);
                self.vars.record_fragment(
                    &assignment.key,
                    format!("@@session.{} = {literal}", assignment.key),
                );
            } else {
                self.vars.record(assignment);
            }
        }
        conn.applied_state = self.vars.fingerprint();
        if assignments.iter().any(|a| a.key == "wait_timeout") {
            // The server's value: clamped to its range, DEFAULT resolved.
            let rows = conn.query_text("SELECT @@session.wait_timeout").await?;
            let seconds = rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.as_deref());
            if let Some(seconds) = seconds.and_then(|s| s.parse::<u64>().ok()) {
                self.wait_timeout = std::time::Duration::from_secs(seconds.max(1));
            }
        }
        let charset_changed = assignments
            .iter()
            .any(|a| a.key == "names" || a.key == "character_set_client");
        if charset_changed {
            let rows = conn.query_text("SELECT @@character_set_client").await?;
            if let Some(Some(name)) = rows.first().and_then(|r| r.first()) {
                self.charset = ClientCharset::named(name);
            }
        }
        Ok(())
    }

    /// After a statement that assigned user variables ran on `conn`: reads
    /// their values back and records them (with their types and character
    /// sets) as session state, so that whichever connection serves a later
    /// statement has them.
    pub(super) async fn remember_user_vars(
        &mut self,
        conn: &mut PooledConn,
    ) -> Result<(), Failure> {
        let names = std::mem::take(&mut self.current.read_back_vars);
        if names.is_empty() {
            return Ok(());
        }
        let literals = user_vars::read_back(conn, &names).await?;
        for (name, literal) in names.iter().zip(literals) {
            self.vars.record_fragment(
                &format!("@{}", name.to_lowercase()),
                format!("@`{}` = {literal}", name.replace('`', "``")),
            );
        }
        conn.applied_state = self.vars.fingerprint();
        Ok(())
    }

    /// Brings the connections the session holds to its state after a SET
    /// (`SET autocommit = 1` commits their work, as on one server), and
    /// gives back those no longer in a transaction.
    async fn sync_held_state(&mut self) -> Result<(), Failure> {
        if !self.conns.replay_changed_settings(&self.vars).await? {
            return Ok(());
        }
        if self.conns.pinned().is_none() && self.conns.tx.open.is_none() {
            let (keep, done): (Vec<_>, Vec<_>) = self
                .conns
                .take_all()
                .into_iter()
                .partition(|c| c.in_transaction());
            self.conns.put_back(keep);
            for conn in done {
                self.release(conn, &Classified::default());
            }
        }
        Ok(())
    }

    /// Brings every data source of the logical database into the open
    /// transaction at once.
    async fn join_every_data_source(&mut self) -> Result<(), Failure> {
        let sources = self.db.rules.data_sources().to_vec();
        for ds in sources {
            let pool = self.pool_of(&ds)?;
            let conn = self.checkout_on(&pool, &Classified::default()).await?;
            self.release(conn, &Classified::default());
        }
        Ok(())
    }

    /// Commits the session's transaction on every data source it reached,
    /// without a reply, as MariaDB does before a statement that commits
    /// implicitly (DDL, `BEGIN` inside a transaction, `LOCK TABLES`, ...).
    async fn commit_implicitly(&mut self) -> Result<(), Failure> {
        let failed = self.conns.end_transaction(b"COMMIT").await;
        for conn in self.conns.take_all() {
            self.release(conn, &Classified::default());
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The sharding analysis of a statement; a statement on sharded tables
    /// the proxy cannot analyse is refused.
    /// With it, the text the node statements are cut from (see `shard::labels`).
    fn analyze<'a>(&self, sql: &'a str) -> Result<(Analysis, Cow<'a, str>), Failure> {
        self.analyze_from(sql, None)
    }

    /// [`Session::analyze`] with the tokens of `sql` when they are at hand.
    fn analyze_from<'a>(
        &self,
        sql: &'a str,
        tokens: Option<Tokens<'_, '_>>,
    ) -> Result<(Analysis, Cow<'a, str>), Failure> {
        let (rules, db) = (&self.db.rules, &self.db.name);
        let analyzed = match tokens {
            Some(tokens) => analyze_labelled_lexed(sql, tokens, &MARIADB, rules, db),
            None => analyze_labelled(sql, &MARIADB, rules, db),
        };
        let (mut analysis, sql) = analyzed.map_err(|e| {
            let refusal = ProxyError::new(ErrorKind::NotSupported, e.to_string());
            match e {
                AnalyzeError::Unparsable { .. } => Failure::Unparsable(refusal),
                AnalyzeError::Unsupported(_) | AnalyzeError::TooLarge { .. } => {
                    Failure::Reply(refusal)
                }
            }
        })?;
        if let (Analysis::Sharded(st), false) = (&mut analysis, sql.is_ascii()) {
            // Values in the client's bytes are read in its character set.
            st.map_text_values(|v| value_text(v, self.charset).into_owned());
        }
        Ok((analysis, sql))
    }

    /// The statement with its `DATABASE()` select items showing the logical
    /// database (the servers would name their physical one).
    fn with_logical_database<'a>(&self, sql: &'a str, classified: &Classified) -> Cow<'a, str> {
        if classified.database_items.is_empty() {
            return Cow::Borrowed(sql);
        }
        Cow::Owned(with_logical_database(
            sql,
            &classified.database_items,
            self.database.as_deref(),
        ))
    }

    async fn prepare(&mut self, payload: &[u8]) -> CommandResult {
        if admin_statement(&payload[1..]).is_some() {
            // As DistSQL: the admin statements are text protocol only.
            return Err(Failure::Reply(ProxyError::new(
                ErrorKind::AdminNotPrepared,
                "This command is not supported in the prepared statement protocol; send ShardGate's SHOW/PREVIEW admin statements as plain queries",
            )));
        }
        let limit = self.shared.config.server.max_prepared_statements;
        if self.statements.len() >= limit {
            // MariaDB's words for its server-wide bound; this one is the session's.
            return Err(Failure::Reply(ProxyError::new(
                ErrorKind::TooManyPreparedStatements,
                format!("Can't create more than max_prepared_stmt_count statements (current value: {limit}); this session holds that many: close some, or raise server.max_prepared_statements in the ShardGate config"),
            )));
        }
        let text = analysis_text(&payload[1..], self.charset);
        let tokens = TokenList::of_statement(&text);
        let tokens = tokens.tokens();
        // Grants at prepare, as MariaDB checks them; `read_only` at execute.
        self.access
            .check_tables(&text, tokens, |qualifier| self.database_named(qualifier))?;
        let writes = writes_lexed(&MARIADB, &text, tokens);
        let classified = classify_lexed(&MARIADB, &text, tokens);
        let text = self.with_logical_database(&text, &classified);
        let rewritten;
        let payload = match &text {
            Cow::Owned(logical) => {
                rewritten = command_payload(COM_STMT_PREPARE, &restore(logical));
                &rewritten
            }
            Cow::Borrowed(_) => payload,
        };
        // Logical databases named by qualifier, by their physical names: all
        // of them for the server, the others for the analysis (see `query_statement`).
        let sql: Arc<[u8]> = match self.db.metadata.physical_qualifiers(&text, None) {
            Some(physical) => Arc::from(restore(&physical).as_ref()),
            None => Arc::from(&payload[1..]),
        };
        let other_dbs = self
            .db
            .metadata
            .physical_qualifiers(&text, Some(&self.db.name));
        let text: &str = other_dbs.as_deref().unwrap_or(&text);
        let sharded = match self.analyze_sent(&payload[1..], text, None).await? {
            (Analysis::Sharded(st), text) => Some(ShardedPrepared::new(
                Arc::<ShardedStatement>::from(st),
                Arc::from(text.as_ref()),
            )),
            (Analysis::Unsharded, _) => None,
        };
        // A sharded statement is prepared on one of its nodes to learn its
        // parameters and columns; executions go wherever their values route.
        let (pool, backend_sql) = match &sharded {
            Some(sh) => {
                let st = &sh.statement;
                check_supported(st, &self.plan_context()).map_err(|e| Failure::Reply(e.into()))?;
                let target = prepare_target(st, &sh.text, &self.plan_context());
                (
                    self.pool_of(&target.data_source)?,
                    Arc::<[u8]>::from(target.sql.to_bytes()),
                )
            }
            None => (self.db.default_pool.clone(), sql.clone()),
        };
        let mut backend_payload = Vec::with_capacity(backend_sql.len() + 1);
        backend_payload.push(COM_STMT_PREPARE);
        backend_payload.extend_from_slice(&backend_sql);
        let id = self.statements.next_id();
        let mut conn = self.checkout_on(&pool, &classified).await?;
        let outcome = self
            .run_on(
                &mut conn,
                &backend_payload,
                ResponseKind::Prepare,
                Answer::Prepare { client_id: id },
            )
            .await?;
        if let Outcome::Prepared(ok) = outcome {
            conn.remember_statement(backend_sql, ok.statement_id, ok.num_params);
            let replica_safe = shardgate_sql::reads::replica_safe(&MARIADB, text);
            self.statements.insert(
                id,
                PreparedStatement {
                    label: statement_label(&sql),
                    sql,
                    num_params: ok.num_params,
                    classified: classified.clone(),
                    replica_safe,
                    writes,
                    sharded,
                    param_types: None,
                    long_data: LongData::default(),
                },
            );
        }
        self.release(conn, &Classified::default());
        Ok(Flow::Continue)
    }

    /// Analyses statement `id` again when the rules were reloaded since it
    /// was prepared (a table may have become sharded, or changed nodes).
    fn refresh_analysis(&mut self, id: u32) -> Result<(), Failure> {
        if !self.statements.take_stale(id) {
            return Ok(());
        }
        let Some(sql) = self.statements.get(id).map(|s| s.sql.clone()) else {
            return Ok(());
        };
        let text = analysis_text(&sql, self.charset);
        let sharded = match self.analyze(&text)? {
            (Analysis::Sharded(st), text) => Some(ShardedPrepared::new(
                Arc::<ShardedStatement>::from(st),
                Arc::from(text.as_ref()),
            )),
            (Analysis::Unsharded, _) => None,
        };
        if let Some(stmt) = self.statements.get_mut(id) {
            stmt.sharded = sharded;
        }
        Ok(())
    }

    /// Runs COM_STMT_EXECUTE `payload` of the session's statement `id`.
    async fn execute(&mut self, id: u32, payload: &[u8]) -> CommandResult {
        self.refresh_analysis(id)?;
        let Some(stmt) = self.statements.get_mut(id) else {
            return Err(unknown_statement(payload, "mysqld_stmt_execute"));
        };
        // As MariaDB's `read_only`: the write prepares, its executions fail.
        if stmt.writes && self.access.is_read_only() {
            return Err(Failure::Reply(self.access.read_only_refusal()));
        }
        if let Some(st) = stmt.sharded.as_ref().map(|sh| sh.statement.clone()) {
            // Before anything of the execution is consumed (long data):
            // it may have to go back to the pause gate.
            self.note_writes(&st)?;
        }
        // A refusal of its long data is the execution's answer, before
        // anything else, as the server answers it.
        let pending = self
            .current
            .executing
            .as_ref()
            .is_some_and(|e| e.has_long_data);
        let long_data = if pending {
            self.statements
                .take_long_data(id)
                .map_err(|refusal| Failure::Reply(refusal.error()))?
        } else {
            Vec::new()
        };
        let Some(stmt) = self.statements.get_mut(id) else {
            return Err(unknown_statement(payload, "mysqld_stmt_execute"));
        };
        // The packet with parameter types, whatever the client sent this time.
        let (packet, types) =
            retarget_execute(payload, 0, stmt.num_params, stmt.param_types.as_deref())
                .map_err(execute_refusal)?;
        if types.is_some() {
            stmt.param_types = types;
        }
        let sql = stmt.sql.clone();
        let classified = stmt.classified.clone();
        let num_params = stmt.num_params;
        let sharded = stmt
            .sharded
            .as_ref()
            .map(|sh| (sh.statement.clone(), sh.text.clone()));
        let session_statement = matches!(
            classified.kind,
            Kind::Begin(_)
                | Kind::TransactionControl { .. }
                | Kind::Use(_)
                | Kind::Set(_)
                | Kind::ShowDatabases(_)
        );
        if sharded.is_none() && num_params == 0 && session_statement {
            // What the text path does for them (the reply is an OK either
            // way): the proxy keeps their effect on the session.
            match &classified.kind {
                Kind::ShowDatabases(like) => {
                    self.show_databases(like.as_deref(), RowFormat::Binary)
                }
                _ => {
                    let text = analysis_text(&sql, self.charset);
                    let tokens = TokenList::of_statement(&text);
                    self.query_statement(&sql, &text, tokens.tokens()).await?
                }
            }
            return Ok(Flow::Continue);
        }
        if let Some(reason) = classified.pins_session {
            self.conns.pin(reason);
        }
        if classified.commits_implicitly && self.in_transaction() {
            self.commit_implicitly().await?;
        }
        if sharded.is_none() && classified.reads_metadata && long_data.is_empty() {
            // Metadata under logical names, as the text path answers it:
            // its parameters bound as literals, its rows binary.
            let params = decode_params(&packet, usize::from(num_params), &[], self.charset)
                .map_err(|e| wrong_arguments(e.to_string()))?;
            let text = analysis_text(&sql, self.charset);
            let bound = shardgate_sql::shard::rewrite::with_params_bound(&MARIADB, &text, &params);
            self.metadata_query(&bound, RowFormat::Binary).await?;
            return Ok(Flow::Continue);
        }
        self.current
            .read_back_vars
            .clone_from(&classified.assigned_vars);
        let mut packet = packet;
        if let Some((st, text)) = sharded {
            let long = parameter_values(&long_data);
            let params = decode_params(&packet, usize::from(num_params), &long, self.charset)
                .map_err(|e| wrong_arguments(e.to_string()))?;
            // A row-returning execution that reaches one node runs that
            // node's statement as `run_sharded` would for Route::One; the
            // statement is built once per node, not planned per execution.
            let single = if st.returns_rows() {
                let kinds = self.column_kinds(&st).await?;
                let ctx = PlanContext {
                    kinds: &kinds,
                    ..self.plan_context()
                };
                single_node(&st, &params, &ctx)
            } else {
                None
            };
            if let Some(position) = single {
                if let Some(node) = self.node_statement(id, position)? {
                    debug!(position, "routed to one node");
                    // The node's primary, or a replica of it for a read.
                    let pool = self.pool_of(node.pool.data_source())?;
                    self.execute_on(&pool, node.sql, &mut packet).await?;
                    return Ok(Flow::Continue);
                }
            }
            let execution = sharded::Execution {
                packet: &mut packet,
            };
            self.run_sharded(&st, &text, &params, Some(execution))
                .await?;
            return Ok(Flow::Continue);
        }
        let mut conn = self.checkout(&classified).await?;
        let backend = match ensure_prepared(&mut conn, &sql).await? {
            Ok(b) => b,
            Err(err) => {
                self.release(conn, &Classified::default());
                return Err(Failure::Reply(err));
            }
        };
        set_statement_id(&mut packet, backend.id);
        // Cursors are not kept across pooled connections: a client that asked
        // for one gets the whole result, which libmysqlclient, Connector/J and
        // the others accept when the server reports no open cursor.
        packet[5] = 0;
        for mut chunk in long_data {
            set_statement_id(&mut chunk, backend.id);
            conn.queue_command(&chunk);
        }
        let outcome = self
            .run_on(
                &mut conn,
                &packet,
                ResponseKind::ResultSets,
                Answer::Execute {
                    backend_id: backend.id,
                },
            )
            .await?;
        let succeeded = matches!(outcome, Outcome::Ok(_));
        self.keep_session_changes(conn, &classified, succeeded)
            .await?;
        Ok(Flow::Continue)
    }

    fn send_long_data(&mut self, payload: &[u8]) {
        // No reply, even on error, as the server does: a refusal is the
        // next execution's answer.
        let Some(id) = statement_id(payload) else {
            return;
        };
        let server = &self.shared.config.server;
        let (per_parameter, per_session) =
            (server.max_allowed_packet, server.max_long_data_per_session);
        self.statements
            .add_long_data(id, payload, per_parameter, per_session);
    }

    async fn pass_through(&mut self, payload: &[u8], kind: ResponseKind) -> CommandResult {
        let classified = Classified::default();
        let mut conn = self.checkout(&classified).await?;
        self.run_on(&mut conn, payload, kind, Answer::Plain).await?;
        self.release(conn, &classified);
        Ok(Flow::Continue)
    }

    async fn set_option(&mut self, payload: &[u8]) -> CommandResult {
        let on = match payload.get(1..3) {
            Some([0, 0]) => true,
            Some([1, 0]) => false,
            _ => {
                return Err(Failure::Reply(ProxyError::new(
                    ErrorKind::UnknownCommand,
                    "Unknown COM_SET_OPTION value",
                )))
            }
        };
        self.flavor = self.flavor.with_multi_statements(on);
        self.capabilities
            .set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, on);
        let mut held = self.conns.take_all();
        if let Some((conn, others)) = held.split_first_mut() {
            let answered = self.set_option_on(conn, others, payload).await;
            // A connection the command failed on is closed.
            held.retain(|c| !c.broken);
            self.conns.put_back(held);
            answered?;
        } else {
            self.push_end_of_result();
        }
        Ok(Flow::Continue)
    }

    /// COM_SET_OPTION on the connections the session holds, which change
    /// with it; the first one answers the client.
    async fn set_option_on(
        &mut self,
        first: &mut PooledConn,
        others: &mut [PooledConn],
        payload: &[u8],
    ) -> Result<(), Failure> {
        first.flavor = self.flavor;
        self.run_on(first, payload, ResponseKind::Single, Answer::Plain)
            .await?;
        for other in others {
            other.flavor = self.flavor;
            other.send_command(payload).await?;
            other.read_outcome(ResponseKind::Single).await?;
        }
        Ok(())
    }

    /// The backend connection of the default data source for the next
    /// statement (one of its replicas for a read).
    async fn checkout(&mut self, classified: &Classified) -> Result<PooledConn, Failure> {
        let default = self.db.default_data_source.clone();
        let pool = self.pool_of(&default)?;
        self.checkout_on(&pool, classified).await
    }

    /// A backend connection of `pool`'s data source, as the core's
    /// `SessionConns::checkout` gives it, with the session's last insert id
    /// when the statement reads it and it was made on another connection.
    async fn checkout_on(
        &mut self,
        pool: &Arc<crate::backend::Pool>,
        classified: &Classified,
    ) -> Result<PooledConn, Failure> {
        let (conns, reads, scope, vars) = self.backend_parts();
        let mut conn = conns.checkout(pool, reads, &scope, vars).await?;
        if classified.reads_last_insert_id {
            if let Some(last) = self.last_insert {
                if last.conn_uid != conn.uid {
                    conn.execute_internal(&format!("SET @@session.last_insert_id = {}", last.id))
                        .await?;
                }
            }
        }
        Ok(conn)
    }

    /// Whether the session is in a transaction: an explicit one, or work
    /// of the implicit one that autocommit off opens, on some data source.
    fn in_transaction(&self) -> bool {
        self.conns.in_transaction()
    }

    /// Sends one command on `conn` and forwards the reply to the client.
    async fn run_on(
        &mut self,
        conn: &mut PooledConn,
        payload: &[u8],
        kind: ResponseKind,
        answer: Answer,
    ) -> Result<Outcome, Failure> {
        conn.send_command(payload).await?;
        self.forward_to_client(conn, kind, answer).await
    }

    /// Forwards the reply to the command just sent on `conn` to the client.
    async fn forward_to_client(
        &mut self,
        conn: &mut PooledConn,
        kind: ResponseKind,
        answer: Answer,
    ) -> Result<Outcome, Failure> {
        let fix = self.status_fix();
        let stream_end = self.reply_may_stream();
        let outcome = forward_reply(
            conn,
            &mut self.writer,
            kind,
            answer,
            Some(&self.db.metadata),
            fix,
            stream_end,
        )
        .await?;
        self.note_outcome(&outcome);
        if let Outcome::Ok(ok) = &outcome {
            self.status = ok.status;
            if ok.last_insert_id != 0 {
                self.last_insert = Some(LastInsert {
                    id: ok.last_insert_id,
                    conn_uid: conn.uid,
                });
            }
        }
        Ok(outcome)
    }

    /// Remembers that the client got an error reply from a backend.
    fn note_outcome(&mut self, outcome: &Outcome) {
        if let Outcome::Err(err) = outcome {
            self.current.reply_failed = true;
            self.current.deadlocked |= rolls_back_transaction(&err.sqlstate);
        }
    }

    /// After a data source chose this session's transaction as a deadlock's
    /// victim and rolled back its part: the whole transaction is rolled
    /// back, as one server rolls back all of it, so that a later COMMIT
    /// cannot make the other data sources' part durable alone.
    async fn roll_back_after_deadlock(&mut self) {
        self.current.deadlocked = false;
        if !self.in_transaction() {
            return;
        }
        warn!("a deadlock rolled back this transaction's part on one data source; rolling back the rest");
        self.conns.end_transaction(b"ROLLBACK").await;
        for conn in self.conns.take_all() {
            self.release(conn, &Classified::default());
        }
    }

    /// Keeps the connection for the session or gives it back to its pool:
    /// one in a transaction (explicit, or the work of an implicit one while
    /// autocommit is off) stays with the session until it ends.
    fn release(&mut self, mut conn: PooledConn, classified: &Classified) {
        self.note_possible_write(&mut conn);
        self.conns.release(conn, classified.holds_next);
    }

    /// COM_RESET_CONNECTION: forget all session state; a held connection is
    /// reset (rolled back) and returned.
    async fn reset(&mut self) {
        self.conns.reset_all().await;
        self.vars.clear();
        self.wait_timeout =
            std::time::Duration::from_millis(self.shared.config.server.wait_timeout_ms);
        self.statements.clear();
        self.conns.forget();
        self.last_insert = None;
        self.current.read_back_vars.clear();
        self.charset = crate::handshake::client_charset(self.flavor.collation);
        self.status = status::AUTOCOMMIT;
    }

    async fn close(&mut self) {
        self.conns.reset_all().await;
        let _ = self.writer.shutdown().await;
    }
}

/// For `BEGIN [WORK]` and `START TRANSACTION [READ ONLY | READ WRITE | WITH
/// CONSISTENT SNAPSHOT, ...]`: whether it is read-only. None for anything
/// else (`BEGIN NOT ATOMIC` ...), which goes to a server as it is.
fn deferrable_begin(text: &str) -> Option<bool> {
    let words: Vec<String> = text
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["BEGIN"] | ["BEGIN", "WORK"] => Some(false),
        ["START", "TRANSACTION", rest @ ..] => {
            let mut read_only = false;
            let mut rest = rest;
            while !rest.is_empty() {
                rest = match rest {
                    ["READ", "ONLY", tail @ ..] => {
                        read_only = true;
                        tail
                    }
                    ["READ", "WRITE", tail @ ..] => tail,
                    ["WITH", "CONSISTENT", "SNAPSHOT", tail @ ..] => tail,
                    _ => return None,
                };
            }
            Some(read_only)
        }
        _ => None,
    }
}

/// Whether a `START TRANSACTION` asks for a consistent snapshot.
fn consistent_snapshot(begin: &str) -> bool {
    let words: Vec<&str> = begin
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .any(|w| w[0].eq_ignore_ascii_case("CONSISTENT") && w[1].eq_ignore_ascii_case("SNAPSHOT"))
}

/// The admin statement `sql` is, if it is one (see `sql::admin`); an
/// ordinary statement costs a byte comparison or two.
fn admin_statement(sql: &[u8]) -> Option<Result<AdminStatement, AdminSqlError>> {
    if !may_be_admin(sql) {
        return None;
    }
    parse_admin(&String::from_utf8_lossy(sql))
}

/// The statement prepared on `conn` for `sql`, preparing it there first if
/// needed; a server error preparing it is the inner error.
async fn ensure_prepared(
    conn: &mut PooledConn,
    sql: &Arc<[u8]>,
) -> Result<Result<BackendStatement, ProxyError>, Failure> {
    if let Some(s) = conn.statement(sql) {
        return Ok(Ok(s));
    }
    let mut prepare = Vec::with_capacity(sql.len() + 1);
    prepare.push(COM_STMT_PREPARE);
    prepare.extend_from_slice(sql);
    conn.send_command(&prepare).await?;
    match conn.read_prepare_outcome().await? {
        Outcome::Prepared(ok) => {
            conn.remember_statement(sql.clone(), ok.statement_id, ok.num_params);
            conn.statement(sql).map(Ok).ok_or_else(|| {
                Failure::Reply(ProxyError::new(
                    ErrorKind::Internal,
                    "statement vanished from the backend connection's cache",
                ))
            })
        }
        Outcome::Err(err) => Ok(Err(err.into())),
        Outcome::Ok(_) => {
            conn.broken = true;
            Err(Failure::Reply(ProxyError::new(
                ErrorKind::DataSourceLost,
                "backend answered a prepare with OK",
            )))
        }
    }
}

/// A client-given argument the command cannot take (1210).
fn wrong_arguments(message: String) -> Failure {
    Failure::Reply(ProxyError::new(ErrorKind::BadArguments, message))
}

/// MariaDB's answer to a COM_STMT_EXECUTE it cannot take.
fn execute_refusal(e: ExecuteError) -> Failure {
    match e {
        ExecuteError::Malformed => Failure::Reply(ProxyError::new(
            ErrorKind::MalformedPacket,
            "Malformed communication packet",
        )),
        ExecuteError::NoParameters | ExecuteError::NoTypes => {
            wrong_arguments(format!("Incorrect arguments to mysqld_stmt_execute: {e}"))
        }
    }
}

/// The answer to COM_STMT_FETCH: the proxy keeps no cursor open (an
/// execution that asked for one got its whole result), so a fetch has
/// none to read from, as MariaDB answers for a statement without one.
fn fetch_refusal(statements: &Statements, payload: &[u8], id: Option<u32>) -> Failure {
    match id.filter(|id| statements.get(*id).is_some()) {
        Some(id) => Failure::Reply(ProxyError::new(
            ErrorKind::NoOpenCursor,
            format!("The statement ({id}) has no open cursor"),
        )),
        None => unknown_statement(payload, "mysqld_stmt_fetch"),
    }
}

fn unknown_statement(payload: &[u8], command: &str) -> Failure {
    let id = statement_id(payload).unwrap_or(0);
    Failure::Reply(ProxyError::new(
        ErrorKind::UnknownStatement,
        format!("Unknown prepared statement handler ({id}) given to {command}"),
    ))
}

/// A command packet's payload: the command byte, then its argument.
fn command_payload(command: u8, argument: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(argument.len() + 1);
    payload.push(command);
    payload.extend_from_slice(argument);
    payload
}

#[cfg(test)]
mod tests {
    use super::deferrable_begin;

    #[test]
    fn only_plain_transaction_starts_are_deferred() {
        assert_eq!(deferrable_begin("BEGIN"), Some(false));
        assert_eq!(deferrable_begin("begin work"), Some(false));
        assert_eq!(deferrable_begin("START TRANSACTION"), Some(false));
        assert_eq!(deferrable_begin("start transaction read only"), Some(true));
        assert_eq!(
            deferrable_begin("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"),
            Some(true)
        );
        assert_eq!(
            deferrable_begin("START TRANSACTION READ WRITE"),
            Some(false)
        );
        assert_eq!(deferrable_begin("BEGIN NOT ATOMIC"), None);
        assert_eq!(deferrable_begin("START TRANSACTION READ"), None);
        assert!(super::consistent_snapshot(
            "start transaction with consistent\n snapshot, read only"
        ));
        assert!(!super::consistent_snapshot("START TRANSACTION READ ONLY"));
    }
}
