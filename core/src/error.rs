//! Errors in the proxy's terms, not a wire protocol's: the backend layer's
//! (a data source that cannot be reached, a pool that is exhausted, a
//! server's own error) and a client command's ([`ProxyError`], whatever
//! layer it came from). Each protocol's front end maps them to what its
//! clients understand, once.

use std::fmt;

use shardgate_sql::shard::PlanError;

/// An error a database server sent: its SQLSTATE, the vendor's own code
/// where it has one (MariaDB's error numbers; 0 where there is none), and
/// its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sqlstate),
            self.message
        )
    }
}

/// A failure on one connection to a data source.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to data source {ds} ({addr}): {source}")]
    Connect {
        ds: String,
        addr: String,
        source: std::io::Error,
    },
    /// TLS the data source's URL asks for could not be set up: its files,
    /// a server that does not offer it, a certificate that fails the check.
    #[error("TLS to data source {ds} ({addr}) failed: {source}")]
    Tls {
        ds: String,
        addr: String,
        /// Boxed: rustls' errors are large, and every result over a
        /// connection carries this type.
        source: Box<crate::data_source_tls::DataSourceTlsError>,
    },
    #[error("data source {ds} refused the proxy's login: {err}")]
    Login { ds: String, err: DbError },
    #[error("connection to data source {ds} lost: {reason}")]
    Lost { ds: String, reason: String },
    #[error("unexpected reply from data source {ds}: {what}")]
    Protocol { ds: String, what: String },
    #[error("{err}")]
    Server { ds: String, err: DbError },
}

impl ConnError {
    pub fn lost(ds: &str, err: impl fmt::Display) -> Self {
        ConnError::Lost {
            ds: ds.to_owned(),
            reason: err.to_string(),
        }
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ConnError::Connect { .. } | ConnError::Lost { .. })
    }
}

/// A failure talking to one data source: on its connection, or waiting
/// for one from its pool.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("pool for {ds} exhausted ({in_use}/{max} in use, waited {}); raise the pool's max_size (or acquire_timeout_ms) in data_sources.{}.pool", seconds(.waited), data_source_of(.ds))]
    PoolExhausted {
        ds: String,
        in_use: usize,
        max: usize,
        waited: std::time::Duration,
    },
    #[error("data source {ds} is down ({why}, {} ago); statements for it fail at once until it answers again", seconds(.since))]
    Down {
        ds: String,
        since: std::time::Duration,
        why: String,
    },
    #[error("no usable replica for reads on {ds} ({why}); data_sources.{ds}.read.fallback = \"error\" forbids reading the primary")]
    NoUsableReplica { ds: String, why: String },
    #[error("Deadlock found when trying to get a connection to {ds} ({in_use}/{max} in use by transactions waiting on each other); try restarting transaction")]
    Deadlock {
        ds: String,
        in_use: usize,
        max: usize,
    },
}

/// `5s`, `0.25s`: a wait as people write it.
fn seconds(d: &std::time::Duration) -> String {
    let text = format!("{:.1}", d.as_secs_f64());
    format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
}

/// `ds0` for the pool `ds0.replica1`.
fn data_source_of(pool: &str) -> &str {
    pool.split('.').next().unwrap_or(pool)
}

impl BackendError {
    pub fn lost(ds: &str, err: impl fmt::Display) -> Self {
        ConnError::lost(ds, err).into()
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        match self {
            BackendError::Conn(e) => e.is_unreachable(),
            BackendError::Down { .. } => true,
            _ => false,
        }
    }
}

/// Why a client's command failed, in the proxy's terms; each front end
/// tells its clients once, at its edge (MySQL: an error code and a
/// SQLSTATE per kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub message: String,
}

/// What kind of failure a [`ProxyError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A data source's own error, relayed as it came.
    Server { code: u16, sqlstate: [u8; 5] },
    /// A statement the proxy cannot run correctly across data nodes.
    NotSupported,
    /// A row whose sharding column is NULL.
    NullShardingValue,
    /// An INSERT without a value for a sharding column.
    MissingShardingValue,
    /// A value the sharding rules route to no data node.
    Unroutable,
    /// A client-given argument the statement or command cannot take.
    BadArguments,
    /// A data source the proxy cannot connect or log in to, or no usable
    /// replica where the config forbids reading the primary.
    DataSourceUnreachable,
    /// A connection to a data source broke, or it answered nonsense.
    DataSourceLost,
    /// A pool had no connection to give within its wait.
    PoolExhausted,
    /// Sessions in transactions wait on each other for pooled connections.
    PoolDeadlock,
    /// A pause (a resharding cutover) held the statement past its wait.
    PausedTooLong,
    /// The sharding rules of a table the transaction uses changed.
    RulesChanged,
    /// A write in a read-only transaction.
    ReadOnlyTransaction,
    /// A command the proxy does not know or does not take.
    UnknownCommand,
    /// A prepared statement id the session does not have.
    UnknownStatement,
    /// A command packet cut short inside a part of fixed length.
    MalformedPacket,
    /// A fetch from a prepared statement without an open cursor.
    NoOpenCursor,
    /// A command packet larger than the configured limit.
    PacketTooLarge,
    /// A prepared statement's long data over its bound (a parameter's,
    /// `max_allowed_packet`, or the session's whole).
    LongDataTooLong,
    /// A session that holds as many prepared statements as it may.
    TooManyPreparedStatements,
    /// One of the proxy's admin statements sent as a prepared statement.
    AdminNotPrepared,
    /// An admin statement the proxy cannot parse.
    AdminSyntax,
    /// An admin statement naming a table the proxy does not know.
    UnknownTable,
    /// A client whose login packets make no sense.
    BadHandshake,
    /// A wrong user name or password.
    AccessDenied,
    /// A client in the clear where `server.require_secure_transport` asks
    /// for TLS.
    InsecureTransport,
    /// A user with as many sessions open as it may have.
    TooManyUserConnections,
    /// A logical database the proxy does not serve.
    UnknownDatabase,
    /// A logical database the user may not use (`users[].databases`), named
    /// at login, by `USE` or COM_INIT_DB.
    DatabaseAccessDenied,
    /// A table of a logical database the user may not use, named by a
    /// statement.
    TableAccessDenied,
    /// A statement that writes, or an admin command that changes the proxy,
    /// from a user who may only read (`users[].read_only`).
    ReadOnlyUser,
    /// The proxy could not do what it should have (a key generator that
    /// failed, node results it could not merge).
    Internal,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProxyError {
            kind,
            message: message.into(),
        }
    }

    /// A data source's error as it sent it.
    pub fn server(err: DbError) -> Self {
        ProxyError {
            kind: ErrorKind::Server {
                code: err.code,
                sqlstate: err.sqlstate,
            },
            message: err.message,
        }
    }

    /// The same error, its message extended with where it happened.
    pub fn in_context(self, context: impl fmt::Display) -> Self {
        ProxyError {
            message: format!("{} ({context})", self.message),
            ..self
        }
    }

    /// The data source rolled the session's transaction back (a deadlock,
    /// a serialization failure: SQLSTATE class 40), or the proxy's pools
    /// found such a deadlock: the rest of the transaction must be rolled
    /// back too.
    pub fn rolled_back_transaction(&self) -> bool {
        match self.kind {
            ErrorKind::Server { sqlstate, .. } => rolls_back_transaction(&sqlstate),
            ErrorKind::PoolDeadlock => true,
            _ => false,
        }
    }

    /// The `type` label of `shardgate_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Server { .. } if self.rolled_back_transaction() => "deadlock",
            ErrorKind::Server { .. } => "backend",
            ErrorKind::PoolDeadlock => "deadlock",
            ErrorKind::PoolExhausted => "pool_exhausted",
            ErrorKind::DataSourceUnreachable | ErrorKind::DataSourceLost => "backend_unreachable",
            ErrorKind::NotSupported
            | ErrorKind::NullShardingValue
            | ErrorKind::MissingShardingValue
            | ErrorKind::Unroutable
            | ErrorKind::ReadOnlyTransaction
            | ErrorKind::AdminNotPrepared
            | ErrorKind::DatabaseAccessDenied
            | ErrorKind::TableAccessDenied
            | ErrorKind::ReadOnlyUser => "refused",
            ErrorKind::PausedTooLong | ErrorKind::RulesChanged => "paused",
            ErrorKind::BadArguments
            | ErrorKind::UnknownCommand
            | ErrorKind::UnknownStatement
            | ErrorKind::MalformedPacket
            | ErrorKind::NoOpenCursor
            | ErrorKind::PacketTooLarge
            | ErrorKind::LongDataTooLong
            | ErrorKind::TooManyPreparedStatements
            | ErrorKind::AdminSyntax
            | ErrorKind::UnknownTable
            | ErrorKind::BadHandshake
            | ErrorKind::AccessDenied
            | ErrorKind::InsecureTransport
            | ErrorKind::TooManyUserConnections
            | ErrorKind::UnknownDatabase => "client",
            ErrorKind::Internal => "proxy",
        }
    }
}

/// A server's error of SQLSTATE class 40 (transaction rollback: a deadlock
/// victim, a serialization failure) ended the transaction it happened in.
pub fn rolls_back_transaction(sqlstate: &[u8; 5]) -> bool {
    sqlstate.starts_with(b"40")
}

impl From<DbError> for ProxyError {
    fn from(err: DbError) -> Self {
        ProxyError::server(err)
    }
}

impl From<&ConnError> for ProxyError {
    fn from(e: &ConnError) -> Self {
        match e {
            ConnError::Server { err, .. } => ProxyError::server(err.clone()),
            ConnError::Connect { .. } | ConnError::Tls { .. } | ConnError::Login { .. } => {
                ProxyError::new(ErrorKind::DataSourceUnreachable, e.to_string())
            }
            ConnError::Lost { .. } | ConnError::Protocol { .. } => {
                ProxyError::new(ErrorKind::DataSourceLost, e.to_string())
            }
        }
    }
}

impl From<&BackendError> for ProxyError {
    fn from(e: &BackendError) -> Self {
        let kind = match e {
            BackendError::Conn(e) => return e.into(),
            BackendError::NoUsableReplica { .. } | BackendError::Down { .. } => {
                ErrorKind::DataSourceUnreachable
            }
            BackendError::PoolExhausted { .. } => ErrorKind::PoolExhausted,
            BackendError::Deadlock { .. } => ErrorKind::PoolDeadlock,
        };
        ProxyError::new(kind, e.to_string())
    }
}

impl From<BackendError> for ProxyError {
    fn from(e: BackendError) -> Self {
        ProxyError::from(&e)
    }
}

impl From<ConnError> for ProxyError {
    fn from(e: ConnError) -> Self {
        ProxyError::from(&e)
    }
}

impl From<&PlanError> for ProxyError {
    fn from(e: &PlanError) -> Self {
        let kind = match e {
            PlanError::NotSupported(_) => ErrorKind::NotSupported,
            PlanError::NullShardingValue { .. } => ErrorKind::NullShardingValue,
            PlanError::MissingShardingColumn { .. } => ErrorKind::MissingShardingValue,
            PlanError::Unroutable(_) => ErrorKind::Unroutable,
            PlanError::BadArguments(_) => ErrorKind::BadArguments,
            PlanError::KeyGeneration { .. } => ErrorKind::Internal,
        };
        ProxyError::new(kind, e.to_string())
    }
}

impl From<PlanError> for ProxyError {
    fn from(e: PlanError) -> Self {
        ProxyError::from(&e)
    }
}
